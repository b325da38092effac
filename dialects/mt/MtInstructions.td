// The plan instruction of each op: the one definition the compiler's plan
// lowering and the runtime's plan loader and kernel tables both follow.
// tools/mt-tblgen writes runtime/plan/OpTable.inc from these records (the
// runtime never links MLIR); the test OpTableIsCurrent fails when the
// committed table is stale (regenerate: cmake --build build --target
// update-op-table).
#ifndef MT_INSTRUCTIONS_TD
#define MT_INSTRUCTIONS_TD

// `family`: the profile's class of the instruction, a plan::OpFamily
// (Gemm, Attention, Norm, Loss, Elementwise, MoE, Fill, Optimizer,
// Collective, Pipeline).
//
// `attributes`: the instruction's attributes, space-separated, each
// `name[:kind][?]`: kind i (integer >= 0, the default), f (float) or s
// (string), or `name=a|b|c` for a string that is one of a, b, c (absent:
// the first); `?` marks an optional attribute. The plan loader refuses a
// missing required attribute, a wrong kind and an undeclared name.
//
// `elements`: the element count of each input then each output,
// `;`-separated, as a product of integer attributes and literals
// (`tokens*hidden`, `1`), optionally divided by one attribute
// (`experts/parts`; zero counts as 1); `guard?count` is an operand present
// only when the attribute `guard` is non-zero; `-` leaves one unchecked.
// Empty: none is checked (a variadic op).
//
// The inputs and outputs are the op's operands and results in ODS order,
// then `extraInputs` / `extraOutputs` more that the plan emitter binds
// (attention's log-sum-exp; attention_grad reads it before its optional
// position ids, compiler/plan/ProgramEmitter.cpp).
class Mt_Instruction<string family_, string attributes_, string elements_,
                     int extraInputs_ = 0, int extraOutputs_ = 0, string name_ = ""> {
  string family = family_;
  string attributes = attributes_;
  string elements = elements_;
  int extraInputs = extraInputs_;
  int extraOutputs = extraOutputs_;
  /// The instruction's name when not the op's mnemonic.
  string name = name_;
}

// An instruction that no op lowers to: the plan emitter writes it itself.
class Mt_PlanInstruction<string name_, int inputs_, int outputs_, string family_,
                         string attributes_, string elements_, bit adds_ = 0>
    : Mt_Instruction<family_, attributes_, elements_> {
  let name = name_;
  int inputs = inputs_;
  int outputs = outputs_;
  bit addsIntoResults = adds_;
}

// `accumulate`: adds a value used twice into the buffer of its first use.
def Mt_AccumulateInstruction
    : Mt_PlanInstruction<"accumulate", 1, 1, "Elementwise", "n", "n; n", 1>;
// Pipeline transfers between virtual stages (compiler/plan/PlanEmitter.cpp).
def Mt_SendInstruction
    : Mt_PlanInstruction<"send", 1, 0, "Pipeline", "n peer_virtual_stage", "n">;
def Mt_RecvInstruction
    : Mt_PlanInstruction<"recv", 0, 1, "Pipeline", "n peer_virtual_stage", "n">;

// optimizer_offload's copies between a device arena and a host arena
// (compiler/plan/OptimizerOffload.cpp): n fp32 elements, output = input. On
// CUDA they run on a copy stream of their own, ordered with events.
def Mt_CopyToHostInstruction
    : Mt_PlanInstruction<"copy_to_host", 1, 1, "Optimizer", "n", "n; n">;
def Mt_CopyToDeviceInstruction
    : Mt_PlanInstruction<"copy_to_device", 1, 1, "Optimizer", "n", "n; n">;

#endif // MT_INSTRUCTIONS_TD
