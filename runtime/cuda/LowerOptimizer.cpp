// The optimizer program on the GPU: the gradients' sum of squares on the
// device, read back once per step (the NaN/Inf check and the clipping
// factor are decided on the host, as the plan's check_finite asks), then
// multi-tensor AdamW with host scalars, writing every parameter's bf16
// shadow as it updates the fp32 master.
#include "runtime/cuda/AdamW.h"
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/kernels/Optimizer.h"

#include <cmath>
#include <memory>

namespace mt::cuda {
namespace {

using plan::Attrs;

void globalNorm(Lowerer &L, const Attrs &a) {
  const plan::Instruction &in = L.instruction();
  std::vector<FloatSpan> spans;
  for (int i = 0; i < in.inputs_size(); ++i) {
    const float *g = L.f32In(i);
    int64_t n = 1;
    for (int64_t d : L.plan().buffers(in.inputs(i)).shape())
      n *= d;
    spans.push_back({g, n});
  }
  float *norm = L.hostScalar(in.outputs(0));
  auto sum = L.resources().allocate(sizeof(double));
  if (!sum)
    return L.fail(sum.message());
  L.needWorkspace(sumOfSquaresWorkspaceBytes(spans));
  Resources *r = &L.resources();
  double *deviceSum = static_cast<double *>(*sum);
  // Pipeline stages hold disjoint parameters: their sums add up over pp.
  const std::string stages = a.s("pipeline_axis");
  comm::Communicator *pp = stages.empty() || !r->rank ? nullptr : r->rank->group(stages);
  L.emit(
      [=](cudaStream_t s) -> Status {
        MT_CUDA_RETURN_IF_ERROR(sumOfSquares(spans, deviceSum, r->workspace, s));
        double total = 0;
        MT_CUDA_CHECK(cudaMemcpyAsync(&total, deviceSum, sizeof(double),
                                      cudaMemcpyDeviceToHost, s));
        MT_CUDA_CHECK(cudaStreamSynchronize(s));
        // As the CPU backend: the fp64 sum rounded to fp32, summed over pp
        // on the host (a scalar), then the root.
        float squares = float(total);
        if (pp)
          MT_CUDA_RETURN_IF_ERROR(pp->allReduceHost(&squares, 1, comm::ReduceOp::Sum));
        *norm = std::sqrt(std::max(squares, 0.0f));
        return Status::ok();
      },
      /*onHost=*/true);
}

void clipCoefficient(Lowerer &L, const Attrs &a) {
  const float *norm = L.hostIn(0);
  float *out = L.hostScalar(L.instruction().outputs(0));
  double maxNorm = a.f("max_norm");
  L.emit(
      [=](cudaStream_t) {
        *out = kernels::clipCoefficient(maxNorm, *norm);
        return Status::ok();
      },
      /*onHost=*/true);
}

void lrSchedule(Lowerer &L, const Attrs &) {
  const int64_t *step = L.hostI64In(0);
  float *out = L.hostScalar(L.instruction().outputs(0));
  const plan::Instruction *in = &L.instruction();
  L.emit(
      [=](cudaStream_t) {
        *out = float(kernels::scheduledLearningRate(plan::Attrs(*in), *step));
        return Status::ok();
      },
      /*onHost=*/true);
}

/// Consecutive adamw instructions with the same hyperparameters and
/// scalars: one multi-tensor launch (weight decay is per tensor).
struct AdamWGroup {
  std::vector<AdamWTensor> tensors;
  double beta1, beta2, eps;
  const float *lr, *gradScale;
  const int64_t *step;
  bool same(const AdamWGroup &o) const {
    return beta1 == o.beta1 && beta2 == o.beta2 && eps == o.eps && lr == o.lr &&
           gradScale == o.gradScale && step == o.step;
  }
};

void adamw(Lowerer &L, const Attrs &a) {
  const plan::Instruction &in = L.instruction();
  for (int i : {0, 2, 3})
    if (in.outputs(i == 0 ? 0 : i - 1) != in.inputs(i))
      return L.fail("adamw updates its parameter and moments in place");
  AdamWGroup g{{}, a.f("beta1"), a.f("beta2"), a.f("eps"), L.hostIn(4), L.hostIn(6),
               L.hostI64In(5)};
  // The parameter's bf16 shadow is written by the same pass.
  AdamWTensor t{const_cast<float *>(L.f32In(0)), L.f32In(1), const_cast<float *>(L.f32In(2)),
                const_cast<float *>(L.f32In(3)), a.i("n"),
                L.resources().arenas->bf16Data(in.inputs(0)), a.f("weight_decay")};
  if (auto *open = L.lastStepState<AdamWGroup>(); open && open->same(g)) {
    open->tensors.push_back(t);
    return;
  }
  auto group = std::make_shared<AdamWGroup>(g);
  group->tensors.push_back(t);
  L.emit([group](cudaStream_t s) {
    const AdamWGroup &g = *group;
    // Every tensor carries its own weight decay.
    kernels::AdamWParams p{*g.lr, g.beta1, g.beta2, g.eps, 0.0, *g.step, *g.gradScale};
    return adamwStep(g.tensors, p, nullptr, s);
  });
  L.setLastStepState(group);
}

} // namespace

bool lowerOptimizerOp(Lowerer &L, const std::string &op, const Attrs &a) {
  if (op == "global_norm")
    globalNorm(L, a);
  else if (op == "check_finite")
    L.emitCheck(L.hostIn(0));
  else if (op == "clip_coefficient")
    clipCoefficient(L, a);
  else if (op == "lr_schedule")
    lrSchedule(L, a);
  else if (op == "adamw")
    adamw(L, a);
  else
    return false;
  return true;
}

} // namespace mt::cuda
