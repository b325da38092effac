// What a command of mtc may replace when it writes an output: the one check
// every tool runs on its output paths before it starts any work, and the
// marker file that makes mtc's own output directories recognisable.
#ifndef MT_RUNTIME_SUPPORT_OUTPUTPATH_H
#define MT_RUNTIME_SUPPORT_OUTPUTPATH_H

#include "runtime/support/Status.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mt::io {

/// What mtc writes. Directories carry a marker file (kOutputMarkerFile);
/// files are recognised by their own format.
enum class OutputKind {
  Plan,        ///< mtc compile -o: plan.pb, plan.txt
  Checkpoint,  ///< mtrun --save: model/optimizer safetensors, trainer.json
  HfExport,    ///< mtrun --export-hf: model.safetensors, config.json
  IrDump,      ///< mtc compile --dump-dir: NN-<pass>.mlir
  Model,       ///< mtc import-hf -o: MLIR whose module carries mt.hf_config
  TokenFile,   ///< mt-tokenize -o: starts with the "MTTOKENS" magic
  Metrics,     ///< mtrun --metrics: JSON lines {"step": ..., "tokens_per_s": ...}
  PipelineSvg, ///< mtc compile --schedule-svg, mtrun --timeline
  LogitsDump,  ///< mtrun --dump-logits: safetensors of logits and input_ids
  SftFile,     ///< mt-prepare-sft -o: starts with the "MTSFTROW" magic
};

/// The directory marker's name: a JSON object {"mtc_output": kind name,
/// "mtc_version": kMtcVersion, "files": [the entries the writer made]}.
inline constexpr const char *kOutputMarkerFile = "mtc-output.json";

/// The entry of a safetensors header's `__metadata__` by which a Hugging Face
/// export is recognised as mtc's when its directory marker is gone (a copy
/// of model.safetensors and config.json only): "mtc_output": "hf-export".
/// transformers reads only "format" there, so the entry travels unseen.
inline constexpr const char *kSafetensorsOutputKey = "mtc_output";

/// Whether the safetensors file at `path` is a model file of an mtc export
/// (or final model): its header's metadata says kSafetensorsOutputKey
/// "hf-export". False for anything else, unreadable files included.
bool isHfExportWeights(const std::string &path);

/// The rules of checkOutputs in words, for the tools' --help.
inline constexpr const char *kOutputRulesHelp =
    "Outputs replace only what is absent, empty, or mtc's own output of the same\n"
    "kind (a directory marked by mtc-output.json, or a file of the kind's format);\n"
    "never an input of the command, the current directory, or a directory holding\n"
    "files mtc did not write. --overwrite also lets them replace an mtc output of\n"
    "another kind, or a file mtc did not write.";

/// "plan", "checkpoint", "hf-export", "ir-dump", "model", "token-file",
/// "metrics", "pipeline-svg", "logits-dump": the name in markers.
std::string_view outputKindName(OutputKind kind);

/// One output of a command: the flag that names it (for messages), the
/// path, and what will be written there. An empty path means "not asked
/// for" and is skipped.
struct OutputTarget {
  std::string flag;
  std::string path;
  OutputKind kind;
};

/// One input of a command: its flag, or for a positional argument its name
/// in words ("the model").
/// `replaceableBy`: an output of this kind may replace it, because the
/// command reads it completely first and replacing it is the point
/// (`mtrun --resume ck --save ck` continues the run in ck).
struct InputPath {
  std::string flag;
  std::string path;
  std::optional<OutputKind> replaceableBy = std::nullopt;
};

/// Checks, before a command does any work, that writing each of `outputs`
/// destroys nothing the user did not ask to replace. An output path may be:
///  - absent, an empty directory (directory kinds) or an empty file (file
///    kinds);
///  - mtc's own output of the same kind: a directory whose marker names the
///    kind and that holds only the files the marker lists, or a file of the
///    kind's format. Directories an mtc before the marker wrote are
///    recognised by their exact files: a plan {plan.pb, plan.txt}; a
///    checkpoint trainer.json with at most model.safetensors and
///    optimizer.safetensors; an export {config.json, model.safetensors}
///    whose config says torch_dtype or dtype float32 (every export before
///    the marker was float32) or whose model.safetensors header carries
///    kSafetensorsOutputKey "hf-export" (an export in any dtype); a dump:
///    00-input.mlir and other NN-<pass>.mlir files only;
///  - with `overwrite`: mtc's own output directory of another kind, or any
///    regular file.
/// It is never: an input of the command (same canonical path or the same
/// file), a directory that contains an input, the current directory or one
/// that contains it, the path of another output or a path inside another
/// output directory, a file where a directory is written or the reverse,
/// a directory holding anything mtc did not write, or a path whose
/// directory does not exist (for a file; a directory's missing parents are
/// created), is a file, or cannot be written into. A FIFO or character
/// device (e.g. /dev/null, /dev/stdout) is accepted for Metrics, which is
/// streamed (mtrun refuses a FIFO that nothing reads when it opens it); a
/// socket or block device is not.
/// The error names the flag, the path and what is there.
Status checkOutputs(const std::vector<OutputTarget> &outputs,
                    const std::vector<InputPath> &inputs, bool overwrite);

/// replaceDirectoryAtomically (AtomicFile.h) for an output directory of
/// `kind`: after `fill`, the marker listing what `fill` wrote is added. As a
/// last guard for callers that skipped checkOutputs, it refuses (leaving
/// `dir` untouched) a target that is not absent, an empty directory or an
/// mtc output directory, or that is or contains the current directory.
Status replaceOutputDirectory(const std::string &dir, OutputKind kind,
                              const std::function<Status(const std::string &tmpDir)> &fill);

/// Writes `svg` (a complete SVG document) atomically to `path` with a first
/// line "<!-- pipeline-svg written by mtc VERSION -->" by which a later
/// checkOutputs recognises it.
Status writePipelineSvg(const std::string &path, const std::string &svg);

} // namespace mt::io

#endif // MT_RUNTIME_SUPPORT_OUTPUTPATH_H
