// The routed SwiGLU experts: each expert's rows (sorted by expert in
// MoEPermute.cu) through its GEMMs. The GEMMs run on the libraries
// (cuBLASLt per expert, or cuBLAS's grouped GEMM for the bf16 products:
// ExpertGemm), after one copy of the row counts to the host, or on kernels
// that read the row ranges on the device: our tensor-core grouped GEMM (ExpertGemm::Kernel,
// GroupedGemmKernel.h) or a shared-memory tiled one (ExpertGemm::Tiled).
#include "runtime/cuda/MoE.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/MoEShared.cuh"
#include "runtime/plan/KernelWorkspace.h"

#include <cassert>
#include <string>
#include <vector>

namespace mt::cuda {
namespace {

__device__ float toFloat(float v) { return v; }
__device__ float toFloat(bf16 v) { return __bfloat162float(v); }

__device__ float sigmoidf(float a) { return 1.0f / (1.0f + expf(-a)); }

/// The tiled forward's fc1_output and act from its fp32 products: fc1 [2,
/// rows, ffn] = bf16(gatePre), bf16(upPre) (zero at or past row
/// offsets[experts]), what the backward reads; act = silu(gatePre) upPre
/// from the fp32 values (in place over gatePre), so the forward's output
/// keeps its one rounding.
__global__ void fc1Kernel(float *gatePre, const float *upPre, bf16 *fc1,
                          const int32_t *offsets, int64_t experts, int64_t rows, int64_t ffn) {
  const int64_t n = rows * ffn, used = int64_t(offsets[experts]) * ffn;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = i < used ? gatePre[i] : 0.0f, u = i < used ? upPre[i] : 0.0f;
    fc1[i] = __float2bfloat16(a), fc1[n + i] = __float2bfloat16(u);
    gatePre[i] = a * sigmoidf(a) * u;
  }
}

/// The tiled backward's fp32 pre-activations from fc1 [2, rows, ffn] and
/// act = silu(gatePre) upPre (zero at or past row offsets[experts]: those
/// rows are no group's).
__global__ void fromFc1Kernel(const bf16 *fc1, float *gatePre, float *upPre, float *act,
                              const int32_t *offsets, int64_t experts, int64_t rows,
                              int64_t ffn) {
  const int64_t n = rows * ffn, used = int64_t(offsets[experts]) * ffn;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = i < used ? __bfloat162float(fc1[i]) : 0.0f;
    const float u = i < used ? __bfloat162float(fc1[n + i]) : 0.0f;
    gatePre[i] = a, upPre[i] = u, act[i] = a * sigmoidf(a) * u;
  }
}

/// In place: gatePre <- d gatePre, upPre <- d upPre, from dact.
__global__ void swigluGradKernel(float *gatePre, float *upPre, const float *dact, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = gatePre[i], u = upPre[i], sig = sigmoidf(a), d = dact[i];
    gatePre[i] = d * u * sig * (1.0f + a * (1.0f - sig));
    upPre[i] = d * a * sig;
  }
}

/// out (=|+=) src as bf16, rows [rows, hidden]; rows at or past
/// offsets[experts] (no expert's) are zero when written.
__global__ void toBf16Kernel(const float *src, bf16 *out, bool add, const int32_t *offsets,
                             int64_t experts, int64_t rows, int64_t hidden) {
  const int64_t n = rows * hidden, used = int64_t(offsets[experts]) * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = i < used ? src[i] : 0.0f;
    out[i] = __float2bfloat16(add ? __bfloat162float(out[i]) + v : v);
  }
}

/// One GEMM per expert in one launch. C(m, n) (+)= sum_k A(m, k) B_e(k, n)
/// with A(m, k) = a[m * am + k * ak], B_e(k, n) = b[e * be + k * bk + n * bn]
/// and C(m, n) = c[e * ce + m * cm + n]. Grouped by rows (`byRows`): expert
/// e computes rows m in [offsets[e], offsets[e + 1]) for every k < K, into
/// one C (ce = 0). Grouped by the reduction (weight gradients): expert e
/// sums over k in [offsets[e], offsets[e + 1]) for every m < M into its
/// own C_e. Tiles of 32 x 32, 256 threads of 4 outputs each, fp32
/// accumulation in k order: deterministic.
struct GemmOperands {
  int64_t am, ak, be, bk, bn, ce, cm;
  int64_t M, N, K; // M (by rows: ignored) and K (by reduction: ignored)
  bool byRows, accumulate;
};

