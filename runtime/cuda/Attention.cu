// Flash attention kernels (FlashAttention-2 algorithm): a forward with an
// online softmax over 64-key tiles, and a backward of three kernels (row
// dots of dout and out, then dk/dv per key block, then dq per query block).
// Warp-level bf16 mma.sync m16n8k16 with fp32 accumulators (the tile
// pieces: runtime/cuda/FlashTiles.cuh); K/V (or Q/dO)
// tiles stream through two shared-memory buffers filled by cp.async.
// With position ids (kDocs), rows pack documents: query i sees keys
// [i - pos[i], i]; tiles before a query block's first document and query
// blocks past a key block's last document are skipped, not masked. Under
// context parallelism (kCp) a key is visible by its place in the whole
// sequence (and, with position ids, by its place in the query's document).
// Gathered keys (all_gather): every tile is visited, a block-wide vote
// skips the tiles no query of the block sees and masks element-wise only
// the tiles that some of its queries see in part. A ring block's keys
// (p2p) are placed rising along their slice as the queries are, so only
// the tiles up to the last its block's last query sees are loaded, and
// without position ids only those some see in part are masked (CpKeyTiles).
// attentionForward/Backward (the choice of backend) live in
// runtime/cuda/AttentionBackend.cpp; these are mtcAttentionForward/Backward.
#include "runtime/cuda/Attention.h"

#include "runtime/cuda/Check.h"
#include "runtime/cuda/FlashTiles.cuh"
#include "runtime/kernels/ContextParallel.h"
#include "runtime/plan/AttentionWorkspace.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace mt::cuda {

