// Rotary position embedding as both backends compute it: its parameters,
// decoded from a rotary instruction, and Hugging Face's fp32 inverse
// frequencies and angles, so that the CPU and CUDA kernels rotate by
// bit-identical factors.
#ifndef MT_RUNTIME_KERNELS_ROTARY_H
#define MT_RUNTIME_KERNELS_ROTARY_H

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace mt::plan {
class Attrs;
}

namespace mt::kernels {

struct RotaryParams {
  double theta = 10000.0;
  /// Llama 3.1 "llama3" rope scaling; scalingFactor == 0 means none.
  double scalingFactor = 0, lowFreqFactor = 0, highFreqFactor = 0;
  int64_t originalMaxPosition = 0;
};

/// The rotary embedding of a rotary or rotary_grad instruction: attributes
/// theta, and when scaled scaling_factor, low_freq_factor, high_freq_factor
/// and original_max_position (runtime/plan/OpRegistry.cpp).
RotaryParams rotaryParamsOf(const plan::Attrs &rotary);

/// Inverse frequencies inv_freq[i], i < headDim/2, as Hugging Face computes
/// them (theta^(-2i/headDim), then the llama3 rescaling when set): HF's fp32
/// values, returned as double.
void rotaryInverseFrequencies(const RotaryParams &p, int64_t headDim, double *invFreq);

/// cos/sin of the angle position * invFreq as HF forms it: the product in
/// fp32 (an fp32 matmul with inner size 1), cos/sin evaluated in fp64 and
/// rounded to fp32: the (nearly always) correctly rounded value, which
/// torch's fp32 cos/sin (1-2 ulp on CPU and GPU) approximate, independent
/// of the libm.
inline void rotaryCosSin(int64_t position, double invFreq, float &cosOut, float &sinOut) {
  const float angle = static_cast<float>(position) * static_cast<float>(invFreq);
  cosOut = static_cast<float>(std::cos(static_cast<double>(angle)));
  sinOut = static_cast<float>(std::sin(static_cast<double>(angle)));
}

/// Rows of a rotary instruction's cos/sin table (the CUDA kernels look each
/// angle up there; the CPU computes it): every position the tokens of its
/// [batch, seq] slice can take, in rows of `rowLength` tokens (the plan's
/// training seq). Its tokens sit at their index, below seq; under context
/// parallelism (cpSize > 1: a context_parallel_axis) at their places in
/// the whole row, below seq x cpSize; with position ids (packed documents,
/// which a cp slice's rotary takes without a context_parallel_axis) at
/// their place in their document, which under cp goes past the slice's
/// length whenever a document started in an earlier chunk, and stays
/// below rowLength.
inline int64_t rotaryTableRows(int64_t seq, int64_t cpSize, int64_t rowLength) {
  return std::max(seq * cpSize, rowLength);
}

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_ROTARY_H
