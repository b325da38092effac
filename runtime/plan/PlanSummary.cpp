// plan.txt: the plan in words, for people.
#include "runtime/plan/PlanIO.h"
#include "runtime/support/Wording.h"

#include <iomanip>

namespace mt::plan {
namespace {

std::string shapeOf(const Buffer &b) {
  std::string s = "[";
  for (int i = 0; i < b.shape_size(); ++i) {
    if (i)
      s += 'x';
    s += std::to_string(b.shape(i));
  }
  return s + "]";
}

std::string attrText(const Attribute &a) {
  std::ostringstream os;
  os << a.name() << "=";
  if (a.has_i())
    os << a.i();
  else if (a.has_f())
    os << a.f();
  else
    os << a.s();
  return os.str();
}

/// One action as the schedule line shows it: F<m>@<v> and B<m>@<v> on a
/// virtual stage, FB<m> without pp, then the optimizer program's name.
std::string actionText(const Plan &plan, const Action &a) {
  const std::string m = std::to_string(a.micro_batch()), v = std::to_string(a.virtual_stage());
  switch (a.kind()) {
  case Action::FORWARD: return "F" + m + "@" + v;
  case Action::BACKWARD: return "B" + m + "@" + v;
  case Action::FORWARD_BACKWARD: return "FB" + m;
  default:
    return a.program() < uint32_t(plan.programs_size()) ? plan.programs(int(a.program())).name()
                                                          : "?";
  }
}

} // namespace

void writePlanSummary(const Plan &plan, std::ostream &os) {
  const Mesh &m = plan.mesh();
  const Training &t = plan.training();
  os << "mtc plan, version " << plan.version() << "\n";
  os << "mesh (pp, dp, cp, tp) = (" << m.pp() << ", " << m.dp() << ", " << m.cp() << ", "
     << m.tp() << ")";
  if (m.ep() > 1)
    os << ", expert layers (ep, etp) = (" << m.ep() << ", " << std::max<int64_t>(m.etp(), 1)
       << ")";
  os << "\n";
  os << "batch: micro-batch " << t.micro_batch() << " x seq " << t.seq() << ", "
     << countOf(t.micro_batches_per_step(), "micro-batch", "micro-batches")
     << " per step, global batch "
     << t.global_batch() << ", vocabulary " << t.vocab_size() << "\n";
  if (t.grad_reduce_in_bf16())
    os << "dp gradient reduction in bf16 (grad_reduce_in_fp32: false)\n";
  if (t.deterministic_mode())
    os << "deterministic kernels (deterministic_mode: true)\n";
  os << "\narenas:\n";
  for (const Arena &a : plan.arenas())
    os << "  " << std::setw(21) << ArenaKind_Name(a.kind()) << " " << std::setw(14)
       << a.size_bytes() << " bytes\n";
  os << "\nparameters (" << plan.parameters_size() << "):\n";
  for (const Parameter &p : plan.parameters()) {
    const Buffer &b = plan.buffers(p.param_buffer());
    os << "  " << p.name() << " " << shapeOf(b) << " init " << InitKind_Name(p.init());
    if (p.init() == NORMAL)
      os << "(std " << p.init_std() << ")";
    os << (p.trainable() ? "" : " frozen") << "\n";
  }
  for (const Program &program : plan.programs()) {
    os << "\nprogram " << program.name() << " (" << program.instructions_size()
       << " instructions):\n";
    for (int i = 0; i < program.instructions_size(); ++i) {
      const Instruction &instr = program.instructions(i);
      os << "  " << std::setw(4) << i << "  " << instr.op() << " (";
      for (int k = 0; k < instr.inputs_size(); ++k)
        os << (k ? ", " : "") << "%" << instr.inputs(k);
      os << ") -> (";
      for (int k = 0; k < instr.outputs_size(); ++k)
        os << (k ? ", " : "") << "%" << instr.outputs(k);
      os << ")";
      if (instr.has_workspace())
        os << " workspace %" << instr.workspace();
      for (const Attribute &a : instr.attributes())
        os << " " << attrText(a);
      if (!instr.location().empty())
        os << "  // " << instr.location();
      os << "\n";
    }
  }
  os << "\nschedule (each stage's actions in order; F/B m@v: forward/backward of micro-batch m "
        "on virtual stage v):\n";
  for (const StageSchedule &stage : plan.schedule()) {
    os << "  stage " << stage.stage() << " ("
       << countOf(stage.activation_slots(), "activation slot") << "):";
    for (const Action &a : stage.actions())
      os << " " << actionText(plan, a);
    if (stage.has_master_weights_program() &&
        stage.master_weights_program() < uint32_t(plan.programs_size()))
      os << "; at the start and after a load: "
         << plan.programs(int(stage.master_weights_program())).name();
    os << "\n";
  }
  const StepLoss &loss = plan.step_loss();
  os << "step loss: the sum of the actions' losses x " << loss.micro_batch_weight();
  for (const StepLoss::Reduction &r : loss.reductions())
    os << ", " << r.reduce() << " over " << r.axis();
  if (loss.per_token_loss())
    os << ", divided by the num_tokens of the same actions, reduced alike";
  os << "; gradient seed (loss_scale) " << loss.loss_scale() << "\n";
  os << "mtrun --lr X sets:";
  for (const PeakLearningRate::Target &t : plan.peak_learning_rate().targets())
    os << " " << (t.program() < uint32_t(plan.programs_size())
                      ? plan.programs(int(t.program())).name() : std::string("?"))
       << "#" << t.instruction() << "." << t.attribute() << " = X x " << t.ratio();
  os << "\n";
  os << "\nbuffers (" << plan.buffers_size() << "):\n";
  for (const Buffer &b : plan.buffers())
    os << "  %" << b.id() << " " << b.name() << " " << DType_Name(b.dtype())
       << shapeOf(b) << " " << ArenaKind_Name(b.arena()) << "+" << b.offset_bytes() << "\n";
}

} // namespace mt::plan
