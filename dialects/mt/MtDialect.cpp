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

/// `mt.buckets`: per bucket a dictionary of `axis` (a string), `params`
/// (symbols) and `offsets` (one per param, ascending, >= 0).
static LogicalResult verifyBucketsAttr(Operation *op, Attribute value) {
  auto buckets = dyn_cast<ArrayAttr>(value);
  if (!buckets)
    return op->emitError() << "expects '" << mt::MtDialect::kBucketsAttrName << "' to be an array";
  for (auto [k, entry] : llvm::enumerate(buckets)) {
    auto bucket = dyn_cast<DictionaryAttr>(entry);
    auto axis = bucket ? bucket.getAs<StringAttr>("axis") : StringAttr();
    auto params = bucket ? bucket.getAs<ArrayAttr>("params") : ArrayAttr();
    auto offsets = bucket ? bucket.getAs<DenseI64ArrayAttr>("offsets") : DenseI64ArrayAttr();
    bool ok = axis && params && offsets && !params.empty() &&
              params.size() == offsets.size() &&
              llvm::all_of(params, [](Attribute a) { return isa<FlatSymbolRefAttr>(a); });
    for (size_t i = 0; ok && i < offsets.size(); ++i)
      ok = offsets[i] >= 0 && (i == 0 || offsets[i] > offsets[i - 1]);
    if (!ok)
      return op->emitError() << "expects bucket " << k << " of '" << mt::MtDialect::kBucketsAttrName
                             << "' to have an 'axis' string, 'params' symbols and ascending, "
                                "non-negative 'offsets', one per param; got "
                             << entry;
  }
  return success();
}

LogicalResult mt::MtDialect::verifyOperationAttribute(Operation *op,
                                                      NamedAttribute attr) {
  for (StringRef unit : {kBackwardAttrName, kRecomputeAttrName})
    if (attr.getName() == unit) {
      if (!isa<UnitAttr>(attr.getValue()))
        return op->emitError() << "expects '" << unit << "' to be a unit attribute";
      return success();
    }
  if (attr.getName() == kHfConfigAttrName) {
    if (!isa<ModuleOp>(op) || !isa<StringAttr>(attr.getValue()))
      return op->emitError() << "expects '" << kHfConfigAttrName
                             << "' to be a string on a module";
    return success();
  }
  if (attr.getName() == kLossScaleAttrName) {
    auto fn = dyn_cast<SymbolOpInterface>(op);
    auto scale = dyn_cast<FloatAttr>(attr.getValue());
    if (!fn || fn.getName() != kStepLossFunctionName || !scale ||
        !(scale.getValueAsDouble() > 0))
      return op->emitError() << "expects '" << kLossScaleAttrName << "' to be a positive float "
                             << "on @" << kStepLossFunctionName;
    return success();
  }
  if (attr.getName() == kAxesAttrName)
    return verifyMeshAxesAttr(op, attr.getValue());
  if (attr.getName() == kBucketsAttrName)
    return verifyBucketsAttr(op, attr.getValue());
  // Layers and pipeline stages (mt-pipeline-split) count from 0.
  StringRef name = attr.getName().getValue();
  if (name != kLayerAttrName && name != kVirtualStageAttrName &&
      name != kPipelineStageAttrName && name != kTiedStageAttrName)
    return op->emitError() << "unknown attribute '" << name
                           << "' of the mt dialect (known: '" << kLayerAttrName
                           << "', '" << kBackwardAttrName << "', '" << kRecomputeAttrName
                           << "', '" << kHfConfigAttrName << "', '" << kAxesAttrName
                           << "', '" << kBucketsAttrName << "', '" << kVirtualStageAttrName
                           << "', '" << kPipelineStageAttrName << "', '" << kTiedStageAttrName
                           << "')";
  auto index = dyn_cast<IntegerAttr>(attr.getValue());
  if (!index || index.getInt() < 0)
    return op->emitError() << "expects '" << name << "' to be a non-negative integer, got "
                           << attr.getValue();
  return success();
}
