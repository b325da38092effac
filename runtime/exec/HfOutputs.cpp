// output_dir as transformers' Trainer and LLaMA-Factory leave it.
#include "runtime/exec/HfOutputs.h"

#include "runtime/exec/Weights.h"
#include "runtime/io/Safetensors.h"
#include "runtime/support/AtomicFile.h"
#include "runtime/support/FileKind.h"
#include "runtime/support/OutputPath.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mt::exec {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Status copyFileAtomically(const std::string &from, const std::string &to) {
  if (std::string what = notARegularFile(from); !what.empty())
    return Status::error(from + ": " + what + ", not a file to copy");
  std::ifstream in(from, std::ios::binary);
  if (!in)
    return Status::error(from + ": cannot read");
  return io::writeFileAtomically(to, [&](std::ostream &out) {
    out << in.rdbuf();
    return in.bad() ? Status::error(from + ": cannot read") : Status::ok();
  });
}

Status writeJson(const std::string &path, const json &value) {
  // transformers: json.dumps(..., indent=2, sort_keys=True) + "\n".
  return io::writeFileAtomically(path, [&](std::ostream &out) {
    out << value.dump(2) << "\n";
    return Status::ok();
  });
}

/// "H:MM:SS" as LLaMA-Factory's LogCallback spells durations.
std::string durationText(double seconds) {
  int64_t s = int64_t(seconds);
  char text[32];
  std::snprintf(text, sizeof(text), "%lld:%02lld:%02lld", (long long)(s / 3600),
                (long long)(s / 60 % 60), (long long)(s % 60));
  return text;
}

} // namespace

std::vector<std::pair<int64_t, fs::path>> checkpoints(const std::string &dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto &entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_directory(ec) || name.rfind("checkpoint-", 0) != 0)
      continue;
    // At most 18 digits: every such N fits int64_t (std::stoll would throw).
    std::string digits = name.substr(11);
    if (!digits.empty() && digits.size() <= 18 &&
        std::all_of(digits.begin(), digits.end(), ::isdigit))
      found.push_back({std::stoll(digits), entry.path()});
  }
  std::sort(found.begin(), found.end());
  return found;
}

Status checkNewRunOutputDir(const HfOutputOptions &o, const std::string &resumeDir) {
  if (o.outputDir.empty() || o.overwriteOutputDir || !resumeDir.empty())
    return Status::ok();
  const auto found = checkpoints(o.outputDir);
  if (found.empty())
    return Status::ok();
  const fs::path &newest = found.back().second;
  return Status::error("--hf-output " + o.outputDir + " holds an earlier run's " +
                       newest.filename().string() +
                       (found.size() > 1 ? " (and " + std::to_string(found.size() - 1) + " more)"
                                         : "") +
                       ": a new run's checkpoints would mix with them; give "
                       "--overwrite-output-dir to remove them before the first step, --resume " +
                       newest.string() + " to continue that run, or another --hf-output");
}

Expected<std::vector<std::string>> removeEarlierCheckpoints(const std::string &outputDir) {
  const auto found = checkpoints(outputDir);
  for (const auto &[n, path] : found)
    if (!fs::is_directory(path / kMtcStateDir))
      return Status::error("overwrite_output_dir: " + path.string() + " has no " + kMtcStateDir +
                           "/ (not written by mtc): move it out of " + outputDir +
                           ", or give another output_dir; nothing was removed");
  std::vector<std::string> removed;
  for (const auto &[n, path] : found) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec && fs::exists(path))
      return Status::error("overwrite_output_dir: cannot remove the earlier run's " +
                           path.string() + ": " + ec.message());
    removed.push_back(path.filename().string());
  }
  return removed;
}

