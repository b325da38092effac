// Dataset: the pinned PRNG and shuffle, sample packing and masks, epoch
// rollover, and dp sharding against the single-rank run.
#include "runtime/io/Dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include <unistd.h>

namespace mt::io {
namespace {

namespace fs = std::filesystem;

// --- The PRNG and the shuffle, pinned to their written definitions. ---

TEST(SplitMix64, MatchesTheReferenceSequence) {
  // Outputs of the reference splitmix64.c for seed 1234567.
  SplitMix64 rng(1234567);
  const uint64_t want[] = {6457827717110365317ULL, 3203168211198807973ULL,
                           9817491932198370423ULL, 4593380528125082431ULL,
                           16408922859458223821ULL};
  for (uint64_t w : want)
    EXPECT_EQ(rng.next(), w);
  EXPECT_EQ(SplitMix64::mix(0), 0u);
  EXPECT_EQ(SplitMix64::mix(1), 6238072747940578789ULL);
}

TEST(SplitMix64, BelowStaysInRange) {
  SplitMix64 rng(9);
  for (uint64_t bound : {1ULL, 2ULL, 3ULL, 10ULL, 1ULL << 63, ~0ULL})
    for (int i = 0; i < 100; ++i)
      EXPECT_LT(rng.below(bound), bound);
}

TEST(EpochPermutation, FirstSwapsFollowTheDefinition) {
  // n = 10, seed 42, epoch 0: state = mix(42 ^ mix(0)) = mix(42).
  uint64_t state = SplitMix64::mix(42);
  EXPECT_EQ(state, 12058926934050108962ULL);
  SplitMix64 rng(state);
  // 2^64 mod 10 = 6, so any draw >= 6 is kept: j = draw mod (i + 1).
  uint64_t draw9 = rng.next(), draw8 = rng.next();
  EXPECT_EQ(draw9, 10996452266160306281ULL);
  EXPECT_EQ(draw9 % 10, 1u); // i = 9: swap perm[9] and perm[1]
  EXPECT_EQ(draw8, 2958219263312191191ULL);
  EXPECT_EQ(draw8 % 9, 3u); // i = 8: swap perm[8] and perm[3]
  std::vector<int64_t> perm = epochPermutation(10, 42, 0);
  EXPECT_EQ(perm[9], 1);
  EXPECT_EQ(perm[8], 3);
}

TEST(EpochPermutation, FixedSeedGivesAFixedOrder) {
  EXPECT_EQ(epochPermutation(10, 42, 0),
            (std::vector<int64_t>{4, 7, 2, 9, 0, 6, 8, 5, 3, 1}));
  EXPECT_EQ(epochPermutation(10, 42, 1),
            (std::vector<int64_t>{9, 7, 6, 2, 1, 8, 4, 3, 5, 0}));
  EXPECT_EQ(epochPermutation(10, 43, 0),
            (std::vector<int64_t>{4, 8, 7, 5, 0, 6, 1, 3, 2, 9}));
  std::vector<int64_t> big = epochPermutation(1000, 7, 0);
  EXPECT_EQ(std::vector<int64_t>(big.begin(), big.begin() + 8),
            (std::vector<int64_t>{244, 185, 419, 731, 965, 557, 913, 699}));
}

TEST(EpochPermutation, SeedsAndEpochsGiveDifferentOrders) {
  std::vector<int64_t> base = epochPermutation(200, 1, 0);
  EXPECT_NE(base, epochPermutation(200, 2, 0));
  EXPECT_NE(base, epochPermutation(200, 1, 1));
  EXPECT_EQ(base, epochPermutation(200, 1, 0));
}

TEST(EpochPermutation, EveryEpochIsAPermutation) {
  std::vector<int64_t> identity(97);
  std::iota(identity.begin(), identity.end(), int64_t(0));
  for (int64_t epoch = 0; epoch < 6; ++epoch) {
    std::vector<int64_t> p = epochPermutation(97, 123, epoch);
    EXPECT_NE(p, identity) << "epoch " << epoch;
    std::sort(p.begin(), p.end());
    EXPECT_EQ(p, identity) << "epoch " << epoch;
  }
  EXPECT_TRUE(epochPermutation(0, 1, 0).empty());
  EXPECT_EQ(epochPermutation(1, 1, 0), std::vector<int64_t>{0});
}

// --- Datasets over token files. ---

class DatasetTest : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("mt-dataset-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// A token file holding `tokens`, opened as a dataset.
  Expected<Dataset> make(const std::vector<uint32_t> &tokens,
                         DatasetOptions options, uint64_t vocab = 1000) {
    // Built with append: GCC 12 at -O3 warns (-Wrestrict) on "d" + string.
    std::string name = std::to_string(counter_++);
    name += ".bin";
    std::string p = dir_ / name;
    if (Status s = writeTokenFile(p, tokens, vocab); !s)
      return s;
    return Dataset::open(p, options);
  }
  /// tokens[i] = i (mod vocab 1000): a token's value names its position.
  static std::vector<uint32_t> counting(size_t n) {
    std::vector<uint32_t> t(n);
    for (size_t i = 0; i < n; ++i)
      t[i] = uint32_t(i % 1000);
    return t;
  }

  fs::path dir_;
  int counter_ = 0;
};

TEST_F(DatasetTest, LabelsAreInputsShiftedByOne) {
  DatasetOptions o;
  o.seqLen = 4;
  o.shuffle = false;
  Expected<Dataset> d = make(counting(23), o);
  ASSERT_TRUE(d) << d.message();
  ASSERT_EQ(d->numSamples(), 5); // floor((23 - 1) / 4)
  std::vector<int32_t> in(4), lab(4);
  std::vector<float> mask(4);
  for (int64_t i = 0; i < 5; ++i) {
    d->fillSample(i, in, lab, mask);
    for (int32_t t = 0; t < 4; ++t) {
      EXPECT_EQ(in[size_t(t)], i * 4 + t);
      EXPECT_EQ(lab[size_t(t)], i * 4 + t + 1);
      EXPECT_EQ(mask[size_t(t)], 1.0f);
    }
  }
  // Sample 4 ends with label token 20: tokens 21 and 22 are never read.
  EXPECT_EQ(lab[3], 20);
}

TEST_F(DatasetTest, SampleCountIsFloorOfCountMinusOneOverSeq) {
  DatasetOptions o;
  o.seqLen = 4;
  for (auto [count, samples] : std::vector<std::pair<size_t, int64_t>>{
           {5, 1}, {8, 1}, {9, 2}, {20, 4}, {21, 5}}) {
    Expected<Dataset> d = make(counting(count), o);
    ASSERT_TRUE(d) << d.message();
    EXPECT_EQ(d->numSamples(), samples) << count << " tokens";
  }
}

TEST_F(DatasetTest, RejectsAFileShorterThanOneSample) {
  DatasetOptions o;
  o.seqLen = 4;
  Expected<Dataset> d = make(counting(4), o);
  ASSERT_FALSE(d);
  EXPECT_NE(
      d.message().find("the file has 4 tokens, but one sample of sequence "
                       "length 4 needs 5"),
      std::string::npos)
      << d.message();
}

TEST_F(DatasetTest, RejectsBadOptionsWithTheirValues) {
  DatasetOptions o;
  o.seqLen = 0;
  Expected<Dataset> d = make(counting(10), o);
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("sequence length must be positive, got 0"),
            std::string::npos)
      << d.message();
  o.seqLen = 2;
  o.eosId = 256;
  d = make(counting(10), o, 256);
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("end-of-document id 256 is outside the file's "
                             "vocab size 256"),
            std::string::npos)
      << d.message();
  EXPECT_FALSE(Dataset::open((dir_ / "absent.bin").string(), o));
}

