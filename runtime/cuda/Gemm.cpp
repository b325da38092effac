// GemmRunner: the linear layer's products on cuBLASLt (bf16 x bf16, fp32
// accumulation), mapped from row-major HF layouts to cuBLAS's column-major.
#include "runtime/cuda/Gemm.h"

#include "runtime/cuda/Check.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace mt::cuda {

namespace {

/// Largest power of two (up to 256, cuBLASLt's default assumption) dividing
/// the address: the heuristic must not pick a kernel that needs more.
int64_t alignmentOf(const void *p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  int64_t align = 256;
  while (align > 1 && address % align != 0)
    align /= 2;
  return align;
}

/// The token count of a product: n of the forward and input-gradient
/// products, k of the weight gradient's (GemmRunner's layouts below).
template <typename Op, typename Problem> auto &tokensOf(Op op, Problem &pr) {
  return op == Op::BackwardWeight ? pr.k : pr.n;
}

std::string shapeText(int64_t m, int64_t n, int64_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) +
         " k=" + std::to_string(k);
}

} // namespace

Expected<GemmRunner> GemmRunner::create(size_t workspaceBytes) {
  GemmRunner runner;
  MT_CUBLAS_CHECK(cublasLtCreate(&runner.handle_));
  if (workspaceBytes) {
    MT_CUDA_CHECK(cudaMalloc(&runner.workspace_, workspaceBytes));
    runner.workspaceBytes_ = workspaceBytes;
  }
  return runner;
}

GemmRunner::GemmRunner(GemmRunner &&other) noexcept { *this = std::move(other); }

GemmRunner &GemmRunner::operator=(GemmRunner &&other) noexcept {
  if (this != &other) {
    release();
    handle_ = std::exchange(other.handle_, nullptr);
    workspace_ = std::exchange(other.workspace_, nullptr);
    workspaceBytes_ = std::exchange(other.workspaceBytes_, 0);
    plans_ = std::move(other.plans_);
    other.plans_.clear();
    choice_ = other.choice_;
  }
  return *this;
}

GemmRunner::~GemmRunner() { release(); }

Status GemmRunner::destroyPlan(Plan &plan) {
  if (plan.a)
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan.a));
  if (plan.b)
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan.b));
  if (plan.c)
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan.c));
  if (plan.d)
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(plan.d));
  if (plan.desc)
    MT_CUBLAS_CHECK(cublasLtMatmulDescDestroy(plan.desc));
  plan = Plan{};
  return Status::ok();
}

// A destructor cannot report: failures while releasing are dropped, as the
// handle and memory are gone either way.
void GemmRunner::release() {
  for (auto &[key, plan] : plans_)
    (void)destroyPlan(plan);
  plans_.clear();
  if (workspace_)
    (void)cudaFree(workspace_);
  if (handle_)
    (void)cublasLtDestroy(handle_);
  workspace_ = nullptr;
  handle_ = nullptr;
  workspaceBytes_ = 0;
}