std::vector<std::string> removeEarlierFinalModel(const std::string &outputDir,
                                                 const std::vector<std::string> &inputs) {
  std::error_code ec;
  const fs::path dir = fs::weakly_canonical(outputDir, ec);
  for (const std::string &input : inputs)
    if (!input.empty() && fs::weakly_canonical(input, ec) == dir)
      return {}; // the run's own model or tokenizer: an input, not a stale output
  std::vector<std::string> weights; // model.safetensors and save_pretrained's shards
  for (const auto &entry : fs::directory_iterator(outputDir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "model.safetensors" || io::isShardName(name))
      weights.push_back(name);
  }
  // Only a final model mtc wrote goes, with the files written beside it:
  // a model another tool put there (a download) is not this command's to
  // remove, as transformers' overwrite_output_dir removes nothing.
  if (weights.empty() ||
      !std::all_of(weights.begin(), weights.end(),
                   [&](const std::string &name) {
                     return io::isHfExportWeights((dir / name).string());
                   }))
    return {};
  std::vector<std::string> names = {"trainer_state.json", "training_loss.svg", "config.json",
                                    "model.safetensors", "model.safetensors.index.json"};
  names.insert(names.end(), tokenizerFileNames().begin(), tokenizerFileNames().end());
  std::erase(weights, "model.safetensors");
  std::sort(weights.begin(), weights.end());
  names.insert(names.end(), weights.begin(), weights.end());
  std::vector<std::string> removed;
  for (const std::string &name : names)
    if (fs::is_regular_file(dir / name, ec) && fs::remove(dir / name, ec))
      removed.push_back(name);
  return removed;
}

namespace {

/// Keeps the records of trainer_log.jsonl at `path` up to `step`
/// (current_steps <= step), replacing the file atomically: the steps after
/// a checkpoint that an interrupted run logged are logged again by the run
/// that resumes from it. A line that is not such a record (one cut short
/// when the run was killed) is dropped; a missing file stays missing.
Status truncateLog(const std::string &path, int64_t step) {
  if (std::string what = notARegularFile(path); !what.empty())
    return Status::error(path + ": " + what + ", not the run's trainer_log.jsonl");
  std::ifstream in(path);
  if (!in)
    return Status::ok();
  std::string kept, line;
  while (std::getline(in, line)) {
    json record = json::parse(line, nullptr, false);
    if (record.is_object() && record.contains("current_steps") &&
        record["current_steps"].is_number_integer() &&
        record["current_steps"].get<int64_t>() <= step)
      kept += line + "\n";
  }
  if (in.bad())
    return Status::error(path + ": cannot read");
  return io::writeFileAtomically(path, [&](std::ostream &out) {
    out << kept;
    return Status::ok();
  });
}

/// A resumed run's trainer_log.jsonl at `path` must be its checkpoint's run:
/// where the log records `step`, the checkpoint's last logged step, its loss
/// and learning rate are the checkpoint's (`loss`, `lr`); another run's
/// output_dir would otherwise get this run's records after its own, and its
/// checkpoints replaced. No file, or no record at that step: ok.
Status checkLogIsTheCheckpoints(const std::string &path, int64_t step, double loss, double lr,
                                const std::string &resumeDir) {
  if (!notARegularFile(path).empty())
    return Status::ok();
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    json record = json::parse(line, nullptr, false);
    if (!record.is_object() || record.value("current_steps", json()) != json(step))
      continue;
    const json logged = {record.value("loss", json()), record.value("lr", json())};
    if (logged == json{loss, lr})
      return Status::ok();
    return Status::error(path + " is another run's log: at step " + std::to_string(step) +
                         " it records loss and learning rate " + logged.dump() + ", the "
                         "checkpoint " + resumeDir + " " + json{loss, lr}.dump() +
                         "; resuming would append "
                         "to it and replace that run's checkpoints. Give the checkpoint's own "
                         "output_dir (--hf-output), or a new one");
  }
  return Status::ok();
}

} // namespace

const std::vector<std::string> &tokenizerFileNames() {
  static const std::vector<std::string> names = {
      "tokenizer.json",   "tokenizer_config.json", "special_tokens_map.json",
      "vocab.json",       "merges.txt",            "tokenizer.model",
      "added_tokens.json", "chat_template.jinja",  "generation_config.json"};
  return names;
}

