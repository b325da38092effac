// The CPU backend's collectives (runtime/cpu/Collectives.h): each gets its
// group from the rank's context; on an axis of one rank the input is the result.
#include "runtime/cpu/Collectives.h"

#include "runtime/kernels/AllToAll.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

namespace mt::cpu {
namespace {

using exec::HostMemory;
using plan::Attrs;
using plan::Instruction;
using plan::Op;
using Rank = const exec::RankContext *;

Status allReduce(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  Rank rank = k.rank;
  float *out = m.f32(in.outputs(0));
  if (in.inputs(0) != in.outputs(0))
    std::memcpy(out, m.f32(in.inputs(0)), size_t(a.i("n")) * sizeof(float));
  std::optional<comm::ReduceOp> op = comm::reduceOpNamed(a.s("reduce"));
  if (!op) // the plan loader checked it
    return Status::error("all_reduce: reduce '" + a.s("reduce") + "' is not sum, max or mean");
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  if (!group)
    return Status::ok();
  return group->allReduce(out, size_t(a.i("n")), comm::DType::F32, *op);
}

/// The group of an all_gather / reduce_scatter over `parts` ranks.
Expected<comm::Communicator *> partsGroup(const Attrs &a, Rank rank, const char *op) {
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  if (!group || group->size() != a.i("parts"))
    return Status::error(std::string(op) + " over '" + a.s("axis") + "' expects " +
                         std::to_string(a.i("parts")) + " ranks in the group");
  return group;
}

/// The group of `op` over `parts` ranks of its axis, null when the axis
/// has one rank (parts must then be 1); an error names both counts.
Expected<comm::Communicator *> groupOfParts(const Attrs &a, Rank rank, int64_t parts,
                                            const char *op) {
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  if ((group ? group->size() : 1) != parts)
    return Status::error(std::string(op) + " over '" + a.s("axis") + "' expects " +
                         std::to_string(parts) + " ranks in the group, has " +
                         std::to_string(group ? group->size() : 1));
  return group;
}

/// Runs `copies` (runtime/kernels/AllToAll.h) from `src` to `dst`.
void copyStrided(const std::vector<kernels::StridedCopy> &copies, const float *src, float *dst) {
  for (const kernels::StridedCopy &c : copies)
    for (int64_t r = 0; r < c.rows; ++r)
      std::memcpy(dst + c.dst + r * c.dstPitch, src + c.src + r * c.srcPitch,
                  size_t(c.width) * sizeof(float));
}

/// Concatenates the group's [outer, run] blocks along the run: rank r's
/// block lands at columns [r·run, (r+1)·run) of every outer row, or with
/// load_balanced its two halves at chunks r and 2·parts-1-r of run / 2
/// (kernels::allGatherUnpack, as the CUDA backend places them). 4-byte
/// words: f32 or i32 alike.
Status allGather(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
  auto group = partsGroup(a, k.rank, "all_gather");
  if (!group)
    return group.status();
  auto unpack = kernels::allGatherUnpack(outer, run, parts, a.i("load_balanced", 0) != 0);
  if (!unpack)
    return unpack.status();
  std::vector<float> all(size_t(outer * run * parts));
  if (Status s = (*group)->allGather(m.f32(in.inputs(0)), all.data(), size_t(outer * run),
                                     comm::DType::F32);
      !s)
    return s;
  copyStrided(*unpack, all.data(), m.f32(in.outputs(0)));
  return Status::ok();
}

/// Sums the group's full [outer, parts·run] inputs and keeps this rank's
/// column block: the blocks are made rank-major for the reduce-scatter.
Status reduceScatter(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
  auto group = partsGroup(a, k.rank, "reduce_scatter");
  if (!group)
    return group.status();
  const float *full = m.f32(in.inputs(0));
  std::vector<float> blocks(size_t(outer * run * parts));
  for (int64_t r = 0; r < parts; ++r)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(blocks.data() + (r * outer + o) * run, full + (o * parts + r) * run,
                  size_t(run) * sizeof(float));
  std::optional<comm::ReduceOp> op = comm::reduceOpNamed(a.s("reduce"));
  if (!op || *op == comm::ReduceOp::Max) // the plan loader checked it
    return Status::error("reduce_scatter: reduce '" + a.s("reduce") + "' is not sum or mean");
  return (*group)->reduceScatter(blocks.data(), m.f32(in.outputs(0)), size_t(outer * run),
                                 comm::DType::F32, *op);
}

/// This rank's column block of the replicated [outer, parts·run] input.
Status allSlice(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
  int64_t r = k.rank ? k.rank->coordinate(a.s("axis")) : 0;
  if (parts != (k.rank ? k.rank->axisSize(a.s("axis")) : 1))
    return Status::error("all_slice over '" + a.s("axis") + "' expects " + std::to_string(parts) +
                         " ranks on the axis");
  const float *full = m.f32(in.inputs(0));
  float *out = m.f32(in.outputs(0));
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(out + o * run, full + (o * parts + r) * run, size_t(run) * sizeof(float));
  return Status::ok();
}

/// Rows exchanged over `axis` with the counts of the instruction's i32
/// inputs (rows per peer); the output past the received rows is zeroed.
Status allToAllV(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  const int64_t row = a.i("row"), parts = a.i("parts");
  const int32_t *send = m.i32(in.inputs(1)), *recv = m.i32(in.inputs(2));
  std::vector<size_t> sendCounts(static_cast<size_t>(parts)), recvCounts(sendCounts);
  int64_t sent = 0, received = 0;
  for (int64_t p = 0; p < parts; ++p) {
    if (send[p] < 0 || recv[p] < 0)
      return Status::error("all_to_all_v over '" + a.s("axis") + "': negative count for peer " +
                           std::to_string(p));
    sent += send[p], received += recv[p];
    sendCounts[size_t(p)] = size_t(send[p] * row);
    recvCounts[size_t(p)] = size_t(recv[p] * row);
  }
  if (sent > a.i("rows_in") || received > a.i("rows_out"))
    return Status::error("all_to_all_v over '" + a.s("axis") + "': sends " + std::to_string(sent) +
                         " rows of " + std::to_string(a.i("rows_in")) + " and receives " +
                         std::to_string(received) + " into " + std::to_string(a.i("rows_out")));
  float *out = m.f32(in.outputs(0));
  std::fill(out + received * row, out + a.i("rows_out") * row, 0.0f);
  comm::Communicator *group = k.rank ? k.rank->group(a.s("axis")) : nullptr;
  if (!group) { // one rank on the axis: its rows come back to it
    if (parts != 1 || sent != received)
      return Status::error("all_to_all_v over '" + a.s("axis") + "' expects " +
                           std::to_string(parts) + " ranks in the group, has 1");
    std::memmove(out, m.f32(in.inputs(0)), size_t(sent * row) * sizeof(float));
    return Status::ok();
  }
  if (group->size() != parts)
    return Status::error("all_to_all_v over '" + a.s("axis") + "' expects " +
                         std::to_string(parts) + " ranks in the group, has " +
                         std::to_string(group->size()));
  return group->allToAllV(m.f32(in.inputs(0)), sendCounts, out, recvCounts, comm::DType::F32);
}

/// The input to the next rank of the axis's ring (the previous one with
/// `reverse`), the previous one's into the output: an all-to-all-v with
/// one non-empty block each way, which cannot deadlock as paired
/// blocking sends and receives around an odd ring could.
Status ringShift(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  const size_t n = size_t(a.i("n"));
  comm::Communicator *group = k.rank ? k.rank->group(a.s("axis")) : nullptr;
  if (!group) { // one rank on the axis: its value comes back to it
    std::memmove(m.f32(in.outputs(0)), m.f32(in.inputs(0)), n * sizeof(float));
    return Status::ok();
  }
  const int64_t size = group->size(), r = k.rank->coordinate(a.s("axis"));
  const int64_t shift = a.i("reverse", 0) ? size - 1 : 1;
  std::vector<size_t> sendCounts(static_cast<size_t>(size)), recvCounts(sendCounts);
  sendCounts[size_t((r + shift) % size)] = n;
  recvCounts[size_t((r + size - shift) % size)] = n;
  return group->allToAllV(m.f32(in.inputs(0)), sendCounts, m.f32(in.outputs(0)), recvCounts,
                          comm::DType::F32);
}

/// Megatron-Core's alltoall-dispatcher preprocess: this rank's counts per
/// expert exchanged over `axis` (E/P each way), and their sums. The i32
/// counts travel as 4-byte words (the exchange moves bytes only).
Status exchangeCounts(const Instruction &in, const Attrs &a, HostMemory &m,
                      const KernelContext &k) {
  const int64_t experts = a.i("experts"), parts = a.i("parts"), local = experts / parts;
  const int32_t *mine = m.i32(in.inputs(0));
  int32_t *send = m.i32(in.outputs(0)), *recv = m.i32(in.outputs(1));
  int32_t *global = m.i32(in.outputs(2)), *perExpert = m.i32(in.outputs(3));
  Expected<comm::Communicator *> found = groupOfParts(a, k.rank, parts, "moe_exchange_counts");
  if (!found)
    return found.status();
  comm::Communicator *group = *found;
  if (group) {
    std::vector<size_t> blocks(static_cast<size_t>(parts), static_cast<size_t>(local));
    if (Status s = group->allToAllV(mine, blocks, global, blocks, comm::DType::F32); !s)
      return s;
  } else {
    std::memcpy(global, mine, size_t(experts) * sizeof(int32_t));
  }
  for (int64_t p = 0; p < parts; ++p) {
    send[p] = recv[p] = 0;
    for (int64_t g = 0; g < local; ++g)
      send[p] += mine[p * local + g], recv[p] += global[p * local + g];
  }
  for (int64_t g = 0; g < local; ++g) {
    perExpert[g] = 0;
    for (int64_t p = 0; p < parts; ++p)
      perExpert[g] += global[p * local + g];
  }
  return Status::ok();
}

/// Megatron-Core's allgather-dispatcher preprocess: every rank's counts
/// per expert gathered over `axis` (as 4-byte words), then what this
/// rank's experts take of each rank's rows: their counts, where they
/// start, and their sums; with same_experts (etp) all of them.
Status gatherCounts(const Instruction &in, const Attrs &a, HostMemory &m,
                    const KernelContext &k) {
  const bool same = a.i("same_experts", 0) != 0;
  const int64_t experts = a.i("experts"), parts = a.i("parts");
  const int64_t local = same ? experts : experts / parts;
  const int32_t *mine = m.i32(in.inputs(0));
  int32_t *global = m.i32(in.outputs(0)), *offsets = m.i32(in.outputs(1));
  int32_t *perExpert = m.i32(in.outputs(2));
  Expected<comm::Communicator *> found = groupOfParts(a, k.rank, parts, "moe_gather_counts");
  if (!found)
    return found.status();
  comm::Communicator *group = *found;
  std::vector<int32_t> all(static_cast<size_t>(parts * experts));
  if (group) {
    if (Status s = group->allGather(mine, all.data(), size_t(experts), comm::DType::F32); !s)
      return s;
  } else {
    std::copy(mine, mine + experts, all.begin());
  }
  const int64_t first = same || !group ? 0 : k.rank->coordinate(a.s("axis")) * local;
  std::fill(perExpert, perExpert + local, 0);
  for (int64_t p = 0; p < parts; ++p) {
    const int32_t *counts = all.data() + p * experts;
    offsets[p] = std::accumulate(counts, counts + first, 0);
    for (int64_t g = 0; g < local; ++g)
      global[p * local + g] = counts[first + g], perExpert[g] += counts[first + g];
  }
  return Status::ok();
}

/// Equal pieces exchanged over `axis` (cp_comm_type a2a): the input's
/// pieces packed into rank-major blocks, exchanged, and the received
/// blocks unpacked into the result.
Status allToAll(const Instruction &in, const Attrs &a, HostMemory &m, const KernelContext &k) {
  Expected<kernels::AllToAllLayout> layout = kernels::allToAllLayoutOf(a);
  if (!layout)
    return layout.status();
  Expected<comm::Communicator *> found = groupOfParts(a, k.rank, layout->parts, "all_to_all");
  if (!found)
    return found.status();
  comm::Communicator *group = *found;
  const size_t piece = size_t(layout->pieceElements()), parts = size_t(layout->parts);
  std::vector<float> sent(piece * parts), received(group ? piece * parts : 0);
  copyStrided(kernels::allToAllPack(*layout), m.f32(in.inputs(0)), sent.data());
  if (group) {
    std::vector<size_t> counts(parts, piece);
    if (Status s = group->allToAllV(sent.data(), counts, received.data(), counts, comm::DType::F32);
        !s)
      return s;
  }
  copyStrided(kernels::allToAllUnpack(*layout), group ? received.data() : sent.data(),
              m.f32(in.outputs(0)));
  return Status::ok();
}
} // namespace

void addCollectiveKernels(plan::PerOp<CpuExecutor::Kernel> &t) {
  t[Op::all_reduce] = allReduce;
  t[Op::send] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    if (!k.pipeline || !k.rank)
      return Status::error("send outside a pipeline");
    int64_t to = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
    return k.pipeline->send(to, k.microBatch, in.inputs(0), m.f32(in.inputs(0)), a.i("n"));
  };
  t[Op::recv] = [](auto &in, auto &a, auto &m, const KernelContext &k) {
    if (!k.pipeline || !k.rank)
      return Status::error("recv outside a pipeline");
    int64_t from = a.i("peer_virtual_stage") % k.rank->axisSize("pp");
    return k.pipeline->receive(from, k.microBatch, in.outputs(0), m.f32(in.outputs(0)), a.i("n"));
  };
  t[Op::all_gather] = allGather;
  t[Op::all_to_all] = allToAll;
  t[Op::all_to_all_v] = allToAllV;
  t[Op::ring_shift] = ringShift;
  t[Op::moe_exchange_counts] = exchangeCounts;
  t[Op::moe_gather_counts] = gatherCounts;
  t[Op::reduce_scatter] = reduceScatter;
  t[Op::all_slice] = allSlice;
}

} // namespace mt::cpu