constexpr int kTile = 32;

template <typename TA, typename TB>
__global__ void groupedGemmKernel(const TA *a, const TB *b, float *c, const int32_t *offsets,
                                  GemmOperands g) {
  __shared__ float as[kTile][kTile + 1], bs[kTile][kTile + 1];
  const int64_t e = blockIdx.z;
  int64_t mBegin = 0, mEnd = g.M, kBegin = 0, kEnd = g.K;
  if (g.byRows)
    mBegin = offsets[e], mEnd = offsets[e + 1];
  else
    kBegin = offsets[e], kEnd = offsets[e + 1];
  const int64_t m0 = mBegin + int64_t(blockIdx.y) * kTile, n0 = int64_t(blockIdx.x) * kTile;
  if (m0 >= mEnd || n0 >= g.N)
    return;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile; // ty < 8
  const TB *be = b + e * g.be;
  float acc[4] = {0, 0, 0, 0};
  for (int64_t k0 = kBegin; k0 < kEnd; k0 += kTile) {
    for (int r = ty; r < kTile; r += 8) {
      const int64_t m = m0 + r, k = k0 + tx;
      as[r][tx] = m < mEnd && k < kEnd ? toFloat(a[m * g.am + k * g.ak]) : 0.0f;
      const int64_t kb = k0 + r, n = n0 + tx;
      bs[r][tx] = kb < kEnd && n < g.N ? toFloat(be[kb * g.bk + n * g.bn]) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTile; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        acc[i] += as[ty + 8 * i][kk] * bs[kk][tx];
    __syncthreads();
  }
  float *ce = c + e * g.ce;
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 8 * i, n = n0 + tx;
    if (m < mEnd && n < g.N) {
      float *out = ce + m * g.cm + n;
      *out = g.accumulate ? *out + acc[i] : acc[i];
    }
  }
}

/// `maxRows`: an upper bound of any expert's rows (by rows) or M.
template <typename TA, typename TB>
Status groupedGemm(const TA *a, const TB *b, float *c, const int32_t *offsets,
                   int64_t experts, int64_t maxRows, const GemmOperands &g,
                   cudaStream_t stream) {
  if (maxRows == 0 || g.N == 0)
    return Status::ok();
  dim3 grid(unsigned((g.N + kTile - 1) / kTile), unsigned((maxRows + kTile - 1) / kTile),
            unsigned(experts));
  groupedGemmKernel<TA, TB><<<grid, kTile * 8, 0, stream>>>(a, b, c, offsets, g);
  MT_CUDA_CHECK_LAUNCH("moe_grouped_gemm");
  return Status::ok();
}

/// The tiled path's scratch (fp32 rows): offsets, the gate/up products
/// (the forward's act in place of the gate's), the output or dxp, and in
/// the backward the act and dact.
struct GroupedScratch {
  int32_t *offsets;
  float *gatePre, *upPre, *act = nullptr, *out, *dact = nullptr;
  GroupedScratch(void *workspace, const GroupedMlpShape &s, bool backward) {
    auto *p = static_cast<char *>(workspace);
    auto take = [&](size_t bytes) {
      char *at = p;
      p += plan::workspacePart(bytes);
      return at;
    };
    const size_t N = size_t(s.rows), H = size_t(s.hidden), F = size_t(s.ffn);
    offsets = reinterpret_cast<int32_t *>(take(4 * (size_t(s.experts) + 1)));
    gatePre = reinterpret_cast<float *>(take(4 * N * F));
    upPre = reinterpret_cast<float *>(take(4 * N * F));
    out = reinterpret_cast<float *>(take(4 * N * H));
    if (backward) {
      act = reinterpret_cast<float *>(take(4 * N * F));
      dact = reinterpret_cast<float *>(take(4 * N * F));
    }
  }
};