namespace {

using namespace flash;

/// Every kernel's arguments; each kernel reads the fields it needs.
struct Args {
  const bf16 *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr,
             *dout = nullptr;
  const float *lse = nullptr, *delta = nullptr;
  bf16 *outW = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float *lseW = nullptr, *deltaW = nullptr;
  int seq = 0, heads = 0, kvHeads = 0, group = 0;
  float scale = 0, scaleLog2 = 0;
  int kvSeq = 0, qBlocks = 0; // key rows per batch; query tiles
  // Context parallelism (AttentionShape): cp rank, size, key source.
  int cpRank = 0, cpSize = 1, kvSource = -1;
  const float *dlse = nullptr; // AttentionGradExtras
  bool addDq = false, addDk = false, addDv = false;
};

/// The kernels' masks: causal, causal within packed documents, or by the
/// place in the whole sequence under context parallelism.
enum Mask { kCausal, kDocuments, kContextParallel };

/// Places in the whole sequence (runtime/kernels/ContextParallel.h) of
/// query row i and key row j; rows past the slice are clamped into it.
__device__ __forceinline__ int queryPlace(const Args &p, int i) {
  return int(kernels::contextParallelPosition(min(i, p.seq - 1), p.seq, p.cpRank, p.cpSize));
}
__device__ __forceinline__ int keyPlace(const Args &p, int j) {
  j = min(j, p.kvSeq - 1);
  return p.kvSource >= 0
             ? int(kernels::contextParallelPosition(j, p.seq, p.kvSource, p.cpSize))
             : int(kernels::contextParallelGatheredPosition(j, p.seq, p.cpSize));
}

/// Under context parallelism, the places of the keys a query sees: from its
/// document's start (its place minus its position id, clamped to [0, last];
/// 0 without position ids, cpu::attentionBlockForward's mask) to its own
/// place. Both never decrease along a slice (places rise along it, and
/// document starts with the place).
struct Window {
  int first, last;
  __device__ __forceinline__ bool sees(int place) const {
    return first <= place && place <= last;
  }
};
/// The window of query row i of batch b; rows past the slice are clamped
/// into it. pos: the queries' [batch, seq] position ids, or null.
__device__ __forceinline__ Window queryWindow(const Args &p, const int32_t *pos, int b, int i) {
  i = min(i, p.seq - 1);
  const int last = queryPlace(p, i);
  return {pos ? min(max(last - pos[int64_t(b) * p.seq + i], 0), last) : 0, last};
}

/// Under context parallelism, how the query rows of a block, whose first
/// and last rows' windows are lo and hi, see key tile kb: at all (some
/// query sees a key), and whole (every query sees every key of a full
/// tile). A vote of the whole block: every thread calls it.
struct TileView {
  bool seen, whole;
};
__device__ __forceinline__ TileView keyTileView(const Args &p, Window lo, Window hi, int kb) {
  const int key = kb * kBlock + int(threadIdx.x);
  const bool mine = int(threadIdx.x) < kBlock && key < p.kvSeq;
  const int place = mine ? keyPlace(p, key) : 0;
  const bool seen = __syncthreads_or(mine && lo.first <= place && place <= hi.last);
  const bool whole = __syncthreads_and(int(threadIdx.x) >= kBlock ||
                                       (mine && hi.first <= place && place <= lo.last));
  return {seen, whole};
}

/// A ring attention block's keys (kvSource >= 0) are placed rising along
/// their slice, as the queries are: query row i sees the slice's first
/// ringKeysSeen(p, i) keys, a count that never decreases along the queries.
__device__ __forceinline__ int ringKeysSeen(const Args &p, int i) {
  return int(kernels::contextParallelRowsBefore(queryPlace(p, i) + 1, p.seq, p.kvSource,
                                                p.cpSize));
}

/// Under context parallelism, the key tiles 0..last the query rows [q0, q0
/// + kBlock) visit. Gathered keys (all_gather): every tile. A ring block:
/// only the tiles before the end of the keys its last query sees, so no
/// tile that no query sees is loaded (Megatron-Core's ring does the same
/// work with sliced q or k/v); without position ids each of those is seen
/// by some query and whole when it ends within the keys the first query
/// sees (wholeKeys), so no vote (keyTileView) is needed and none that every
/// query sees is masked. wholeKeys -1: the vote decides.
struct CpKeyTiles {
  int last = 0, wholeKeys = -1;
  __device__ __forceinline__ TileView countedView(int kb) const {
    return {true, (kb + 1) * kBlock <= wholeKeys};
  }
};
__device__ __forceinline__ CpKeyTiles cpKeyTiles(const Args &p, const int32_t *pos, int q0) {
  if (p.kvSource < 0)
    return {(p.kvSeq - 1) / kBlock, -1};
  const int seen = ringKeysSeen(p, min(q0 + kBlock, p.seq) - 1);
  return {(seen + kBlock - 1) / kBlock - 1, pos ? -1 : ringKeysSeen(p, q0)}; // last -1: none
}


/// The first key query `row` of batch b sees: the start of its document,
/// row - pos[row] clamped to [0, row] (cpu::documentStart), with pos the
/// [batch, seq] position ids; 0 past seq. The kernels take pos beside Args
/// so that their instances without documents compile as before it existed.
__device__ __forceinline__ int documentStart(const int32_t *pos, int seq, int b, int row) {
  if (row >= seq)
    return 0;
  const int start = row - pos[int64_t(b) * seq + row];
  return min(max(start, 0), row);
}

/// How many query blocks from the diagonal on see a key of key block
/// kBlockIdx: they end at the first block whose first query's document
/// starts past the block's last key (starts never decrease along a row).
__device__ __forceinline__ int queryBlocksSeeing(const int32_t *pos, int seq, int b,
                                                 int kBlockIdx) {
  const int lastKey = min((kBlockIdx + 1) * kBlock, seq) - 1;
  int n = 1;
  while (kBlockIdx + n < int(gridDim.y) &&
         documentStart(pos, seq, b, (kBlockIdx + n) * kBlock) <= lastKey)
    ++n;
  return n;
}


/// One block per (query block, batch x head): 64 queries against key tiles
/// 0 (or the block's first document's) ..diagonal (CpKeyTiles' under context
/// parallelism) with an online softmax in the log2 domain. Longer than ~80
/// lines: the pipeline, softmax and epilogue share registers.
template <int D, int M>
__global__ void __launch_bounds__(kThreads)
    attentionForwardKernel(Args p, const int32_t *pos) {
  constexpr bool kDocs = M == kDocuments, kCp = M == kContextParallel;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *sQ = reinterpret_cast<bf16 *>(smem);
  bf16 *sK = sQ + kTileElems<D>; // two buffers each
  bf16 *sV = sK + 2 * kTileElems<D>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  // Longest rows first: the last query blocks have the most key tiles.
  const int qBlock = gridDim.y - 1 - blockIdx.y, q0 = qBlock * kBlock;
  const int64_t qStride = int64_t(p.heads) * D, kvStride = int64_t(p.kvHeads) * D;
  const bf16 *qBase = p.q + (int64_t(b) * p.seq * p.heads + h) * D;
  const int64_t kvOff = (int64_t(b) * p.kvSeq * p.kvHeads + h / p.group) * D;
  const bf16 *kBase = p.k + kvOff, *vBase = p.v + kvOff;
  CpKeyTiles cpTiles;
  if constexpr (kCp)
    cpTiles = cpKeyTiles(p, pos, q0);
  const int kbLast = kCp ? cpTiles.last : qBlock;
  // Document starts are non-decreasing along the row: the block's first
  // query has the smallest, its last valid query the largest.
  const int kbFirst = kDocs ? documentStart(pos, p.seq, b, q0) / kBlock : 0;
  const int lastStart = kDocs ? documentStart(pos, p.seq, b, min(q0 + kBlock, p.seq) - 1) : 0;

  if (kbFirst <= kbLast) { // else (cp) no query sees a key: out 0, lse -inf
    loadTile<D>(sQ, qBase, qStride, q0, p.seq);
    loadTile<D>(sK, kBase, kvStride, kbFirst * kBlock, p.kvSeq);
    loadTile<D>(sV, vBase, kvStride, kbFirst * kBlock, p.kvSeq);
    cpAsyncCommit();
  }

  float o[D / 8][4] = {};
  // Row maxima m in raw score units; probabilities are 2^(s*c - m*c) with
  // c = scale * log2(e), one FFMA and one ex2 each.
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const float c = p.scaleLog2;
  const int rowLo = q0 + warp * 16 + lane / 4; // rows rowLo, rowLo + 8
  // The first key each row sees (documents), or the places it sees (cp),
  // and under cp those of the block's first and last rows.
  int start[2] = {0, 0};
  Window window[2] = {}, lo = {}, hi = {};
  for (int r = 0; r < 2; ++r)
    if constexpr (kDocs)
      start[r] = documentStart(pos, p.seq, b, rowLo + 8 * r);
    else if constexpr (kCp)
      window[r] = queryWindow(p, pos, b, rowLo + 8 * r);
  if constexpr (kCp)
    lo = queryWindow(p, pos, b, q0), hi = queryWindow(p, pos, b, q0 + kBlock - 1);
  // This warp's 16 query rows as fragments, loaded once, at D = 64; at
  // D = 128 the extra registers cost more than the shared-memory re-reads.
  constexpr bool kQInRegisters = D == 64;
  uint32_t qf[kQInRegisters ? D / 16 : 1][4];
  bool qLoaded = false;
  for (int kb = kbFirst; kb <= kbLast; ++kb) {
    const int buf = (kb - kbFirst) % 2;
    if (kb < kbLast) { // prefetch the next tile into the other buffer
      loadTile<D>(sK + (1 - buf) * kTileElems<D>, kBase, kvStride,
                  (kb + 1) * kBlock, p.kvSeq);
      loadTile<D>(sV + (1 - buf) * kTileElems<D>, vBase, kvStride,
                  (kb + 1) * kBlock, p.kvSeq);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    // The diagonal tile: keys after the query are masked; with documents,
    // so are keys before its document's start; under cp, keys placed
    // outside the query's window.
    bool masked = kb == qBlock || (kDocs && kb * kBlock < lastStart);
    if constexpr (kCp) {
      const TileView view =
          cpTiles.wholeKeys >= 0 ? cpTiles.countedView(kb) : keyTileView(p, lo, hi, kb);
      if (!view.seen)
        continue; // past the vote's barrier no thread reads this buffer
      masked = !view.whole;
    }
    float s[8][4] = {};
    if constexpr (kQInRegisters) {
      if (!qLoaded)
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks)
          ldsm4(qf[ks], sQ + (warp * 16 + lane % 16) * kSmemStride<D> +
                            ks * 16 + (lane / 16) * 8);
      qLoaded = true;
      gemmRegNT<8, D / 16, kSmemStride<D>>(s, qf, sK + buf * kTileElems<D>);
    } else {
      gemmNT<8, D / 16, kSmemStride<D>>(s, sQ + warp * 16 * kSmemStride<D>,
                                        sK + buf * kTileElems<D>);
    }
    float rowMax[2] = {-INFINITY, -INFINITY};
    if (masked)
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = kb * kBlock + n * 8 + 2 * (lane % 4) + (e & 1);
          const bool hidden =
              kCp ? key >= p.kvSeq || !window[e / 2].sees(keyPlace(p, key))
                  : key > rowLo + 8 * (e / 2) || (kDocs && key < start[e / 2]);
          if (hidden)
            s[n][e] = -INFINITY;
        }
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        rowMax[e / 2] = fmaxf(rowMax[e / 2], s[n][e]);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      // The four lanes of a quad hold one row's columns.
      rowMax[r] = fmaxf(rowMax[r], __shfl_xor_sync(0xffffffffu, rowMax[r], 1));
      rowMax[r] = fmaxf(rowMax[r], __shfl_xor_sync(0xffffffffu, rowMax[r], 2));
      const float mNew = fmaxf(m[r], rowMax[r]);
      const float mc = mNew == -INFINITY ? 0.0f : mNew * c; // no inf - inf
      const float corr = fastExp2(fmaf(m[r], c, -mc));
      l[r] *= corr;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= corr;
        o[n][2 * r + 1] *= corr;
      }
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        s[n][2 * r] = fastExp2(fmaf(s[n][2 * r], c, -mc));
        s[n][2 * r + 1] = fastExp2(fmaf(s[n][2 * r + 1], c, -mc));
        l[r] += s[n][2 * r] + s[n][2 * r + 1];
      }
      m[r] = mNew;
    }
    gemmPN<D / 8, 4, kSmemStride<D>>(o, s, sV + buf * kTileElems<D>);
    __syncthreads(); // the buffer is refilled by the next iteration
  }
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f; // no key seen (cp): out 0, lse -inf
    const int row = rowLo + 8 * r;
    if (lane % 4 == 0 && row < p.seq)
      p.lseW[(int64_t(b) * p.heads + h) * p.seq + row] =
          m[r] * p.scale + logf(l[r]);
  }
  storeRows<D>(p.outW + (int64_t(b) * p.seq * p.heads + h) * D, qStride,
               q0 + warp * 16, p.seq, o, inv[0], inv[1]);
}

