// cuBLASLt's candidate algorithms for each GEMM of a dense decoder's training
// step, timed two ways on random bf16 operands: a burst (5 products after
// 150 ms idle, the clock still high) and sustained (as many products as fill
// --sustain-ms, after as many to reach the power cap's steady clock). The
// step runs at the H200's 700 W cap, so the sustained figure is the one that
// predicts a GEMM's time inside it; the burst one is what a short timing at
// plan time sees (GemmRunner's Choice::Timed).
//
//   bench/gpu-gemm-candidates.sh [ARGS]   builds and runs it (nvcc, cuBLASLt)
//   gemm-candidates [--tokens T] [--hidden H] [--ffn F] [--vocab V] [--q Q]
//                   [--kv KV] [--layers L] [--candidates N] [--sustain-ms MS]
//
// Defaults: llama3.2-1b at 8192 tokens per micro-batch (T 8192, H 2048,
// F 8192, V 128256, query width Q 2048, key and value width KV 512, 16
// layers, 8 candidates, 250 ms). The products and layouts are GemmRunner's
// (runtime/cuda/Gemm.cpp): forward TN (bf16 out), input gradient NN (bf16
// out), weight gradient NT (fp32 out, beta 0), with q/k/v and gate/up packed
// as mt-fuse packs them. Prints a line per candidate and per product, then
// the step's GEMM time (layer products L times, the LM head once) with
// cuBLASLt's first answers and with the fastest sustained candidates.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

namespace {

void check(int status, const char *call, int line) {
  if (status != 0) {
    std::fprintf(stderr, "gemm-candidates: %s failed with status %d (line %d)\n", call, status,
                 line);
    std::exit(1);
  }
}
#define CHECK(call) check(int(call), #call, __LINE__)

/// Uniform values in [-0.05, 0.05) from a counter hash: training-like bits
/// (a product on zeros or one constant draws less power and runs faster).
__global__ void fillRandom(__nv_bfloat16 *p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    p[i] = __float2bfloat16((float(h & 0xffff) / 65536.0f - 0.5f) * 0.1f);
  }
}

enum class Kind { Forward, InputGrad, WeightGrad };
const char *kindName(Kind k) {
  return k == Kind::Forward ? "fwd" : k == Kind::InputGrad ? "dgrad" : "wgrad";
}

/// One product: a linear layer of `out` x `in` over `tokens` rows, `count`
/// times per step.
struct Product {
  std::string layer;
  Kind kind;
  long m, n, k;
  int count;
};

struct Options {
  long tokens = 8192, hidden = 2048, ffn = 8192, vocab = 128256, q = 2048, kv = 512;
  int layers = 16, candidates = 8;
  double sustainMs = 250;
};

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "gemm-candidates: %s needs a value\n", flag.c_str());
      std::exit(2);
    }
    const char *v = argv[++i];
    char *end = nullptr;
    const double x = std::strtod(v, &end);
    const bool whole = flag != "--sustain-ms";
    if (*end || !(x > 0) || x > 1e9 || (whole && x != std::floor(x))) {
      std::fprintf(stderr, "gemm-candidates: %s %s: expected a positive %s up to 1e9\n",
                   flag.c_str(), v, whole ? "whole number" : "number");
      std::exit(2);
    }
    if (flag == "--tokens") o.tokens = long(x);
    else if (flag == "--hidden") o.hidden = long(x);
    else if (flag == "--ffn") o.ffn = long(x);
    else if (flag == "--vocab") o.vocab = long(x);
    else if (flag == "--q") o.q = long(x);
    else if (flag == "--kv") o.kv = long(x);
    else if (flag == "--layers") o.layers = int(x);
    else if (flag == "--candidates") o.candidates = int(x);
    else if (flag == "--sustain-ms") o.sustainMs = x;
    else {
      std::fprintf(stderr, "gemm-candidates: unknown option %s (see the file's header)\n",
                   flag.c_str());
      std::exit(2);
    }
  }
  return o;
}

/// The step's products: q/k/v, o, fc1 (gate and up packed), fc2, LM head.
std::vector<Product> productsOf(const Options &o) {
  const struct { const char *name; long out, in; int count; } layers[] = {
      {"qkv", o.q + 2 * o.kv, o.hidden, o.layers}, {"o", o.hidden, o.q, o.layers},
      {"fc1", 2 * o.ffn, o.hidden, o.layers}, {"fc2", o.hidden, o.ffn, o.layers},
      {"lm_head", o.vocab, o.hidden, 1}};
  std::vector<Product> products;
  for (const auto &l : layers) {
    products.push_back({l.name, Kind::Forward, l.out, o.tokens, l.in, l.count});
    products.push_back({l.name, Kind::InputGrad, l.in, o.tokens, l.out, l.count});
    products.push_back({l.name, Kind::WeightGrad, l.in, l.out, o.tokens, l.count});
  }
  return products;
}

} // namespace

namespace {

/// A product's cuBLASLt descriptors, destroyed with it.
struct Descriptors {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  explicit Descriptors(const Product &p) {
    const cublasOperation_t ta = p.kind == Kind::Forward ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = p.kind == Kind::WeightGrad ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cudaDataType_t out = p.kind == Kind::WeightGrad ? CUDA_R_32F : CUDA_R_16BF;
    CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const int32_t opA = ta, opB = tb;
    CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
    CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
    // Stored (pre-op) shapes, column-major, each tightly packed.
    const bool tA = ta == CUBLAS_OP_T, tB = tb == CUBLAS_OP_T;
    CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, tA ? p.k : p.m, tA ? p.m : p.k,
                                     tA ? p.k : p.m));
    CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, tB ? p.n : p.k, tB ? p.k : p.n,
                                     tB ? p.n : p.k));
    CHECK(cublasLtMatrixLayoutCreate(&c, out, p.m, p.n, p.m));
  }
  ~Descriptors() {
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatmulDescDestroy(desc);
  }
};