/// The group offsets of the rows (w.offsets [experts + 1]).
Status groupOffsets(const int32_t *tokensPerExpert, GroupedScratch &w, const GroupedMlpShape &s,
                    cudaStream_t stream) {
  offsetsKernel<<<1, 1, 0, stream>>>(tokensPerExpert, w.offsets, s.experts);
  MT_CUDA_CHECK_LAUNCH("moe_offsets");
  return Status::ok();
}

} // namespace

namespace {

/// The gate and up products in fp32, fc1 their bf16 roundings, the act
/// from the fp32 products, then the down product.
Status tiledForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                    const bf16 *up, const bf16 *down, bf16 *y, bf16 *fc1, void *workspace,
                    const GroupedMlpShape &s, cudaStream_t stream) {
  const int64_t N = s.rows, H = s.hidden, F = s.ffn, E = s.experts;
  GroupedScratch w(workspace, s, false);
  MT_CUDA_RETURN_IF_ERROR(groupOffsets(tokensPerExpert, w, s, stream));
  GemmOperands proj{H, 1, F * H, 1, H, 0, F, 0, F, H, true, false};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(x, gate, w.gatePre, w.offsets, E, N, proj, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(x, up, w.upPre, w.offsets, E, N, proj, stream));
  fc1Kernel<<<blocksFor(N * F), 256, 0, stream>>>(w.gatePre, w.upPre, fc1, w.offsets, E, N, F);
  MT_CUDA_CHECK_LAUNCH("moe_fc1");
  const float *act = w.gatePre;
  GemmOperands out{F, 1, H * F, 1, F, 0, H, 0, H, F, true, false};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(act, down, w.out, w.offsets, E, N, out, stream));
  toBf16Kernel<<<blocksFor(N * H), 256, 0, stream>>>(w.out, y, false, w.offsets, E, N, H);
  MT_CUDA_CHECK_LAUNCH("moe_grouped_out");
  return Status::ok();
}

/// The forward's pre-activations from fc1 (its bf16 roundings, as the
/// library paths' backward reads them), the act from them, then the
/// gradients' products in fp32.
Status tiledBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                     const bf16 *up, const bf16 *down, const bf16 *fc1, const bf16 *dy,
                     bf16 *dx, bool addDx, float *dgate, float *dup, float *ddown,
                     void *workspace, const GroupedMlpShape &s, cudaStream_t stream) {
  const int64_t N = s.rows, H = s.hidden, F = s.ffn, E = s.experts;
  GroupedScratch w(workspace, s, true);
  MT_CUDA_RETURN_IF_ERROR(groupOffsets(tokensPerExpert, w, s, stream));
  fromFc1Kernel<<<blocksFor(N * F), 256, 0, stream>>>(fc1, w.gatePre, w.upPre, w.act, w.offsets,
                                                         E, N, F);
  MT_CUDA_CHECK_LAUNCH("moe_from_fc1");
  GemmOperands dAct{H, 1, H * F, F, 1, 0, F, 0, F, H, true, false};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(dy, down, w.dact, w.offsets, E, N, dAct, stream));
  GemmOperands dDown{1, H, 0, F, 1, H * F, F, H, F, 0, false, true};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(dy, w.act, ddown, w.offsets, E, H, dDown, stream));
  swigluGradKernel<<<blocksFor(N * F), 256, 0, stream>>>(w.gatePre, w.upPre, w.dact, N * F);
  MT_CUDA_CHECK_LAUNCH("moe_swiglu_bwd");
  GemmOperands dIn{F, 1, F * H, H, 1, 0, H, 0, H, F, true, false};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(w.gatePre, gate, w.out, w.offsets, E, N, dIn, stream));
  dIn.accumulate = true;
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(w.upPre, up, w.out, w.offsets, E, N, dIn, stream));
  GemmOperands dW{1, F, 0, H, 1, F * H, H, F, H, 0, false, true};
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(w.gatePre, x, dgate, w.offsets, E, F, dW, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedGemm(w.upPre, x, dup, w.offsets, E, F, dW, stream));
  toBf16Kernel<<<blocksFor(N * H), 256, 0, stream>>>(w.out, dx, addDx, w.offsets, E, N, H);
  MT_CUDA_CHECK_LAUNCH("moe_grouped_dx");
  return Status::ok();
}

