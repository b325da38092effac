// The last writes of the reduced gradients and the sparse embedding writer.
#include "runtime/plan/GradientWrites.h"

#include "runtime/plan/OpRegistry.h"

#include <map>
#include <set>
#include <string>

namespace mt::plan {

std::vector<uint32_t> writtenAs(const Plan &plan, uint32_t id) {
  std::map<std::string, const Parameter *> byName;
  for (const Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  for (const Bucket &b : plan.buckets())
    if (b.grad_buffer() == id) {
      std::vector<uint32_t> members;
      for (const BucketMember &m : b.members())
        members.push_back(byName.at(m.param())->grad_buffer());
      return members;
    }
  return {id};
}

std::set<uint32_t> weightReadersOf(const Plan &plan, const Bucket &bucket) {
  std::map<std::string, const Parameter *> byName;
  for (const Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  std::set<uint32_t> ids = {bucket.param_buffer()};
  for (const BucketMember &m : bucket.members())
    if (auto it = byName.find(m.param()); it != byName.end())
      ids.insert(it->second->param_buffer());
  for (const Buffer &b : plan.buffers())
    for (uint32_t part : b.parts())
      if (ids.count(part)) {
        ids.insert(b.id());
        break;
      }
  return ids;
}

namespace {

/// The buffers an operand stands for: a view's parts (one GEMM's gradients
/// of sibling weights), or the buffer itself.
std::vector<uint32_t> partsOf(const Plan &plan, uint32_t id) {
  const auto &parts = plan.buffers(id).parts();
  return parts.empty() ? std::vector<uint32_t>{id}
                       : std::vector<uint32_t>(parts.begin(), parts.end());
}

/// The embedding_grad kept sparse: the last eligible one in `order`.
void chooseSparseWriter(const Plan &plan, const Program &forwardBackward,
                        const std::vector<int> &order, const std::vector<uint32_t> &reduced,
                        const std::map<uint32_t, size_t> &reducedAs, ReducedGradientWrites &w) {
  std::map<uint32_t, size_t> readAs = reducedAs; // a reduced buffer is read whole too
  for (size_t k = 0; k < reduced.size(); ++k)
    readAs[reduced[k]] = k;
  std::set<size_t> read;
  for (const Instruction &in : forwardBackward.instructions())
    for (uint32_t id : in.inputs())
      for (uint32_t part : partsOf(plan, id))
        if (auto it = readAs.find(part); it != readAs.end())
          read.insert(it->second);
  for (size_t at = order.size(); at-- > 0;) {
    const Instruction &in = forwardBackward.instructions(order[at]);
    if (opOf(in) != Op::embedding_grad || !Attrs(in).s("vocab_parallel_axis").empty() ||
        plan.buffers(in.outputs(0)).parts_size() != 0)
      continue;
    auto it = reducedAs.find(in.outputs(0));
    if (it == reducedAs.end() || read.count(it->second))
      continue;
    w.sparseWriter = order[at];
    w.sparseReduced = it->second;
    return;
  }
}

} // namespace

ReducedGradientWrites reducedGradientWrites(const Plan &plan, const Program &forwardBackward,
                                            const std::vector<int> &order,
                                            const std::vector<uint32_t> &reduced,
                                            bool sparseEmbedding) {
  ReducedGradientWrites w;
  w.lastWriter.assign(reduced.size(), int(order.size()) - 1);
  std::map<uint32_t, size_t> reducedAs; // a written buffer -> its entry of `reduced`
  for (size_t k = 0; k < reduced.size(); ++k)
    for (uint32_t part : writtenAs(plan, reduced[k]))
      reducedAs[part] = k;
  if (sparseEmbedding)
    chooseSparseWriter(plan, forwardBackward, order, reduced, reducedAs, w);
  std::vector<bool> written(reduced.size(), false);
  for (int at = 0; at < int(order.size()); ++at) {
    if (order[size_t(at)] == w.sparseWriter)
      continue;
    for (uint32_t out : forwardBackward.instructions(order[size_t(at)]).outputs())
      for (uint32_t part : partsOf(plan, out))
        if (auto it = reducedAs.find(part); it != reducedAs.end()) {
          w.lastWriter[it->second] = at;
          written[it->second] = true;
        }
  }
  if (w.sparseWriter >= 0 && !written[w.sparseReduced])
    w.lastWriter[w.sparseReduced] = -1;
  return w;
}

} // namespace mt::plan
