// The mixture-of-experts CUDA kernels (runtime/cuda/MoE.h) against the CPU
// references of runtime/cpu/MoE.h and MoEPermute.h on the same bf16-exact
// data: the router (indices exactly, weights, aux loss, dx, dw; aux_loss,
// seq_aux_loss and none, with and without a z-loss), the routed experts as
// permute -> grouped MLP -> unpermute (the grouped MLP on each ExpertGemm
// path, our grouped GEMM kernel included, with even and skewed expert
// loads, and at Qwen3-30B-A3B's and Mixtral-8x7B's expert shapes scaled
// down), and the shared expert's sigmoid gate, on odd shapes, with and
// without renormalised top-k, writing and adding, and twice on the same
// input to show the results are deterministic.
#include "runtime/cuda/MoE.h"

#include "runtime/cpu/MoE.h"
#include "runtime/cpu/MoEPermute.h"
#include "test/Tolerances.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace mt;
using namespace mt::cudatest;
namespace tol = mt::tolerance;

/// How the routed experts' test routes its slots: spread over every expert
/// but the last (which gets no rows), or skewed: slot k of a token on
/// expert 1 + k (every eighth token's shifted by up to 2), so that with
/// top 1 expert 1 takes most rows and most experts take none.
enum class Load { spread, skewed };

struct Case {
  int64_t tokens, hidden, ffn, experts, topK;
  bool normTopkProb;
  Load load = Load::spread;
};

