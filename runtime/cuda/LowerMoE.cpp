// The CUDA lowering of the mixture-of-experts ops (runtime/cuda/MoE.h): the
// router, the routed experts (moe_permute -> moe_grouped_mlp ->
// moe_unpermute) with their gradients, and the shared
// expert's sigmoid gate. The router reads the fp32 master of its weight;
// the experts read the bf16 shadows, as the dense linears do. With the
// experts' GEMMs on the libraries (MT_MOE_GEMM cublaslt, the default, or
// grouped) a program with MoE layers runs eagerly, not as a CUDA graph:
// each moe_grouped_mlp(_grad) copies the experts' row counts to the host.
#include "runtime/cuda/Lowering.h"
#include "runtime/cuda/MoE.h"

#include <algorithm>
#include <string>

namespace mt::cuda {
namespace {

using plan::Attrs;

/// The router's attributes (as runtime/cpu's routerOf), with the workspace
/// its kernels need requested; false after L.fail on an attribute the
/// kernels cannot take.
bool routerOf(Lowerer &L, const Attrs &a, RouterShape &s) {
  const std::string type = a.s("load_balancing_type");
  // Plans without the attribute (before seq_aux_loss) balance over the micro-batch.
  const LoadBalancing balancing = type == "seq_aux_loss" ? LoadBalancing::seqAuxLoss
                                  : type == "none"       ? LoadBalancing::none
                                                         : LoadBalancing::auxLoss;
  if (!type.empty() && type != "aux_loss" && balancing == LoadBalancing::auxLoss) {
    L.fail("load_balancing_type '" + type + "' (moe_router_load_balancing_type): expected "
           "aux_loss, seq_aux_loss or none");
    return false;
  }
  s = {a.i("tokens"),
       a.i("hidden"),
       a.i("experts"),
       a.i("top_k"),
       a.i("norm_topk_prob") != 0,
       float(a.f("aux_loss_coeff")),
       balancing,
       std::max<int64_t>(1, a.i("seq", a.i("tokens"))),
       float(a.f("z_loss_coeff", 0.0))};
  if (balancing == LoadBalancing::seqAuxLoss && s.tokens % s.seq != 0) {
    L.fail("tokens " + std::to_string(s.tokens) + " not a multiple of seq " +
           std::to_string(s.seq) + " (seq_aux_loss balances each sequence)");
    return false;
  }
  L.needWorkspace(moeRouterWorkspaceBytes(s));
  return true;
}

void moeRouter(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0);
  const float *w = L.f32In(1);
  float *weights = L.f32Out(0), *aux = L.f32Out(2);
  int32_t *indices = L.i32Out(1);
  RouterShape s;
  if (!routerOf(L, a, s))
    return;
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t st) {
    return moeRouterForward(x, w, weights, indices, aux, r->workspace, s, st);
  });
}

void moeRouterGrad(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0);
  const float *w = L.f32In(1), *dweights = L.f32In(2), *daux = L.f32In(3);
  bool addDx = false;
  bf16 *dx = L.bfOutOrSum(0, addDx);
  float *dw = L.f32Sum(1);
  RouterShape s;
  if (!routerOf(L, a, s))
    return;
  Resources *r = &L.resources();
  L.emit([=](cudaStream_t st) {
    return moeRouterBackward(x, w, dweights, daux, dx, addDx, dw, r->workspace, s, st);
  });
}

/// Dropless only: capacity and padding have no CUDA kernel yet.
bool droplessPermute(Lowerer &L, const Attrs &a, PermuteShape &s) {
  const bool forward = plan::isOp(L.instruction(), plan::Op::moe_permute);
  s = {a.i("tokens"), a.i("hidden"), forward ? a.i("experts") : 0, a.i("top_k")};
  if (a.i("rows") != s.tokens * s.topK) {
    L.fail("rows " + std::to_string(a.i("rows")) + " != tokens x top_k (" +
           std::to_string(s.tokens * s.topK) + "): an expert capacity "
           "(moe_expert_capacity_factor) has no CUDA kernel yet; use --backend cpu");
    return false;
  }
  return true;
}

