// The `mt` dialect: model-level ops of transformer LLMs.
#ifndef MT_DIALECTS_MT_MTDIALECT_H
#define MT_DIALECTS_MT_MTDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/mt/MtEnums.h.inc"
#include "dialects/mt/MtDialect.h.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/mt/MtAttributes.h.inc"
namespace mt {
class Partitioner; // dialects/mt/MtPartition.h
} // namespace mt
#include "dialects/mt/MtInterfaces.h.inc"

// The generated op classes leave some parameters unused (odsOperandsSize):
// not ours to mend, and not to drown the build's own warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define GET_OP_CLASSES
#include "dialects/mt/MtOps.h.inc"
#pragma GCC diagnostic pop

#endif // MT_DIALECTS_MT_MTDIALECT_H
