// The plan's collectives on the GPU: NCCL calls on the compute stream, in
// the plan's order. Consecutive all-reduces over one group (the gradients
// of every parameter over dp) make one step, launched as one NCCL group,
// with buffers that follow each other in memory merged into one call.
// Tensor parallelism: bf16 activations are all-reduced in bf16; all-gathers
// and reduce-scatters along a middle dimension (the sequence) go through
// rank-major blocks in the workspace. Those that weight-gradient GEMMs
// were deferred past run on the transfer stream meanwhile, through its own
// workspace (Lowerer::overlapsCompute; MT_CUDA_OVERLAP_SP=0: none).
// Collective steps run eagerly, never inside a captured CUDA graph.
// rank-major blocks in the workspace, as do all_to_all's pieces. Collective
// steps run eagerly, never inside a captured CUDA graph.
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/NcclCommunicator.h"
#include "runtime/kernels/AllToAll.h"

namespace mt::cuda {

CollectiveOperand collectiveOperand(Lowerer &L, bool isInput, int i) {
  const uint32_t id = isInput ? L.instruction().inputs(i) : L.instruction().outputs(i);
  if (L.resources().arenas->storage(id) == DeviceArenas::Storage::Bf16Activation)
    return {isInput ? const_cast<bf16 *>(L.bfIn(i)) : L.bfOut(i), comm::DType::BF16};
  if (L.plan().buffers(id).dtype() == plan::I32) // 4-byte words, moved, never reduced
    return {isInput ? const_cast<int32_t *>(L.i32In(i)) : L.i32Out(i), comm::DType::F32};
  return {isInput ? const_cast<float *>(L.f32In(i)) : L.f32Out(i), comm::DType::F32};
}

NcclCommunicator *ncclGroupOf(Lowerer &L, const plan::Attrs &a, int64_t parts) {
  const exec::RankContext *rank = L.resources().rank;
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  auto *nccl = dynamic_cast<NcclCommunicator *>(group);
  if (!nccl || nccl->size() != parts)
    L.fail(L.instruction().op() + " over '" + a.s("axis") + "' expects an NCCL group of " +
           std::to_string(parts) + " ranks");
  return nccl && nccl->size() == parts ? nccl : nullptr;
}

bool mayOverlapCompute(const Resources &r, const plan::Instruction &instr) {
  if (!r.overlapSequenceParallel || !r.rank || instr.inputs_size() < 1 ||
      instr.outputs_size() < 1 ||
      !(plan::isOp(instr, plan::Op::all_gather) || plan::isOp(instr, plan::Op::reduce_scatter) ||
        plan::isOp(instr, plan::Op::all_reduce)))
    return false;
  auto activation = [&](uint32_t id) {
    return r.arenas->storage(id) == DeviceArenas::Storage::Bf16Activation;
  };
  const comm::Communicator *group = r.rank->group(plan::Attrs(instr).s("axis"));
  return activation(instr.inputs(0)) && activation(instr.outputs(0)) &&
         dynamic_cast<const NcclCommunicator *>(group) && group->size() > 1;
}

namespace {

using plan::Attrs;

/// The all-reduces of one step: one communicator, one operation.
struct AllReduceGroup {
  struct Span {
    const float *in;
    float *out;
    size_t count;
  };
  NcclCommunicator *comm;
  comm::ReduceOp op;
  /// Whether it reduces buffers of the GRADIENTS arena:
  /// GradientReduceOverlap moves the steps of the optimizer's leading
  /// reductions of those into backward, and the run it takes ends at the
  /// first reduction of another buffer, which must be a step of its own.
  bool gradients;
  std::vector<Span> spans; // never empty

