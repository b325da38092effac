// Plan directory I/O and validation.
#include "runtime/plan/PlanIO.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/MeshAxes.h"
#include "runtime/support/OutputPath.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanVersion.h"
#include "runtime/plan/Stages.h"
#include "runtime/support/CheckedMath.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace mt::plan {
namespace {

uint64_t elementBytes(DType dtype) { return dtype == I64 ? 8 : 4; }

std::string bytesText(uint64_t bytes) {
  return std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 30) + " GiB)";
}

/// Each arena, and all of them together, within kMaxRankBytes.
Status validateArenas(const Plan &plan) {
  uint64_t total = 0;
  for (const Arena &a : plan.arenas()) {
    auto sum = checkedAdd<uint64_t>(total, a.size_bytes());
    if (!sum || *sum > kMaxRankBytes)
      return Status::error("the " + ArenaKind_Name(a.kind()) + " arena of " +
                           bytesText(a.size_bytes()) + " brings one rank's arenas to more than " +
                           bytesText(kMaxRankBytes) + ", " + kMaxRankBytesReason);
    total = *sum;
  }
  return Status::ok();
}

Status validateBuffers(const Plan &plan) {
  std::map<ArenaKind, uint64_t> arenaSize;
  for (const Arena &a : plan.arenas())
    arenaSize[a.kind()] = a.size_bytes();
  for (int i = 0; i < plan.buffers_size(); ++i) {
    const Buffer &b = plan.buffers(i);
    std::string name = "buffer " + std::to_string(i) + " '" + b.name() + "'";
    if (b.id() != uint32_t(i))
      return Status::error(name + " has id " + std::to_string(b.id()));
    for (int64_t d : b.shape())
      if (d < 0)
        return Status::error(name + " has a negative dimension");
    auto elements = checkedProduct(b.shape());
    auto bytes = elements ? checkedMul<uint64_t>(*elements, elementBytes(b.dtype()))
                          : std::nullopt;
    if (!bytes)
      return Status::error(name + ": its shape has more elements than 64-bit sizes can count");
    if (b.dtype() == DTYPE_UNSPECIFIED || *bytes != b.size_bytes())
      return Status::error(name + ": size " + std::to_string(b.size_bytes()) +
                           " bytes does not match its dtype and shape");
    auto arena = arenaSize.find(b.arena());
    if (arena == arenaSize.end())
      return Status::error(name + " lives in an arena the plan does not declare");
    auto end = checkedAdd<uint64_t>(b.offset_bytes(), b.size_bytes());
    if (!end || *end > arena->second)
      return Status::error(name + " at offset " + std::to_string(b.offset_bytes()) +
                           " + " + std::to_string(b.size_bytes()) +
                           " bytes is out of range of its arena (" +
                           std::to_string(arena->second) + " bytes)");
  }
  return Status::ok();
}

Status validateParameters(const Plan &plan) {
  auto inRange = [&](uint32_t id) { return id < uint32_t(plan.buffers_size()); };
  for (const Parameter &p : plan.parameters()) {
    if (!inRange(p.param_buffer()) ||
        (p.trainable() && (!inRange(p.grad_buffer()) || !inRange(p.exp_avg_buffer()) ||
                           !inRange(p.exp_avg_sq_buffer()))))
      return Status::error("parameter '" + p.name() + "' refers to a buffer out of range");
    // param_offload keeps the weights in HOST_WEIGHTS.
    if (ArenaKind a = plan.buffers(p.param_buffer()).arena(); a != PARAMETERS && a != HOST_WEIGHTS)
      return Status::error("parameter '" + p.name() + "' is not in the parameter arena");
  }
  return Status::ok();
}

/// mtrun checks token ids against training.vocab_size, so it must be the
/// model's vocabulary, which a vocabulary parameter padded for tensor
/// parallelism records as its hf_rows (plans of older mtc gave the padded size).
Status validateVocabulary(const Plan &plan) {
  int64_t vocab = plan.training().vocab_size();
  for (const Parameter &p : plan.parameters())
    if (p.hf_rows() > 0 && p.hf_rows() != vocab)
      return Status::error("training.vocab_size " + std::to_string(vocab) +
                           " is not the model's vocabulary " + std::to_string(p.hf_rows()) +
                           " (the rows of '" + p.name() + "' without tp padding); recompile "
                           "the plan with the mtc of this release");
  return Status::ok();
}