TEST_F(DatasetTest, EosMasksOnlyPositionsWhoseInputIsEos) {
  DatasetOptions o;
  o.seqLen = 6;
  o.shuffle = false;
  o.eosId = 0;
  // Two documents: "5 6 7 0" then "8 9 0", then "4".
  Expected<Dataset> d = make({5, 6, 7, 0, 8, 9, 0, 4}, o);
  ASSERT_TRUE(d) << d.message();
  std::vector<int32_t> in(6), lab(6);
  std::vector<float> mask(6);
  d->fillSample(0, in, lab, mask);
  EXPECT_EQ(in, (std::vector<int32_t>{5, 6, 7, 0, 8, 9}));
  EXPECT_EQ(lab, (std::vector<int32_t>{6, 7, 0, 8, 9, 0}));
  // Predicting EOS is trained; predicting "8" from the EOS is not.
  EXPECT_EQ(mask, (std::vector<float>{1, 1, 1, 0, 1, 1}));
}

TEST_F(DatasetTest, ShuffledSamplesFollowTheEpochPermutations) {
  DatasetOptions o;
  o.seqLen = 3;
  o.seed = 42;
  Expected<Dataset> d = make(counting(31), o); // 10 samples
  ASSERT_TRUE(d) << d.message();
  ASSERT_EQ(d->numSamples(), 10);
  std::vector<int64_t> e0 = epochPermutation(10, 42, 0);
  std::vector<int64_t> e1 = epochPermutation(10, 42, 1);
  EXPECT_EQ(e0[0], 4);
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(d->sampleAt(i), e0[size_t(i)]);
    EXPECT_EQ(d->sampleAt(10 + i), e1[size_t(i)]);
  }
  // Going back to an epoch that fell out of the cache recomputes it.
  EXPECT_EQ(d->sampleAt(25), epochPermutation(10, 42, 2)[5]);
  EXPECT_EQ(d->sampleAt(3), e0[3]);
}

