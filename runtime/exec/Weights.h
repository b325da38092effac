// Parameters in and out: Hugging Face safetensors checkpoints, training
// checkpoints (weights + AdamW state + step) and HF export.
#ifndef MT_RUNTIME_EXEC_WEIGHTS_H
#define MT_RUNTIME_EXEC_WEIGHTS_H

#include "runtime/exec/Memory.h"
#include "runtime/exec/RankContext.h"
#include "runtime/exec/RunState.h"
#include "runtime/exec/Sharding.h"
#include "runtime/support/Status.h"

#include <string>

namespace mt::exec {

// Every function takes the rank (null: a single rank). Parameters split over
// mesh axes are read whole and sliced, and gathered whole to be
// written: files always hold full Hugging Face tensors, so a checkpoint or
// an export does not depend on the layout that wrote it. Writers are
// collective: every rank calls them, world rank 0 writes.

/// The rank's coordinate on the axis of each of `param`'s splits (zeros for
/// a single rank).
SplitCoordinates splitCoordinates(const plan::Parameter &param, const RankContext *rank);

/// How a Hugging Face checkpoint spells the routed experts of a
/// mixture-of-experts layer (transformers 5, conversion_mapping.py).
enum class HfExpertLayout {
  /// One tensor per expert and projection, as the Hub checkpoints and
  /// transformers 4 have them: `mlp.experts.3.gate_proj.weight` [F, H]
  /// (Mixtral: `block_sparse_moe.experts.3.w1.weight`).
  PerExpert,
  /// transformers 5's fused modules: `mlp.experts.gate_up_proj` [E, 2F, H]
  /// (gate rows, then up rows: MergeModulelist then Concatenate(dim=1)) and
  /// `mlp.experts.down_proj` [E, H, F]; Mixtral's `block_sparse_moe` is
  /// renamed `mlp` (its router `mlp.gate.weight`).
  Fused,
};

/// The dtype an export writes its tensors in (mtrun --export-dtype, mtc
/// train's infer_dtype). Auto: the dtype the plan's Hugging Face config
/// names (`dtype`, else `torch_dtype`: float32, bfloat16 or float16), as
/// transformers' save_pretrained writes a model loaded in its own dtype;
/// float32 where it names none (a model made from a bare config).
enum class ExportDtype { Auto, Float32, BFloat16, Float16 };

/// The choices' names, as the option takes them: "auto, float32, bfloat16,
/// float16".
const char *exportDtypeChoices();

/// `text` as an ExportDtype; anything else is an error naming `option`,
/// the value and the valid ones.
Expected<ExportDtype> parseExportDtype(const std::string &text, const std::string &option);

/// Reads every parameter of the plan from a Hugging Face checkpoint
/// directory (model.safetensors or sharded with model.safetensors.index.json;
/// bf16/fp16/fp32), with experts in either layout (told in `layout` when
/// given: fused when the checkpoint has any fused expert tensor). Missing,
/// unexpected and mis-shaped tensors are all named.
Status loadHfWeights(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                     const std::string &dir, HfExpertLayout *layout = nullptr);

/// loadHfWeights' check of the tensors' names and shapes in `dir` against
/// the plan, from the safetensors headers alone (no tensor is read).
Status checkHfWeights(const plan::Plan &plan, const std::string &dir);

/// The experts' spelling of the Hugging Face checkpoint in `dir` (fused
/// when it has any fused expert tensor), without reading its tensors.
Expected<HfExpertLayout> hfExpertLayout(const std::string &dir);

/// Writes `dir`/model.safetensors (HF names, experts in `layout`, the fp32
/// masters rounded to nearest even into `dtype`: ExportDtype) and
/// `dir`/config.json saying that dtype under the source config's key
/// (`dtype` since transformers 4.56, `torch_dtype` before), replacing `dir`
/// atomically. The header's metadata is io::hfExportMetadata().
/// A value that float16 (or bfloat16) cannot hold is an error naming the
/// tensor and its largest magnitude; nothing is written then.
Status exportHf(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                const std::string &dir, HfExpertLayout layout = HfExpertLayout::PerExpert,
                ExportDtype dtype = ExportDtype::Auto);

/// Saves weights, AdamW state (model.safetensors, optimizer.safetensors:
/// full HF-named fp32 tensors) and `state` (trainer.json) into `dir`
/// atomically: a crash leaves the previous checkpoint intact, and what a
/// process killed while saving there left behind is removed first. When
/// world rank 0 cannot write, every rank returns an error (none hangs).
Status saveCheckpoint(const plan::Plan &plan, const HostMemory &memory,
                      const RankContext *rank, const std::string &dir,
                      const RunState &state);

/// Repairs an interrupted save of `dir` (rank 0; collective) and reads its
/// trainer.json (runtime/exec/RunState.h).
Expected<RunState> readCheckpointState(const RankContext *rank, const std::string &dir);

/// Reads the weights and AdamW state of `dir` into this rank's slices. Every
/// missing, mis-shaped and unexpected tensor is named.
Status loadCheckpoint(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                      const std::string &dir);

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_WEIGHTS_H
