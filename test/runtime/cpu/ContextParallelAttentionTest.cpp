// The CPU attention kernel under context parallelism (cp_comm_type
// all_gather): each rank's queries in Megatron-Core's load-balanced layout
// against every rank's gathered keys and values give the single rank's
// output, log-sum-exp and, summed over ranks, gradients, at the tokens'
// places in the sequence. Chunks of 3 and 5 tokens: no block size divides them.
#include "runtime/cpu/Attention.h"
#include "runtime/kernels/ContextParallel.h"
#include "test/Tolerances.h"
#include "test/runtime/cpu/KernelCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace mt::cpu {
namespace {

using Floats = std::vector<float>;
namespace tol = mt::tolerance;

struct Case {
  int64_t cp, seq;
};

class ContextParallelAttention : public ::testing::TestWithParam<Case> {};

/// Rows [batch, seq, width] of `full` at the places of rank `rank`'s tokens.
Floats slice(const Floats &full, int64_t batch, int64_t seq, int64_t width, int64_t rank,
             int64_t cp) {
  const int64_t local = seq / cp;
  Floats out(size_t(batch * local * width));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t l = 0; l < local; ++l) {
      int64_t s = kernels::contextParallelPosition(l, local, rank, cp);
      std::copy_n(full.begin() + (b * seq + s) * width, width,
                  out.begin() + (b * local + l) * width);
    }
  return out;
}

/// The all-gather over cp of every rank's slice: [batch, cp · local, width],
/// rank-major along the sequence (mt.all_gather along dimension 1).
Floats gathered(const Floats &full, int64_t batch, int64_t seq, int64_t width, int64_t cp) {
  const int64_t local = seq / cp;
  Floats out(full.size());
  for (int64_t r = 0; r < cp; ++r) {
    Floats mine = slice(full, batch, seq, width, r, cp);
    for (int64_t b = 0; b < batch; ++b)
      std::copy_n(mine.begin() + b * local * width, local * width,
                  out.begin() + (b * seq + r * local) * width);
  }
  return out;
}

/// Within fp32 kernel tolerance of the largest magnitude of `want`
/// (test/Tolerances.h): the sums run in another order than the single rank's.
void expectClose(const Floats &got, const Floats &want, const char *what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0;
  for (float w : want)
    scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol::kFp32KernelAbs + tol::kFp32KernelRel * scale)
        << what << " at " << i;
}

TEST_P(ContextParallelAttention, MatchesTheWholeSequence) {
  const auto [cp, seq] = GetParam();
  const int64_t batch = 2, heads = 4, kvHeads = 2, dim = 8, local = seq / cp;
  const int64_t qw = heads * dim, kw = kvHeads * dim;
  std::mt19937 rng(7);
  Floats q = check::randomVector(rng, size_t(batch * seq * qw), -1, 1);
  Floats k = check::randomVector(rng, size_t(batch * seq * kw), -1, 1);
  Floats v = check::randomVector(rng, size_t(batch * seq * kw), -1, 1);
  Floats dout = check::randomVector(rng, q.size(), -1, 1);
  const AttentionShape whole{batch, seq, heads, kvHeads, dim, 0.35f};
  Floats out(q.size()), lse(size_t(batch * heads * seq));
  attentionForward(q.data(), k.data(), v.data(), out.data(), lse.data(), whole);
  Floats dq(q.size()), dk(k.size()), dv(v.size());
  attentionBackward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(),
                    dk.data(), dv.data(), whole);

  const Floats kAll = gathered(k, batch, seq, kw, cp), vAll = gathered(v, batch, seq, kw, cp);
  Floats dkSum(k.size()), dvSum(v.size()); // over ranks, in gathered order
  for (int64_t r = 0; r < cp; ++r) {
    AttentionShape shape{batch, local, heads, kvHeads, dim, 0.35f};
    shape.cpRank = r;
    shape.cpSize = cp;
    Floats qr = slice(q, batch, seq, qw, r, cp), dor = slice(dout, batch, seq, qw, r, cp);
    Floats outR(qr.size()), lseR(size_t(batch * heads * local));
    attentionForward(qr.data(), kAll.data(), vAll.data(), outR.data(), lseR.data(), shape);
    expectClose(outR, slice(out, batch, seq, qw, r, cp), "out");
    // lse [batch, heads, seq]: the rank's tokens of each (batch, head) row.
    Floats lseWant = slice(lse, batch * heads, seq, 1, r, cp);
    expectClose(lseR, lseWant, "lse");
    Floats dqR(qr.size()), dkR(kAll.size()), dvR(vAll.size());
    attentionBackward(qr.data(), kAll.data(), vAll.data(), outR.data(), lseR.data(), dor.data(),
                      dqR.data(), dkR.data(), dvR.data(), shape);
    expectClose(dqR, slice(dq, batch, seq, qw, r, cp), "dq");
    for (size_t i = 0; i < dkSum.size(); ++i)
      dkSum[i] += dkR[i], dvSum[i] += dvR[i];
  }
  expectClose(dkSum, gathered(dk, batch, seq, kw, cp), "dk summed over cp");
  expectClose(dvSum, gathered(dv, batch, seq, kw, cp), "dv summed over cp");
}

INSTANTIATE_TEST_SUITE_P(Layouts, ContextParallelAttention,
                         ::testing::Values(Case{2, 12}, Case{4, 24}, Case{2, 20}),
                         [](const auto &info) {
                           return "cp" + std::to_string(info.param.cp) + "_seq" +
                                  std::to_string(info.param.seq);
                         });

TEST(ContextParallelPosition, IsMegatronCoresLoadBalancedLayout) {
  // cp 2, 8 tokens: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  const int64_t want[2][4] = {{0, 1, 6, 7}, {2, 3, 4, 5}};
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t l = 0; l < 4; ++l)
      EXPECT_EQ(kernels::contextParallelPosition(l, 4, r, 2), want[r][l]) << r << " " << l;
  EXPECT_EQ(kernels::contextParallelGatheredPosition(5, 4, 2), 3);
}

} // namespace
} // namespace mt::cpu