Expected<GemmRunner::Plan *> GemmRunner::plan(const Key &key,
                                              const Problem &pr) {
  if (auto it = plans_.find(key); it != plans_.end())
    return &it->second;
  Plan plan;
  // Destroys what was created so far when a later step fails.
  auto fail = [&](Status error) -> Expected<Plan *> {
    (void)destroyPlan(plan);
    return error;
  };
  auto check = [](cublasStatus_t s, const char *call) {
    return s == CUBLAS_STATUS_SUCCESS
               ? Status::ok()
               : cublasFailure(s, call, __FILE__, __LINE__);
  };
#define MT_PLAN_STEP(call)                                                     \
  if (Status s = check((call), #call); !s.isOk())                              \
    return fail(std::move(s));
  MT_PLAN_STEP(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t transA = pr.transA, transB = pr.transB;
  MT_PLAN_STEP(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transA, sizeof(transA)));
  MT_PLAN_STEP(cublasLtMatmulDescSetAttribute(
      plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &transB, sizeof(transB)));
  if (pr.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t biasType = CUDA_R_16BF;
    MT_PLAN_STEP(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    MT_PLAN_STEP(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &biasType,
        sizeof(biasType)));
  }
  // Stored (pre-op) shapes: op(A) is m x k, op(B) is k x n.
  const bool ta = pr.transA == CUBLAS_OP_T, tb = pr.transB == CUBLAS_OP_T;
  MT_PLAN_STEP(cublasLtMatrixLayoutCreate(&plan.a, pr.abType, ta ? pr.k : pr.m,
                                          ta ? pr.m : pr.k, pr.lda));
  MT_PLAN_STEP(cublasLtMatrixLayoutCreate(&plan.b, pr.abType, tb ? pr.n : pr.k,
                                          tb ? pr.k : pr.n, pr.ldb));
  MT_PLAN_STEP(cublasLtMatrixLayoutCreate(&plan.c, pr.cdType, pr.m, pr.n, pr.ldc));
  MT_PLAN_STEP(cublasLtMatrixLayoutCreate(&plan.d, pr.cdType, pr.m, pr.n, pr.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  MT_PLAN_STEP(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = workspaceBytes_;
  const uint32_t align = static_cast<uint32_t>(std::get<4>(key));
  cublasLtMatmulHeuristicResult_t results[kCandidates]{};
  const int wanted = choice_ == Choice::Heuristic ? 1 : kCandidates;
  int returned = 0;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
      sizeof(workspace));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasLtMatmulPreferenceSetAttribute(pref, attr, &align,
                                                    sizeof(align));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.a, plan.b,
                                            plan.c, plan.d, pref, wanted, results,
                                            &returned);
  const cublasStatus_t destroyed = cublasLtMatmulPreferenceDestroy(pref);
  MT_PLAN_STEP(status);
  MT_PLAN_STEP(destroyed);
#undef MT_PLAN_STEP
  if (returned == 0)
    return fail(Status::error(errorContext() +
                              "cuBLASLt has no algorithm for the product " +
                              shapeText(pr.m, pr.n, pr.k)));
  plan.algo = results[0].algo;
  for (int i = 1; i < returned; ++i)
    plan.candidates.push_back(results[i].algo);
  plan.tokens = tokensOf(std::get<0>(key), pr);
  return &plans_.emplace(key, plan).first->second;
}

Status GemmRunner::resize(Op op, Plan &plan, int64_t tokens) {
  const uint64_t cols = uint64_t(tokens);
  auto set = [&](cublasLtMatrixLayout_t layout) -> Status {
    MT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_COLS, &cols,
                                                     sizeof(cols)));
    return Status::ok();
  };
  // Tokens are the columns of every stored operand that holds them: B, C
  // and D of the forward and input-gradient products (n); A and B (stored
  // transposed) of the weight gradient's (k).
  const bool weight = op == Op::BackwardWeight;
  const cublasLtMatrixLayout_t layouts[] = {weight ? plan.a : plan.b, weight ? plan.b : plan.c,
                                            weight ? nullptr : plan.d};
  for (cublasLtMatrixLayout_t layout : layouts)
    if (layout)
      MT_CUDA_RETURN_IF_ERROR(set(layout));
  plan.tokens = tokens;
  return Status::ok();
}

Status GemmRunner::run(Op op, const Problem &pr, const void *a, const void *b,
                       void *d, float beta, const void *bias,
                       cudaStream_t stream) {
  if (pr.m == 0 || pr.n == 0)
    return Status::ok();
  const int64_t align = std::min(std::min(alignmentOf(a), alignmentOf(b)),
                           alignmentOf(d));
  // The experts' products see a new token count at almost every call: a
  // plan (descriptors and a heuristic query, tens of microseconds) per
  // bucket of kTokenBucket counts, its layouts resized to the count, keeps
  // them from costing more than the product. Should the bucket's algorithm
  // refuse a count, the exact count gets its own plan.
  constexpr int64_t kTokenBucket = 64;
  const int64_t tokens = tokensOf(op, pr);
  Problem bucketed = pr;
  tokensOf(op, bucketed) = (tokens + kTokenBucket - 1) / kTokenBucket * kTokenBucket;
  const bool inBucket = tokens % kTokenBucket != 0;
  const float alpha = 1.0f;
  for (const bool exact : {false, true}) {
    const Problem &problem = exact ? pr : bucketed;
    Expected<Plan *> found =
        plan(Key{op, problem.m, problem.n, problem.k, align, exact}, problem);
    if (!found)
      return found.status();
    Plan &p = **found;
    if (p.tokens != tokens)
      MT_CUDA_RETURN_IF_ERROR(resize(op, p, tokens));
    if (pr.bias)
      MT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    // After the bias pointer: the epilogue reads the caller's bias (only read).
    if (!p.candidates.empty()) {
      cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
      MT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
      if (capturing == cudaStreamCaptureStatusNone)
        MT_CUDA_RETURN_IF_ERROR(timeCandidates(p, pr, beta, stream));
    }
    // C and D are the same buffer: beta = 1 accumulates in place.
    const cublasStatus_t status =
        cublasLtMatmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, d, p.c, d, p.d, &p.algo,
                       workspace_, workspaceBytes_, stream);
    if (status == CUBLAS_STATUS_SUCCESS)
      return Status::ok();
    if (exact || !inBucket || status != CUBLAS_STATUS_NOT_SUPPORTED)
      MT_CUBLAS_CHECK(status);
  }
  return Status::ok();
}