  void add(const Span &s) {
    Span &last = spans.back();
    if (last.in == last.out && s.in == s.out && last.out + last.count == s.out)
      last.count += s.count;
    else
      spans.push_back(s);
  }
};

Status launchAllReduces(const AllReduceGroup &g, cudaStream_t stream) {
  for (const AllReduceGroup::Span &s : g.spans)
    if (s.in != s.out)
      MT_CUDA_CHECK(cudaMemcpyAsync(s.out, s.in, s.count * sizeof(float),
                                    cudaMemcpyDeviceToDevice, stream));
  g.comm->setStream(stream);
  return g.comm->grouped([&]() -> Status {
    for (const AllReduceGroup::Span &s : g.spans)
      if (Status st = g.comm->allReduce(s.out, s.count, comm::DType::F32, g.op); !st)
        return st;
    return Status::ok();
  });
}

void allReduceBf16(Lowerer &L, const Attrs &a, comm::ReduceOp op);

/// An all_reduce (sum, max or mean) over the group of its axis: fp32 ones
/// (gradients, row statistics) grouped as below, bf16 activations alone.
void allReduce(Lowerer &L, const Attrs &a) {
  const std::optional<comm::ReduceOp> kind = comm::reduceOpNamed(a.s("reduce"));
  if (!kind)
    return L.fail("all_reduce: reduce '" + a.s("reduce") + "' is not sum, max or mean");
  if (L.resources().arenas->storage(L.instruction().inputs(0)) ==
      DeviceArenas::Storage::Bf16Activation)
    return allReduceBf16(L, a, *kind);
  const float *in = L.f32In(0);
  float *out = L.f32Out(0);
  const size_t n = size_t(a.i("n"));
  const exec::RankContext *rank = L.resources().rank;
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  if (!group) { // an axis of size 1: the input is the result
    if (in != out)
      L.emit([=](cudaStream_t s) -> Status {
        MT_CUDA_CHECK(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        return Status::ok();
      });
    return;
  }
  auto *nccl = dynamic_cast<NcclCommunicator *>(group);
  if (!nccl)
    return L.fail("the group of axis '" + a.s("axis") +
                  "' is not an NCCL communicator (make the RankContext with "
                  "cuda::connectNccl)");
  const comm::ReduceOp op = *kind;
  const bool gradients = L.plan().buffers(L.instruction().inputs(0)).arena() == plan::GRADIENTS;
  if (auto *open = L.lastStepState<AllReduceGroup>();
      open && open->comm == nccl && open->op == op && open->gradients == gradients) {
    open->add({in, out, n});
    return;
  }
  auto pending =
      std::make_shared<AllReduceGroup>(AllReduceGroup{nccl, op, gradients, {{in, out, n}}});
  L.emitCollective([pending](cudaStream_t s) { return launchAllReduces(*pending, s); });
  L.setLastStepState(pending);
}

/// An all_reduce of a bf16 activation (the tensor-parallel sums), in place.
void allReduceBf16(Lowerer &L, const Attrs &a, comm::ReduceOp op) {
  const CollectiveOperand in = collectiveOperand(L, true, 0), out = collectiveOperand(L, false, 0);
  if (out.type != comm::DType::BF16)
    return L.fail("all_reduce: a bf16 input needs a bf16 output");
  const size_t n = size_t(a.i("n"));
  const exec::RankContext *rank = L.resources().rank;
  auto *nccl = dynamic_cast<NcclCommunicator *>(rank ? rank->group(a.s("axis")) : nullptr);
  if (rank && rank->group(a.s("axis")) && !nccl)
    return L.fail("the group of axis '" + a.s("axis") + "' is not an NCCL communicator");
  if (nccl && L.overlapsCompute()) {
    // Summed in the transfer stream's workspace: the output (often the
    // input itself) is written only where the compute stream waits.
    Resources *r = &L.resources();
    L.needTransferWorkspace(n * sizeof(bf16));
    L.emitOverlappedCollective(
        [=](cudaStream_t s) -> Status {
          MT_CUDA_CHECK(cudaMemcpyAsync(r->transferWorkspace, in.data, n * sizeof(bf16),
                                        cudaMemcpyDeviceToDevice, s));
          nccl->setStream(s);
          return nccl->allReduce(r->transferWorkspace, n, comm::DType::BF16, op);
        },
        {L.instruction().inputs(0), L.instruction().outputs(0)},
        [=](cudaStream_t s) -> Status {
          MT_CUDA_CHECK(cudaMemcpyAsync(out.data, r->transferWorkspace, n * sizeof(bf16),
                                        cudaMemcpyDeviceToDevice, s));
          return Status::ok();
        });
    return;
  }
  L.emitCollective([=](cudaStream_t s) -> Status {
    if (in.data != out.data)
      MT_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, n * sizeof(bf16),
                                    cudaMemcpyDeviceToDevice, s));
    if (!nccl) // an axis of size 1: the input is the result
      return Status::ok();
    nccl->setStream(s);
    return nccl->allReduce(out.data, n, comm::DType::BF16, op);
  });
}

/// Copies `outer` rows of `run` elements between a row-major [outer, parts,
/// run] tensor and the rank-major [parts, outer, run] blocks NCCL moves:
/// block r of `blocks` <-> columns [r·run, (r+1)·run) of `full`.
Status permuteBlocks(std::byte *full, std::byte *blocks, int64_t outer, int64_t run,
                     int64_t parts, size_t element, bool toBlocks, cudaStream_t s) {
  const size_t row = size_t(run) * element, block = size_t(outer) * row;
  for (int64_t r = 0; r < parts; ++r) {
    std::byte *column = full + size_t(r) * row, *slot = blocks + size_t(r) * block;
    if (toBlocks)
      MT_CUDA_CHECK(cudaMemcpy2DAsync(slot, row, column, size_t(parts) * row, row, size_t(outer),
                                      cudaMemcpyDeviceToDevice, s));
    else
      MT_CUDA_CHECK(cudaMemcpy2DAsync(column, size_t(parts) * row, slot, row, row, size_t(outer),
                                      cudaMemcpyDeviceToDevice, s));
  }
  return Status::ok();
}

/// A sequence-parallel all_gather or reduce_scatter of bf16 activations
/// that overlaps compute (Lowerer::overlapsCompute): on the transfer stream
/// into its workspace, reading only the input meanwhile; the gathered
/// blocks are put in place (permuted), or the reduced shard copied, on the
/// compute stream where it waits.
void overlappedGatherOrScatter(Lowerer &L, NcclCommunicator *nccl, CollectiveOperand in,
                               CollectiveOperand out, int64_t outer, int64_t run,
                               int64_t parts, bool gather, std::optional<comm::ReduceOp> op) {
  const size_t element = comm::sizeOf(in.type), count = size_t(outer * run);
  const size_t blocksBytes = count * size_t(parts) * element;
  L.needTransferWorkspace(blocksBytes + (gather ? 0 : count * element)); // + the shard
  Resources *r = &L.resources();
  auto blocks = [r] { return static_cast<std::byte *>(r->transferWorkspace); };
  Launch launch = [=](cudaStream_t s) -> Status {
    nccl->setStream(s);
    if (gather)
      return nccl->allGather(in.data, blocks(), count, in.type);
    MT_CUDA_RETURN_IF_ERROR(permuteBlocks(static_cast<std::byte *>(in.data), blocks(), outer,
                                          run, parts, element, true, s));
    return nccl->reduceScatter(blocks(), blocks() + blocksBytes, count, in.type, *op);
  };
  Launch finish = [=](cudaStream_t s) -> Status {
    if (gather)
      return permuteBlocks(static_cast<std::byte *>(out.data), blocks(), outer, run, parts,
                           element, false, s);
    MT_CUDA_CHECK(cudaMemcpyAsync(out.data, blocks() + blocksBytes, count * element,
                                  cudaMemcpyDeviceToDevice, s));
    return Status::ok();
  };
  const plan::Instruction &instr = L.instruction();
  L.emitOverlappedCollective(std::move(launch), {instr.inputs(0), instr.outputs(0)},
                             std::move(finish));
}

/// Runs `copies` (in elements of `element` bytes) from `src` to `dst`.
Status copyStrided(const std::vector<kernels::StridedCopy> &copies, const void *src, void *dst,
                   size_t element, cudaStream_t s) {
  const auto *from = static_cast<const std::byte *>(src);
  auto *to = static_cast<std::byte *>(dst);
  for (const kernels::StridedCopy &c : copies)
    MT_CUDA_CHECK(cudaMemcpy2DAsync(to + size_t(c.dst) * element, size_t(c.dstPitch) * element,
                                    from + size_t(c.src) * element, size_t(c.srcPitch) * element,
                                    size_t(c.width) * element, size_t(c.rows),
                                    cudaMemcpyDeviceToDevice, s));
  return Status::ok();
}

/// A load_balanced all_gather (cpu: allGather): the rank-major blocks NCCL
/// gathers into the workspace, each rank's two chunks then put in place
/// (kernels::allGatherUnpack).
void gatherLoadBalanced(Lowerer &L, NcclCommunicator *nccl, CollectiveOperand in,
                        CollectiveOperand out, int64_t outer, int64_t run, int64_t parts) {
  auto unpack = kernels::allGatherUnpack(outer, run, parts, true);
  if (!unpack)
    return L.fail(unpack.message());
  const size_t element = comm::sizeOf(in.type), count = size_t(outer * run);
  L.needWorkspace(count * size_t(parts) * element);
  Resources *r = &L.resources();
  L.emitCollective([=, copies = *unpack](cudaStream_t s) -> Status {
    nccl->setStream(s);
    MT_CUDA_RETURN_IF_ERROR(nccl->allGather(in.data, r->workspace, count, in.type));
    return copyStrided(copies, r->workspace, out.data, element, s);
  });
}

/// The distributed optimizer's all_gather of a bucket's updated weights
/// from the rank's master shard (plan::MasterShard): AdamW wrote the
/// shard's bf16 values into the rank's slice of the bucket's shadow, which
/// NCCL gathers in place in bf16, as Megatron-Core gathers its bf16 params;
/// the bucket has no fp32 copy on the GPU.
void gatherWeightShadows(Lowerer &L, const Attrs &a) {
  const int64_t run = a.i("run"), parts = a.i("parts");
  NcclCommunicator *nccl = ncclGroupOf(L, a, parts);
  const DeviceArenas &arenas = *L.resources().arenas;
  const plan::Instruction &instr = L.instruction();
  bf16 *slice = arenas.bf16Data(instr.inputs(0)), *bucket = arenas.bf16Data(instr.outputs(0));
  if (!nccl)
    return;
  // NCCL's in-place all-gather: the rank's block at its place in the group.
  if (a.i("outer") != 1 || !slice || !bucket || slice != bucket + int64_t(nccl->rank()) * run)
    return L.fail("all_gather: expects the master shard's bf16 slice of its bucket's shadow, at "
                  "the rank's place in the group of '" + a.s("axis") +
                  "', gathered along the first dimension (outer 1)");
  const size_t count = size_t(run);
  L.emitCollective([=](cudaStream_t s) -> Status {
    nccl->setStream(s);
    return nccl->allGather(slice, bucket, count, comm::DType::BF16);
  });
}

/// all_gather (sequence parallelism; the distributed optimizer's updated
/// weight shards) and reduce_scatter (its gradient, the row-parallel
/// outputs; the distributed optimizer's gradient buckets, summed or
/// averaged): along the first dimension (outer 1) NCCL reads and writes the
/// operands directly (in place for the shard views of the buckets); along a
/// middle one through the rank-major blocks in the workspace. A
/// load_balanced all_gather (packed documents' position ids under
/// cp_comm_type a2a) always goes through them: each rank's block is two
/// chunks of the sequence (gatherLoadBalanced).
void gatherOrScatter(Lowerer &L, const Attrs &a, bool gather) {
  const int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
  if (gather && L.resources().arenas->isMasterShard(L.instruction().inputs(0)))
    return gatherWeightShadows(L, a);
  NcclCommunicator *nccl = ncclGroupOf(L, a, parts);
  const CollectiveOperand in = collectiveOperand(L, true, 0), out = collectiveOperand(L, false, 0);
  if (!nccl)
    return;
  if (in.type != out.type)
    return L.fail("input and output differ in their device dtype");
  if (!gather && L.plan().buffers(L.instruction().inputs(0)).dtype() == plan::I32)
    return L.fail("reduce_scatter: i32 operands cannot be summed");
  if (gather && a.i("load_balanced", 0))
    return gatherLoadBalanced(L, nccl, in, out, outer, run, parts);
  const std::optional<comm::ReduceOp> op = comm::reduceOpNamed(a.s("reduce"));
  if (!gather && (!op || *op == comm::ReduceOp::Max))
    return L.fail("reduce_scatter: reduce '" + a.s("reduce") + "' is not sum or mean");
  const size_t element = comm::sizeOf(in.type), count = size_t(outer * run);
  if (L.overlapsCompute())
    return overlappedGatherOrScatter(L, nccl, in, out, outer, run, parts, gather, op);
  if (outer == 1) {
    // Gathered weights (a bucket of the PARAMETERS arena) refresh their bf16
    // shadow, as AdamW does when it updates them itself.
    const uint32_t target = L.instruction().outputs(0);
    DeviceArenas &arenas = *L.resources().arenas;
    bf16 *shadow = gather && arenas.storage(target) == DeviceArenas::Storage::Parameter
                       ? arenas.bf16Data(target)
                       : nullptr;
    const int64_t total = int64_t(count) * parts;
    L.emitCollective([=](cudaStream_t s) -> Status {
      nccl->setStream(s);
      if (gather) {
        MT_CUDA_RETURN_IF_ERROR(nccl->allGather(in.data, out.data, count, in.type));
        return shadow ? castFloatToBf16(static_cast<const float *>(out.data), shadow, total, s)
                      : Status::ok();
      }
      return nccl->reduceScatter(in.data, out.data, count, in.type, *op);
    });
    return;
  }
  L.needWorkspace(count * size_t(parts) * element);
  Resources *r = &L.resources();
  L.emitCollective([=](cudaStream_t s) -> Status {
    auto *blocks = static_cast<std::byte *>(r->workspace);
    nccl->setStream(s);
    if (gather) {
      MT_CUDA_RETURN_IF_ERROR(nccl->allGather(in.data, blocks, count, in.type));
      return permuteBlocks(static_cast<std::byte *>(out.data), blocks, outer, run, parts,
                           element, false, s);
    }
    MT_CUDA_RETURN_IF_ERROR(permuteBlocks(static_cast<std::byte *>(in.data), blocks, outer, run,
                                          parts, element, true, s));
    return nccl->reduceScatter(blocks, out.data, count, in.type, *op);
  });
}

/// all_slice: this rank's column block of a replicated fp32 [outer,
/// parts·run] tensor (the distributed optimizer's shard of a weight bucket),
/// a device copy, or nothing when the output is that block (a shard view);
/// the rank's coordinate is its place in the axis' group.
void allSlice(Lowerer &L, const Attrs &a) {
  const int64_t outer = a.i("outer"), run = a.i("run"), parts = a.i("parts");
  // The rank's master shard (plan::MasterShard) is the slice itself.
  if (L.resources().arenas->isMasterShard(L.instruction().outputs(0)))
    return;
  NcclCommunicator *nccl = ncclGroupOf(L, a, parts);
  const CollectiveOperand in = collectiveOperand(L, true, 0), out = collectiveOperand(L, false, 0);
  if (!nccl)
    return;
  if (in.type != comm::DType::F32 || out.type != comm::DType::F32)
    return L.fail("all_slice: expects fp32 operands (a weight bucket and a 32-bit activation)");
  const size_t row = size_t(run) * sizeof(float);
  const auto *column = static_cast<const std::byte *>(in.data) + size_t(nccl->rank()) * row;
  if (outer == 1 && out.data == column)
    return; // in place: AdamW updates the bucket's slice itself
  L.emit([=](cudaStream_t s) -> Status {
    MT_CUDA_CHECK(cudaMemcpy2DAsync(out.data, row, column, size_t(parts) * row, row,
                                    size_t(outer), cudaMemcpyDeviceToDevice, s));
    return Status::ok();
  });
}

/// ring_shift (ring attention's keys and values, and their gradients the
/// other way): this rank's block to the next rank on the axis' ring (the
/// previous one with `reverse`), the previous one's into the output, as
/// one grouped ncclSend/ncclRecv pair (so that an odd ring cannot deadlock;
/// cpu: ringShift) on the transfer stream, overlapping the instructions
/// after it up to the first that touches its operands (on the compute
/// stream with Resources::overlapTransfers off).
void ringShift(Lowerer &L, const Attrs &a) {
  const CollectiveOperand in = collectiveOperand(L, true, 0),
                         out = collectiveOperand(L, false, 0);
  if (in.type != out.type)
    return L.fail("ring_shift: input and output differ in their device dtype");
  if (in.data == out.data)
    return L.fail("ring_shift: expects distinct input and output buffers (a transfer in "
                  "place would overwrite the block it sends)");
  const size_t n = size_t(a.i("n"));
  const exec::RankContext *rank = L.resources().rank;
  comm::Communicator *group = rank ? rank->group(a.s("axis")) : nullptr;
  if (!group) { // one rank on the axis: its block comes back to it
    L.emit([=](cudaStream_t s) -> Status {
      MT_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, n * comm::sizeOf(in.type),
                                    cudaMemcpyDeviceToDevice, s));
      return Status::ok();
    });
    return;
  }
  auto *nccl = dynamic_cast<NcclCommunicator *>(group);
  if (!nccl)
    return L.fail("the group of axis '" + a.s("axis") + "' is not an NCCL communicator");
  const int size = nccl->size(), shift = a.i("reverse", 0) ? size - 1 : 1;
  const int to = (nccl->rank() + shift) % size, from = (nccl->rank() + size - shift) % size;
  Launch transfer = [=](cudaStream_t s) -> Status {
    nccl->setStream(s);
    return nccl->grouped([&]() -> Status {
      MT_CUDA_RETURN_IF_ERROR(nccl->send(in.data, n, in.type, to));
      return nccl->recv(out.data, n, out.type, from);
    });
  };
  if (L.resources().overlapTransfers)
    L.emitOverlappedCollective(std::move(transfer),
                               {L.instruction().inputs(0), L.instruction().outputs(0)});
  else
    L.emitCollective(std::move(transfer));
}

