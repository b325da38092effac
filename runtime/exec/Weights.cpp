// Safetensors in and out for the parameters of a plan, on any layout.
#include "runtime/exec/Weights.h"

#include "runtime/exec/Sharding.h"
#include "runtime/plan/Stages.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/OutputPath.h"
#include "runtime/io/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace mt::exec {
namespace {

using io::OutputKind;

/// One Hugging Face tensor of a plan parameter: grouped experts are split
/// into one tensor per expert ('*' replaced by the expert number).
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t offset; // elements into the full parameter
  uint64_t count;
};

std::vector<HfTensor> hfTensorsOf(const plan::Parameter &p, const std::string &prefix = "") {
  std::vector<int64_t> shape(p.shape().begin(), p.shape().end());
  uint64_t total = fullElements(p);
  if (p.hf_rows() > 0) { // a padded vocabulary: the padding rows stay out of files
    total = total / uint64_t(shape[0]) * uint64_t(p.hf_rows());
    shape[0] = p.hf_rows();
  }
  if (!p.grouped_experts())
    return {{prefix + p.name(), shape, 0, total}};
  std::vector<HfTensor> out;
  std::vector<int64_t> expertShape(shape.begin() + 1, shape.end());
  uint64_t perExpert = total / uint64_t(shape[0]);
  size_t star = p.name().find('*');
  for (int64_t e = 0; e < shape[0]; ++e) {
    std::string name = p.name();
    name.replace(star, 1, std::to_string(e));
    out.push_back({prefix + name, expertShape, uint64_t(e) * perExpert, perExpert});
  }
  return out;
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool tiedEmbeddings(const plan::Plan &plan) {
  auto config = nlohmann::json::parse(plan.hf_config_json(), nullptr, false);
  return config.is_object() && config.value("tie_word_embeddings", false);
}

int64_t shardOf(const plan::Parameter &p, const RankContext *rank) {
  return p.sharded() && rank ? rank->coordinate(p.shard_axis()) : 0;
}

/// The state a file section holds: prefix of names -> buffer of a parameter.
struct Role {
  const char *prefix;
  uint32_t (*buffer)(const plan::Parameter &);
  bool trainableOnly;
};
const Role kWeights{"", [](const plan::Parameter &p) { return p.param_buffer(); }, false};
const Role kExpAvg{"exp_avg.", [](const plan::Parameter &p) { return p.exp_avg_buffer(); }, true};
const Role kExpAvgSq{"exp_avg_sq.", [](const plan::Parameter &p) { return p.exp_avg_sq_buffer(); },
                     true};

/// Reads the tensors of `role` for every parameter: whole from the file,
/// then this rank's slice into its buffer. Reports every problem at once.
template <typename Source>
Status readRole(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                const Source &source, const Role &role, std::set<std::string> &used) {
  std::ostringstream problems;
  int count = 0;
  std::vector<float> full;
  for (const plan::Parameter &p : plan.parameters()) {
    if (role.trainableOnly && !p.trainable())
      continue;
    // Every rank checks every tensor; only the stages holding it read it.
    const bool held = plan::stageHolds(p, rank ? rank->coordinate("pp") : 0);
    if (held)
      full.assign(fullElements(p), 0.0f);
    bool complete = true;
    for (const HfTensor &t : hfTensorsOf(p, role.prefix)) {
      const io::TensorInfo *info = source.find(t.name);
      std::string problem;
      if (!info)
        problem = "missing: " + t.name + " " + shapeText(t.shape);
      else if (info->shape != t.shape)
        problem = "mis-shaped: " + t.name + " is " + shapeText(info->shape) +
                  ", the model needs " + shapeText(t.shape);
      else if (held) { // another stage's parameter is checked, not read
        if (Status s = source.readAsFloat32(t.name, full.data() + t.offset, t.count); !s)
          problem = s.message();
      }
      if (info)
        used.insert(t.name);
      if (!problem.empty()) {
        problems << "\n  " << problem;
        ++count, complete = false;
      }
    }
    if (complete && held)
      sliceFull(p, shardOf(p, rank), full.data(), memory.f32(role.buffer(p)));
  }
  if (count)
    return Status::error(std::to_string(count) + " tensor(s) do not fit the model:" +
                         problems.str());
  return Status::ok();
}

/// The full tensor of a parameter's buffer: gathered over its shard axis.
Status gatherFull(const plan::Parameter &p, uint32_t buffer, const HostMemory &memory,
                  const RankContext *rank, std::vector<float> &full) {
  full.assign(fullElements(p), 0.0f);
  const float *local = memory.f32(buffer);
  comm::Communicator *group = p.sharded() && rank ? rank->group(p.shard_axis()) : nullptr;
  if (!group) {
    placeSlice(p, 0, local, full.data());
  } else {
    uint64_t localCount = uint64_t(memory.elements(buffer));
    std::vector<float> all(localCount * uint64_t(group->size()));
    if (Status s = group->allGatherHost(local, all.data(), localCount); !s)
      return s;
    for (int r = 0; r < group->size(); ++r)
      placeSlice(p, r, all.data() + uint64_t(r) * localCount, full.data());
  }
  // Only the pipeline stage that owns a parameter has trained it.
  if (comm::Communicator *pp = rank ? rank->group("pp") : nullptr)
    return pp->broadcastHost(full.data(), full.size(), p.stage());
  return Status::ok();
}

/// Gathers `roles` of every parameter; world rank 0 writes them to `path`.
Status writeRoles(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                  const std::string &path, const std::vector<Role> &roles) {
  std::deque<std::vector<float>> storage;
  std::vector<io::TensorToWrite> tensors;
  for (const Role &role : roles)
    for (const plan::Parameter &p : plan.parameters()) {
      if (role.trainableOnly && !p.trainable())
        continue;
      storage.emplace_back();
      if (Status s = gatherFull(p, role.buffer(p), memory, rank, storage.back()); !s)
        return s;
      for (const HfTensor &t : hfTensorsOf(p, role.prefix))
        tensors.push_back({t.name, io::Dtype::F32, t.shape, storage.back().data() + t.offset});
    }
  if (rank && rank->rank() != 0)
    return Status::ok();
  return io::writeSafetensors(path, tensors, {{"format", "pt"}});
}

/// Runs `fill` into a fresh directory replacing the output directory `dir`
/// of `kind` on rank 0; the other ranks take part in the gathers only.
Status replaceOnRankZero(const RankContext *rank, const std::string &dir, OutputKind kind,
                         const std::function<Status(const std::string &)> &fill) {
  if (!rank || rank->rank() == 0)
    return io::replaceOutputDirectory(dir, kind, fill);
  return fill(std::string());
}

/// The source config saying once that the tensors are float32 (as
/// writeRoles writes them), in the spelling of the source's transformers:
/// `dtype` since 4.56, `torch_dtype` before. A source with neither key is
/// judged by its transformers_version.
nlohmann::json float32Config(nlohmann::json config) {
  int major = 0, minor = 0;
  std::sscanf(config.value("transformers_version", std::string()).c_str(), "%d.%d", &major,
              &minor);
  bool dtypeKey = config.contains("dtype") ||
                  (!config.contains("torch_dtype") && (major > 4 || (major == 4 && minor >= 56)));
  config.erase("dtype");
  config.erase("torch_dtype");
  config[dtypeKey ? "dtype" : "torch_dtype"] = "float32";
  return config;
}

} // namespace