namespace {

/// Stream-ordered scratch and two events, released on every path.
struct TimingScratch {
  cudaStream_t stream;
  void *data = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  ~TimingScratch() {
    if (data)
      (void)cudaFreeAsync(data, stream);
    if (start)
      (void)cudaEventDestroy(start);
    if (stop)
      (void)cudaEventDestroy(stop);
  }
};

} // namespace

Status GemmRunner::timeCandidates(Plan &plan, const Problem &pr, float beta,
                                  cudaStream_t stream) {
  std::vector<cublasLtMatmulAlgo_t> algos{plan.algo};
  algos.insert(algos.end(), plan.candidates.begin(), plan.candidates.end());
  plan.candidates.clear();
  // Stored operands, column-major: A (ta ? k : m) x (ta ? m : k), B
  // (tb ? n : k) x (tb ? k : n), D m x n; each from a 256-byte boundary.
  auto rounded = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t aCols = size_t(pr.transA == CUBLAS_OP_T ? pr.m : pr.k),
               bCols = size_t(pr.transB == CUBLAS_OP_T ? pr.k : pr.n);
  const size_t aBytes = rounded(size_t(pr.lda) * aCols * 2),
               bBytes = rounded(size_t(pr.ldb) * bCols * 2),
               dBytes = rounded(size_t(pr.ldc) * size_t(pr.n) * (pr.cdType == CUDA_R_32F ? 4 : 2));
  TimingScratch t{stream};
  if (cudaMallocAsync(&t.data, aBytes + bBytes + dBytes, stream) != cudaSuccess) {
    (void)cudaGetLastError(); // no room to time: the first answer stays
    t.data = nullptr;
    return Status::ok();
  }
  char *a = static_cast<char *>(t.data), *b = a + aBytes, *d = b + bBytes;
  // One small value everywhere: a product's time does not depend on its
  // values, except that zeros draw less power.
  MT_CUDA_CHECK(cudaMemsetAsync(t.data, 0x3c, aBytes + bBytes + dBytes, stream));
  MT_CUDA_CHECK(cudaEventCreate(&t.start));
  MT_CUDA_CHECK(cudaEventCreate(&t.stop));
  const float alpha = 1.0f;
  auto product = [&](const cublasLtMatmulAlgo_t &algo) {
    return cublasLtMatmul(handle_, plan.desc, &alpha, a, plan.a, b, plan.b, &beta, d, plan.c, d,
                          plan.d, &algo, workspace_, workspaceBytes_, stream);
  };
  // The best of two rounds of kRepeats products, per product; -1: refused.
  constexpr int kRepeats = 10;
  std::vector<float> ms(algos.size(), -1.0f);
  for (size_t i = 0; i < algos.size(); ++i) {
    if (product(algos[i]) != CUBLAS_STATUS_SUCCESS)
      continue; // an answer for the bucket that refuses this count
    for (int round = 0; round < 2; ++round) {
      MT_CUDA_CHECK(cudaEventRecord(t.start, stream));
      for (int r = 0; r < kRepeats; ++r)
        MT_CUBLAS_CHECK(product(algos[i]));
      MT_CUDA_CHECK(cudaEventRecord(t.stop, stream));
      MT_CUDA_CHECK(cudaEventSynchronize(t.stop));
      float total = 0;
      MT_CUDA_CHECK(cudaEventElapsedTime(&total, t.start, t.stop));
      ms[i] = ms[i] < 0 ? total / kRepeats : std::min(ms[i], total / kRepeats);
    }
  }
  size_t chosen = 0;
  for (size_t i = 1; i < algos.size(); ++i)
    if (ms[0] > 0 && ms[i] > 0 && ms[i] < ms[chosen] && ms[i] < (1.0 - kTimedMargin) * ms[0])
      chosen = i;
  plan.algo = algos[chosen];
  if (choice_ == Choice::Verbose)
    std::fprintf(stderr,
                 "mtc: GEMM %s (%s, beta %g): first answer %.4f ms, chosen #%zu of %zu %.4f ms\n",
                 shapeText(pr.m, pr.n, pr.k).c_str(),
                 pr.cdType == CUDA_R_32F ? "fp32 out" : "bf16 out", double(beta), double(ms[0]),
                 chosen, algos.size(), double(ms[chosen]));
  return Status::ok();
}