std::string caseText(const Case &c) {
  return shapeText({c.tokens, c.hidden, c.ffn, c.experts, c.topK}) +
         (c.normTopkProb ? " norm" : "") + (c.load == Load::skewed ? " skewed" : "");
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
  const float daux = 0.75f, dz = 0.5f; // distinct: each loss takes its own

  for (const Balancing &b : balancings(T)) {
    const std::string shape = caseText(c) + " " + b.name + " seq " + std::to_string(b.seq) +
                              " z_loss " + std::to_string(b.zLossCoeff);
    cpu::RouterShape cs{T, H, E, K, c.normTopkProb, 0.1f, b.cpuType, b.seq, b.zLossCoeff};
    std::vector<float> wantWeights(T * K), wantDx(dxOld), wantDw(E * H, 0.0f);
    std::vector<int32_t> wantIndices(T * K);
    const cpu::RouterLosses want =
        cpu::moeRouterForward(x.data(), w.data(), nullptr, wantWeights.data(),
                              wantIndices.data(), cs);
    cpu::moeRouterBackward(x.data(), w.data(), nullptr, dweights.data(), daux, dz, wantDx.data(),
                           wantDw.data(), cs);

    cuda::RouterShape s{T, H, E, K, c.normTopkProb, 0.1f, b.cudaType, b.seq, b.zLossCoeff};
    DeviceBuffer<bf16> dX(T * H), dDx(T * H);
    DeviceBuffer<float> dW(E * H), dWeights(T * K), dAux(1), dZ(1), dDweights(T * K), dDaux(1),
        dDz(1), dDw(E * H);
    DeviceBuffer<int32_t> dIndices(T * K);
    DeviceBuffer<char> work(cuda::moeRouterWorkspaceBytes(s));
    auto blas = cuda::RouterBlas::create();
    ASSERT_TRUE(blas.isOk()) << blas.message();
    uploadBf16(dX, x);
    dW.upload(w.data());
    for (int run = 0; run < 2; ++run) { // the second run must give the same bits
      MT_ASSERT_OK(cuda::moeRouterForward(**blas, dX.get(), dW.get(), dWeights.get(), dIndices.get(),
                                          dAux.get(), dZ.get(), work.get(), s, nullptr));
      EXPECT_EQ(download(dIndices), wantIndices) << "router indices " << shape;
      expectClose("moe_router weights", shape, download(dWeights), wantWeights,
                  tol::kFp32AccumRel);
      expectClose("moe_router aux", shape, download(dAux), std::vector<float>{want.balance},
                  tol::kFp32AccumRel);
      expectClose("moe_router z", shape, download(dZ), std::vector<float>{want.z},
                  tol::kFp32AccumRel);
    }
    dDweights.upload(dweights.data());
    dDaux.upload(&daux);
    dDz.upload(&dz);
    uploadBf16(dDx, dxOld);
    std::vector<float> zeros(E * H, 0.0f);
    dDw.upload(zeros.data());
    MT_ASSERT_OK(cuda::moeRouterBackward(**blas, dX.get(), dW.get(), dDweights.get(),
                                         dDaux.get(), dDz.get(), dDx.get(), true, dDw.get(),
                                         work.get(), s, nullptr));
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
  std::vector<float> permuted, out, fc1, outBf16, y, dOut, dOutBf16, dProbs, dPermuted,
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
  r.permuted.resize(N * H), r.out.resize(N * H), r.fc1.resize(2 * N * F), r.y.resize(T * H);
  r.counts.resize(E), r.slotRows.resize(T * K);
  cpu::moePermuteForward(x.data(), probs.data(), indices.data(), r.permuted.data(),
                         r.counts.data(), r.slotRows.data(), ps);
  cpu::groupedMlpForward(r.permuted.data(), r.counts.data(), gate.data(), up.data(), down.data(),
                         r.out.data(), r.fc1.data(), gs);
  r.outBf16 = roundedBf16(r.out);
  cpu::moeUnpermuteForward(r.outBf16.data(), probs.data(), r.slotRows.data(), r.y.data(), ps);
  r.dOut.assign(N * H, 0.0f), r.dProbs.assign(T * K, 0.0f), r.dPermuted.assign(N * H, 0.0f);
  r.dx.assign(T * H, 0.0f), r.dgate.assign(E * F * H, 0.0f), r.dup.assign(E * F * H, 0.0f);
  r.ddown.assign(E * H * F, 0.0f);
  cpu::moeUnpermuteBackward(r.outBf16.data(), probs.data(), r.slotRows.data(), dy.data(),
                            r.dOut.data(), r.dProbs.data(), ps);
  r.dOutBf16 = roundedBf16(r.dOut);
  cpu::groupedMlpBackward(r.permuted.data(), r.counts.data(), gate.data(), up.data(),
                          down.data(), r.fc1.data(), r.dOutBf16.data(), r.dPermuted.data(),
                          r.dgate.data(), r.dup.data(), r.ddown.data(), gs);
  r.dPermutedBf16 = roundedBf16(r.dPermuted);
  cpu::moePermuteBackward(r.dPermutedBf16.data(), r.slotRows.data(), r.dx.data(), ps);
  return r;
}

/// Slot k of token t goes to a distinct expert per token (Load).
std::vector<int32_t> routedIndices(const Case &c) {
  const int64_t T = c.tokens, E = c.experts, K = c.topK;
  std::vector<int32_t> indices(T * K);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k)
      indices[t * K + k] =
          c.load == Load::spread
              ? int32_t((t % 3 == 0 ? k : (t * 5 + k * 3)) % (E - 1))
              : int32_t((1 + k + (t % 8 == 0 ? (t / 8) % 3 : 0)) % E);
  return indices;
}

/// The grouped MLP's bounds by path: the tiled kernel keeps its
/// intermediates in fp32, so each bf16 output is rounded once and the fp32
/// weight gradients only reorder sums; on the libraries and our grouped
/// GEMM kernel the pre-activations, the activation and their gradients
/// enter the tensor cores as bf16 operands.
struct GroupedTolerances {
  double out, dx, dw;
};
GroupedTolerances tolerancesOf(cuda::ExpertGemm gemm) {
  if (gemm == cuda::ExpertGemm::Tiled)
    return {tol::kBf16Rel, tol::kBf16Rel, tol::kFp32AccumRel};
  return {tol::kBf16OperandsRel, tol::kBf16OperandsRel, tol::kBf16OperandsRel};
}

/// `v` followed by `pad` rows of `width` values `fill`.
std::vector<float> padded(const std::vector<float> &v, int64_t pad, int64_t width, float fill) {
  std::vector<float> out(v);
  out.resize(v.size() + size_t(pad * width), fill);
  return out;
}

