// The mixture-of-experts CUDA kernels (runtime/cuda/MoE.h) against the CPU
// references of runtime/cpu/MoE.h and MoEPermute.h on the same bf16-exact
// data: the router (indices exactly, weights, aux loss, dx, dw; aux_loss,
// seq_aux_loss and none, with and without a z-loss), the routed experts as
// permute -> grouped MLP -> unpermute, and the shared expert's sigmoid gate, on
// odd shapes, with and without renormalised top-k, writing and adding, and
// twice on the same input to show the results are deterministic.
#include "runtime/cuda/MoE.h"

#include "runtime/cpu/MoE.h"
#include "runtime/cpu/MoEPermute.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

struct Case {
  int64_t tokens, hidden, ffn, experts, topK;
  bool normTopkProb;
};

std::string caseText(const Case &c) {
  return shapeText({c.tokens, c.hidden, c.ffn, c.experts, c.topK}) +
         (c.normTopkProb ? " norm" : "");
}

class MoETest : public ::testing::TestWithParam<Case> {};

/// fp32 values (not bf16-exact: the router's weight is the fp32 master).
std::vector<float> randomFloat(std::mt19937 &rng, size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// One router configuration: Megatron-Core's load-balancing type, the
/// tokens per sequence (seq_aux_loss's groups) and the z-loss coefficient.
struct Balancing {
  std::string name; // moe_router_load_balancing_type
  cpu::LoadBalancing cpuType;
  cuda::LoadBalancing cudaType;
  int64_t seq;
  float zLossCoeff;
};

/// aux_loss over the micro-batch without a z-loss; seq_aux_loss over four
/// sequences (single tokens when the count does not divide) with a z-loss;
/// none with a z-loss alone.
std::vector<Balancing> balancings(int64_t tokens) {
  return {{"aux_loss", cpu::LoadBalancing::auxLoss, cuda::LoadBalancing::auxLoss, tokens, 0.0f},
          {"seq_aux_loss", cpu::LoadBalancing::seqAuxLoss, cuda::LoadBalancing::seqAuxLoss,
           tokens % 4 == 0 ? tokens / 4 : 1, 0.01f},
          {"none", cpu::LoadBalancing::none, cuda::LoadBalancing::none, tokens, 0.001f}};
}

TEST_P(MoETest, RouterMatchesCpu) {
  const Case c = GetParam();
  std::mt19937 rng{uint32_t(c.tokens * 7 + c.experts)};
  const int64_t T = c.tokens, H = c.hidden, E = c.experts, K = c.topK;
  const auto x = randomBf16(rng, T * H, -1, 1);
  const auto w = randomFloat(rng, E * H, -0.5f, 0.5f);
  const auto dweights = randomFloat(rng, T * K, -1, 1);
  const auto dxOld = randomBf16(rng, T * H, -1, 1);
  const float daux = 0.75f;
  for (const Balancing &b : balancings(T)) {
    const std::string shape = caseText(c) + " " + b.name + " seq " + std::to_string(b.seq) +
                              " z_loss " + std::to_string(b.zLossCoeff);
    cpu::RouterShape cs{T, H, E, K, c.normTopkProb, 0.1f, b.cpuType, b.seq, b.zLossCoeff};
    std::vector<float> wantWeights(T * K), wantDx(dxOld), wantDw(E * H, 0.0f);
    std::vector<int32_t> wantIndices(T * K);
    const float wantAux =
        cpu::moeRouterForward(x.data(), w.data(), wantWeights.data(), wantIndices.data(), cs);
    cpu::moeRouterBackward(x.data(), w.data(), dweights.data(), daux, wantDx.data(),
                           wantDw.data(), cs);

    cuda::RouterShape s{T, H, E, K, c.normTopkProb, 0.1f, b.cudaType, b.seq, b.zLossCoeff};
    DeviceBuffer<bf16> dX(T * H), dDx(T * H);
    DeviceBuffer<float> dW(E * H), dWeights(T * K), dAux(1), dDweights(T * K), dDaux(1),
        dDw(E * H);
    DeviceBuffer<int32_t> dIndices(T * K);
    DeviceBuffer<char> work(cuda::moeRouterWorkspaceBytes(s));
    uploadBf16(dX, x);
    dW.upload(w.data());
    for (int run = 0; run < 2; ++run) { // the second run must give the same bits
      MT_ASSERT_OK(cuda::moeRouterForward(dX.get(), dW.get(), dWeights.get(), dIndices.get(),
                                          dAux.get(), work.get(), s, nullptr));
      EXPECT_EQ(download(dIndices), wantIndices) << "router indices " << shape;
      expectClose("moe_router weights", shape, download(dWeights), wantWeights,
                  tol::kFp32AccumRel);
      expectClose("moe_router aux", shape, download(dAux), std::vector<float>{wantAux},
                  tol::kFp32AccumRel);
    }
    dDweights.upload(dweights.data());
    dDaux.upload(&daux);
    uploadBf16(dDx, dxOld);
    std::vector<float> zeros(E * H, 0.0f);
    dDw.upload(zeros.data());
    MT_ASSERT_OK(cuda::moeRouterBackward(dX.get(), dW.get(), dDweights.get(), dDaux.get(),
                                         dDx.get(), true, dDw.get(), work.get(), s, nullptr));
    expectClose("moe_router_bwd dx (add)", shape, downloadBf16(dDx), wantDx,
                tol::kBf16TwoRoundingsRel);
    expectClose("moe_router_bwd dw", shape, download(dDw), wantDw, tol::kFp32AccumRel);
  }
}

/// bf16 rounding of each value (what the GPU stores between the ops).
std::vector<float> roundedBf16(const std::vector<float> &v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = roundBf16(v[i]);
  return out;
}

/// The CPU reference of the decomposed layer (runtime/cpu/MoEPermute.h),
/// fed between the ops the bf16 values the GPU stores.
struct DecomposedReference {
  std::vector<float> permuted, out, outBf16, y, dOut, dOutBf16, dProbs, dPermuted,
      dPermutedBf16, dx, dgate, dup, ddown;
  std::vector<int32_t> counts, slotRows;
};

DecomposedReference decomposedReference(const Case &c, const std::vector<float> &x,
                                        const std::vector<float> &probs,
                                        const std::vector<int32_t> &indices,
                                        const std::vector<float> &gate,
                                        const std::vector<float> &up,
                                        const std::vector<float> &down,
                                        const std::vector<float> &dy) {
  const int64_t T = c.tokens, H = c.hidden, F = c.ffn, E = c.experts, K = c.topK, N = T * K;
  cpu::PermuteShape ps{T, H, E, K, N, 0, cpu::DropPolicy::probs, false};
  cpu::GroupedMlpShape gs{N, H, F, E};
  DecomposedReference r;
  r.permuted.resize(N * H), r.out.resize(N * H), r.y.resize(T * H);
  r.counts.resize(E), r.slotRows.resize(T * K);
  cpu::moePermuteForward(x.data(), probs.data(), indices.data(), r.permuted.data(),
                         r.counts.data(), r.slotRows.data(), ps);
  cpu::groupedMlpForward(r.permuted.data(), r.counts.data(), gate.data(), up.data(), down.data(),
                         r.out.data(), gs);
  r.outBf16 = roundedBf16(r.out);
  cpu::moeUnpermuteForward(r.outBf16.data(), probs.data(), r.slotRows.data(), r.y.data(), ps);
  r.dOut.assign(N * H, 0.0f), r.dProbs.assign(T * K, 0.0f), r.dPermuted.assign(N * H, 0.0f);
  r.dx.assign(T * H, 0.0f), r.dgate.assign(E * F * H, 0.0f), r.dup.assign(E * F * H, 0.0f);
  r.ddown.assign(E * H * F, 0.0f);
  cpu::moeUnpermuteBackward(r.outBf16.data(), probs.data(), r.slotRows.data(), dy.data(),
                            r.dOut.data(), r.dProbs.data(), ps);
  r.dOutBf16 = roundedBf16(r.dOut);
  cpu::groupedMlpBackward(r.permuted.data(), r.counts.data(), gate.data(), up.data(),
                          down.data(), r.dOutBf16.data(), r.dPermuted.data(), r.dgate.data(),
                          r.dup.data(), r.ddown.data(), gs);
  r.dPermutedBf16 = roundedBf16(r.dPermuted);
  cpu::moePermuteBackward(r.dPermutedBf16.data(), r.slotRows.data(), r.dx.data(), ps);
  return r;
}

/// moe_permute -> moe_grouped_mlp -> moe_unpermute (dropless) and their
/// gradients against runtime/cpu/MoEPermute.h.
TEST_P(MoETest, PermuteGroupedMlpUnpermuteMatchCpu) {
  const Case c = GetParam();
  const std::string shape = caseText(c);
  std::mt19937 rng{uint32_t(c.tokens * 17 + c.hidden)};
  const int64_t T = c.tokens, H = c.hidden, F = c.ffn, E = c.experts, K = c.topK, N = T * K;
  const auto x = randomBf16(rng, T * H, -1, 1);
  const auto gate = randomBf16(rng, E * F * H, -0.3f, 0.3f);
  const auto up = randomBf16(rng, E * F * H, -0.3f, 0.3f);
  const auto down = randomBf16(rng, E * H * F, -0.3f, 0.3f);
  const auto dy = randomBf16(rng, T * H, -1, 1);
  const auto probs = randomFloat(rng, T * K, 0, 1);
  std::vector<int32_t> indices(T * K);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k)
      indices[t * K + k] = int32_t((t % 3 == 0 ? k : (t * 5 + k * 3)) % (E - 1));
  const DecomposedReference r = decomposedReference(c, x, probs, indices, gate, up, down, dy);
  cuda::PermuteShape s{T, H, E, K};
  cuda::GroupedMlpShape g{N, H, F, E};
  DeviceBuffer<bf16> dX(T * H), dGate(E * F * H), dUp(E * F * H), dDown(E * H * F), dPerm(N * H),
      dOutD(N * H), dY(T * H), dDy(T * H), dDOut(N * H), dDPerm(N * H), dDx(T * H);
  DeviceBuffer<float> dProbsIn(T * K), dDProbs(T * K), dDgate(E * F * H), dDup(E * F * H),
      dDdown(E * H * F);
  DeviceBuffer<int32_t> dIndices(T * K), dCounts(E), dSlotRows(T * K);
  DeviceBuffer<char> work(std::max(cuda::moePermuteWorkspaceBytes(s),
                                   cuda::groupedMlpWorkspaceBytes(g, true)));
  uploadBf16(dX, x);
  uploadBf16(dGate, gate);
  uploadBf16(dUp, up);
  uploadBf16(dDown, down);
  uploadBf16(dDy, dy);
  dProbsIn.upload(probs.data());
  dIndices.upload(indices.data());
  MT_ASSERT_OK(cuda::moePermuteForward(dX.get(), dIndices.get(), dPerm.get(), dCounts.get(),
                                       dSlotRows.get(), work.get(), s, nullptr));
  EXPECT_EQ(download(dCounts), r.counts) << "tokens per expert " << shape;
  EXPECT_EQ(download(dSlotRows), r.slotRows) << "slot rows " << shape;
  expectClose("moe_permute", shape, downloadBf16(dPerm), r.permuted, tol::kBitExact);
  MT_ASSERT_OK(cuda::groupedMlpForward(dPerm.get(), dCounts.get(), dGate.get(), dUp.get(),
                                       dDown.get(), dOutD.get(), work.get(), g, nullptr));
  expectClose("moe_grouped_mlp", shape, downloadBf16(dOutD), r.out, tol::kBf16Rel);
  uploadBf16(dOutD, r.outBf16);
  MT_ASSERT_OK(cuda::moeUnpermuteForward(dOutD.get(), dProbsIn.get(), dSlotRows.get(), dY.get(),
                                         s, nullptr));
  expectClose("moe_unpermute", shape, downloadBf16(dY), r.y, tol::kBf16Rel);
  std::vector<float> zerosTk(T * K, 0.0f), zerosW(E * F * H, 0.0f);
  dDProbs.upload(zerosTk.data());
  MT_ASSERT_OK(cuda::moeUnpermuteBackward(dOutD.get(), dProbsIn.get(), dSlotRows.get(),
                                          dDy.get(), dDOut.get(), false, dDProbs.get(), s,
                                          nullptr));
  expectClose("moe_unpermute_bwd dexpert_out", shape, downloadBf16(dDOut), r.dOut, tol::kBf16Rel);
  expectClose("moe_unpermute_bwd dprobs", shape, download(dDProbs), r.dProbs, tol::kFp32AccumRel);
  uploadBf16(dDOut, r.dOutBf16);
  dDgate.upload(zerosW.data());
  dDup.upload(zerosW.data());
  dDdown.upload(zerosW.data());
  MT_ASSERT_OK(cuda::groupedMlpBackward(dPerm.get(), dCounts.get(), dGate.get(), dUp.get(),
                                        dDown.get(), dDOut.get(), dDPerm.get(), false,
                                        dDgate.get(), dDup.get(), dDdown.get(), work.get(), g,
                                        nullptr));
  expectClose("moe_grouped_mlp_bwd dx", shape, downloadBf16(dDPerm), r.dPermuted, tol::kBf16Rel);
  expectClose("moe_grouped_mlp_bwd dgate", shape, download(dDgate), r.dgate, tol::kFp32AccumRel);
  expectClose("moe_grouped_mlp_bwd dup", shape, download(dDup), r.dup, tol::kFp32AccumRel);
  expectClose("moe_grouped_mlp_bwd ddown", shape, download(dDdown), r.ddown, tol::kFp32AccumRel);
  uploadBf16(dDPerm, r.dPermutedBf16);
  MT_ASSERT_OK(cuda::moePermuteBackward(dDPerm.get(), dSlotRows.get(), dDx.get(), false, s,
                                        nullptr));
  expectClose("moe_permute_bwd", shape, downloadBf16(dDx), r.dx, tol::kBf16Rel);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoETest,
                         ::testing::Values(Case{37, 40, 24, 6, 2, true},
                                           Case{37, 40, 24, 6, 2, false},
                                           Case{1, 8, 4, 3, 1, true},
                                           Case{300, 128, 96, 8, 3, true},
                                           Case{64, 2048, 64, 128, 8, true}));

