// The last writes of the reduced dp gradients in forward_backward and the
// embedding backward kept sparse (runtime/plan/GradientWrites.h): which
// instruction it is, and that the bucket of its gradient no longer waits
// for it.
#include "runtime/plan/GradientWrites.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace mt::plan {
namespace {

// Buffers of the little plans below.
enum : uint32_t { kIds, kDy, kX, kDyOut, kEmbedGrad, kNormGrad, kHeadGrad, kViewGrad, kCount };

Plan planWithBuffers() {
  Plan plan;
  for (uint32_t id = 0; id < kCount; ++id) {
    Buffer *b = plan.add_buffers();
    b->set_id(id);
    b->set_dtype(id == kIds ? I32 : F32);
    b->set_arena(id >= kEmbedGrad ? GRADIENTS : ACTIVATIONS);
  }
  // A fused GEMM's gradient view over the norm's and the head's.
  plan.mutable_buffers(kViewGrad)->add_parts(kNormGrad);
  plan.mutable_buffers(kViewGrad)->add_parts(kHeadGrad);
  return plan;
}

Instruction &add(Program &p, const std::string &op, std::vector<uint32_t> in,
                 std::vector<uint32_t> out) {
  Instruction &i = *p.add_instructions();
  i.set_op(op);
  for (uint32_t id : in)
    i.add_inputs(id);
  for (uint32_t id : out)
    i.add_outputs(id);
  return i;
}

void setAttr(Instruction &i, const std::string &name, const std::string &value) {
  Attribute &a = *i.add_attributes();
  a.set_name(name);
  a.set_s(value);
}

// A tied embedding: the output layer's weight gradient first, the norm's,
// then the lookup's backward last, into the same gradient.
Program tiedBackward() {
  Program p;
  add(p, "linear_grad_weight", {kX, kDyOut}, {kEmbedGrad}); // 0: the output layer
  add(p, "rmsnorm_grad", {kX, kDyOut}, {kNormGrad});         // 1
  add(p, "embedding_grad", {kIds, kDy}, {kEmbedGrad});       // 2: the lookup
  return p;
}

TEST(GradientWritesTest, TiedEmbeddingIsReadyAfterTheOutputLayer) {
  const Plan plan = planWithBuffers();
  const Program fb = tiedBackward();
  const ReducedGradientWrites dense =
      reducedGradientWrites(plan, fb, {0, 1, 2}, {kNormGrad, kEmbedGrad}, false);
  EXPECT_EQ(dense.sparseWriter, -1);
  EXPECT_EQ(dense.lastWriter, (std::vector<int>{1, 2}));
  const ReducedGradientWrites sparse =
      reducedGradientWrites(plan, fb, {0, 1, 2}, {kNormGrad, kEmbedGrad}, true);
  EXPECT_EQ(sparse.sparseWriter, 2);
  EXPECT_EQ(sparse.sparseReduced, 1u);
  EXPECT_EQ(sparse.lastWriter, (std::vector<int>{1, 0}));
}

TEST(GradientWritesTest, UntiedEmbeddingIsReadyBeforeBackward) {
  const Plan plan = planWithBuffers();
  Program fb;
  add(fb, "rmsnorm_grad", {kX, kDyOut}, {kNormGrad});
  add(fb, "embedding_grad", {kIds, kDy}, {kEmbedGrad});
  const ReducedGradientWrites w =
      reducedGradientWrites(plan, fb, {0, 1}, {kEmbedGrad, kNormGrad}, true);
  EXPECT_EQ(w.sparseWriter, 1);
  EXPECT_EQ(w.sparseReduced, 0u);
  EXPECT_EQ(w.lastWriter, (std::vector<int>{-1, 0}));
  // A gradient nothing writes waits for the end, as before.
  EXPECT_EQ(reducedGradientWrites(plan, fb, {0, 1}, {kHeadGrad}, true).lastWriter,
            std::vector<int>{1});
}

TEST(GradientWritesTest, TheLastEmbeddingBackwardInIssueOrderIsKeptSparse) {
  const Plan plan = planWithBuffers();
  Program fb;
  add(fb, "embedding_grad", {kIds, kDy}, {kEmbedGrad}); // 0
  add(fb, "embedding_grad", {kIds, kDy}, {kEmbedGrad}); // 1
  add(fb, "rmsnorm_grad", {kX, kDyOut}, {kNormGrad});   // 2
  // Issued 1, 2, 0: instruction 0 is the last embedding backward, and 1
  // stays a dense writer of the same gradient.
  const ReducedGradientWrites w = reducedGradientWrites(plan, fb, {1, 2, 0}, {kEmbedGrad}, true);
  EXPECT_EQ(w.sparseWriter, 0);
  EXPECT_EQ(w.lastWriter, std::vector<int>{0});
}

TEST(GradientWritesTest, NoSparseWriterWhereItsRowsCannotBeAddedLater) {
  const Plan plan = planWithBuffers();
  {
    Program fb = tiedBackward(); // a vocab-parallel table (tp)
    setAttr(*fb.mutable_instructions(2), "vocab_parallel_axis", "tp");
    const ReducedGradientWrites w =
        reducedGradientWrites(plan, fb, {0, 1, 2}, {kNormGrad, kEmbedGrad}, true);
    EXPECT_EQ(w.sparseWriter, -1);
    EXPECT_EQ(w.lastWriter, (std::vector<int>{1, 2}));
  }
  { // forward_backward reads the gradient: it must hold the rows
    Program fb = tiedBackward();
    add(fb, "scale", {kEmbedGrad}, {kX});
    EXPECT_EQ(reducedGradientWrites(plan, fb, {0, 1, 2, 3}, {kEmbedGrad}, true).sparseWriter, -1);
  }
  // Not a reduced gradient.
  EXPECT_EQ(reducedGradientWrites(plan, tiedBackward(), {0, 1, 2}, {kNormGrad}, true).sparseWriter,
            -1);
}

TEST(GradientWritesTest, ViewsAndBucketMembersCountAsWritesOfTheirBuffer) {
  Plan plan = planWithBuffers();
  // A plan bucket whose gradient buffer holds the embedding's and the norm's.
  for (auto [name, grad] : {std::pair{"embed", kEmbedGrad}, std::pair{"norm", kNormGrad}}) {
    Parameter &p = *plan.add_parameters();
    p.set_name(name);
    p.set_grad_buffer(grad);
  }
  Bucket &bucket = *plan.add_buckets();
  bucket.set_grad_buffer(kX);
  bucket.add_members()->set_param("embed");
  bucket.add_members()->set_param("norm");
  EXPECT_EQ(writtenAs(plan, kX), (std::vector<uint32_t>{kEmbedGrad, kNormGrad}));
  EXPECT_EQ(writtenAs(plan, kHeadGrad), std::vector<uint32_t>{kHeadGrad});
  Program fb;
  add(fb, "embedding_grad", {kIds, kDy}, {kEmbedGrad});      // 0
  add(fb, "linear_grad_weight", {kDy, kDyOut}, {kViewGrad}); // 1: writes the norm's part
  const ReducedGradientWrites w = reducedGradientWrites(plan, fb, {0, 1}, {kX, kHeadGrad}, true);
  EXPECT_EQ(w.sparseWriter, 0);
  EXPECT_EQ(w.sparseReduced, 0u);
  EXPECT_EQ(w.lastWriter, (std::vector<int>{1, 1}));
}

TEST(GradientWritesTest, AWeightBucketIsReadThroughItsMembersAndTheirPackedViews) {
  Plan plan = planWithBuffers();
  // Weight buffers (the enum's names do not matter here): a bucket over the
  // gate's and up's weights, a fused GEMM's packed view of both, a weight
  // outside the bucket and a view over that one alone.
  enum : uint32_t { kBucket = kCount, kGate, kUp, kPacked, kOther, kOtherView };
  for (uint32_t id = kBucket; id <= kOtherView; ++id) {
    Buffer *b = plan.add_buffers();
    b->set_id(id);
    b->set_arena(PARAMETERS);
  }
  for (uint32_t part : {kGate, kUp})
    plan.mutable_buffers(kPacked)->add_parts(part);
  for (uint32_t part : {kOther, kOther})
    plan.mutable_buffers(kOtherView)->add_parts(part);
  for (auto [name, weight] : {std::pair{"gate", kGate}, std::pair{"up", kUp},
                              std::pair{"other", kOther}}) {
    Parameter &p = *plan.add_parameters();
    p.set_name(name);
    p.set_param_buffer(weight);
  }
  Bucket &bucket = *plan.add_buckets();
  bucket.set_param_buffer(kBucket);
  bucket.add_members()->set_param("up");
  bucket.add_members()->set_param("gate");
  EXPECT_EQ(weightReadersOf(plan, bucket), (std::set<uint32_t>{kBucket, kGate, kUp, kPacked}));
}

} // namespace
} // namespace mt::plan