/// The persistent buffers a pipeline stage holds (its parameters' and the
/// tied ones', inputs and outputs) must not overlap: stages share offsets,
/// so a plan that placed two of one stage's buffers together would have
/// them overwrite each other.
Status validateStageLayout(const Plan &plan) {
  std::set<uint32_t> views; // inside a bucket (validateBuckets) or over parts
  for (const Buffer &b : plan.buffers())
    if (b.parts_size() > 0)
      views.insert(b.id());
  std::map<std::string, const Parameter *> byName;
  for (const Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  for (const Bucket &b : plan.buckets())
    for (const BucketMember &m : b.members())
      views.insert({byName.at(m.param())->param_buffer(), byName.at(m.param())->grad_buffer()});
  std::map<uint32_t, const Parameter *> parameterOf;
  for (const Parameter &p : plan.parameters()) {
    std::vector<uint32_t> ids = {p.param_buffer()};
    if (p.trainable())
      ids.insert(ids.end(), {p.grad_buffer(), p.exp_avg_buffer(), p.exp_avg_sq_buffer()});
    if (p.master_buffer() != 0) // optimizer_offload's host copies
      ids.insert(ids.end(), {p.master_buffer(), p.host_grad_buffer()});
    for (uint32_t id : ids)
      parameterOf[id] = &p;
  }
  // A bucket is held where its members are.
  for (const Bucket &b : plan.buckets())
    for (uint32_t id : {b.param_buffer(), b.grad_buffer(), b.master_buffer(), b.host_grad_buffer()})
      if (id != 0)
        parameterOf[id] = byName.at(b.members(0).param());
  for (int64_t stage = 0; stage < std::max<int64_t>(plan.mesh().pp(), 1); ++stage) {
    std::map<ArenaKind, std::vector<const Buffer *>> held;
    for (const Buffer &b : plan.buffers()) {
      if (isLivenessPlanned(b.arena()) || views.count(b.id()))
        continue; // offsets planned from liveness, or placed in another buffer
      auto it = parameterOf.find(b.id());
      if (it == parameterOf.end() || stageHolds(*it->second, stage))
        held[b.arena()].push_back(&b);
    }
    for (auto &[arena, buffers] : held) {
      std::sort(buffers.begin(), buffers.end(), [](const Buffer *a, const Buffer *b) {
        return a->offset_bytes() < b->offset_bytes();
      });
      for (size_t i = 1; i < buffers.size(); ++i)
        if (buffers[i - 1]->offset_bytes() + buffers[i - 1]->size_bytes() >
            buffers[i]->offset_bytes())
          return Status::error("buffers '" + buffers[i - 1]->name() + "' and '" +
                               buffers[i]->name() + "', both held by pipeline stage " +
                               std::to_string(stage) + ", overlap in the " +
                               ArenaKind_Name(arena) + " arena");
    }
  }
  return Status::ok();
}

/// Each view over parts (Buffer.parts): two or more buffers of its arena and
/// element type, no views themselves, back to back from its offset and as
/// large as they are together.
Status validatePackedViews(const Plan &plan) {
  for (const Buffer &v : plan.buffers()) {
    if (v.parts_size() == 0)
      continue;
    if (v.parts_size() < 2)
      return Status::error("buffer '" + v.name() + "' views one part: a view has two or more");
    uint64_t next = v.offset_bytes();
    for (uint32_t id : v.parts()) {
      if (id >= uint32_t(plan.buffers_size()))
        return Status::error("buffer '" + v.name() + "' views buffer " + std::to_string(id) +
                             ", which does not exist");
      const Buffer &part = plan.buffers(id);
      if (part.parts_size() > 0 || part.arena() != v.arena() || part.dtype() != v.dtype() ||
          part.offset_bytes() != next)
        return Status::error("buffer '" + v.name() + "' views '" + part.name() +
                             "', which is a view, of another arena or element type, or not "
                             "where the previous part ends (byte " + std::to_string(next) +
                             ")");
      next += part.size_bytes();
    }
    if (next - v.offset_bytes() != v.size_bytes())
      return Status::error("buffer '" + v.name() + "' has " + std::to_string(v.size_bytes()) +
                           " bytes but its parts " + std::to_string(next - v.offset_bytes()));
  }
  return Status::ok();
}

/// Each bucket of the distributed optimizer: its buffers exist, its state
/// is 1/parts of it, and its members are trainable parameters whose weights
/// and gradients lie inside its weight and gradient buffers, at their
/// offsets, without overlapping each other.
Status validateBuckets(const Plan &plan) {
  std::map<std::string, const Parameter *> byName;
  for (const Parameter &p : plan.parameters())
    byName[p.name()] = &p;
  std::set<std::string> bucketed;
  for (int k = 0; k < plan.buckets_size(); ++k) {
    const Bucket &b = plan.buckets(k);
    const std::string name = "bucket " + std::to_string(k);
    const uint32_t n = uint32_t(plan.buffers_size());
    if (b.param_buffer() >= n || b.grad_buffer() >= n || b.exp_avg_buffer() >= n ||
        b.exp_avg_sq_buffer() >= n || b.members().empty() || b.parts() < 1)
      return Status::error(name + " refers to a buffer out of range, has no members or parts < 1");
    const Buffer &weights = plan.buffers(b.param_buffer()), &grads = plan.buffers(b.grad_buffer());
    const int64_t elements = elementsOf(weights);
    // grad_offload keeps the buckets' gradients on the host (GradOffload.h),
    // param_offload their weights (ParamOffload.h).
    if ((weights.arena() != PARAMETERS && weights.arena() != HOST_WEIGHTS) ||
        (grads.arena() != GRADIENTS && grads.arena() != HOST_GRADIENTS) ||
        elementsOf(grads) != elements || elements % b.parts() != 0 ||
        elementsOf(plan.buffers(b.exp_avg_buffer())) != elements / b.parts() ||
        elementsOf(plan.buffers(b.exp_avg_sq_buffer())) != elements / b.parts())
      return Status::error(name + ": its weights (" + std::to_string(elements) +
                           " elements) and gradients must be in their arenas (PARAMETERS or "
                           "HOST_WEIGHTS; GRADIENTS or HOST_GRADIENTS), of one size "
                           "divisible by parts (" + std::to_string(b.parts()) +
                           "), and its AdamW state 1/parts of it");
    int64_t end = 0;
    for (const BucketMember &m : b.members()) {
      auto it = byName.find(m.param());
      if (it == byName.end() || !it->second->trainable() || !bucketed.insert(m.param()).second)
        return Status::error(name + ": member '" + m.param() +
                             "' is not a trainable parameter, or is in two buckets");
      const Parameter &p = *it->second;
      const int64_t count = elementsOf(plan.buffers(p.param_buffer()));
      if (m.offset() < end || m.offset() + count > elements ||
          plan.buffers(p.param_buffer()).offset_bytes() !=
              weights.offset_bytes() + uint64_t(m.offset()) * 4 ||
          plan.buffers(p.grad_buffer()).offset_bytes() !=
              grads.offset_bytes() + uint64_t(m.offset()) * 4)
        return Status::error(name + ": member '" + m.param() + "' at element " +
                             std::to_string(m.offset()) + " does not lie in the bucket after "
                             "the previous member, or its buffers are not there");
      end = m.offset() + count;
    }
  }
  return Status::ok();
}

/// Where an action sits, for messages.
std::string actionName(int64_t stage, int index) {
  return "schedule of stage " + std::to_string(stage) + ", action " + std::to_string(index);
}

/// One action of stage `stage`'s schedule: its program exists and belongs
/// to the stage, its micro-batch and slot are in range.
Status validateAction(const Plan &plan, const StageSchedule &stage, int index) {
  const Action &a = stage.actions(index);
  const std::string where = actionName(stage.stage(), index);
  if (a.program() >= uint32_t(plan.programs_size()))
    return Status::error(where + " runs program " + std::to_string(a.program()) +
                         ", out of range (" + std::to_string(plan.programs_size()) +
                         " programs)");
  const Program &program = plan.programs(int(a.program()));
  const bool pipelined = plan.schedule_size() > 1;
  if (pipelined && program.stage() != stage.stage())
    return Status::error(where + " runs program '" + program.name() + "' of stage " +
                         std::to_string(program.stage()));
  const bool optimizer = a.kind() == Action::OPTIMIZER_STEP;
  if (a.kind() == Action::KIND_UNSPECIFIED ||
      (pipelined && a.kind() == Action::FORWARD_BACKWARD) ||
      (!pipelined && (a.kind() == Action::FORWARD || a.kind() == Action::BACKWARD)))
    return Status::error(where + " has kind " + Action::Kind_Name(a.kind()) + ", which a " +
                         (pipelined ? "pipeline" : "single-stage") + " schedule cannot run");
  if (pipelined && !optimizer && program.virtual_stage() != a.virtual_stage())
    return Status::error(where + " is on virtual stage " + std::to_string(a.virtual_stage()) +
                         " but runs program '" + program.name() + "'");
  const int64_t micro = plan.training().micro_batches_per_step();
  if (!optimizer && (a.micro_batch() < 0 || a.micro_batch() >= micro))
    return Status::error(where + " runs micro-batch " + std::to_string(a.micro_batch()) +
                         ", expected 0 <= micro-batch < " + std::to_string(micro));
  if (a.slot() < 0 || a.slot() >= stage.activation_slots())
    return Status::error(where + " uses activation slot " + std::to_string(a.slot()) +
                         " of " + std::to_string(stage.activation_slots()));
  return Status::ok();
}

/// The schedule mtrun replays: one per stage (pp, or 1), each action valid,
/// each micro-batch's inputs loaded by its first action on the stage, and
/// the optimizer step once, last.
Status validateSchedule(const Plan &plan) {
  const int64_t stages = std::max<int64_t>(plan.mesh().pp(), 1);
  if (plan.schedule_size() != stages)
    return Status::error("the plan has " + std::to_string(plan.schedule_size()) +
                         " stage schedules for " + std::to_string(stages) + " pipeline stages");
  for (int64_t s = 0; s < stages; ++s) {
    const StageSchedule &stage = plan.schedule(int(s));
    if (stage.stage() != s)
      return Status::error("stage schedule " + std::to_string(s) + " names stage " +
                           std::to_string(stage.stage()));
    const int64_t micro = std::max<int64_t>(plan.training().micro_batches_per_step(), 0);
    std::vector<bool> loaded(static_cast<size_t>(micro));
    for (int i = 0; i < stage.actions_size(); ++i) {
      if (Status st = validateAction(plan, stage, i); !st)
        return st;
      const Action &a = stage.actions(i);
      const bool last = i + 1 == stage.actions_size();
      if ((a.kind() == Action::OPTIMIZER_STEP) != last)
        return Status::error(actionName(s, i) + (last ? " is not" : " is") +
                             " the optimizer step, which ends every stage's schedule");
      if (last)
        continue;
      if (a.load_inputs())
        loaded[size_t(a.micro_batch())] = true;
      else if (!loaded[size_t(a.micro_batch())])
        return Status::error(actionName(s, i) + " runs micro-batch " +
                             std::to_string(a.micro_batch()) + " before its inputs are loaded");
    }
    if (stage.actions_size() == 0)
      return Status::error("the schedule of stage " + std::to_string(s) + " is empty");
    if (stage.has_master_weights_program() &&
        (stage.master_weights_program() >= uint32_t(plan.programs_size()) ||
         (stages > 1 && plan.programs(int(stage.master_weights_program())).stage() != s)))
      return Status::error("the schedule of stage " + std::to_string(s) +
                           " fills its master weights with program " +
                           std::to_string(stage.master_weights_program()) +
                           ", which is out of range or another stage's (" +
                           std::to_string(plan.programs_size()) + " programs)");
  }
  return Status::ok();
}

/// What mtrun does around the programs: the loss reductions name a mesh
/// axis and sum or mean; each --lr target is an lr_schedule's attribute.
Status validateStepRules(const Plan &plan) {
  const StepLoss &loss = plan.step_loss();
  if (!(loss.micro_batch_weight() > 0) || !(loss.loss_scale() > 0))
    return Status::error("the plan's step_loss has micro_batch_weight " +
                         std::to_string(loss.micro_batch_weight()) + " and loss_scale " +
                         std::to_string(loss.loss_scale()) + "; both must be > 0");
  for (const StepLoss::Reduction &r : loss.reductions())
    if (std::find(kDenseAxes.begin(), kDenseAxes.end(), r.axis()) == kDenseAxes.end() ||
        (r.reduce() != "sum" && r.reduce() != "mean"))
      return Status::error("the plan's step_loss reduces over '" + r.axis() + "' by '" +
                           r.reduce() + "'; expected a mesh axis (pp, dp, cp, tp) and sum "
                           "or mean");
  if (loss.per_token_loss() && !plan.bindings().has_num_tokens())
    return Status::error("the plan's step_loss is per token (calculate_per_token_loss) but "
                         "binds no num_tokens buffer");
  for (const PeakLearningRate::Target &t : plan.peak_learning_rate().targets()) {
    const std::string where = "peak_learning_rate target (program " +
                              std::to_string(t.program()) + ", instruction " +
                              std::to_string(t.instruction()) + ")";
    if (t.program() >= uint32_t(plan.programs_size()) ||
        t.instruction() >= uint32_t(plan.programs(int(t.program())).instructions_size()))
      return Status::error(where + " is out of range");
    const Instruction &in = plan.programs(int(t.program())).instructions(int(t.instruction()));
    bool found = false;
    for (const Attribute &a : in.attributes())
      found |= a.name() == t.attribute() && a.has_f();
    if (!isOp(in, Op::lr_schedule) || !found)
      return Status::error(where + " names '" + t.attribute() + "' of a '" + in.op() +
                           "', expected a floating-point attribute of an lr_schedule");
  }
  return Status::ok();
}

} // namespace