TEST(SigmoidGateTest, MatchesCpuWritingAndAdding) {
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{37, 40}, {1, 1}, {256, 2048}}) {
    const std::string shape = shapeText({rows, dim});
    std::mt19937 rng{uint32_t(rows + dim)};
    const auto gate = randomBf16(rng, rows, -4, 4);
    const auto x = randomBf16(rng, rows * dim, -1, 1);
    const auto dy = randomBf16(rng, rows * dim, -1, 1);
    const auto dgateOld = randomBf16(rng, rows, -1, 1);
    std::vector<float> wantY(rows * dim), wantDgate(rows, 0.0f), wantDx(rows * dim, 0.0f);
    cpu::sigmoidGateForward(gate.data(), x.data(), wantY.data(), rows, dim);
    std::vector<float> wantDgateAdded(dgateOld);
    cpu::sigmoidGateBackward(gate.data(), x.data(), dy.data(), wantDgate.data(), wantDx.data(),
                             rows, dim);
    for (int64_t r = 0; r < rows; ++r)
      wantDgateAdded[r] += wantDgate[r];
    DeviceBuffer<bf16> dGate(rows), dX(rows * dim), dY(rows * dim), dDy(rows * dim),
        dDgate(rows), dDx(rows * dim);
    uploadBf16(dGate, gate);
    uploadBf16(dX, x);
    uploadBf16(dDy, dy);
    MT_ASSERT_OK(cuda::sigmoidGateForward(dGate.get(), dX.get(), dY.get(), rows, dim, nullptr));
    expectClose("sigmoid_gate", shape, downloadBf16(dY), wantY, tol::kBf16Rel);
    uploadBf16(dDgate, dgateOld);
    MT_ASSERT_OK(cuda::sigmoidGateBackward(dGate.get(), dX.get(), dDy.get(), dDgate.get(), true,
                                           dDx.get(), false, rows, dim, nullptr));
    expectClose("sigmoid_gate_bwd dgate (add)", shape, downloadBf16(dDgate), wantDgateAdded,
                tol::kBf16TwoRoundingsRel);
    expectClose("sigmoid_gate_bwd dx", shape, downloadBf16(dDx), wantDx, tol::kBf16Rel);
  }
}

} // namespace