TEST_F(DatasetTest, StepsRollOverIntoTheNextEpoch) {
  DatasetOptions o;
  o.seqLen = 3;
  o.seed = 42;
  Expected<Dataset> d = make(counting(31), o); // 10 samples
  ASSERT_TRUE(d) << d.message();
  BatchLayout layout{.microBatch = 6, .numMicroBatches = 1, .dpSize = 1};
  Expected<Batch> b = d->batch(layout, {.step = 1});
  ASSERT_TRUE(b) << b.message();
  std::vector<int64_t> e0 = epochPermutation(10, 42, 0);
  std::vector<int64_t> e1 = epochPermutation(10, 42, 1);
  EXPECT_EQ(b->positions, (std::vector<int64_t>{6, 7, 8, 9, 10, 11}));
  EXPECT_EQ(b->samples,
            (std::vector<int64_t>{e0[6], e0[7], e0[8], e0[9], e1[0], e1[1]}));
  // Each row holds its sample's tokens: sample s starts with token 3 s.
  for (int64_t r = 0; r < 6; ++r) {
    EXPECT_EQ(b->inputIds[size_t(r * 3)], b->samples[size_t(r)] * 3);
    EXPECT_EQ(b->labels[size_t(r * 3 + 2)], b->samples[size_t(r)] * 3 + 3);
  }
}

/// Every row of one global step under `layout`: global position -> row
/// tokens (inputs then labels). Fails the test on a duplicate position.
std::map<int64_t, std::vector<int32_t>>
collectStep(const Dataset &d, const BatchLayout &layout, int64_t step) {
  std::map<int64_t, std::vector<int32_t>> rows;
  for (int64_t m = 0; m < layout.numMicroBatches; ++m)
    for (int64_t r = 0; r < layout.dpSize; ++r) {
      Expected<Batch> b = d.batch(layout, {step, m, r});
      EXPECT_TRUE(b) << b.message();
      if (!b)
        return {};
      for (int64_t row = 0; row < b->rows; ++row) {
        auto at = b->inputIds.begin() + row * b->seqLen;
        std::vector<int32_t> tokens(at, at + b->seqLen);
        auto lab = b->labels.begin() + row * b->seqLen;
        tokens.insert(tokens.end(), lab, lab + b->seqLen);
        bool fresh = rows.emplace(b->positions[size_t(row)], tokens).second;
        EXPECT_TRUE(fresh) << "position " << b->positions[size_t(row)]
                           << " dealt twice";
      }
    }
  return rows;
}

TEST_F(DatasetTest, DataParallelStepsSeeTheSingleRankStepsSamples) {
  DatasetOptions o;
  o.seqLen = 5;
  o.seed = 7;
  Expected<Dataset> d = make(counting(5 * 37 + 1), o); // 37 samples
  ASSERT_TRUE(d) << d.message();
  const BatchLayout single{.microBatch = 2, .numMicroBatches = 12, .dpSize = 1};
  const BatchLayout layouts[] = {
      {.microBatch = 2, .numMicroBatches = 6, .dpSize = 2},
      {.microBatch = 2, .numMicroBatches = 3, .dpSize = 4},
      {.microBatch = 4, .numMicroBatches = 3, .dpSize = 2},
      {.microBatch = 1, .numMicroBatches = 4, .dpSize = 6},
  };
  // 24 samples a step over 37 samples: steps 1 and 3 straddle epochs.
  for (int64_t step = 0; step < 5; ++step) {
    auto want = collectStep(*d, single, step);
    ASSERT_EQ(want.size(), 24u);
    EXPECT_EQ(want.begin()->first, step * 24);
    EXPECT_EQ(want.rbegin()->first, step * 24 + 23);
    for (const BatchLayout &l : layouts)
      EXPECT_EQ(collectStep(*d, l, step), want)
          << "step " << step << ", micro batch " << l.microBatch << " x "
          << l.numMicroBatches << " micro-batches x dp " << l.dpSize;
  }
}

