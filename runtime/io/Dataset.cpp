// Dataset: sample packing, the SplitMix64/Fisher-Yates epoch shuffle, and the
// step -> (micro-batch, dp rank) -> sample mapping.
#include "runtime/io/Dataset.h"

#include <cassert>
#include <limits>
#include <numeric>
#include <utility>

namespace mt::io {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

std::string str(int64_t v) { return std::to_string(v); }

Status checkCoord(const BatchLayout &layout, const BatchCoord &coord) {
  if (Status s = layout.validate(); !s)
    return s;
  if (coord.step < 0)
    return Status::error("step must be >= 0, got " + str(coord.step));
  if (coord.microIndex < 0 || coord.microIndex >= layout.numMicroBatches)
    return Status::error("micro-batch index " + str(coord.microIndex) +
                         " out of range [0, " + str(layout.numMicroBatches) +
                         ")");
  if (coord.dpRank < 0 || coord.dpRank >= layout.dpSize)
    return Status::error("dp rank " + str(coord.dpRank) + " out of range [0, " +
                         str(layout.dpSize) + ")");
  int64_t gb = layout.globalBatch();
  if (coord.step > (kInt64Max - gb) / gb)
    return Status::error("step " + str(coord.step) + " with global batch " +
                         str(gb) + " overflows the sample position");
  return Status::ok();
}

} // namespace

uint64_t SplitMix64::mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  return mix(state_);
}

uint64_t SplitMix64::below(uint64_t bound) {
  assert(bound > 0 && "below(0)");
  // 2^64 mod bound: draws under it would make low residues more likely.
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t x = next();
    if (x >= threshold)
      return x % bound;
  }
}

std::vector<int64_t> epochPermutation(int64_t numSamples, uint64_t seed,
                                      int64_t epoch) {
  assert(numSamples >= 0 && epoch >= 0);
  std::vector<int64_t> perm(static_cast<size_t>(numSamples));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  // Mixing the epoch before the xor keeps epochs' streams unrelated even for
  // adjacent seeds.
  SplitMix64 rng(SplitMix64::mix(seed ^ SplitMix64::mix(uint64_t(epoch))));
  for (int64_t i = numSamples - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(rng.below(uint64_t(i) + 1));
    std::swap(perm[size_t(i)], perm[size_t(j)]);
  }
  return perm;
}

Status BatchLayout::validate() const {
  if (microBatch <= 0)
    return Status::error("micro batch must be positive, got " +
                         str(microBatch));
  if (numMicroBatches <= 0)
    return Status::error("number of micro-batches must be positive, got " +
                         str(numMicroBatches));
  if (dpSize <= 0)
    return Status::error("dp size must be positive, got " + str(dpSize));
  if (numMicroBatches > kInt64Max / microBatch ||
      dpSize > kInt64Max / (microBatch * numMicroBatches))
    return Status::error("global batch " + str(microBatch) + " x " +
                         str(numMicroBatches) + " x " + str(dpSize) +
                         " overflows int64");
  return Status::ok();
}

int64_t globalPosition(const BatchLayout &layout, const BatchCoord &coord,
                       int64_t row) {
  return coord.step * layout.globalBatch() +
         (coord.microIndex * layout.dpSize + coord.dpRank) * layout.microBatch +
         row;
}

Expected<Dataset> Dataset::create(TokenFile file,
                                  const DatasetOptions &options) {
  const std::string &path = file.path();
  if (options.seqLen <= 0)
    return Status::error(path + ": sequence length must be positive, got " +
                         str(options.seqLen));
  // input_ids and labels are int32 on the device.
  if (file.vocabSize() > uint64_t(1) << 31)
    return Status::error(path + ": vocab size " +
                         std::to_string(file.vocabSize()) +
                         " does not fit int32 token ids");
  if (options.eosId && *options.eosId >= file.vocabSize())
    return Status::error(path + ": end-of-document id " +
                         std::to_string(*options.eosId) +
                         " is outside the file's vocab size " +
                         std::to_string(file.vocabSize()));
  uint64_t need = uint64_t(options.seqLen) + 1;
  if (file.size() < need)
    return Status::error(
        path + ": the file has " + std::to_string(file.size()) +
        " tokens, but one sample of sequence length " + str(options.seqLen) +
        " needs " + std::to_string(need) +
        " (the inputs plus one more token for the last label)");
  auto numSamples =
      static_cast<int64_t>((file.size() - 1) / uint64_t(options.seqLen));
  return Dataset(Data(std::move(file)), options, numSamples);
}

