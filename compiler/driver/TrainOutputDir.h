// `mtc train`'s output_dir: which checkpoint a run resumes and whether it
// is one of the same run, whether a new run may start there, and the
// earlier run's checkpoints that overwrite_output_dir clears, and what it
// holds when the run ends.
#ifndef MT_COMPILER_DRIVER_TRAINOUTPUTDIR_H
#define MT_COMPILER_DRIVER_TRAINOUTPUTDIR_H

#include "runtime/support/Status.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mt {

struct TrainConfig;

/// The checkpoint resume_from_checkpoint names: its mtc-state directory
/// ("" when the run does not resume); true: the checkpoint-N of output_dir
/// with the largest N (transformers' rule). A path that does not exist, is
/// not a directory, or is a directory without mtc's state is told apart,
/// naming the key, where it was given and the path.
Expected<std::string> resumeState(const TrainConfig &c);

/// The checkpoint at `state` (its mtc-state directory, as resumeState
/// returns it) against what `c` sets before any data is prepared: the
/// model (every key of model_name_or_path's config.json but metadata),
/// cutoff_len, the global batch, max_steps (when given) and seed, as the
/// checkpoint's trainer.json records its run (runtime/exec/RunState.h).
/// The error names the checkpoint (and output_dir, for true), each
/// difference with the key that sets it, and what to do instead. A
/// trainer.json this cannot read passes: mtrun reads it and says what is
/// wrong, and judges the data and the schedule, known only after the data
/// step, the same way.
Status checkResumedRun(const TrainConfig &c, const std::string &state);

/// A checkpoint (`state`: its mtc-state/, given by `key`) already at or
/// past max_steps is refused before any work, naming `key` and max_steps
/// (mtrun would find it after the data step and speak of its --steps).
Status checkResumedStep(const TrainConfig &c, const std::string &state, const std::string &key);

/// mtc train sets an earlier preparation in `runDir` aside as
/// <runDir>.earlier-<pid> while it makes a new one and puts it back on a
/// failure; one left beside runDir (its mtc train was killed) or still in
/// use (that process runs) is an error naming it and what to do with it.
Status checkSetAsideRunDir(const std::string &runDir);

/// Where mtc train (process `pid`) sets the earlier preparation in `runDir`
/// aside: <runDir>.earlier-<pid>, beside it (a trailing '/' of runDir
/// ignored).
std::string setAsidePath(const std::string &runDir, long pid);

/// A new run into an output_dir that holds something is refused unless
/// overwrite_output_dir or a resume says otherwise (transformers' rule).
/// The run directory itself (output_dir/mtc-run by default, which other
/// nodes of a launched job may have created already) does not count. With
/// overwrite_output_dir, a checkpoint-N mtc did not write (no mtc-state/)
/// is refused by name: mtc removes only its own. model_name_or_path or
/// dataset_dir inside one of output_dir's checkpoint-N directories is
/// refused where the run may remove it (overwrite_output_dir for a new
/// run, save_total_limit's pruning).
Status checkOutputDir(const TrainConfig &c, bool resuming, const std::string &runDir);

/// The run directory (mtc train -o, `flag`; "" for the default
/// output_dir/mtc-run) may be absent, or a directory holding only what mtc
/// train writes there (model.mlir, plan/, data.sft or data.tokens and their
/// temporaries, train.sh, the launch markers, node-N/ of several nodes),
/// as mtc compile -o is: never the current directory or one above it, nor
/// model_name_or_path, dataset_dir or the YAML `configPath`, nor a directory
/// that holds one of them. The error names the path and what is there.
Status checkRunDir(const std::string &runDir, const std::string &flag, const TrainConfig &c,
                   const std::string &configPath);

/// When output_dir's trainer_state.json was last written (nullopt: absent),
/// taken before mtrun runs and after, for finalModelLine.
std::optional<std::filesystem::file_time_type> finalStateTime(const std::string &outputDir);

/// mtc train's last line: output_dir holds the run's final model where
/// mtrun rewrote trainer_state.json (its time differs from `before`); else
/// the run ended early (exit_*), and the line says that no final model of
/// this run is there and whether the one there is an earlier run's.
std::string finalModelLine(const std::string &outputDir,
                           std::optional<std::filesystem::file_time_type> before);

} // namespace mt

#endif // MT_COMPILER_DRIVER_TRAINOUTPUTDIR_H