/// all_to_all (cp_comm_type a2a; cpu: allToAll): the input's pieces packed
/// into rank-major blocks in the workspace, exchanged as grouped
/// ncclSend/ncclRecv, and unpacked into the output, the packing and
/// unpacking as strided device copies (runtime/kernels/AllToAll.h).
void allToAll(Lowerer &L, const Attrs &a) {
  Expected<kernels::AllToAllLayout> layout = kernels::allToAllLayoutOf(a);
  if (!layout)
    return L.fail(layout.status().message());
  NcclCommunicator *nccl = ncclGroupOf(L, a, layout->parts);
  const CollectiveOperand in = collectiveOperand(L, true, 0), out = collectiveOperand(L, false, 0);
  if (!nccl)
    return;
  if (in.type != out.type)
    return L.fail("all_to_all: input and output differ in their device dtype");
  const size_t element = comm::sizeOf(in.type), piece = size_t(layout->pieceElements()),
               blocks = piece * size_t(layout->parts) * element;
  L.needWorkspace(2 * blocks);
  Resources *r = &L.resources();
  L.emitCollective([=, pack = kernels::allToAllPack(*layout),
                    unpack = kernels::allToAllUnpack(*layout)](cudaStream_t s) -> Status {
    auto *sent = static_cast<std::byte *>(r->workspace), *received = sent + blocks;
    MT_CUDA_RETURN_IF_ERROR(copyStrided(pack, in.data, sent, element, s));
    const std::vector<size_t> counts(size_t(nccl->size()), piece);
    nccl->setStream(s);
    MT_CUDA_RETURN_IF_ERROR(nccl->allToAllV(sent, counts, received, counts, in.type));
    return copyStrided(unpack, received, out.data, element, s);
  });
}

} // namespace

void addCollectiveLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::all_reduce] = allReduce;
  t[Op::all_gather] = [](Lowerer &L, const Attrs &a) { gatherOrScatter(L, a, true); };
  t[Op::reduce_scatter] = [](Lowerer &L, const Attrs &a) { gatherOrScatter(L, a, false); };
  t[Op::all_slice] = allSlice;
  t[Op::ring_shift] = ringShift;
  t[Op::all_to_all] = allToAll;
}

} // namespace mt::cuda
