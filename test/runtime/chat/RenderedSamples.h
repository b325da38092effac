// The demo datasets as the chat template renders them, for the tests that
// read prepared rows back (the reference side: rendering, not encoding).
#ifndef MT_TEST_RUNTIME_CHAT_RENDEREDSAMPLES_H
#define MT_TEST_RUNTIME_CHAT_RENDEREDSAMPLES_H

#include "runtime/chat/DatasetInfo.h"
#include "runtime/chat/Supervised.h"
#include "runtime/chat/Template.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace mt::chat {

/// Each demo sample's whole text and its responses, as the template renders
/// them (every one shorter than `seq`, so none is truncated).
inline std::vector<std::pair<std::string, std::string>> renderedSamples(const TextEncoder &enc,
                                                                 const SftData &data, int64_t seq) {
  const Template &t = **findTemplate(data.templateName);
  SpecialTokens special = specialTokens(t, "", enc.eosToken(), enc.padToken());
  std::vector<std::pair<std::string, std::string>> samples;
  auto attrs = readDatasetInfo(data.datasetDir, data.datasets);
  EXPECT_TRUE(attrs);
  for (const DatasetAttr &a : *attrs) {
    auto examples = loadExamples(data.datasetDir, a, std::nullopt, 0);
    EXPECT_TRUE(examples) << examples.message();
    for (const Example &e : *examples) {
      auto turns = renderTurns(t, special, e.messages, e.system, {});
      EXPECT_TRUE(turns);
      std::string whole, responses;
      for (const auto &[p, r] : *turns) {
        whole += joinPieces(p) + joinPieces(r);
        responses += joinPieces(r);
      }
      EXPECT_LT(enc.encode(whole)->size(), size_t(seq)) << e.where << " would be truncated";
      samples.emplace_back(whole, responses);
    }
  }
  return samples;
}

} // namespace mt::chat

#endif // MT_TEST_RUNTIME_CHAT_RENDEREDSAMPLES_H
