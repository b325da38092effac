// The plan loader's checks: every malformed plan is refused before anything
// runs, with a message that names the instruction or buffer.
#include "runtime/plan/PlanIO.h"
#include "runtime/plan/PlanVersion.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <tuple>

namespace mt::plan {
namespace {

/// A valid plan: three 4-element buffers and one add.
Plan smallPlan() {
  Plan p;
  p.set_version(kPlanVersion);
  auto *arena = p.add_arenas();
  arena->set_kind(ACTIVATIONS);
  arena->set_size_bytes(3 * 64);
  for (uint32_t i = 0; i < 3; ++i) {
    auto *b = p.add_buffers();
    b->set_id(i);
    b->set_name("b" + std::to_string(i));
    b->set_dtype(F32);
    b->add_shape(4);
    b->set_arena(ACTIVATIONS);
    b->set_offset_bytes(64 * i);
    b->set_size_bytes(16);
  }
  auto *fb = p.add_programs();
  fb->set_name("forward_backward");
  auto *add = fb->add_instructions();
  add->set_op("add");
  add->add_inputs(0);
  add->add_inputs(1);
  add->add_outputs(2);
  auto *n = add->add_attributes();
  n->set_name("n");
  n->set_i(4);
  add->set_location("mt.add (layer 3)");
  p.add_programs()->set_name("optimizer_step");
  auto *t = p.mutable_training();
  t->set_micro_batch(1), t->set_seq(4), t->set_micro_batches_per_step(1);
  auto *stage = p.add_schedule();
  stage->set_activation_slots(1);
  auto *run = stage->add_actions();
  run->set_kind(Action::FORWARD_BACKWARD);
  run->set_load_inputs(true);
  run->set_adds_loss(true);
  auto *step = stage->add_actions();
  step->set_kind(Action::OPTIMIZER_STEP);
  step->set_program(1);
  step->set_micro_batch(-1);
  p.mutable_step_loss()->set_micro_batch_weight(1.0);
  p.mutable_step_loss()->set_loss_scale(1.0);
  return p;
}

std::string errorOf(const Plan &p) {
  Status s = validatePlan(p);
  return s ? "" : s.message();
}

TEST(PlanValidation, AcceptsAValidPlan) { EXPECT_EQ(errorOf(smallPlan()), ""); }

// The schedule mtrun replays: every way it can be unrunnable is refused
// with the action named.
TEST(PlanValidation, RejectsAScheduleThatCannotBeReplayed) {
  Plan p = smallPlan();
  p.clear_schedule();
  EXPECT_EQ(errorOf(p), "the plan has 0 stage schedules for 1 pipeline stages");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions(0)->set_program(7);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 runs program 7, out of range (2 programs)");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions(0)->set_kind(Action::FORWARD);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 has kind FORWARD, which a single-stage "
                        "schedule cannot run");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions(0)->set_micro_batch(1);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 runs micro-batch 1, expected 0 <= "
                        "micro-batch < 1");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions(0)->set_slot(1);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 uses activation slot 1 of 1");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions(0)->set_load_inputs(false);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 runs micro-batch 0 before its inputs "
                        "are loaded");

  p = smallPlan();
  p.mutable_schedule(0)->mutable_actions()->SwapElements(0, 1);
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 0 is the optimizer step, which ends every "
                        "stage's schedule");
}

// The loss reductions and the --lr targets mtrun applies.
TEST(PlanValidation, RejectsStepRulesMtrunCannotApply) {
  Plan p = smallPlan();
  p.mutable_step_loss()->set_micro_batch_weight(0);
  EXPECT_EQ(errorOf(p), "the plan's step_loss has micro_batch_weight 0.000000 and loss_scale "
                        "1.000000; both must be > 0");

  p = smallPlan();
  auto *r = p.mutable_step_loss()->add_reductions();
  r->set_axis("dp");
  r->set_reduce("max");
  EXPECT_EQ(errorOf(p), "the plan's step_loss reduces over 'dp' by 'max'; expected a mesh axis "
                        "(pp, dp, cp, tp) and sum or mean");

  p = smallPlan();
  auto *t = p.mutable_peak_learning_rate()->add_targets();
  t->set_program(0);
  t->set_instruction(0);
  t->set_attribute("max_lr");
  t->set_ratio(1.0);
  EXPECT_EQ(errorOf(p), "peak_learning_rate target (program 0, instruction 0) names 'max_lr' of "
                        "a 'add', expected a floating-point attribute of an lr_schedule");
  t->set_instruction(5);
  EXPECT_EQ(errorOf(p), "peak_learning_rate target (program 0, instruction 5) is out of range");
}

