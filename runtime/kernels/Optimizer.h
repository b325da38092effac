// The optimizer step as both backends compute it: AdamW's hyperparameters,
// the learning rate of an lr_schedule instruction and the clipping factor,
// formed on the host once so that the CPU and CUDA steps agree bit for bit.
#ifndef MT_RUNTIME_KERNELS_OPTIMIZER_H
#define MT_RUNTIME_KERNELS_OPTIMIZER_H

#include <cstdint>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

/// One AdamW step's hyperparameters (torch.optim.AdamW's).
struct AdamWParams {
  double lr, beta1, beta2, eps, weightDecay; // as PyTorch's Python floats
  int64_t step;      // 1-based, for bias correction
  float gradScale;   // gradients are multiplied by this first (clipping)
};

/// The learning rate of an lr_schedule instruction for the 1-based update
/// `step` (skipped steps are not counted): linear warm-up over warmup_steps
/// to max_lr, then style "constant", "linear" or "cosine" decay to min_lr at
/// decay_steps, as Megatron-Core's OptimizerParamScheduler.get_lr at
/// num_steps = step - 1, the updates before it (its constructor calls
/// step(0)), so update 1 of a warm-up has rate 0. Styles "hf_constant",
/// "hf_constant_with_warmup", "hf_linear", "hf_cosine" and
/// "hf_cosine_with_min_lr" are transformers' schedules of those names
/// (get_scheduler), evaluated at t = step - 1.
double scheduledLearningRate(const plan::Attrs &schedule, int64_t step);

/// The factor clip_coefficient scales gradients by: min(1, maxNorm / (norm
/// + 1e-6)), as torch.nn.utils.clip_grad_norm_ (1 when maxNorm <= 0: no
/// clipping).
float clipCoefficient(double maxNorm, double norm);

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_OPTIMIZER_H