// --- The libraries' path: cuBLASLt per expert, or cuBLAS's grouped GEMM ---

/// act = silu(gate) * up from the bf16 pre-activations (fp32 math, one
/// rounding); gate and up (the forward's fc1_output) are left as they are.
__global__ void swigluBf16Kernel(const bf16 *gate, const bf16 *up, bf16 *act, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = __bfloat162float(gate[i]);
    act[i] = __float2bfloat16(a * sigmoidf(a) * __bfloat162float(up[i]));
  }
}

/// From the bf16 pre-activations (fc1_output) and dact: act = silu(gate) *
/// up, dGate = dact * up * silu'(gate) (in place over dact: each element is
/// read before it is written), dUp = dact * silu(gate).
__global__ void swigluGradBf16Kernel(const bf16 *gate, const bf16 *up, bf16 *dactToDGate,
                                     bf16 *dUp, bf16 *act, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float a = __bfloat162float(gate[i]), u = __bfloat162float(up[i]);
    const float d = __bfloat162float(dactToDGate[i]), sig = sigmoidf(a);
    act[i] = __float2bfloat16(a * sig * u);
    dactToDGate[i] = __float2bfloat16(d * u * sig * (1.0f + a * (1.0f - sig)));
    dUp[i] = __float2bfloat16(d * a * sig);
  }
}

/// The library paths' scratch: bf16 [rows, ffn] the act, and in the
/// backward dact (then d gate, in place) and d up; then the grouped GEMM's
/// pointer arrays. The gate and up products are fc1_output's, not here.
struct ExpertScratch {
  bf16 *act, *dact = nullptr, *dUp = nullptr;
  void **pointers;
  ExpertScratch(void *workspace, const GroupedMlpShape &s, bool backward) {
    const size_t part = plan::workspacePart(2 * size_t(s.rows) * size_t(s.ffn));
    auto *p = static_cast<char *>(workspace);
    act = reinterpret_cast<bf16 *>(p);
    if (backward) {
      dact = reinterpret_cast<bf16 *>(p + part);
      dUp = reinterpret_cast<bf16 *>(p + 2 * part);
    }
    pointers = reinterpret_cast<void **>(p + (backward ? 3 : 1) * part);
  }
};

/// Expert `expert`'s rows [begin, begin + rows) of the permuted buffer.
struct ExpertRows {
  int64_t expert, begin, rows;
};

/// The experts that have rows, read from tokensPerExpert on the device (one
/// copy to pageable memory, which returns once the stream has reached it),
/// and in `used` the rows of all groups; an error names a count that is
/// negative or takes the sum past the rows.
Expected<std::vector<ExpertRows>> expertRows(const int32_t *tokensPerExpert,
                                             const GroupedMlpShape &s, cudaStream_t stream,
                                             int64_t &used) {
  std::vector<int32_t> counts(size_t(s.experts));
  MT_CUDA_CHECK(cudaMemcpyAsync(counts.data(), tokensPerExpert, 4 * counts.size(),
                                cudaMemcpyDeviceToHost, stream));
  MT_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<ExpertRows> groups;
  used = 0;
  for (int64_t e = 0; e < s.experts; ++e) {
    const int64_t c = counts[size_t(e)];
    if (c < 0 || used + c > s.rows)
      return Status::error(errorContext() + "moe_grouped_mlp: tokens_per_expert[" +
                           std::to_string(e) + "] = " + std::to_string(c) + " after " +
                           std::to_string(used) + " rows: the groups must fit the " +
                           std::to_string(s.rows) + " rows");
    if (c > 0)
      groups.push_back({e, used, c});
    used += c;
  }
  return groups;
}

