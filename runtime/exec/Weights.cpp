// Safetensors in and out for the parameters of a plan, on any layout.
#include "runtime/exec/Weights.h"

#include "runtime/exec/HfOutputs.h"
#include "runtime/exec/Sharding.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/AtomicFile.h"
#include "runtime/support/OutputPath.h"
#include "runtime/io/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

namespace mt::exec {
namespace {

using io::OutputKind;

/// Where a plan parameter lies in one Hugging Face tensor: `blocks` runs of
/// `count` elements, run b at `offset` + b x `count` of the full parameter
/// and at `fileOffset` + b x `fileStride` of the file's tensor `name`
/// [`shape`]. One run covering the whole tensor is the common case; a fused
/// gate_up_proj holds the gate and the up parameter as alternating runs.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t offset; // elements into the full parameter
  uint64_t count;
  uint64_t blocks = 1, fileOffset = 0, fileStride = 0;

  uint64_t fileElements() const {
    uint64_t n = 1;
    for (int64_t d : shape)
      n *= uint64_t(d);
    return n;
  }
  bool whole() const { return blocks == 1 && fileOffset == 0 && count == fileElements(); }
};

/// transformers 5's fused spelling of a parameter (HfExpertLayout::Fused):
/// conversion_mapping.py's WeightRenaming of Mixtral's block_sparse_moe to
/// mlp, and its WeightConverters merging the experts' gate and up
/// projections into experts.gate_up_proj and the down ones into
/// experts.down_proj (no ".weight"). Empty for a grouped parameter that is
/// not a gate, up or down projection.
std::vector<HfTensor> fusedTensorsOf(const plan::Parameter &p, const std::vector<int64_t> &shape,
                                     uint64_t total) {
  std::string name = p.name();
  if (size_t at = name.find(".block_sparse_moe."); at != std::string::npos)
    name.replace(at, std::string(".block_sparse_moe.").size(), ".mlp.");
  if (!p.grouped_experts())
    return {{name, shape, 0, total}};
  size_t star = name.find(".*.");
  if (star == std::string::npos)
    return {};
  std::string projection = name.substr(star + 3);
  std::string experts = name.substr(0, star) + ".";
  uint64_t E = uint64_t(shape[0]), perExpert = total / E;
  if (projection == "down_proj.weight" || projection == "w2.weight")
    return {{experts + "down_proj", shape, 0, total}};
  bool gate = projection == "gate_proj.weight" || projection == "w1.weight";
  if (!gate && projection != "up_proj.weight" && projection != "w3.weight")
    return {};
  std::vector<int64_t> fused = shape;
  fused[1] *= 2;
  return {{experts + "gate_up_proj", fused, 0, perExpert, E, gate ? 0 : perExpert,
           2 * perExpert}};
}

std::vector<HfTensor> hfTensorsOf(const plan::Parameter &p, const std::string &prefix = "",
                                  HfExpertLayout layout = HfExpertLayout::PerExpert) {
  std::vector<int64_t> shape(p.shape().begin(), p.shape().end());
  uint64_t total = fullElements(p);
  if (p.hf_rows() > 0) { // a padded vocabulary: the padding rows stay out of files
    total = total / uint64_t(shape[0]) * uint64_t(p.hf_rows());
    shape[0] = p.hf_rows();
  }
  if (layout == HfExpertLayout::Fused)
    if (std::vector<HfTensor> fused = fusedTensorsOf(p, shape, total); !fused.empty())
      return fused;
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

} // namespace

SplitCoordinates splitCoordinates(const plan::Parameter &p, const RankContext *rank) {
  SplitCoordinates coordinates;
  for (const plan::Split &split : p.splits())
    coordinates.push_back(rank ? rank->coordinate(split.axis()) : 0);
  return coordinates;
}

namespace {

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

/// A checkpoint's tensor files and the state each holds.
const std::vector<std::pair<std::string, std::vector<Role>>> kCheckpointFiles = {
    {"model.safetensors", {kWeights}}, {"optimizer.safetensors", {kExpAvg, kExpAvgSq}}};

/// Where the AdamW state of a parameter lies under the distributed
/// optimizer: in `bucket`, from element `offset` of the bucket's layout,
/// of which this rank holds its 1/parts.
struct BucketSlot {
  const plan::Bucket *bucket = nullptr;
  int64_t offset = 0;
};

std::map<std::string, BucketSlot> bucketSlots(const plan::Plan &plan) {
  std::map<std::string, BucketSlot> slots;
  for (const plan::Bucket &b : plan.buckets())
    for (const plan::BucketMember &m : b.members())
      slots[m.param()] = {&b, m.offset()};
  return slots;
}

/// The elements of the rank's local state `local` (`count` of them, at
/// `slot`) that its shard of the bucket (`size` elements) holds, copied
/// into `shard`.
void placeInShard(const BucketSlot &slot, const RankContext *rank, const float *local,
                  int64_t count, float *shard, int64_t size) {
  const int64_t begin = (rank ? rank->coordinate(slot.bucket->axis()) : 0) * size;
  for (int64_t i = std::max(slot.offset, begin); i < std::min(slot.offset + count, begin + size);
       ++i)
    shard[i - begin] = local[i - slot.offset];
}

/// Reads the tensors of `role` for every parameter: whole from the file,
/// then this rank's slice into its buffer (under the distributed optimizer,
/// the part of its slice in the rank's shard of the bucket). Reports every
/// problem at once. Without `memory` only the names and shapes are checked.
template <typename Source>
Status readRole(const plan::Plan &plan, HostMemory *memory, const RankContext *rank,
                const Source &source, const Role &role, std::set<std::string> &used,
                HfExpertLayout layout = HfExpertLayout::PerExpert) {
  std::ostringstream problems;
  int count = 0;
  std::vector<float> full, fileTensor, local;
  const std::map<std::string, BucketSlot> slots = bucketSlots(plan);
  for (const plan::Parameter &p : plan.parameters()) {
    if (role.trainableOnly && !p.trainable())
      continue;
    // Every rank checks every tensor; only the stages holding it read it.
    const bool held = memory && plan::stageHolds(p, rank ? rank->coordinate("pp") : 0);
    if (held)
      full.assign(fullElements(p), 0.0f);
    bool complete = true;
    for (const HfTensor &t : hfTensorsOf(p, role.prefix, layout)) {
      const io::TensorInfo *info = source.find(t.name);
      std::string problem;
      if (!info)
        problem = "missing: " + t.name + " " + shapeText(t.shape);
      else if (info->shape != t.shape)
        problem = "mis-shaped: " + t.name + " is " + shapeText(info->shape) +
                  ", the model needs " + shapeText(t.shape);
      else if (held && t.whole()) { // another stage's parameter is checked, not read
        if (Status s = source.readAsFloat32(t.name, full.data() + t.offset, t.count); !s)
          problem = s.message();
      } else if (held) {
        fileTensor.resize(t.fileElements());
        if (Status s = source.readAsFloat32(t.name, fileTensor.data(), fileTensor.size()); !s)
          problem = s.message();
        for (uint64_t b = 0; b < t.blocks && problem.empty(); ++b)
          std::copy_n(fileTensor.data() + t.fileOffset + b * t.fileStride, t.count,
                      full.data() + t.offset + b * t.count);
      }
      if (info)
        used.insert(t.name);
      if (!problem.empty()) {
        problems << "\n  " << problem;
        ++count, complete = false;
      }
    }
    if (!complete || !held)
      continue;
    auto slot = role.trainableOnly ? slots.find(p.name()) : slots.end();
    if (slot == slots.end()) {
      sliceFull(p, splitCoordinates(p, rank), full.data(), memory->f32(role.buffer(p)));
      continue;
    }
    local.resize(size_t(memory->elements(p.param_buffer())));
    sliceFull(p, splitCoordinates(p, rank), full.data(), local.data());
    placeInShard(slot->second, rank, local.data(), int64_t(local.size()),
                 memory->f32(role.buffer(p)), memory->elements(role.buffer(p)));
  }
  if (count)
    return Status::error(std::to_string(count) + " tensor(s) do not fit the model:" +
                         problems.str());
  return Status::ok();
}

/// The full tensor of a parameter from this rank's slice `local` of
/// `localCount` elements: gathered over the axis of each of its splits in
/// turn (so that slice i has the coordinates coordinatesOfSlice(p, i)), then
/// placed.
Status gatherFull(const plan::Parameter &p, const float *local, uint64_t localCount,
                  const RankContext *rank, std::vector<float> &full) {
  full.assign(fullElements(p), 0.0f);
  if (!rank || p.splits().empty()) {
    placeSlice(p, splitCoordinates(p, rank), local, full.data());
  } else {
    std::vector<float> all(local, local + localCount);
    for (const plan::Split &split : p.splits()) {
      if (split.parts() == 1)
        continue;
      comm::Communicator *group = rank->group(split.axis());
      if (!group || group->size() != split.parts())
        return Status::error("parameter '" + p.name() + "' is split " +
                             std::to_string(split.parts()) + " ways over mesh axis '" +
                             split.axis() + "', which this job has " +
                             std::to_string(group ? group->size() : 1) + " ranks on");
      std::vector<float> gathered(all.size() * uint64_t(group->size()));
      if (Status s = group->allGatherHost(all.data(), gathered.data(), all.size()); !s)
        return s;
      all = std::move(gathered);
    }
    for (uint64_t i = 0; i < all.size() / localCount; ++i)
      placeSlice(p, coordinatesOfSlice(p, int64_t(i)), all.data() + i * localCount, full.data());
  }
  // Only the pipeline stage that owns a parameter has trained it.
  if (comm::Communicator *pp = rank ? rank->group("pp") : nullptr)
    return pp->broadcastHost(full.data(), full.size(), p.stage());
  return Status::ok();
}

/// The full tensors of `roles` of every parameter, in file order.
struct GatheredTensors {
  std::deque<std::vector<float>> storage; // stable addresses for `tensors`
  std::vector<io::TensorToWrite> tensors;
  std::map<std::string, float *> composed; // file tensors made of several parameters

