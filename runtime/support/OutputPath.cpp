// Output paths: recognising what is on disk (mtc's own outputs by marker or
// format, anything else foreign) and refusing writes that would destroy it.
#include "runtime/support/OutputPath.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/Version.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <unistd.h>

namespace mt::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct KindInfo {
  OutputKind kind;
  const char *name; // in markers
  const char *noun; // in messages
  bool directory;
};

constexpr std::array<KindInfo, 10> kKinds = {{
    {OutputKind::Plan, "plan", "a plan directory", true},
    {OutputKind::Checkpoint, "checkpoint", "a checkpoint directory", true},
    {OutputKind::HfExport, "hf-export", "a Hugging Face export directory", true},
    {OutputKind::IrDump, "ir-dump", "an IR dump directory", true},
    {OutputKind::Model, "model", "a model file (mtc import-hf)", false},
    {OutputKind::TokenFile, "token-file", "a token file", false},
    {OutputKind::Metrics, "metrics", "a metrics file", false},
    {OutputKind::PipelineSvg, "pipeline-svg", "a pipeline SVG", false},
    {OutputKind::LogitsDump, "logits-dump", "a logits dump", false},
    {OutputKind::SftFile, "sft-file", "a prepared SFT file", false},
}};

const KindInfo &infoOf(OutputKind kind) {
  return *std::find_if(kKinds.begin(), kKinds.end(),
                       [&](const KindInfo &k) { return k.kind == kind; });
}

constexpr const char *kSvgSignature = "<!-- pipeline-svg written by mtc ";
// How scheduleSvg began before the signature line existed.
constexpr const char *kLegacySvgPrefix =
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"";
constexpr const char *kLegacySvgSecondLine =
    "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";

/// What a path holds, as far as mtc's outputs are concerned.
struct Found {
  enum State { Absent, Empty, Mtc, Foreign, Special } state = Absent;
  bool directory = false;
  std::optional<OutputKind> kind;      // Mtc; also Foreign when a marker names it
  std::vector<std::string> strangers;  // directory entries mtc did not write
};

/// The first `bytes` (all: npos) of a regular file; "" for anything else (a
/// FIFO's open would wait for a writer) or a file that cannot be read.
std::string readPrefix(const fs::path &path, size_t bytes = std::string::npos) {
  if (fileKindOf(path.string()) != FileKind::Regular)
    return "";
  std::ifstream in(path, std::ios::binary);
  std::string text;
  char buffer[4096];
  while (text.size() < bytes) {
    in.read(buffer, std::streamsize(std::min(sizeof buffer, bytes - text.size())));
    if (in.gcount() <= 0)
      break;
    text.append(buffer, size_t(in.gcount()));
  }
  return text;
}

std::string firstLine(const std::string &text) { return text.substr(0, text.find('\n')); }

bool startsWith(const std::string &text, std::string_view prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

/// `object`[`key`] when `object` is an object holding that key; null else.
json memberOf(const json &object, const char *key) {
  return object.is_object() && object.contains(key) ? object[key] : json();
}

/// `object`[`key`] when it is a string; "" else.
std::string textAt(const json &object, const char *key) {
  json value = memberOf(object, key);
  return value.is_string() ? value.get<std::string>() : std::string();
}

/// The JSON header of the safetensors file at `path` (whose first bytes are
/// `prefix`), or a non-object when it is none or larger than `maxBytes`.
json safetensorsHeader(const fs::path &path, const std::string &prefix, uint64_t maxBytes) {
  if (prefix.size() < 8)
    return json();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | uint64_t(static_cast<unsigned char>(prefix[size_t(i)]));
  if (n == 0 || n > maxBytes)
    return json();
  const std::string text = readPrefix(path, size_t(8 + n)); // shorter if the file changed
  return text.size() < 8 ? json() : json::parse(text.substr(8), nullptr, false);
}

/// A safetensors file of exactly the tensors logits and input_ids with the
/// micro_batch metadata, as mtrun --dump-logits writes it.
bool isLogitsDump(const fs::path &path, const std::string &prefix) {
  json h = safetensorsHeader(path, prefix, 1u << 20);
  if (!h.is_object() || h.size() != 3 || !h.contains("logits") || !h.contains("input_ids"))
    return false;
  const json &meta = h.value("__metadata__", json());
  return meta.is_object() && meta.contains("micro_batch");
}

/// The kind of an mtc output file, recognised by its format.
std::optional<OutputKind> fileKind(const fs::path &path) {
  std::string head = readPrefix(path, 4096);
  std::string line = firstLine(head);
  if (startsWith(head, "MTTOKENS"))
    return OutputKind::TokenFile;
  if (startsWith(head, "MTSFTROW"))
    return OutputKind::SftFile;
  if (startsWith(line, "module attributes {") && line.find("mt.hf_config = ") != std::string::npos)
    return OutputKind::Model;
  if (startsWith(line, "{\"step\": ") && line.find("\"tokens_per_s\": ") != std::string::npos)
    return OutputKind::Metrics;
  if (startsWith(head, kSvgSignature) ||
      (startsWith(head, kLegacySvgPrefix) &&
       head.find(kLegacySvgSecondLine) == line.size()))
    return OutputKind::PipelineSvg;
  if (isLogitsDump(path, head))
    return OutputKind::LogitsDump;
  return std::nullopt;
}

std::set<std::string> entriesOf(const fs::path &dir, std::error_code &ec) {
  std::set<std::string> names;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    names.insert(it->path().filename().string());
  return names;
}

} // namespace