/// Rows [used, rows) of `out` [rows, width] (no expert's) are zero.
Status zeroTail(bf16 *out, int64_t used, const GroupedMlpShape &s, int64_t width,
                cudaStream_t stream) {
  if (used < s.rows)
    MT_CUDA_CHECK(cudaMemsetAsync(out + used * width, 0,
                                  sizeof(bf16) * size_t((s.rows - used) * width), stream));
  return Status::ok();
}

/// One bf16 product of every expert with rows: a [rows, aWidth] at row
/// `begin` of `a`, expert e's weight w + e * in * out, the result [rows,
/// yWidth] at row `begin` of `y`. Forward: y = a wᵀ (w [out, in]); else
/// y (=|+=) a w.
struct ExpertProduct {
  const bf16 *a, *w;
  bf16 *y;
  int64_t in, out;
  bool forward, accumulate = false;
};

/// The bf16 products of one forward or backward on the libraries' path. On
/// the grouped one every call's operand addresses go to the device in one
/// copy before the first launch (right after the counts' copy the stream is
/// idle, so that a copy from pageable memory waits for it costs nothing),
/// then each call is one launch; else each call is one cuBLASLt product per
/// expert.
class ExpertCalls {
public:
  ExpertCalls(std::vector<ExpertProduct> calls, const std::vector<ExpertRows> &groups,
              const ExpertGemmLibs &libs, void **pointers)
      : calls_(std::move(calls)), groups_(groups), libs_(libs), pointers_(pointers) {
    // The workspace holds the pointer arrays of this many calls.
    assert(int64_t(calls_.size()) <= plan::kExpertLibraryCalls);
    // cuBLAS's grouped GEMM wants every operand address 16-byte aligned
    // when a row of k bf16 is (its documented rule): rows of multiples of 8
    // elements from 16-byte aligned bases keep every expert's aligned;
    // other shapes run per expert.
    for (const ExpertProduct &p : calls_)
      if (p.in % 8 != 0 || p.out % 8 != 0 || !aligned16(p.a) || !aligned16(p.w) ||
          !aligned16(p.y))
        libs_.grouped = nullptr;
    int64_t rows = 0;
    for (const ExpertRows &g : groups_)
      rows += g.rows;
    if (libs_.bySize && !groupedGemmFaster(rows, int64_t(groups_.size())))
      libs_.grouped = nullptr;
  }

  Status stage(cudaStream_t stream) {
    if (!libs_.grouped || groups_.empty())
      return Status::ok();
    std::vector<const void *> addresses;
    for (const ExpertProduct &p : calls_) {
      products_.push_back(productsOf(p));
      GroupedGemm::appendAddresses(products_.back(), addresses);
    }
    MT_CUDA_CHECK(cudaMemcpyAsync(pointers_, addresses.data(),
                                  sizeof(void *) * addresses.size(), cudaMemcpyHostToDevice,
                                  stream));
    return Status::ok();
  }

  Status run(size_t call, cudaStream_t stream) const {
    const ExpertProduct &p = calls_[call];
    if (libs_.grouped) {
      if (groups_.empty())
        return Status::ok();
      void *const *addresses = pointers_ + 3 * groups_.size() * call;
      return p.forward ? libs_.grouped->linearForward(products_[call], p.in, p.out, addresses,
                                                      stream)
                       : libs_.grouped->linearBackwardInput(products_[call], p.in, p.out,
                                                            p.accumulate, addresses, stream);
    }
    for (const GroupedProduct &g : productsOf(p))
      MT_CUDA_RETURN_IF_ERROR(
          p.forward
              ? libs_.runner->linearForward(g.a, g.w, nullptr, g.y, g.rows, p.in, p.out, stream)
              : libs_.runner->linearBackwardInput(g.a, g.w, g.y, g.rows, p.in, p.out, stream,
                                                  p.accumulate));
    return Status::ok();
  }

private:
  static bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

