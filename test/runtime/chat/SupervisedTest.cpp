// Supervised preprocessing as LLaMA-Factory's processor/supervised.py: labels
// on the responses only, truncation by infer_seqlen, packing; and the rows
// the trainer reads back (io::Dataset over the prepared file) checked token
// by token against the template's rendering.
#include "runtime/chat/Supervised.h"
#include "test/runtime/chat/RenderedSamples.h"
#include "runtime/io/Dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <unistd.h>

namespace mt::chat {
namespace {

namespace fs = std::filesystem;
using io::kIgnoreIndex;

TEST(Supervised, InferSeqlenAsLlamaFactory) {
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(inferSeqlen(100, 200, 1000), P(100, 200)); // fits
  EXPECT_EQ(inferSeqlen(900, 300, 1000), P(700, 300)); // short response kept whole
  EXPECT_EQ(inferSeqlen(300, 800, 1000), P(300, 700)); // short prompt kept whole
  EXPECT_EQ(inferSeqlen(800, 700, 1000), P(534, 466)); // int(1000 * 700 / 1500)
  EXPECT_EQ(inferSeqlen(500, 600, 1000), P(455, 545)); // half is not "shorter than half"
  EXPECT_EQ(inferSeqlen(600, 500, 1000), P(546, 454));
  EXPECT_EQ(inferSeqlen(5, 5, 0), P(0, 0));
}

struct Fixture : ::testing::Test {
  BoundTemplate bind(const std::string &name) {
    encoder = std::make_unique<ByteTextEncoder>(byteEncoderFor(name));
    auto t = findTemplate(name);
    EXPECT_TRUE(t);
    auto b = bindTemplate(**t, *encoder);
    EXPECT_TRUE(b) << b.message();
    return *b;
  }
  EncodedSample encode(const BoundTemplate &b, const Example &e, const SftOptions &o) {
    auto s = encodeSupervised(b, *encoder, e, o);
    EXPECT_TRUE(s) << s.message();
    return s ? *s : EncodedSample{};
  }
  std::string text(const std::vector<uint32_t> &ids) { return encoder->decode(ids); }
  /// The decoded tokens whose label is not ignored.
  std::string labelled(const EncodedSample &s) {
    std::vector<uint32_t> ids;
    for (size_t i = 0; i < s.labels.size(); ++i)
      if (s.labels[i] != kIgnoreIndex) {
        EXPECT_EQ(uint32_t(s.labels[i]), s.inputIds[i]) << i;
        ids.push_back(s.inputIds[i]);
      }
    return text(ids);
  }
  std::unique_ptr<ByteTextEncoder> encoder;
};

Example twoTurns() {
  return {{{Role::User, "Hi"}, {Role::Assistant, "Hello!"}, {Role::User, "2+2?"}, {Role::Assistant, "4"}},
          "Be brief.",
          "test sample"};
}

TEST_F(Fixture, LabelsCoverResponsesOnly) {
  BoundTemplate b = bind("qwen3_nothink");
  EncodedSample s = encode(b, twoTurns(), {});
  EXPECT_EQ(text(s.inputIds), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                              "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                              "<|im_start|>assistant\n4<|im_end|>\n");
  EXPECT_EQ(labelled(s), "Hello!<|im_end|>\n4<|im_end|>\n");
}

TEST_F(Fixture, TrainOnPromptAndMaskHistory) {
  BoundTemplate b = bind("llama3");
  SftOptions o;
  o.trainOnPrompt = true;
  EncodedSample all = encode(b, twoTurns(), o);
  EXPECT_EQ(labelled(all), text(all.inputIds));
  o = {};
  o.maskHistory = true;
  EncodedSample last = encode(b, twoTurns(), o);
  EXPECT_EQ(text(last.inputIds), text(encode(b, twoTurns(), {}).inputIds)); // same order
  EXPECT_EQ(labelled(last), "4<|eot_id|>");
}

TEST_F(Fixture, CutoffSplitsAsInferSeqlen) {
  BoundTemplate b = bind("empty");
  Example e{{{Role::User, std::string(30, 'p')}, {Role::Assistant, std::string(20, 'r')},
             {Role::User, std::string(10, 'q')}, {Role::Assistant, std::string(10, 's')}},
            "",
            "long"};
  auto run = [&](int64_t cutoff, bool maskHistory) {
    SftOptions o;
    o.cutoffLen = cutoff;
    o.maskHistory = maskHistory;
    return encode(b, e, o);
  };
  // Turn 0: infer_seqlen(30, 20, 40) = (24, 16); nothing is left for turn 1.
  EncodedSample s = run(40, false);
  EXPECT_EQ(text(s.inputIds), std::string(24, 'p') + std::string(16, 'r'));
  EXPECT_EQ(labelled(s), std::string(16, 'r'));
  // Turn 0 whole (50 tokens), turn 1 gets 10: infer_seqlen(10, 10, 10) = (5, 5).
  s = run(60, false);
  EXPECT_EQ(text(s.inputIds),
            std::string(30, 'p') + std::string(20, 'r') + std::string(5, 'q') + std::string(5, 's'));
  EXPECT_EQ(labelled(s), std::string(20, 'r') + std::string(5, 's'));
  // mask_history: the last turn first, (10, 10), then turn 0 in the 40 left.
  s = run(60, true);
  EXPECT_EQ(text(s.inputIds), std::string(24, 'p') + std::string(16, 'r') +
                                  std::string(10, 'q') + std::string(10, 's'));
  EXPECT_EQ(labelled(s), std::string(10, 's'));
}

TEST_F(Fixture, PackingIsGreedyKnapsack) {
  // Lengths 5, 3, 8, 2 in cutoff 10: LLaMA-Factory packs [8, 2] and [5, 3].
  std::vector<EncodedSample> samples;
  for (int n : {5, 3, 8, 2})
    samples.push_back({std::vector<uint32_t>(size_t(n), uint32_t(n)),
                       std::vector<int32_t>(size_t(n), n)});
  SftOptions o;
  o.cutoffLen = 10;
  o.packing = true;
  io::SftRows rows = buildRows(samples, o, 0, 256);
  ASSERT_EQ(rows.rows(), 2);
  std::vector<uint32_t> row0(rows.inputIds.begin(), rows.inputIds.begin() + 11);
  std::vector<uint32_t> row1(rows.inputIds.begin() + 11, rows.inputIds.end());
  EXPECT_EQ(row0, (std::vector<uint32_t>{8, 8, 8, 8, 8, 8, 8, 8, 2, 2, 0}));
  EXPECT_EQ(row1, (std::vector<uint32_t>{5, 5, 5, 5, 5, 3, 3, 3, 0, 0, 0}));
  EXPECT_EQ(rows.labels[10], kIgnoreIndex);
  o.packing = false;
  EXPECT_EQ(buildRows(samples, o, 0, 256).rows(), 4);
}

// neat_packing packs as packing does (it implies it, as LLaMA-Factory's
// DataArguments) and writes LLaMA-Factory's position ids: 0.. per sample,
// 0 on padding.
TEST_F(Fixture, NeatPackingAddsPositionIds) {
  std::vector<EncodedSample> samples;
  for (int n : {5, 3, 8, 2})
    samples.push_back({std::vector<uint32_t>(size_t(n), uint32_t(n)),
                       std::vector<int32_t>(size_t(n), n)});
  SftOptions o;
  o.cutoffLen = 10;
  o.neatPacking = true;
  ASSERT_TRUE(checkSftOptions(o, **findTemplate("qwen3")));
  io::SftRows rows = buildRows(samples, o, 0, 256);
  ASSERT_EQ(rows.rows(), 2);
  EXPECT_EQ(std::vector<uint32_t>(rows.inputIds.begin(), rows.inputIds.begin() + 11),
            (std::vector<uint32_t>{8, 8, 8, 8, 8, 8, 8, 8, 2, 2, 0}));
  EXPECT_EQ(rows.positionIds, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 0,
                                                      0, 1, 2, 3, 4, 0, 1, 2, 0, 0, 0}));
  o.neatPacking = false;
  o.packing = true;
  EXPECT_TRUE(buildRows(samples, o, 0, 256).positionIds.empty());
}

/// The demo datasets prepared, written, and read back through io::Dataset
/// as mtrun reads them: every row is whole samples (one without packing),
/// and its inputs, labels and loss mask equal the template's rendering of
/// those samples, the response tokens masked in and nothing else.
class PreparedDemo : public ::testing::TestWithParam<bool> {};

TEST_P(PreparedDemo, MaskMatchesTemplateRendering) {
  const bool packing = GetParam();
  constexpr int64_t kSeq = 320;
  ByteTextEncoder enc = byteEncoderFor("qwen3_nothink");
  SftOptions o;
  o.cutoffLen = kSeq;
  o.packing = packing;
  SftData data{MT_DEMO_DATA, {"demo_alpaca", "demo_sharegpt"}, "qwen3_nothink"};
  SftSummary sum;
  auto rows = prepareSft(data, o, enc, &sum);
  ASSERT_TRUE(rows) << rows.message();
  fs::path dir = fs::temp_directory_path() / ("mt-chat-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / (packing ? "packed.bin" : "rows.bin")).string();
  ASSERT_TRUE(io::writeSftFile(path, *rows));

  std::vector<std::pair<std::string, std::string>> samples = renderedSamples(enc, data, kSeq);
  ASSERT_EQ(sum.samples, int64_t(samples.size()));

  io::DatasetOptions options;
  options.seqLen = kSeq;
  auto dataset = io::Dataset::open(path, options);
  ASSERT_TRUE(dataset) << dataset.message();
  ASSERT_TRUE(dataset->prepared());
  EXPECT_EQ(dataset->numSamples(), packing ? sum.rows : int64_t(samples.size()));
  std::vector<int32_t> in(kSeq), lab(kSeq);
  std::vector<float> mask(kSeq);
  std::vector<bool> used(samples.size(), false);
  int64_t labelled = 0;
  for (int64_t r = 0; r < dataset->numSamples(); ++r) {
    dataset->fillSample(r, in, lab, mask);
    std::span<const uint32_t> ids = dataset->sftFile().inputIds(r);
    std::string rowText = enc.decode({ids[0]}), rowTargets;
    for (int64_t p = 1; p <= kSeq; ++p) {
      bool target = mask[size_t(p - 1)] == 1.0f;
      EXPECT_EQ(in[size_t(p - 1)], int32_t(ids[size_t(p - 1)]));
      // Input p - 1 predicts token p where masked in; else the padding id.
      EXPECT_EQ(lab[size_t(p - 1)], target ? int32_t(ids[size_t(p)]) : int32_t(rows->padId));
      if (ids[size_t(p)] == rows->padId) {
        EXPECT_FALSE(target) << "row " << r << " position " << p;
        continue;
      }
      rowText += enc.decode({ids[size_t(p)]});
      if (target)
        rowTargets += enc.decode({ids[size_t(p)]});
      labelled += target;
    }
    // Peel whole samples off the row: text and targets must both match.
    int inRow = 0;
    while (!rowText.empty()) {
      size_t s = 0;
      while (s < samples.size() &&
             (used[s] || rowText.rfind(samples[s].first, 0) != 0 ||
              rowTargets.rfind(samples[s].second, 0) != 0))
        ++s;
      ASSERT_LT(s, samples.size()) << "row " << r << " does not start with a sample's "
                                   << "rendering and responses:\n" << rowText;
      used[s] = true;
      rowText.erase(0, samples[s].first.size());
      rowTargets.erase(0, samples[s].second.size());
      ++inRow;
    }
    EXPECT_TRUE(rowTargets.empty());
    if (!packing) {
      EXPECT_EQ(inRow, 1);
    }
  }
  EXPECT_EQ(std::count(used.begin(), used.end(), true), int64_t(samples.size()));
  EXPECT_EQ(labelled, sum.labelledTokens);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Packing, PreparedDemo, ::testing::Values(false, true));

} // namespace
} // namespace mt::chat
