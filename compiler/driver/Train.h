// `mtc train CONFIG.yaml`: a LLaMA-Factory-style run from one file: the
// model directory imported, the plan compiled for the YAML's layout, the
// data prepared, and mtrun started on it (or, --prepare-only, all of it
// written into a run directory for `mtrun` elsewhere).
#ifndef MT_COMPILER_DRIVER_TRAIN_H
#define MT_COMPILER_DRIVER_TRAIN_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mt {

class ConfigErrors;

struct TrainCommandOptions {
  std::string configPath;                // the YAML ("" : keys from the command line only)
  std::vector<std::string> overrideArgs; // --key value, --key=value, key=value
  bool prepareOnly = false;              // write the run directory, do not train
  std::string runDir;   // model.mlir, plan/, data.tokens, train.sh ("": output_dir/mtc-run)
  bool explain = false; // print the layout, the batch and the schedule in words
  uint64_t maxShardBytes = 5000000000; // save_pretrained's max_shard_size
  std::string executable; // argv[0] of mtc: mtrun and mt-tokenize are found beside it
  /// Under a launcher: seconds the other local ranks wait for local rank 0
  /// to prepare the run.
  double launchTimeout = 3600;
};

/// Runs the command; diagnostics go to stderr. Returns false on failure.
/// Every key is read and checked before anything is written, and all of
/// their errors are reported together. train.sh runs from any directory:
/// it names the plan and data, and the paths the keys gave relative, by its
/// own directory, and absolute paths as they are (mtrun's command here has
/// absolute paths only).
/// Under torchrun, Slurm or OpenMPI every process runs it: local rank 0 of
/// each node prepares the run and the others wait (Launch.h); the world size
/// is the launcher's. Without a launcher, NPROC_PER_NODE (LLaMA-Factory's
/// variable) local ranks, else tp x pp.
/// Warnings (stderr) where a key is turned off or the run is odd but still
/// a run: sequence_parallel at tp 1 (before any work, as Megatron-Core),
/// data smaller than one global batch (after the data step). output_dir
/// (TrainOutputDir.h): a resumed checkpoint must be of the same run (checked
/// before the data step), and a new run with overwrite_output_dir: true
/// removes the checkpoint-N directories an earlier run left there. An
/// earlier preparation in the run directory is replaced only once `mtrun
/// --check` accepts the new one; a refusal leaves it as it was.
bool trainCommand(const TrainCommandOptions &options);

//===----------------------------------------------------------------------===//
// The data step: stage sft through mt-prepare-sft (chat templates,
// LLaMA-Factory datasets, loss masks), stage pt through mt-tokenize.
//===----------------------------------------------------------------------===//

/// The dataset keys of a run (LLaMA-Factory's DataArguments) and where the
/// prepared data goes.
struct DataRequest {
  std::string modelDir;     // model_name_or_path: its tokenizer files
  std::string stage;        // "pt" or "sft"
  std::string dataset;      // comma-separated names of dataset_info.json, or files
  std::string datasetDir;   // where dataset_info.json and the files are
  std::string chatTemplate; // template (sft)
  int64_t cutoffLen = 0;    // tokens per sample (the plan's seq_length)
  int64_t maxSamples = 0;   // 0: all
  bool packing = false, neatPacking = false, trainOnPrompt = false, maskHistory = false;
  uint64_t seed = 0;
  std::string outputPath;   // the prepared data file to write
  std::string tokenizeTool; // mt-tokenize's path
  std::string prepareSftTool; // mt-prepare-sft's path
  /// Where keys were given ("file:line:col: ", "command line: "), as
  /// TrainConfig::whereGiven says, to begin their errors; none: "".
  std::map<std::string, std::string> where = {};
};

/// The prepared data: a token file (or prepared sft file) for mtrun
/// --data, and the number of samples one epoch has, from which
/// num_train_epochs sets the step count.
struct PreparedData {
  std::string path;
  int64_t samples = 0;
};

/// "; a relative path is read from the current directory, DIR" for a
/// relative `path` (a YAML's paths are not read from the YAML's directory),
/// else "": for errors about a path that is not there.
std::string relativePathNote(const std::string &path);

/// The request's key errors, added to `errors` (keys refused already are
/// not judged again): dataset and template not given, a model without the
/// tokenizer.json that stage sft needs; for stage pt, a dataset that names
/// no dataset_info.json entry and no file, a JSON dataset, and text to be
/// tokenized byte-level for a model whose `modelVocab` (0: unknown) holds
/// fewer than 256 ids.
void checkDataRequest(const DataRequest &request, ConfigErrors &errors,
                      int64_t modelVocab = 0);

/// checkDataRequest first (its errors returned together), then: stage pt:
/// the one dataset (a name of dataset_dir/dataset_info.json whose file_name
/// is used, or a file in dataset_dir, or a path) is either a
/// token file (passed on as is; max_samples is refused, a token file has no
/// examples) or text, tokenized by mt-tokenize with the
/// model's tokenizer.json (byte-level where the model directory has none;
/// max_samples keeps the first max_samples lines, LLaMA-Factory's examples);
/// samples = floor((tokens - 1) / cutoff_len), as runtime/io's Dataset
/// packs them. stage sft: mt-prepare-sft with the model's own
/// tokenizer (modelDir's tokenizer.json) and the request's LLaMA-Factory
/// keys; samples = the rows it wrote (runtime/io/SftFile.h).
Expected<PreparedData> prepareTrainingData(const DataRequest &request);

} // namespace mt

#endif // MT_COMPILER_DRIVER_TRAIN_H
