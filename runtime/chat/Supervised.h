// Supervised fine-tuning data as LLaMA-Factory prepares it
// (src/llamafactory/data/processor/supervised.py): conversations encoded by a
// template into input ids and labels (responses only), truncated to
// cutoff_len, padded or packed into the rows of a prepared SFT file.
#ifndef MT_RUNTIME_CHAT_SUPERVISED_H
#define MT_RUNTIME_CHAT_SUPERVISED_H

#include "runtime/chat/DatasetInfo.h"
#include "runtime/chat/Template.h"
#include "runtime/chat/TextEncoder.h"
#include "runtime/io/SftFile.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mt::chat {

/// LLaMA-Factory's data arguments for the sft stage, same names and defaults.
struct SftOptions {
  int64_t cutoffLen = 2048;   // cutoff_len: tokens per sample; rows hold cutoff_len + 1
  bool trainOnPrompt = false; // train_on_prompt: prompts are labelled too
  bool maskHistory = false;   // mask_history: only the last turn is labelled
  bool packing = false;       // packing: samples concatenated into rows
  bool neatPacking = false;   // neat_packing: packing, each sample its own document
  bool enableThinking = true; // enable_thinking (reasoning templates)
  std::optional<int64_t> maxSamples; // max_samples, per dataset
  uint64_t seed = 42;                // seed: num_samples draws
};

/// Refuses what cannot be honoured: cutoff_len < 1, max_samples < 1,
/// train_on_prompt with an efficient_eos template (as LLaMA-Factory does).
Status checkSftOptions(const SftOptions &options, const Template &t);

/// infer_seqlen: how a turn of `sourceLength` prompt and `targetLength`
/// response tokens is cut to fit `cutoffLen` more tokens. Returns (source,
/// target) lengths: a response shorter than half the budget is kept whole,
/// else a prompt shorter than half is, else both shrink in proportion.
std::pair<int64_t, int64_t> inferSeqlen(int64_t sourceLength, int64_t targetLength,
                                        int64_t cutoffLen);

/// One sample: input ids and labels (kIgnoreIndex where no loss), equal
/// lengths, at most cutoffLen tokens.
struct EncodedSample {
  std::vector<uint32_t> inputIds;
  std::vector<int32_t> labels;
};

/// A template with the tokens its special slots resolve to in one
/// tokenizer.
struct BoundTemplate {
  const Template *chat = nullptr;
  SpecialTokens special;
  uint32_t eosId = 0, padId = 0;
};

/// Resolves `t`'s EOS and padding tokens in `encoder`'s vocabulary.
Expected<BoundTemplate> bindTemplate(const Template &t, const TextEncoder &encoder);

/// _encode_data_example: turns encoded by the template, each truncated by
/// inferSeqlen against what is left of cutoff_len (the last turns first
/// under mask_history), prompts labelled kIgnoreIndex unless train_on_prompt,
/// history responses too under mask_history. Errors start with example.where.
Expected<EncodedSample> encodeSupervised(const BoundTemplate &t, const TextEncoder &encoder,
                                         const Example &example, const SftOptions &options);

/// The rows of a prepared SFT file (S = cutoffLen, rows of S + 1 tokens):
/// one sample per row, padded with padId / kIgnoreIndex; or under packing,
/// LLaMA-Factory's greedy knapsack (samples sorted by length, each row
/// filled with the longest sample that still fits cutoff_len). neat_packing
/// packs alike (it implies packing, as in LLaMA-Factory's DataArguments)
/// and adds LLaMA-Factory's position ids: 0, 1, ... from each sample's
/// start, 0 on each padding token (PackedSupervisedDatasetProcessor).
io::SftRows buildRows(std::vector<EncodedSample> samples, const SftOptions &options,
                      uint32_t padId, uint64_t vocabSize);

/// What `prepareSft` reads.
struct SftData {
  std::string datasetDir;
  std::vector<std::string> datasets; // names in dataset_info.json, in order
  std::string templateName;
};

/// Counts for the user.
struct SftSummary {
  int64_t samples = 0, rows = 0, tokens = 0, labelledTokens = 0;
};

/// The whole preparation: datasets read and converted, concatenated in the
/// order given, encoded, and made into rows. The caller writes them
/// (io::writeSftFile).
Expected<io::SftRows> prepareSft(const SftData &data, const SftOptions &options,
                                 const TextEncoder &encoder, SftSummary *summary = nullptr);

} // namespace mt::chat

#endif // MT_RUNTIME_CHAT_SUPERVISED_H
