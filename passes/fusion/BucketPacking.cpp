// mt-fuse's packed weights inside the distributed optimizer's buckets
// (BucketPacking.h).
#include "passes/fusion/BucketPacking.h"

#include "passes/optimizer/Buckets.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/Support/MathExtras.h"

#include <optional>

using namespace mlir;

namespace mt {
namespace {

/// One bucket entry of mt.buckets, as plain values.
struct BucketLayout {
  SmallVector<StringRef> params;
  SmallVector<int64_t> offsets;
};

std::optional<StringRef> paramOf(Value v) {
  auto w = v ? v.getDefiningOp<WeightOp>() : WeightOp();
  return w ? std::optional(w.getParam()) : std::nullopt;
}

int64_t elementsOf(ModuleOp module, StringRef param) {
  auto p = module.lookupSymbol<ParamOp>(param);
  return p ? p.getLocalType().getNumElements() : -1;
}

/// `layout` with `group` moved as one, in its order, to where its earliest
/// member was; offsets recomputed. Null where a member but the last would
/// leave padding before the next, or the bucket's `elements` are exceeded.
std::optional<BucketLayout> packed(ModuleOp module, const BucketLayout &layout,
                                   ArrayRef<StringRef> group, int64_t elements) {
  BucketLayout out;
  bool placed = false;
  for (StringRef p : layout.params) {
    if (!llvm::is_contained(group, p)) {
      out.params.push_back(p);
    } else if (!placed) {
      out.params.append(group.begin(), group.end());
      placed = true;
    }
  }
  int64_t end = 0;
  for (StringRef p : out.params) {
    const int64_t start = llvm::alignTo(end, kBucketMemberAlignment);
    const bool inGroup = llvm::is_contained(group, p) && p != group.front();
    if (inGroup && start != end)
      return std::nullopt; // padding would part the group
    const int64_t n = elementsOf(module, p);
    if (n < 0)
      return std::nullopt;
    out.offsets.push_back(start);
    end = start + n;
  }
  if (end > elements)
    return std::nullopt;
  return out;
}

/// Whether `attrs` (an argument's or result's) are bucket `k`'s.
bool ofBucket(DictionaryAttr attrs, int64_t k) {
  auto b = attrs ? attrs.getAs<IntegerAttr>("mt.bucket") : IntegerAttr();
  return b && b.getInt() == k;
}

/// Elements of bucket `k`: its gradient argument's (-1: none).
int64_t bucketElements(func::FuncOp optimizer, int64_t k) {
  for (unsigned i = 0; i < optimizer.getNumArguments(); ++i) {
    DictionaryAttr attrs = optimizer.getArgAttrDict(i);
    auto role = attrs ? attrs.getAs<StringAttr>("mt.role") : StringAttr();
    if (ofBucket(attrs, k) && role && role.getValue() == "grad")
      return cast<RankedTensorType>(optimizer.getArgument(i).getType()).getNumElements();
  }
  return -1;
}

/// The bucket arguments' and results' mt.param of bucket `k`: its first member.
void nameFirstMember(func::FuncOp optimizer, int64_t k, StringRef first) {
  auto name = FlatSymbolRefAttr::get(optimizer.getContext(), first);
  for (unsigned i = 0; i < optimizer.getNumArguments(); ++i)
    if (ofBucket(optimizer.getArgAttrDict(i), k))
      optimizer.setArgAttr(i, "mt.param", name);
  for (unsigned i = 0; i < optimizer.getNumResults(); ++i)
    if (ofBucket(optimizer.getResultAttrDict(i), k))
      optimizer.setResultAttr(i, "mt.param", name);
}

} // namespace

bool packInBuckets(ModuleOp module, ArrayRef<LinearOp> linears) {
  auto optimizer = module.lookupSymbol<func::FuncOp>("optimizer_step");
  auto buckets = optimizer ? optimizer->getAttrOfType<ArrayAttr>(MtDialect::kBucketsAttrName)
                           : ArrayAttr();
  if (!buckets)
    return true;
  SmallVector<SmallVector<StringRef>> groups(2); // weights, biases
  for (LinearOp l : linears) {
    std::optional<StringRef> w = paramOf(l.getWeight()), b = paramOf(l.getBias());
    if (!w || (l.getBias() && !b))
      return false;
    groups[0].push_back(*w);
    if (b)
      groups[1].push_back(*b);
  }
  // Every group placed in a copy of the layout first: all or nothing.
  SmallVector<Attribute> layouts(buckets.begin(), buckets.end());
  SmallVector<std::pair<int64_t, StringRef>> firsts;
  Builder b(module.getContext());
  for (ArrayRef<StringRef> group : groups) {
    if (group.empty())
      continue;
    std::optional<int64_t> home;
    for (auto [k, attr] : llvm::enumerate(layouts)) {
      auto entry = cast<DictionaryAttr>(attr);
      auto members = entry.getAs<ArrayAttr>("params");
      int64_t held = llvm::count_if(members, [&](Attribute m) {
        return llvm::is_contained(group, cast<FlatSymbolRefAttr>(m).getValue());
      });
      if (held == int64_t(group.size()))
        home = int64_t(k);
      else if (held != 0)
        return false; // the group spans buckets
    }
    if (!home)
      return false; // a frozen member: in no bucket
    auto entry = cast<DictionaryAttr>(layouts[size_t(*home)]);
    BucketLayout layout;
    for (Attribute m : entry.getAs<ArrayAttr>("params"))
      layout.params.push_back(cast<FlatSymbolRefAttr>(m).getValue());
    llvm::append_range(layout.offsets, entry.getAs<DenseI64ArrayAttr>("offsets").asArrayRef());
    std::optional<BucketLayout> out =
        packed(module, layout, group, bucketElements(optimizer, *home));
    if (!out)
      return false;
    SmallVector<Attribute> members;
    for (StringRef p : out->params)
      members.push_back(FlatSymbolRefAttr::get(b.getContext(), p));
    NamedAttrList attrs(entry);
    attrs.set("params", b.getArrayAttr(members));
    attrs.set("offsets", b.getDenseI64ArrayAttr(out->offsets));
    layouts[size_t(*home)] = attrs.getDictionary(b.getContext());
    firsts.push_back({*home, out->params.front()});
  }
  optimizer->setAttr(MtDialect::kBucketsAttrName, b.getArrayAttr(layouts));
  for (auto [k, first] : firsts)
    nameFirstMember(optimizer, k, first);
  return true;
}

} // namespace mt
