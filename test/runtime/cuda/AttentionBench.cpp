// Micro-benchmark of causal GQA attention (bf16) on both backends, the mtc
// kernels and cuDNN's fused flash attention (runtime/cuda/Attention.h), at
// issue 17's four shapes: median of 20 launches timed with CUDA events after
// 3 warm-ups, forward and backward, with TFLOP/s of the causal FLOPs
// (forward 4*b*h*s^2*d / 2, backward 2.5 times that, FlashAttention's count).
// One row per backend and shape (cuDNN with its deterministic backward and
// with its atomic dQ); a backend that cannot run a shape prints why.
// Not a test: bench/gpu-attention.sh runs it beside PyTorch's SDPA.
#include "runtime/cuda/Attention.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

using namespace mt;
using cuda::bf16;

bool ok(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "attention-bench: %s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

/// Device bf16 buffer of n values uniform in [-1, 1) (a fixed LCG).
struct Buffer {
  void *ptr = nullptr;
  explicit Buffer(size_t bytes) {
    if (!ok(cudaMalloc(&ptr, std::max<size_t>(bytes, 1)), "cudaMalloc"))
      std::exit(1);
  }
  ~Buffer() { (void)cudaFree(ptr); }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  template <typename T> T *as() const { return static_cast<T *>(ptr); }
};

void fillBf16(Buffer &b, size_t n, uint32_t seed) {
  std::vector<bf16> host(n);
  uint32_t x = seed * 2654435761u + 1;
  for (bf16 &v : host) {
    x = x * 1664525u + 1013904223u;
    v = __float2bfloat16(float(x >> 8) / float(1u << 23) - 1.0f);
  }
  (void)ok(cudaMemcpy(b.ptr, host.data(), n * sizeof(bf16), cudaMemcpyHostToDevice), "upload");
}

/// Median milliseconds of 20 runs after 3 warm-ups; negative on an error.
double medianMs(const std::function<Status()> &run, cudaStream_t stream) {
  for (int i = 0; i < 3; ++i)
    if (Status s = run(); !s) {
      std::fprintf(stderr, "attention-bench: %s\n", s.message().c_str());
      return -1;
    }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> ms(20);
  for (float &m : ms) {
    cudaEventRecord(start, stream);
    (void)run();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    cudaEventElapsedTime(&m, start, stop);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!ok(cudaGetLastError(), "timed runs"))
    return -1;
  std::sort(ms.begin(), ms.end());
  return 0.5 * (ms[9] + ms[10]);
}

void benchShape(const cuda::AttentionShape &sh, cudaStream_t stream) {
  const size_t nQ = size_t(sh.batch * sh.seq * sh.heads * sh.headDim);
  const size_t nKv = size_t(sh.batch * sh.seq * sh.kvHeads * sh.headDim);
  Buffer q(nQ * 2), k(nKv * 2), v(nKv * 2), out(nQ * 2), dout(nQ * 2), dq(nQ * 2),
      dk(nKv * 2), dv(nKv * 2), lse(size_t(sh.batch * sh.heads * sh.seq) * 4);
  fillBf16(q, nQ, 1);
  fillBf16(k, nKv, 2);
  fillBf16(v, nKv, 3);
  fillBf16(dout, nQ, 4);
  const double fwdFlops = 4.0 * double(sh.batch * sh.heads) * double(sh.seq) *
                          double(sh.seq) * double(sh.headDim) / 2;
  char shape[96];
  std::snprintf(shape, sizeof shape, "%lldx%lld %lld/%lld d%lld", (long long)sh.batch,
                (long long)sh.seq, (long long)sh.heads, (long long)sh.kvHeads,
                (long long)sh.headDim);
  struct Variant {
    const char *name;
    cuda::AttentionOptions options;
  };
  for (const Variant &variant :
       {Variant{"mtc", {cuda::AttentionBackend::Mtc, true}},
        Variant{"cudnn", {cuda::AttentionBackend::Cudnn, true}},
        Variant{"cudnn-atomic-dq", {cuda::AttentionBackend::Cudnn, false}}}) {
    const char *name = variant.name;
    const cuda::AttentionOptions &options = variant.options;
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = cuda::planAttention(sh, false, options);
    const double planMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!plan) {
      std::printf("mtc-%-15s %-22s cannot run: %s\n", name, shape, plan.message().c_str());
      continue;
    }
    Buffer ws(plan->workspaceBytes);
    auto fwd = [&] {
      return cuda::attentionForward(q.as<bf16>(), k.as<bf16>(), v.as<bf16>(), out.as<bf16>(),
                                    lse.as<float>(), sh, stream, nullptr, options, ws.ptr);
    };
    auto bwd = [&] {
      return cuda::attentionBackward(q.as<bf16>(), k.as<bf16>(), v.as<bf16>(), out.as<bf16>(),
                                     lse.as<float>(), dout.as<bf16>(), dq.as<bf16>(),
                                     dk.as<bf16>(), dv.as<bf16>(), ws.ptr, sh, stream, nullptr,
                                     options);
    };
    const double fwdMs = medianMs(fwd, stream), bwdMs = medianMs(bwd, stream);
    std::printf("mtc-%-15s %-22s fwd %8.3f ms (%4.0f TFLOP/s)  bwd %8.3f ms (%4.0f TFLOP/s)"
                "  plan %.0f ms, workspace %.1f MiB\n",
                name, shape, fwdMs, fwdFlops / fwdMs / 1e9, bwdMs, 2.5 * fwdFlops / bwdMs / 1e9,
                planMs, double(plan->workspaceBytes) / double(1 << 20));
    std::fflush(stdout);
  }
}

} // namespace

int main() {
  cudaStream_t stream;
  if (!ok(cudaStreamCreate(&stream), "cudaStreamCreate"))
    return 1;
  // Issue 17's shapes: batch, seq, q heads, kv heads, head_dim.
  for (auto [b, s, h, kv, d] : std::vector<std::array<int64_t, 5>>{
           {4, 2048, 32, 8, 64}, {4, 2048, 16, 8, 128}, {1, 8192, 32, 8, 64},
           {1, 32768, 16, 8, 128}})
    benchShape({b, s, h, kv, d, 1.0f / std::sqrt(float(d))}, stream);
  return ok(cudaStreamSynchronize(stream), "final sync") ? 0 : 1;
}
