// LLaMA-Factory's supervised preprocessing (processor/supervised.py and
// processor_utils.py), written for mtc.
#include "runtime/chat/Supervised.h"

#include "runtime/support/Wording.h"

#include <algorithm>
#include <map>

namespace mt::chat {
namespace {

using Ids = std::vector<uint32_t>;
using Labels = std::vector<int32_t>;

Labels asLabels(const Ids &ids) { return Labels(ids.begin(), ids.end()); }

/// Appends `more` to `to`, or puts it in front (mask_history builds the
/// sample from its last turn backwards).
template <typename T> void join(std::vector<T> &to, const std::vector<T> &more, bool front) {
  to.insert(front ? to.begin() : to.end(), more.begin(), more.end());
}

} // namespace

Status checkSftOptions(const SftOptions &o, const Template &t) {
  // Rows are cutoff_len + 1 tokens, padded: a length no model trains at
  // would take memory and disk without end before any use of it.
  constexpr int64_t kMaxCutoffLen = int64_t(1) << 24;
  if (o.cutoffLen < 1 || o.cutoffLen > kMaxCutoffLen)
    return Status::error("cutoff_len must be in [1, " + std::to_string(kMaxCutoffLen) +
                         "] (16M tokens, past any model's context), got " +
                         std::to_string(o.cutoffLen));
  if (o.maxSamples && *o.maxSamples < 1)
    return Status::error("max_samples must be >= 1, got " + std::to_string(*o.maxSamples));
  if (o.trainOnPrompt && t.efficientEos)
    return Status::error("train_on_prompt: template " + t.name +
                         " (efficient_eos) does not support it, as in LLaMA-Factory");
  return Status::ok();
}

std::pair<int64_t, int64_t> inferSeqlen(int64_t source, int64_t target, int64_t cutoff) {
  int64_t maxTarget;
  if (target * 2 < cutoff)
    maxTarget = cutoff;
  else if (source * 2 < cutoff)
    maxTarget = cutoff - source;
  else // int(cutoff * (target / (source + target))) in Python's float arithmetic
    maxTarget = int64_t(double(cutoff) * (double(target) / double(source + target)));
  int64_t newTarget = std::min(maxTarget, target);
  int64_t newSource = std::min(std::max<int64_t>(cutoff - newTarget, 0), source);
  return {newSource, newTarget};
}

Expected<BoundTemplate> bindTemplate(const Template &t, const TextEncoder &encoder) {
  BoundTemplate b;
  b.chat = &t;
  b.special = specialTokens(t, encoder.bosToken(), encoder.eosToken(), encoder.padToken());
  auto eos = encoder.tokenId(b.special.eos);
  auto pad = encoder.tokenId(b.special.pad);
  if (!eos || !pad)
    return Status::error("template " + t.name + ": the tokenizer has no token '" +
                         (!eos ? b.special.eos : b.special.pad) + "' (its " +
                         (!eos ? "EOS" : "padding") + " token under this template)");
  b.eosId = *eos;
  b.padId = *pad;
  return b;
}

Expected<EncodedSample> encodeSupervised(const BoundTemplate &b, const TextEncoder &encoder,
                                         const Example &example, const SftOptions &o) {
  const Template &t = *b.chat;
  TemplateOptions topt;
  topt.enableThinking = o.enableThinking;
  topt.discardHistoryThought = o.maskHistory; // preserve_thinking is off
  auto turns = renderTurns(t, b.special, example.messages, example.system, topt);
  if (!turns)
    return Status::error(example.where + ": " + turns.message());
  std::vector<std::pair<Ids, Ids>> pairs;
  for (const auto &[prompt, response] : *turns) {
    auto source = encodePieces(prompt, encoder);
    auto target = encodePieces(response, encoder);
    if (!source || !target)
      return Status::error(example.where + ": " + (!source ? source : target).message());
    pairs.emplace_back(std::move(*source), std::move(*target));
  }
  if (o.maskHistory)
    std::reverse(pairs.begin(), pairs.end()); // the last turns first
  EncodedSample s;
  int64_t total = t.efficientEos ? 1 : 0;
  for (size_t turn = 0; turn < pairs.size(); ++turn) {
    if (total >= o.cutoffLen)
      break;
    Ids &source = pairs[turn].first, &target = pairs[turn].second;
    auto [sourceLength, targetLength] =
        inferSeqlen(int64_t(source.size()), int64_t(target.size()), o.cutoffLen - total);
    source.resize(size_t(sourceLength));
    target.resize(size_t(targetLength));
    total += sourceLength + targetLength;
    Labels sourceLabels(source.size(), io::kIgnoreIndex);
    if (o.trainOnPrompt)
      sourceLabels = asLabels(source);
    else if (t.efficientEos && turn != 0 && !source.empty())
      sourceLabels[0] = int32_t(b.eosId); // the previous response's end
    Labels targetLabels = o.maskHistory && turn != 0 ? Labels(target.size(), io::kIgnoreIndex)
                                                     : asLabels(target);
    Ids ids = source;
    ids.insert(ids.end(), target.begin(), target.end());
    sourceLabels.insert(sourceLabels.end(), targetLabels.begin(), targetLabels.end());
    join(s.inputIds, ids, o.maskHistory);
    join(s.labels, sourceLabels, o.maskHistory);
  }
  if (t.efficientEos) {
    s.inputIds.push_back(b.eosId);
    s.labels.push_back(int32_t(b.eosId));
  }
  return s;
}

io::SftRows buildRows(std::vector<EncodedSample> samples, const SftOptions &o, uint32_t padId,
                      uint64_t vocabSize) {
  io::SftRows rows;
  rows.vocabSize = vocabSize;
  rows.seqLen = o.cutoffLen;
  rows.padId = padId;
  const size_t width = size_t(o.cutoffLen) + 1;
  auto addRow = [&](const std::vector<const EncodedSample *> &parts) {
    size_t start = rows.inputIds.size();
    for (const EncodedSample *p : parts) {
      rows.inputIds.insert(rows.inputIds.end(), p->inputIds.begin(), p->inputIds.end());
      rows.labels.insert(rows.labels.end(), p->labels.begin(), p->labels.end());
      if (o.neatPacking)
        for (size_t i = 0; i < p->inputIds.size(); ++i)
          rows.positionIds.push_back(uint32_t(i));
    }
    rows.inputIds.resize(start + width, padId);
    rows.labels.resize(start + width, io::kIgnoreIndex);
    if (o.neatPacking)
      rows.positionIds.resize(start + width, 0);
  };
  if (!o.packing && !o.neatPacking) {
    for (const EncodedSample &s : samples)
      addRow({&s});
    return rows;
  }
  // greedy_knapsack over the lengths; samples of one length are taken last
  // first, as LLaMA-Factory's length2indexes[length].pop() does.
  std::vector<int64_t> lengths;
  std::map<int64_t, std::vector<size_t>> byLength;
  for (size_t i = 0; i < samples.size(); ++i) {
    auto n = int64_t(samples[i].inputIds.size());
    lengths.push_back(n);
    byLength[n].push_back(i);
  }
  std::sort(lengths.begin(), lengths.end());
  while (!lengths.empty()) {
    std::vector<const EncodedSample *> parts;
    int64_t remaining = o.cutoffLen;
    for (;;) {
      auto fit = std::upper_bound(lengths.begin(), lengths.end(), remaining);
      if (fit == lengths.begin())
        break;
      --fit;
      remaining -= *fit;
      std::vector<size_t> &same = byLength[*fit];
      parts.push_back(&samples[same.back()]);
      same.pop_back();
      lengths.erase(fit);
    }
    addRow(parts);
  }
  return rows;
}

Expected<io::SftRows> prepareSft(const SftData &data, const SftOptions &options,
                                 const TextEncoder &encoder, SftSummary *summary) {
  auto chat = findTemplate(data.templateName);
  if (!chat)
    return chat.status();
  if (Status s = checkSftOptions(options, **chat); !s)
    return s;
  auto bound = bindTemplate(**chat, encoder);
  if (!bound)
    return bound.status();
  auto attrs = readDatasetInfo(data.datasetDir, data.datasets);
  if (!attrs)
    return attrs.status();
  std::vector<EncodedSample> samples;
  SftSummary sum;
  for (const DatasetAttr &attr : *attrs) {
    auto examples = loadExamples(data.datasetDir, attr, options.maxSamples, options.seed);
    if (!examples)
      return examples.status();
    for (const Example &e : *examples) {
      auto s = encodeSupervised(*bound, encoder, e, options);
      if (!s)
        return s.status();
      sum.tokens += int64_t(s->inputIds.size());
      sum.labelledTokens += std::count_if(s->labels.begin(), s->labels.end(),
                                          [](int32_t l) { return l != io::kIgnoreIndex; });
      samples.push_back(std::move(*s));
    }
  }
  sum.samples = int64_t(samples.size());
  // Rows without a label train on nothing: every step's loss and gradient
  // would be 0, a run that looks like training and changes no weight.
  if (sum.samples > 0 && sum.labelledTokens == 0)
    return Status::error("no token of the " + countOf(sum.samples, "sample") +
                         " is labelled: within cutoff_len (" + countOf(options.cutoffLen, "token") +
                         ") no sample keeps a token of its response to train on; raise "
                         "cutoff_len, or check the dataset's responses");
  io::SftRows rows = buildRows(std::move(samples), options, bound->padId, encoder.vocabSize());
  sum.rows = rows.rows();
  if (summary)
    *summary = sum;
  return rows;
}

} // namespace mt::chat
