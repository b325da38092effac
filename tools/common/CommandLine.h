// What the CLI11 tools (mtc, mtrun, mt-tokenize) share on the command line:
// --version, and parse errors that suggest the flag or command meant.
#ifndef MT_TOOLS_COMMON_COMMANDLINE_H
#define MT_TOOLS_COMMON_COMMANDLINE_H

#include "runtime/support/FileKind.h"
#include "runtime/support/Wording.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace mt::tools {

/// `--version` prints "<tool> <MT_VERSION>" (the project version in
/// CMakeLists.txt) and exits 0.
inline void addVersionFlag(CLI::App &app, const std::string &tool) {
  app.set_version_flag("--version", tool + " " MT_VERSION, "print the version and exit");
}

/// The flag of `names` that `typed` most likely meant: a typo (within 3
/// edits), a longer or shorter spelling at a word boundary (--seq-length for
/// --seq), or the initials of its words without "model" and "size"
/// (--tensor-model-parallel-size for --tp), with '_' read as '-'; "" when
/// none fits.
inline std::string nearestFlag(std::string typed, const std::vector<std::string> &names) {
  typed = typed.substr(0, typed.find('='));
  // torchrun's and Python's spellings: --nproc_per_node is --nproc-per-node.
  std::replace(typed.begin(), typed.end(), '_', '-');
  if (std::string close = closestName(typed, names); !close.empty())
    return close;
  for (const std::string &name : names) {
    const std::string &shorter = name.size() < typed.size() ? name : typed;
    const std::string &longer = name.size() < typed.size() ? typed : name;
    if (shorter.size() > 4 && longer.compare(0, shorter.size(), shorter) == 0 &&
        longer[shorter.size()] == '-')
      return name;
  }
  std::string initials = "--", word;
  std::istringstream words(typed.substr(std::min(typed.find_first_not_of('-'), typed.size())));
  while (std::getline(words, word, '-'))
    if (!word.empty() && word != "model" && word != "size")
      initials += word[0];
  for (const std::string &name : names)
    if (name == initials && initials.size() > 3)
      return name;
  return "";
}

/// CLI11 checks that a number is > 0 (`positive`) or >= 0 (`nonNegative`),
/// whose error reads "--nproc: must be > 0, got 0" (CLI11's PositiveNumber
/// prints a range up to DBL_MAX). A word that is no number passes to the
/// option's own conversion, which names the type it expected.
inline CLI::Validator numberAbove(bool orEqual) {
  return CLI::Validator(
      [orEqual](std::string &text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || (orEqual ? value >= 0 : value > 0))
          return "";
        return std::string("must be ") + (orEqual ? ">= 0" : "> 0") + ", got " + text;
      },
      orEqual ? "NONNEGATIVE" : "POSITIVE");
}
inline const CLI::Validator positive = numberAbove(false);
inline const CLI::Validator nonNegative = numberAbove(true);

/// CLI11 check of a path option: an empty one (`--save "$CKPT"` with the
/// variable unset) is an error, not the option left out.
inline const CLI::Validator nonEmptyPath(
    [](std::string &text) -> std::string {
      return text.empty() ? "an empty path (an unset variable?); give a path or leave the "
                            "option out"
                          : "";
    },
    "PATH");

/// CLI::ExistingFile (or, `orDirectory`, CLI::ExistingPath) that also
/// refuses a device or pipe: opening a FIFO to read waits for a writer.
inline CLI::Validator readableFile(bool orDirectory) {
  return CLI::Validator(
      [orDirectory](std::string &path) -> std::string {
        std::string error = orDirectory ? CLI::ExistingPath(path) : CLI::ExistingFile(path);
        if (error.empty() && fileKindOf(path) == FileKind::Special)
          error = std::string("a device or pipe, not a file") +
                  (orDirectory ? " or directory" : "") + ": " + path;
        return error;
      },
      orDirectory ? "PATH" : "FILE");
}
inline const CLI::Validator existingFile = readableFile(false);
inline const CLI::Validator existingPath = readableFile(true);

/// The error for an unexpected word on the command line, or "" for none.
using WordExplainer = std::function<std::string(const std::string &word)>;

