// The fp64 reference of causal GQA softmax attention for the CPU kernel
// tests, whole rows or documents packed in one row.
#pragma once

#include "runtime/cpu/Attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mt::cpu::check {

/// Document index of every token of a row: a new document where the
/// position id is 0 (Hugging Face's rule for packed position_ids).
inline std::vector<int64_t> documentIds(const int32_t *row, int64_t seq) {
  std::vector<int64_t> doc(seq);
  for (int64_t i = 0, d = -1; i < seq; ++i)
    doc[i] = row[i] == 0 ? ++d : d;
  return doc;
}

/// GQA softmax attention written plainly in fp64, q [b, s, heads, d], k and
/// v [b, s, kvHeads, d], out like q, lse [b, heads, s]: query i sees key j
/// iff j <= i and, given `positions` ([b, s] position ids), both lie in one
/// document (LLaMA-Factory's prepare_4d_attention_mask).
inline void refAttention(const std::vector<double> &q, const std::vector<double> &k,
                         const std::vector<double> &v, const AttentionShape &s,
                         std::vector<double> &out, std::vector<double> &lse,
                         const std::vector<int32_t> *positions = nullptr) {
  const int64_t S = s.seq, H = s.heads, G = s.kvHeads, D = s.headDim;
  out.assign(s.batch * S * H * D, 0.0);
  lse.assign(s.batch * H * S, 0.0);
  std::vector<double> scores(S);
  for (int64_t b = 0; b < s.batch; ++b) {
    const std::vector<int64_t> doc =
        positions ? documentIds(positions->data() + b * S, S) : std::vector<int64_t>(S, 0);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        const int64_t g = h / (H / G), qAt = ((b * S + i) * H + h) * D;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          if (doc[j] != doc[i])
            continue;
          double dotQK = 0;
          for (int64_t d = 0; d < D; ++d)
            dotQK += q[qAt + d] * k[((b * S + j) * G + g) * D + d];
          scores[j] = s.scale * dotQK;
          m = std::max(m, scores[j]);
        }
        for (int64_t j = 0; j <= i; ++j) {
          if (doc[j] != doc[i])
            continue;
          const double p = std::exp(scores[j] - m);
          sum += p;
          for (int64_t d = 0; d < D; ++d)
            out[qAt + d] += p * v[((b * S + j) * G + g) * D + d];
        }
        for (int64_t d = 0; d < D; ++d)
          out[qAt + d] /= sum;
        lse[(b * H + h) * S + i] = m + std::log(sum);
      }
  }
}

} // namespace mt::cpu::check
