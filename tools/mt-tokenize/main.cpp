// mt-tokenize: turns text into a token file for mtrun --data, byte-level or
// with a model's tokenizer.json; --ids prints the ids of each line, --count
// a token file's size.
#include "runtime/support/OutputPath.h"
#include "runtime/io/SftFile.h"
#include "runtime/io/TokenFile.h"
#include "runtime/support/Wording.h"
#include "runtime/text/PreTokenizer.h"
#include "runtime/text/Tokenizer.h"
#include "tools/common/CommandLine.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

namespace {

int fail(const std::string &message) {
  std::cerr << "error: " << message << "\n";
  return 1;
}

// Tokenizers take UTF-8: "FILE:LINE: not valid UTF-8 ..." for the first
// invalid byte of `text`, or "" when it is all valid.
std::string invalidUtf8(const std::string &file, std::string_view text) {
  size_t bad = mt::text::findInvalidUtf8(text);
  if (bad == std::string_view::npos)
    return "";
  size_t newline = text.rfind('\n', bad); // text[bad] is no '\n': that is valid
  size_t lineStart = newline == std::string_view::npos ? 0 : newline + 1;
  size_t line = 1 + size_t(std::count(text.begin(), text.begin() + bad, '\n'));
  return file + ":" + std::to_string(line) + ": not valid UTF-8 at byte " +
         std::to_string(bad - lineStart) + " of the line (byte " + std::to_string(bad) +
         " of the file); the tokenizer takes UTF-8 text";
}

// --ids: one line of space-separated ids per input line, no special tokens.
int printIds(const std::optional<mt::text::Tokenizer> &tokenizer, const std::string &text) {
  std::vector<uint32_t> ids;
  std::string out;
  size_t lineNumber = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = std::min(text.find('\n', begin), text.size());
    std::string_view line(text.data() + begin, end - begin);
    ++lineNumber;
    ids.clear();
    if (tokenizer) {
      if (mt::Status s = tokenizer->encodeInto(line, false, ids); !s)
        return fail("line " + std::to_string(lineNumber) + ": " + s.message());
    } else {
      ids = mt::io::byteTokens(line);
    }
    out.clear();
    for (size_t i = 0; i < ids.size(); ++i)
      out.append(i ? " " : "").append(std::to_string(ids[i]));
    std::cout << out << "\n";
    begin = end + 1;
  }
  std::cout.flush();
  return std::cout ? 0 : fail("cannot write the ids to standard output");
}

// --count: a token file's size, in -o's summary form.
int printCount(const std::string &path) {
  auto file = mt::io::openTokenFile(path);
  if (!file)
    return fail(file.message());
  if (mt::Status s = mt::io::checkDeclaredVocab(*file); !s)
    return fail(s.message());
  std::cout << path << ": " << mt::countOf(int64_t(file->size()), "token")
            << " (token file, vocab size " << file->vocabSize() << ")\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"mt-tokenize: write the token file (runtime/io/TokenFile.h) of a text, or print "
               "the ids of each line.\nTokenizer: byte-level (vocabulary 256, each byte one "
               "token), or with --tokenizer a model's tokenizer.json (byte-level BPE as Qwen2/3 "
               "and Llama 3 use; no special tokens added)."};
  std::string input, output, modelDir;
  app.add_option("text", input, "UTF-8 text file (with --count: a token file)")
      ->required()
      ->check(mt::tools::existingFile);
  auto *outputOption =
      app.add_option("-o,--output", output, "token file to write (replaces a token file atomically)");
  app.add_option("--tokenizer", modelDir,
                 "model directory with tokenizer.json (and tokenizer_config.json)")
      ->check(CLI::ExistingDirectory);
  bool ids = false;
  auto *idsFlag = app.add_flag("--ids", ids,
                               "print each line's ids (space-separated, one line per input line, "
                               "no special tokens) instead of writing a token file");
  outputOption->excludes(idsFlag);
  bool count = false;
  auto *countFlag = app.add_flag("--count", count,
                                 "the input is a token file: check it and print its token count "
                                 "(as -o does: PATH: N tokens (...))");
  countFlag->excludes(outputOption)->excludes(idsFlag);
  bool overwrite = false;
  app.add_flag("--overwrite", overwrite,
               "-o may replace an mtc output of another kind or a file mtc did not write "
               "(never the input)");
  app.footer(mt::io::kOutputRulesHelp);
  mt::tools::addVersionFlag(app, "mt-tokenize");
  if (auto exitCode = mt::tools::parseCommandLine(app, argc, argv))
    return *exitCode;
  if (count)
    return printCount(input);
  if (!ids && output.empty())
    return fail("give -o FILE (a token file to write), --ids (print each line's ids) or --count "
                "(a token file's size)");
  if (!ids)
    if (mt::Status s = mt::io::checkOutputs({{"-o", output, mt::io::OutputKind::TokenFile}},
                                            {{"the text", input}}, overwrite);
        !s)
      return fail(s.message());
  std::optional<mt::text::Tokenizer> tokenizer;
  if (!modelDir.empty()) {
    auto loaded = mt::text::Tokenizer::fromDirectory(modelDir);
    if (!loaded)
      return fail(loaded.message());
    tokenizer.emplace(std::move(*loaded));
  }
  std::ifstream in(input, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in && !in.eof())
    return fail(input + ": cannot read");
  std::string text = buffer.str();
  // mtc's own binary files are no text to tokenize (a token file given again).
  for (const char *magic : {mt::io::kTokenFileMagic, mt::io::kSftFileMagic})
    if (text.compare(0, 8, magic, 8) == 0)
      return fail(input + ": " + (magic == mt::io::kTokenFileMagic
                                      ? "a token file (mt-tokenize's output; --count checks it)"
                                      : "a prepared SFT file (mt-prepare-sft's output)") +
                  ", not text to tokenize");
  if (text.empty())
    return fail(input + ": empty: no text to tokenize");
  if (tokenizer)
    if (std::string error = invalidUtf8(input, text); !error.empty())
      return fail(error);
  if (ids)
    return printIds(tokenizer, text);
  std::vector<uint32_t> tokens;
  uint64_t vocabSize = mt::io::kByteVocabSize;
  if (tokenizer) {
    if (mt::Status s = tokenizer->encodeInto(text, false, tokens); !s)
      return fail(input + ": " + s.message());
    vocabSize = tokenizer->vocabSize();
  } else {
    tokens = mt::io::byteTokens(text);
  }
  if (mt::Status s = mt::io::writeTokenFile(output, tokens, vocabSize); !s)
    return fail(s.message());
  std::cout << output << ": " << mt::countOf(int64_t(tokens.size()), "token") << " ("
            << (tokenizer ? "tokenizer of " + modelDir + ", vocab size " + std::to_string(vocabSize)
                          : std::string("byte-level"))
            << ")\n";
  return 0;
}