/// delta[b, h, i] = sum_d dout * out - dlse[b, h, i] (fp32; dlse where
/// given: ring attention's block), one warp per query row.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attentionDeltaKernel(Args p, int64_t rows) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  const bf16 *o = p.out + row * D, *d = p.dout + row * D;
  float sum = 0.0f;
#pragma unroll
  for (int c = 2 * lane; c < D; c += 64) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(o + c));
    const float2 g = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(d + c));
    sum += a.x * g.x + a.y * g.y;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2)
    sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) { // rows are [b, s, h]; delta is [b, h, s]
    const int64_t h = row % p.heads, bs = row / p.heads;
    const int64_t i = bs % p.seq, b = bs / p.seq;
    const int64_t at = (b * p.heads + h) * p.seq + i;
    p.deltaW[at] = p.dlse ? sum - p.dlse[at] : sum;
  }
}

/// A query's lse in log2 units for the backward: +inf for a padded query or
/// one that saw no key (lse -inf, context parallelism), so that its
/// probabilities are exactly 0.
__device__ __forceinline__ float backwardLse(const float *lse, int64_t at, bool valid) {
  const float value = valid ? lse[at] : INFINITY;
  return value == -INFINITY ? INFINITY : value * kLog2e;
}

/// lse (backwardLse) and delta of 64 queries into shared memory.
__device__ __forceinline__ void loadRowStats(float *sLse, float *sDelta,
                                             const Args &p, int64_t off,
                                             int q0) {
  for (int i = threadIdx.x; i < kBlock; i += kThreads) {
    const bool valid = q0 + i < p.seq;
    sLse[i] = backwardLse(p.lse, off + q0 + i, valid);
    sDelta[i] = valid ? p.delta[off + q0 + i] : 0.0f;
  }
}

