// The one table of numerical tolerances of the test suite, by what is
// compared. Every numerical test takes its bound from here.
#ifndef MT_TEST_TOLERANCES_H
#define MT_TEST_TOLERANCES_H

namespace mt::tolerance {

/// fp32 kernel vs an fp64 reference of the same formula: relative to the
/// largest magnitude of the reference, plus an absolute floor.
inline constexpr double kFp32KernelRel = 1e-5;
inline constexpr double kFp32KernelAbs = 1e-6;

/// fp32 analytic gradient vs fp64 central finite differences of the fp64
/// reference (step kFiniteDifferenceStep): relative to max |gradient|.
inline constexpr double kFiniteDifferenceStep = 1e-3;
inline constexpr double kGradientRel = 1e-3;
inline constexpr double kGradientAbs = 1e-5;

/// A value computed by a short chain of fp32 operations vs the same formula
/// in fp64, relative to that value itself (rotary inverse frequencies: a few
/// roundings, amplified up to ~30 ulp by pow's exponent and by the llama3
/// blend's 1 - s cancellation).
inline constexpr double kFp32ChainRel = 4e-6;

/// Our fp32 CPU training step vs transformers' fp32 CPU step on the same
/// weights and batch (test/hf): both sum in different orders, so values
/// agree to a few fp32 ulps of the largest magnitude of each tensor.
inline constexpr double kHfLossRel = 1e-5;
inline constexpr double kHfLogitsRel = 1e-5;   // of max |logit|
inline constexpr double kHfGradientRel = 1e-4; // of max |gradient| per tensor
/// Weights after one AdamW step: the first step moves every weight by about
/// lr * sign(gradient), so differences stay far below lr (1e-3).
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
/// relative to its largest magnitude: a few fp32 ulps times the square root
/// of up to ~10^5 terms (weight gradients, norm dw, the loss, sums of squares).
inline constexpr double kFp32AccumRel = 1e-4;

/// A parallel layout vs the single rank on the CPU backend (fp32): the same
/// math summed in another order (partial sums over tp, means over dp).
inline constexpr double kParallelRel = 1e-5;

/// A whole training step of the CUDA backend (bf16 activations and
/// operands, fp32 accumulation, master weights and AdamW) vs the fp32 CPU
/// backend from the same weights and batches: the loss of the first step
/// differs by the bf16 rounding of activations, which averages out over
/// the tokens of the mean (well below 2^-8); later steps add the
/// divergence of the weights, each AdamW step moving a weight by at most
/// about lr, a relative change of the loss of order lr * steps. Held per
/// step, relative to the CPU's loss.
inline constexpr double kBf16FirstStepLossRel = 4e-3;
inline constexpr double kBf16TrainingLossRel = 2e-2;

} // namespace mt::tolerance

#endif // MT_TEST_TOLERANCES_H