// calculate_per_token_loss: mtrun divides by the num_tokens binding, which
// must be there and be a scalar it reads on the host.
TEST(PlanValidation, RejectsAPerTokenLossWithoutItsTokenCount) {
  Plan p = smallPlan();
  p.mutable_step_loss()->set_per_token_loss(true);
  EXPECT_EQ(errorOf(p), "the plan's step_loss is per token (calculate_per_token_loss) but binds "
                        "no num_tokens buffer");
  p.mutable_bindings()->set_num_tokens(2); // four elements of ACTIVATIONS
  EXPECT_EQ(errorOf(p), "the num_tokens binding (buffer 2) is not an f32 scalar of the OUTPUTS "
                        "arena");
}

// A Training edited against the input buffers (micro_batch 23 for buffers
// of 1 x 4) would have the trainer write past them.
TEST(PlanValidation, RejectsABatchItsInputBuffersDoNotHold) {
  Plan p = smallPlan();
  p.mutable_training()->set_micro_batch(23);
  EXPECT_EQ(errorOf(p), "the input_ids binding (buffer 0) does not hold Training's micro_batch "
                        "(23) x seq (4) / cp elements");
  p = smallPlan();
  p.mutable_training()->set_seq(2);
  EXPECT_NE(errorOf(p).find("micro_batch (1) x seq (2)"), std::string::npos) << errorOf(p);
}

TEST(PlanValidation, RejectsAnotherVersion) {
  for (uint32_t version : {kPlanVersion - 1, kPlanVersion + 1}) {
    Plan p = smallPlan();
    p.set_version(version);
    const std::string want = "plan version " + std::to_string(version) +
                             " is not supported by this mtrun (it reads version " +
                             std::to_string(kPlanVersion) + ")";
    EXPECT_NE(errorOf(p).find(want), std::string::npos) << errorOf(p);
  }
}

TEST(PlanValidation, RejectsAnUnknownOp) {
  Plan p = smallPlan();
  p.mutable_programs(0)->mutable_instructions(0)->set_op("conv2d");
  EXPECT_EQ(errorOf(p), "program 'forward_backward' instruction 0 (conv2d, mt.add (layer 3)): "
                        "unknown op 'conv2d'");
}

TEST(PlanValidation, RejectsABufferIdOutOfRange) {
  Plan p = smallPlan();
  p.mutable_programs(0)->mutable_instructions(0)->set_inputs(1, 9);
  EXPECT_NE(errorOf(p).find("buffer 9 out of range (the plan has 3 buffers)"), std::string::npos);
}

TEST(PlanValidation, RejectsABufferOfTheWrongSize) {
  Plan p = smallPlan();
  p.mutable_programs(0)->mutable_instructions(0)->mutable_attributes(0)->set_i(8);
  EXPECT_NE(errorOf(p).find("buffer 0 'b0' has 4 elements, the op needs 8"), std::string::npos);
}

TEST(PlanValidation, RejectsAMissingAttribute) {
  Plan p = smallPlan();
  p.mutable_programs(0)->mutable_instructions(0)->clear_attributes();
  EXPECT_NE(errorOf(p).find("missing or negative integer attribute 'n'"), std::string::npos);
}

/// A string attribute outside its op's values is refused, whichever op:
/// lr_schedule's style would otherwise run as cosine.
TEST(PlanValidation, RejectsAnUnknownLearningRateSchedule) {
  auto withStyle = [](const std::string &style) {
    Plan p = smallPlan();
    p.mutable_arenas(0)->set_size_bytes(5 * 64);
    for (uint32_t i : {3u, 4u}) {
      auto *b = p.add_buffers();
      b->set_id(i);
      b->set_name(i == 3 ? "step" : "lr");
      b->set_dtype(i == 3 ? I64 : F32);
      b->set_arena(ACTIVATIONS);
      b->set_offset_bytes(64 * i);
      b->set_size_bytes(i == 3 ? 8 : 4);
    }
    auto *lr = p.mutable_programs(1)->add_instructions();
    lr->set_op("lr_schedule");
    lr->add_inputs(3);
    lr->add_outputs(4);
    for (const char *name : {"max_lr", "min_lr"}) {
      auto *a = lr->add_attributes();
      a->set_name(name);
      a->set_f(1e-3);
    }
    for (const char *name : {"warmup_steps", "decay_steps"}) {
      auto *a = lr->add_attributes();
      a->set_name(name);
      a->set_i(10);
    }
    auto *a = lr->add_attributes();
    a->set_name("style");
    a->set_s(style);
    return errorOf(p);
  };
  EXPECT_EQ(withStyle("hf_cosine_with_min_lr"), "");
  EXPECT_EQ(withStyle("cosin"),
            "program 'optimizer_step' instruction 0 (lr_schedule): attribute 'style' must be one "
            "of cosine, linear, constant, hf_constant, hf_constant_with_warmup, hf_linear, "
            "hf_cosine, hf_cosine_with_min_lr, got 'cosin'");
}