  io::Dtype dtype = io::Dtype::F32; // what the file holds (the writer rounds)

  /// Adds the file tensors holding `t` of a parameter whose full values are
  /// `full` (kept in `storage` when a tensor points into them).
  void add(const HfTensor &t, const std::vector<float> &full) {
    if (t.whole()) {
      tensors.push_back({t.name, dtype, t.shape, full.data() + t.offset});
      return;
    }
    auto [it, fresh] = composed.try_emplace(t.name, nullptr);
    if (fresh) {
      storage.emplace_back(t.fileElements(), 0.0f);
      it->second = storage.back().data();
      tensors.push_back({t.name, dtype, t.shape, it->second});
    }
    for (uint64_t b = 0; b < t.blocks; ++b)
      std::copy_n(full.data() + t.offset + b * t.count, t.count,
                  it->second + t.fileOffset + b * t.fileStride);
  }
};

/// Gathers `roles` of every parameter (collective: every rank calls it);
/// only a rank that `keeps` them stores the result in `out`.
Status gatherRoles(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                   const std::vector<Role> &roles, bool keep, GatheredTensors &out,
                   HfExpertLayout layout = HfExpertLayout::PerExpert) {
  std::vector<float> full;
  const std::map<std::string, BucketSlot> slots = bucketSlots(plan);
  for (const Role &role : roles) {
    // Under the distributed optimizer, the role's bucket state whole on
    // every rank of its axis (gathered once per bucket).
    std::map<uint32_t, std::vector<float>> buckets;
    for (const plan::Parameter &p : plan.parameters()) {
      if (role.trainableOnly && !p.trainable())
        continue;
      const uint32_t buffer = role.buffer(p);
      const float *local = memory.f32(buffer);
      uint64_t localCount = uint64_t(memory.elements(buffer));
      if (auto slot = role.trainableOnly ? slots.find(p.name()) : slots.end();
          slot != slots.end()) {
        auto [whole, first] = buckets.try_emplace(buffer);
        if (first) {
          const plan::Bucket &b = *slot->second.bucket;
          comm::Communicator *group = rank ? rank->group(b.axis()) : nullptr;
          if (b.parts() == 1) { // experts with edp 1: the shard is the bucket
            whole->second.assign(local, local + localCount);
          } else if (!group || group->size() != b.parts()) {
            return Status::error("the optimizer state of '" + p.name() + "' is sharded " +
                                 std::to_string(b.parts()) + " ways over mesh axis '" +
                                 b.axis() + "', which this job has " +
                                 std::to_string(group ? group->size() : 1) + " ranks on");
          } else {
            whole->second.resize(localCount * uint64_t(b.parts()));
            if (Status s = group->allGatherHost(local, whole->second.data(), localCount); !s)
              return s;
          }
        }
        local = whole->second.data() + slot->second.offset;
        localCount = uint64_t(memory.elements(p.param_buffer()));
      }
      if (Status s = gatherFull(p, local, localCount, rank, full); !s)
        return s;
      if (!keep)
        continue;
      out.storage.push_back(std::move(full));
      const std::vector<float> &kept = out.storage.back();
      for (const HfTensor &t : hfTensorsOf(p, role.prefix, layout))
        out.add(t, kept);
    }
  }
  return Status::ok();
}

/// Tells every rank whether world rank 0 succeeded (collective; `ok` counts
/// on rank 0 only). Returns false on the others when rank 0 failed.
Expected<bool> rankZeroSucceeded(comm::Communicator &world, bool ok) {
  float flag = ok ? 1.0f : 0.0f;
  if (Status s = world.broadcastHost(&flag, 1, 0); !s)
    return s;
  return flag != 0.0f;
}

/// Runs `fill` into a fresh directory replacing the output directory `dir`
/// of `kind` (io::replaceOutputDirectory) on world rank 0; the
/// other ranks run it with an empty path and take part in its gathers only.
/// `fill` must make the same collectives on every rank whatever it fails to
/// write. Rank 0 first clears what a process killed while replacing `dir`
/// left behind, then tells the others whether it could start (before any
/// gather) and whether it wrote everything (after): when rank 0 fails, every
/// rank returns an error and none waits for a gather rank 0 never enters.
Status replaceOnRankZero(const RankContext *rank, const std::string &dir, OutputKind kind,
                         const std::function<Status(const std::string &)> &fill) {
  comm::Communicator *world = rank ? rank->world() : nullptr;
  if (rank && rank->rank() != 0) {
    auto started = rankZeroSucceeded(*world, false);
    if (!started)
      return started.status();
    if (!*started)
      return Status::error("rank 0 could not start writing " + dir + " (see its error)");
    Status s = fill(std::string());
    auto done = rankZeroSucceeded(*world, false); // even after a failure: rank 0 waits
    if (!s)
      return s;
    if (!done)
      return done.status();
    return *done ? Status::ok()
                 : Status::error("rank 0 could not write " + dir + " (see its error)");
  }
  bool started = false;
  Status s = io::recoverInterruptedReplace(dir);
  if (s)
    s = io::replaceOutputDirectory(dir, kind, [&](const std::string &tmp) -> Status {
      started = true;
      if (world)
        if (auto told = rankZeroSucceeded(*world, true); !told)
          return told.status();
      return fill(tmp);
    });
  if (world) {
    if (!started) // the others wait to hear whether to start
      (void)rankZeroSucceeded(*world, false);
    else if (auto told = rankZeroSucceeded(*world, s.isOk()); !told && s)
      return told.status();
  }
  return s;
}

uint64_t elementsOf(const std::vector<int64_t> &shape) {
  uint64_t n = 1;
  for (int64_t d : shape)
    n *= uint64_t(d);
  return n;
}

struct DtypeName {
  ExportDtype choice;
  const char *name; // transformers' (torch's) name
  io::Dtype dtype;
};
constexpr DtypeName kDtypeNames[] = {{ExportDtype::Float32, "float32", io::Dtype::F32},
                                     {ExportDtype::BFloat16, "bfloat16", io::Dtype::BF16},
                                     {ExportDtype::Float16, "float16", io::Dtype::F16}};

/// What an export of `config` (the source's Hugging Face config) writes:
/// `choice`, or for Auto the dtype the config names (`dtype` first, as
/// transformers' configuration_utils.py keeps it when both are given),
/// float32 where it names none.
const DtypeName &exportDtypeOf(const nlohmann::json &config, ExportDtype choice) {
  if (choice == ExportDtype::Auto)
    for (const char *key : {"dtype", "torch_dtype"})
      if (auto it = config.find(key); it != config.end() && it->is_string()) {
        for (const DtypeName &d : kDtypeNames)
          if (*it == d.name)
            return d;
        break; // another dtype (mtc import-hf refuses them): float32
      }
  for (const DtypeName &d : kDtypeNames)
    if (d.choice == choice)
      return d;
  return kDtypeNames[0];
}

/// The source config saying once the dtype `name` the tensors are written
/// in, in the spelling of the source's transformers: `dtype` since 4.56,
/// `torch_dtype` before. A source with neither key is judged by its
/// transformers_version. The sizes the source gave as null are written as
/// the values the model was trained with (resolveNullSizes).
nlohmann::json exportConfig(nlohmann::json config, const char *name) {
  resolveNullSizes(config);
  int major = 0, minor = 0;
  std::sscanf(config.value("transformers_version", std::string()).c_str(), "%d.%d", &major,
              &minor);
  bool dtypeKey = config.contains("dtype") ||
                  (!config.contains("torch_dtype") && (major > 4 || (major == 4 && minor >= 56)));
  config.erase("dtype");
  config.erase("torch_dtype");
  config[dtypeKey ? "dtype" : "torch_dtype"] = name;
  return config;
}

} // namespace

const char *exportDtypeChoices() { return "auto, float32, bfloat16, float16"; }

Expected<ExportDtype> parseExportDtype(const std::string &text, const std::string &option) {
  if (text == "auto")
    return ExportDtype::Auto;
  for (const DtypeName &d : kDtypeNames)
    if (text == d.name)
      return d.choice;
  return Status::error(option + ": unknown dtype '" + text + "'; valid: " +
                       exportDtypeChoices());
}

namespace {

HfExpertLayout expertLayoutOf(const io::SafetensorsCheckpoint &ckpt) {
  for (const std::string &name : ckpt.names())
    if (name.ends_with(".experts.gate_up_proj") || name.ends_with(".experts.down_proj"))
      return HfExpertLayout::Fused;
  return HfExpertLayout::PerExpert;
}

/// Whether the checkpoint's tensors `a` and `b` hold the same values (same
/// shape; compared as stored where the dtypes agree, else as fp32).
Expected<bool> sameTensor(const io::SafetensorsCheckpoint &ckpt, const io::TensorInfo &a,
                          const io::TensorInfo &b) {
  if (a.shape != b.shape)
    return false;
  if (a.dtype == b.dtype) {
    std::vector<char> x(a.byteSize()), y(b.byteSize());
    if (Status s = ckpt.shardOf(a.name)->readRaw(a.name, x.data(), x.size()); !s)
      return s;
    if (Status s = ckpt.shardOf(b.name)->readRaw(b.name, y.data(), y.size()); !s)
      return s;
    return x == y;
  }
  std::vector<float> x(a.numElements()), y(b.numElements());
  if (Status s = ckpt.readAsFloat32(a.name, x.data(), x.size()); !s)
    return s;
  if (Status s = ckpt.readAsFloat32(b.name, y.data(), y.size()); !s)
    return s;
  return x == y;
}

/// A tied plan has no output layer of its own: a checkpoint's lm_head.weight
/// is accepted where it is the embedding (a tied model saved with both
/// names), and refused where it differs (an untied model's, whose trained
/// output layer would be dropped without a word).
Status checkTiedOutputLayer(const io::SafetensorsCheckpoint &ckpt, const std::string &dir) {
  const io::TensorInfo *head = ckpt.find("lm_head.weight");
  const io::TensorInfo *embed = ckpt.find("model.embed_tokens.weight");
  if (!head || !embed)
    return Status::ok();
  auto same = sameTensor(ckpt, *head, *embed);
  if (!same)
    return same.status();
  if (*same)
    return Status::ok();
  return Status::error(dir + ": lm_head.weight differs from model.embed_tokens.weight, but "
                       "the plan ties them (tie_word_embeddings true) and would drop the "
                       "checkpoint's output layer; compile the plan from a config.json with "
                       "tie_word_embeddings false (the untied model these weights are from)");
}

} // namespace

Expected<HfExpertLayout> hfExpertLayout(const std::string &dir) {
  auto ckpt = io::openCheckpoint(dir);
  if (!ckpt)
    return ckpt.status();
  return expertLayoutOf(*ckpt);
}

namespace {

/// loadHfWeights, or without `memory` its check of the names and shapes.
Status matchHfWeights(const plan::Plan &plan, HostMemory *memory, const RankContext *rank,
                      const std::string &dir, HfExpertLayout *layout) {
  auto ckpt = io::openCheckpoint(dir);
  if (!ckpt)
    return ckpt.status();
  const HfExpertLayout found = expertLayoutOf(*ckpt);
  if (layout)
    *layout = found;
  const bool tied = tiedEmbeddings(plan); // parsed once, not per tensor name
  if (tied)
    if (Status s = checkTiedOutputLayer(*ckpt, dir); !s)
      return s;
  std::set<std::string> used;
  Status read = readRole(plan, memory, rank, *ckpt, kWeights, used, found);
  std::ostringstream unexpected;
  int count = 0;
  for (const std::string &name : ckpt->names()) {
    // A tied model's checkpoint may carry lm_head.weight: the same tensor.
    // Older conversions saved the rotary buffer inv_freq, which the model
    // computes from rope_theta; transformers skips it on load too.
    if (used.count(name) || (name == "lm_head.weight" && tied) ||
        name.ends_with(".rotary_emb.inv_freq"))
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

} // namespace

Status loadHfWeights(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                     const std::string &dir, HfExpertLayout *layout) {
  return matchHfWeights(plan, &memory, rank, dir, layout);
}

Status checkHfWeights(const plan::Plan &plan, const std::string &dir) {
  return matchHfWeights(plan, nullptr, nullptr, dir, nullptr);
}

Status exportHf(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                const std::string &dir, HfExpertLayout layout, ExportDtype choice) {
  auto config = nlohmann::json::parse(plan.hf_config_json(), nullptr, false);
  if (!config.is_object())
    return Status::error("the plan carries no Hugging Face config.json to export");
  const DtypeName &dtype = exportDtypeOf(config, choice);
  return replaceOnRankZero(rank, dir, OutputKind::HfExport, [&](const std::string &tmp) -> Status {
    GatheredTensors weights;
    weights.dtype = dtype.dtype;
    if (Status s = gatherRoles(plan, memory, rank, {kWeights}, !tmp.empty(), weights, layout);
        !s)
      return s;
    if (tmp.empty())
      return Status::ok();
    // Said here with the export's words; the writer would refuse it too.
    for (const io::TensorToWrite &t : weights.tensors)
      if (Status s = io::checkNarrowing(t.name, t.dtype, t.data, elementsOf(t.shape)); !s)
        return Status::error("cannot export in " + std::string(dtype.name) + ": " + s.message() +
                             "; choose " +
                             (dtype.dtype == io::Dtype::F16 ? "bfloat16 or float32" : "float32") +
                             " (mtrun --export-dtype, mtc train's infer_dtype)");
    if (Status s = io::writeHfExportSafetensors(tmp, weights.tensors); !s)
      return s;
    std::ofstream out(tmp + "/config.json");
    out << exportConfig(config, dtype.name).dump(2) << "\n";
    if (!out.flush())
      return Status::error(tmp + "/config.json: cannot write");
    return Status::ok();
  });
}

Status saveCheckpoint(const plan::Plan &plan, const HostMemory &memory,
                      const RankContext *rank, const std::string &dir,
                      const RunState &state) {
  return replaceOnRankZero(rank, dir, OutputKind::Checkpoint, [&](const std::string &tmp) -> Status {
    Status written = Status::ok(); // rank 0's first write failure; the gathers go on
    for (const auto &[file, roles] : kCheckpointFiles) {
      GatheredTensors gathered;
      if (Status s = gatherRoles(plan, memory, rank, roles, !tmp.empty(), gathered); !s)
        return s;
      if (!tmp.empty() && written)
        written = io::writeSafetensors(tmp + "/" + file, gathered.tensors, {{"format", "pt"}});
    }
    if (!tmp.empty() && written)
      written = writeRunState(tmp + "/trainer.json", state);
    return written;
  });
}

namespace {

/// For a directory without trainer.json: what it holds instead and the
/// flag that takes it (the newest checkpoint-N of an output_dir, or --load
/// for a Hugging Face model); "" where it holds neither.
std::string notACheckpointHint(const std::string &dir) {
  namespace fs = std::filesystem;
  if (const auto found = checkpoints(dir); !found.empty())
    return "; it holds checkpoint-N directories of a run's output_dir: --resume " +
           found.back().second.string() + " continues from the newest";
  std::error_code ec;
  bool weights = false;
  for (const auto &entry : fs::directory_iterator(dir, ec))
    weights |= entry.path().extension() == ".safetensors";
  if (weights && fs::exists(fs::path(dir) / "config.json"))
    return "; it holds a Hugging Face model: --load " + dir +
           " starts a new run from its weights";
  return "";
}

} // namespace

Expected<RunState> readCheckpointState(const RankContext *rank, const std::string &dir) {
  // Rank 0 repairs an interrupted save; the others wait for it.
  Status repaired = !rank || rank->rank() == 0 ? io::recoverInterruptedReplace(dir)
                                               : Status::ok();
  if (comm::Communicator *world = rank ? rank->world() : nullptr) {
    auto ok = rankZeroSucceeded(*world, repaired.isOk());
    if (!ok)
      return ok.status();
    if (repaired && !*ok)
      return Status::error("rank 0 could not repair " + dir + " (see its error)");
  }
  if (!repaired)
    return repaired;
  if (!std::filesystem::is_directory(dir))
    return Status::error(dir + ": not a checkpoint directory (missing; write one with "
                               "mtrun --save)");
  const std::string state = (std::filesystem::path(dir) / "trainer.json").string();
  if (!std::filesystem::exists(state))
    if (std::string hint = notACheckpointHint(dir); !hint.empty())
      return Status::error(state + ": missing (not a checkpoint written by mtrun --save)" + hint);
  return readRunState(state);
}

Status loadCheckpoint(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                      const std::string &dir) {
  for (const auto &[file, roles] : kCheckpointFiles) {
    std::string path = (std::filesystem::path(dir) / file).string();
    auto tensors = io::openSafetensors(path);
    if (!tensors)
      return tensors.status();
    std::set<std::string> used;
    std::string problems;
    for (const Role &role : roles)
      if (Status s = readRole(plan, &memory, rank, *tensors, role, used); !s)
        problems += "\n" + s.message();
    int unexpected = 0;
    for (const io::TensorInfo &t : tensors->tensors())
      if (!used.count(t.name))
        problems += (unexpected++ ? ", " : "\nnot in the model: ") + t.name;
    if (!problems.empty())
      return Status::error(path + ": the checkpoint does not match the model:" + problems);
  }
  return Status::ok();
}

} // namespace mt::exec
