// A Hugging Face `config.json`, read into the few numbers a decoder-only
// transformer is made of. No MLIR here.
#ifndef MT_COMPILER_HF_HFCONFIG_H
#define MT_COMPILER_HF_HFCONFIG_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mt {

/// Llama 3.1's rope scaling (`rope_type: llama3`).
struct Llama3RopeScaling {
  double factor = 0, lowFreqFactor = 0, highFreqFactor = 0;
  int64_t originalMaxPosition = 0;
};

struct MoeSpec {
  int64_t numExperts = 0, topK = 0, expertFfn = 0;
  /// Qwen2-MoE's shared expert (`shared_expert_intermediate_size`), a SwiGLU
  /// MLP every token passes, scaled by sigmoid(`shared_expert_gate` x); 0: none.
  int64_t sharedExpertFfn = 0;
  bool normTopkProb = true;
  double auxLossCoeff = 0;
  std::string routerName;  // "mlp.gate" (Qwen2/3-MoE), "block_sparse_moe.gate"
  std::string expertsName; // "mlp.experts", "block_sparse_moe.experts"
  std::string gateProj, upProj, downProj; // "gate_proj" or "w1", ...
  std::vector<bool> sparseLayers;         // per layer: routed experts or dense
};

/// Sliding-window attention as transformers applies it: on the marked
/// layers, query i sees key j only when i - size < j <= i
/// (masking_utils.sliding_window_overlay).
struct SlidingWindow {
  int64_t size = 0;
  std::vector<bool> layers; // per layer: windowed
  std::string keys;         // the config keys that set it, for messages
};

struct HfModelSpec {
  std::string architecture; // e.g. "LlamaForCausalLM"
  int64_t vocabSize = 0, hidden = 0, ffn = 0, numLayers = 0, numHeads = 0,
          numKvHeads = 0, headDim = 0, maxPositionEmbeddings = 0;
  double normEps = 0, ropeTheta = 0, initStd = 0;
  std::optional<Llama3RopeScaling> ropeScaling;
  std::optional<SlidingWindow> slidingWindow;
  bool tiedEmbeddings = false, qkvBias = false, outputBias = false,
       mlpBias = false, qkNorm = false;
  std::optional<MoeSpec> moe;
  std::string json; // the config as read, kept for exporting checkpoints
  /// Keys whose effect in transformers mtc does not reproduce, training as
  /// Megatron-Core does instead (megatronChoiceNotes says so): whether
  /// transformers would add the load-balancing loss, and its padding_idx.
  bool outputRouterLogits = false;
  std::optional<int64_t> padTokenId;
  /// Keys the config leaves out whose default mtc took from transformers'
  /// config class, as transformers would: one sentence each, for import's notes.
  std::vector<std::string> notes;
};

/// The `architectures` this version imports.
const std::vector<std::string> &supportedArchitectures();

/// Parses config.json text as transformers 4 and 5 write it (README.md,
/// "Config keys read", lists the keys per architecture). The model is named
/// by `architectures` or, without it, by `model_type`. A setting spelled two
/// ways (e.g. `rope_theta` and `rope_parameters.rope_theta`) must agree; a
/// value mtc cannot honour (an unknown `rope_type`, dropout, ...) is refused
/// by key. A key written as null is taken as transformers takes it: as left
/// out where transformers resolves the None to its default (`rope_scaling`,
/// `sliding_window`, Llama's `head_dim`, ...), else refused by key, saying
/// what to give. `path` only names the file in messages, which carry
/// line:column for syntax errors and the key for missing, mistyped or
/// refused values.
Expected<HfModelSpec> parseHfConfig(const std::string &text,
                                    const std::string &path);
Expected<HfModelSpec> readHfConfig(const std::string &path);

/// Refuses a sequence length `seq` (import-hf's --seq) that the model cannot
/// be trained at as transformers would run it: longer than
/// `max_position_embeddings` (Megatron-LM's validate_args refuses the same),
/// or one at which a sliding window would mask keys (not supported yet; a
/// window of at least `seq` masks nothing and is accepted). `option` is the
/// name the user gave the length by (`--seq`, or mtc train's `cutoff_len`).
Status checkSequenceLength(const HfModelSpec &spec, int64_t seq, const std::string &path,
                           const std::string &option = "--seq");

} // namespace mt

#endif // MT_COMPILER_HF_HFCONFIG_H
