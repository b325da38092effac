// Expert parallelism on the GPU: the alltoall token dispatcher's
// moe_exchange_counts, all_to_all_v and moe_sort_chunks (Megatron-Core's
// MoEAlltoAllTokenDispatcher) and the allgather dispatcher's
// moe_gather_counts (its all-gather and reduce-scatter of the rows are
// LowerCollectives.cpp's); kernels in runtime/cuda/ExpertDispatch.h, on
// the compute stream in the plan's order, as the other collectives. The
// allgather dispatcher needs no host copy: its collectives have static
// sizes.
//
// The token counts exist only on the device, but NCCL's send and receive
// sizes are host values. moe_exchange_counts therefore ends with one
// device-to-host copy of the dispatch's split sizes (send and recv, packed)
// into pinned memory and an event after it; the first all_to_all_v that
// needs them waits for that event (the host runs ahead of the GPU until
// then), and the combine's all-to-all and the two of backward read the same
// copy without waiting again. One host synchronization per MoE layer and
// micro-batch, as Megatron-Core's .cpu() of the output splits.
#include "runtime/cuda/Check.h"
#include "runtime/cuda/ExpertDispatch.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/NcclCommunicator.h"

#include <string>
#include <vector>

namespace mt::cuda {
namespace {

using plan::Attrs;

/// Pinned host memory for `n` counts and the event after their copy.
struct PinnedCounts {
  int32_t *host = nullptr;
  cudaEvent_t copied = nullptr;
  ~PinnedCounts() {
    if (host)
      (void)cudaFreeHost(host);
    if (copied)
      (void)cudaEventDestroy(copied);
  }
};

Expected<std::shared_ptr<PinnedCounts>> pinnedCounts(size_t n) {
  auto counts = std::make_shared<PinnedCounts>();
  MT_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void **>(&counts->host), n * sizeof(int32_t)));
  MT_CUDA_CHECK(cudaEventCreateWithFlags(&counts->copied, cudaEventDisableTiming));
  return counts;
}

/// Whether a moe_exchange_counts of the plan computes `buffer` (as its
/// send or recv counts): the all-to-all-v reads only those on the host.
bool exchangedCounts(const plan::Plan &plan, uint32_t buffer) {
  for (const plan::Program &program : plan.programs())
    for (const plan::Instruction &in : program.instructions())
      if (plan::isOp(in, plan::Op::moe_exchange_counts) && in.outputs_size() >= 2 &&
          (in.outputs(0) == buffer || in.outputs(1) == buffer))
        return true;
  return false;
}

/// The NCCL group of the instruction's axis in `nccl`; null for one rank
/// and no group (the data stays on the rank). False, after L.fail, when
/// the axis has no NCCL group of `parts` ranks.
bool axisGroup(Lowerer &L, const Attrs &a, int64_t parts, NcclCommunicator *&nccl) {
  const exec::RankContext *rank = L.resources().rank;
  nccl = nullptr;
  if (parts == 1 && !(rank && rank->group(a.s("axis"))))
    return true;
  nccl = ncclGroupOf(L, a, parts);
  return nccl != nullptr;
}

/// moe_exchange_counts: this rank's counts per expert exchanged over the
/// axis (E/P each way, i32 moved as 4-byte words), their sums on the
/// device, and the split sizes copied to the host once.
void exchangeCounts(Lowerer &L, const Attrs &a) {
  const int64_t experts = a.i("experts"), parts = a.i("parts");
  if (parts < 1 || experts % parts != 0)
    return L.fail("experts " + std::to_string(experts) + " not a multiple of parts " +
                  std::to_string(parts));
  const int64_t groups = experts / parts;
  const int32_t *mine = L.i32In(0);
  int32_t *send = L.i32Out(0), *recv = L.i32Out(1), *global = L.i32Out(2), *local = L.i32Out(3);
  NcclCommunicator *nccl = nullptr;
  if (!axisGroup(L, a, parts, nccl) || !mine || !send || !recv || !global || !local)
    return; // the reason is recorded
  auto staging = L.resources().allocate(size_t(2 * parts) * sizeof(int32_t));
  if (!staging)
    return L.fail(staging.message());
  auto pinned = pinnedCounts(size_t(2 * parts));
  if (!pinned)
    return L.fail(pinned.message());
  std::shared_ptr<PinnedCounts> host = *pinned;
  L.resources().hostCounts[send] = {host->host, host->copied, host};
  L.resources().hostCounts[recv] = {host->host + parts, host->copied, host};
  auto *splits = static_cast<int32_t *>(*staging);
  L.emitCollective([=](cudaStream_t s) -> Status {
    if (nccl) {
      const std::vector<size_t> blocks(static_cast<size_t>(parts), static_cast<size_t>(groups));
      nccl->setStream(s);
      MT_CUDA_RETURN_IF_ERROR(nccl->allToAllV(mine, blocks, global, blocks, comm::DType::F32));
    } else {
      MT_CUDA_CHECK(cudaMemcpyAsync(global, mine, size_t(experts) * sizeof(int32_t),
                                    cudaMemcpyDeviceToDevice, s));
    }
    MT_CUDA_RETURN_IF_ERROR(
        moeCountSums(mine, global, parts, groups, send, recv, local, splits, s));
    MT_CUDA_CHECK(cudaMemcpyAsync(host->host, splits, size_t(2 * parts) * sizeof(int32_t),
                                  cudaMemcpyDeviceToHost, s));
    MT_CUDA_CHECK(cudaEventRecord(host->copied, s));
    return Status::ok();
  });
}