Status loadHfWeights(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                     const std::string &dir) {
  auto ckpt = io::openCheckpoint(dir);
  if (!ckpt)
    return ckpt.status();
  std::set<std::string> used;
  Status read = readRole(plan, memory, rank, *ckpt, kWeights, used);
  std::ostringstream unexpected;
  int count = 0;
  for (const std::string &name : ckpt->names()) {
    // A tied model's checkpoint may carry lm_head.weight: the same tensor.
    if (used.count(name) || (name == "lm_head.weight" && tiedEmbeddings(plan)))
      continue;
    unexpected << "\n  unexpected: " << name;
    ++count;
  }
  if (!read || count)
    return Status::error(dir + ": the checkpoint does not match the model" +
                         (read ? "" : ": " + read.message()) +
                         (count ? "\n" + std::to_string(count) + " tensor(s) the model does "
                                  "not have:" + unexpected.str() : ""));
  return Status::ok();
}

Status exportHf(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                const std::string &dir) {
  auto config = nlohmann::json::parse(plan.hf_config_json(), nullptr, false);
  if (!config.is_object())
    return Status::error("the plan carries no Hugging Face config.json to export");
  return replaceOnRankZero(rank, dir, OutputKind::HfExport, [&](const std::string &tmp) {
    if (Status s = writeRoles(plan, memory, rank, tmp + "/model.safetensors", {kWeights}); !s)
      return s;
    if (!tmp.empty()) {
      std::ofstream out(tmp + "/config.json");
      out << float32Config(config).dump(2) << "\n";
      if (!out.flush())
        return Status::error(tmp + "/config.json: cannot write");
    }
    return Status::ok();
  });
}