/// fc1 [2, rows, ffn] of `rows` rows, each half followed by `pad` rows of
/// `fill`.
std::vector<float> paddedFc1(const std::vector<float> &fc1, int64_t rows, int64_t pad,
                             int64_t ffn, float fill) {
  std::vector<float> gatePart(fc1.begin(), fc1.begin() + rows * ffn),
      upPart(fc1.begin() + rows * ffn, fc1.end());
  std::vector<float> out = padded(gatePart, pad, ffn, fill), up = padded(upPart, pad, ffn, fill);
  out.insert(out.end(), up.begin(), up.end());
  return out;
}

/// The first `rows` rows of each half of fc1 [2, rows + pad, ffn].
std::vector<float> fc1Rows(const std::vector<float> &fc1, int64_t rows, int64_t pad,
                           int64_t ffn) {
  const int64_t half = (rows + pad) * ffn;
  std::vector<float> out(fc1.begin(), fc1.begin() + rows * ffn);
  out.insert(out.end(), fc1.begin() + half, fc1.begin() + half + rows * ffn);
  return out;
}

/// The grouped MLP's gradients: dx of the groups' rows, and the weights'.
struct GroupedGrads {
  std::vector<float> dx, dgate, dup, ddown;
};

/// The CPU backward (fp32) of the groups' rows (r.permuted, r.dOutBf16)
/// from the pre-activations `fc1` [2, rows, ffn]: the reference of the
/// backward op on the operand a GPU path's forward stored (bf16), so the
/// backward is held to its own bound whatever the forward's roundings.
GroupedGrads backwardReference(const Case &c, const DecomposedReference &r,
                               const std::vector<float> &gate, const std::vector<float> &up,
                               const std::vector<float> &down, const std::vector<float> &fc1) {
  const int64_t H = c.hidden, F = c.ffn, E = c.experts, rows = c.tokens * c.topK;
  GroupedGrads g{std::vector<float>(rows * H, 0.0f), std::vector<float>(E * F * H, 0.0f),
                 std::vector<float>(E * F * H, 0.0f), std::vector<float>(E * H * F, 0.0f)};
  cpu::groupedMlpBackward(r.permuted.data(), r.counts.data(), gate.data(), up.data(),
                          down.data(), fc1.data(), r.dOutBf16.data(), g.dx.data(),
                          g.dgate.data(), g.dup.data(), g.ddown.data(),
                          cpu::GroupedMlpShape{rows, H, F, E});
  return g;
}