TEST(PlanValidation, RejectsWrongArity) {
  Plan p = smallPlan();
  p.mutable_programs(0)->mutable_instructions(0)->add_outputs(1);
  EXPECT_NE(errorOf(p).find("expects 2 inputs and 1 outputs, got 2 and 2"), std::string::npos);
}

TEST(PlanValidation, RejectsABufferOutsideItsArena) {
  Plan p = smallPlan();
  p.mutable_buffers(2)->set_offset_bytes(180);
  EXPECT_NE(errorOf(p).find("buffer 2 'b2' at offset 180 + 16 bytes is out of range of its "
                            "arena (192 bytes)"),
            std::string::npos);
}

TEST(PlanValidation, RejectsAMissingProgram) {
  Plan p = smallPlan();
  p.mutable_programs()->RemoveLast();
  EXPECT_EQ(errorOf(p), "schedule of stage 0, action 1 runs program 1, out of range (1 programs)");
}

// Sizes that overflow 64 bits: refused, never wrapped onto a valid value.
TEST(PlanValidation, RejectsAShapeWhoseSizeOverflows) {
  Plan p = smallPlan();
  p.mutable_buffers(0)->set_shape(0, int64_t(1) << 62); // x 4 bytes = 2^64 = 0
  p.mutable_buffers(0)->set_size_bytes(0);
  EXPECT_EQ(errorOf(p), "buffer 0 'b0': its shape has more elements than 64-bit sizes can count");
}

TEST(PlanValidation, RejectsAnOffsetThatWrapsAround) {
  Plan p = smallPlan();
  p.mutable_buffers(2)->set_offset_bytes(~uint64_t(0) - 7); // + 16 wraps to 8
  EXPECT_NE(errorOf(p).find("buffer 2 'b2' at offset 18446744073709551608 + 16 bytes is "
                            "out of range of its arena (192 bytes)"),
            std::string::npos);
}

TEST(PlanValidation, RejectsAttributesWhoseProductWraps) {
  // outer x run = (2^62 + 1) x 4 wraps to 4 in 64 bits, the size of b1.
  Plan p = smallPlan();
  auto *instr = p.mutable_programs(0)->mutable_instructions(0);
  instr->set_op("reduce_scatter");
  instr->mutable_inputs()->RemoveLast();
  instr->clear_attributes();
  for (auto [name, value] : {std::pair{"outer", (int64_t(1) << 62) + 1}, std::pair{"run", int64_t(4)},
                             std::pair{"parts", int64_t(1)}}) {
    auto *a = instr->add_attributes();
    a->set_name(name);
    a->set_i(value);
  }
  EXPECT_NE(errorOf(p).find("buffer 0 'b0' has 4 elements, the op needs 9223372036854775807"),
            std::string::npos);
}

TEST(PlanValidation, RejectsArenasNoProcessCanAddress) {
  Plan p = smallPlan();
  auto *params = p.add_arenas();
  params->set_kind(PARAMETERS);
  params->set_size_bytes(kMaxRankBytes); // with the activations' 192: over
  EXPECT_EQ(errorOf(p), "the PARAMETERS arena of 140737488355328 bytes (131072 GiB) brings one "
                        "rank's arenas to more than 140737488355328 bytes (131072 GiB), the most "
                        "one process can address (128 TiB on x86-64 Linux)");
  params->set_size_bytes(~uint64_t(0) - 100); // the sum wraps around
  EXPECT_NE(errorOf(p).find("brings one rank's arenas to more than"), std::string::npos);
}