Status validatePlan(const Plan &plan) {
  if (plan.version() != kPlanVersion)
    return Status::error("plan version " + std::to_string(plan.version()) +
                         " is not supported by this mtrun (it reads version " +
                         std::to_string(kPlanVersion) + "); recompile the plan with "
                         "the mtc of this release");
  if (Status s = validateArenas(plan); !s)
    return s;
  if (Status s = validateBuffers(plan); !s)
    return s;
  if (Status s = validateParameters(plan); !s)
    return s;
  if (Status s = validateBuckets(plan); !s)
    return s;
  if (Status s = validatePackedViews(plan); !s)
    return s;
  if (Status s = validateStageLayout(plan); !s)
    return s;
  if (Status s = validateVocabulary(plan); !s)
    return s;
  if (Status s = validateSchedule(plan); !s)
    return s;
  if (Status s = validateStepRules(plan); !s)
    return s;
  if (Status s = checkInstructions(plan); !s)
    return s;
  const Bindings &b = plan.bindings();
  for (uint32_t id : {b.input_ids(), b.labels(), b.loss_mask(), b.loss_scale(),
                      b.step(), b.loss(), b.grad_norm(), b.learning_rate()})
    if (id >= uint32_t(plan.buffers_size()))
      return Status::error("a binding refers to buffer " + std::to_string(id) +
                           ", out of range");
  // Under context parallelism each rank holds seq / cp of every row.
  const int64_t rowTokens = plan.training().seq() / std::max<int64_t>(plan.mesh().cp(), 1);
  if (b.has_position_ids() && (b.position_ids() >= uint32_t(plan.buffers_size()) ||
                               plan.buffers(int(b.position_ids())).dtype() != I32 ||
                               elementsOf(plan.buffers(int(b.position_ids()))) !=
                                   plan.training().micro_batch() * rowTokens))
    return Status::error("the position_ids binding (buffer " +
                         std::to_string(b.position_ids()) +
                         ") is not an i32 buffer of micro_batch x seq / cp elements");
  // The batch the trainer writes: micro_batch x seq / cp values of 4 bytes
  // into each (a Training edited against its buffers would write past
  // them; every dtype's element takes at least 4 bytes, elementBytes).
  for (auto [id, name] : {std::pair{b.input_ids(), "input_ids"}, std::pair{b.labels(), "labels"},
                          std::pair{b.loss_mask(), "loss_mask"}})
    if (elementsOf(plan.buffers(int(id))) != plan.training().micro_batch() * rowTokens)
      return Status::error(std::string("the ") + name + " binding (buffer " +
                           std::to_string(id) + ") does not hold Training's micro_batch (" +
                           std::to_string(plan.training().micro_batch()) + ") x seq (" +
                           std::to_string(plan.training().seq()) + ") / cp elements");
  auto outputScalar = [&](bool has, uint32_t id, const char *name) {
    if (has && (id >= uint32_t(plan.buffers_size()) || plan.buffers(int(id)).dtype() != F32 ||
                plan.buffers(int(id)).arena() != OUTPUTS ||
                elementsOf(plan.buffers(int(id))) != 1))
      return Status::error(std::string("the ") + name + " binding (buffer " +
                           std::to_string(id) + ") is not an f32 scalar of the OUTPUTS arena");
    return Status::ok();
  };
  for (Status s : {outputScalar(b.has_num_tokens(), b.num_tokens(), "num_tokens"),
                   outputScalar(b.has_lm_loss(), b.lm_loss(), "lm_loss"),
                   outputScalar(b.has_aux_loss(), b.aux_loss(), "aux_loss"),
                   outputScalar(b.has_z_loss(), b.z_loss(), "z_loss")})
    if (!s)
      return s;
  if (b.has_lm_loss() != b.has_aux_loss())
    return Status::error("the plan binds one of lm_loss and aux_loss without the other");
  if (b.has_z_loss() && !b.has_lm_loss())
    return Status::error("the plan binds z_loss without lm_loss and aux_loss");
  if (plan.training().micro_batches_per_step() < 1 || plan.training().seq() < 1 ||
      plan.training().micro_batch() < 1)
    return Status::error("the plan's batch sizes are not positive");
  return Status::ok();
}