// Row-major y [T, O] is column-major yᵀ (O x T, ld O); w [O, I] is
// column-major W_c (I x O, ld I); x [T, I] is X_c (I x T, ld I). So
// yᵀ = W_cᵀ X_c: m = O, n = T, k = I ("TN", cuBLASLt's fastest layout).
Status GemmRunner::linearForward(const bf16 *x, const bf16 *w, const bf16 *bias,
                                 bf16 *y, int64_t tokens, int64_t in,
                                 int64_t out, cudaStream_t stream) {
  const Problem pr{CUBLAS_OP_T, CUBLAS_OP_N, out, tokens, in, in, in, out,
                   CUDA_R_16BF, CUDA_R_16BF, bias != nullptr};
  return run(bias ? Op::ForwardBias : Op::Forward, pr, w, x, y, 0.0f, bias,
             stream);
}

// dxᵀ (I x T) = W_c (I x O) dyᵀ (O x T): m = I, n = T, k = O, "NN".
Status GemmRunner::linearBackwardInput(const bf16 *dy, const bf16 *w, bf16 *dx,
                                       int64_t tokens, int64_t in, int64_t out,
                                       cudaStream_t stream, bool accumulate) {
  const Problem pr{CUBLAS_OP_N, CUBLAS_OP_N, in, tokens, out, in, out, in,
                   CUDA_R_16BF, CUDA_R_16BF, false};
  return run(Op::BackwardInput, pr, w, dy, dx, accumulate ? 1.0f : 0.0f,
             nullptr, stream);
}

// dWᵀ (I x O, ld I) += xᵀ (I x T) dy (T x O): A = X_c (I x T, ld I) "N",
// B = dyᵀ stored as O x T (ld O) "T"; m = I, n = O, k = T; C/D fp32.
Status GemmRunner::linearBackwardWeight(const bf16 *x, const bf16 *dy, float *dw,
                                        int64_t tokens, int64_t in, int64_t out,
                                        cudaStream_t stream, bool accumulate) {
  const Problem pr{CUBLAS_OP_N, CUBLAS_OP_T, in, out, tokens, in, out, in,
                   CUDA_R_16BF, CUDA_R_32F, false};
  return run(Op::BackwardWeight, pr, x, dy, dw, accumulate ? 1.0f : 0.0f, nullptr, stream);
}

} // namespace mt::cuda
