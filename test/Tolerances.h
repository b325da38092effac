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

} // namespace mt::tolerance

#endif // MT_TEST_TOLERANCES_H
