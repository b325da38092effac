// The CUDA lowering of the mixture-of-experts ops (runtime/cuda/MoE.h): the
// router, the routed experts (moe_permute -> moe_grouped_mlp ->
// moe_unpermute) and the shared expert's sigmoid gate, one lowering for an
// op and its gradient (they read the same attributes and first inputs).
// The router reads the fp32 master of its weight; the experts read the
// bf16 shadows, as the dense linears do. With the experts' GEMMs on the
// libraries (MT_MOE_GEMM auto, the default, cublaslt or grouped) a program with
// MoE layers runs eagerly, not as a CUDA graph: each moe_grouped_mlp(_grad)
// copies the experts' row counts to the host; on our kernel (kernel) or the
// tiled one the counts stay on the device and the program is captured.
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/MoE.h"

#include <string>

namespace mt::cuda {
namespace {

using plan::Attrs;

/// Whether the current instruction is the gradient `grad` of its op pair.
bool isGrad(Lowerer &L, plan::Op grad) { return plan::isOp(L.instruction(), grad); }

/// moe_router and moe_router_grad: the shape decoded as the CPU backend
/// decodes it (kernels::routerShapeOf), the workspace requested once.
void router(Lowerer &L, const Attrs &a) {
  Expected<RouterShape> shape = kernels::routerShapeOf(a);
  if (!shape)
    return L.fail(shape.message());
  if (a.i("count_groups") != 0)
    return L.fail("a router of a share of the micro-batch (context parallelism of a "
                  "mixture-of-experts model, its token counts given) has no CUDA kernel yet; "
                  "use --backend cpu");
  const RouterShape s = *shape;
  L.needWorkspace(moeRouterWorkspaceBytes(s));
  Resources *r = &L.resources();
  if (!r->routerBlas) {
    auto blas = RouterBlas::create();
    if (!blas)
      return L.fail(blas.message());
    r->routerBlas = std::move(*blas);
  }
  const RouterBlas *blas = r->routerBlas.get();
  const bf16 *x = L.bfIn(0);
  const float *w = L.f32In(1);
  if (!isGrad(L, plan::Op::moe_router_grad)) {
    float *weights = L.f32Out(0), *aux = L.f32Out(2), *z = L.f32Out(3);
    int32_t *indices = L.i32Out(1);
    return L.emit([=](cudaStream_t st) {
      return moeRouterForward(*blas, x, w, weights, indices, aux, z, r->workspace, s, st);
    });
  }
  const float *dweights = L.f32In(2), *daux = L.f32In(3), *dz = L.f32In(4);
  bool addDx = false;
  bf16 *dx = L.bfOutOrSum(0, addDx);
  float *dw = L.f32Sum(1);
  L.emit([=](cudaStream_t st) {
    return moeRouterBackward(*blas, x, w, dweights, daux, dz, dx, addDx, dw, r->workspace, s,
                             st);
  });
}

/// The permutation's shape; false after L.fail on an expert capacity, which
/// has no CUDA kernel yet (dropless only).
bool droplessPermute(Lowerer &L, const Attrs &a, PermuteShape &s) {
  const bool forward = plan::isOp(L.instruction(), plan::Op::moe_permute);
  s = {a.i("tokens"), a.i("hidden"), forward ? a.i("experts") : 0, a.i("top_k")};
  if (a.i("rows") != s.tokens * s.topK || a.i("capacity") != 0 || a.i("pad_to_capacity") != 0) {
    L.fail("rows " + std::to_string(a.i("rows")) + " (tokens x top_k = " +
           std::to_string(s.tokens * s.topK) + "), capacity " + std::to_string(a.i("capacity")) +
           ": an expert capacity (moe_expert_capacity_factor) has no CUDA kernel yet; use "
           "--backend cpu");
    return false;
  }
  return true;
}

/// moe_permute and moe_permute_grad.
void permute(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  if (isGrad(L, plan::Op::moe_permute_grad)) {
    const bf16 *dPermuted = L.bfIn(0);
    const int32_t *slotRows = L.i32In(1);
    bool addDx = false;
    bf16 *dx = L.bfOutOrSum(0, addDx);
    return L.emit(
        [=](cudaStream_t st) { return moePermuteBackward(dPermuted, slotRows, dx, addDx, s, st); });
  }
  const bf16 *x = L.bfIn(0);
  const int32_t *indices = L.i32In(2);
  bf16 *permuted = L.bfOut(0);
  int32_t *counts = L.i32Out(1), *slotRows = L.i32Out(2);
  L.needWorkspace(moePermuteWorkspaceBytes(s));
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t st) {
    return moePermuteForward(x, indices, permuted, counts, slotRows, r->workspace, s, st);
  });
}

/// moe_unpermute and moe_unpermute_grad (inputs expertOut, probs, slotRows
/// in both).
void unpermute(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  const bf16 *expertOut = L.bfIn(0);
  const float *probs = L.f32In(1);
  const int32_t *slotRows = L.i32In(2);
  if (!isGrad(L, plan::Op::moe_unpermute_grad)) {
    bf16 *y = L.bfOut(0);
    return L.emit([=](cudaStream_t st) {
      return moeUnpermuteForward(expertOut, probs, slotRows, y, s, st);
    });
  }
  const bf16 *dy = L.bfIn(3);
  bool addOut = false;
  bf16 *dExpertOut = L.bfOutOrSum(0, addOut);
  float *dProbs = L.f32Sum(1);
  L.emit([=](cudaStream_t st) {
    return moeUnpermuteBackward(expertOut, probs, slotRows, dy, dExpertOut, addOut, dProbs, s,
                                st);
  });
}