/// moe_gather_counts: every rank's counts per expert gathered over the
/// axis (i32 moved as 4-byte words) into the workspace, then what this
/// rank's experts take of them, on the device.
void gatherCounts(Lowerer &L, const Attrs &a) {
  const bool same = a.i("same_experts", 0) != 0; // etp: every rank's counts whole
  const int64_t experts = a.i("experts"), parts = a.i("parts");
  if (parts < 1 || (!same && experts % parts != 0))
    return L.fail("experts " + std::to_string(experts) + " not a multiple of parts " +
                  std::to_string(parts));
  const int64_t groups = same ? experts : experts / parts;
  const exec::RankContext *rank = L.resources().rank;
  const int64_t first =
      same || parts == 1 || !rank ? 0 : rank->coordinate(a.s("axis")) * groups;
  const int32_t *mine = L.i32In(0);
  int32_t *global = L.i32Out(0), *offsets = L.i32Out(1), *local = L.i32Out(2);
  NcclCommunicator *nccl = nullptr;
  if (!axisGroup(L, a, parts, nccl) || !mine || !global || !offsets || !local)
    return; // the reason is recorded
  L.needWorkspace(size_t(parts * experts) * sizeof(int32_t));
  Resources *r = &L.resources();
  L.emitCollective([=](cudaStream_t s) -> Status {
    auto *all = static_cast<int32_t *>(r->workspace);
    if (nccl) {
      nccl->setStream(s);
      MT_CUDA_RETURN_IF_ERROR(nccl->allGather(mine, all, size_t(experts), comm::DType::F32));
    } else {
      MT_CUDA_CHECK(cudaMemcpyAsync(all, mine, size_t(experts) * sizeof(int32_t),
                                    cudaMemcpyDeviceToDevice, s));
    }
    return moeGatherCountSums(all, parts, experts, first, groups, global, offsets, local, s);
  });
}

/// The host copy of count input `i`, made by a moe_exchange_counts; null,
/// after L.fail, when the plan computes the counts otherwise.
const HostCounts *hostCountsOf(Lowerer &L, int i) {
  const int32_t *device = L.i32In(i);
  const uint32_t id = L.instruction().inputs(i);
  if (!device)
    return nullptr;
  if (!exchangedCounts(L.plan(), id)) {
    L.fail("the counts %" + std::to_string(id) + " '" + L.plan().buffers(id).name() +
           "' are not computed by a moe_exchange_counts: the CUDA backend reads the "
           "all-to-all's split sizes from its host copy only");
    return nullptr;
  }
  // The entry its producer fills when it is lowered (programs lower in any order).
  return &L.resources().hostCounts[device];
}