/// Gives `p` (smallPlan) a two-stage pipeline schedule: its first program
/// is virtual stage 0's forward, a second runs virtual stage 1, and each
/// stage ends with an optimizer program of its own.
void addTwoStageSchedule(Plan &p) {
  p.mutable_programs(0)->set_name("forward.0");
  p.mutable_programs(1)->set_name("optimizer.0");
  p.mutable_programs(1)->set_virtual_stage(-1);
  for (const char *name : {"forward.1", "optimizer.1"}) {
    Program &program = *p.add_programs();
    program.set_name(name);
    program.set_stage(1);
    program.set_virtual_stage(name[0] == 'f' ? 1 : -1);
  }
  p.clear_schedule();
  for (int32_t stage = 0; stage < 2; ++stage) {
    StageSchedule &s = *p.add_schedule();
    s.set_stage(stage);
    s.set_activation_slots(1);
    Action &forward = *s.add_actions();
    forward.set_kind(Action::FORWARD);
    forward.set_program(uint32_t(2 * stage));
    forward.set_virtual_stage(stage);
    forward.set_load_inputs(true);
    Action &step = *s.add_actions();
    step.set_kind(Action::OPTIMIZER_STEP);
    step.set_program(uint32_t(2 * stage + 1));
    step.set_micro_batch(-1);
    step.set_virtual_stage(-1);
  }
}

/// smallPlan with buffers 0 and 1 as frozen parameters of `stages` in a
/// pp-stage pipeline, both at offset 0 of the parameter arena.
Plan stagedPlan(int32_t pp, int32_t stage0, int32_t stage1) {
  Plan p = smallPlan();
  p.mutable_mesh()->set_pp(pp);
  addTwoStageSchedule(p);
  auto *arena = p.add_arenas();
  arena->set_kind(PARAMETERS);
  arena->set_size_bytes(64);
  int32_t stages[] = {stage0, stage1};
  for (uint32_t i = 0; i < 2; ++i) {
    p.mutable_buffers(i)->set_arena(PARAMETERS);
    p.mutable_buffers(i)->set_offset_bytes(0);
    auto *param = p.add_parameters();
    param->set_name("w" + std::to_string(i));
    param->set_param_buffer(i);
    param->set_stage(stages[i]);
    param->set_tied_stage(-1);
  }
  return p;
}

TEST(PlanValidation, AcceptsStagesSharingOffsets) {
  EXPECT_EQ(errorOf(stagedPlan(2, 0, 1)), "");
}

// A pipeline stage's schedule runs only its own stage's programs, each on
// the virtual stage the program belongs to.
TEST(PlanValidation, RejectsAPipelineActionOfAnotherStage) {
  Plan p = stagedPlan(2, 0, 1);
  p.mutable_schedule(1)->mutable_actions(0)->set_program(0);
  EXPECT_EQ(errorOf(p), "schedule of stage 1, action 0 runs program 'forward.0' of stage 0");
  p = stagedPlan(2, 0, 1);
  p.mutable_schedule(1)->mutable_actions(0)->set_virtual_stage(3);
  EXPECT_EQ(errorOf(p), "schedule of stage 1, action 0 is on virtual stage 3 but runs program "
                        "'forward.1'");
  p = stagedPlan(2, 0, 1);
  p.mutable_schedule(1)->set_stage(0);
  EXPECT_EQ(errorOf(p), "stage schedule 1 names stage 0");
}

TEST(PlanValidation, RejectsOverlappingBuffersOfOneStage) {
  EXPECT_EQ(errorOf(stagedPlan(2, 1, 1)),
            "buffers 'b0' and 'b1', both held by pipeline stage 1, overlap in the "
            "PARAMETERS arena");
  // A tied parameter is held by two stages: it may not share the other's offset.
  Plan tied = stagedPlan(2, 0, 1);
  tied.mutable_parameters(0)->set_tied_stage(1);
  EXPECT_NE(errorOf(tied).find("overlap"), std::string::npos);
}

