// Registration of the `mt` dialect and its dialect-level attribute checks.
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;

#include "dialects/mt/MtDialect.cpp.inc"
#include "dialects/mt/MtEnums.cpp.inc"
#include "dialects/mt/MtInterfaces.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/mt/MtAttributes.cpp.inc"

namespace mt {
LogicalResult verifyMeshAxesAttr(Operation *op, Attribute value); // MtMesh.cpp
} // namespace mt

void mt::MtDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/mt/MtOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/mt/MtAttributes.cpp.inc"
      >();
}

LogicalResult mt::MtDialect::verifyOperationAttribute(Operation *op,
                                                      NamedAttribute attr) {
  if (attr.getName() == kBackwardAttrName) {
    if (!isa<UnitAttr>(attr.getValue()))
      return op->emitError() << "expects '" << kBackwardAttrName << "' to be a unit attribute";
    return success();
  }
  if (attr.getName() == kHfConfigAttrName) {
    if (!isa<ModuleOp>(op) || !isa<StringAttr>(attr.getValue()))
      return op->emitError() << "expects '" << kHfConfigAttrName
                             << "' to be a string on a module";
    return success();
  }
  if (attr.getName() == kAxesAttrName)
    return verifyMeshAxesAttr(op, attr.getValue());
  // Layers and pipeline stages (mt-pipeline-split) count from 0.
  StringRef name = attr.getName().getValue();
  if (name != kLayerAttrName && name != kVirtualStageAttrName &&
      name != kPipelineStageAttrName && name != kTiedStageAttrName)
    return op->emitError() << "unknown attribute '" << name
                           << "' of the mt dialect (known: '" << kLayerAttrName
                           << "', '" << kBackwardAttrName << "', '" << kHfConfigAttrName
                           << "', '" << kAxesAttrName << "', '" << kVirtualStageAttrName
                           << "', '" << kPipelineStageAttrName << "', '" << kTiedStageAttrName
                           << "')";
  auto index = dyn_cast<IntegerAttr>(attr.getValue());
  if (!index || index.getInt() < 0)
    return op->emitError() << "expects '" << name << "' to be a non-negative integer, got "
                           << attr.getValue();
  return success();
}
