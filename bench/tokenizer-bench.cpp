// Times mt::text::Tokenizer encoding a text file without special tokens,
// MODE "whole" (one string) or "lines" (each line); prints JSON {"tokens":
// N, "cpu_s": the best run's process CPU seconds}. Built and run by
// bench/tokenizer.py, the counterpart of bench/tokenizer-reference.js.
// Usage: tokenizer-bench MODEL_DIR TEXT MODE REPEATS
#include "runtime/text/Tokenizer.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

static double cpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    std::cerr << "usage: tokenizer-bench MODEL_DIR TEXT MODE REPEATS\n";
    return 2;
  }
  auto tokenizer = mt::text::Tokenizer::fromDirectory(argv[1]);
  if (!tokenizer) {
    std::cerr << "error: " << tokenizer.message() << "\n";
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str(), mode = argv[3];
  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = std::min(text.find('\n', begin), text.size());
    lines.emplace_back(text.data() + begin, end - begin);
    begin = end + 1;
  }
  double best = 1e30;
  size_t tokens = 0;
  std::vector<uint32_t> ids;
  for (int r = 0; r < std::stoi(argv[4]); ++r) {
    double start = cpuSeconds();
    tokens = 0;
    for (std::string_view piece : mode == "whole" ? std::vector<std::string_view>{text} : lines) {
      ids.clear();
      if (mt::Status s = tokenizer->encodeInto(piece, false, ids); !s) {
        std::cerr << "error: " << s.message() << "\n";
        return 1;
      }
      tokens += ids.size();
    }
    best = std::min(best, cpuSeconds() - start);
  }
  std::cout << "{\"tokens\": " << tokens << ", \"cpu_s\": " << best << "}\n";
  return 0;
}