/// The backward reads the pre-activations from its fc1 operand and does
/// not recompute them: given fc1 halved (no forward of these weights makes
/// it; NaN in the rows past the groups, which must not be read) its
/// gradients are the CPU backward's on the same fc1.
void checkBackwardReadsFc1(const Case &c, const DecomposedReference &r,
                           const std::vector<float> &gate, const std::vector<float> &up,
                           const std::vector<float> &down, const std::vector<float> &dOutPadded,
                           const cuda::ExpertGemmLibs &lib, const GroupedTolerances &bound,
                           const std::string &shape) {
  const int64_t H = c.hidden, F = c.ffn, E = c.experts, rows = c.tokens * c.topK, pad = 5,
                N = rows + pad;
  std::vector<float> fc1(r.fc1.size());
  for (size_t i = 0; i < fc1.size(); ++i)
    fc1[i] = roundBf16(0.5f * r.fc1[i]);
  const GroupedGrads want = backwardReference(c, r, gate, up, down, fc1);
  std::vector<float> x(r.permuted);
  x.resize(size_t(N * H), 0.0f);
  cuda::GroupedMlpShape g{N, H, F, E};
  DeviceBuffer<bf16> dX(N * H), dGate(E * F * H), dUp(E * F * H), dDown(E * H * F),
      dFc1(2 * N * F), dDOut(N * H), dDx(N * H);
  DeviceBuffer<float> dDgate(E * F * H), dDup(E * F * H), dDdown(E * H * F);
  DeviceBuffer<int32_t> dCounts(E);
  DeviceBuffer<char> work(std::max({cuda::groupedMlpWorkspaceBytes(g, true, cuda::ExpertGemm::Cublaslt),
                                    cuda::groupedMlpWorkspaceBytes(g, true, cuda::ExpertGemm::Kernel),
                                    cuda::groupedMlpWorkspaceBytes(g, true, cuda::ExpertGemm::Tiled)}));
  uploadBf16(dX, x);
  uploadBf16(dGate, gate);
  uploadBf16(dUp, up);
  uploadBf16(dDown, down);
  uploadBf16(dFc1, paddedFc1(fc1, rows, pad, F, NAN));
  uploadBf16(dDOut, dOutPadded);
  dCounts.upload(r.counts.data());
  const std::vector<float> zerosW(E * F * H, 0.0f);
  dDgate.upload(zerosW.data());
  dDup.upload(zerosW.data());
  dDdown.upload(zerosW.data());
  MT_ASSERT_OK(cuda::groupedMlpBackward(dX.get(), dCounts.get(), dGate.get(), dUp.get(),
                                        dDown.get(), dFc1.get(), dDOut.get(), dDx.get(), false,
                                        dDgate.get(), dDup.get(), dDdown.get(), lib, work.get(),
                                        g, nullptr));
  const std::string what = shape + " (fc1 halved)";
  expectClose("moe_grouped_mlp_bwd dx", what, downloadBf16(dDx), padded(want.dx, pad, H, 0.0f),
              bound.dx);
  expectClose("moe_grouped_mlp_bwd dgate", what, download(dDgate), want.dgate, bound.dw);
  expectClose("moe_grouped_mlp_bwd dup", what, download(dDup), want.dup, bound.dw);
  expectClose("moe_grouped_mlp_bwd ddown", what, download(dDdown), want.ddown, bound.dw);
}

