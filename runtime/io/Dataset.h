// Dataset: packs a token file into fixed-length causal-LM samples (or reads
// the rows of a prepared SFT file), shuffles them per epoch with a specified
// PRNG, and deals each global step's samples to data-parallel ranks and
// micro-batches.
#ifndef MT_RUNTIME_IO_DATASET_H
#define MT_RUNTIME_IO_DATASET_H

#include "runtime/io/SftFile.h"
#include "runtime/io/TokenFile.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace mt::io {

/// SplitMix64 (Steele, Lea and Flood, 2014), written out so that shuffles are
/// bit-identical on every machine and standard library (std::shuffle and
/// std::uniform_int_distribution are not). With all arithmetic mod 2^64:
///   next():  state += 0x9E3779B97F4A7C15; return mix(state)
///   mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
///            z = (z ^ (z >> 27)) * 0x94D049BB133111EB
///            return z ^ (z >> 31)
///   below(b): t = 2^64 mod b; draw x = next() until x >= t; return x mod b
/// (rejection makes below() exactly uniform).
class SplitMix64 {
public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t next();
  /// Uniform in [0, bound); bound must be > 0.
  uint64_t below(uint64_t bound);
  static uint64_t mix(uint64_t z);

private:
  uint64_t state_;
};

/// The sample order of one epoch: a permutation of [0, numSamples) by
/// Fisher-Yates, generator seeded with mix(seed ^ mix(epoch)):
///   perm = [0, 1, ..., n-1]
///   for i = n-1 down to 1: j = rng.below(i + 1); swap(perm[i], perm[j])
std::vector<int64_t> epochPermutation(int64_t numSamples, uint64_t seed,
                                      int64_t epoch);

struct DatasetOptions {
  /// Tokens per sample (the model's sequence length S).
  int64_t seqLen = 0;
  uint64_t seed = 0;
  /// false: every epoch reads the samples in file order (evaluation).
  bool shuffle = true;
  /// End-of-document token (token files only). Where an input token is this
  /// id the loss mask is 0, so the model is never trained to predict the
  /// first token of the next document from the previous one.
  std::optional<uint32_t> eosId;
  /// open(): a token file's every id against the model's vocabulary (a
  /// pass over the file); false leaves that to the run's ranks (a
  /// launcher's check before it starts them).
  bool checkEveryId = true;
};

/// How one global (optimizer) step is split. A step consumes globalBatch()
/// consecutive positions of the sample stream; inside the step, the rows of
/// micro-batch m of dp rank r are the positions
///   step * globalBatch() + (m * dpSize + r) * microBatch + row.
/// So a run with dp ranks D and M micro-batches sees exactly the samples, in
/// the same global positions, of a run with 1 rank and D * M micro-batches:
/// (m, r) there is micro-batch m * D + r here.
struct BatchLayout {
  int64_t microBatch = 1;      // rows per micro-batch on one rank (B)
  int64_t numMicroBatches = 1; // gradient-accumulation steps
  int64_t dpSize = 1;
  int64_t globalBatch() const { return microBatch * numMicroBatches * dpSize; }
  /// All sizes positive; the message quotes the offending value.
  Status validate() const;
};

/// Which micro-batch of which rank at which step.
struct BatchCoord {
  int64_t step = 0;
  int64_t microIndex = 0; // in [0, numMicroBatches)
  int64_t dpRank = 0;     // in [0, dpSize)
};

/// Position in the sample stream (epoch e covers positions
/// [e * numSamples, (e + 1) * numSamples)) of row `row` of `coord`.
int64_t globalPosition(const BatchLayout &layout, const BatchCoord &coord,
                       int64_t row);

/// One rank's micro-batch, row-major [rows, seqLen].
struct Batch {
  int64_t rows = 0;
  int64_t seqLen = 0;
  std::vector<int32_t> inputIds;
  std::vector<int32_t> labels;    // inputIds shifted left by one token
  std::vector<float> lossMask;    // 1, or 0 where the input token is EOS
  std::vector<int32_t> positionIds; // with Dataset::hasPositionIds() only
  std::vector<int64_t> positions; // global stream position of each row
  std::vector<int64_t> samples;   // sample index of each row
};