struct Timing {
  float burstMs, sustainedMs;
};

/// Times `run` (one product) as the header says; milliseconds per product.
template <typename Run> Timing timeProduct(Run run, double sustainMs) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaDeviceSynchronize());
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  auto timed = [&](int repeats) {
    CHECK(cudaEventRecord(start));
    for (int r = 0; r < repeats; ++r)
      CHECK(run());
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms / float(repeats);
  };
  Timing t;
  t.burstMs = timed(5);
  const int repeats = int(sustainMs / t.burstMs) + 1;
  timed(repeats); // to the power cap's steady clock
  t.sustainedMs = timed(repeats);
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return t;
}

int32_t configOf(const cublasLtMatmulAlgo_t &algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  int32_t value = -1;
  size_t written = 0;
  CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &value, sizeof(value), &written));
  return value;
}

} // namespace

int main(int argc, char **argv) {
  const Options o = parse(argc, argv);
  const std::vector<Product> products = productsOf(o);
  size_t operand = 0, output = 0; // the largest, in bytes
  for (const Product &p : products) {
    operand = std::max({operand, size_t(p.m) * p.k * 2, size_t(p.k) * p.n * 2});
    output = std::max(output, size_t(p.m) * p.n * (p.kind == Kind::WeightGrad ? 4 : 2));
  }
  cublasLtHandle_t handle;
  CHECK(cublasLtCreate(&handle));
  size_t workspaceBytes = size_t(32) << 20; // GemmRunner's
  void *workspace, *d;
  __nv_bfloat16 *a, *b;
  CHECK(cudaMalloc(&workspace, workspaceBytes));
  CHECK(cudaMalloc(&a, operand));
  CHECK(cudaMalloc(&b, operand));
  CHECK(cudaMalloc(&d, output));
  fillRandom<<<4096, 256>>>(a, operand / 2, 1);
  fillRandom<<<4096, 256>>>(b, operand / 2, 2);
  CHECK(cudaGetLastError());
  double firstStep = 0, firstBurstStep = 0, bestStep = 0;
  for (const Product &p : products) {
    Descriptors ds(p);
    cublasLtMatmulPreference_t pref;
    CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                               &workspaceBytes, sizeof(workspaceBytes)));
    std::vector<cublasLtMatmulHeuristicResult_t> results(o.candidates);
    int returned = 0;
    CHECK(cublasLtMatmulAlgoGetHeuristic(handle, ds.desc, ds.a, ds.b, ds.c, ds.c, pref,
                                         o.candidates, results.data(), &returned));
    CHECK(cublasLtMatmulPreferenceDestroy(pref));
    const double flops = 2.0 * p.m * p.n * p.k;
    Timing first{0, 0};
    float best = 1e30f;
    int bestIndex = -1;
    for (int i = 0; i < returned; ++i) {
      const float alpha = 1, beta = 0;
      auto run = [&] {
        return cublasLtMatmul(handle, ds.desc, &alpha, a, ds.a, b, ds.b, &beta, d, ds.c, d, ds.c,
                              &results[i].algo, workspace, workspaceBytes, nullptr);
      };
      if (run() != CUBLAS_STATUS_SUCCESS) {
        std::printf("%-8s %-5s #%d refused\n", p.layer.c_str(), kindName(p.kind), i);
        continue;
      }
      const Timing t = timeProduct(run, o.sustainMs);
      std::printf("%-8s %-5s m %6ld n %6ld k %6ld  #%d tile %3d stages %3d  burst %8.4f ms "
                  "(%3.0f TFLOP/s)  sustained %8.4f ms (%3.0f TFLOP/s)\n",
                  p.layer.c_str(), kindName(p.kind), p.m, p.n, p.k, i,
                  configOf(results[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                  configOf(results[i].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID), t.burstMs,
                  flops / t.burstMs / 1e9, t.sustainedMs, flops / t.sustainedMs / 1e9);
      if (i == 0)
        first = t;
      if (t.sustainedMs < best) {
        best = t.sustainedMs;
        bestIndex = i;
      }
    }
    if (bestIndex < 0 || first.sustainedMs == 0) {
      std::fprintf(stderr, "gemm-candidates: cuBLASLt ran no candidate of %s %s\n",
                   p.layer.c_str(), kindName(p.kind));
      return 1;
    }
    std::printf("=> %-8s %-5s first answer %.4f ms sustained, fastest #%d %.4f ms (%+.1f%%)\n",
                p.layer.c_str(), kindName(p.kind), first.sustainedMs, bestIndex, best,
                100.0 * (best / first.sustainedMs - 1));
    firstStep += p.count * first.sustainedMs;
    firstBurstStep += p.count * first.burstMs;
    bestStep += p.count * best;
  }
  std::printf("the step's GEMMs: first answers %.2f ms sustained (%.2f ms in bursts), fastest "
              "sustained candidates %.2f ms (%+.1f%%)\n",
              firstStep, firstBurstStep, bestStep, 100.0 * (bestStep / firstStep - 1));
  return 0;
}
