// mt-tokenize: turns text into a token file for mtrun --data.
#include "runtime/support/OutputPath.h"
#include "runtime/io/TokenFile.h"
#include "runtime/support/Wording.h"
#include "tools/common/CommandLine.h"

#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char **argv) {
  CLI::App app{"mt-tokenize: write the token file (runtime/io/TokenFile.h) of a text.\n"
               "Tokenizer: byte-level (vocabulary 256, each byte one token)."};
  std::string input, output;
  app.add_option("text", input, "UTF-8 text file")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--output", output, "token file to write (replaces a token file atomically)")
      ->required();
  bool overwrite = false;
  app.add_flag("--overwrite", overwrite,
               "-o may replace an mtc output of another kind or a file mtc did not write "
               "(never the input)");
  app.footer(mt::io::kOutputRulesHelp);
  mt::tools::addVersionFlag(app, "mt-tokenize");
  if (auto exitCode = mt::tools::parseCommandLine(app, argc, argv))
    return *exitCode;
  if (mt::Status s = mt::io::checkOutputs({{"-o", output, mt::io::OutputKind::TokenFile}},
                                          {{"the text", input}}, overwrite);
      !s) {
    std::cerr << "error: " << s.message() << "\n";
    return 1;
  }
  std::ifstream in(input, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) {
    std::cerr << "error: " << input << ": cannot read\n";
    return 1;
  }
  auto tokens = mt::io::byteTokens(text.str());
  if (mt::Status s = mt::io::writeTokenFile(output, tokens, mt::io::kByteVocabSize); !s) {
    std::cerr << "error: " << s.message() << "\n";
    return 1;
  }
  std::cout << output << ": " << mt::countOf(int64_t(tokens.size()), "token") << " (byte-level)\n";
  return 0;
}