Expected<HfRunOutputs> HfRunOutputs::open(const HfOutputOptions &options,
                                          const std::string &resumeDir, int64_t resumedStep,
                                          int64_t globalBatch, int64_t maxSteps, bool writer) {
  if (options.maxShardBytes == 0)
    return Status::error("the maximum shard size must be > 0 bytes");
  // The tokenizer files each checkpoint copies: refused now rather than at
  // the first checkpoint, after training steps (a FIFO's read would wait).
  if (!options.tokenizerDir.empty())
    for (const std::string &name : tokenizerFileNames()) {
      const std::string path = options.tokenizerDir + "/" + name;
      if (std::string what = notARegularFile(path); !what.empty())
        return Status::error(path + ": " + what + ", not a file to copy");
    }
  HfRunOutputs out;
  out.options_ = options;
  out.globalBatch_ = globalBatch;
  out.maxSteps_ = maxSteps;
  out.writer_ = writer;
  if (!resumeDir.empty()) {
    // checkpoint-N/mtc-state: the log so far is in checkpoint-N/trainer_state.json.
    fs::path state = fs::path(resumeDir).parent_path() / "trainer_state.json";
    if (std::string what = notARegularFile(state.string()); !what.empty())
      return Status::error(state.string() + ": " + what +
                           ", not the checkpoint's trainer_state.json");
    if (std::ifstream in(state); in) { // none: a log that starts at the checkpoint
      try {
        const json saved = json::parse(in); // kept alive: the loop reads into it
        for (const json &e : saved.at("log_history")) {
          // get<int64_t> would truncate 2.5, and wrap a step past INT64_MAX.
          const json &step = e.at("step");
          if (!step.is_number_integer() ||
              (step.is_number_unsigned() ? step.get<uint64_t>() > uint64_t(INT64_MAX)
                                         : step.get<int64_t>() < 1))
            return Status::error(state.string() + ": log_history: a step must be a whole "
                                 "number from 1 to " + std::to_string(INT64_MAX) + ", got " +
                                 step.dump() + " in " + e.dump());
          if (step.get<int64_t>() <= resumedStep)
            out.history_.push_back({step.get<int64_t>(), e.at("loss").get<double>(),
                                    e.at("grad_norm").get<double>(),
                                    e.at("learning_rate").get<double>()});
        }
      } catch (const json::exception &e) {
        return Status::error(state.string() + ": log_history: " + e.what());
      }
    }
  }
  if (!resumeDir.empty() && !out.history_.empty())
    if (Status s = checkLogIsTheCheckpoints(options.outputDir + "/trainer_log.jsonl",
                                            out.history_.back().step, out.history_.back().loss,
                                            out.history_.back().learningRate, resumeDir);
        !s)
      return s;
  if (writer) {
    std::error_code ec;
    fs::create_directories(options.outputDir, ec);
    if (ec)
      return Status::error(options.outputDir + ": cannot create: " + ec.message());
    // A fresh run starts the log; a resumed one appends (LLaMA-Factory)
    // to the records up to its checkpoint.
    const std::string log = options.outputDir + "/trainer_log.jsonl";
    if (Status s = resumeDir.empty() ? io::writeFileAtomically(log, [](std::ostream &) {
                                         return Status::ok();
                                       })
                                     : truncateLog(log, resumedStep);
        !s)
      return s;
  }
  return out;
}

double HfRunOutputs::epochAt(int64_t step) const {
  return options_.samplesPerEpoch > 0
             ? double(step * globalBatch_) / double(options_.samplesPerEpoch)
             : 0.0;
}