  std::vector<GroupedProduct> productsOf(const ExpertProduct &p) const {
    const int64_t aWidth = p.forward ? p.in : p.out, yWidth = p.forward ? p.out : p.in;
    std::vector<GroupedProduct> products;
    products.reserve(groups_.size());
    for (const ExpertRows &g : groups_)
      products.push_back({p.a + g.begin * aWidth, p.w + g.expert * p.in * p.out,
                          p.y + g.begin * yWidth, g.rows});
    return products;
  }

  std::vector<ExpertProduct> calls_;
  const std::vector<ExpertRows> &groups_;
  ExpertGemmLibs libs_;
  void **pointers_;
  std::vector<std::vector<GroupedProduct>> products_;
};

// The forward's and the backward's products (plan::kExpertLibraryCalls
// each): gate and up (into fc1_output), then down; or dact, dx from d gate,
// dx from d up (the backward reads the gate and up products from
// fc1_output).

Status libraryForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                      const bf16 *up, const bf16 *down, bf16 *y, bf16 *fc1,
                      const ExpertGemmLibs &libs, void *workspace, const GroupedMlpShape &s,
                      cudaStream_t stream) {
  const int64_t N = s.rows, H = s.hidden, F = s.ffn;
  int64_t used = 0;
  auto groups = expertRows(tokensPerExpert, s, stream, used);
  if (!groups)
    return groups.status();
  ExpertScratch w(workspace, s, false);
  bf16 *gatePre = fc1, *upPre = fc1 + N * F;
  ExpertCalls calls({{x, gate, gatePre, H, F, true},
                     {x, up, upPre, H, F, true},
                     {w.act, down, y, F, H, true}},
                    *groups, libs, w.pointers);
  MT_CUDA_RETURN_IF_ERROR(calls.stage(stream));
  MT_CUDA_RETURN_IF_ERROR(calls.run(0, stream));
  MT_CUDA_RETURN_IF_ERROR(calls.run(1, stream));
  if (used * F > 0) {
    swigluBf16Kernel<<<blocksFor(used * F), 256, 0, stream>>>(gatePre, upPre, w.act, used * F);
    MT_CUDA_CHECK_LAUNCH("moe_swiglu");
  }
  MT_CUDA_RETURN_IF_ERROR(calls.run(2, stream));
  MT_CUDA_RETURN_IF_ERROR(zeroTail(gatePre, used, s, F, stream));
  MT_CUDA_RETURN_IF_ERROR(zeroTail(upPre, used, s, F, stream));
  return zeroTail(y, used, s, H, stream);
}

