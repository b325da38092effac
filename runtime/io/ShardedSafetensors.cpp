// Sharded Hugging Face checkpoints as transformers' save_pretrained writes
// them: model-0000k-of-0000n.safetensors and model.safetensors.index.json.
#include "runtime/io/Safetensors.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/OutputPath.h"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace mt::io {

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
  if (shards.size() <= 1)
    return writeSafetensors(dir + "/model.safetensors", tensors, metadata);
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
  }
  // transformers: json.dumps(index, indent=2, sort_keys=True) + "\n".
  nlohmann::json index = {{"metadata", {{"total_size", totalSize}}}, {"weight_map", weightMap}};
  return writeFileAtomically(dir + "/model.safetensors.index.json", [&](std::ostream &os) {
    os << index.dump(2) << "\n";
    return Status::ok();
  });
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
