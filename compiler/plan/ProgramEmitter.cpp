// Lowering of a function's ops into plan instructions.
#include "compiler/plan/ProgramEmitter.h"

#include "compiler/plan/OpLowering.h"
#include "dialects/mt/MtDialect.h"
#include "runtime/plan/DeviceFootprint.h"
#include "runtime/plan/OpRegistry.h"

using namespace mlir;

namespace mt {

bool isAccumulatingOp(Operation *op) {
  const plan::OpSignature *instr = plan::findOpLoweredFrom(op->getName().getStringRef().str());
  return instr && instr->addsIntoOutputs;
}

void ProgramEmitter::groupValues() {
  fn_.walk([&](Operation *op) {
    if (isAccumulatingOp(op))
      for (Value r : op->getResults())
        accumulating_.insert(leader(r));
    if (isa<ReshapeOp, TPCopyOp, StageTransferOp>(op)) { // aliases of their input
      Value in = op->getOperand(0), out = op->getResult(0);
      bool acc = isAccumulating(in);
      groups_.unionSets(in, out);
      if (acc)
        accumulating_.insert(leader(out));
    }
    // The parts of a gradient written with += are too (bindPackedViews).
    if (auto split = dyn_cast<SplitRowsOp>(op); split && isAccumulating(split.getInput()))
      for (Value r : split.getResults())
        accumulating_.insert(leader(r));
    if (auto add = dyn_cast<AddOp>(op)) {
      Value a = add.getLhs(), b = add.getRhs();
      if (a != b && a.hasOneUse() && b.hasOneUse() && isAccumulating(a) &&
          isAccumulating(b)) {
        groups_.unionSets(a, b);
        groups_.unionSets(a, add.getResult());
        accumulating_.insert(leader(a));
      }
    }
  });
}

uint32_t ProgramEmitter::bufferOf(Value v, plan::ArenaKind arena) {
  Value l = leader(v);
  if (auto it = bound_.find(l); it != bound_.end())
    return it->second;
  auto type = cast<RankedTensorType>(v.getType());
  std::string name = "%" + std::to_string(bound_.size());
  if (Operation *def = v.getDefiningOp())
    name = def->getName().stripDialect().str() + name;
  uint32_t id = planner_.addBuffer(name, type, arena);
  bound_[l] = id;
  return id;
}

LogicalResult ProgramEmitter::emitOps() {
  SmallVector<Operation *> ops;
  for (Operation &op : fn_.getBody().front().without_terminator())
    ops.push_back(&op);
  return emitOps(ops);
}

LogicalResult ProgramEmitter::emitOps(ArrayRef<Operation *> ops) {
  DenseSet<Operation *> here(ops.begin(), ops.end());
  for (Operation *op : ops)
    if (failed(emitOp(op)))
      return failure();
  for (auto [value, target] : pendingAccumulates_) {
    if (!here.contains(value.getDefiningOp()))
      continue;
    auto *instr = program_->add_instructions();
    instr->set_op(plan::signature(plan::Op::accumulate).name);
    instr->add_inputs(bufferOf(value));
    instr->add_outputs(target);
    auto *n = instr->add_attributes();
    n->set_name("n");
    n->set_i(cast<RankedTensorType>(value.getType()).getNumElements());
    instr->set_location("gradient accumulation");
  }
  return success();
}

bool ProgramEmitter::isLastRead(Value v, Operation *op) {
  for (Value member : groups_.members(leader(v)))
    for (Operation *user : member.getUsers())
      if (user != op && (user->getBlock() != op->getBlock() || !user->isBeforeInBlock(op)))
        return false;
  return true;
}

bool ProgramEmitter::isElided(Operation *op) {
  auto add = dyn_cast<AddOp>(op);
  return add && leader(add.getLhs()) == leader(add.getResult());
}

void ProgramEmitter::bindWeights() {
  fn_.walk([&](WeightOp weight) { bindWeight(weight); });
}

void ProgramEmitter::addAttentionWorkspace(plan::Instruction &instr) {
  // The forward needs none (the mtc kernels none, cuDNN's predicted none).
  if (instr.has_workspace() || !(plan::isOp(instr, plan::Op::attention_grad) ||
                                 plan::isOp(instr, plan::Op::attention_block_grad)))
    return;
  const uint64_t need =
      plan::attentionWorkspaceOf(planner_.plan(), instr, plan::kAssumedDeviceBytes).bytes;
  if (!need)
    return;
  // F32 elements of 2 device bytes each (the CUDA backend's bf16 layout).
  const uint64_t bytes = plan::plannedWorkspaceBytes(need);
  auto type = RankedTensorType::get({int64_t((bytes + 1) / 2)},
                                    Float32Type::get(fn_.getContext()));
  planner_.addWorkspace("attention_workspace", type, instr);
}

void ProgramEmitter::finishProgram() {
  // Liveness: a buffer lives from its first to its last instruction; the
  // inputs of a deferred one (overlap_param_gather) to the end of the
  // program, before whose next program the backend may run it; a planned
  // workspace, for its instruction alone.
  for (int i = 0, e = program_->instructions_size(); i < e; ++i) {
    auto &instr = *program_->mutable_instructions(i);
    addAttentionWorkspace(instr);
    const bool deferred = plan::Attrs(instr).i("deferred") == 1;
    for (uint32_t id : instr.inputs())
      planner_.touch(id, deferred ? e : i);
    for (uint32_t id : plan::buffersWritten(instr))
      planner_.touch(id, i);
  }
  planner_.finishProgram();
}

void ProgramEmitter::bindWeight(WeightOp weight) {
  bind(weight.getResult(), planner_.parameterBuffers(weight.getParam()).param);
}

LogicalResult ProgramEmitter::bindPackedViews() {
  auto view = [&](Operation *op, Value whole, ArrayRef<uint32_t> members) -> LogicalResult {
    std::string name = op->getName().stripDialect().str() + ":" +
                       planner_.bufferName(members.front());
    Expected<uint32_t> id =
        planner_.addPackedView(name, cast<RankedTensorType>(whole.getType()), members);
    if (!id)
      return op->emitOpError() << id.message();
    bind(whole, *id);
    return success();
  };
  WalkResult walk = fn_.walk([&](Operation *op) {
    SmallVector<uint32_t> members;
    if (auto concat = dyn_cast<ConcatRowsOp>(op)) {
      for (auto [i, input] : llvm::enumerate(concat.getInputs())) {
        auto weight = input.getDefiningOp<WeightOp>();
        if (!weight)
          return WalkResult(op->emitOpError()
                            << "input #" << i << " is no mt.weight: the plan views "
                               "parameters' buffers only");
        members.push_back(planner_.parameterBuffers(weight.getParam()).param);
      }
      return WalkResult(view(op, concat.getResult(), members));
    }
    if (auto split = dyn_cast<SplitRowsOp>(op)) {
      for (auto [i, result] : llvm::enumerate(split.getResults())) {
        auto it = bound_.find(leader(result));
        if (it == bound_.end() || planner_.arenaOf(it->second) != plan::GRADIENTS)
          return WalkResult(op->emitOpError()
                            << "result #" << i << " is no parameter's gradient: the plan "
                               "views gradient buffers only");
        members.push_back(it->second);
      }
      return WalkResult(view(op, split.getInput(), members));
    }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult ProgramEmitter::emitOp(Operation *op) {
  if (auto weight = dyn_cast<WeightOp>(op)) {
    bindWeight(weight);
    return success();
  }
  if (isa<ConcatRowsOp, SplitRowsOp>(op))
    return success(); // views (bindPackedViews)
  if (isa<ReshapeOp, TPCopyOp, StageTransferOp>(op))
    return success(); // an alias: no instruction (a transfer's send and recv come with
                      // its programs: PlanEmitter)
  // An all-reduce or a scale of a value used nowhere else works in place:
  // the expert gradients' 1 / dp costs no second copy of them (which
  // the CUDA backend would keep in fp32, apart from the reused activations).
  if (isa<AllReduceOp, ScaleOp>(op) && op->getOperand(0).hasOneUse())
    bind(op->getResult(0), bufferOf(op->getOperand(0)));
  // So does a scaling by a runtime scalar of a temporary or a gradient
  // (per-token loss: each gradient divided by the step's tokens), unless its
  // result has a buffer of its own already (the loss).
  if (auto scale = dyn_cast<ScaleByOp>(op);
      scale && scale.getInput().hasOneUse() && !bound_.count(leader(scale.getResult()))) {
    uint32_t in = bufferOf(scale.getInput());
    plan::ArenaKind arena = planner_.arenaOf(in);
    if (arena == plan::ACTIVATIONS || arena == plan::GRADIENTS)
      bind(scale.getResult(), in);
  }
  // The logits' gradient takes the logits' buffer where nothing reads them
  // after it (the loss's forward instructions come first): one [tokens,
  // vocab] buffer instead of two at the step's peak. The kernels write each
  // element after reading it.
  if (isa<CrossEntropyGradOp, VocabParallelCrossEntropyGradOp>(op) &&
      !bound_.count(leader(op->getResult(0))) && isLastRead(op->getOperand(0), op) &&
      planner_.arenaOf(bufferOf(op->getOperand(0))) == plan::ACTIVATIONS)
    bind(op->getResult(0), bufferOf(op->getOperand(0)));
  if (isElided(op))
    return success(); // both terms already accumulated into one buffer
  plan::Instruction instr;
  if (failed(lowerOpAttributes(op, instr)))
    return failure();
  std::string loc;
  llvm::raw_string_ostream os(loc);
  os << op->getName();
  if (auto layer = op->getAttrOfType<IntegerAttr>(MtDialect::kLayerAttrName))
    os << " (layer " << layer.getInt() << ")";
  instr.set_location(loc);

  // attention_grad reads the forward's log-sum-exp after its five tensors,
  // before the optional position ids (the order of its instruction record,
  // dialects/mt/MtGradOps.td).
  auto attentionGrad = dyn_cast<AttentionGradOp>(op);
  for (auto [i, operand] : llvm::enumerate(op->getOperands())) {
    if (attentionGrad && i == 5)
      instr.add_inputs(lse_.at(attentionGrad.getOut()));
    instr.add_inputs(bufferOf(operand));
  }
  if (attentionGrad && !attentionGrad.getPositionIds())
    instr.add_inputs(lse_.at(attentionGrad.getOut()));
  for (Value result : op->getResults()) {
    uint32_t id = bufferOf(result);
    instr.add_outputs(id);
    // A group written with += starts from zero, unless it is a persistent
    // gradient (zeroed once per step by the runtime).
    if (isAccumulatingOp(op) && planner_.arenaOf(id) == plan::ACTIVATIONS &&
        zeroed_.insert(leader(result)).second) {
      auto *zero = program_->add_instructions();
      zero->set_op(plan::signature(plan::Op::fill_zero).name);
      zero->add_outputs(id);
      auto *n = zero->add_attributes();
      n->set_name("n");
      n->set_i(cast<RankedTensorType>(result.getType()).getNumElements());
      zero->set_location(loc);
    }
  }
  if (auto attn = dyn_cast<AttentionOp>(op)) {
    auto q = cast<RankedTensorType>(attn.getQuery().getType());
    auto lseType = RankedTensorType::get(
        {q.getDimSize(0), int64_t(attn.getNumHeads()), q.getDimSize(1)},
        Float32Type::get(op->getContext()));
    uint32_t lse = planner_.addBuffer("attention_lse", lseType, plan::ACTIVATIONS);
    instr.add_outputs(lse);
    lse_[attn.getResult()] = lse;
  }
  *program_->add_instructions() = std::move(instr);
  return success();
}

} // namespace mt