bool isHfExportWeights(const std::string &path) {
  json header = safetensorsHeader(path, readPrefix(path, 8), 100u << 20);
  return textAt(memberOf(header, "__metadata__"), kSafetensorsOutputKey) ==
         outputKindName(OutputKind::HfExport);
}

namespace {

/// A directory written by an mtc before markers, recognised by its files.
std::optional<OutputKind> legacyDirectoryKind(const fs::path &dir,
                                              const std::set<std::string> &names) {
  using S = std::set<std::string>;
  if (names == S{"plan.pb", "plan.txt"})
    return OutputKind::Plan;
  S checkpoint = {"trainer.json", "model.safetensors", "optimizer.safetensors"};
  if (names.count("trainer.json") &&
      std::includes(checkpoint.begin(), checkpoint.end(), names.begin(), names.end()))
    return OutputKind::Checkpoint;
  // An export whose directory marker is gone says so in its safetensors
  // header (kSafetensorsOutputKey). A float32 model without it is not
  // taken for an export made before that key: a download can hold just
  // these two files, and replacing it would lose it.
  if (names == S{"config.json", "model.safetensors"} &&
      isHfExportWeights((dir / "model.safetensors").string()))
    return OutputKind::HfExport;
  // Every dump starts with the pipeline's input.
  static const std::regex dump("[0-9][0-9]-.+\\.mlir");
  if (names.count("00-input.mlir") &&
      std::all_of(names.begin(), names.end(),
                  [](const std::string &n) { return std::regex_match(n, dump); }))
    return OutputKind::IrDump;
  return std::nullopt;
}

Found inspectDirectory(const fs::path &dir) {
  Found found;
  found.directory = true;
  std::error_code ec;
  std::set<std::string> names = entriesOf(dir, ec);
  if (ec) { // unreadable: nothing can be said to be ours
    found.state = Found::Foreign;
    found.strangers = {"cannot list it: " + ec.message()};
    return found;
  }
  if (names.empty()) {
    found.state = Found::Empty;
    return found;
  }
  std::set<std::string> ours;
  if (names.erase(kOutputMarkerFile)) {
    json marker = json::parse(readPrefix(dir / kOutputMarkerFile), nullptr, false);
    std::string name = marker.is_object() ? marker.value("mtc_output", "") : "";
    for (const KindInfo &k : kKinds)
      if (name == k.name && k.directory)
        found.kind = k.kind;
    if (found.kind && marker.contains("files") && marker["files"].is_array())
      for (const json &f : marker["files"])
        if (f.is_string())
          ours.insert(f.get<std::string>());
    if (!found.kind)
      found.strangers.push_back(std::string(kOutputMarkerFile) + " (not a marker of this mtc)");
  } else {
    found.kind = legacyDirectoryKind(dir, names);
    if (found.kind)
      ours = names;
  }
  for (const std::string &n : names)
    if (!ours.count(n))
      found.strangers.push_back(n);
  found.state = found.kind && found.strangers.empty() ? Found::Mtc : Found::Foreign;
  return found;
}

Found inspect(const fs::path &path) {
  Found found;
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status))
    return found;
  if (fs::is_directory(status))
    return inspectDirectory(path);
  if (!fs::is_regular_file(status)) {
    found.state = Found::Special;
    return found;
  }
  if (fs::file_size(path, ec) == 0 && !ec) {
    found.state = Found::Empty;
    return found;
  }
  found.kind = fileKind(path);
  found.state = found.kind ? Found::Mtc : Found::Foreign;
  return found;
}