Expected<Dataset> Dataset::create(SftFile file, const DatasetOptions &options) {
  const std::string &path = file.path();
  if (file.seqLen() != options.seqLen)
    return Status::error(path + ": prepared for sequence length " + str(file.seqLen()) +
                         " (cutoff_len), but the plan's is " + str(options.seqLen) +
                         ": prepare the data with cutoff_len " + str(options.seqLen) +
                         " or compile the plan with --seq " + str(file.seqLen()));
  if (file.vocabSize() > uint64_t(1) << 31)
    return Status::error(path + ": vocab size " + std::to_string(file.vocabSize()) +
                         " does not fit int32 token ids");
  if (options.eosId)
    return Status::error(path + ": an end-of-document id (--eos-id) masks documents of a "
                                "token file; prepared SFT data carries its own loss mask");
  int64_t rows = file.rows();
  return Dataset(Data(std::move(file)), options, rows);
}

uint64_t Dataset::tokenCount() const {
  if (prepared())
    return uint64_t(sftFile().rows()) * uint64_t(sftFile().seqLen() + 1);
  return file().size();
}

uint64_t Dataset::fingerprint() const {
  return prepared() ? sampledFingerprint(sftFile()) : sampledFingerprint(file());
}

Expected<Dataset> Dataset::open(const std::string &path, const DatasetOptions &options,
                                uint64_t modelVocab) {
  if (hasSftMagic(path)) {
    Expected<SftFile> sft = openSftFile(path);
    if (!sft)
      return sft.status();
    if (modelVocab && sft->vocabSize() > modelVocab)
      return Status::error(path + ": the tokenizer vocab size " +
                           std::to_string(sft->vocabSize()) + " of the prepared data exceeds "
                           "the model's vocab size " + std::to_string(modelVocab));
    return create(std::move(*sft), options);
  }
  Expected<TokenFile> file = openTokenFile(path);
  if (!file)
    return file.status();
  if (modelVocab && options.checkEveryId)
    if (Status s = checkTokenIds(*file, modelVocab); !s)
      return s;
  return create(std::move(*file), options);
}

const std::vector<int64_t> &Dataset::permutation(int64_t epoch) const {
  for (const CachedEpoch &c : cache_)
    if (c.epoch == epoch)
      return c.order;
  CachedEpoch &slot = cache_[cacheNext_];
  cacheNext_ = 1 - cacheNext_;
  slot.epoch = epoch;
  slot.order = epochPermutation(numSamples_, options_.seed, epoch);
  return slot.order;
}

int64_t Dataset::sampleAt(int64_t position) const {
  assert(position >= 0 && "negative stream position");
  int64_t epoch = position / numSamples_;
  int64_t index = position % numSamples_;
  if (!options_.shuffle)
    return index;
  return permutation(epoch)[size_t(index)];
}

