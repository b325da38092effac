// mt-prepare-sft: LLaMA-Factory-style chat datasets to prepared SFT data for
// mtrun --data.
#include "runtime/chat/DatasetInfo.h"
#include "runtime/chat/Supervised.h"
#include "runtime/chat/Template.h"
#include "runtime/chat/TokenizerEncoder.h"
#include "runtime/support/OutputPath.h"
#include "runtime/io/SftFile.h"
#include "runtime/support/Wording.h"
#include "tools/common/CommandLine.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

namespace {

std::string joined(const std::vector<std::string> &names) {
  std::string s;
  for (const std::string &n : names)
    s += (s.empty() ? "" : ", ") + n;
  return s;
}

/// The error of a tokenizer whose ids reach past the model's vocabulary
/// (`modelVocab`, 0: unknown), or "".
std::string vocabularyMismatch(const mt::chat::TextEncoder &encoder, const std::string &tokenizer,
                               uint64_t modelVocab) {
  if (modelVocab == 0 || encoder.vocabSize() <= modelVocab)
    return "";
  return tokenizer + "'s tokenizer has " + std::to_string(encoder.vocabSize()) +
         " ids, more than the model's vocab_size " + std::to_string(modelVocab) +
         " (its config.json): the tokenizer is not the model's";
}

/// --check: the template, each dataset's dataset_info.json entry and file,
/// and with --model-vocab-size the model directory's tokenizer against it,
/// without reading the samples; each error one line on standard output,
/// "template\t<message>", "dataset\t<message>" or
/// "model_name_or_path\t<message>", for mtc train to name where the key was
/// given. Returns the exit code.
int checkOnly(const mt::chat::SftData &data, const std::string &tokenizer, uint64_t modelVocab) {
  int code = 0;
  auto report = [&](const char *key, const std::string &message) {
    std::cout << key << "\t" << message << "\n";
    code = 1;
  };
  if (auto t = mt::chat::findTemplate(data.templateName); !t)
    report("template", t.message());
  auto attrs = mt::chat::readDatasetInfo(data.datasetDir, data.datasets);
  if (!attrs)
    report("dataset", attrs.message());
  else
    for (const mt::chat::DatasetAttr &attr : *attrs)
      if (auto path = std::filesystem::path(data.datasetDir) / attr.fileName;
          !std::filesystem::exists(path))
        report("dataset", path.string() + ": no such file (file_name of dataset '" + attr.name +
                              "' in dataset_info.json)");
  if (modelVocab > 0 && tokenizer != "byte") {
    if (auto loaded = mt::chat::TokenizerEncoder::fromDirectory(tokenizer); !loaded)
      report("model_name_or_path", loaded.message());
    else if (std::string e = vocabularyMismatch(*loaded, tokenizer, modelVocab); !e.empty())
      report("model_name_or_path", e);
  }
  return code;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"mt-prepare-sft: encode chat datasets (dataset_info.json in --dataset-dir, alpaca "
               "or sharegpt) with a chat template into prepared SFT data "
               "(runtime/io/SftFile.h): rows of cutoff_len + 1 token ids with labels on the "
               "responses, as LLaMA-Factory's sft stage prepares them. Flags carry "
               "LLaMA-Factory's keys (cutoff_len as --cutoff-len) and defaults."};
  mt::chat::SftData data;
  mt::chat::SftOptions o;
  std::string output, tokenizer = "byte";
  bool overwrite = false;
  app.add_option("--dataset-dir", data.datasetDir, "folder holding dataset_info.json")
      ->default_val("data");
  app.add_option("--dataset", data.datasets, "dataset names in dataset_info.json (a,b,...)")
      ->required()
      ->delimiter(',');
  app.add_option("--template", data.templateName,
                 "chat template: " + joined(mt::chat::templateNames()))
      ->required();
  app.add_option("--cutoff-len", o.cutoffLen, "tokens per sample (the plan's --seq)")
      ->default_val(2048);
  app.add_option("--max-samples", o.maxSamples, "keep the first N samples of each dataset");
  app.add_flag("--packing", o.packing, "concatenate samples into rows of cutoff_len + 1");
  app.add_flag("--neat-packing", o.neatPacking,
               "packing with each sample its own document: position ids restart per sample "
               "and attention stays inside it (the plan needs mtc import-hf --neat-packing)");
  app.add_flag("--train-on-prompt", o.trainOnPrompt, "label the prompts too");
  app.add_flag("--mask-history", o.maskHistory, "label only the last turn");
  app.add_option("--enable-thinking", o.enableThinking,
                 "reasoning templates (qwen3): empty thoughts in the responses (true) or at "
                 "the end of the prompts (false)")
      ->default_val(true);
  app.add_option("--seed", o.seed,
                 "seed of num_samples draws (mtrun --seed shuffles the rows each epoch)")
      ->default_val(42)
      ->check(mt::tools::nonNegative);
  app.add_option("--tokenizer", tokenizer,
                 "a model directory holding tokenizer.json and tokenizer_config.json (the "
                 "model's own tokenizer), or 'byte': a byte-level stand-in with the template "
                 "family's special tokens (tests and demos)")
      ->default_val("byte");
  uint64_t modelVocab = 0;
  app.add_option("--model-vocab-size", modelVocab,
                 "the model's vocab_size: a tokenizer with more ids is refused before any "
                 "sample is encoded (0: not checked)");
  bool check = false;
  app.add_flag("--check", check,
               "check the template and the datasets' entries and files, write nothing: each "
               "error a line 'template<TAB>message' or 'dataset<TAB>message' on standard "
               "output");
  app.add_option("-o,--output", output,
                 "prepared SFT file to write (replaced atomically); required unless --check");
  app.add_flag("--overwrite", overwrite,
               "-o may replace an mtc output of another kind or a file mtc did not write");
  app.footer(mt::io::kOutputRulesHelp);
  mt::tools::addVersionFlag(app, "mt-prepare-sft");
  if (auto exitCode = mt::tools::parseCommandLine(app, argc, argv))
    return *exitCode;
  auto fail = [](const std::string &message) {
    std::cerr << "error: " << message << "\n";
    return 1;
  };
  // LLaMA-Factory's split_arg strips each name: "a, b" names a and b.
  for (std::string &name : data.datasets) {
    const size_t first = name.find_first_not_of(" \t"), last = name.find_last_not_of(" \t");
    name = first == std::string::npos ? "" : name.substr(first, last - first + 1);
  }
  if (check)
    return checkOnly(data, tokenizer, modelVocab);
  if (output.empty())
    return fail("-o,--output is required: the prepared SFT file to write");
  if (mt::Status s = mt::io::checkOutputs({{"-o", output, mt::io::OutputKind::SftFile}}, {},
                                          overwrite);
      !s)
    return fail(s.message());
  std::unique_ptr<mt::chat::TextEncoder> encoder;
  if (tokenizer == "byte") {
    encoder = std::make_unique<mt::chat::ByteTextEncoder>(mt::chat::byteEncoderFor(data.templateName));
  } else {
    auto loaded = mt::chat::TokenizerEncoder::fromDirectory(tokenizer);
    if (!loaded)
      return fail("--tokenizer: " + loaded.message());
    encoder = std::make_unique<mt::chat::TokenizerEncoder>(std::move(*loaded));
  }
  if (std::string e = vocabularyMismatch(*encoder, tokenizer, modelVocab); !e.empty())
    return fail("--tokenizer: " + e);
  mt::chat::SftSummary summary;
  auto rows = mt::chat::prepareSft(data, o, *encoder, &summary);
  if (!rows)
    return fail(rows.message());
  if (mt::Status s = mt::io::writeSftFile(output, *rows); !s)
    return fail(s.message());
  std::cout << output << ": " << mt::countOf(summary.samples, "sample") << " in "
            << mt::countOf(summary.rows, "row") << " of " << o.cutoffLen << " + 1 tokens"
            << (o.neatPacking ? " (neatly packed)" : o.packing ? " (packed)" : "") << "; " << summary.tokens << " tokens, "
            << summary.labelledTokens << " labelled ("
            << (tokenizer == "byte" ? "byte-level stand-in" : "the model's") << " tokenizer, vocab "
            << encoder->vocabSize() << ")\n";
  return 0;
}
