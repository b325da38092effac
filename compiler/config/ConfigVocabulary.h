// Which reader `mtc compile --config` gives a YAML file: Megatron-Core's
// option file (ParallelConfig.h) or the training front-end's LLaMA-Factory
// YAML (TrainConfig.h), decided by the keys only one of them takes.
#ifndef MT_COMPILER_CONFIG_CONFIGVOCABULARY_H
#define MT_COMPILER_CONFIG_CONFIGVOCABULARY_H

#include "runtime/support/Status.h"

#include <string>

namespace mt {

enum class ConfigVocabulary {
  Megatron,     // loadParallelConfigYaml: Megatron-Core's names and defaults
  LlamaFactory, // loadTrainConfig: LLaMA-Factory's keys, transformers' defaults
};

/// The vocabulary a file is read in, and the keys that decided it.
struct ConfigFileVocabulary {
  ConfigVocabulary vocabulary = ConfigVocabulary::Megatron;
  /// "seed (line 4), learning_rate (line 5)": the keys only that reader
  /// takes ("" when none: a file of shared keys is Megatron-Core's).
  std::string decidedBy;
};

/// The vocabulary of the YAML file at `path`, from its top-level keys. A key
/// both readers take with the same meaning (tensor_model_parallel_size,
/// micro_batch_size, weight_decay, bf16, recompute_*, ...) fits either and
/// decides nothing, nor does a key neither knows (the reader chosen names
/// it). A key only one reader takes decides: LlamaFactory for learning_rate,
/// seed, model_name_or_path, a `megatron:` block, ...; Megatron for lr,
/// train_iters, clip_grad, global_batch_size, ...; neither: Megatron (the
/// option file is `mtc compile`'s own). A file with keys of both is an
/// error: it names the keys that decided its vocabulary (those of the
/// more numerous kind; at a tie, the kind of the first such key) and each
/// key of the other kind with its file:line:col and its name in the
/// decided vocabulary (learning_rate -> lr), or why there is none. A file
/// that is no YAML mapping: Megatron, whose reader says why.
Expected<ConfigFileVocabulary> configVocabulary(const std::string &path);

/// For a key of Megatron-Core's option file that the training front-end
/// does not take (lr, train_iters, ...): its LLaMA-Factory name, or why it
/// has none ("LLaMA-Factory's name is learning_rate").
std::string llamaFactoryNameOf(const std::string &megatronKey);

} // namespace mt

#endif // MT_COMPILER_CONFIG_CONFIGVOCABULARY_H