/// moe_grouped_mlp and its gradient on `gemm`'s path against the reference,
/// over a buffer of 5 rows more than the groups (which must come out zero,
/// in the result and in fc1_output), then dx added to an old value; all
/// twice: the second run, its weight gradients on three side streams where
/// groupedGemmFaster calls the products small (ExpertLanes), must give the
/// same bits. The forward (result and fc1_output) is held to the fp32
/// reference; the backward to the CPU backward on the fc1_output the path
/// stored (backwardReference).
void checkGroupedMlp(const Case &c, cuda::ExpertGemm gemm, const DecomposedReference &r,
                     const std::vector<float> &gate, const std::vector<float> &up,
                     const std::vector<float> &down) {
  const bool lt = gemm != cuda::ExpertGemm::Tiled; // bf16 intermediates
  const char *const names[] = {" auto", " cublaslt", " grouped", " kernel", " tiled"};
  const std::string shape = caseText(c) + names[int(gemm)];
  const int64_t H = c.hidden, F = c.ffn, E = c.experts, pad = 5, N = c.tokens * c.topK + pad;
  const GroupedTolerances bound = tolerancesOf(gemm);
  std::mt19937 rng{uint32_t(N * 3 + H)};
  const auto tailIn = randomBf16(rng, pad * H, -1, 1), dxOld = randomBf16(rng, N * H, -1, 1);
  std::vector<float> x(r.permuted), dOut(r.dOutBf16);
  x.insert(x.end(), tailIn.begin(), tailIn.end());
  dOut.insert(dOut.end(), tailIn.begin(), tailIn.end());
  const auto wantOut = padded(r.out, pad, H, 0.0f);
  const auto wantFc1 = paddedFc1(r.fc1, N - pad, pad, F, 0.0f);
  cuda::GroupedMlpShape g{N, H, F, E};
  auto runner = cuda::GemmRunner::create();
  ASSERT_TRUE(runner) << runner.message();
  auto grouped = cuda::GroupedGemm::create();
  ASSERT_TRUE(grouped) << grouped.message();
  cuda::ExpertGemmLibs lib;
  if (cuda::readsCountsOnHost(gemm))
    lib.runner = &*runner;
  if (gemm == cuda::ExpertGemm::Grouped || gemm == cuda::ExpertGemm::Auto)
    lib.grouped = grouped->get();
  lib.bySize = gemm == cuda::ExpertGemm::Auto;
  lib.kernel = gemm == cuda::ExpertGemm::Kernel;
  auto lanes = cuda::ExpertLanes::create(3, cuda::GemmRunner::Choice::Heuristic);
  ASSERT_TRUE(lanes) << lanes.message();
  DeviceBuffer<bf16> dX(N * H), dGate(E * F * H), dUp(E * F * H), dDown(E * H * F), dOutD(N * H),
      dFc1(2 * N * F), dDOut(N * H), dDx(N * H);
  DeviceBuffer<float> dDgate(E * F * H), dDup(E * F * H), dDdown(E * H * F);
  DeviceBuffer<int32_t> dCounts(E);
  DeviceBuffer<char> work(cuda::groupedMlpWorkspaceBytes(g, true, gemm));
  uploadBf16(dX, x);
  uploadBf16(dGate, gate);
  uploadBf16(dUp, up);
  uploadBf16(dDown, down);
  uploadBf16(dDOut, dOut);
  dCounts.upload(r.counts.data());
  const std::vector<float> zerosW(E * F * H, 0.0f);
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 2; ++run) {
    lib.lanes = run == 1 && lib.runner ? lanes->get() : nullptr;
    dOutD.poison();
    dFc1.poison();
    dDx.poison();
    dDgate.upload(zerosW.data());
    dDup.upload(zerosW.data());
    dDdown.upload(zerosW.data());
    MT_ASSERT_OK(cuda::groupedMlpForward(dX.get(), dCounts.get(), dGate.get(), dUp.get(),
                                         dDown.get(), dOutD.get(), dFc1.get(), lib, work.get(),
                                         g, nullptr));
    MT_ASSERT_OK(cuda::groupedMlpBackward(dX.get(), dCounts.get(), dGate.get(), dUp.get(),
                                          dDown.get(), dFc1.get(), dDOut.get(), dDx.get(), false,
                                          dDgate.get(), dDup.get(), dDdown.get(), lib,
                                          work.get(), g, nullptr));
    std::vector<std::vector<float>> got{downloadBf16(dOutD), downloadBf16(dDx), download(dDgate),
                                        download(dDup), download(dDdown)};
    uploadBf16(dDx, dxOld);
    MT_ASSERT_OK(cuda::groupedMlpBackward(dX.get(), dCounts.get(), dGate.get(), dUp.get(),
                                          dDown.get(), dFc1.get(), dDOut.get(), dDx.get(), true,
                                          dDgate.get(), dDup.get(), dDdown.get(), lib,
                                          work.get(), g, nullptr));
    got.push_back(downloadBf16(dDx));
    got.push_back(downloadBf16(dFc1));
    if (run == 1) {
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(got[i], first[i]) << "result " << i << " differs between runs " << shape;
      break;
    }
    expectClose("moe_grouped_mlp", shape, got[0], wantOut, bound.out);
    expectClose("moe_grouped_mlp fc1_output", shape, got[6], wantFc1, bound.out);
    const GroupedGrads want =
        backwardReference(c, r, gate, up, down, fc1Rows(got[6], N - pad, pad, F));
    const auto wantDx = padded(want.dx, pad, H, 0.0f);
    std::vector<float> wantDxAdded(dxOld);
    for (size_t i = 0; i < wantDx.size(); ++i)
      wantDxAdded[i] += wantDx[i];
    expectClose("moe_grouped_mlp_bwd dx", shape, got[1], wantDx, bound.dx);
    expectClose("moe_grouped_mlp_bwd dgate", shape, got[2], want.dgate, bound.dw);
    expectClose("moe_grouped_mlp_bwd dup", shape, got[3], want.dup, bound.dw);
    expectClose("moe_grouped_mlp_bwd ddown", shape, got[4], want.ddown, bound.dw);
    expectClose("moe_grouped_mlp_bwd dx (add)", shape, got[5], wantDxAdded,
                lt ? tol::kBf16OperandsRel : tol::kBf16Rel);
    first = std::move(got);
  }
  checkBackwardReadsFc1(c, r, gate, up, down, dOut, lib, bound, shape);
}

