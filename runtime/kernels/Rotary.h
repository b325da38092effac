// Rotary position embedding as both backends compute it: its parameters,
// decoded from a rotary instruction, and Hugging Face's fp32 inverse
// frequencies and angles, so that the CPU and CUDA kernels rotate by
// bit-identical factors.
#ifndef MT_RUNTIME_KERNELS_ROTARY_H
#define MT_RUNTIME_KERNELS_ROTARY_H

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

} // namespace mt::kernels

#endif // MT_RUNTIME_KERNELS_ROTARY_H
