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

/// Reads every parameter of the plan from a Hugging Face checkpoint
/// directory (model.safetensors or sharded with model.safetensors.index.json;
/// bf16/fp16/fp32). Missing, unexpected and mis-shaped tensors are all named.
Status loadHfWeights(const plan::Plan &plan, HostMemory &memory, const RankContext *rank,
                     const std::string &dir);

/// Writes `dir`/model.safetensors (fp32, HF names, experts split) and
/// `dir`/config.json, replacing `dir` atomically.
Status exportHf(const plan::Plan &plan, const HostMemory &memory, const RankContext *rank,
                const std::string &dir);

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