/// moe_permute -> moe_grouped_mlp -> moe_unpermute (dropless) and their
/// gradients against runtime/cpu/MoEPermute.h, the grouped MLP on each path.
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
  const std::vector<int32_t> indices = routedIndices(c);
  const DecomposedReference r = decomposedReference(c, x, probs, indices, gate, up, down, dy);
  cuda::PermuteShape s{T, H, E, K};
  DeviceBuffer<bf16> dX(T * H), dPerm(N * H), dOutD(N * H), dY(T * H), dDy(T * H),
      dDOut(N * H), dDPerm(N * H), dDx(T * H);
  DeviceBuffer<float> dProbsIn(T * K), dDProbs(T * K);
  DeviceBuffer<int32_t> dIndices(T * K), dCounts(E), dSlotRows(T * K);
  DeviceBuffer<char> work(cuda::moePermuteWorkspaceBytes(s));
  uploadBf16(dX, x);
  uploadBf16(dDy, dy);
  dProbsIn.upload(probs.data());
  dIndices.upload(indices.data());
  MT_ASSERT_OK(cuda::moePermuteForward(dX.get(), dIndices.get(), dPerm.get(), dCounts.get(),
                                       dSlotRows.get(), work.get(), s, nullptr));
  EXPECT_EQ(download(dCounts), r.counts) << "tokens per expert " << shape;
  EXPECT_EQ(download(dSlotRows), r.slotRows) << "slot rows " << shape;
  expectClose("moe_permute", shape, downloadBf16(dPerm), r.permuted, tol::kBitExact);
  for (cuda::ExpertGemm gemm : {cuda::ExpertGemm::Auto, cuda::ExpertGemm::Cublaslt,
                                cuda::ExpertGemm::Grouped, cuda::ExpertGemm::Kernel,
                                cuda::ExpertGemm::Tiled})
    checkGroupedMlp(c, gemm, r, gate, up, down);
  uploadBf16(dOutD, r.outBf16);
  MT_ASSERT_OK(cuda::moeUnpermuteForward(dOutD.get(), dProbsIn.get(), dSlotRows.get(), dY.get(),
                                         s, nullptr));
  expectClose("moe_unpermute", shape, downloadBf16(dY), r.y, tol::kBf16Rel);
  std::vector<float> zerosTk(T * K, 0.0f);
  dDProbs.upload(zerosTk.data());
  MT_ASSERT_OK(cuda::moeUnpermuteBackward(dOutD.get(), dProbsIn.get(), dSlotRows.get(),
                                          dDy.get(), dDOut.get(), false, dDProbs.get(), s,
                                          nullptr));
  expectClose("moe_unpermute_bwd dexpert_out", shape, downloadBf16(dDOut), r.dOut, tol::kBf16Rel);
  expectClose("moe_unpermute_bwd dprobs", shape, download(dDProbs), r.dProbs, tol::kFp32AccumRel);
  uploadBf16(dDPerm, r.dPermutedBf16);
  MT_ASSERT_OK(cuda::moePermuteBackward(dDPerm.get(), dSlotRows.get(), dDx.get(), false, s,
                                        nullptr));
  expectClose("moe_permute_bwd", shape, downloadBf16(dDx), r.dx, tol::kBf16Rel);
}