/// The absolute path with symbolic links and "." / ".." resolved as far as
/// it exists, and no trailing separator.
fs::path canonicalOf(const std::string &path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec)
    p = fs::absolute(path, ec).lexically_normal();
  if (!p.has_filename() && p != p.root_path())
    p = p.parent_path();
  return p;
}

/// Whether `inner` lies strictly below `outer`.
bool isBelow(const fs::path &inner, const fs::path &outer) {
  auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end() && i != inner.end();
}

bool samePath(const fs::path &a, const fs::path &b) {
  std::error_code ec;
  return a == b || fs::equivalent(a, b, ec);
}

std::string listed(const std::vector<std::string> &names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 3; ++i)
    out += (i ? ", " : "") + names[i];
  if (names.size() > 3)
    out += " and " + std::to_string(names.size() - 3) + " more";
  return out;
}

/// What is at a path, in words, for messages.
std::string describe(const Found &f) {
  if (f.state == Found::Special)
    return "not a regular file or directory";
  if (f.state == Found::Empty)
    return f.directory ? "an empty directory" : "an empty file";
  if (f.state == Found::Mtc)
    return infoOf(*f.kind).noun;
  if (!f.directory)
    return "a file mtc did not write";
  if (f.kind)
    return std::string(infoOf(*f.kind).noun) + " that also holds files mtc did not write (" +
           listed(f.strangers) + ")";
  std::string text = "a directory holding files mtc did not write (" + listed(f.strangers) + ")";
  if (f.strangers == std::vector<std::string>{"config.json", "model.safetensors"})
    text += "; if an mtc older than its export marker wrote them, remove the directory "
            "yourself";
  return text;
}

Status refuse(const OutputTarget &o, const std::string &why) {
  return Status::error(o.flag + " " + o.path + ": " + why);
}

/// Refuses the current directory and the directories containing it:
/// replacing them would pull the ground from under the command.
Status checkNotCurrentDirectory(const OutputTarget &o, const fs::path &target) {
  std::error_code ec;
  fs::path cwd = canonicalOf(fs::current_path(ec).string());
  if (ec)
    return Status::ok();
  if (target == cwd)
    return refuse(o, "is the current directory; choose a new directory");
  if (isBelow(cwd, target))
    return refuse(o, "contains the current directory; choose a new directory");
  return Status::ok();
}

/// The output can be created where it goes: its temporary is made beside
/// it, so the parent must be a writable directory; a directory output
/// creates missing parents, so for it the nearest existing one must be.
Status checkParentDirectory(const OutputTarget &o) {
  const fs::path target = canonicalOf(o.path);
  fs::path parent = target.parent_path();
  std::error_code ec;
  while (!fs::exists(parent, ec) && infoOf(o.kind).directory && parent != parent.root_path())
    parent = parent.parent_path();
  if (!fs::exists(parent, ec))
    return refuse(o, "its directory " + parent.string() +
                         " does not exist: create it first, or choose another path");
  if (!fs::is_directory(parent, ec))
    return refuse(o, parent.string() + " is a file, not a directory: choose another path");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    return refuse(o, "cannot write into " + parent.string() + " (" + std::strerror(errno) +
                         "): choose another path");
  return Status::ok();
}