/// One block per (key block, batch x kv head): dk, dv of 64 keys summed over
/// the group's heads and every query block from the diagonal on (to the
/// last block whose first query's document holds one of the keys; under cp
/// from the first block placed at or after a key, skipping those that see
/// none of the keys), working on transposed tiles
/// (rows = keys) so each warp owns 16 keys' accumulators. Longer than ~80
/// lines for the same reason as the forward.
template <int D, int M>
__global__ void __launch_bounds__(kThreads)
    attentionDkDvKernel(Args p, const int32_t *pos) {
  constexpr bool kDocs = M == kDocuments, kCp = M == kContextParallel;
  __shared__ int sKeyPlaces[2]; // cp: the least and greatest place of the tile's keys
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *sK = reinterpret_cast<bf16 *>(smem);
  bf16 *sV = sK + kTileElems<D>;
  bf16 *sQ = sV + kTileElems<D>;   // two buffers
  bf16 *sDo = sQ + 2 * kTileElems<D>; // two buffers
  float *sLse = reinterpret_cast<float *>(sDo + 2 * kTileElems<D>);
  float *sDelta = sLse + 2 * kBlock;
  // The first key (documents) or place (cp) each query sees, with position ids.
  int *sStart = (kDocs || kCp) && pos ? reinterpret_cast<int *>(sDelta + 2 * kBlock) : nullptr;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.x / p.kvHeads, g = blockIdx.x % p.kvHeads;
  const int kBlockIdx = blockIdx.y, k0 = kBlockIdx * kBlock;
  int qFirst = kBlockIdx; // cp: set below
  int nQ = kDocs ? queryBlocksSeeing(pos, p.seq, b, kBlockIdx) : p.qBlocks - kBlockIdx;
  const int64_t qStride = int64_t(p.heads) * D, kvStride = int64_t(p.kvHeads) * D;
  const int64_t kvOff = (int64_t(b) * p.kvSeq * p.kvHeads + g) * D;
  const int64_t qBatch = int64_t(b) * p.seq * p.heads * D;
  int keyPlaces[2] = {0, 0}; // cp: keyLo's and keyLo + 8's places
  if constexpr (kCp) {
    if (threadIdx.x == 0)
      sKeyPlaces[0] = INT_MAX, sKeyPlaces[1] = INT_MIN;
    __syncthreads();
    if (int(threadIdx.x) < kBlock && k0 + int(threadIdx.x) < p.kvSeq) {
      const int place = keyPlace(p, k0 + threadIdx.x);
      atomicMin(&sKeyPlaces[0], place);
      atomicMax(&sKeyPlaces[1], place);
    }
    for (int r = 0; r < 2; ++r)
      keyPlaces[r] = keyPlace(p, k0 + warp * 16 + lane / 4 + 8 * r);
    __syncthreads();
    // Queries placed before the tile's first key see none of its keys, and
    // places rise along the query slice: the blocks before the one of the
    // first query placed at or after that key are neither loaded nor visited.
    qFirst = int(kernels::contextParallelRowsBefore(sKeyPlaces[0], p.seq, p.cpRank, p.cpSize)) /
             kBlock;
    nQ = p.qBlocks - qFirst;
  }
  const int items = p.group * nQ;
  // Work item w: head g * group + w / nQ, query block qFirst + w % nQ.
  auto loadItem = [&](int w, int buf) {
    const int h = g * p.group + w / nQ, q0 = (qFirst + w % nQ) * kBlock;
    loadTile<D>(sQ + buf * kTileElems<D>, p.q + qBatch + h * D, qStride, q0, p.seq);
    loadTile<D>(sDo + buf * kTileElems<D>, p.dout + qBatch + h * D, qStride, q0,
                p.seq);
    loadRowStats(sLse + buf * kBlock, sDelta + buf * kBlock, p,
                 (int64_t(b) * p.heads + h) * p.seq, q0);
    if (sStart)
      for (int i = threadIdx.x; i < kBlock; i += kThreads)
        sStart[buf * kBlock + i] = kCp ? queryWindow(p, pos, b, q0 + i).first
                                       : documentStart(pos, p.seq, b, q0 + i);
  };
  if (items > 0) { // else (cp) no query sees a key: dk, dv 0
    loadTile<D>(sK, p.k + kvOff, kvStride, k0, p.kvSeq);
    loadTile<D>(sV, p.v + kvOff, kvStride, k0, p.kvSeq);
    loadItem(0, 0);
    cpAsyncCommit();
  }

  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  const int keyLo = k0 + warp * 16 + lane / 4; // keys keyLo, keyLo + 8
  for (int w = 0; w < items; ++w) {
    const int buf = w % 2;
    if (w + 1 < items) {
      loadItem(w + 1, 1 - buf);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const bf16 *q = sQ + buf * kTileElems<D>, *dO = sDo + buf * kTileElems<D>;
    const float *lse = sLse + buf * kBlock, *delta = sDelta + buf * kBlock;
    const int *start = sStart ? sStart + buf * kBlock : nullptr;
    const int q0 = (qFirst + w % nQ) * kBlock;
    // Causal: the diagonal block is masked. Under cp, blocks whose windows
    // hold no key are skipped, and those whose every window holds every key
    // need no mask (windows' ends rise along the slice). The windows come
    // from pos, not sStart: a thread that skips may refill this buffer
    // before the others have read it.
    bool masked = w % nQ == 0;
    if constexpr (kCp) {
      const Window lo = queryWindow(p, pos, b, q0), hi = queryWindow(p, pos, b, q0 + kBlock - 1);
      if (hi.last < sKeyPlaces[0] || lo.first > sKeyPlaces[1])
        continue; // uniform over the block; the next load waits on the barrier above
      masked = lo.last < sKeyPlaces[1] || hi.first > sKeyPlaces[0];
    }
    float st[8][4] = {}, dpt[8][4] = {}; // S^T and dP^T: rows keys, cols queries
    gemmNT<8, D / 16, kSmemStride<D>>(st, sK + warp * 16 * kSmemStride<D>, q);
    gemmNT<8, D / 16, kSmemStride<D>>(dpt, sV + warp * 16 * kSmemStride<D>, dO);
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = n * 8 + 2 * (lane % 4) + (e & 1);
        bool hidden;
        if constexpr (kCp)
          hidden = masked && (keyPlaces[e / 2] > queryPlace(p, q0 + col) ||
                              (start && keyPlaces[e / 2] < start[col]));
        else
          hidden = (masked && keyLo + 8 * (e / 2) > q0 + col) ||
                   (kDocs && keyLo + 8 * (e / 2) < start[col]);
        const float prob =
            hidden ? 0.0f : fastExp2(fmaf(st[n][e], p.scaleLog2, -lse[col]));
        st[n][e] = prob;
        dpt[n][e] = prob * (dpt[n][e] - delta[col]); // dS^T
      }
    gemmPN<D / 8, 4, kSmemStride<D>>(dv, st, dO);
    gemmPN<D / 8, 4, kSmemStride<D>>(dk, dpt, q);
    __syncthreads(); // the buffer is refilled by the next iteration
  }
  storeRows<D>(p.dk + kvOff, kvStride, k0 + warp * 16, p.kvSeq, dk, p.scale,
               p.scale, p.addDk);
  storeRows<D>(p.dv + kvOff, kvStride, k0 + warp * 16, p.kvSeq, dv, 1.0f, 1.0f, p.addDv);
}

