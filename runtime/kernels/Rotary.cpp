// Rotary parameters from a plan instruction, and Hugging Face's fp32
// inverse frequencies (rope_theta, llama3 scaling).
#include "runtime/kernels/Rotary.h"

#include "runtime/plan/OpRegistry.h"

#include <numbers>

namespace mt::kernels {
namespace {

/// The llama3 rescaling of one fp32 inverse frequency, step by step as
/// transformers' `_compute_llama3_parameters` runs it on fp32 tensors. Python
/// scalars are cast to fp32 by the tensor ops, and `scalar / tensor` is
/// `tensor.reciprocal() * scalar` in torch, hence the reciprocals.
float llama3Rescale(float invFreq, const RotaryParams &p) {
  const float factor = static_cast<float>(p.scalingFactor);
  const float lowFactor = static_cast<float>(p.lowFreqFactor);
  const double oldLen = static_cast<double>(p.originalMaxPosition);
  const float lowWavelen = static_cast<float>(oldLen / p.lowFreqFactor);
  const float highWavelen = static_cast<float>(oldLen / p.highFreqFactor);
  const float twoPi = static_cast<float>(2.0 * std::numbers::pi);
  const float bandWidth =
      static_cast<float>(p.highFreqFactor - p.lowFreqFactor);

  const float wavelen = (1.0f / invFreq) * twoPi;
  const float scaled = wavelen > lowWavelen ? invFreq / factor : invFreq;
  const float ratio = (1.0f / wavelen) * static_cast<float>(oldLen);
  const float smooth = (ratio - lowFactor) / bandWidth;
  const float oneMinus = 1.0f - smooth;
  const float low = (oneMinus * scaled) / factor;
  const float high = smooth * scaled;
  const float smoothed = low + high;
  const bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
  return medium ? smoothed : scaled;
}

} // namespace

RotaryParams rotaryParamsOf(const plan::Attrs &a) {
  RotaryParams p;
  p.theta = a.f("theta");
  p.scalingFactor = a.f("scaling_factor", 0);
  p.lowFreqFactor = a.f("low_freq_factor", 0);
  p.highFreqFactor = a.f("high_freq_factor", 0);
  p.originalMaxPosition = a.i("original_max_position", 0);
  return p;
}

// Each value is HF's fp32 result (exponent 2i/D rounded to fp32, fp32 pow
// and reciprocal, the llama3 steps in fp32), returned widened to double.
void rotaryInverseFrequencies(const RotaryParams &p, int64_t headDim,
                              double *invFreq) {
  const double theta = static_cast<float>(p.theta);
  const float dim = static_cast<float>(headDim);
  for (int64_t i = 0; i < headDim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / dim;
    const float power = static_cast<float>(std::pow(theta, exponent));
    float value = 1.0f / power;
    if (p.scalingFactor != 0)
      value = llama3Rescale(value, p);
    invFreq[i] = value;
  }
}

} // namespace mt::kernels