/// all_to_all_v: the rows exchanged over the axis with NCCL (grouped sends
/// and receives), in bf16 for bf16 activations; rows of the output past
/// the received ones are zeroed, as on the CPU.
void allToAllV(Lowerer &L, const Attrs &a) {
  const int64_t row = a.i("row"), parts = a.i("parts"), rowsIn = a.i("rows_in"),
                rowsOut = a.i("rows_out");
  if (parts < 1)
    return L.fail("parts " + std::to_string(parts) + ": expected at least 1 rank");
  const CollectiveOperand in = collectiveOperand(L, true, 0), out = collectiveOperand(L, false, 0);
  const HostCounts *sendHost = hostCountsOf(L, 1), *recvHost = hostCountsOf(L, 2);
  NcclCommunicator *nccl = nullptr;
  if (!axisGroup(L, a, parts, nccl) || !in.data || !out.data || !sendHost || !recvHost)
    return; // the reason is recorded
  if (in.type != out.type)
    return L.fail("input and output differ in their device dtype");
  const std::string axis = a.s("axis");
  const size_t rowBytes = size_t(row) * comm::sizeOf(in.type);
  L.emitCollective([=](cudaStream_t s) -> Status {
    auto refuse = [&](const std::string &why) {
      return Status::error(errorContext() + "all_to_all_v over '" + axis + "': " + why);
    };
    if (!sendHost->values || !recvHost->values)
      return refuse("its counts were never copied to the host");
    MT_CUDA_CHECK(cudaEventSynchronize(sendHost->copied));
    if (recvHost->copied != sendHost->copied)
      MT_CUDA_CHECK(cudaEventSynchronize(recvHost->copied));
    std::vector<size_t> sendCounts(static_cast<size_t>(parts)), recvCounts(sendCounts);
    int64_t sent = 0, received = 0;
    for (int64_t p = 0; p < parts; ++p) {
      const int32_t sp = sendHost->values[p], rp = recvHost->values[p];
      if (sp < 0 || rp < 0)
        return refuse("negative count for peer " + std::to_string(p));
      sent += sp, received += rp;
      sendCounts[size_t(p)] = size_t(sp) * size_t(row);
      recvCounts[size_t(p)] = size_t(rp) * size_t(row);
    }
    if (sent > rowsIn || received > rowsOut)
      return refuse("sends " + std::to_string(sent) + " rows of " + std::to_string(rowsIn) +
                    " and receives " + std::to_string(received) + " into " +
                    std::to_string(rowsOut));
    auto *to = static_cast<std::byte *>(out.data);
    if (received < rowsOut)
      MT_CUDA_CHECK(cudaMemsetAsync(to + size_t(received) * rowBytes, 0,
                                    size_t(rowsOut - received) * rowBytes, s));
    if (!nccl) { // one rank on the axis: its rows come back to it
      if (sent != received)
        return refuse("one rank sends " + std::to_string(sent) + " rows and receives " +
                      std::to_string(received));
      if (sent > 0 && in.data != out.data)
        MT_CUDA_CHECK(cudaMemcpyAsync(to, in.data, size_t(sent) * rowBytes,
                                      cudaMemcpyDeviceToDevice, s));
      return Status::ok();
    }
    nccl->setStream(s);
    return nccl->allToAllV(in.data, sendCounts, out.data, recvCounts, in.type);
  });
}

/// moe_sort_chunks: the received rows re-ordered on the device, the counts
/// read there.
void sortChunks(Lowerer &L, const Attrs &a) {
  const SortChunksShape shape{a.i("parts"), a.i("groups"), a.i("rows"), a.i("hidden"),
                              a.i("inverse") != 0, a.i("offsets", 0) != 0};
  if (shape.parts < 1 || shape.groups < 1 || shape.parts * shape.groups > kMaxSortChunks)
    return L.fail("parts " + std::to_string(shape.parts) + " x groups " +
                  std::to_string(shape.groups) + ": expected 1 to " +
                  std::to_string(kMaxSortChunks) + " chunks");
  if (L.instruction().inputs(0) == L.instruction().outputs(0))
    return L.fail("the output may not be the input (rows move between chunks)");
  const bf16 *in = L.bfIn(0);
  const int32_t *counts = L.i32In(1), *offsets = shape.blocked ? L.i32In(2) : nullptr;
  bf16 *out = L.bfOut(0);
  L.needWorkspace(moeSortChunksWorkspaceBytes(shape));
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t s) {
    return moeSortChunks(in, counts, offsets, out, r->workspace, shape, s);
  });
}

} // namespace

void addExpertParallelLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::moe_exchange_counts] = exchangeCounts;
  t[Op::moe_gather_counts] = gatherCounts;
  t[Op::all_to_all_v] = allToAllV;
  t[Op::moe_sort_chunks] = sortChunks;
}

} // namespace mt::cuda