/// One block per (query block, batch x head): dq of 64 queries over key
/// tiles 0 (or the block's first document's) ..diagonal (CpKeyTiles' under
/// cp), recomputing P and dP (no atomics: deterministic).
template <int D, int M>
__global__ void __launch_bounds__(kThreads)
    attentionDqKernel(Args p, const int32_t *pos) {
  constexpr bool kDocs = M == kDocuments, kCp = M == kContextParallel;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16 *sQ = reinterpret_cast<bf16 *>(smem);
  bf16 *sDo = sQ + kTileElems<D>;
  bf16 *sK = sDo + kTileElems<D>; // two buffers each
  bf16 *sV = sK + 2 * kTileElems<D>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  const int qBlock = gridDim.y - 1 - blockIdx.y, q0 = qBlock * kBlock;
  const int64_t qStride = int64_t(p.heads) * D, kvStride = int64_t(p.kvHeads) * D;
  const int64_t qOff = (int64_t(b) * p.seq * p.heads + h) * D;
  const int64_t kvOff = (int64_t(b) * p.kvSeq * p.kvHeads + h / p.group) * D;
  const int kbFirst = kDocs ? documentStart(pos, p.seq, b, q0) / kBlock : 0;
  CpKeyTiles cpTiles;
  if constexpr (kCp)
    cpTiles = cpKeyTiles(p, pos, q0);
  const int kbLast = kCp ? cpTiles.last : qBlock;
  const int lastStart = kDocs ? documentStart(pos, p.seq, b, min(q0 + kBlock, p.seq) - 1) : 0;
  if (kbFirst <= kbLast) { // else (cp) no query sees a key: dq 0
    loadTile<D>(sQ, p.q + qOff, qStride, q0, p.seq);
    loadTile<D>(sDo, p.dout + qOff, qStride, q0, p.seq);
    loadTile<D>(sK, p.k + kvOff, kvStride, kbFirst * kBlock, p.kvSeq);
    loadTile<D>(sV, p.v + kvOff, kvStride, kbFirst * kBlock, p.kvSeq);
    cpAsyncCommit();
  }

  const int rowLo = q0 + warp * 16 + lane / 4; // rows rowLo, rowLo + 8
  float lse[2], delta[2];
  int start[2] = {0, 0};                 // documents: the first key seen
  Window window[2] = {}, lo = {}, hi = {}; // cp: as the forward
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowLo + 8 * r;
    const int64_t at = (int64_t(b) * p.heads + h) * p.seq + row;
    lse[r] = backwardLse(p.lse, at, row < p.seq);
    delta[r] = row < p.seq ? p.delta[at] : 0.0f;
    if constexpr (kDocs)
      start[r] = documentStart(pos, p.seq, b, row);
    else if constexpr (kCp)
      window[r] = queryWindow(p, pos, b, row);
  }
  if constexpr (kCp)
    lo = queryWindow(p, pos, b, q0), hi = queryWindow(p, pos, b, q0 + kBlock - 1);
  float dq[D / 8][4] = {};
  for (int kb = kbFirst; kb <= kbLast; ++kb) {
    const int buf = (kb - kbFirst) % 2;
    if (kb < kbLast) {
      loadTile<D>(sK + (1 - buf) * kTileElems<D>, p.k + kvOff, kvStride,
                  (kb + 1) * kBlock, p.kvSeq);
      loadTile<D>(sV + (1 - buf) * kTileElems<D>, p.v + kvOff, kvStride,
                  (kb + 1) * kBlock, p.kvSeq);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    bool masked = kb == qBlock;
    if constexpr (kCp) { // as the forward
      const TileView view =
          cpTiles.wholeKeys >= 0 ? cpTiles.countedView(kb) : keyTileView(p, lo, hi, kb);
      if (!view.seen)
        continue;
      masked = !view.whole;
    }
    const bf16 *kT = sK + buf * kTileElems<D>, *vT = sV + buf * kTileElems<D>;
    float s[8][4] = {}, dp[8][4] = {};
    gemmNT<8, D / 16, kSmemStride<D>>(s, sQ + warp * 16 * kSmemStride<D>, kT);
    gemmNT<8, D / 16, kSmemStride<D>>(dp, sDo + warp * 16 * kSmemStride<D>, vT);
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kb * kBlock + n * 8 + 2 * (lane % 4) + (e & 1);
        bool hidden;
        if constexpr (kCp)
          hidden = masked && (key >= p.kvSeq || !window[e / 2].sees(keyPlace(p, key)));
        else
          hidden = (masked && key > rowLo + 8 * (e / 2)) ||
                   (kDocs && kb * kBlock < lastStart && key < start[e / 2]);
        const float prob =
            hidden ? 0.0f : fastExp2(fmaf(s[n][e], p.scaleLog2, -lse[e / 2]));
        s[n][e] = prob * (dp[n][e] - delta[e / 2]); // dS
      }
    gemmPN<D / 8, 4, kSmemStride<D>>(dq, s, kT);
    __syncthreads();
  }
  storeRows<D>(p.dq + qOff, qStride, q0 + warp * 16, p.seq, dq, p.scale,
               p.scale, p.addDq);
}

