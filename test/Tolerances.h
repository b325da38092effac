// The one table of numerical tolerances of the test suite, by what is
// compared. Every numerical test takes its bound from here; each bound says
// where it comes from.
#ifndef MT_TEST_TOLERANCES_H
#define MT_TEST_TOLERANCES_H

namespace mt::tolerance {

// Each bound below is derived from the computation it checks, or measured
// with a stated margin. u = 2^-24 (about 6.0e-8) is fp32's unit roundoff:
// one rounding changes a value by at most u of it (half an ulp).
inline constexpr double kFp32Unit = 0x1p-24;

/// fp32 kernel vs an fp64 reference of the same formula: relative to the
/// largest magnitude of the reference, plus an absolute floor. Each output
/// of the CPU kernels is a sum of K <= ~10^3 terms no larger than the
/// largest output (inputs of order 1); the rounding errors of such a sum
/// grow like sqrt(K) u (the random-walk model, Higham, Accuracy and
/// Stability, 2.8 and 4.2): 32 u = 1.9e-6 for K = 1024. Worst measured over
/// the CPU kernel tests: 2.5e-7 (attention, head_dim 64).
inline constexpr double kFp32KernelRel = 2e-6;
/// An output that is 0 in exact arithmetic (terms that cancel, masked rows)
/// keeps a few roundings of its O(1) terms: a few u.
inline constexpr double kFp32KernelAbs = 1e-7;

/// fp32 analytic gradient vs fp64 central finite differences of the fp64
/// reference (step h = kFiniteDifferenceStep), relative to max |gradient|.
/// Two error sources: the differences' truncation h^2/6 |f'''| (1.7e-7 of
/// an O(1) third derivative) and the fp32 gradient's own rounding
/// (kFp32KernelRel). Worst measured over the CPU kernel tests: 3.9e-7; the
/// bound leaves a margin of 10. A gradient 0.05% off (scaled by 1.0005) is
/// 125 times outside it (LossTest.GradientCheckRejectsAGradientScaledBy1Point0005).
inline constexpr double kFiniteDifferenceStep = 1e-3;
inline constexpr double kGradientRel = 4e-6;
/// A gradient element that is 0 in exact arithmetic keeps the roundings of
/// its fp32 terms, sqrt(K) u |term| for terms of order 1 (measured: 4.2e-8).
inline constexpr double kGradientAbs = 1e-6;

/// A value computed by a short chain of fp32 operations vs the same formula
/// in fp64, relative to that value itself (rotary inverse frequencies: a few
/// roundings, amplified up to ~30 ulp by pow's exponent and by the llama3
/// blend's 1 - s cancellation).
inline constexpr double kFp32ChainRel = 4e-6;

/// Our fp32 CPU training step vs transformers' fp32 CPU step on the same
/// weights and batch (test/hf): two fp32 computations that sum in different
/// orders through every layer, so no per-operation bound is tight; these are
/// the worst values measured on the fixtures (tiny Llama, Qwen2, Qwen3: 2
/// layers, hidden 64, seq 16) with a margin of about 8:
///   loss 9.5e-8 (relative), logits 6.2e-7 of max |logit|, gradients 1.7e-6
///   of each tensor's max |gradient|, gradient norm 1.1e-7 (relative).
inline constexpr double kHfLossRel = 1e-6;
inline constexpr double kHfLogitsRel = 5e-6;
inline constexpr double kHfGradientRel = 1.5e-5;
inline constexpr double kHfGradNormRel = 1e-6;
/// Weights after one AdamW step (lr 1e-3): the first step moves a weight by
/// about lr * g / (|g| + eps), i.e. lr * sign(g) wherever |g| >> eps, so
/// gradient differences of kHfGradientRel change it by rounding only: the
/// weights (|w| < 0.1) keep a few fp32 roundings of u * 0.1 each
/// (measured: 1.2e-7).
inline constexpr double kHfUpdatedAbs = 1e-6;

/// Weights after several steps whose AdamW eps dominates sqrt(v) (the
/// update is then about lr * m / eps, linear in the gradient): the
/// movement from the initial weights inherits the gradients' relative
/// error (kHfGradientRel of the tensor's largest gradient), summed over a
/// few steps; held elementwise against the tensor's largest movement with
/// a 2.5x margin over 4 steps x kHfGradientRel.
inline constexpr double kHfMovementRel = 1e-3;

/// A value that went through one fp64 -> fp32 rounding (2^-24 relative).
inline constexpr double kFp32RoundingRel = 1.2e-7;

/// A bf16 CUDA kernel (bf16 inputs and outputs, fp32 math) vs the fp32 CPU
/// reference on the same bf16-exact inputs, relative to the largest
/// magnitude of the reference: each output is rounded once to bf16 (at
/// most 2^-8 = 3.9e-3 of its value), plus fp32 reordering far below that.
inline constexpr double kBf16Rel = 4e-3;

/// A bf16 output formed by adding to an old bf16 value through cuBLASLt's
/// beta = 1 (the product is rounded before the sum is): two roundings.
inline constexpr double kBf16TwoRoundingsRel = 8e-3;

/// The routed experts on cuBLASLt (runtime/cuda/MoE.h, ExpertGemm::Cublaslt;
/// Grouped and our Kernel keep the same bf16 intermediates) vs the fp32 CPU
/// reference on the same bf16-exact inputs, relative to the
/// largest magnitude of the reference: the gate and up pre-activations, the
/// activation, dact and the SwiGLU's gradients enter the next GEMM as bf16
/// operands, so an operand carries up to four bf16 roundings (2^-9 of its
/// value each) and a bf16 output one more: 5 x 2^-9 = 9.8e-3 of the
/// magnitude of its terms. A rounding model of the path against fp64 on the
/// test's data and shapes gives at most 6.4e-3 (dgate at 4 rows per expert,
/// where sums of a few terms do not average the roundings out); the bound
/// leaves a margin of 2.5.
inline constexpr double kBf16OperandsRel = 1.6e-2;

/// bf16 flash attention (out, dq, dk, dv) vs the fp64-accumulated CPU
/// reference on the same bf16-exact inputs, relative to the largest
/// magnitude of the reference: two bf16 roundings, that of the output
/// (kBf16Rel) and that of the probabilities (or score gradients) fed to the
/// tensor cores as operands, each at most 2^-8 of its value.
inline constexpr double kBf16AttentionRel = 1e-2;

/// A CUDA kernel that performs the CPU reference's own fp32 operations in
/// the same order (embedding gather/scatter-add, casts, AdamW, rotary with
/// the shared cos/sin table): the same bits.
inline constexpr double kBitExact = 0.0;

/// An fp32 result accumulated on the GPU in another order (tensor cores,
/// block trees; bf16-exact products) vs the CPU's fp32/fp64 reference,
/// relative to its largest magnitude: sums of up to K ~ 10^5 terms (weight
/// gradients, norm dw, the loss, sums of squares) round by about sqrt(K) u
/// = 1.9e-5 (as kFp32KernelRel); the bound leaves a margin of 5.
inline constexpr double kFp32AccumRel = 1e-4;

/// A parallel layout vs the single rank on the CPU backend (fp32): the same
/// math summed in another order (partial sums over tp, means over dp), the
/// loss and gradient norm of each step relative to their value. Worst
/// measured over the 36 layouts of test/parallel: 1.1e-7 (margin 9).
inline constexpr double kParallelRel = 1e-6;
/// The weights after the run (3 AdamW steps, lr 1e-3, eps 1e-4), relative
/// to the larger of max |weight| and the run's largest update 3 lr: AdamW
/// moves a weight by lr m / (sqrt(v) + eps), so a gradient difference dg
/// between layouts moves it by up to lr dg / eps per step, 10 dg here.
/// Worst measured: 1.2e-5 (a v_proj bias, tp2; margin 8).
inline constexpr double kParallelWeightRel = 1e-4;

/// A row packing several documents (neat_packing) vs the same documents one
/// per row, fp32 CPU step: the same terms summed in another order (GEMMs
/// over 24 vs 72 token rows), each gradient relative to its tensor's
/// largest. Worst measured (tiny Qwen3, 3 documents): 3.2e-7 (margin 12).
inline constexpr double kPackedGradientRel = 4e-6;

/// A whole training step of the CUDA backend (bf16 activations and
/// operands, fp32 accumulation, master weights and AdamW) vs the fp32 CPU
/// backend from the same weights and batches (test/runtime/cuda,
/// TrainingStepTest; bounds derived, their GPU measurement is pending).
///
/// Step 1, relative to the CPU's value: the loss differs by the bf16
/// rounding of activations, which averages out over the tokens of the mean
/// (well below 2^-8); the gradient norm, dominated by its largest elements,
/// by that of the activations and of their gradients: two bf16 roundings of
/// at most 2^-8 each (as kBf16AttentionRel).
inline constexpr double kBf16FirstStepLossRel = 4e-3;
inline constexpr double kBf16GradNormRel = 1e-2;
/// The weights after step 1: AdamW's first update is lr g / (|g| + eps),
/// lr sign(g) wherever |g| >> eps, so the backends differ only where the
/// sign of g differs, i.e. where |g| is below the CUDA gradient's error
/// (kBf16Rel of the tensor's largest |g|): a few percent of the weights for
/// bell-shaped gradients (3% lie below 0.04 sigma, for max |g| ~ 10 sigma),
/// each by 2 lr. Held to each tensor's mean |difference|, in units of lr.
inline constexpr double kBf16FirstUpdateMeanLr = 0.1;
/// Every step of 20, relative to the CPU's value. The weights the first
/// update moved differently are those whose gradient is near 0: they change
/// the loss at second order only, so the loss stays within a few times the
/// first step's difference; the gradient norm moves with them at first
/// order (the Hessian times their 2 lr), bounded here at 3 times step 1's.
inline constexpr double kBf16TrainingLossRel = 1e-2;
inline constexpr double kBf16TrainingGradNormRel = 3e-2;

} // namespace mt::tolerance

#endif // MT_TEST_TOLERANCES_H
