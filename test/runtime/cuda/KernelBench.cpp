// Micro-benchmark of every CUDA kernel family at a Llama-3.2-1B-like shape
// (tokens 8192 = 4 x 2048, hidden 2048, ffn 8192, 32 heads of 64, vocab
// 128256, 1.24B parameters; attention also at Qwen3-0.6B's 16 heads of 128
// over 8 kv heads; the MoE experts at Qwen3-30B-A3B's and Mixtral-8x7B's
// shapes): median of 20 launches timed with CUDA events
// after 3 warm-ups, with the achieved TFLOP/s or GB/s (bytes each kernel
// must read and write at least). Rows go to stdout and $MT_GPU_REPORT. An
// argument times only the kernels whose names start with it.
// Not a test: tools/gpu-check.sh runs it after the gpu1 tests.
#include "runtime/cuda/AdamW.h"
#include "runtime/cuda/Attention.h"
#include "runtime/cuda/CrossEntropy.h"
#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/Gemm.h"
#include "runtime/cuda/MoE.h"
#include "runtime/cuda/Norm.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;

constexpr int64_t T = 8192, H = 2048, F = 8192, V = 128256;
constexpr int64_t kBatch = 4, kSeq = 2048, kHeads = 32, kHeadDim = 64;
constexpr int64_t kLayers = 16, kKvDim = 512;

struct Bench {
  std::string kernel, shape;
  double flops, bytes; // one of them is the rate's numerator
  std::function<Status()> run;
};

void throwIfError(const Status &s, const std::string &what) {
  if (!s.isOk())
    throw std::runtime_error(what + ": " + s.message());
}

/// Median milliseconds of 20 launches, after 3 warm-ups.
double medianMs(const Bench &b, cudaStream_t stream) {
  for (int i = 0; i < 3; ++i)
    throwIfError(b.run(), b.kernel);
  check(cudaStreamSynchronize(stream), b.kernel.c_str());
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  std::vector<float> ms(20);
  for (float &m : ms) {
    check(cudaEventRecord(start, stream), "record");
    throwIfError(b.run(), b.kernel);
    check(cudaEventRecord(stop, stream), "record");
    check(cudaEventSynchronize(stop), b.kernel.c_str());
    check(cudaEventElapsedTime(&m, start, stop), "elapsed");
  }
  check(cudaEventDestroy(start), "event");
  check(cudaEventDestroy(stop), "event");
  std::sort(ms.begin(), ms.end());
  return 0.5 * (ms[9] + ms[10]);
}

/// Llama-3.2-1B's parameter tensors (tied embedding), in elements.
std::vector<int64_t> llamaTensorSizes() {
  std::vector<int64_t> sizes = {V * H, H};
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t n : {H * H, kKvDim * H, kKvDim * H, H * H, F * H, F * H, H * F, H, H})
      sizes.push_back(n);
  return sizes;
}

template <typename T> T *alloc(std::vector<std::shared_ptr<void>> &keep, int64_t n) {
  auto buffer = std::make_shared<DeviceBuffer<T>>(n);
  keep.push_back(buffer);
  return buffer->get();
}