Status invalid(const char *who, const std::string &what) {
  return Status::error(errorContext() + who + ": " + what);
}

bool aligned16(const void *ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

} // namespace

Status validateAttention(const char *who, const AttentionShape &s,
                         std::initializer_list<const void *> pointers) {
  if (s.batch < 0 || s.seq < 0 || s.heads <= 0 || s.kvHeads <= 0)
    return invalid(who, "expects batch, seq >= 0 and heads, kvHeads > 0, got " +
                            std::to_string(s.batch) + ", " +
                            std::to_string(s.seq) + ", " +
                            std::to_string(s.heads) + ", " +
                            std::to_string(s.kvHeads));
  if (s.heads % s.kvHeads != 0)
    return invalid(who, "expects heads (" + std::to_string(s.heads) +
                            ") divisible by kvHeads (" +
                            std::to_string(s.kvHeads) + ")");
  if (s.headDim != 64 && s.headDim != 128)
    return invalid(who, "expects headDim 64 or 128, got " +
                            std::to_string(s.headDim));
  // The softmax takes row maxima of raw scores: the scale must be positive.
  if (!(s.scale > 0.0f) || !std::isfinite(s.scale))
    return invalid(who, "expects a positive finite scale, got " +
                            std::to_string(s.scale));
  if (s.contextParallel() &&
      (s.seq % 2 != 0 || s.cpRank < 0 || s.cpRank >= s.cpSize || s.kvSource >= s.cpSize))
    return invalid(who, "context parallelism expects an even seq, cpRank and kvSource (or -1) "
                        "in [0, cpSize), got seq " + std::to_string(s.seq) + ", cpRank " +
                        std::to_string(s.cpRank) + ", kvSource " + std::to_string(s.kvSource) +
                        ", cpSize " + std::to_string(s.cpSize));
  if (s.kvSeq() > int64_t(kBlock) * 65535 || s.batch * s.heads > INT32_MAX)
    return invalid(who, "shape too large: batch " + std::to_string(s.batch) +
                            ", seq " + std::to_string(s.seq) + ", heads " +
                            std::to_string(s.heads));
  for (const void *ptr : pointers)
    if (!aligned16(ptr))
      return invalid(who, "expects 16-byte aligned bf16 tensors");
  return Status::ok();
}

