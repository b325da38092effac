// CPU reference kernels of Megatron-Core's MoE token permutation: tokens
// sorted by expert (with the capacity and token-drop rules), the experts'
// SwiGLU over the sorted rows as one GEMM group per expert, and the
// probability-weighted un-permutation. Conventions: runtime/cpu/Kernels.md.
#ifndef MT_RUNTIME_CPU_MOEPERMUTE_H
#define MT_RUNTIME_CPU_MOEPERMUTE_H

#include "runtime/kernels/MoE.h"
#include "runtime/support/Status.h"

#include <cstdint>

namespace mt::cpu {

using kernels::DropPolicy;

struct PermuteShape {
  int64_t tokens, hidden, experts, topK;
  /// Rows of the permuted buffer: tokens * topK when dropless, else
  /// experts * capacity with padding, min(tokens * topK, experts * capacity)
  /// without.
  int64_t rows;
  /// Rows one expert may take; 0 = dropless.
  int64_t capacity;
  DropPolicy dropPolicy;
  /// Every expert's group is `capacity` rows, zero rows after its tokens
  /// (moe_pad_expert_input_to_capacity).
  bool padToCapacity;
};

/// x [tokens, hidden]; probs, indices [tokens, topK] (a router's choice,
/// distinct experts per token). Writes permuted [rows, hidden]: the routed
/// tokens grouped by expert in expert order, each group in token order
/// (Megatron-Core's permute: routing_map.T masked-select of the token
/// indices), zero rows where no token goes; tokensPerExpert [experts] (int32;
/// `capacity` for every expert when padToCapacity); slotRows [tokens, topK]
/// (int32): the permuted row of each slot, -1 where it was dropped.
/// With a capacity, expert e keeps `capacity` of its slots: the first ones in
/// token order (position) or those of the largest probs, ties to the lower
/// token (probs), as Megatron-Core's topk_routing_with_score_function with
/// moe_expert_capacity_factor.
void moePermuteForward(const float *x, const float *probs,
                       const int32_t *indices, float *permuted,
                       int32_t *tokensPerExpert, int32_t *slotRows,
                       const PermuteShape &shape);
/// Adds the gradient of sum(dPermuted * permuted) to dx [tokens, hidden].
void moePermuteBackward(const float *dPermuted, const int32_t *slotRows,
                        float *dx, const PermuteShape &shape);

/// expertOut [rows, hidden]; probs, slotRows [tokens, topK]. Overwrites
/// y [tokens, hidden] with y[t] = sum_k probs[t, k] * expertOut[slotRows[t, k]]
/// over the kept slots, k ascending (Megatron-Core's unpermute with probs).
void moeUnpermuteForward(const float *expertOut, const float *probs,
                         const int32_t *slotRows, float *y,
                         const PermuteShape &shape);
/// Adds the gradients of sum(dy * y) to dExpertOut [rows, hidden] and
/// dProbs [tokens, topK] (zero for dropped slots).
void moeUnpermuteBackward(const float *expertOut, const float *probs,
                          const int32_t *slotRows, const float *dy,
                          float *dExpertOut, float *dProbs,
                          const PermuteShape &shape);

/// The rows of an expert-parallel all-to-all, re-ordered between chunk
/// orders (Megatron-Core's sort_chunks_by_idxs): `in` [rows, hidden] holds
/// chunks in order (p, g), p < parts (source ranks) outer, g < groups (local
/// experts) inner, chunk (p, g) of counts[p * groups + g] rows; `out` gets
/// them in order (g, p), so that each local expert's rows are consecutive.
/// With `inverse`, `in` is in order (g, p) and `out` in (p, g) (the combine,
/// and the gradient). With `offsets` ([parts]; the allgather dispatcher,
/// null for the all-to-all's packed chunks) the (p, g) side is `parts`
/// blocks of rows / parts rows, source p's chunks from row
/// p · rows / parts + offsets[p]. Rows past (or between) the chunks are
/// zero. Overwrites `out`. Errors, before writing, when a count or offset
/// is negative, or a chunk would pass the rows (its block's, with
/// offsets), naming the chunk.
Status moeSortChunks(const float *in, const int32_t *counts, const int32_t *offsets, float *out,
                     int64_t parts, int64_t groups, int64_t rows, int64_t hidden, bool inverse);

struct GroupedMlpShape {
  int64_t rows, hidden, ffn, experts;
};

/// x [rows, hidden]; tokensPerExpert [experts] (int32, sum <= rows); gate, up
/// [experts, ffn, hidden]; down [experts, hidden, ffn]. Expert e takes the
/// rows [o_e, o_e + tokensPerExpert[e]), o_e the sum of the counts before it:
///   y[r] = down[e] (silu(gate[e] x[r]) * up[e] x[r]),
/// three GEMMs per expert (Megatron-Core's GroupedMLP); fc1 [2, rows, ffn]
/// gets the pre-activations gate[e] x[r] (fc1[0]) and up[e] x[r] (fc1[1])
/// for the backward. Rows past the last group are zero in y and fc1.
void groupedMlpForward(const float *x, const int32_t *tokensPerExpert,
                       const float *gate, const float *up, const float *down,
                       float *y, float *fc1, const GroupedMlpShape &shape);
/// Adds the gradients of sum(dy * y) to dx, dgate, dup and ddown; the
/// pre-activations are read from the forward's fc1 [2, rows, ffn] (rows of
/// the groups only), not recomputed: two GEMMs per expert fewer.
void groupedMlpBackward(const float *x, const int32_t *tokensPerExpert,
                        const float *gate, const float *up, const float *down,
                        const float *fc1, const float *dy, float *dx, float *dgate,
                        float *dup, float *ddown, const GroupedMlpShape &shape);

} // namespace mt::cpu

#endif // MT_RUNTIME_CPU_MOEPERMUTE_H