TEST_F(DatasetTest, RankMicroBatchIsTheMatchingSingleRankMicroBatch) {
  DatasetOptions o;
  o.seqLen = 4;
  o.seed = 3;
  Expected<Dataset> d = make(counting(4 * 50 + 1), o);
  ASSERT_TRUE(d) << d.message();
  const BatchLayout dp2{.microBatch = 3, .numMicroBatches = 2, .dpSize = 2};
  const BatchLayout dp1{.microBatch = 3, .numMicroBatches = 4, .dpSize = 1};
  for (int64_t step = 0; step < 6; ++step)
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t r = 0; r < 2; ++r) {
        Expected<Batch> a = d->batch(dp2, {step, m, r});
        Expected<Batch> b = d->batch(dp1, {step, m * 2 + r, 0});
        ASSERT_TRUE(a && b);
        EXPECT_EQ(a->positions, b->positions);
        EXPECT_EQ(a->samples, b->samples);
        EXPECT_EQ(a->inputIds, b->inputIds);
        EXPECT_EQ(a->labels, b->labels);
      }
}

TEST_F(DatasetTest, FillBatchMatchesBatchAndChecksItsArguments) {
  DatasetOptions o;
  o.seqLen = 4;
  o.seed = 11;
  Expected<Dataset> d = make(counting(101), o);
  ASSERT_TRUE(d) << d.message();
  BatchLayout l{.microBatch = 2, .numMicroBatches = 2, .dpSize = 2};
  std::vector<int32_t> in(8), lab(8);
  std::vector<float> mask(8);
  ASSERT_TRUE(d->fillBatch(l, {3, 1, 1}, in, lab, mask));
  Expected<Batch> b = d->batch(l, {3, 1, 1});
  ASSERT_TRUE(b) << b.message();
  EXPECT_EQ(in, b->inputIds);
  EXPECT_EQ(lab, b->labels);
  EXPECT_EQ(mask, b->lossMask);
  // Same seed, new Dataset: the same batch.
  Expected<Dataset> again = Dataset::open(d->file().path(), o);
  ASSERT_TRUE(again) << again.message();
  EXPECT_EQ(again->batch(l, {3, 1, 1})->inputIds, b->inputIds);

  auto err = [&](const BatchLayout &layout, const BatchCoord &c) {
    Status s = d->fillBatch(layout, c, in, lab, mask);
    return s ? std::string() : s.message();
  };
  EXPECT_EQ(err(l, {0, 0, 2}), "dp rank 2 out of range [0, 2)");
  EXPECT_EQ(err(l, {0, 2, 0}), "micro-batch index 2 out of range [0, 2)");
  EXPECT_EQ(err(l, {-1, 0, 0}), "step must be >= 0, got -1");
  EXPECT_EQ(err({.microBatch = 0}, {}), "micro batch must be positive, got 0");
  EXPECT_EQ(err({.microBatch = 1, .numMicroBatches = 1, .dpSize = 0}, {}),
            "dp size must be positive, got 0");
  std::vector<int32_t> small(7);
  Status s = d->fillBatch(l, {}, small, lab, mask);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("expected 8 = micro batch 2 x sequence length 4"),
            std::string::npos)
      << s.message();
}

TEST_F(DatasetTest, DemoCorpusPacksIntoSamples) {
  // The shipped corpus of this source tree (its path comes from CMake).
  fs::path corpus = MT_DEMO_CORPUS;
  std::ifstream in(corpus, std::ios::binary);
  ASSERT_TRUE(in) << "cannot read " << corpus;
  std::string text{std::istreambuf_iterator<char>(in), {}};
  EXPECT_GE(text.size(), 200u * 1024);
  EXPECT_LE(text.size(), 600u * 1024);
  std::vector<uint32_t> tokens = byteTokens(text);
  std::string p = dir_ / "corpus.bin";
  ASSERT_TRUE(writeTokenFile(p, tokens, kByteVocabSize));
  DatasetOptions o;
  o.seqLen = 256;
  Expected<Dataset> d = Dataset::open(p, o);
  ASSERT_TRUE(d) << d.message();
  EXPECT_EQ(d->file().tokenWidth(), 2u);
  EXPECT_TRUE(checkTokenIds(d->file(), kByteVocabSize));
  EXPECT_EQ(d->numSamples(), int64_t((text.size() - 1) / 256));
  Expected<Batch> b = d->batch({.microBatch = 1}, {});
  ASSERT_TRUE(b) << b.message();
  size_t start = size_t(b->samples[0]) * 256;
  for (size_t t = 0; t < 256; ++t)
    ASSERT_EQ(b->inputIds[t], static_cast<unsigned char>(text[start + t]));
}

} // namespace
} // namespace mt::io