/// Causal flash attention forward and backward at batch kBatch, seq kSeq.
/// FLOPs as FlashAttention counts them: forward 4*b*h*s^2*d / 2 (two
/// products over the causal half of the scores), backward 2.5 times that.
template <typename Fill>
void addAttentionBenches(std::vector<Bench> &benches,
                         std::vector<std::shared_ptr<void>> &keep, Fill &fill,
                         int64_t heads, int64_t kvHeads, int64_t dim,
                         cudaStream_t s) {
  const cuda::AttentionShape shape{kBatch, kSeq, heads, kvHeads, dim,
                                   1.0f / std::sqrt(float(dim))};
  const int64_t nQ = kBatch * kSeq * heads * dim, nKv = kBatch * kSeq * kvHeads * dim;
  bf16 *q = fill(alloc<bf16>(keep, nQ), nQ, -1, 1);
  bf16 *k = fill(alloc<bf16>(keep, nKv), nKv, -1, 1);
  bf16 *v = fill(alloc<bf16>(keep, nKv), nKv, -1, 1);
  bf16 *dOut = fill(alloc<bf16>(keep, nQ), nQ, -1, 1);
  bf16 *out = alloc<bf16>(keep, nQ), *dq = alloc<bf16>(keep, nQ);
  bf16 *dk = alloc<bf16>(keep, nKv), *dv = alloc<bf16>(keep, nKv);
  float *lse = alloc<float>(keep, kBatch * heads * kSeq);
  void *ws = alloc<uint8_t>(keep, cuda::attentionBackwardWorkspaceBytes(shape));
  // The backward reads a real out and lse even when timed first.
  throwIfError(cuda::attentionForward(q, k, v, out, lse, shape, s), "attention");
  const double fwd = 4.0 * kBatch * heads * double(kSeq) * kSeq * dim / 2;
  const std::string text = shapeText({kBatch, kSeq, heads, kvHeads, dim});
  benches.push_back({"attention_fwd", text, fwd, 0, [=] {
                       return cuda::attentionForward(q, k, v, out, lse, shape, s);
                     }});
  benches.push_back({"attention_bwd", text, 2.5 * fwd, 0, [=] {
                       return cuda::attentionBackward(q, k, v, out, lse, dOut, dq,
                                                      dk, dv, ws, shape, s);
                     }});
  // Packed documents (neat_packing) of kDocument tokens: the causal FLOPs of
  // each document only, the skipped tiles not counted.
  constexpr int64_t kDocument = 512;
  std::vector<int32_t> host(size_t(kBatch * kSeq));
  for (size_t i = 0; i < host.size(); ++i)
    host[i] = int32_t(int64_t(i) % kSeq % kDocument);
  int32_t *pos = alloc<int32_t>(keep, kBatch * kSeq);
  check(cudaMemcpy(pos, host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
        "positions");
  const double packed = fwd * double(kDocument) / double(kSeq);
  const std::string docs = text + " docs " + std::to_string(kDocument);
  benches.push_back({"attention_fwd", docs, packed, 0, [=] {
                       return cuda::attentionForward(q, k, v, out, lse, shape, s, pos);
                     }});
  benches.push_back({"attention_bwd", docs, 2.5 * packed, 0, [=] {
                       return cuda::attentionBackward(q, k, v, out, lse, dOut, dq,
                                                      dk, dv, ws, shape, s, pos);
                     }});
}

/// The router forward (logits, softmax, top-k, aux loss) and backward
/// (recomputed routing, dlogits, dx, dw) at bench/gpu-moe.sh's shapes
/// (4096 tokens); FLOPs of its products, 2 T H E forward and 6 T H E
/// backward (the recomputed logits included).
template <typename Fill>
void addRouterBenches(std::vector<Bench> &benches, std::vector<std::shared_ptr<void>> &keep,
                      Fill &fill, cuda::RouterBlas &blas, cudaStream_t s) {
  constexpr int64_t tokens = 4096;
  for (auto [name, E, K, h] : {std::tuple<const char *, int64_t, int64_t, int64_t>{
                                   "qwen3-30b-a3b", 128, 8, 2048},
                               {"mixtral-8x7b", 8, 2, 4096}}) {
    const cuda::RouterShape r{tokens, h, E, K, true, 1e-3f, cuda::LoadBalancing::auxLoss, tokens,
                              1e-3f};
    bf16 *x = fill(alloc<bf16>(keep, tokens * h), tokens * h, -1, 1);
    bf16 *dx = alloc<bf16>(keep, tokens * h);
    float *w = fill(alloc<float>(keep, E * h), E * h, -0.02f, 0.02f);
    float *dw = fill(alloc<float>(keep, E * h), E * h, 0, 0);
    float *weights = alloc<float>(keep, tokens * K);
    float *dweights = fill(alloc<float>(keep, tokens * K), tokens * K, -1, 1);
    int32_t *indices = alloc<int32_t>(keep, tokens * K);
    float *scalars = fill(alloc<float>(keep, 4), 4, 1, 1); // aux, z, daux, dz
    void *ws = alloc<uint8_t>(keep, int64_t(cuda::moeRouterWorkspaceBytes(r)));
    const std::string text = shapeText({tokens, h, E, K}) + " " + name;
    const double flops = 2.0 * tokens * h * E;
    benches.push_back({"moe_router", text, flops, 0, [=, &blas] {
                         return cuda::moeRouterForward(blas, x, w, weights, indices, scalars,
                                                       scalars + 1, ws, r, s);
                       }});
    benches.push_back({"moe_router_bwd", text, 3 * flops, 0, [=, &blas] {
                         return cuda::moeRouterBackward(blas, x, w, dweights, scalars + 2,
                                                        scalars + 3, dx, false, dw, ws, r, s);
                       }});
  }
}

/// Every linear of the two dense benchmark models at T tokens, forward,
/// input gradient and weight gradient (fp32 +=): Llama-3.2-1B's fused qkv
/// (2048 -> 3072), o (2048 -> 2048), fused gate/up (2048 -> 16384), down
/// (8192 -> 2048), and Qwen3-0.6B's qkv (1024 -> 4096), o (2048 -> 1024),
/// gate/up (1024 -> 6144), down (3072 -> 1024); 2*T*in*out FLOPs each. Shows
/// which shapes hold the GEMM class's average down.
template <typename Fill>
void addGemmShapeBenches(std::vector<Bench> &benches,
                         std::vector<std::shared_ptr<void>> &keep, Fill &fill,
                         cuda::GemmRunner &gemm, cudaStream_t s) {
  constexpr int64_t kMax = 2 * F; // the widest in or out
  bf16 *x = fill(alloc<bf16>(keep, T * kMax), T * kMax, -1, 1);
  bf16 *dy = fill(alloc<bf16>(keep, T * kMax), T * kMax, -1, 1);
  bf16 *y = alloc<bf16>(keep, T * kMax);
  bf16 *w = fill(alloc<bf16>(keep, kMax * H), kMax * H, -0.02f, 0.02f);
  float *dw = fill(alloc<float>(keep, kMax * H), kMax * H, -1e-3f, 1e-3f);
  const std::pair<const char *, std::pair<int64_t, int64_t>> shapes[] = {
      {"llama qkv", {H, 3072}},   {"llama o", {H, H}},          {"llama gate_up", {H, 2 * F}},
      {"llama down", {F, H}},     {"qwen3 qkv", {1024, 4096}},  {"qwen3 o", {H, 1024}},
      {"qwen3 gate_up", {1024, 6144}}, {"qwen3 down", {3072, 1024}}};
  for (const auto &[name, io] : shapes) {
    const auto [in, out] = io;
    const std::string text = std::string(name) + " " + shapeText({T, in, out});
    const double flops = 2.0 * T * in * out;
    benches.push_back({"gemm_fwd", text, flops, 0, [=, &gemm] {
                         return gemm.linearForward(x, w, nullptr, y, T, in, out, s);
                       }});
    benches.push_back({"gemm_dgrad", text, flops, 0, [=, &gemm] {
                         return gemm.linearBackwardInput(dy, w, y, T, in, out, s);
                       }});
    benches.push_back({"gemm_wgrad+=", text, flops, 0, [=, &gemm] {
                         return gemm.linearBackwardWeight(x, dy, dw, T, in, out, s);
                       }});
  }
}

/// The routed experts' SwiGLU (moe_grouped_mlp and its gradient) at
/// bench/gpu-moe.sh's shapes (micro-batch 1 x 4096), experts evenly loaded,
/// on each ExpertGemm path (ours, `kernel`, included); the tiled kernel at
/// the Qwen3 shape only (Mixtral's takes about a second a launch). FLOPs as
/// plan/Roofline.cpp counts them: forward 6 rows hidden ffn, backward 12
/// (its six products: the gate and up products are read from the forward's
/// fc1_output, not recomputed).
template <typename Fill>
void addMoEBenches(std::vector<Bench> &benches, std::vector<std::shared_ptr<void>> &keep,
                   Fill &fill, cuda::GemmRunner &runner, cuda::GroupedGemm &grouped,
                   cudaStream_t s) {
  struct Model {
    const char *name;
    int64_t experts, topK, hidden, ffn;
  };
  for (const Model &m : {Model{"qwen3-30b-a3b", 128, 8, 2048, 768},
                         Model{"mixtral-8x7b", 8, 2, 4096, 14336}}) {
    const int64_t rows = 4096 * m.topK, E = m.experts, h = m.hidden, f = m.ffn;
    const cuda::GroupedMlpShape g{rows, h, f, E};
    bf16 *x = fill(alloc<bf16>(keep, rows * h), rows * h, -1, 1);
    bf16 *dy = fill(alloc<bf16>(keep, rows * h), rows * h, -1, 1);
    bf16 *gate = fill(alloc<bf16>(keep, E * f * h), E * f * h, -0.02f, 0.02f);
    bf16 *up = fill(alloc<bf16>(keep, E * f * h), E * f * h, -0.02f, 0.02f);
    bf16 *down = fill(alloc<bf16>(keep, E * h * f), E * h * f, -0.02f, 0.02f);
    bf16 *y = alloc<bf16>(keep, rows * h), *dx = alloc<bf16>(keep, rows * h);
    // fc1_output: what the forward writes and the backward reads.
    bf16 *fc1 = fill(alloc<bf16>(keep, 2 * rows * f), 2 * rows * f, -1, 1);
    float *dgate = fill(alloc<float>(keep, E * f * h), E * f * h, 0, 0);
    float *dup = fill(alloc<float>(keep, E * f * h), E * f * h, 0, 0);
    float *ddown = fill(alloc<float>(keep, E * h * f), E * h * f, 0, 0);
    int32_t *counts = alloc<int32_t>(keep, E);
    const std::vector<int32_t> even(size_t(E), int32_t(rows / E));
    check(cudaMemcpy(counts, even.data(), 4 * even.size(), cudaMemcpyHostToDevice), "counts");
    struct Path {
      const char *name;
      cuda::ExpertGemm gemm;
      cuda::ExpertGemmLibs libs;
    };
    auto lanes = cuda::ExpertLanes::create(3, cuda::GemmRunner::Choice::Heuristic);
    throwIfError(lanes ? Status::ok() : lanes.status(), "ExpertLanes");
    cuda::ExpertLanes *side = lanes->get();
    keep.push_back(std::shared_ptr<void>(lanes->release(), [](void *p) {
      delete static_cast<cuda::ExpertLanes *>(p);
    }));
    std::vector<Path> paths = {{"cublaslt", cuda::ExpertGemm::Cublaslt, {&runner, nullptr}},
                               {"grouped", cuda::ExpertGemm::Grouped, {&runner, &grouped}},
                               {"grouped+lanes", cuda::ExpertGemm::Grouped,
                                {&runner, &grouped, false, false, side}},
                               {"kernel", cuda::ExpertGemm::Kernel, {nullptr, nullptr, true}}};
    if (E > 8)
      paths.push_back({"tiled", cuda::ExpertGemm::Tiled, {}});
    size_t wsBytes = 0;
    for (const Path &p : paths)
      wsBytes = std::max(wsBytes, cuda::groupedMlpWorkspaceBytes(g, true, p.gemm));
    void *ws = alloc<uint8_t>(keep, int64_t(wsBytes));
    const double flops = 6.0 * double(rows) * double(h) * double(f);
    for (const Path &p : paths) {
      const std::string text = shapeText({rows, h, f, E}) + " " + m.name + " " + p.name;
      const cuda::ExpertGemmLibs libs = p.libs;
      benches.push_back({"moe_grouped_mlp", text, flops, 0, [=] {
                           return cuda::groupedMlpForward(x, counts, gate, up, down, y, fc1, libs,
                                                          ws, g, s);
                         }});
      benches.push_back({"moe_grouped_mlp_bwd", text, 2 * flops, 0, [=] {
                           return cuda::groupedMlpBackward(x, counts, gate, up, down, fc1, dy,
                                                           dx, false, dgate, dup, ddown, libs, ws,
                                                           g, s);
                         }});
    }
  }
}

/// `only`: a prefix of the kernel names to time (empty: all).
int run(const std::string &only) {
  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  std::vector<std::shared_ptr<void>> keep;
  uint64_t seed = 1;
  auto fill = [&](auto *p, int64_t n, float lo, float hi) {
    throwIfError(cuda::fillUniform(p, n, seed++, lo, hi, s), "fill");
    return p;
  };
  // Activations.
  bf16 *x = fill(alloc<bf16>(keep, T * H), T * H, -1, 1);
  bf16 *res = fill(alloc<bf16>(keep, T * H), T * H, -1, 1);
  bf16 *dy = fill(alloc<bf16>(keep, T * H), T * H, -1, 1);
  bf16 *tH1 = alloc<bf16>(keep, T * H), *tH2 = alloc<bf16>(keep, T * H);
  bf16 *gate = fill(alloc<bf16>(keep, T * F), T * F, -4, 4);
  bf16 *up = fill(alloc<bf16>(keep, T * F), T * F, -1, 1);
  bf16 *dF = fill(alloc<bf16>(keep, T * F), T * F, -1, 1);
  bf16 *tF1 = alloc<bf16>(keep, T * F), *tF2 = alloc<bf16>(keep, T * F);
  // Weights and main gradients.
  bf16 *w1 = fill(alloc<bf16>(keep, F * H), F * H, -0.02f, 0.02f);
  float *dw1 = fill(alloc<float>(keep, F * H), F * H, -1e-3f, 1e-3f);
  bf16 *normW = fill(alloc<bf16>(keep, H), H, 0.9f, 1.1f);
  float *normDw = fill(alloc<float>(keep, H), H, 0, 0);
  bf16 *embed = fill(alloc<bf16>(keep, V * H), V * H, -0.02f, 0.02f);
  float *dEmbed = fill(alloc<float>(keep, V * H), V * H, 0, 0);
  bf16 *logits = fill(alloc<bf16>(keep, T * V), T * V, -6, 6);
  bf16 *dlogits = alloc<bf16>(keep, T * V);
  int32_t *ids = alloc<int32_t>(keep, T), *labels = alloc<int32_t>(keep, T);
  {
    std::mt19937 rng(7);
    std::vector<int32_t> host(T);
    for (int32_t &id : host)
      id = int32_t(rng() % V);
    check(cudaMemcpy(ids, host.data(), T * 4, cudaMemcpyHostToDevice), "ids");
    for (int32_t &id : host)
      id = int32_t(rng() % V);
    check(cudaMemcpy(labels, host.data(), T * 4, cudaMemcpyHostToDevice), "labels");
  }
  float *mask = fill(alloc<float>(keep, T), T, 1, 1);
  float *lse = alloc<float>(keep, T), *loss = alloc<float>(keep, 2);
  // Qwen3's per-head q/k norm: rows of head_dim 128 (the same elements as x).
  const int64_t headRows = T * H / 128;
  void *normWs = alloc<uint8_t>(keep, std::max(cuda::rmsnormBackwardWorkspaceBytes(T, H),
                                               cuda::rmsnormBackwardWorkspaceBytes(headRows, 128)));
  void *embedWs = alloc<uint8_t>(keep, cuda::embeddingBackwardWorkspaceBytes(V));
  // Optimizer state of the whole model, one tensor per parameter.
  const std::vector<int64_t> sizes = llamaTensorSizes();
  int64_t N = 0;
  for (int64_t n : sizes)
    N += n;
  float *param = fill(alloc<float>(keep, N), N, -0.05f, 0.05f);
  float *grad = fill(alloc<float>(keep, N), N, -1e-3f, 1e-3f);
  float *m = fill(alloc<float>(keep, N), N, -1e-3f, 1e-3f);
  float *v = fill(alloc<float>(keep, N), N, 0, 1e-6f);
  bf16 *paramBf16 = alloc<bf16>(keep, N);
  std::vector<cuda::AdamWTensor> adam;
  std::vector<cuda::FloatSpan> grads;
  for (int64_t off = 0, i = 0; i < int64_t(sizes.size()); off += sizes[i++]) {
    adam.push_back({param + off, grad + off, m + off, v + off, sizes[i]});
    grads.push_back({grad + off, sizes[i]});
  }
  void *sumWs = alloc<uint8_t>(keep, cuda::sumOfSquaresWorkspaceBytes(grads));
  double *sumOut = alloc<double>(keep, 1);
  int32_t *finite = alloc<int32_t>(keep, 1);
  auto gemm = cuda::GemmRunner::create();
  if (!gemm)
    throwIfError(gemm.status(), "GemmRunner");
  // MT_GEMM_CHOICE=timed|verbose as mtrun takes it: verbose prints, per
  // shape, cuBLASLt's first answer beside the fastest of its first eight.
  auto options = cuda::optionsFromEnvironment();
  if (!options)
    throwIfError(options.status(), "MT_* environment");
  gemm->setChoice(options->gemmChoice);
  auto table = cuda::RotaryTable::create({500000.0, 32.0, 1.0, 4.0, 8192}, kSeq, kHeadDim);
  if (!table)
    throwIfError(table.status(), "RotaryTable");
  const kernels::AdamWParams adamParams{1e-4, 0.9, 0.95, 1e-8, 0.1, 10, 1.0f};
  check(cudaStreamSynchronize(s), "setup");

  const std::string tHF = shapeText({T, H, F}), tH = shapeText({T, H});
  const std::string tF = shapeText({T, F}), tV = shapeText({T, V});
  const std::string rope = shapeText({kBatch, kSeq, kHeads, kHeadDim});
  const std::string params = std::to_string(sizes.size()) + " tensors, " +
                             std::to_string(N) + " params";
  const double actH = double(T * H) * 2, actF = double(T * F) * 2;
  const int64_t qkvDim = (kHeads + 16) * kHeadDim, kvDim = 8 * kHeadDim;
  const double actQkv = double(T * qkvDim) * 2;
  const cuda::RowSpan qSpan{qkvDim, 0}, kSpan{qkvDim, H}, vSpan{qkvDim, H + kvDim};
  const cuda::QkvRotaryParts splitParts{
      {gate, gate, gate}, {tH1, tF1, tF1 + T * kvDim}, {qSpan, kSpan, vSpan}, {}};
  const cuda::QkvRotaryParts concatParts{
      {dy, dF, dF + T * kvDim}, {tF2, tF2, tF2}, {}, {qSpan, kSpan, vSpan}};
  const double nd = double(N);
  std::vector<Bench> benches = {
      {"linear_fwd", tHF, 2.0 * T * H * F, 0,
       [&] { return gemm->linearForward(x, w1, nullptr, tF1, T, H, F, s); }},
      {"linear_dgrad", tHF, 2.0 * T * H * F, 0,
       [&] { return gemm->linearBackwardInput(dF, w1, tH1, T, H, F, s); }},
      {"linear_wgrad+=", tHF, 2.0 * T * H * F, 0,
       [&] { return gemm->linearBackwardWeight(x, dF, dw1, T, H, F, s); }},
      {"lm_head_fwd", shapeText({T, H, V}), 2.0 * T * H * V, 0,
       [&] { return gemm->linearForward(x, embed, nullptr, logits, T, H, V, s); }},
      {"lm_head_dgrad", shapeText({T, H, V}), 2.0 * T * H * V, 0,
       [&] { return gemm->linearBackwardInput(logits, embed, tH1, T, H, V, s); }},
      {"lm_head_wgrad+=", shapeText({T, H, V}), 2.0 * T * H * V, 0,
       [&] { return gemm->linearBackwardWeight(x, logits, dEmbed, T, H, V, s); }},
      {"rmsnorm_fwd+res", tH, 0, 4 * actH,
       [&] { return cuda::rmsnormForward(x, res, tH1, normW, tH2, T, H, 1e-5f, s); }},
      {"rmsnorm_bwd+dres", tH, 0, 4 * actH, [&] {
         return cuda::rmsnormBackward(x, normW, dy, res, tH1, normDw, normWs, T, H,
                                      1e-5f, s);
       }},
      {"rmsnorm_fwd(head)", shapeText({headRows, 128}), 0, 2 * actH,
       [&] { return cuda::rmsnormForward(x, nullptr, nullptr, normW, tH2, headRows, 128, 1e-6f, s); }},
      {"rmsnorm_bwd(head)", shapeText({headRows, 128}), 0, 3 * actH, [&] {
         return cuda::rmsnormBackward(x, normW, dy, nullptr, tH1, normDw, normWs, headRows, 128,
                                      1e-6f, s);
       }},
      {"swiglu_fwd", tF, 0, 3 * actF,
       [&] { return cuda::swigluForward(gate, up, tF1, T * F, s); }},
      {"swiglu_bwd", tF, 0, 5 * actF,
       [&] { return cuda::swigluBackward(gate, up, dF, tF1, tF2, T * F, s); }},
      {"rotary_fwd", rope, 0, 2 * actH,
       [&] { return cuda::rotaryForward(x, tH1, kBatch, kSeq, kHeads, *table, s); }},
      {"rotary_bwd", rope, 0, 2 * actH,
       [&] { return cuda::rotaryBackward(dy, tH1, kBatch, kSeq, kHeads, *table, s); }},
      // llama3.2-1b's packed [q | k | v] rows (8 kv heads): gate holds
      // them forward, tF2 backward.
      {"split_qkv_rotary", rope + " kv8", 0, 2 * actQkv,
       [&] { return cuda::rotaryQkv(splitParts, kBatch, kSeq, kHeads, 8, *table, false, s); }},
      {"rotary_concat_qkv", rope + " kv8", 0, 2 * actQkv,
       [&] { return cuda::rotaryQkv(concatParts, kBatch, kSeq, kHeads, 8, *table, true, s); }},
      {"embedding_fwd", shapeText({T, V, H}), 0, 2 * actH,
       [&] { return cuda::embeddingForward(ids, embed, tH1, T, H, s); }},
      {"embedding_bwd+=", shapeText({T, V, H}), 0, actH + 4 * actH, [&] {
         return cuda::embeddingBackward(ids, dy, dEmbed, embedWs, T, V, H, s);
       }},
      {"cross_entropy_fwd", tV, 0, double(T) * V * 2, [&] {
         return cuda::crossEntropyForward(logits, labels, mask, lse, loss, loss + 1,
                                          T, V, s);
       }},
      {"cross_entropy_bwd", tV, 0, double(T) * V * 4, [&] {
         // mask is all ones: its first element serves as the gradient seed 1.
         return cuda::crossEntropyBackward(logits, labels, mask, lse, loss + 1, mask,
                                           dlogits, T, V, s);
       }},
      {"adamw", params, 0, 28 * nd,
       [&] { return cuda::adamwStep(adam, adamParams, nullptr, s); }},
      {"sum_of_squares", params, 0, 4 * nd,
       [&] { return cuda::sumOfSquares(grads, sumOut, sumWs, s); }},
      {"all_finite", params, 0, 4 * nd,
       [&] { return cuda::allFinite(grads, finite, s); }},
      {"cast_f32_to_bf16", params, 0, 6 * nd,
       [&] { return cuda::castFloatToBf16(param, paramBf16, N, s); }},
      {"cast_bf16_to_f32", params, 0, 6 * nd,
       [&] { return cuda::castBf16ToFloat(paramBf16, grad, N, s); }},
  };
  // Llama-3.2-1B (32 heads, 8 kv, 64) and Qwen3-0.6B (16 heads, 8 kv, 128).
  addAttentionBenches(benches, keep, fill, kHeads, 8, kHeadDim, s);
  addAttentionBenches(benches, keep, fill, 16, 8, 128, s);
  auto grouped = cuda::GroupedGemm::create();
  if (!grouped)
    throwIfError(grouped.status(), "GroupedGemm");
  addMoEBenches(benches, keep, fill, *gemm, **grouped, s);
  addGemmShapeBenches(benches, keep, fill, *gemm, s);
  auto routerBlas = cuda::RouterBlas::create();
  if (!routerBlas)
    throwIfError(routerBlas.status(), "RouterBlas");
  addRouterBenches(benches, keep, fill, **routerBlas, s);
  check(cudaStreamSynchronize(s), "attention setup");
  std::printf("%-20s %-28s %10s %14s\n", "kernel", "shape", "median ms", "rate");
  for (const Bench &b : benches) {
    if (b.kernel.rfind(only, 0) != 0)
      continue;
    const double ms = medianMs(b, s);
    char rate[64];
    if (b.flops > 0)
      std::snprintf(rate, sizeof(rate), "%.0f TFLOP/s", b.flops / ms / 1e9);
    else
      std::snprintf(rate, sizeof(rate), "%.0f GB/s", b.bytes / ms / 1e6);
    std::printf("%-20s %-28s %10.4f %14s\n", b.kernel.c_str(), b.shape.c_str(), ms,
                rate);
    reportRow(b.kernel, b.shape + " (bench)", -1, -1, "ran", ms, rate);
  }
  check(cudaStreamDestroy(s), "stream");
  return 0;
}

} // namespace

/// MtCudaKernelBench [prefix]: e.g. `MtCudaKernelBench moe_` times the MoE
/// experts' paths only.
int main(int argc, char **argv) {
  try {
    return run(argc > 1 ? argv[1] : "");
  } catch (const std::exception &e) {
    std::fprintf(stderr, "MtCudaKernelBench: %s\n", e.what());
    return 1;
  }
}