/// What is already at `o.path` may be replaced by an output of `o.kind`.
Status checkContent(const OutputTarget &o, bool overwrite) {
  const KindInfo &want = infoOf(o.kind);
  Found f = inspect(o.path);
  if (f.state == Found::Special && o.kind == OutputKind::Metrics) {
    // Streamed into, not replaced: a character device (/dev/null, a
    // terminal's /dev/stdout) or a FIFO (a piped /dev/stdout, >(...)), whose
    // reader openMetrics checks for when it opens it. A socket cannot be
    // opened, and a block device is a disk the lines would overwrite.
    struct stat st {};
    if (::stat(o.path.c_str(), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)))
      return Status::ok();
    return refuse(o, std::string("is ") + (S_ISSOCK(st.st_mode)  ? "a socket"
                                           : S_ISBLK(st.st_mode) ? "a block device"
                                                                 : "not a regular file") +
                         "; " + o.flag + " writes a metrics file: give a regular file (or "
                         "/dev/null, /dev/stdout, or a FIFO that a program reads)");
  }
  if (Status s = checkParentDirectory(o); !s)
    return s;
  if (f.state == Found::Absent)
    return Status::ok();
  std::string is = "is " + describe(f);
  if (f.state == Found::Special || want.directory != f.directory)
    return refuse(o, is + "; " + o.flag + " writes " + want.noun + ": choose another path");
  if (f.state == Found::Empty || (f.state == Found::Mtc && f.kind == o.kind))
    return Status::ok();
  if (f.state == Found::Foreign && f.directory)
    return refuse(o, is + "; " + o.flag + " replaces only " + want.noun +
                         " that mtc wrote: choose another path, or move those files away");
  if (overwrite)
    return Status::ok();
  return refuse(o, is + "; " + o.flag + " writes " + want.noun +
                       ": pass --overwrite to replace it, or choose another path");
}

} // namespace

std::string_view outputKindName(OutputKind kind) { return infoOf(kind).name; }

Status checkOutputs(const std::vector<OutputTarget> &outputs,
                    const std::vector<InputPath> &inputs, bool overwrite) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const OutputTarget &o = outputs[i];
    if (o.path.empty())
      continue;
    const bool directory = infoOf(o.kind).directory;
    const fs::path target = canonicalOf(o.path);
    if (directory)
      if (Status s = checkNotCurrentDirectory(o, target); !s)
        return s;
    for (const InputPath &in : inputs) {
      if (in.path.empty())
        continue;
      fs::path source = canonicalOf(in.path);
      if (samePath(source, target) && in.replaceableBy != o.kind)
        return refuse(o, "is an input of this command (" + in.flag +
                             "); mtc never replaces its inputs: choose another path");
      if (directory && isBelow(source, target))
        return refuse(o, "contains an input of this command (" + in.flag + " " + in.path +
                             "), and " + o.flag + " replaces the whole directory: choose "
                             "another path");
    }
    for (size_t j = 0; j < outputs.size(); ++j) {
      const OutputTarget &other = outputs[j];
      if (j == i || other.path.empty())
        continue;
      fs::path there = canonicalOf(other.path);
      if (j < i && samePath(there, target))
        return refuse(o, "is also the path of " + other.flag +
                             "; give each output its own path");
      if (infoOf(other.kind).directory && isBelow(target, there))
        return refuse(o, "lies inside the directory of " + other.flag +
                             ", which is replaced as a whole: choose a path outside it");
    }
    if (Status s = checkContent(o, overwrite); !s)
      return s;
  }
  return Status::ok();
}

Status replaceOutputDirectory(const std::string &dir, OutputKind kind,
                              const std::function<Status(const std::string &tmpDir)> &fill) {
  // The last guard: the flags' own checks ran in checkOutputs; here only
  // what no flag may allow is refused.
  OutputTarget self{"output", dir, kind};
  if (Status s = checkNotCurrentDirectory(self, canonicalOf(dir)); !s)
    return s;
  Found f = inspect(dir);
  if (f.state != Found::Absent && !(f.directory && (f.state == Found::Empty ||
                                                    f.state == Found::Mtc)))
    return Status::error(dir + ": refusing to replace it: it is " + describe(f));
  return replaceDirectoryAtomically(dir, [&](const std::string &tmp) -> Status {
    if (Status s = fill(tmp); !s)
      return s;
    std::error_code ec;
    std::set<std::string> names = entriesOf(tmp, ec);
    if (ec)
      return Status::error(tmp + ": cannot list: " + ec.message());
    json marker = {{"mtc_output", outputKindName(kind)},
                   {"mtc_version", kMtcVersion},
                   {"files", names}};
    std::ofstream out(fs::path(tmp) / kOutputMarkerFile);
    out << marker.dump(2) << "\n";
    if (!out.flush())
      return Status::error(tmp + "/" + kOutputMarkerFile + ": cannot write");
    return Status::ok();
  });
}

Status writePipelineSvg(const std::string &path, const std::string &svg) {
  return writeFileAtomically(path, [&](std::ostream &out) {
    out << kSvgSignature << kMtcVersion << " -->\n" << svg;
    return Status::ok();
  });
}

} // namespace mt::io