namespace {

/// The shape fields of the kernels' arguments.
Args withShape(Args a, const AttentionShape &s) {
  a.seq = int(s.seq);
  a.heads = int(s.heads);
  a.kvHeads = int(s.kvHeads);
  a.group = int(s.heads / s.kvHeads);
  a.scale = s.scale;
  a.scaleLog2 = s.scale * kLog2e;
  a.kvSeq = int(s.kvSeq());
  a.qBlocks = int((s.seq + kBlock - 1) / kBlock);
  a.cpRank = int(s.cpRank);
  a.cpSize = int(s.cpSize);
  a.kvSource = int(s.kvSource);
  return a;
}

/// Raises a kernel's dynamic shared-memory limit (above 48 KB) and launches
/// it on (args, pos): the instance with documents when pos is not null, the
/// context-parallel one when args say so.
template <template <int, int> class KernelOf, int D>
Status launch(dim3 grid, size_t smemBytes, const Args &args, const int32_t *pos,
              cudaStream_t stream) {
  auto kernel = args.cpSize > 1 ? KernelOf<D, kContextParallel>::kernel
                : pos           ? KernelOf<D, kDocuments>::kernel
                                : KernelOf<D, kCausal>::kernel;
  MT_CUDA_CHECK(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smemBytes)));
  kernel<<<grid, kThreads, smemBytes, stream>>>(args, pos);
  return Status::ok();
}

