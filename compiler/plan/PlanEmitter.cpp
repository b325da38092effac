// Lowers @forward_backward and @optimizer_step to plan programs. Gradients
// are accumulated in place: backward kernels add into their outputs, so the
// sum of two gradients (mt.add of two backward results used once) becomes one
// buffer that both write, and parameter gradients are the persistent
// gradient buffers themselves (zeroed once per step, summed over
// micro-batches).
#include "compiler/plan/PlanEmitter.h"

#include "compiler/plan/BufferPlanner.h"
#include "compiler/plan/GradOffload.h"
#include "compiler/plan/ParamOffload.h"
#include "compiler/plan/OptimizerOffload.h"
#include "compiler/plan/PipelineSchedule.h"
#include "compiler/plan/ProgramEmitter.h"
#include "dialects/mt/MtDialect.h"
#include "dialects/mt/MtMesh.h"
#include "runtime/plan/OpRegistry.h"
#include "runtime/plan/PlanVersion.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

using namespace mlir;

namespace mt {
namespace {

/// The persistent buffers of a step that are not a parameter's: the sum of
/// the micro-batches' loss tokens under calculate_per_token_loss (summed as
/// gradients are, zeroed with them), read by @optimizer_step.
struct StepBuffers {
  std::optional<uint32_t> numTokens;
};

/// A micro-batch's mt.num_tokens (mt-build-optimizer's `per-token-loss`):
/// written into an OUTPUTS scalar the runtime reads beside the loss, and
/// added into the step's count.
void bindTokenCount(Value count, ProgramEmitter &emitter, BufferPlanner &planner,
                    plan::Plan &out, StepBuffers &step) {
  auto *bindings = out.mutable_bindings();
  bindings->set_num_tokens(emitter.bufferOf(count, plan::OUTPUTS));
  planner.rename(bindings->num_tokens(), "num_tokens");
  step.numTokens = planner.addBuffer("step_num_tokens", cast<RankedTensorType>(count.getType()),
                                     plan::GRADIENTS);
  emitter.accumulateAtEnd(count, *step.numTokens);
}

/// Whether `v` is the routers' load-balancing losses (`z` false) or their
/// z-losses (`z` true): one router's, a sum of such, or one passed on from
/// an earlier pipeline stage.
bool isRouterLossSum(Value v, bool z) {
  if (auto router = v.getDefiningOp<MoERouterOp>())
    return v == (z ? router.getZLoss() : router.getAuxLoss());
  if (auto transfer = v.getDefiningOp<StageTransferOp>())
    return isRouterLossSum(transfer.getInput(), z);
  auto add = v.getDefiningOp<AddOp>();
  return add && isRouterLossSum(add.getLhs(), z) && isRouterLossSum(add.getRhs(), z);
}

/// A mixture-of-experts model's micro-batch loss, the importer's
/// cross-entropy (per-token: its sum) plus the routers' load-balancing
/// losses, plus with moe_z_loss_coeff their z-losses: binds the terms as
/// lm_loss, aux_loss and z_loss, which mtrun reports beside the loss
/// (Megatron-Core logs its lm loss, load_balancing_loss and z_loss apart).
void bindLossTerms(Value loss, ProgramEmitter &emitter, BufferPlanner &planner,
                   plan::Bindings &bindings) {
  auto add = loss.getDefiningOp<AddOp>();
  Value zLoss;
  if (add && isRouterLossSum(add.getRhs(), true)) {
    zLoss = add.getRhs();
    add = add.getLhs().getDefiningOp<AddOp>();
  }
  if (!add || !isRouterLossSum(add.getRhs(), false))
    return;
  bindings.set_lm_loss(emitter.bufferOf(add.getLhs(), plan::OUTPUTS));
  planner.rename(bindings.lm_loss(), "lm_loss");
  bindings.set_aux_loss(emitter.bufferOf(add.getRhs(), plan::OUTPUTS));
  planner.rename(bindings.aux_loss(), "aux_loss");
  if (!zLoss)
    return;
  bindings.set_z_loss(emitter.bufferOf(zLoss, plan::OUTPUTS));
  planner.rename(bindings.z_loss(), "z_loss");
}

LogicalResult bindForwardBackward(func::FuncOp fn, ProgramEmitter &emitter,
                                  BufferPlanner &planner, plan::Plan &out,
                                  const DenseMap<StringRef, uint32_t> &gradBuffers,
                                  StepBuffers &step) {
  auto *bindings = out.mutable_bindings();
  for (BlockArgument arg : fn.getArguments()) {
    auto role = fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "mt.input");
    if (!role)
      return fn.emitOpError() << "argument " << arg.getArgNumber()
                              << " has no 'mt.input' role";
    uint32_t id = emitter.bufferOf(arg, plan::INPUTS);
    planner.rename(id, role.str());
    StringRef r = role.getValue();
    if (r == "input_ids") bindings->set_input_ids(id);
    else if (r == "labels") bindings->set_labels(id);
    else if (r == "loss_mask") bindings->set_loss_mask(id);
    else if (r == "loss_scale") bindings->set_loss_scale(id);
    else if (r == "position_ids") bindings->set_position_ids(id);
  }
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  for (unsigned i = 1; i < ret.getNumOperands(); ++i) {
    auto role = fn.getResultAttrOfType<StringAttr>(i, "mt.role");
    if (role && role.getValue() == "num_tokens") {
      bindTokenCount(ret.getOperand(i), emitter, planner, out, step);
      continue;
    }
    auto param = fn.getResultAttrOfType<FlatSymbolRefAttr>(i, "mt.grad_of");
    if (!param)
      return fn.emitOpError() << "result " << i
                              << " has no 'mt.grad_of' (nor 'mt.role' num_tokens)";
    Value grad = ret.getOperand(i);
    if (isa_and_nonnull<ZerosOp>(grad.getDefiningOp()))
      continue; // the gradient buffer is zero already
    // A gradient written with += lands in the persistent buffer directly;
    // any other value is added to it after it is computed.
    if (emitter.isAccumulating(grad))
      emitter.bind(grad, gradBuffers.at(param.getValue()));
    else
      emitter.accumulateAtEnd(grad, gradBuffers.at(param.getValue()));
  }
  Value loss = ret.getOperand(0);
  bindings->set_loss(emitter.bufferOf(loss, plan::OUTPUTS));
  planner.rename(bindings->loss(), "loss");
  bindLossTerms(loss, emitter, planner, *bindings);
  return emitter.bindPackedViews(); // after the gradients' buffers are bound
}

LogicalResult bindOptimizerStep(func::FuncOp fn, ProgramEmitter &emitter,
                                BufferPlanner &planner, plan::Plan &out,
                                const StepBuffers &step) {
  auto bufferOfRole = [&](unsigned arg) -> FailureOr<uint32_t> {
    auto role = fn.getArgAttrOfType<StringAttr>(arg, "mt.role");
    if (role && role.getValue() == "step")
      return emitter.bufferOf(fn.getArgument(arg), plan::INPUTS);
    if (role && role.getValue() == "num_tokens") {
      if (!step.numTokens)
        return fn.emitOpError() << "argument " << arg << " takes the step's num_tokens, "
                                   "which @forward_backward does not return";
      return *step.numTokens;
    }
    auto param = fn.getArgAttrOfType<FlatSymbolRefAttr>(arg, "mt.param");
    if (!role || !param)
      return fn.emitOpError() << "argument " << arg << " has no 'mt.role'/'mt.param'";
    auto bucket = fn.getArgAttrOfType<IntegerAttr>(arg, "mt.bucket");
    const ParameterBuffers &p = bucket ? planner.bucketBuffers(bucket.getInt())
                                       : planner.parameterBuffers(param.getValue());
    StringRef r = role.getValue();
    if (r == "param") return p.param;
    if (r == "grad") return p.grad;
    if (r == "exp_avg") return p.expAvg;
    if (r == "exp_avg_sq") return p.expAvgSq;
    return fn.emitOpError() << "argument " << arg << " has unknown role '" << r << "'";
  };
  for (BlockArgument arg : fn.getArguments()) {
    auto id = bufferOfRole(arg.getArgNumber());
    if (failed(id))
      return failure();
    emitter.bind(arg, *id);
  }
  auto *bindings = out.mutable_bindings();
  bindings->set_step(emitter.bufferOf(fn.getArgument(0)));
  planner.rename(bindings->step(), "step");
  WalkResult walk = fn.walk([&](Operation *op) -> WalkResult {
    if (auto adamw = dyn_cast<AdamWOp>(op)) {
      // AdamW updates in place: its results are its state's buffers.
      emitter.bind(adamw.getNewParam(), emitter.bufferOf(adamw.getParam()));
      emitter.bind(adamw.getNewExpAvg(), emitter.bufferOf(adamw.getExpAvg()));
      emitter.bind(adamw.getNewExpAvgSq(), emitter.bufferOf(adamw.getExpAvgSq()));
    } else if (auto check = dyn_cast<CheckFiniteOp>(op)) { // the step checks the norm
      bindings->set_grad_norm(emitter.bufferOf(check.getValue(), plan::OUTPUTS));
      planner.rename(bindings->grad_norm(), "grad_norm");
    } else if (auto lr = dyn_cast<LRScheduleOp>(op)) {
      bindings->set_learning_rate(emitter.bufferOf(lr.getLr(), plan::OUTPUTS));
      planner.rename(bindings->learning_rate(), "learning_rate");
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  // Every result must be an in-place update of the state it names: AdamW's,
  // or the distributed optimizer's all-gather of updated shards into the
  // weight bucket.
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
    auto role = fn.getResultAttrOfType<StringAttr>(i, "mt.role");
    auto param = fn.getResultAttrOfType<FlatSymbolRefAttr>(i, "mt.param");
    auto bucket = fn.getResultAttrOfType<IntegerAttr>(i, "mt.bucket");
    auto gather = dyn_cast_or_null<AllGatherOp>(v.getDefiningOp());
    if (gather && bucket && role && role.getValue() == "param" &&
        isa_and_nonnull<AdamWOp>(gather.getInput().getDefiningOp())) {
      emitter.bind(v, planner.bucketBuffers(bucket.getInt()).param);
      continue;
    }
    if (!role || !param || !isa_and_nonnull<AdamWOp>(v.getDefiningOp()))
      return fn.emitOpError() << "result " << i
                              << " must be an mt.adamw update (or, for a bucket's weights, the "
                                 "mt.all_gather of one) with 'mt.role' and 'mt.param'";
  }
  return success();
}


/// The offload rewrites a plan's programs get (null: that option is off).
struct Offloads {
  OptimizerOffload *optimizer = nullptr;
  GradOffload *grads = nullptr;
  ParamOffload *params = nullptr;
};

Offloads offloadsOf(const ParallelConfig &parallel, OptimizerOffload &optimizer,
                    GradOffload &grads, ParamOffload &params) {
  if (parallel.gradOffload)
    optimizer.setGradientsOnHost();
  return {parallel.optimizerOffload ? &optimizer : nullptr,
          parallel.gradOffload ? &grads : nullptr, parallel.paramOffload ? &params : nullptr};
}

/// grad_offload and param_offload: stage the gradients and weights
/// `program` (emitted, its liveness not yet recorded) uses; records its
/// liveness.
LogicalResult finishStepProgram(ModuleOp module, ProgramEmitter &emitter,
                                plan::Program &program, GradOffload *grads,
                                ParamOffload *params = nullptr) {
  if (grads)
    if (Status s = grads->rewrite(program); !s)
      return emitError(module.getLoc()) << s.message();
  if (params)
    if (Status s = params->rewrite(program); !s)
      return emitError(module.getLoc()) << s.message();
  emitter.finishProgram();
  return success();
}

/// grad_offload: stages the gradients `optimizer` (emitted, its liveness
/// not yet recorded) uses on the device; optimizer_offload: moves its
/// updates to the host and emits the program that fills its master
/// weights. Records both programs' liveness.
LogicalResult finishOptimizer(ModuleOp module, ProgramEmitter &emitter, plan::Plan &out,
                              plan::Program &optimizer, const Offloads &offloads,
                              int64_t stage) {
  if (offloads.grads)
    if (Status s = offloads.grads->rewrite(optimizer); !s)
      return emitError(module.getLoc()) << s.message();
  if (OptimizerOffload *offload = offloads.optimizer) {
    plan::Program &masters = *out.add_programs();
    masters.set_name(OptimizerOffload::programName(stage));
    masters.set_virtual_stage(-1);
    masters.set_stage(int32_t(std::max<int64_t>(stage, 0)));
    if (Status s = offload->rewrite(optimizer, masters); !s)
      return emitError(module.getLoc()) << s.message();
    if (offloads.params)
      if (Status s = offloads.params->rewrite(optimizer); !s)
        return emitError(module.getLoc()) << s.message();
    emitter.finishProgram(); // the optimizer's liveness; the masters program's below
    emitter.setProgram(masters);
    if (offloads.params)
      if (Status s = offloads.params->rewrite(masters); !s)
        return emitError(module.getLoc()) << s.message();
  } else if (offloads.params) {
    if (Status s = offloads.params->rewrite(optimizer); !s)
      return emitError(module.getLoc()) << s.message();
  }
  emitter.finishProgram();
  return success();
}

/// Pipeline plans: which virtual stage runs each op of @forward_backward,
/// and which of its programs (forward or backward).
struct StagedOp {
  Operation *op;
  int64_t virtualStage;
  bool backward;
};

/// The ops of @forward_backward that become instructions, each on the
/// virtual stage mt-pipeline-split gave it.
FailureOr<SmallVector<StagedOp>> stagedOps(func::FuncOp fn, ProgramEmitter &emitter) {
  SmallVector<StagedOp> staged;
  for (Operation &op : fn.getBody().front().without_terminator()) {
    if (isa<WeightOp, StageTransferOp>(&op) || emitter.isElided(&op))
      continue; // reads a parameter buffer, an alias, or sums in place: no instruction
    if (isa<ZerosOp>(&op) && llvm::all_of(op.getUsers(), [](Operation *u) {
          return isa<func::ReturnOp>(u);
        }))
      continue; // the zero gradient of an unused parameter
    auto v = op.getAttrOfType<IntegerAttr>(MtDialect::kVirtualStageAttrName);
    if (!v)
      return op.emitOpError() << "has no '" << MtDialect::kVirtualStageAttrName
                              << "' (a pipeline plan needs mt-pipeline-split first)";
    staged.push_back({&op, v.getInt(), op.hasAttr(MtDialect::kBackwardAttrName)});
  }
  return staged;
}

/// Which stage owns each parameter, and which keeps a tied copy: the
/// mt.pipeline_stage and mt.tied_stage that mt-pipeline-split gave it.
LogicalResult assignOwners(ModuleOp module, plan::Plan &out) {
  llvm::StringMap<ParamOp> params;
  for (ParamOp param : module.getOps<ParamOp>())
    params[param.getSymName()] = param;
  for (auto &p : *out.mutable_parameters()) {
    ParamOp param = params.lookup(p.name());
    auto stage = param ? param->getAttrOfType<IntegerAttr>(MtDialect::kPipelineStageAttrName)
                       : IntegerAttr();
    if (!stage)
      return module.emitError() << "parameter '" << p.name() << "' has no '"
                                << MtDialect::kPipelineStageAttrName
                                << "' (a pipeline plan needs mt-pipeline-split first)";
    auto tied = param->getAttrOfType<IntegerAttr>(MtDialect::kTiedStageAttrName);
    p.set_stage(int32_t(stage.getInt()));
    p.set_tied_stage(tied ? int32_t(tied.getInt()) : -1);
  }
  return success();
}

/// Values a program receives from, or sends to, the neighbouring virtual
/// stage: the forward's output goes to the next stage's forward (which
/// also keeps it for its backward), the gradient of a stage's input back
/// to the previous stage's backward.
struct Transfers {
  SmallVector<Value> receive, send;
};

/// The transfers of mt-pipeline-split's mt.stage_transfer ops, in function
/// order; every other use of a value across virtual stages is an error.
LogicalResult planTransfers(func::FuncOp fn, ArrayRef<StagedOp> staged, int64_t stages,
                            std::vector<Transfers> &forward, std::vector<Transfers> &backward) {
  forward.assign(stages, {});
  backward.assign(stages, {});
  WalkResult walk = fn.walk([&](StageTransferOp t) -> WalkResult {
    const int64_t from = int64_t(t.getFrom()), to = int64_t(t.getTo());
    if (std::max(from, to) >= stages) {
      t.emitOpError() << "transfers between virtual stages " << from << " and " << to
                      << " of a plan with " << stages;
      return WalkResult::interrupt();
    }
    auto &direction = from < to ? forward : backward;
    direction[from].send.push_back(t.getInput());
    direction[to].receive.push_back(t.getInput());
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  DenseMap<Operation *, int64_t> where;
  for (const StagedOp &s : staged)
    where[s.op] = s.virtualStage;
  for (const StagedOp &use : staged)
    for (Value operand : use.op->getOperands()) {
      auto it = where.find(operand.getDefiningOp());
      if (it != where.end() && it->second != use.virtualStage)
        return use.op->emitOpError()
               << "on virtual stage " << use.virtualStage << " uses a value of virtual stage "
               << it->second << " without an mt.stage_transfer";
    }
  return success();
}

/// A send or receive (`op`) of `value`'s buffer with the virtual stage `peer`.
void appendTransfer(ProgramEmitter &emitter, plan::Op op, Value value, int64_t peer) {
  plan::Instruction &instr = emitter.append();
  instr.set_op(plan::signature(op).name);
  uint32_t buffer = emitter.bufferOf(value);
  if (op == plan::Op::send)
    instr.add_inputs(buffer);
  else
    instr.add_outputs(buffer);
  auto *n = instr.add_attributes();
  n->set_name("n");
  n->set_i(cast<RankedTensorType>(value.getType()).getNumElements());
  auto *p = instr.add_attributes();
  p->set_name("peer_virtual_stage");
  p->set_i(peer);
  instr.set_location("pipeline transfer");
}

LogicalResult emitStagePrograms(func::FuncOp fn, ProgramEmitter &emitter,
                                ArrayRef<StagedOp> staged, int64_t pp, plan::Plan &out,
                                const Offloads &offloads) {
  int64_t stages = 0;
  for (const StagedOp &s : staged)
    stages = std::max(stages, s.virtualStage + 1);
  std::vector<Transfers> forward, backward;
  if (failed(planTransfers(fn, staged, stages, forward, backward)))
    return failure();
  // Forward programs in stage order, then backward in reverse: the order in
  // which one micro-batch runs them, which the liveness of its slot follows.
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < stages; ++i) {
      bool back = pass == 1;
      int64_t v = back ? stages - 1 - i : i;
      plan::Program &program = *out.add_programs();
      program.set_name(std::string(back ? "backward." : "forward.") + std::to_string(v));
      program.set_virtual_stage(int32_t(v));
      program.set_stage(int32_t(v % pp));
      emitter.setProgram(program);
      const Transfers &t = back ? backward[v] : forward[v];
      for (Value value : t.receive)
        appendTransfer(emitter, plan::Op::recv, value, back ? v + 1 : v - 1);
      SmallVector<Operation *> ops;
      for (const StagedOp &s : staged)
        if (s.virtualStage == v && s.backward == back)
          ops.push_back(s.op);
      if (failed(emitter.emitOps(ops)))
        return failure();
      for (Value value : t.send)
        appendTransfer(emitter, plan::Op::send, value, back ? v - 1 : v + 1);
      if (failed(finishStepProgram(fn->getParentOfType<ModuleOp>(), emitter, program,
                                   offloads.grads, offloads.params)))
        return failure();
    }
  return success();
}

/// One optimizer program per stage, of the ops mt-pipeline-split gave the
/// stage (or none); its sum of squares over the gradients it gave the stage.
LogicalResult emitStageOptimizers(func::FuncOp opt, ProgramEmitter &emitter,
                                  int64_t pp, plan::Plan &out, const Offloads &offloads) {
  // An op mt-pipeline-split gave a stage (a parameter's reductions and
  // update) runs on it and on its tied stage; any other on every stage.
  auto runsOn = [](Operation &op, int64_t stage) {
    auto owner = op.getAttrOfType<IntegerAttr>(MtDialect::kPipelineStageAttrName);
    auto tied = op.getAttrOfType<IntegerAttr>(MtDialect::kTiedStageAttrName);
    return !owner || owner.getInt() == stage || (tied && tied.getInt() == stage);
  };
  for (int64_t stage = 0; stage < pp; ++stage) {
    plan::Program &program = *out.add_programs();
    program.set_name("optimizer." + std::to_string(stage));
    program.set_virtual_stage(-1);
    program.set_stage(int32_t(stage));
    emitter.setProgram(program);
    SmallVector<Operation *> ops;
    SmallVector<SumSquaresOp> norms; // in program order: the dense and the experts' sums
    for (Operation &op : opt.getBody().front().without_terminator()) {
      if (!runsOn(op, stage))
        continue;
      if (auto n = dyn_cast<SumSquaresOp>(op))
        norms.push_back(n);
      ops.push_back(&op);
    }
    if (failed(emitter.emitOps(ops)))
      return failure();
    // Each sum of squares covers the gradients mt-pipeline-split gave this
    // stage; the all-reduce over pp (mt-expose-collectives) adds the other
    // stages'.
    size_t next = 0;
    for (auto &instr : *program.mutable_instructions()) {
      if (!plan::isOp(instr, plan::Op::sum_squares))
        continue;
      if (next == norms.size())
        return opt.emitOpError() << "optimizer." << stage << " has more sum_squares "
                                 << "instructions than mt.sum_squares ops";
      SumSquaresOp norm = norms[next++];
      std::optional<ArrayRef<int64_t>> owners = norm.getStages();
      if (!owners)
        return norm.emitOpError() << "has no 'stages' (a pipeline plan needs "
                                     "mt-pipeline-split first)";
      ArrayRef<bool> replicated = norm.getReplicated().value_or(ArrayRef<bool>());
      std::string flags;
      instr.clear_inputs();
      for (auto [i, grad] : llvm::enumerate(norm.getGrads())) {
        if ((*owners)[i] != stage)
          continue;
        instr.add_inputs(emitter.bufferOf(grad));
        flags += i < replicated.size() && replicated[i] ? '1' : '0';
      }
      for (auto &a : *instr.mutable_attributes())
        if (a.name() == "replicated")
          a.set_s(flags);
    }
    if (failed(finishOptimizer(opt->getParentOfType<ModuleOp>(), emitter, out, program,
                               offloads, stage)))
      return failure();
  }
  return success();
}
/// A new plan's version and the fields that size attention's planned
/// workspaces (plan::attentionWorkspaceOf), which the programs' emission
/// reads.
void startPlan(plan::Plan &out, const ParallelConfig &parallel) {
  out.set_version(plan::kPlanVersion);
  out.mutable_mesh()->set_cp(parallel.cp);
  out.mutable_training()->set_deterministic_mode(parallel.deterministicMode);
}

/// Plans without pipeline parallelism: one forward-backward program, one
/// optimizer program.
LogicalResult emitSingleStage(ModuleOp module, func::FuncOp fb, func::FuncOp opt,
                              const ParallelConfig &parallel, plan::Plan &out) {
  startPlan(out, parallel);
  BufferPlanner planner(out);
  DenseMap<StringRef, uint32_t> gradBuffers;
  if (failed(planner.addParameters(module, gradBuffers)))
    return failure();
  ProgramEmitter fbEmitter(planner, *out.add_programs(), fb);
  out.mutable_programs(0)->set_name("forward_backward");
  fbEmitter.groupValues();
  StepBuffers step;
  if (failed(bindForwardBackward(fb, fbEmitter, planner, out, gradBuffers, step)) ||
      failed(fbEmitter.emitOps()))
    return failure();
  OptimizerOffload offload(planner, out);
  GradOffload grads(planner, out, parallel.optimizerOffload);
  ParamOffload params(planner, out);
  const Offloads offloads = offloadsOf(parallel, offload, grads, params);
  if (failed(finishStepProgram(module, fbEmitter, *out.mutable_programs(0), offloads.grads,
                               offloads.params)))
    return failure();

  plan::Program &optimizer = *out.add_programs();
  optimizer.set_name("optimizer_step");
  ProgramEmitter optEmitter(planner, optimizer, opt);
  if (failed(bindOptimizerStep(opt, optEmitter, planner, out, step)) ||
      failed(optEmitter.emitOps()) ||
      failed(finishOptimizer(module, optEmitter, out, optimizer, offloads, -1)))
    return failure();
  if (offloads.grads)
    grads.moveGradients();
  if (offloads.params)
    params.moveWeights();
  if (Status s = planner.assignOffsets(); !s)
    return emitError(module.getLoc()) << s.message();
  return success();
}

FailureOr<plan::Plan> emitPipelinePlan(ModuleOp module, func::FuncOp fb, func::FuncOp opt,
                                       const ParallelConfig &parallel) {
  plan::Plan out;
  startPlan(out, parallel);
  BufferPlanner planner(out);
  DenseMap<StringRef, uint32_t> gradBuffers;
  if (failed(planner.addParameters(module, gradBuffers)))
    return failure();
  plan::Program scratch; // bindings create buffers before any program
  ProgramEmitter emitter(planner, scratch, fb);
  emitter.groupValues();
  emitter.bindWeights();
  auto staged = stagedOps(fb, emitter);
  if (failed(staged) || failed(assignOwners(module, out)))
    return failure();
  StepBuffers step;
  OptimizerOffload offload(planner, out);
  GradOffload grads(planner, out, parallel.optimizerOffload);
  ParamOffload params(planner, out);
  const Offloads offloads = offloadsOf(parallel, offload, grads, params);
  if (failed(bindForwardBackward(fb, emitter, planner, out, gradBuffers, step)) ||
      failed(emitStagePrograms(fb, emitter, *staged, parallel.pp, out, offloads)))
    return failure();
  ProgramEmitter optEmitter(planner, scratch, opt);
  if (failed(bindOptimizerStep(opt, optEmitter, planner, out, step)) ||
      failed(emitStageOptimizers(opt, optEmitter, parallel.pp, out, offloads)))
    return failure();
  if (offloads.grads)
    grads.moveGradients();
  if (offloads.params)
    params.moveWeights();
  if (Status s = planner.assignOffsets(); !s)
    return emitError(module.getLoc()) << s.message();
  out.mutable_training()->set_virtual_stages(int64_t(parallel.chunkLayers.size()));
  return out;
}

/// The plan's StepLoss from @step_loss (mt-build-step-loss): its
/// mt.loss_scale is the gradient seed; on the loss argument, an mt.scale is
/// the micro-batch weight and each mt.all_reduce a reduction; per token,
/// the num_tokens argument takes the same reductions and the loss ends
/// divided by it (mt.scale_by {inverse}). Any other op is an error: the
/// runtime could not do it.
LogicalResult emitStepLoss(ModuleOp module, plan::Plan &out) {
  auto fn = module.lookupSymbol<func::FuncOp>(MtDialect::kStepLossFunctionName);
  if (!fn)
    return module.emitError() << "plan emission expects @" << MtDialect::kStepLossFunctionName
                              << " (run mt-build-step-loss)";
  auto seed = fn->getAttrOfType<FloatAttr>(MtDialect::kLossScaleAttrName);
  if (!seed)
    return fn.emitOpError() << "has no '" << MtDialect::kLossScaleAttrName << "'";
  plan::StepLoss &loss = *out.mutable_step_loss();
  loss.set_loss_scale(seed.getValueAsDouble());
  loss.set_micro_batch_weight(1.0);
  Value lossValue, tokens;
  for (BlockArgument arg : fn.getArguments()) {
    auto role = fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "mt.role");
    (role && role.getValue() == "loss" ? lossValue : tokens) = arg;
  }
  if (!lossValue)
    return fn.emitOpError() << "has no argument with 'mt.role' loss";
  std::vector<std::pair<std::string, std::string>> tokenReductions;
  for (Operation &op : fn.getBody().front().without_terminator()) {
    Value in = op.getNumOperands() ? op.getOperand(0) : Value();
    auto reduce = dyn_cast<AllReduceOp>(op);
    auto byTokens = dyn_cast<ScaleByOp>(op);
    if (in && in == tokens && reduce) {
      tokenReductions.push_back({reduce.getAxis().str(), reduce.getReduce().str()});
      tokens = reduce.getResult();
      continue;
    }
    if (!in || in != lossValue || loss.per_token_loss())
      return op.emitOpError() << "is not a step that mtrun forms the loss by (the micro-batch "
                                 "weight, reductions over mesh axes, then the division by the "
                                 "step's tokens)";
    if (auto scale = dyn_cast<ScaleOp>(op); scale && loss.reductions_size() == 0) {
      loss.set_micro_batch_weight(loss.micro_batch_weight() * scale.getFactor().convertToDouble());
    } else if (reduce) {
      plan::StepLoss::Reduction &r = *loss.add_reductions();
      r.set_axis(reduce.getAxis().str());
      r.set_reduce(reduce.getReduce().str());
    } else if (byTokens && byTokens.getInverse() && byTokens.getFactor() == tokens) {
      loss.set_per_token_loss(true);
    } else {
      return op.emitOpError() << "is not a step that mtrun forms the loss by (the micro-batch "
                                 "weight, reductions over mesh axes, then the division by the "
                                 "step's tokens)";
    }
    lossValue = op.getResult(0);
  }
  if (cast<func::ReturnOp>(fn.getBody().front().getTerminator()).getOperand(0) != lossValue)
    return fn.emitOpError() << "does not return the end of its chain";
  if (loss.per_token_loss()) {
    std::vector<std::pair<std::string, std::string>> lossReductions;
    for (const plan::StepLoss::Reduction &r : loss.reductions())
      lossReductions.push_back({r.axis(), r.reduce()});
    if (lossReductions != tokenReductions || loss.micro_batch_weight() != 1.0)
      return fn.emitOpError() << "reduces the loss and its tokens differently: mtrun adds and "
                                 "reduces both alike";
    if (!out.bindings().has_num_tokens())
      return fn.emitOpError() << "divides by the step's tokens, but @forward_backward returns "
                                 "no num_tokens (mt-build-optimizer's per-token-loss)";
  }
  return success();
}

/// `mtrun --lr X` sets each lr_schedule's max_lr to X and its min_lr to X
/// times its ratio to max_lr.
void emitPeakLearningRate(plan::Plan &out) {
  for (int p = 0; p < out.programs_size(); ++p)
    for (int i = 0; i < out.programs(p).instructions_size(); ++i) {
      const plan::Instruction &instr = out.programs(p).instructions(i);
      if (!plan::isOp(instr, plan::Op::lr_schedule))
        continue;
      const plan::Attrs attrs(instr);
      const double peak = attrs.f("max_lr");
      auto target = [&](const char *attribute, double ratio) {
        plan::PeakLearningRate::Target &t = *out.mutable_peak_learning_rate()->add_targets();
        t.set_program(uint32_t(p));
        t.set_instruction(uint32_t(i));
        t.set_attribute(attribute);
        t.set_ratio(ratio);
      };
      target("max_lr", 1.0);
      if (peak > 0) // a schedule without a peak keeps its floor
        target("min_lr", attrs.f("min_lr") / peak);
    }
}

} // namespace

FailureOr<plan::Plan> emitPlan(ModuleOp module, const ParallelConfig &parallel,
                               const TrainingOptions &training) {
  auto fb = module.lookupSymbol<func::FuncOp>("forward_backward");
  auto opt = module.lookupSymbol<func::FuncOp>("optimizer_step");
  if (!fb || !opt)
    return module.emitError()
           << "plan emission expects @forward_backward and @optimizer_step "
              "(run mt-autodiff and mt-build-optimizer first)";
  plan::Plan out;
  if (parallel.pp > 1) {
    auto pipelined = emitPipelinePlan(module, fb, opt, parallel);
    if (failed(pipelined))
      return failure();
    out = std::move(*pipelined);
  } else if (failed(emitSingleStage(module, fb, opt, parallel, out))) {
    return failure();
  }
  auto *mesh = out.mutable_mesh();
  mesh->set_pp(parallel.pp), mesh->set_dp(parallel.dp), mesh->set_cp(parallel.cp);
  // etp (default tp) means nothing to a dense model: 1, so that the
  // runtime forms no expert groups for it.
  const bool experts = static_cast<bool>(module.lookupSymbol<shard::GridOp>(kExpertMeshName));
  mesh->set_ep(parallel.ep), mesh->set_tp(parallel.tp), mesh->set_etp(experts ? parallel.etp : 1);
  mesh->set_experts(experts && (parallel.ep > 1 || parallel.etp > 1 || parallel.tp > 1));
  auto *t = out.mutable_training();
  t->set_micro_batch(parallel.microBatch);
  t->set_seq(parallel.seq);
  t->set_global_batch(parallel.globalBatch);
  t->set_micro_batches_per_step(parallel.numMicroBatches());
  t->set_train_steps(training.trainSteps);
  // The model's vocabulary: not this rank's slice of the logits, nor the
  // rows tp padding adds (token ids are checked against it).
  fb.walk([&](Operation *op) {
    auto logits = [](Value v) { return cast<RankedTensorType>(v.getType()).getDimSize(2); };
    if (auto ce = dyn_cast<CrossEntropyOp>(op))
      t->set_vocab_size(logits(ce.getLogits()));
    else if (auto max = dyn_cast<VocabParallelLogitsMaxOp>(op))
      t->set_vocab_size(max.getValidVocab() ? int64_t(*max.getValidVocab())
                                            : logits(max.getLogits()) * parallel.tp);
  });
  if (auto config = module->getAttrOfType<StringAttr>(MtDialect::kHfConfigAttrName))
    out.set_hf_config_json(config.str());
  const int64_t pp = std::max<int64_t>(parallel.pp, 1);
  const int64_t vpp = parallel.pp > 1 ? int64_t(parallel.chunkLayers.size()) / pp : 1;
  if (Status s = emitSchedule(out, pp, vpp, parallel.numMicroBatches()); !s)
    return module.emitError() << s.message();
  if (failed(emitStepLoss(module, out)))
    return failure();
  emitPeakLearningRate(out);
  if (parallel.optimizerOffload)
    OptimizerOffload::bindMasterPrograms(out);
  return out;
}

} // namespace mt