/// The libraries of the experts' GEMMs (`gemm`), the grouped GEMM's
/// handle and the lanes made on first use; false after L.fail when they
/// cannot be.
bool expertLibs(Lowerer &L, ExpertGemm gemm, ExpertGemmLibs &libs) {
  Resources &r = L.resources();
  libs.kernel = gemm == ExpertGemm::Kernel;
  if (!readsCountsOnHost(gemm))
    return true;
  libs.runner = r.gemm.get();
  libs.bySize = gemm == ExpertGemm::Auto;
  if (!r.expertLanes && r.moeLanes > 0) {
    auto lanes = ExpertLanes::create(r.moeLanes, r.gemm->choice());
    if (!lanes) {
      L.fail("the experts' weight-gradient streams: " + lanes.message());
      return false;
    }
    r.expertLanes = std::move(*lanes);
  }
  libs.lanes = r.expertLanes.get();
  if (gemm == ExpertGemm::Cublaslt)
    return true;
  if (!r.groupedGemm) {
    auto made = GroupedGemm::create();
    if (!made) {
      L.fail("MT_MOE_GEMM=" + std::string(gemm == ExpertGemm::Auto ? "auto" : "grouped") +
             ": " + made.message());
      return false;
    }
    r.groupedGemm = std::move(*made);
  }
  libs.grouped = r.groupedGemm.get();
  return true;
}

/// moe_grouped_mlp and moe_grouped_mlp_grad (inputs x, tokensPerExpert,
/// gate, up, down in both; the forward writes fc1_output, the gradient
/// reads it).
void groupedMlp(Lowerer &L, const Attrs &a) {
  const GroupedMlpShape s{a.i("rows"), a.i("hidden"), a.i("ffn"), a.i("experts")};
  const bool backward = isGrad(L, plan::Op::moe_grouped_mlp_grad);
  Resources *r = &L.resources();
  const bf16 *x = L.bfIn(0), *gate = L.bfIn(2), *up = L.bfIn(3), *down = L.bfIn(4);
  const int32_t *counts = L.i32In(1);
  const ExpertGemm gemm = r->moeGemm;
  ExpertGemmLibs libs;
  if (!expertLibs(L, gemm, libs))
    return;
  L.needWorkspace(groupedMlpWorkspaceBytes(s, backward, gemm));
  const bool onHost = readsCountsOnHost(gemm); // the row counts' host copy
  if (!backward) {
    bf16 *y = L.bfOut(0), *fc1 = L.bfOut(1);
    return L.emit(
        [=](cudaStream_t st) {
          return groupedMlpForward(x, counts, gate, up, down, y, fc1, libs, r->workspace, s, st);
        },
        onHost);
  }
  const bf16 *fc1 = L.bfIn(5), *dy = L.bfIn(6);
  bool addDx = false;
  bf16 *dx = L.bfOutOrSum(0, addDx);
  float *dgate = L.f32Sum(1), *dup = L.f32Sum(2), *ddown = L.f32Sum(3);
  L.emit(
      [=](cudaStream_t st) {
        return groupedMlpBackward(x, counts, gate, up, down, fc1, dy, dx, addDx, dgate, dup,
                                  ddown, libs, r->workspace, s, st);
      },
      onHost);
}

/// sigmoid_gate and sigmoid_gate_grad (inputs gate, x in both).
void sigmoidGate(Lowerer &L, const Attrs &a) {
  const bf16 *gate = L.bfIn(0), *x = L.bfIn(1);
  const int64_t rows = a.i("rows"), dim = a.i("dim");
  if (!isGrad(L, plan::Op::sigmoid_gate_grad)) {
    bf16 *y = L.bfOut(0);
    return L.emit([=](cudaStream_t st) { return sigmoidGateForward(gate, x, y, rows, dim, st); });
  }
  const bf16 *dy = L.bfIn(2);
  bool addDgate = false, addDx = false;
  bf16 *dgate = L.bfOutOrSum(0, addDgate), *dx = L.bfOutOrSum(1, addDx);
  L.emit([=](cudaStream_t st) {
    return sigmoidGateBackward(gate, x, dy, dgate, addDgate, dx, addDx, rows, dim, st);
  });
}

} // namespace

void addMoELowerings(LoweringTable &t) {
  using plan::Op;
  struct Pair {
    Op forward, backward;
    Lowering lowering;
  };
  for (const Pair &p : {Pair{Op::moe_router, Op::moe_router_grad, router},
                        Pair{Op::sigmoid_gate, Op::sigmoid_gate_grad, sigmoidGate},
                        Pair{Op::moe_permute, Op::moe_permute_grad, permute},
                        Pair{Op::moe_unpermute, Op::moe_unpermute_grad, unpermute},
                        Pair{Op::moe_grouped_mlp, Op::moe_grouped_mlp_grad, groupedMlp}})
    t[p.forward] = t[p.backward] = p.lowering;
}

} // namespace mt::cuda