/// The library paths read the counts on the host: one that is negative or
/// takes the groups past the rows is an error naming it, not a read past
/// the buffers.
TEST(GroupedMlpTest, CountsThatDoNotFitTheRowsAreAnError) {
  const cuda::GroupedMlpShape g{5, 8, 4, 2};
  auto runner = cuda::GemmRunner::create();
  ASSERT_TRUE(runner) << runner.message();
  DeviceBuffer<bf16> dX(5 * 8), dGate(2 * 4 * 8), dUp(2 * 4 * 8), dDown(2 * 8 * 4), dY(5 * 8),
      dFc1(2 * 5 * 4);
  DeviceBuffer<int32_t> dCounts(2);
  DeviceBuffer<char> work(cuda::groupedMlpWorkspaceBytes(g, false, cuda::ExpertGemm::Cublaslt));
  const std::pair<std::vector<int32_t>, std::string> cases[] = {
      {{3, 4}, "tokens_per_expert[1] = 4 after 3 rows: the groups must fit the 5 rows"},
      {{-1, 2}, "tokens_per_expert[0] = -1 after 0 rows"}};
  for (const auto &[counts, message] : cases) {
    dCounts.upload(counts.data());
    Status s = cuda::groupedMlpForward(dX.get(), dCounts.get(), dGate.get(), dUp.get(),
                                       dDown.get(), dY.get(), dFc1.get(), {&*runner, nullptr},
                                       work.get(), g, nullptr);
    ASSERT_FALSE(s.isOk()) << message;
    EXPECT_NE(s.message().find(message), std::string::npos) << s.message();
  }
}

TEST(GroupedMlpTest, ParsesMtMoeGemm) {
  EXPECT_EQ(*cuda::parseExpertGemm("auto", "MT_MOE_GEMM"), cuda::ExpertGemm::Auto);
  EXPECT_EQ(*cuda::parseExpertGemm("cublaslt", "MT_MOE_GEMM"), cuda::ExpertGemm::Cublaslt);
  EXPECT_EQ(*cuda::parseExpertGemm("grouped", "MT_MOE_GEMM"), cuda::ExpertGemm::Grouped);
  EXPECT_EQ(*cuda::parseExpertGemm("kernel", "MT_MOE_GEMM"), cuda::ExpertGemm::Kernel);
  EXPECT_EQ(*cuda::parseExpertGemm("tiled", "MT_MOE_GEMM"), cuda::ExpertGemm::Tiled);
  auto bad = cuda::parseExpertGemm("cublas", "MT_MOE_GEMM");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.message().find("MT_MOE_GEMM='cublas' is not a way to run the experts' GEMMs: "
                               "use auto, cublaslt, grouped, kernel or tiled"),
            std::string::npos)
      << bad.message();
}

// auto, per call: the grouped GEMM for many small experts (Qwen3-30B-A3B
// at 1 x 4096: 32768 rows over 128 experts; under ep2 a rank's ~32768 of
// its bound of 65536 rows over 64), cuBLASLt per expert for few large ones
// (Mixtral: 8192 rows over 8), judged from the rows the experts have.
TEST(GroupedMlpTest, AutoPicksTheFasterLibraryPerCall) {
  EXPECT_TRUE(cuda::groupedGemmFaster(32768, 128));
  EXPECT_TRUE(cuda::groupedGemmFaster(30000, 64));
  EXPECT_FALSE(cuda::groupedGemmFaster(34000, 64));
  EXPECT_FALSE(cuda::groupedGemmFaster(8192, 8));
  EXPECT_TRUE(cuda::readsCountsOnHost(cuda::ExpertGemm::Auto));
  EXPECT_FALSE(cuda::readsCountsOnHost(cuda::ExpertGemm::Kernel));
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoETest,
                         ::testing::Values(Case{37, 40, 24, 6, 2, true},
                                           Case{37, 40, 24, 6, 2, false},
                                           Case{1, 8, 4, 3, 1, true},
                                           Case{300, 128, 96, 8, 3, true},
                                           Case{64, 2048, 64, 128, 8, true},
                                           Case{300, 128, 96, 8, 1, true, Load::skewed},
                                           Case{300, 128, 96, 8, 2, true, Load::skewed},
                                           // Qwen3-30B-A3B (128 experts, top 8,
                                           // hidden 2048, expert ffn 768) / 8
                                           Case{64, 256, 96, 128, 8, true},
                                           Case{64, 256, 96, 128, 8, true, Load::skewed},
                                           // Mixtral-8x7B (8 experts, top 2,
                                           // hidden 4096, ffn 14336) / 8
                                           Case{256, 512, 1792, 8, 2, false}));

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