/// dact = dy down, the SwiGLU's gradient from fc1 (gate and up not
/// recomputed), per expert ddown += dyᵀ act, dgate += dGᵀ x, dup += dUᵀ x
/// (cuBLASLt, into the fp32 gradients), and dx (=|+=) dG gate + dU up.
Status libraryBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                       const bf16 *up, const bf16 *down, const bf16 *fc1, const bf16 *dy,
                       bf16 *dx, bool addDx, float *dgate, float *dup, float *ddown,
                       const ExpertGemmLibs &libs, void *workspace, const GroupedMlpShape &s,
                       cudaStream_t stream) {
  const int64_t N = s.rows, H = s.hidden, F = s.ffn;
  int64_t used = 0;
  auto groups = expertRows(tokensPerExpert, s, stream, used);
  if (!groups)
    return groups.status();
  ExpertScratch w(workspace, s, true);
  bf16 *dGate = w.dact; // in place over dact
  ExpertCalls calls({{dy, down, w.dact, F, H, false},
                     {dGate, gate, dx, H, F, false, addDx},
                     {w.dUp, up, dx, H, F, false, true}},
                    *groups, libs, w.pointers);
  MT_CUDA_RETURN_IF_ERROR(calls.stage(stream));
  MT_CUDA_RETURN_IF_ERROR(calls.run(0, stream));
  if (used * F > 0) {
    swigluGradBf16Kernel<<<blocksFor(used * F), 256, 0, stream>>>(fc1, fc1 + N * F, w.dact,
                                                                  w.dUp, w.act, used * F);
    MT_CUDA_CHECK_LAUNCH("moe_swiglu_bwd");
  }
  std::vector<WeightGradient> grads;
  for (const ExpertRows &g : *groups) {
    const int64_t weight = g.expert * F * H;
    const bf16 *xe = x + g.begin * H;
    grads.push_back({w.act + g.begin * F, dy + g.begin * H, ddown + weight, g.rows, F, H});
    grads.push_back({xe, dGate + g.begin * F, dgate + weight, g.rows, H, F});
    grads.push_back({xe, w.dUp + g.begin * F, dup + weight, g.rows, H, F});
  }
  // The lanes only read what calls 1 and 2 read too; the join comes after
  // them, so that dx's products run meanwhile.
  ExpertLanes *lanes =
      libs.lanes && groupedGemmFaster(used, int64_t(groups->size())) ? libs.lanes : nullptr;
  if (lanes)
    MT_CUDA_RETURN_IF_ERROR(lanes->fork(grads, stream));
  else
    for (const WeightGradient &p : grads)
      MT_CUDA_RETURN_IF_ERROR(
          libs.runner->linearBackwardWeight(p.x, p.dy, p.dw, p.tokens, p.in, p.out, stream));
  MT_CUDA_RETURN_IF_ERROR(calls.run(1, stream));
  MT_CUDA_RETURN_IF_ERROR(calls.run(2, stream));
  if (lanes)
    MT_CUDA_RETURN_IF_ERROR(lanes->join(stream));
  return addDx ? Status::ok() : zeroTail(dx, used, s, H, stream);
}

// --- Our grouped GEMM kernel (GroupedGemmKernel.h): counts on the device ---

/// The kernel path's scratch: the layout, then bf16 [rows, ffn] the act
/// and, in the backward, d gate and d up (the pre-activations are
/// fc1_output's).
struct KernelScratch {
  void *layout;
  bf16 *act, *dGate = nullptr, *dUp = nullptr;
  KernelScratch(void *workspace, const GroupedMlpShape &s, bool backward) {
    const size_t part = plan::workspacePart(2 * size_t(s.rows) * size_t(s.ffn));
    auto *p = static_cast<char *>(workspace);
    layout = p;
    p += groupedLayoutBytes(s.experts);
    act = reinterpret_cast<bf16 *>(p);
    if (backward) {
      dGate = reinterpret_cast<bf16 *>(p + part);
      dUp = reinterpret_cast<bf16 *>(p + 2 * part);
    }
  }
};

