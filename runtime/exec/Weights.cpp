// Safetensors in and out for the parameters of a plan.
#include "runtime/exec/Weights.h"

#include "runtime/io/AtomicFile.h"
#include "runtime/io/Safetensors.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace mt::exec {
namespace {

/// One Hugging Face tensor of a plan parameter: grouped experts are split
/// into one tensor per expert ('*' replaced by the expert number).
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t offset; // elements into the parameter buffer
  uint64_t count;
};

std::vector<HfTensor> hfTensorsOf(const plan::Parameter &p) {
  std::vector<int64_t> shape(p.shape().begin(), p.shape().end());
  uint64_t total = 1;
  for (int64_t d : shape)
    total *= uint64_t(d);
  if (!p.grouped_experts())
    return {{p.name(), shape, 0, total}};
  std::vector<HfTensor> out;
  std::vector<int64_t> expertShape(shape.begin() + 1, shape.end());
  uint64_t perExpert = total / uint64_t(shape[0]);
  size_t star = p.name().find('*');
  for (int64_t e = 0; e < shape[0]; ++e) {
    std::string name = p.name();
    name.replace(star, 1, std::to_string(e));
    out.push_back({name, expertShape, uint64_t(e) * perExpert, perExpert});
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

/// Reads tensors named `prefix + HF name` of every parameter into the
/// buffers chosen by `bufferOf`; reports all problems at once.
Status readTensors(const plan::Plan &plan, HostMemory &memory,
                   const io::SafetensorsCheckpoint &ckpt, const std::string &prefix,
                   uint32_t (*bufferOf)(const plan::Parameter &), bool trainableOnly,
                   std::set<std::string> &used) {
  std::ostringstream problems;
  int count = 0;
  for (const plan::Parameter &p : plan.parameters()) {
    if (trainableOnly && !p.trainable())
      continue;
    float *base = memory.f32(bufferOf(p));
    for (const HfTensor &t : hfTensorsOf(p)) {
      std::string name = prefix + t.name;
      const io::TensorInfo *info = ckpt.find(name);
      if (!info) {
        problems << "\n  missing: " << name << " " << shapeText(t.shape);
        ++count;
        continue;
      }
      used.insert(name);
      if (info->shape != t.shape) {
        problems << "\n  mis-shaped: " << name << " is " << shapeText(info->shape)
                 << ", the model needs " << shapeText(t.shape);
        ++count;
        continue;
      }
      if (Status s = ckpt.readAsFloat32(name, base + t.offset, t.count); !s) {
        problems << "\n  " << s.message();
        ++count;
      }
    }
  }
  if (count)
    return Status::error(std::to_string(count) + " tensor(s) do not fit the model:" +
                         problems.str());
  return Status::ok();
}

using BufferOf = uint32_t (*)(const plan::Parameter &);

/// Writes one safetensors file with, per group (name prefix, buffer), a
/// tensor per HF name; optimizer state exists for trainable parameters only.
Status writeTensors(const plan::Plan &plan, const HostMemory &memory,
                    const std::string &path,
                    const std::vector<std::pair<std::string, BufferOf>> &groups,
                    bool trainableOnly) {
  std::vector<io::TensorToWrite> tensors;
  for (const auto &[prefix, bufferOf] : groups)
    for (const plan::Parameter &p : plan.parameters()) {
      if (trainableOnly && !p.trainable())
        continue;
      const float *base = memory.f32(bufferOf(p));
      for (const HfTensor &t : hfTensorsOf(p))
        tensors.push_back({prefix + t.name, io::Dtype::F32, t.shape, base + t.offset});
    }
  return io::writeSafetensors(path, tensors, {{"format", "pt"}});
}

uint32_t paramBuffer(const plan::Parameter &p) { return p.param_buffer(); }
uint32_t expAvgBuffer(const plan::Parameter &p) { return p.exp_avg_buffer(); }
uint32_t expAvgSqBuffer(const plan::Parameter &p) { return p.exp_avg_sq_buffer(); }

} // namespace

Status loadHfWeights(const plan::Plan &plan, HostMemory &memory, const std::string &dir) {
  auto ckpt = io::openCheckpoint(dir);
  if (!ckpt)
    return ckpt.status();
  std::set<std::string> used;
  Status read = readTensors(plan, memory, *ckpt, "", paramBuffer, false, used);
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

Status exportHf(const plan::Plan &plan, const HostMemory &memory, const std::string &dir) {
  return io::replaceDirectoryAtomically(dir, [&](const std::string &tmp) -> Status {
    if (Status s = writeTensors(plan, memory, tmp + "/model.safetensors", {{"", paramBuffer}}, false);
        !s)
      return s;
    auto config = nlohmann::json::parse(plan.hf_config_json(), nullptr, false);
    if (!config.is_object())
      return Status::error("the plan carries no Hugging Face config.json to export");
    config["torch_dtype"] = "float32";
    std::ofstream(tmp + "/config.json") << config.dump(2) << "\n";
    return Status::ok();
  });
}

Status saveCheckpoint(const plan::Plan &plan, const HostMemory &memory,
                      const std::string &dir, const CheckpointState &state) {
  return io::replaceDirectoryAtomically(dir, [&](const std::string &tmp) -> Status {
    if (Status s = writeTensors(plan, memory, tmp + "/model.safetensors", {{"", paramBuffer}}, false);
        !s)
      return s;
    if (Status s = writeTensors(plan, memory, tmp + "/optimizer.safetensors",
                                {{"exp_avg.", expAvgBuffer}, {"exp_avg_sq.", expAvgSqBuffer}},
                                true);
        !s)
      return s;
    nlohmann::json trainer = {{"step", state.step}, {"seed", state.seed},
                              {"plan_version", plan.version()}};
    std::ofstream(tmp + "/trainer.json") << trainer.dump(2) << "\n";
    return Status::ok();
  });
}

Expected<CheckpointState> loadCheckpoint(const plan::Plan &plan, HostMemory &memory,
                                         const std::string &dir) {
  if (Status s = io::recoverInterruptedReplace(dir); !s)
    return s;
  std::ifstream in(dir + "/trainer.json");
  auto trainer = nlohmann::json::parse(in, nullptr, false);
  if (!in || !trainer.is_object() || !trainer.contains("step"))
    return Status::error(dir + "/trainer.json: missing or malformed (not a checkpoint "
                               "written by mtrun --save)");
  std::set<std::string> used;
  auto model = io::openCheckpoint(dir);
  if (!model)
    return model.status();
  if (Status s = readTensors(plan, memory, *model, "", paramBuffer, false, used); !s)
    return Status::error(dir + ": " + s.message());
  auto opt = io::openSafetensors(dir + "/optimizer.safetensors");
  if (!opt)
    return opt.status();
  for (const plan::Parameter &p : plan.parameters()) {
    if (!p.trainable())
      continue;
    for (const auto &[prefix, buffer] : {std::pair{"exp_avg.", p.exp_avg_buffer()},
                                         std::pair{"exp_avg_sq.", p.exp_avg_sq_buffer()}})
      for (const HfTensor &t : hfTensorsOf(p))
        if (Status s = opt->readAsFloat32(prefix + t.name, memory.f32(buffer) + t.offset,
                                          t.count);
            !s)
          return Status::error(dir + "/optimizer.safetensors: " + s.message());
  }
  return CheckpointState{trainer["step"].get<int64_t>(), trainer.value("seed", uint64_t(0))};
}

} // namespace mt::exec