void moePermute(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  if (a.i("capacity") != 0 || a.i("pad_to_capacity") != 0)
    return L.fail("capacity " + std::to_string(a.i("capacity")) +
                  " (moe_expert_capacity_factor) has no CUDA kernel yet; use --backend cpu");
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

void moePermuteGrad(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  const bf16 *dPermuted = L.bfIn(0);
  const int32_t *slotRows = L.i32In(1);
  bool addDx = false;
  bf16 *dx = L.bfOutOrSum(0, addDx);
  L.emit([=](cudaStream_t st) { return moePermuteBackward(dPermuted, slotRows, dx, addDx, s, st); });
}

void moeUnpermute(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  const bf16 *expertOut = L.bfIn(0);
  const float *probs = L.f32In(1);
  const int32_t *slotRows = L.i32In(2);
  bf16 *y = L.bfOut(0);
  L.emit([=](cudaStream_t st) {
    return moeUnpermuteForward(expertOut, probs, slotRows, y, s, st);
  });
}

void moeUnpermuteGrad(Lowerer &L, const Attrs &a) {
  PermuteShape s;
  if (!droplessPermute(L, a, s))
    return;
  const bf16 *expertOut = L.bfIn(0), *dy = L.bfIn(3);
  const float *probs = L.f32In(1);
  const int32_t *slotRows = L.i32In(2);
  bool addOut = false;
  bf16 *dExpertOut = L.bfOutOrSum(0, addOut);
  float *dProbs = L.f32Sum(1);
  L.emit([=](cudaStream_t st) {
    return moeUnpermuteBackward(expertOut, probs, slotRows, dy, dExpertOut, addOut, dProbs, s,
                                st);
  });
}

GroupedMlpShape groupedOf(const Attrs &a) {
  return {a.i("rows"), a.i("hidden"), a.i("ffn"), a.i("experts")};
}

/// The libraries of the experts' GEMMs (Resources::moeGemm), the grouped
/// GEMM's handle made on first use; false after L.fail when it cannot be.
bool expertLibs(Lowerer &L, ExpertGemmLibs &libs) {
  Resources &r = L.resources();
  if (r.moeGemm == ExpertGemm::Tiled)
    return true;
  libs.runner = r.gemm.get();
  if (r.moeGemm == ExpertGemm::Grouped && !r.groupedGemm) {
    auto made = GroupedGemm::create();
    if (!made) {
      L.fail("MT_MOE_GEMM=grouped: " + made.message());
      return false;
    }
    r.groupedGemm = std::move(*made);
  }
  libs.grouped = r.groupedGemm.get();
  return true;
}

void groupedMlp(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *gate = L.bfIn(2), *up = L.bfIn(3), *down = L.bfIn(4);
  const int32_t *counts = L.i32In(1);
  bf16 *y = L.bfOut(0);
  GroupedMlpShape s = groupedOf(a);
  Resources *r = &L.resources();
  ExpertGemmLibs libs;
  if (!expertLibs(L, libs))
    return;
  L.needWorkspace(groupedMlpWorkspaceBytes(s, false, r->moeGemm));
  L.emit(
      [=](cudaStream_t st) {
        return groupedMlpForward(x, counts, gate, up, down, y, libs, r->workspace, s, st);
      },
      /*onHost=*/libs.runner != nullptr);
}

void groupedMlpGrad(Lowerer &L, const Attrs &a) {
  const bf16 *x = L.bfIn(0), *gate = L.bfIn(2), *up = L.bfIn(3), *down = L.bfIn(4),
             *dy = L.bfIn(5);
  const int32_t *counts = L.i32In(1);
  bool addDx = false;
  bf16 *dx = L.bfOutOrSum(0, addDx);
  float *dgate = L.f32Sum(1), *dup = L.f32Sum(2), *ddown = L.f32Sum(3);
  GroupedMlpShape s = groupedOf(a);
  Resources *r = &L.resources();
  ExpertGemmLibs libs;
  if (!expertLibs(L, libs))
    return;
  L.needWorkspace(groupedMlpWorkspaceBytes(s, true, r->moeGemm));
  L.emit(
      [=](cudaStream_t st) {
        return groupedMlpBackward(x, counts, gate, up, down, dy, dx, addDx, dgate, dup, ddown,
                                  libs, r->workspace, s, st);
      },
      /*onHost=*/libs.runner != nullptr);
}

void sigmoidGate(Lowerer &L, const Attrs &a) {
  const bf16 *gate = L.bfIn(0), *x = L.bfIn(1);
  bf16 *y = L.bfOut(0);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  L.emit([=](cudaStream_t st) { return sigmoidGateForward(gate, x, y, rows, dim, st); });
}

void sigmoidGateGrad(Lowerer &L, const Attrs &a) {
  const bf16 *gate = L.bfIn(0), *x = L.bfIn(1), *dy = L.bfIn(2);
  bool addDgate = false, addDx = false;
  bf16 *dgate = L.bfOutOrSum(0, addDgate), *dx = L.bfOutOrSum(1, addDx);
  int64_t rows = a.i("rows"), dim = a.i("dim");
  L.emit([=](cudaStream_t st) {
    return sigmoidGateBackward(gate, x, dy, dgate, addDgate, dx, addDx, rows, dim, st);
  });
}

} // namespace

void addMoELowerings(LoweringTable &t) {
  using plan::Op;
  t[Op::moe_router] = moeRouter;
  t[Op::moe_router_grad] = moeRouterGrad;
  t[Op::sigmoid_gate] = sigmoidGate;
  t[Op::sigmoid_gate_grad] = sigmoidGateGrad;
  t[Op::moe_permute] = moePermute;
  t[Op::moe_permute_grad] = moePermuteGrad;
  t[Op::moe_unpermute] = moeUnpermute;
  t[Op::moe_unpermute_grad] = moeUnpermuteGrad;
  t[Op::moe_grouped_mlp] = groupedMlp;
  t[Op::moe_grouped_mlp_grad] = groupedMlpGrad;
}

} // namespace mt::cuda