Status HfRunOutputs::logStep(const LoggedStep &s) {
  lossSum_ += s.loss;
  ++lossCount_;
  if (s.step % options_.loggingSteps != 0 && s.step != maxSteps_)
    return Status::ok();
  double mean = std::round(lossSum_ / double(lossCount_) * 1e4) / 1e4; // transformers: round(, 4)
  history_.push_back({s.step, mean, s.gradNorm, s.learningRate});
  lossSum_ = 0, lossCount_ = 0;
  if (!writer_)
    return Status::ok();
  double perStep = s.elapsedSeconds / double(std::max<int64_t>(1, s.stepsThisRun));
  json line = {{"current_steps", s.step},
               {"total_steps", maxSteps_},
               {"loss", mean},
               {"lr", s.learningRate},
               {"epoch", std::round(epochAt(s.step) * 100) / 100},
               {"percentage", std::round(1e4 * double(s.step) / double(maxSteps_)) / 100},
               {"elapsed_time", durationText(s.elapsedSeconds)},
               {"remaining_time", durationText(perStep * double(maxSteps_ - s.step))}};
  std::ofstream log(options_.outputDir + "/trainer_log.jsonl", std::ios::app);
  log << line.dump() << "\n";
  log.flush();
  return log ? Status::ok() : Status::error(options_.outputDir + "/trainer_log.jsonl: cannot write");
}

Status HfRunOutputs::writeModel(const plan::Plan &plan, const HostMemory &memory,
                                const RankContext *rank, const std::string &dir) const {
  // exportHf gathers the full tensors (collective) and rounds them to the
  // export's dtype; world rank 0 then re-shards them as save_pretrained
  // does, in that dtype (widened to fp32 and narrowed back: exact).
  const std::string scratch = options_.outputDir + "/.mtc-export";
  if (Status s = exportHf(plan, memory, rank, scratch, HfExpertLayout::PerExpert,
                          options_.exportDtype);
      !s)
    return s;
  if (!writer_)
    return Status::ok();
  auto file = io::openSafetensors(scratch + "/model.safetensors");
  if (!file)
    return file.status();
  std::vector<std::vector<float>> values;
  std::vector<io::TensorToWrite> tensors;
  values.reserve(file->tensors().size());
  for (const io::TensorInfo &t : file->tensors()) {
    values.emplace_back(t.numElements());
    if (Status s = file->readAsFloat32(t.name, values.back().data(), values.back().size()); !s)
      return s;
    tensors.push_back({t.name, t.dtype, t.shape, values.back().data()});
  }
  if (Status s = io::writeHfExportSafetensors(dir, tensors, options_.maxShardBytes); !s)
    return s;
  if (Status s = copyFileAtomically(scratch + "/config.json", dir + "/config.json"); !s)
    return s;
  for (const std::string &name : tokenizerFileNames())
    if (!options_.tokenizerDir.empty() && fs::exists(options_.tokenizerDir + "/" + name))
      if (Status s = copyFileAtomically(options_.tokenizerDir + "/" + name, dir + "/" + name); !s)
        return s;
  std::error_code ec;
  fs::remove_all(scratch, ec);
  return Status::ok();
}

Status HfRunOutputs::writeTrainerState(const std::string &dir, int64_t step) const {
  json history = json::array();
  for (const LogEntry &e : history_)
    history.push_back({{"epoch", epochAt(e.step)},
                       {"grad_norm", e.gradNorm},
                       {"learning_rate", e.learningRate},
                       {"loss", e.loss},
                       {"step", e.step}});
  int64_t epochs = options_.samplesPerEpoch > 0
                       ? int64_t(std::ceil(epochAt(maxSteps_) - 1e-9))
                       : 0;
  json state = {{"best_global_step", nullptr},   {"best_metric", nullptr},
                {"best_model_checkpoint", nullptr}, {"epoch", epochAt(step)},
                {"eval_steps", options_.loggingSteps}, {"global_step", step},
                {"is_hyper_param_search", false}, {"is_local_process_zero", true},
                {"is_world_process_zero", true},  {"log_history", history},
                {"logging_steps", options_.loggingSteps}, {"max_steps", maxSteps_},
                {"num_input_tokens_seen", 0},     {"num_train_epochs", epochs},
                {"save_steps", options_.saveSteps}, {"stateful_callbacks", json::object()},
                {"total_flos", 0.0},              {"train_batch_size", options_.microBatch},
                {"trial_name", nullptr},          {"trial_params", nullptr}};
  return writeJson(dir + "/trainer_state.json", state);
}