namespace detail {

/// Every flag spelling of `app` (and of its chosen subcommands).
inline std::vector<std::string> flagNames(CLI::App &app) {
  std::vector<std::string> names;
  for (const CLI::Option *option : app.get_options()) {
    for (const std::string &name : option->get_lnames())
      names.push_back("--" + name);
    for (const std::string &name : option->get_snames())
      names.push_back("-" + name);
  }
  for (CLI::App *sub : app.get_subcommands())
    for (std::string &name : flagNames(*sub))
      names.push_back(std::move(name));
  return names;
}

/// The command line a user would type to see the help of what was chosen.
inline std::string helpCommand(CLI::App &app) {
  std::string command = std::filesystem::path(app.get_name()).filename().string();
  for (CLI::App *sub = &app; !sub->get_subcommands().empty();) {
    sub = sub->get_subcommands().front();
    command += " " + sub->get_name();
  }
  return command + " --help";
}

/// Unknown flags, each with the flag it most likely meant, and the plain
/// words `explainWord` has an error for; false when there are none
/// (CLI11's message says what is wrong).
inline bool explainUnknownFlags(CLI::App &app, const WordExplainer &explainWord) {
  std::vector<std::string> names = flagNames(app);
  bool any = false;
  for (const std::string &arg : app.remaining(true)) {
    if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9')) {
      // a value, a negative number or a word
      if (std::string error = explainWord ? explainWord(arg) : ""; !error.empty()) {
        std::cerr << "error: " << error << "\n";
        any = true;
      }
      continue;
    }
    std::string meant = nearestFlag(arg, names);
    std::cerr << "error: unknown option '" << arg.substr(0, arg.find('=')) << "'"
              << (meant.empty() ? "" : "; did you mean '" + meant + "'?") << "\n";
    any = true;
  }
  if (any)
    std::cerr << "Run `" << helpCommand(app) << "` for the options.\n";
  return any;
}

/// A misspelt subcommand (`mtc compil`), with the one meant.
inline bool explainUnknownCommand(CLI::App &app, int argc, char **argv) {
  std::vector<std::string> commands;
  for (const CLI::App *sub : app.get_subcommands([](CLI::App *) { return true; }))
    commands.push_back(sub->get_name());
  if (commands.empty() || !app.get_subcommands().empty() || argc < 2 || argv[1][0] == '-')
    return false;
  std::string all, meant = closestName(argv[1], commands);
  for (const std::string &name : commands)
    all += (all.empty() ? "" : ", ") + name;
  std::cerr << "error: unknown command '" << argv[1] << "'"
            << (meant.empty() ? "" : "; did you mean '" + meant + "'?") << " (commands: " << all
            << ")\n";
  return true;
}

/// CLI11 reads integers as strtoll/strtoull do (base 0: hex and octal too)
/// and saturates one past its type's range (99999999999999999999 becomes
/// INT64_MAX), and an unsigned one wraps a minus sign (-1 becomes
/// UINT64_MAX): such a value of a parsed INT or UINT option of `app` or its
/// chosen subcommands, as an error naming the option; "" for none.
inline std::string integerOutOfRange(CLI::App &app) {
  for (const CLI::Option *option : app.get_options()) {
    const std::string type = option->get_type_name();
    const bool isUnsigned = type.rfind("UINT", 0) == 0;
    if (!isUnsigned && type.rfind("INT", 0) != 0)
      continue;
    for (const std::string &text : option->results()) {
      char *end = nullptr;
      errno = 0;
      const long long value = std::strtoll(text.c_str(), &end, 0);
      const bool pastSigned = errno == ERANGE;
      if (end == text.c_str() || *end != '\0')
        continue; // no whole number: CLI11 refused it, or read it otherwise
      if (isUnsigned && value < 0)
        return option->get_name() + ": must be >= 0, got " + text;
      errno = 0;
      if (isUnsigned && (std::strtoull(text.c_str(), nullptr, 0), errno == ERANGE))
        return option->get_name() + ": " + text + " is out of range (at most " +
               std::to_string(UINT64_MAX) + ")";
      if (!isUnsigned && pastSigned)
        return option->get_name() + ": " + text + " is out of range (" +
               (value < 0 ? "at least " + std::to_string(INT64_MIN)
                          : "at most " + std::to_string(INT64_MAX)) +
               ")";
    }
  }
  for (CLI::App *sub : app.get_subcommands())
    if (std::string error = integerOutOfRange(*sub); !error.empty())
      return error;
  return "";
}

} // namespace detail