Status saveCheckpoint(const plan::Plan &plan, const HostMemory &memory,
                      const RankContext *rank, const std::string &dir,
                      const CheckpointState &state) {
  return replaceOnRankZero(rank, dir, OutputKind::Checkpoint, [&](const std::string &tmp) {
    if (Status s = writeRoles(plan, memory, rank, tmp + "/model.safetensors", {kWeights}); !s)
      return s;
    if (Status s = writeRoles(plan, memory, rank, tmp + "/optimizer.safetensors",
                              {kExpAvg, kExpAvgSq});
        !s)
      return s;
    if (!tmp.empty()) {
      nlohmann::json trainer = {{"step", state.step}, {"seed", state.seed},
                                {"plan_version", plan.version()}};
      std::ofstream(tmp + "/trainer.json") << trainer.dump(2) << "\n";
    }
    return Status::ok();
  });
}

Expected<CheckpointState> loadCheckpoint(const plan::Plan &plan, HostMemory &memory,
                                         const RankContext *rank, const std::string &dir) {
  if (!rank || rank->rank() == 0)
    if (Status s = io::recoverInterruptedReplace(dir); !s)
      return s;
  if (rank && rank->world())
    if (Status s = rank->world()->barrier(); !s)
      return s;
  // `dir` as the user typed it, with or without a trailing slash.
  auto file = [&](const char *name) { return (std::filesystem::path(dir) / name).string(); };
  std::ifstream in(file("trainer.json"));
  auto trainer = nlohmann::json::parse(in, nullptr, false);
  if (!in || !trainer.is_object() || !trainer.contains("step"))
    return Status::error(file("trainer.json") + ": missing or malformed (not a checkpoint "
                                                "written by mtrun --save)");
  std::set<std::string> used;
  auto model = io::openSafetensors(file("model.safetensors"));
  if (!model)
    return model.status();
  if (Status s = readRole(plan, memory, rank, *model, kWeights, used); !s)
    return Status::error(file("model.safetensors") + ": " + s.message());
  auto opt = io::openSafetensors(file("optimizer.safetensors"));
  if (!opt)
    return opt.status();
  for (const Role *role : {&kExpAvg, &kExpAvgSq})
    if (Status s = readRole(plan, memory, rank, *opt, *role, used); !s)
      return Status::error(file("optimizer.safetensors") + ": " + s.message());
  return CheckpointState{trainer["step"].get<int64_t>(), trainer.value("seed", uint64_t(0))};
}

} // namespace mt::exec