/// smallPlan with the distributed optimizer's bucket of two parameters a
/// (8 elements) and b (4, from element 16) over dp 2: 32 elements of
/// weights and of gradients, whose members are views into them, and 16 of
/// each AdamW moment.
Plan bucketPlan() {
  Plan p = smallPlan();
  auto buffer = [&](const std::string &name, ArenaKind arena, int64_t n, uint64_t offset) {
    auto *b = p.add_buffers();
    b->set_id(uint32_t(p.buffers_size() - 1));
    b->set_name(name), b->set_dtype(F32), b->add_shape(n), b->set_arena(arena);
    b->set_offset_bytes(offset), b->set_size_bytes(uint64_t(n) * 4);
    return b->id();
  };
  for (ArenaKind kind : {PARAMETERS, GRADIENTS, OPTIMIZER}) {
    auto *arena = p.add_arenas();
    arena->set_kind(kind);
    arena->set_size_bytes(128);
  }
  Bucket &bucket = *p.add_buckets();
  bucket.set_axis("dp"), bucket.set_parts(2);
  bucket.set_param_buffer(buffer("params:bucket 0", PARAMETERS, 32, 0));
  bucket.set_grad_buffer(buffer("grads:bucket 0", GRADIENTS, 32, 0));
  bucket.set_exp_avg_buffer(buffer("exp_avg:bucket 0", OPTIMIZER, 16, 0));
  bucket.set_exp_avg_sq_buffer(buffer("exp_avg_sq:bucket 0", OPTIMIZER, 16, 64));
  for (auto [name, n, offset] : {std::tuple{"a", 8, 0}, std::tuple{"b", 4, 16}}) {
    Parameter &param = *p.add_parameters();
    param.set_name(name), param.add_shape(n), param.set_trainable(true);
    param.set_tied_stage(-1);
    param.set_param_buffer(buffer(name, PARAMETERS, n, uint64_t(offset) * 4));
    param.set_grad_buffer(buffer(std::string("grad:") + name, GRADIENTS, n, uint64_t(offset) * 4));
    param.set_exp_avg_buffer(bucket.exp_avg_buffer());
    param.set_exp_avg_sq_buffer(bucket.exp_avg_sq_buffer());
    auto *member = bucket.add_members();
    member->set_param(name), member->set_offset(offset);
  }
  return p;
}

TEST(PlanValidation, AcceptsBucketsWithTheirMembersInside) {
  EXPECT_EQ(errorOf(bucketPlan()), "");
}

// param_offload keeps a bucket's weights, and its members', in HOST_WEIGHTS;
// any other arena but PARAMETERS is refused.
TEST(PlanValidation, AcceptsBucketWeightsOnTheHostUnderParamOffload) {
  Plan offloaded = bucketPlan();
  offloaded.mutable_arenas(offloaded.arenas_size() - 3)->set_kind(HOST_WEIGHTS);
  std::vector<uint32_t> weights = {offloaded.buckets(0).param_buffer()};
  for (const Parameter &p : offloaded.parameters())
    if (p.name() == "a" || p.name() == "b")
      weights.push_back(p.param_buffer());
  for (uint32_t id : weights)
    offloaded.mutable_buffers(id)->set_arena(HOST_WEIGHTS);
  EXPECT_EQ(errorOf(offloaded), "");
  Plan optimizer = bucketPlan();
  optimizer.mutable_buffers(optimizer.buckets(0).param_buffer())->set_arena(OPTIMIZER);
  EXPECT_EQ(errorOf(optimizer), "bucket 0: its weights (32 elements) and gradients must be in "
                                "their arenas (PARAMETERS or HOST_WEIGHTS; GRADIENTS or "
                                "HOST_GRADIENTS), of one size divisible by parts (2), and its "
                                "AdamW state 1/parts of it");
}

TEST(PlanValidation, RejectsBucketMembersOutOfPlace) {
  Plan moved = bucketPlan();
  moved.mutable_buffers(moved.parameters(1).grad_buffer())->set_offset_bytes(0);
  EXPECT_EQ(errorOf(moved), "bucket 0: member 'b' at element 16 does not lie in the bucket after "
                            "the previous member, or its buffers are not there");
  Plan past = bucketPlan();
  past.mutable_buckets(0)->mutable_members(1)->set_offset(30);
  EXPECT_NE(errorOf(past).find("member 'b' at element 30"), std::string::npos);
  Plan twice = bucketPlan();
  twice.mutable_buckets(0)->mutable_members(1)->set_param("a");
  EXPECT_EQ(errorOf(twice), "bucket 0: member 'a' is not a trainable parameter, or is in two "
                            "buckets");
  Plan state = bucketPlan();
  state.mutable_buckets(0)->set_parts(4);
  EXPECT_NE(errorOf(state).find("its AdamW state 1/parts of it"), std::string::npos);
}

