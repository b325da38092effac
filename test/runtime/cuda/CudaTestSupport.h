// Helpers of the CUDA kernel tests: host bf16 rounding, device buffers,
// comparisons against the CPU reference, and the rows of the GPU report
// that tools/gpu-check.sh prints (appended to $MT_GPU_REPORT when set).
// Test code only: failures throw, and GoogleTest reports the exception.
#ifndef MT_TEST_RUNTIME_CUDA_CUDATESTSUPPORT_H
#define MT_TEST_RUNTIME_CUDA_CUDATESTSUPPORT_H

#include "runtime/support/Status.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mt::cudatest {

using bf16 = __nv_bfloat16;

inline void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

#define MT_ASSERT_OK(expr)                                                     \
  do {                                                                         \
    ::mt::Status mtTestStatus_ = (expr);                                       \
    ASSERT_TRUE(mtTestStatus_.isOk()) << mtTestStatus_.message();              \
  } while (0)

/// Round-to-nearest-even fp32 -> bf16 bits, NaN kept quiet (as CUDA's
/// __float2bfloat16_rn).
inline uint16_t bf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16Float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float roundBf16(float f) { return bf16Float(bf16Bits(f)); }

/// Uniform values in [lo, hi), already rounded to bf16 so that the GPU
/// (bf16) and the CPU (fp32) kernels see exactly the same inputs.
inline std::vector<float> randomBf16(std::mt19937 &rng, size_t n, float lo,
                                     float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = roundBf16(dist(rng));
  return v;
}

