// The plan's collectives on the GPU: NCCL calls on the compute stream, in
// the plan's order. Consecutive all-reduces over one group (the gradients
// of every parameter over dp) make one step, launched as one NCCL group,
// with buffers that follow each other in memory merged into one call.
// Collective steps run eagerly, never inside a captured CUDA graph.
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/NcclCommunicator.h"

namespace mt::cuda {
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

/// An fp32 all_reduce (sum, max or mean) over the group of its axis.
void allReduce(Lowerer &L, const Attrs &a) {
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
  const std::optional<comm::ReduceOp> kind = comm::reduceOpNamed(a.s("reduce"));
  if (!kind)
    return L.fail("all_reduce: reduce '" + a.s("reduce") + "' is not sum, max or mean");
  const comm::ReduceOp op = *kind;
  if (auto *open = L.lastStepState<AllReduceGroup>(); open && open->comm == nccl && open->op == op) {
    open->add({in, out, n});
    return;
  }
  auto pending = std::make_shared<AllReduceGroup>(AllReduceGroup{nccl, op, {{in, out, n}}});
  L.emitCollective([pending](cudaStream_t s) { return launchAllReduces(*pending, s); });
  L.setLastStepState(pending);
}

} // namespace

bool lowerCollectiveOp(Lowerer &L, const std::string &op, const Attrs &a) {
  if (op == "all_reduce")
    allReduce(L, a);
  else
    return false;
  return true;
}

} // namespace mt::cuda