/// smallPlan with two frozen 4-element parameters w0, w1 back to back and
/// a view of both (Buffer.parts), as mt.concat_rows makes.
Plan packedPlan() {
  Plan p = smallPlan();
  auto *arena = p.add_arenas();
  arena->set_kind(PARAMETERS);
  arena->set_size_bytes(64);
  auto buffer = [&](const std::string &name, int64_t n, uint64_t offset) {
    auto *b = p.add_buffers();
    b->set_id(uint32_t(p.buffers_size() - 1));
    b->set_name(name), b->set_dtype(F32), b->add_shape(n), b->set_arena(PARAMETERS);
    b->set_offset_bytes(offset), b->set_size_bytes(uint64_t(n) * 4);
    return b;
  };
  for (int i = 0; i < 2; ++i) {
    Parameter &param = *p.add_parameters();
    param.set_name("w" + std::to_string(i)), param.add_shape(4), param.set_tied_stage(-1);
    param.set_param_buffer(buffer(param.name(), 4, 16 * i)->id());
  }
  auto *view = buffer("concat_rows:w0", 8, 0);
  view->add_parts(p.parameters(0).param_buffer());
  view->add_parts(p.parameters(1).param_buffer());
  return p;
}

TEST(PlanValidation, AcceptsAViewOfPartsBackToBack) { EXPECT_EQ(errorOf(packedPlan()), ""); }

TEST(PlanValidation, RejectsAViewOfPartsApart) {
  Plan apart = packedPlan();
  apart.mutable_buffers(apart.parameters(1).param_buffer())->set_offset_bytes(32);
  EXPECT_EQ(errorOf(apart), "buffer 'concat_rows:w0' views 'w1', which is a view, of another "
                            "arena or element type, or not where the previous part ends (byte "
                            "16)");
  Plan one = packedPlan();
  one.mutable_buffers(5)->mutable_parts()->RemoveLast();
  EXPECT_EQ(errorOf(one), "buffer 'concat_rows:w0' views one part: a view has two or more");
  Plan large = packedPlan();
  large.mutable_buffers(5)->set_size_bytes(36);
  large.mutable_buffers(5)->set_shape(0, 9);
  EXPECT_EQ(errorOf(large), "buffer 'concat_rows:w0' has 36 bytes but its parts 32");
  // Without its parts, the view overlaps the parameters it views.
  Plan plain = packedPlan();
  plain.mutable_buffers(5)->clear_parts();
  EXPECT_NE(errorOf(plain).find("overlap"), std::string::npos);
}

// Validation against a derived size: token ids are checked against
// training.vocab_size, so it must be the model's vocabulary, not the rows
// tensor parallelism pads the embedding to (331 padded to 332 for tp 2).
TEST(PlanValidation, RejectsAPaddedVocabularySize) {
  Plan p = stagedPlan(2, 0, 1);
  p.mutable_parameters(0)->set_hf_rows(331);
  p.mutable_training()->set_vocab_size(331);
  EXPECT_EQ(errorOf(p), "");
  p.mutable_training()->set_vocab_size(332);
  EXPECT_EQ(errorOf(p), "training.vocab_size 332 is not the model's vocabulary 331 (the rows "
                        "of 'w0' without tp padding); recompile the plan with the mtc of this "
                        "release");
}

TEST(PlanDirectory, RoundTripsAndNamesAMissingFile) {
  auto dir = std::filesystem::temp_directory_path() / ("mt-plan-" + std::to_string(::getpid()));
  ASSERT_TRUE(writePlanDirectory(dir.string(), smallPlan()));
  auto read = readPlanDirectory(dir.string());
  ASSERT_TRUE(read) << read.message();
  EXPECT_EQ(read->programs(0).instructions(0).op(), "add");
  std::ifstream summary(dir / "plan.txt");
  std::string text((std::istreambuf_iterator<char>(summary)), {});
  EXPECT_NE(text.find("add (%0, %1) -> (%2) n=4  // mt.add (layer 3)"), std::string::npos);
  std::filesystem::remove(dir / "plan.pb");
  auto missing = readPlanDirectory(dir.string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.message().find("plan.pb: missing"), std::string::npos);
  std::filesystem::remove_all(dir);
}

} // namespace
} // namespace mt::plan
