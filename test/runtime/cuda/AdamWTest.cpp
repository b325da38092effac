// The CUDA optimizer kernels (runtime/cuda/AdamW.h) against
// runtime/cpu/Optimizer.h: AdamW bit for bit over several steps and many
// tensors (more than one launch's table), with fp32 masters and with masters
// kept as their bf16 copy and low bits; the sum of squares and the finite
// check.
#include "runtime/cuda/AdamW.h"

#include "runtime/cpu/Optimizer.h"
#include "runtime/kernels/MasterRemainders.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

/// Odd sizes around the 64K chunk, an empty tensor, and enough tensors that
/// the list spans two launches of 32.
std::vector<int64_t> tensorSizes() {
  std::vector<int64_t> sizes = {1, 7, 65536, 65537, 200003, 0, 1000, 3};
  for (int i = 0; sizes.size() < 40; ++i)
    sizes.push_back(17 * i + 5);
  return sizes;
}

struct HostTensor {
  std::vector<float> param, grad, m, v;
};

struct DeviceTensor {
  std::unique_ptr<DeviceBuffer<float>> param, grad, m, v;
  std::unique_ptr<DeviceBuffer<bf16>> shadow;
};

/// Tensor i's own weight decay; negative: the step's.
double tensorDecay(size_t i) { return i % 3 == 0 ? 0.0 : i % 3 == 1 ? -1.0 : 0.05; }

/// Step `step` of the tests on the CPU: draws each tensor's gradient (small
/// ones at step 2, a zero and a huge one, g^2 = inf, at step 3), uploads it
/// to `dev`, updates `host` with cpu::adamwStep and returns the step's
/// hyperparameters for the GPU.
cpu::AdamWParams stepOnCpu(std::vector<HostTensor> &host, std::vector<DeviceTensor> &dev,
                           const std::vector<int64_t> &sizes, std::mt19937 &rng, int64_t step) {
  std::uniform_real_distribution<float> dist(-1, 1);
  const cpu::AdamWParams p{1e-3, 0.9, 0.95, 1e-8, 0.1, step, 0.5f + 0.25f * step};
  for (size_t i = 0; i < sizes.size(); ++i) {
    HostTensor &h = host[i];
    h.grad.assign(sizes[i], 0.0f);
    for (float &g : h.grad)
      g = dist(rng) * (step == 2 ? 1e-3f : 1.0f);
    if (sizes[i] > 4 && step == 3) {
      h.grad[0] = 0.0f;
      h.grad[1] = 1e30f;
    }
    dev[i].grad->upload(h.grad.data());
    cpu::AdamWParams own = p;
    if (tensorDecay(i) >= 0)
      own.weightDecay = tensorDecay(i);
    cpu::adamwStep(h.param.data(), h.grad.data(), h.m.data(), h.v.data(), sizes[i], own);
  }
  return p;
}

TEST(AdamWTest, BitExactWithCpuOverStepsAndTensors) {
  const auto sizes = tensorSizes();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<HostTensor> host(sizes.size());
  std::vector<DeviceTensor> dev(sizes.size());
  std::vector<cuda::AdamWTensor> list;
  int64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    total += n;
    HostTensor &h = host[i];
    for (auto *vec : {&h.param, &h.m})
      for (int64_t k = 0; k < n; ++k)
        vec->push_back(dist(rng));
    for (int64_t k = 0; k < n; ++k)
      h.v.push_back(std::fabs(dist(rng) * dist(rng))); // exp_avg_sq >= 0
    DeviceTensor &d = dev[i];
    d.param = std::make_unique<DeviceBuffer<float>>(n);
    d.grad = std::make_unique<DeviceBuffer<float>>(n);
    d.m = std::make_unique<DeviceBuffer<float>>(n);
    d.v = std::make_unique<DeviceBuffer<float>>(n);
    d.param->upload(h.param.data());
    d.m->upload(h.m.data());
    d.v->upload(h.v.data());
    // Every other tensor also writes its bf16 shadow.
    d.shadow = std::make_unique<DeviceBuffer<bf16>>(n);
    // Tensors with their own weight decay (none, as norms, or another)
    // share the launches of those that take the step's.
    list.push_back({d.param->get(), d.grad->get(), d.m->get(), d.v->get(), n,
                    i % 2 ? d.shadow->get() : nullptr, tensorDecay(i)});
  }
  DeviceBuffer<float> deviceScale(1);
  const std::string shape = std::to_string(sizes.size()) + " tensors, " +
                            std::to_string(total) + " elements";
  for (int64_t step = 1; step <= 3; ++step) {
    const cpu::AdamWParams p = stepOnCpu(host, dev, sizes, rng, step);
    // Step 2 takes its scale from the device, as after clipping on the GPU.
    const float *scale = nullptr;
    if (step == 2) {
      deviceScale.upload(&p.gradScale);
      scale = deviceScale.get();
    }
    MT_ASSERT_OK(cuda::adamwStep(list, p, scale, nullptr));
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string what = "adamw step " + std::to_string(step);
      ASSERT_EQ(download(*dev[i].param), host[i].param) << what << " param " << i;
      ASSERT_EQ(download(*dev[i].m), host[i].m) << what << " exp_avg " << i;
      ASSERT_EQ(download(*dev[i].v), host[i].v) << what << " exp_avg_sq " << i;
      if (i % 2) {
        std::vector<float> rounded(host[i].param);
        for (float &x : rounded)
          x = roundBf16(x);
        ASSERT_EQ(downloadBf16(*dev[i].shadow), rounded) << what << " bf16 shadow " << i;
      }
    }
  }
  reportRow("adamw(3 steps)", shape, 0.0, tol::kBitExact, !HasFailure());
}