Status HfRunOutputs::saveCheckpoint(const plan::Plan &plan, const HostMemory &memory,
                                    const RankContext *rank, const RunState &state) {
  const std::string dir = options_.outputDir + "/checkpoint-" + std::to_string(state.step);
  const std::string mtcState = options_.outputDir + "/.mtc-state";
  if (Status s = exec::saveCheckpoint(plan, memory, rank, mtcState, state); !s)
    return s;
  if (!writer_) // the gathers of the weights only
    return writeModel(plan, memory, rank, "");
  // Built aside and renamed into place: a crash leaves no half checkpoint-N.
  Status s = io::replaceOutputDirectory(dir, io::OutputKind::HfExport, [&](const std::string &tmp) {
    if (Status st = writeModel(plan, memory, rank, tmp); !st)
      return st;
    if (Status st = writeTrainerState(tmp, state.step); !st)
      return st;
    std::error_code ec;
    fs::rename(mtcState, fs::path(tmp) / kMtcStateDir, ec);
    return ec ? Status::error(mtcState + ": cannot move into " + dir + ": " + ec.message())
              : Status::ok();
  });
  if (!s)
    return s;
  return prune();
}

Status HfRunOutputs::prune() const {
  if (options_.saveTotalLimit <= 0)
    return Status::ok();
  auto found = checkpoints(options_.outputDir);
  for (size_t i = 0; i + size_t(options_.saveTotalLimit) < found.size(); ++i) {
    std::error_code ec;
    fs::remove_all(found[i].second, ec);
    if (ec)
      return Status::error(found[i].second.string() + ": cannot remove (save_total_limit " +
                           std::to_string(options_.saveTotalLimit) + "): " + ec.message());
  }
  return Status::ok();
}

Status HfRunOutputs::finish(const plan::Plan &plan, const HostMemory &memory,
                            const RankContext *rank, int64_t step) {
  if (Status s = writeModel(plan, memory, rank, options_.outputDir); !s)
    return s;
  if (!writer_)
    return Status::ok();
  if (Status s = writeTrainerState(options_.outputDir, step); !s)
    return s;
  return options_.plotLoss ? writeLossCurve() : Status::ok();
}

Status HfRunOutputs::writeLossCurve() const {
  // training_loss.svg: log_history's losses against steps, as LLaMA-Factory's
  // plot_loss draws training_loss.png.
  const double width = 640, height = 400, left = 60, right = 20, top = 30, bottom = 40;
  double lo = 0, hi = 1;
  int64_t first = 0, last = 1;
  if (!history_.empty()) {
    lo = hi = history_[0].loss;
    first = history_.front().step, last = std::max(history_.back().step, first + 1);
    for (const LogEntry &e : history_)
      lo = std::min(lo, e.loss), hi = std::max(hi, e.loss);
    if (hi - lo < 1e-12)
      hi = lo + 1;
  }
  auto x = [&](int64_t step) { return left + (width - left - right) * double(step - first) / double(last - first); };
  auto y = [&](double loss) { return top + (height - top - bottom) * (hi - loss) / (hi - lo); };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"18\" text-anchor=\"middle\">training loss of "
      << options_.outputDir << "</text>\n"
      << "<line x1=\"" << left << "\" y1=\"" << height - bottom << "\" x2=\"" << width - right
      << "\" y2=\"" << height - bottom << "\" stroke=\"black\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\""
      << height - bottom << "\" stroke=\"black\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"" << height - 8 << "\" text-anchor=\"middle\">step ("
      << first << " to " << last << ")</text>\n"
      << "<text x=\"4\" y=\"" << top + 4 << "\">" << hi << "</text>\n"
      << "<text x=\"4\" y=\"" << height - bottom << "\">" << lo << "</text>\n"
      << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
  for (const LogEntry &e : history_)
    svg << x(e.step) << "," << y(e.loss) << " ";
  svg << "\"/>\n</svg>\n";
  return io::writeFileAtomically(options_.outputDir + "/training_loss.svg", [&](std::ostream &out) {
    out << svg.str();
    return Status::ok();
  });
}

} // namespace mt::exec