Status writePlanDirectory(const std::string &dir, const Plan &plan) {
  auto fill = [&](const std::string &tmp) -> Status {
    std::ofstream pb(tmp + "/" + kPlanFile, std::ios::binary);
    if (!plan.SerializeToOstream(&pb) || !pb.flush())
      return Status::error(tmp + "/" + kPlanFile + ": cannot write the plan");
    std::ofstream txt(tmp + "/" + kPlanSummaryFile);
    writePlanSummary(plan, txt);
    if (!txt.flush())
      return Status::error(tmp + "/" + kPlanSummaryFile + ": cannot write");
    return Status::ok();
  };
  return io::replaceOutputDirectory(dir, io::OutputKind::Plan, fill);
}

int64_t worldSize(const Mesh &mesh) {
  int64_t ranks = 1;
  for (int64_t size : {mesh.pp(), mesh.dp(), mesh.cp(), mesh.tp()})
    ranks *= std::max<int64_t>(size, 1);
  return ranks;
}

int64_t expertDataParallelSize(const Mesh &mesh) {
  auto one = [](int64_t size) { return std::max<int64_t>(size, 1); };
  return one(mesh.dp()) * one(mesh.cp()) * one(mesh.tp()) / (one(mesh.ep()) * one(mesh.etp()));
}

