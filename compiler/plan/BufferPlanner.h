// The buffer table of a plan: parameters and their state in persistent
// arenas, temporaries in one activation arena whose offsets come from
// liveness (first fit, largest first).
#ifndef MT_COMPILER_PLAN_BUFFERPLANNER_H
#define MT_COMPILER_PLAN_BUFFERPLANNER_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <map>
#include <vector>

namespace mt {

struct ParameterBuffers {
  uint32_t param = 0, grad = 0, expAvg = 0, expAvgSq = 0;
};

class BufferPlanner {
public:
  explicit BufferPlanner(plan::Plan &plan) : plan_(plan) {}

  uint32_t addBuffer(const std::string &name, mlir::RankedTensorType type,
                     plan::ArenaKind arena);
  void rename(uint32_t id, const std::string &name) {
    plan_.mutable_buffers(id)->set_name(name);
  }
  plan::ArenaKind arenaOf(uint32_t id) const { return plan_.buffers(id).arena(); }
  const plan::Plan &plan() const { return plan_; }
  const std::string &bufferName(uint32_t id) const { return plan_.buffers(id).name(); }
  /// A kernel workspace of `type` for `instr` (Instruction.workspace), in
  /// the ACTIVATIONS arena and live for that instruction alone (touch it
  /// there). assignOffsets gives it bytes that are free then below the
  /// peak the other activations need; where none are, it takes the
  /// workspace back rather than raise the peak (the instruction then has
  /// none; the buffer, unused, becomes empty), and the backend's shared
  /// workspace serves the kernel. `instr` must outlive assignOffsets.
  uint32_t addWorkspace(const std::string &name, mlir::RankedTensorType type,
                        plan::Instruction &instr);
  /// A buffer of `like`'s dtype and shape in `arena` (of its own, even
  /// where `like` is a view of several).
  uint32_t addBufferLike(const std::string &name, uint32_t like, plan::ArenaKind arena);
  void moveToArena(uint32_t id, plan::ArenaKind arena) {
    plan_.mutable_buffers(id)->set_arena(arena);
  }
  /// Persistent buffer `id` belongs to the pipeline stage(s) of `owner`'s
  /// parameter: it takes offsets in their space (optimizer_offload's host
  /// copies of a stage's weights, gradients and their shards).
  void placeWith(uint32_t id, uint32_t owner) { placedWith_[id] = owner; }

  /// One Parameter entry and its buffers per mt.param (grad and AdamW state
  /// for trainable ones); `gradBuffers` maps names to gradient buffers.
  mlir::LogicalResult addParameters(mlir::ModuleOp module,
                                    llvm::DenseMap<llvm::StringRef, uint32_t> &gradBuffers);
  const ParameterBuffers &parameterBuffers(llvm::StringRef name) const {
    return parameters_.find(name)->second;
  }
  /// The buffers of bucket `k` of the distributed optimizer (`mt.buckets`
  /// of @optimizer_step; addParameters makes them): the whole weight and
  /// gradient buckets and this rank's AdamW state shard.
  const ParameterBuffers &bucketBuffers(int64_t k) const { return buckets_[size_t(k)]; }

  /// A buffer of `type` that views `members` (parameter or gradient buffers
  /// of one arena) as one: the offsets place them back to back, in this
  /// order, and the view where the first starts (the sibling weights of a
  /// fused linear: mt.concat_rows, mt.split_rows). A buffer joins at most
  /// one such run; viewing the same run again is allowed. Members of a
  /// distributed-optimizer bucket are placed by its layout instead, which
  /// must hold them back to back in this order. Fails, naming the buffer,
  /// for a member of another run, one bucket member among others that are
  /// not, members their bucket parts, an activation, or sizes that do not
  /// add up to `type`'s.
  Expected<uint32_t> addPackedView(const std::string &name, mlir::RankedTensorType type,
                                   llvm::ArrayRef<uint32_t> members);

  /// Whether `a` and `b` share bytes: the same root (the first member of
  /// the packed run either is a member or the view of, addPackedView, or
  /// the bucket it is a view into) and overlapping ranges in it (a packed
  /// run and its member do; two members of one bucket or run do not).
  bool overlaps(uint32_t a, uint32_t b) const;

  /// Records that instruction `index` of the current program uses `id`.
  void touch(uint32_t id, int64_t index);
  /// Ends the current program: the next one's instructions come after it.
  void finishProgram();
  /// Fills offsets and arena sizes (after the parameters' stages are set).
  /// Fails, naming the buffer or arena, when a size overflows 64 bits or one
  /// rank's arenas exceed plan::kMaxRankBytes.
  Status assignOffsets();

private:
  /// Offsets of the persistent arenas. A pipeline rank holds only its
  /// stage's parameters, gradients and AdamW state: each stage's buffers
  /// take offsets in a space of their own, after those two stages share
  /// (tied embeddings), so the arena is as large as the largest stage's.
  /// Without a pipeline every parameter is on stage 0: the plain
  /// sequential layout.
  Status assignPersistentOffsets(std::map<plan::ArenaKind, uint64_t> &sizes);
  /// Offsets of the buffers of `kind` (plan::isLivenessPlanned) from
  /// their liveness; sets sizes[kind] to the peak (none: left unset).
  Status assignLiveOffsets(plan::ArenaKind kind, std::map<plan::ArenaKind, uint64_t> &sizes);
  /// Makes `members` a run that placeRun keeps back to back (again: ok),
  /// unless one is in another run already; `name` the view's, for errors.
  Status addRun(const std::string &name, llvm::ArrayRef<uint32_t> members);
  /// Puts `b` at `offset`; `end` becomes the aligned end, which must stay
  /// within plan::kMaxRankBytes.
  static Status place(plan::Buffer &b, uint64_t offset, uint64_t &end);
  /// Places `b` at `offset`, or with a packed run's first member the whole
  /// run back to back from there (addPackedView); `end` as place().
  Status placeRun(plan::Buffer &b, uint64_t offset, uint64_t &end);

  struct Interval {
    int64_t first = -1, last = -1;
  };
  /// Adds a plan::Bucket and its buffers per entry of `mt.buckets`; the
  /// members' weights and gradients become views into them.
  mlir::LogicalResult addBuckets(mlir::ModuleOp module, mlir::ArrayAttr buckets);
  /// Places the weight and gradient views of bucket members inside their
  /// buckets (after the buckets are placed).
  void placeBucketMembers();

  plan::Plan &plan_;
  llvm::StringMap<ParameterBuffers> parameters_;
  std::vector<ParameterBuffers> buckets_;
  /// Member view -> (its bucket's buffer, bytes into it); packed view ->
  /// (its run's first member, 0), or of bucket members (their bucket, bytes
  /// into it of the first).
  std::map<uint32_t, std::pair<uint32_t, uint64_t>> views_;
  /// `id`'s root (see overlaps) and its first byte there.
  std::pair<uint32_t, uint64_t> placeInRoot(uint32_t id) const;
  /// The workspaces of addWorkspace and their instructions.
  std::map<uint32_t, plan::Instruction *> workspaces_;
  /// Runs of buffers placed back to back (addPackedView), and the run of
  /// each member.
  std::vector<std::vector<uint32_t>> runs_;
  std::map<uint32_t, size_t> runOf_;
  std::map<uint32_t, uint32_t> placedWith_;
  llvm::DenseMap<uint32_t, Interval> live_;
  int64_t programBase_ = 0, programLength_ = 0;
  Status overflow_; // the first buffer whose size overflowed
};

} // namespace mt

#endif // MT_COMPILER_PLAN_BUFFERPLANNER_H
