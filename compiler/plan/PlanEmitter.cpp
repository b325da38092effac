// Lowers @forward_backward and @optimizer_step to plan programs. Gradients
// are accumulated in place: backward kernels add into their outputs, so the
// sum of two gradients (mt.add of two backward results used once) becomes one
// buffer that both write, and parameter gradients are the persistent
// gradient buffers themselves (zeroed once per step, summed over
// micro-batches).
#include "compiler/plan/PlanEmitter.h"

#include "compiler/plan/BufferPlanner.h"
#include "compiler/plan/ProgramEmitter.h"
#include "dialects/mt/MtDialect.h"
#include "runtime/plan/PlanVersion.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/EquivalenceClasses.h"

using namespace mlir;

namespace mt {
namespace {

LogicalResult bindForwardBackward(func::FuncOp fn, ProgramEmitter &emitter,
                                  BufferPlanner &planner, plan::Plan &out,
                                  const DenseMap<StringRef, uint32_t> &gradBuffers) {
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
  }
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  for (unsigned i = 1; i < ret.getNumOperands(); ++i) {
    auto param = fn.getResultAttrOfType<FlatSymbolRefAttr>(i, "mt.grad_of");
    if (!param)
      return fn.emitOpError() << "result " << i << " has no 'mt.grad_of'";
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
  return success();
}

LogicalResult bindOptimizerStep(func::FuncOp fn, ProgramEmitter &emitter,
                                BufferPlanner &planner, plan::Plan &out) {
  auto bufferOfRole = [&](unsigned arg) -> FailureOr<uint32_t> {
    auto role = fn.getArgAttrOfType<StringAttr>(arg, "mt.role");
    if (role && role.getValue() == "step")
      return emitter.bufferOf(fn.getArgument(arg), plan::INPUTS);
    auto param = fn.getArgAttrOfType<FlatSymbolRefAttr>(arg, "mt.param");
    if (!role || !param)
      return fn.emitOpError() << "argument " << arg << " has no 'mt.role'/'mt.param'";
    const ParameterBuffers &p = planner.parameterBuffers(param.getValue());
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
    } else if (auto norm = dyn_cast<GlobalNormOp>(op)) {
      bindings->set_grad_norm(emitter.bufferOf(norm.getNorm(), plan::OUTPUTS));
      planner.rename(bindings->grad_norm(), "grad_norm");
    } else if (auto lr = dyn_cast<LRScheduleOp>(op)) {
      bindings->set_learning_rate(emitter.bufferOf(lr.getLr(), plan::OUTPUTS));
      planner.rename(bindings->learning_rate(), "learning_rate");
    }
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  // Every result must be an in-place update of the state it names.
  auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
    auto role = fn.getResultAttrOfType<StringAttr>(i, "mt.role");
    auto param = fn.getResultAttrOfType<FlatSymbolRefAttr>(i, "mt.param");
    if (!role || !param || !isa_and_nonnull<AdamWOp>(v.getDefiningOp()))
      return fn.emitOpError() << "result " << i
                              << " must be an mt.adamw update with 'mt.role' and 'mt.param'";
  }
  return success();
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
  out.set_version(plan::kPlanVersion);
  BufferPlanner planner(out);
  DenseMap<StringRef, uint32_t> gradBuffers;
  if (failed(planner.addParameters(module, gradBuffers)))
    return failure();

  ProgramEmitter fbEmitter(planner, *out.add_programs(), fb);
  out.mutable_programs(0)->set_name("forward_backward");
  fbEmitter.groupValues();
  if (failed(bindForwardBackward(fb, fbEmitter, planner, out, gradBuffers)) ||
      failed(fbEmitter.emitOps()))
    return failure();
  planner.finishProgram();

  ProgramEmitter optEmitter(planner, *out.add_programs(), opt);
  out.mutable_programs(1)->set_name("optimizer_step");
  if (failed(bindOptimizerStep(opt, optEmitter, planner, out)) ||
      failed(optEmitter.emitOps()))
    return failure();
  planner.finishProgram();
  planner.assignOffsets();

  auto *mesh = out.mutable_mesh();
  mesh->set_pp(parallel.pp), mesh->set_dp(parallel.dp), mesh->set_cp(parallel.cp);
  mesh->set_ep(parallel.ep), mesh->set_tp(parallel.tp);
  auto *t = out.mutable_training();
  t->set_micro_batch(parallel.microBatch);
  t->set_seq(parallel.seq);
  t->set_global_batch(parallel.globalBatch);
  t->set_micro_batches_per_step(parallel.numMicroBatches());
  t->set_train_steps(training.trainSteps);
  fb.walk([&](CrossEntropyOp ce) { // the full vocabulary, not this rank's slice
    int64_t local = cast<RankedTensorType>(ce.getLogits().getType()).getDimSize(2);
    t->set_vocab_size(ce.getVocabParallelAxis() ? local * parallel.tp : local);
  });
  if (auto config = module->getAttrOfType<StringAttr>(MtDialect::kHfConfigAttrName))
    out.set_hf_config_json(config.str());
  return out;
}

} // namespace mt