// plan::masterRemainders: no fp32 param on the device, the master is the
// bf16 copy joined with its low 16 bits; after every step the joined master
// has the CPU's bits and the copy is kernels::splitMaster's. Odd tensors
// start 2 bytes into their buffers: the scalar path.
TEST(AdamWTest, MastersAsCopyAndLowBitsBitExactWithCpu) {
  const auto sizes = tensorSizes();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<HostTensor> host(sizes.size());
  std::vector<DeviceTensor> dev(sizes.size());
  std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> lows;
  std::vector<cuda::AdamWTensor> list;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i], skew = int64_t(i % 2);
    HostTensor &h = host[i];
    for (int64_t k = 0; k < n; ++k) {
      h.param.push_back(dist(rng));
      h.m.push_back(dist(rng));
      h.v.push_back(std::fabs(dist(rng) * dist(rng)));
    }
    DeviceTensor &d = dev[i];
    d.grad = std::make_unique<DeviceBuffer<float>>(n);
    d.m = std::make_unique<DeviceBuffer<float>>(n);
    d.v = std::make_unique<DeviceBuffer<float>>(n);
    d.m->upload(h.m.data());
    d.v->upload(h.v.data());
    d.shadow = std::make_unique<DeviceBuffer<bf16>>(n + 1);
    lows.push_back(std::make_unique<DeviceBuffer<uint16_t>>(n + 1));
    MT_ASSERT_OK(cuda::splitMastersToDevice(h.param.data(), d.shadow->get() + skew,
                                            lows.back()->get() + skew, n, nullptr));
    list.push_back({nullptr, d.grad->get(), d.m->get(), d.v->get(), n, d.shadow->get() + skew,
                    tensorDecay(i), lows.back()->get() + skew});
  }
  for (int64_t step = 1; step <= 3; ++step) {
    const cpu::AdamWParams p = stepOnCpu(host, dev, sizes, rng, step);
    MT_ASSERT_OK(cuda::adamwStep(list, p, nullptr, nullptr));
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string what = "adamw step " + std::to_string(step) + " tensor " +
                                std::to_string(i);
      const int64_t n = sizes[i], skew = int64_t(i % 2);
      std::vector<float> joined(size_t(n), 0.0f);
      MT_ASSERT_OK(cuda::joinMastersFromDevice(dev[i].shadow->get() + skew,
                                               lows[i]->get() + skew, joined.data(), n,
                                               nullptr));
      ASSERT_EQ(joined, host[i].param) << what << " master";
      const std::vector<float> copy = downloadBf16(*dev[i].shadow);
      for (int64_t k = 0; k < n; ++k)
        ASSERT_EQ(kernels::floatBits(copy[size_t(k + skew)]) >> 16,
                  kernels::splitMaster(host[i].param[size_t(k)]).copy)
            << what << " bf16 copy " << k;
      ASSERT_EQ(download(*dev[i].m), host[i].m) << what << " exp_avg";
      ASSERT_EQ(download(*dev[i].v), host[i].v) << what << " exp_avg_sq";
    }
  }
  reportRow("adamw(copy + low bits, 3 steps)", std::to_string(sizes.size()) + " tensors", 0.0,
            tol::kBitExact, !HasFailure());
}

TEST(AdamWTest, SumOfSquaresAndFiniteMatchCpu) {
  const auto sizes = tensorSizes();
  std::mt19937 rng(4);
  std::vector<std::vector<float>> host(sizes.size());
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dev;
  std::vector<cuda::FloatSpan> spans;
  double want = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    host[i] = randomBf16(rng, sizes[i], -3, 3);
    want += cpu::sumOfSquares(host[i].data(), sizes[i]);
    dev.push_back(std::make_unique<DeviceBuffer<float>>(sizes[i]));
    dev.back()->upload(host[i].data());
    spans.push_back({dev.back()->get(), sizes[i]});
  }
  const std::string shape = std::to_string(sizes.size()) + " tensors";
  DeviceBuffer<uint8_t> workspace(cuda::sumOfSquaresWorkspaceBytes(spans));
  DeviceBuffer<double> out(1);
  MT_ASSERT_OK(cuda::sumOfSquares(spans, out.get(), workspace.get(), nullptr));
  const double got = download(out)[0];
  expectClose("sum_of_squares", shape, std::vector<double>{got},
              std::vector<double>{want}, tol::kFp32AccumRel);
  MT_ASSERT_OK(cuda::sumOfSquares(spans, out.get(), workspace.get(), nullptr));
  EXPECT_EQ(download(out)[0], got) << "not deterministic";

  DeviceBuffer<int32_t> finite(1);
  MT_ASSERT_OK(cuda::allFinite(spans, finite.get(), nullptr));
  EXPECT_EQ(download(finite)[0], 1);
  // One bad element in a tensor of the second launch, then in the first.
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    -std::numeric_limits<float>::infinity()})
    for (size_t t : {sizes.size() - 1, size_t(3)}) {
      const int64_t at = sizes[t] - 1;
      const float saved = host[t][at];
      host[t][at] = bad;
      dev[t]->upload(host[t].data());
      MT_ASSERT_OK(cuda::allFinite(spans, finite.get(), nullptr));
      EXPECT_EQ(download(finite)[0], 0) << "tensor " << t << " value " << bad;
      EXPECT_EQ(cpu::allFinite(host[t].data(), sizes[t]), false);
      host[t][at] = saved;
      dev[t]->upload(host[t].data());
    }
  MT_ASSERT_OK(cuda::allFinite(spans, finite.get(), nullptr));
  EXPECT_EQ(download(finite)[0], 1);
  reportRow("all_finite", shape, 0.0, tol::kBitExact, !HasFailure());
}

} // namespace
