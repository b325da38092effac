// Micro-benchmark of causal GQA attention (bf16) on both backends, the mtc
// kernels and cuDNN's fused flash attention (runtime/cuda/Attention.h), at
// issue 17's four shapes: median of 20 launches timed with CUDA events after
// 3 warm-ups, forward and backward, with TFLOP/s of the causal FLOPs
// (forward 4*b*h*s^2*d / 2, backward 2.5 times that, FlashAttention's count).
// One row per backend and shape (cuDNN with its deterministic backward and
// with its atomic dQ); a backend that cannot run a shape prints why. Then
// ring attention's blocks (cp_comm_type p2p) at cp2 for llama3.2-1b's
// heads at 32768 tokens (issue 18): each rank's two steps should take
// about half the causal attention of the whole sequence on one GPU.
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
#include <string>
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

/// One attention problem's device tensors (keys as many as queries), filled.
struct Tensors {
  size_t nQ, nKv;
  Buffer q, k, v, out, dout, dq, dk, dv, lse;
  explicit Tensors(const cuda::AttentionShape &sh)
      : nQ(size_t(sh.batch * sh.seq * sh.heads * sh.headDim)),
        nKv(size_t(sh.batch * sh.seq * sh.kvHeads * sh.headDim)), q(nQ * 2), k(nKv * 2),
        v(nKv * 2), out(nQ * 2), dout(nQ * 2), dq(nQ * 2), dk(nKv * 2), dv(nKv * 2),
        lse(size_t(sh.batch * sh.heads * sh.seq) * 4) {
    fillBf16(q, nQ, 1);
    fillBf16(k, nKv, 2);
    fillBf16(v, nKv, 3);
    fillBf16(dout, nQ, 4);
  }
};

/// The causal forward's FLOPs (FlashAttention's count) and the shape's text.
double causalForwardFlops(const cuda::AttentionShape &sh) {
  return 4.0 * double(sh.batch * sh.heads) * double(sh.seq) * double(sh.seq) *
         double(sh.headDim) / 2;
}
std::string shapeText(const cuda::AttentionShape &sh) {
  char shape[96];
  std::snprintf(shape, sizeof shape, "%lldx%lld %lld/%lld d%lld", (long long)sh.batch,
                (long long)sh.seq, (long long)sh.heads, (long long)sh.kvHeads,
                (long long)sh.headDim);
  return shape;
}

void benchShape(const cuda::AttentionShape &sh, cudaStream_t stream) {
  Tensors t(sh);
  const Buffer &q = t.q, &k = t.k, &v = t.v, &out = t.out, &dout = t.dout, &dq = t.dq,
               &dk = t.dk, &dv = t.dv, &lse = t.lse;
  const double fwdFlops = causalForwardFlops(sh);
  const std::string text = shapeText(sh);
  const char *shape = text.c_str();
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
    Buffer ws(plan->workspaceBytes());
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
                planMs, double(plan->workspaceBytes()) / double(1 << 20));
    std::fflush(stdout);
  }
}

/// One row of the mtc kernels alone on `block` (keys of `t`), with TFLOP/s
/// of `fwdFlops` and 2.5 times that for the backward.
void benchMtc(const char *name, const cuda::AttentionShape &block, const Tensors &t,
              double fwdFlops, cudaStream_t stream) {
  Buffer ws(cuda::attentionBackwardWorkspaceBytes(block));
  auto fwd = [&] {
    return cuda::mtcAttentionForward(t.q.as<bf16>(), t.k.as<bf16>(), t.v.as<bf16>(),
                                     t.out.as<bf16>(), t.lse.as<float>(), block, stream,
                                     nullptr);
  };
  auto bwd = [&] {
    return cuda::mtcAttentionBackward(t.q.as<bf16>(), t.k.as<bf16>(), t.v.as<bf16>(),
                                      t.out.as<bf16>(), t.lse.as<float>(), t.dout.as<bf16>(),
                                      t.dq.as<bf16>(), t.dk.as<bf16>(), t.dv.as<bf16>(), ws.ptr,
                                      block, stream, nullptr);
  };
  const double fwdMs = medianMs(fwd, stream), bwdMs = medianMs(bwd, stream);
  std::printf("mtc-%-15s %-22s fwd %8.3f ms (%4.0f TFLOP/s)  bwd %8.3f ms (%4.0f TFLOP/s)\n",
              name, shapeText(block).c_str(), fwdMs, fwdFlops / fwdMs / 1e9, bwdMs,
              2.5 * fwdFlops / bwdMs / 1e9);
  std::fflush(stdout);
}

/// Ring attention at cp2 against causal attention over the whole sequence
/// (`sh`, seq even) on one GPU: each rank's blocks as the lowering runs them
/// (runtime/cuda/LowerAttention.cpp), step 0 its own keys as plain causal
/// attention, step 1 the other rank's slice (kvSource). Each block sees as
/// many query-key pairs as causal attention over a slice, so its TFLOP/s
/// are of those causal FLOPs; a rank's two steps should take about half the
/// whole sequence's time (issue 18).
void benchRing(const cuda::AttentionShape &sh, cudaStream_t stream) {
  benchMtc("ring-whole", sh, Tensors(sh), causalForwardFlops(sh), stream);
  cuda::AttentionShape slice = sh;
  slice.seq = sh.seq / 2;
  const Tensors t(slice);
  for (int64_t rank = 0; rank < 2; ++rank)
    for (int64_t step = 0; step < 2; ++step) {
      cuda::AttentionShape block = slice;
      if (step == 1)
        block.cpRank = rank, block.cpSize = 2, block.kvSource = 1 - rank;
      const std::string name = "ring-cp2-r" + std::to_string(rank) + "-s" + std::to_string(step);
      benchMtc(name.c_str(), block, t, causalForwardFlops(slice), stream);
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
  // Issue 18: llama3.2-1b's heads at 32768 tokens, on one GPU and at cp2.
  benchRing({1, 32768, 32, 8, 64, 0.125f}, stream);
  return ok(cudaStreamSynchronize(stream), "final sync") ? 0 : 1;
}
