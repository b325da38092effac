// Plain data: the plan includes neither the runtime's state nor MLIR.
#include "runtime/exec/Memory.h"
#include "mlir/IR/BuiltinOps.h"