Status kernelForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                     const bf16 *up, const bf16 *down, bf16 *y, bf16 *fc1, void *workspace,
                     const GroupedMlpShape &s, cudaStream_t stream) {
  KernelScratch w(workspace, s, false);
  auto layout = groupedLayout(tokensPerExpert, s.experts, s.rows, w.layout, stream);
  if (!layout)
    return layout.status();
  bf16 *gatePre = fc1, *upPre = fc1 + s.rows * s.ffn;
  MT_CUDA_RETURN_IF_ERROR(groupedKernelGateUp(x, gate, up, w.act, gatePre, upPre, s.hidden,
                                              s.ffn, *layout, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedKernelForward(w.act, down, y, s.ffn, s.hidden, *layout, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedZeroTail(gatePre, s.ffn, *layout, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedZeroTail(upPre, s.ffn, *layout, stream));
  return groupedZeroTail(y, s.hidden, *layout, stream);
}

/// As libraryBackward, with dact's SwiGLU gradient fused into its GEMM and
/// dx one product over [d gate | d up].
Status kernelBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                      const bf16 *up, const bf16 *down, const bf16 *fc1, const bf16 *dy,
                      bf16 *dx, bool addDx, float *dgate, float *dup, float *ddown,
                      void *workspace, const GroupedMlpShape &s, cudaStream_t stream) {
  const int64_t H = s.hidden, F = s.ffn;
  KernelScratch w(workspace, s, true);
  auto layout = groupedLayout(tokensPerExpert, s.experts, s.rows, w.layout, stream);
  if (!layout)
    return layout.status();
  const GroupedLayout &l = *layout;
  MT_CUDA_RETURN_IF_ERROR(groupedKernelSwigluBackward(dy, down, fc1, fc1 + s.rows * F, w.dGate,
                                                      w.dUp, w.act, H, F, l, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedKernelBackwardWeight(w.act, dy, ddown, F, H, l, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedKernelBackwardWeight(x, w.dGate, dgate, H, F, l, stream));
  MT_CUDA_RETURN_IF_ERROR(groupedKernelBackwardWeight(x, w.dUp, dup, H, F, l, stream));
  MT_CUDA_RETURN_IF_ERROR(
      groupedKernelGateUpBackwardInput(w.dGate, w.dUp, gate, up, dx, addDx, H, F, l, stream));
  return addDx ? Status::ok() : groupedZeroTail(dx, H, l, stream);
}

} // namespace

Expected<ExpertGemm> parseExpertGemm(std::string_view text, std::string_view option) {
  if (text == "auto")
    return ExpertGemm::Auto;
  if (text == "cublaslt")
    return ExpertGemm::Cublaslt;
  if (text == "grouped")
    return ExpertGemm::Grouped;
  if (text == "kernel")
    return ExpertGemm::Kernel;
  if (text == "tiled")
    return ExpertGemm::Tiled;
  return Status::error(std::string(option) + "='" + std::string(text) +
                       "' is not a way to run the experts' GEMMs: use auto, cublaslt, "
                       "grouped, kernel or tiled");
}

size_t groupedMlpWorkspaceBytes(const GroupedMlpShape &shape, bool backward, ExpertGemm gemm) {
  const plan::ExpertGemmPath path = gemm == ExpertGemm::Kernel  ? plan::ExpertGemmPath::Kernel
                                    : gemm == ExpertGemm::Tiled ? plan::ExpertGemmPath::Tiled
                                                                : plan::ExpertGemmPath::Library;
  return plan::groupedMlpWorkspaceBytes(shape.rows, shape.hidden, shape.ffn, shape.experts,
                                        backward, path);
}

Status groupedMlpForward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                         const bf16 *up, const bf16 *down, bf16 *y, bf16 *fc1,
                         const ExpertGemmLibs &libs, void *workspace, const GroupedMlpShape &s,
                         cudaStream_t stream) {
  if (s.rows * s.hidden == 0)
    return Status::ok();
  if (libs.kernel)
    return kernelForward(x, tokensPerExpert, gate, up, down, y, fc1, workspace, s, stream);
  return libs.runner ? libraryForward(x, tokensPerExpert, gate, up, down, y, fc1, libs, workspace,
                                      s, stream)
                     : tiledForward(x, tokensPerExpert, gate, up, down, y, fc1, workspace, s,
                                    stream);
}

Status groupedMlpBackward(const bf16 *x, const int32_t *tokensPerExpert, const bf16 *gate,
                          const bf16 *up, const bf16 *down, const bf16 *fc1, const bf16 *dy,
                          bf16 *dx, bool addDx, float *dgate, float *dup, float *ddown,
                          const ExpertGemmLibs &libs, void *workspace, const GroupedMlpShape &s,
                          cudaStream_t stream) {
  if (s.rows * s.hidden == 0)
    return Status::ok();
  if (libs.kernel)
    return kernelBackward(x, tokensPerExpert, gate, up, down, fc1, dy, dx, addDx, dgate, dup,
                          ddown, workspace, s, stream);
  if (libs.runner)
    return libraryBackward(x, tokensPerExpert, gate, up, down, fc1, dy, dx, addDx, dgate, dup,
                           ddown, libs, workspace, s, stream);
  return tiledBackward(x, tokensPerExpert, gate, up, down, fc1, dy, dx, addDx, dgate, dup, ddown,
                       workspace, s, stream);
}

} // namespace mt::cuda