// The kernel templates as template-template arguments of launch.
template <int D, int M> struct ForwardKernel {
  static constexpr auto kernel = attentionForwardKernel<D, M>;
};
template <int D, int M> struct DkDvKernel {
  static constexpr auto kernel = attentionDkDvKernel<D, M>;
};
template <int D, int M> struct DqKernel {
  static constexpr auto kernel = attentionDqKernel<D, M>;
};

template <int D> constexpr size_t kTileBytes = kTileElems<D> * sizeof(bf16);

template <int D>
Status forwardFor(const Args &args, const int32_t *pos, const AttentionShape &s,
                  cudaStream_t stream) {
  const dim3 grid(unsigned(s.batch * s.heads), unsigned((s.seq + kBlock - 1) / kBlock));
  MT_CUDA_RETURN_IF_ERROR(
      (launch<ForwardKernel, D>(grid, 5 * kTileBytes<D>, args, pos, stream)));
  MT_CUDA_CHECK_LAUNCH("attentionForwardKernel");
  return Status::ok();
}

template <int D>
Status backwardFor(const Args &args, const int32_t *pos, const AttentionShape &s,
                   cudaStream_t stream) {
  const int64_t rows = s.batch * s.seq * s.heads;
  attentionDeltaKernel<D><<<unsigned((rows + kWarps - 1) / kWarps), kThreads,
                            0, stream>>>(args, rows);
  MT_CUDA_CHECK_LAUNCH("attentionDeltaKernel");
  const unsigned blocks = unsigned((s.seq + kBlock - 1) / kBlock);
  const unsigned keyBlocks = unsigned((s.kvSeq() + kBlock - 1) / kBlock);
  // Two buffers of lse and delta, and of document starts with documents.
  const size_t dkdvBytes = 6 * kTileBytes<D> + 4 * kBlock * sizeof(float) +
                           (pos ? 2 * kBlock * sizeof(int) : 0);
  MT_CUDA_RETURN_IF_ERROR((launch<DkDvKernel, D>(dim3(unsigned(s.batch * s.kvHeads), keyBlocks),
                                                 dkdvBytes, args, pos, stream)));
  MT_CUDA_CHECK_LAUNCH("attentionDkDvKernel");
  MT_CUDA_RETURN_IF_ERROR((launch<DqKernel, D>(dim3(unsigned(s.batch * s.heads), blocks),
                                               6 * kTileBytes<D>, args, pos, stream)));
  MT_CUDA_CHECK_LAUNCH("attentionDqKernel");
  return Status::ok();
}

} // namespace

Status mtcAttentionForward(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, float *lse,
                           const AttentionShape &shape, cudaStream_t stream,
                           const int32_t *positionIds) {
  MT_CUDA_RETURN_IF_ERROR(
      validateAttention("attentionForward", shape, {q, k, v, out}));
  if (shape.batch == 0 || shape.seq == 0)
    return Status::ok();
  const Args args =
      withShape({.q = q, .k = k, .v = v, .outW = out, .lseW = lse}, shape);
  return shape.headDim == 64 ? forwardFor<64>(args, positionIds, shape, stream)
                             : forwardFor<128>(args, positionIds, shape, stream);
}

size_t attentionBackwardWorkspaceBytes(const AttentionShape &shape) {
  return size_t(plan::mtcAttentionWorkspaceBytes(shape.batch, shape.heads, shape.seq));
}

Status mtcAttentionBackward(const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *out,
                            const float *lse, const bf16 *dout, bf16 *dq, bf16 *dk, bf16 *dv,
                            void *workspace, const AttentionShape &shape, cudaStream_t stream,
                            const int32_t *positionIds, const AttentionGradExtras &extras) {
  MT_CUDA_RETURN_IF_ERROR(validateAttention("attentionBackward", shape,
                                   {q, k, v, out, dout, dq, dk, dv}));
  if (shape.batch == 0 || shape.seq == 0)
    return Status::ok();
  auto *delta = static_cast<float *>(workspace);
  const Args args = withShape({.q = q, .k = k, .v = v, .out = out,
                               .dout = dout, .lse = lse, .delta = delta,
                               .dq = dq, .dk = dk, .dv = dv, .deltaW = delta,
                               .dlse = extras.dlse, .addDq = extras.addDq,
                               .addDk = extras.addDk, .addDv = extras.addDv},
                              shape);
  return shape.headDim == 64 ? backwardFor<64>(args, positionIds, shape, stream)
                             : backwardFor<128>(args, positionIds, shape, stream);
}

} // namespace mt::cuda