Expected<Plan> readPlanDirectory(const std::string &dir) {
  std::string path = (std::filesystem::path(dir) / kPlanFile).string();
  if (!std::filesystem::exists(dir))
    return Status::error(dir + ": no such plan directory; `mtc compile MODEL.mlir -o " + dir +
                         "` writes one");
  if (!std::filesystem::is_directory(dir))
    return Status::error(dir + ": a file, not a plan directory; a plan is the directory that "
                         "`mtc compile " + (dir.ends_with(".mlir") ? dir : "MODEL.mlir") +
                         " -o PLAN_DIR` writes");
  // Checked before the file is opened: opening a FIFO would wait for a writer.
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  const std::string write = "; write the plan with `mtc compile ... -o " + dir + "`";
  if (!std::filesystem::exists(status))
    return Status::error(path + ": missing" + write);
  if (!std::filesystem::is_regular_file(status))
    return Status::error(path + ": not a file" + write);
  // An empty message parses as a plan of version 0: say what it is.
  if (std::filesystem::file_size(path, ec) == 0)
    return Status::error(path + ": empty, not a plan (truncated?)" + write);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path + ": cannot be read" + write);
  Plan plan;
  if (!plan.ParseFromIstream(&in))
    return Status::error(path + ": not a valid plan (truncated or corrupt)");
  if (Status s = validatePlan(plan); !s)
    return Status::error(path + ": " + s.message());
  return plan;
}

} // namespace mt::plan
