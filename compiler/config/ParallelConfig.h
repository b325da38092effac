// ParallelConfig: how one training step is laid out over ranks, from flags or
// a Megatron-style YAML file, validated against the model up front.
#ifndef MT_COMPILER_CONFIG_PARALLELCONFIG_H
#define MT_COMPILER_CONFIG_PARALLELCONFIG_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <map>
#include <string>

namespace mt {

/// The dimensions of a model that parallel layouts must divide.
struct ModelDims {
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t numExperts = 0; // 0 for a dense model
  int64_t vocabSize = 0;
  int64_t microBatch = 0; // the model's static input shape [microBatch, seq]
  int64_t seq = 0;
};

/// Sizes of the mesh (pp, dp, cp, ep, tp) and of the batch. A value of 0
/// means "not given": derived from the others (dp, world size, global batch)
/// or taken from the model (micro-batch, seq).
struct ParallelConfig {
  int64_t tp = 1, pp = 1, vpp = 0, ep = 1, cp = 1, dp = 0, worldSize = 0;
  bool sequenceParallel = false;
  int64_t microBatch = 0, globalBatch = 0, seq = 0;
  /// Megatron options this version parses but does not apply yet, by name
  /// (value as written). Validation rejects any that asks for a change.
  std::map<std::string, std::string> pending;

  int64_t numMicroBatches() const { return globalBatch / (microBatch * dp); }

  /// Fills derived sizes and checks every rule against `model`; the message
  /// names the option, its value, and the rule.
  Status resolve(const ModelDims &model);
};

/// Reads Megatron-Core names (`tensor_model_parallel_size`, ...) from a YAML
/// file into `config`. Errors carry file:line:col.
Status loadParallelConfigYaml(const std::string &path, ParallelConfig &config);

} // namespace mt

#endif // MT_COMPILER_CONFIG_PARALLELCONFIG_H
