// Sharded Hugging Face checkpoints as transformers' save_pretrained writes
// them: model-0000k-of-0000n.safetensors and model.safetensors.index.json.
#include "runtime/io/Safetensors.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/OutputPath.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>

namespace mt::io {

bool isShardName(const std::string &name) {
  const std::string shape = "model-#####-of-#####.safetensors";
  if (name.size() != shape.size())
    return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (shape[i] == '#' ? !std::isdigit(static_cast<unsigned char>(name[i])) : name[i] != shape[i])
      return false;
  return true;
}

namespace {

/// Removes the weight files of an earlier save from `dir`: a shard, index
/// or single file not in `kept` (the names this save wrote).
Status removeStaleWeights(const std::string &dir, const std::set<std::string> &kept) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const fs::directory_entry &e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool weights = name == "model.safetensors" ||
                         name == "model.safetensors.index.json" || isShardName(name);
    if (weights && !kept.count(name) && e.is_regular_file(ec) && !fs::remove(e.path(), ec))
      return Status::error(e.path().string() + ": cannot remove the earlier save's weights: " +
                           ec.message());
  }
  return ec ? Status::error(dir + ": cannot list: " + ec.message()) : Status::ok();
}

} // namespace

std::vector<std::vector<size_t>> planShards(const std::vector<TensorToWrite> &tensors,
                                            uint64_t maxShardBytes) {
  std::vector<std::vector<size_t>> shards;
  std::vector<size_t> current;
  uint64_t currentBytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t bytes = tensorByteSize(tensors[i].dtype, tensors[i].shape).value_or(0);
    if (bytes > maxShardBytes) { // alone, ahead of the shard being filled
      shards.push_back({i});
      continue;
    }
    if (currentBytes + bytes > maxShardBytes && !current.empty()) {
      shards.push_back(current);
      current.clear();
      currentBytes = 0;
    }
    current.push_back(i);
    currentBytes += bytes;
  }
  if (!current.empty())
    shards.push_back(current);
  return shards;
}

Status writeShardedSafetensors(const std::string &dir, const std::vector<TensorToWrite> &tensors,
                               uint64_t maxShardBytes,
                               const std::map<std::string, std::string> &metadata) {
  if (maxShardBytes == 0)
    return Status::error("the maximum shard size must be > 0 bytes");
  const std::vector<std::vector<size_t>> shards = planShards(tensors, maxShardBytes);
  if (shards.size() <= 1) {
    if (Status s = writeSafetensors(dir + "/model.safetensors", tensors, metadata); !s)
      return s;
    return removeStaleWeights(dir, {"model.safetensors"});
  }
  // The earlier index goes first: shards are replaced one at a time, and an
  // index naming them all while some are new and some old would load a
  // model of neither save. Without it, an interrupted save is refused by
  // name (openCheckpoint; transformers finds no weights) until one finishes.
  std::error_code ec;
  std::filesystem::remove(dir + "/model.safetensors.index.json", ec);
  if (ec)
    return Status::error(dir + "/model.safetensors.index.json: cannot remove the earlier "
                         "save's index: " + ec.message());
  std::set<std::string> kept;
  nlohmann::json weightMap = nlohmann::json::object(); // keys sorted, as sort_keys=True
  uint64_t totalSize = 0;
  for (size_t k = 0; k < shards.size(); ++k) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    std::vector<TensorToWrite> part;
    for (size_t i : shards[k]) {
      part.push_back(tensors[i]);
      weightMap[tensors[i].name] = name;
      totalSize += tensorByteSize(tensors[i].dtype, tensors[i].shape).value_or(0);
    }
    if (Status s = writeSafetensors(dir + "/" + name, part, metadata); !s)
      return s;
    kept.insert(name);
  }
  // transformers: json.dumps(index, indent=2, sort_keys=True) + "\n".
  nlohmann::json index = {{"metadata", {{"total_size", totalSize}}}, {"weight_map", weightMap}};
  // A single file beside the index would be read in its place: it goes
  // before the index names the new shards.
  if (Status s = removeStaleWeights(dir, kept); !s)
    return s;
  if (Status s = writeFileAtomically(dir + "/model.safetensors.index.json",
                                     [&](std::ostream &os) {
                                       os << index.dump(2) << "\n";
                                       return Status::ok();
                                     });
      !s)
    return s;
  return Status::ok();
}

const std::map<std::string, std::string> &hfExportMetadata() {
  static const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {kSafetensorsOutputKey, std::string(outputKindName(OutputKind::HfExport))}};
  return metadata;
}

Status writeHfExportSafetensors(const std::string &dir, const std::vector<TensorToWrite> &tensors,
                                uint64_t maxShardBytes) {
  return writeShardedSafetensors(dir, tensors, maxShardBytes, hfExportMetadata());
}

} // namespace mt::io