/// Samples of a token stream for next-token prediction: sample i covers
/// tokens [i * S, i * S + S + 1); its inputs are the first S of them, its
/// labels the last S. There are floor((count - 1) / S) samples; the tail that
/// does not fill one is never read. A prepared SFT file (SftFile.h) gives one
/// sample per row instead, with the loss mask its labels give. Not
/// thread-safe (the current epoch's permutation is cached); use one Dataset
/// per loader thread.
class Dataset {
public:
  /// Validates `options` against `file` (seqLen, eosId in the file's vocab,
  /// at least one sample).
  static Expected<Dataset> create(TokenFile file,
                                  const DatasetOptions &options);
  /// Validates that the file's sequence length is options.seqLen and that
  /// no eosId is given (the file carries its loss mask).
  static Expected<Dataset> create(SftFile file, const DatasetOptions &options);
  /// Opens a token file, or a prepared SFT file (by its magic). With
  /// `modelVocab` > 0, the data must fit the model's vocabulary: a token
  /// file's ids (checkTokenIds) and a prepared file's tokenizer vocab size
  /// (its ids were checked against it on open).
  static Expected<Dataset> open(const std::string &path, const DatasetOptions &options,
                                uint64_t modelVocab = 0);

  int64_t numSamples() const { return numSamples_; }
  int64_t seqLen() const { return options_.seqLen; }
  /// Whether the samples are rows of a prepared SFT file.
  bool prepared() const { return std::holds_alternative<SftFile>(data_); }
  /// The token file; only when !prepared().
  const TokenFile &file() const { return std::get<TokenFile>(data_); }
  /// The prepared SFT file; only when prepared().
  const SftFile &sftFile() const { return std::get<SftFile>(data_); }
  /// Whether rows pack documents with position ids (neat_packing data): a
  /// plan with a position_ids input needs them, one without refuses them.
  bool hasPositionIds() const { return prepared() && sftFile().hasPositionIds(); }
  /// Tokens in the file (rows * (S + 1) for a prepared file) and its
  /// sampledFingerprint: what identifies the data of a run.
  uint64_t tokenCount() const;
  uint64_t fingerprint() const;

  /// The sample index at stream position `position` (>= 0): epoch
  /// position / numSamples, entry position % numSamples of its permutation.
  int64_t sampleAt(int64_t position) const;

  /// Writes sample `sample`'s S inputs, labels and mask into the spans (each
  /// of size seqLen), and with hasPositionIds() its S position ids (when
  /// `positionIds` is not empty); there the mask is also 0 at the last
  /// token of each document. Ids are not range-checked: run checkTokenIds
  /// first.
  void fillSample(int64_t sample, std::span<int32_t> inputIds,
                  std::span<int32_t> labels, std::span<float> lossMask,
                  std::span<int32_t> positionIds = {}) const;

  /// Fills caller buffers (e.g. pinned host memory), each of
  /// layout.microBatch * seqLen elements, with `coord`'s micro-batch;
  /// `positionIds` only (and then) when hasPositionIds().
  Status fillBatch(const BatchLayout &layout, const BatchCoord &coord,
                   std::span<int32_t> inputIds, std::span<int32_t> labels,
                   std::span<float> lossMask, std::span<int32_t> positionIds = {}) const;

  /// The same micro-batch in fresh buffers, with its positions and samples.
  Expected<Batch> batch(const BatchLayout &layout,
                        const BatchCoord &coord) const;

private:
  using Data = std::variant<TokenFile, SftFile>;
  Dataset(Data data, const DatasetOptions &options, int64_t numSamples)
      : data_(std::move(data)), options_(options), numSamples_(numSamples) {}
  const std::vector<int64_t> &permutation(int64_t epoch) const;

  Data data_;
  DatasetOptions options_;
  int64_t numSamples_;
  // The two most recent epochs: one step may straddle an epoch boundary.
  struct CachedEpoch {
    int64_t epoch = -1;
    std::vector<int64_t> order;
  };
  mutable CachedEpoch cache_[2];
  mutable int cacheNext_ = 0;
};

} // namespace mt::io

#endif // MT_RUNTIME_IO_DATASET_H