template <typename T> class DeviceBuffer {
public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    check(cudaMalloc(reinterpret_cast<void **>(&ptr_),
                     std::max<size_t>(n, 1) * sizeof(T)),
          "cudaMalloc");
    poison();
  }
  ~DeviceBuffer() { (void)cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  T *get() const { return ptr_; }
  size_t size() const { return n_; }
  /// All bytes 0xff: NaN in fp32 and bf16, so unwritten outputs fail.
  void poison() { check(cudaMemset(ptr_, 0xff, n_ * sizeof(T)), "cudaMemset"); }
  void upload(const void *src) {
    check(cudaMemcpy(ptr_, src, n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  void download(void *dst) const {
    check(cudaDeviceSynchronize(), "kernel");
    check(cudaMemcpy(dst, ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
  }

private:
  T *ptr_ = nullptr;
  size_t n_;
};

/// bf16 device copy of bf16-exact host values.
inline void uploadBf16(DeviceBuffer<bf16> &dst, const std::vector<float> &v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    bits[i] = bf16Bits(v[i]);
  dst.upload(bits.data());
}
inline std::vector<float> downloadBf16(const DeviceBuffer<bf16> &src) {
  std::vector<uint16_t> bits(src.size());
  src.download(bits.data());
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = bf16Float(bits[i]);
  return v;
}
template <typename T>
std::vector<T> download(const DeviceBuffer<T> &src) {
  std::vector<T> v(src.size());
  src.download(v.data());
  return v;
}

/// One row of the report: kernel, shape, max error, tolerance, result,
/// time (ms), rate; negative numbers print as "-".
inline void reportRow(const std::string &kernel, const std::string &shape,
                      double maxErr, double tol, const std::string &result,
                      double ms = -1, const std::string &rate = "-") {
  const char *path = std::getenv("MT_GPU_REPORT");
  if (!path || !*path)
    return;
  auto number = [](double v, const char *format) {
    char text[32] = "-";
    if (v >= 0)
      std::snprintf(text, sizeof(text), format, v);
    return std::string(text);
  };
  const std::string line = kernel + "\t" + shape + "\t" + number(maxErr, "%.3g") +
                           "\t" + number(tol, "%.3g") + "\t" + result + "\t" +
                           number(ms, "%.4f") + "\t" + rate + "\n";
  if (FILE *f = std::fopen(path, "a")) { // one short append per row
    std::fputs(line.c_str(), f);
    std::fclose(f);
  }
}
inline void reportRow(const std::string &kernel, const std::string &shape,
                      double maxErr, double tol, bool pass) {
  reportRow(kernel, shape, maxErr, tol, std::string(pass ? "PASS" : "FAIL"));
}

/// Whether a NaN in the reference is a value the kernel must reproduce (a
/// cast of NaN inputs) or a broken reference. A NaN the kernel produces is
/// a mismatch everywhere else: unwritten outputs are poisoned with NaN.
enum class Nan { Fails, MatchesWhereWanted };

/// max_i |got_i - want_i| / max_i |want_i| over the finite wants; a NaN in
/// got or want counts as infinite, except where both are NaN and `nan` is
/// Nan::MatchesWhereWanted; infinities must match exactly.
struct Comparison {
  double err = 0;
  size_t worst = 0;
};
template <typename G, typename W>
Comparison compareRelative(const std::vector<G> &got, const std::vector<W> &want,
                           Nan nan = Nan::Fails) {
  double scale = 0;
  for (const W &w : want)
    if (std::isfinite(double(w)))
      scale = std::max(scale, std::fabs(double(w)));
  if (scale == 0)
    scale = 1;
  Comparison c;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    double d;
    if (std::isnan(g) || std::isnan(w))
      d = std::isnan(g) && std::isnan(w) && nan == Nan::MatchesWhereWanted ? 0 : INFINITY;
    else if (std::isinf(g) || std::isinf(w))
      d = g == w ? 0 : INFINITY;
    else
      d = std::fabs(g - w) / scale;
    if (d > c.err || (std::isinf(d) && !std::isinf(c.err))) {
      c.err = d;
      c.worst = i;
    }
  }
  return c;
}

/// Checks got against want within tol (relative to max |want|), records the
/// report row and fails the test with the worst element when out of bounds.
template <typename G, typename W>
void expectClose(const std::string &kernel, const std::string &shape,
                 const std::vector<G> &got, const std::vector<W> &want,
                 double tol, Nan nan = Nan::Fails) {
  ASSERT_EQ(got.size(), want.size()) << kernel << " " << shape;
  const Comparison c = compareRelative(got, want, nan);
  const bool pass = c.err <= tol;
  reportRow(kernel, shape, c.err, tol, pass);
  EXPECT_TRUE(pass) << kernel << " " << shape << ": error " << c.err
                    << " > tolerance " << tol << " at [" << c.worst
                    << "]: got " << double(got[c.worst]) << " want "
                    << double(want[c.worst]);
}

/// expectClose with each row of rowLength elements relative to its own
/// largest magnitude: rows of very different scales are each held to tol.
template <typename G, typename W>
void expectCloseRows(const std::string &kernel, const std::string &shape,
                     const std::vector<G> &got, const std::vector<W> &want,
                     size_t rowLength, double tol) {
  ASSERT_EQ(got.size(), want.size()) << kernel << " " << shape;
  Comparison worst;
  for (size_t begin = 0; begin < want.size(); begin += rowLength) {
    const size_t end = std::min(want.size(), begin + rowLength);
    const Comparison c =
        compareRelative(std::vector<G>(got.begin() + begin, got.begin() + end),
                        std::vector<W>(want.begin() + begin, want.begin() + end));
    if (c.err > worst.err || begin == 0)
      worst = {c.err, begin + c.worst};
  }
  const bool pass = worst.err <= tol;
  reportRow(kernel, shape, worst.err, tol, pass);
  EXPECT_TRUE(pass) << kernel << " " << shape << ": row-relative error "
                    << worst.err << " > tolerance " << tol << " at ["
                    << worst.worst << "]: got " << double(got[worst.worst])
                    << " want " << double(want[worst.worst]);
}

/// Concatenates the parts as a stream prints them (test and case names).
template <typename... Parts> std::string joined(const Parts &...parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

inline std::string shapeText(std::initializer_list<int64_t> dims) {
  std::ostringstream s;
  const char *sep = "";
  for (int64_t d : dims) {
    s << sep << d;
    sep = "x";
  }
  return s.str();
}

} // namespace mt::cudatest

#endif // MT_TEST_RUNTIME_CUDA_CUDATESTSUPPORT_H