void Dataset::fillSample(int64_t sample, std::span<int32_t> inputIds,
                         std::span<int32_t> labels, std::span<float> lossMask,
                         std::span<int32_t> positionIds) const {
  const auto seq = size_t(options_.seqLen);
  assert(sample >= 0 && sample < numSamples_);
  assert(inputIds.size() == seq && labels.size() == seq &&
         lossMask.size() == seq);
  if (prepared()) {
    // Input t is id t; it predicts id t + 1 where labels[t + 1] is not
    // ignored (Hugging Face's shift). Ignored labels become the padding id,
    // in range for the loss kernels, with mask 0.
    const SftFile &f = sftFile();
    std::span<const uint32_t> ids = f.inputIds(sample);
    std::span<const int32_t> rowLabels = f.labels(sample);
    for (size_t t = 0; t < seq; ++t) {
      int32_t next = rowLabels[t + 1];
      inputIds[t] = static_cast<int32_t>(ids[t]);
      labels[t] = next == kIgnoreIndex ? static_cast<int32_t>(f.padId()) : next;
      lossMask[t] = next == kIgnoreIndex ? 0.0f : 1.0f;
    }
    if (positionIds.empty() || !f.hasPositionIds())
      return;
    // Documents: the last token of one predicts nothing (it cannot see the
    // next document, whose first label it would be trained on otherwise).
    std::span<const uint32_t> pos = f.positionIds(sample);
    for (size_t t = 0; t < seq; ++t) {
      positionIds[t] = static_cast<int32_t>(pos[t]);
      if (pos[t + 1] == 0)
        lossMask[t] = 0.0f;
    }
    return;
  }
  const TokenFile &tokens = file();
  uint64_t base = uint64_t(sample) * seq;
  uint32_t next = tokens.at(base);
  for (size_t t = 0; t < seq; ++t) {
    uint32_t in = next;
    next = tokens.at(base + t + 1);
    inputIds[t] = static_cast<int32_t>(in);
    labels[t] = static_cast<int32_t>(next);
    lossMask[t] = options_.eosId && in == *options_.eosId ? 0.0f : 1.0f;
  }
}

Status Dataset::fillBatch(const BatchLayout &layout, const BatchCoord &coord,
                          std::span<int32_t> inputIds,
                          std::span<int32_t> labels, std::span<float> lossMask,
                          std::span<int32_t> positionIds) const {
  if (Status s = checkCoord(layout, coord); !s)
    return s;
  const auto seq = size_t(options_.seqLen);
  const size_t want = size_t(layout.microBatch) * seq;
  if (positionIds.empty() == hasPositionIds())
    return Status::error(hasPositionIds()
                             ? "the data packs documents with position ids "
                               "(neat_packing), but no position_ids buffer was given"
                             : "a position_ids buffer was given, but the data has no "
                               "position ids (prepare it with neat_packing)");
  if (!positionIds.empty() && positionIds.size() != want)
    return Status::error("the position_ids buffer holds " + std::to_string(positionIds.size()) +
                         " elements, expected " + std::to_string(want));
  if (inputIds.size() != want || labels.size() != want ||
      lossMask.size() != want)
    return Status::error(
        "batch buffers hold " + std::to_string(inputIds.size()) + " / " +
        std::to_string(labels.size()) + " / " +
        std::to_string(lossMask.size()) +
        " elements (input_ids / labels / loss_mask), expected " +
        std::to_string(want) + " = micro batch " + str(layout.microBatch) +
        " x sequence length " + str(options_.seqLen));
  for (int64_t row = 0; row < layout.microBatch; ++row) {
    int64_t sample = sampleAt(globalPosition(layout, coord, row));
    size_t at = size_t(row) * seq;
    fillSample(sample, inputIds.subspan(at, seq), labels.subspan(at, seq),
               lossMask.subspan(at, seq),
               positionIds.empty() ? positionIds : positionIds.subspan(at, seq));
  }
  return Status::ok();
}

Expected<Batch> Dataset::batch(const BatchLayout &layout,
                               const BatchCoord &coord) const {
  if (Status s = checkCoord(layout, coord); !s)
    return s;
  Batch b;
  b.rows = layout.microBatch;
  b.seqLen = options_.seqLen;
  size_t n = size_t(b.rows) * size_t(b.seqLen);
  b.inputIds.resize(n);
  b.labels.resize(n);
  b.lossMask.resize(n);
  b.positionIds.resize(hasPositionIds() ? n : 0);
  if (Status s = fillBatch(layout, coord, b.inputIds, b.labels, b.lossMask, b.positionIds); !s)
    return s;
  for (int64_t row = 0; row < b.rows; ++row) {
    b.positions.push_back(globalPosition(layout, coord, row));
    b.samples.push_back(sampleAt(b.positions.back()));
  }
  return b;
}

} // namespace mt::io