/// The bytes of a size such as "80GiB", "141GB", "1.5 TB" or "16908288": a
/// number of bytes, or a number (a fraction allowed) and a unit, B, KB, MB,
/// GB, TB, PB, EB (powers of 1000; K, M, ... too) or KiB, MiB, GiB, TiB,
/// PiB, EiB (powers of 1024; Ki, Mi, ... too), either case; a fraction of a
/// unit rounds to the nearest byte. Returns the error ("" for none), which
/// says what would be valid: not a size, a minus sign, zero bytes, past
/// 2^64 - 1 bytes, or a fraction of a byte.
inline std::string parseByteSize(const std::string &text, uint64_t &bytes) {
  static const std::pair<const char *, long double> units[] = {
      {"", 1},         {"k", 1e3L},      {"m", 1e6L},      {"g", 1e9L},      {"t", 1e12L},
      {"p", 1e15L},    {"e", 1e18L},     {"ki", 0x1p10L},  {"mi", 0x1p20L},  {"gi", 0x1p30L},
      {"ti", 0x1p40L}, {"pi", 0x1p50L},  {"ei", 0x1p60L}};
  const std::string valid = "a size is a number of bytes, or a number and a unit (KB, MB, GB, "
                            "TB, PB, EB, or KiB ... EiB), e.g. 80GiB or 141GB";
  // Scanned by hand: std::regex recurses per character, and a long
  // argument overflowed the stack.
  auto isDigit = [](char c) { return c >= '0' && c <= '9'; };
  size_t i = text.find_first_not_of(" \t"), digits = 0;
  i = i == std::string::npos ? text.size() : i;
  const bool negative = i < text.size() && text[i] == '-';
  const size_t begin = i += negative;
  for (; i < text.size() && isDigit(text[i]); ++i)
    ++digits;
  if (i < text.size() && text[i] == '.')
    for (++i; i < text.size() && isDigit(text[i]); ++i)
      ++digits;
  const std::string number = text.substr(begin, i - begin);
  std::string unit;
  for (i = std::min(text.find_first_not_of(" \t", i), text.size()); i < text.size(); ++i)
    unit += char(std::tolower(static_cast<unsigned char>(text[i])));
  unit.erase(std::min(unit.find_last_not_of(" \t") + 1, unit.size()));
  if (unit.size() > 1 && unit.back() == 'b')
    unit.pop_back(); // KB is K, KiB is Ki
  else if (unit == "b")
    unit.clear();
  const auto *found = std::find_if(std::begin(units), std::end(units),
                                   [&](const auto &u) { return unit == u.first; });
  if (digits == 0 || found == std::end(units))
    return "'" + text + "' is not a size; " + valid;
  if (negative)
    return "'" + text + "' is negative; " + valid;
  const long double value = std::strtold(number.c_str(), nullptr) * found->second;
  if (found->second == 1 && value != std::floor(value))
    return "'" + text + "' is not a whole number of bytes; give a unit (e.g. 1.5GiB) for "
           "a fraction";
  const long double rounded = std::nearbyint(value);
  if (rounded == 0)
    return "'" + text + "' " + (value == 0 ? "is" : "rounds to") + " 0 bytes; a size must be "
           "at least 1 byte";
  if (rounded >= 0x1p64L) // 2^64 exactly, whatever long double's mantissa
    return "'" + text + "' is out of range (at most " + std::to_string(UINT64_MAX) +
           " bytes, 16 EiB)";
  bytes = static_cast<uint64_t>(rounded);
  return "";
}

/// A CLI11 transform that replaces a size (parseByteSize) with its bytes, or
/// fails with parseByteSize's error, which CLI11 prefixes with the option's
/// name. Unlike CLI::AsSizeValue, it refuses a size past 2^64 - 1 bytes
/// (which that saturated) and a minus sign (which it wrapped).
inline CLI::Validator byteSize() {
  return CLI::Validator(
      [](std::string &text) {
        uint64_t bytes = 0;
        std::string error = parseByteSize(text, bytes);
        if (error.empty())
          text = std::to_string(bytes);
        return error;
      },
      "SIZE");
}

/// Parses the command line. Returns the exit code when the tool should stop
/// now (after --help, --version or a parse error, which is printed as
/// "error: ..." with the flag or command most likely meant, or the help
/// command), nullopt when it should go on. `explainWord` may give the error
/// for an unexpected word that is no flag (e.g. mtc train's key=value given
/// to mtc compile); "" leaves it to CLI11's message.
inline std::optional<int> parseCommandLine(CLI::App &app, int argc, char **argv,
                                           const WordExplainer &explainWord = {}) {
  try {
    app.parse(argc, argv);
    if (std::string error = detail::integerOutOfRange(app); !error.empty()) {
      std::cerr << "error: " << error << "\nRun `" << detail::helpCommand(app)
                << "` for the options.\n";
      return int(CLI::ExitCodes::ValidationError);
    }
    return std::nullopt;
  } catch (const CLI::ParseError &e) {
    bool failed = e.get_exit_code() != 0;
    if (failed && detail::explainUnknownCommand(app, argc, argv))
      return e.get_exit_code();
    // An unknown flag explains the rest (a required option it misspelt).
    if (failed && detail::explainUnknownFlags(app, explainWord))
      return e.get_exit_code();
    // Any other mistake (a value of the wrong type, a missing file) reads as
    // every other error does, with the help that lists each option's type.
    if (failed) {
      std::cerr << "error: " << e.what() << "\nRun `" << detail::helpCommand(app)
                << "` for the options.\n";
      return e.get_exit_code();
    }
    return app.exit(e);
  }
}

} // namespace mt::tools

#endif // MT_TOOLS_COMMON_COMMANDLINE_H
