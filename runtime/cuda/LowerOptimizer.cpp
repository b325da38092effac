// The optimizer program on the GPU: the gradients' sum of squares on the
// device (reduced there by the plan's all-reduces), its root read back once
// per step (the NaN/Inf check and the clipping factor are decided on the
// host, as the plan's check_finite asks), then multi-tensor AdamW with host
// scalars, writing every parameter's bf16 shadow as it updates the fp32
// master (or the shadow and the master's low bits, plan::masterRemainders).
// Expert gradients are scaled by 1 / (dp·cp) on the device first (mt.scale).
#include "runtime/cuda/AdamW.h"
#include "runtime/cuda/Add.h"
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/kernels/Optimizer.h"

#include <cmath>
#include <memory>

namespace mt::cuda {
namespace {

using plan::Attrs;

/// The local part of the gradient norm, on the device: the collectives
/// that follow reduce it there.
void sumSquares(Lowerer &L, const Attrs &a) {
  const plan::Instruction &in = L.instruction();
  if (in.inputs_size() > 0 &&
      DeviceArenas::isHostArena(L.plan().buffers(in.inputs(0)).arena()))
    return hostSumSquares(L, a); // grad_offload
  const std::string replicated = a.s("replicated");
  const int64_t replicas = a.i("replicas", 1);
  if (replicas < 1)
    return L.fail("sum_squares: replicas is " + std::to_string(replicas) + ", expected >= 1");
  std::vector<FloatSpan> whole, shared;
  for (int i = 0; i < in.inputs_size(); ++i) {
    const FloatSpan span{L.f32In(i), plan::elementsOf(L.plan().buffers(in.inputs(i)))};
    (size_t(i) < replicated.size() && replicated[i] == '1' ? shared : whole).push_back(span);
  }
  float *out = L.f32Out(0);
  auto sums = L.resources().allocate(2 * sizeof(double));
  if (!sums)
    return L.fail(sums.message());
  L.needWorkspace(std::max(sumOfSquaresWorkspaceBytes(whole), sumOfSquaresWorkspaceBytes(shared)));
  Resources *r = &L.resources();
  double *deviceSums = static_cast<double *>(*sums), share = 1.0 / double(replicas);
  L.emit([=](cudaStream_t s) {
    return weightedSumOfSquares(whole, shared, share, deviceSums, out, r->workspace, s);
  });
}

/// scale: an fp32 gradient (or its shard) times the constant factor, in
/// place as plans emit it, or into an activation plan::wideActivations
/// keeps in fp32.
void scaleOp(Lowerer &L, const Attrs &a) {
  const float *x = L.f32In(0);
  float *y = L.f32Out(0);
  const int64_t n = a.i("n");
  const float factor = float(a.f("factor"));
  L.emit([=](cudaStream_t s) { return scale(x, y, n, factor, s); });
}

/// The norm read back once per step: check_finite and the clipping factor
/// are decided on the host.
void sqrtOp(Lowerer &L, const Attrs &) {
  const float *sum = L.f32In(0);
  float *norm = L.hostScalar(L.instruction().outputs(0));
  L.emit(
      [=](cudaStream_t s) -> Status {
        float total = 0;
        MT_CUDA_CHECK(cudaMemcpyAsync(&total, sum, sizeof(float), cudaMemcpyDeviceToHost, s));
        MT_CUDA_CHECK(cudaStreamSynchronize(s));
        *norm = std::sqrt(std::max(total, 0.0f));
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
  if (L.plan().buffers(in.inputs(0)).arena() == plan::HOST_PARAMETERS)
    return hostAdamW(L, a); // optimizer_offload
  for (int i : {0, 2, 3})
    if (in.outputs(i == 0 ? 0 : i - 1) != in.inputs(i))
      return L.fail("adamw updates its parameter and moments in place");
  AdamWGroup g{{}, a.f("beta1"), a.f("beta2"), a.f("eps"), L.hostIn(4), L.hostIn(6),
               L.hostI64In(5)};
  // The parameter's bf16 shadow is written by the same pass; where the
  // master is that shadow and its low bits (plan::masterRemainders), there
  // is no fp32 copy to update.
  const DeviceArenas &arenas = *L.resources().arenas;
  uint16_t *remainder = arenas.remainderData(in.inputs(0));
  AdamWTensor t{remainder ? nullptr : const_cast<float *>(L.f32In(0)), L.f32In(1),
                const_cast<float *>(L.f32In(2)), const_cast<float *>(L.f32In(3)), a.i("n"),
                arenas.bf16Data(in.inputs(0)), a.f("weight_decay"), remainder};
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

void addOptimizerLowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::sum_squares] = sumSquares;
  t[Op::scale] = scaleOp;
  t[Op::sqrt] = sqrtOp;
  t[Op::check_finite] = [](Lowerer &L, const Attrs &) { L.emitCheck(L.hostIn(0)); };
  t[Op::clip_coefficient] = clipCoefficient;
  t[Op::lr_schedule] = lrSchedule;
  t[Op::adamw] = adamw;
}

} // namespace mt::cuda
