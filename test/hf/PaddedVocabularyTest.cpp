// A padded vocabulary exported and reloaded, against transformers
// (make_fixtures.py --padded): tiny-qwen2-vocab95, whose 95-row embedding and
// output layer tp2 pads to 96 rows, trains 2 steps on 2 ranks, is exported
// with --export-hf and trains 2 more steps from the export on 2 ranks
// (run-padded.sh, a ctest fixture). Every loss must be that of the unpadded
// reference, and the export must hold exactly the reference's tensors after
// the first 2 steps, 95 rows each: a padding row written out, a row dropped
// or shifted, or a padding logit that reaches the loss all fail here.
// transformers loaded an export of this round trip and computed mtrun's loss
// from it when the fixture was made (make_fixtures.py --check-padded-export).
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"
#include "test/Tolerances.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace mt {
namespace {

const std::string kRun = MT_HF_PADDED_RUN_DIR, kFixture = MT_HF_FIXTURE_DIR "/tiny-qwen2-vocab95";
constexpr int64_t kVocab = 95, kPaddedRows = 96;

std::vector<double> losses(const std::string &path) {
  std::vector<double> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

std::vector<float> read(const io::SafetensorsFile &file, const std::string &name) {
  const io::TensorInfo *info = file.find(name);
  std::vector<float> out(info ? info->numElements() : 0);
  EXPECT_NE(info, nullptr) << name;
  if (info) {
    EXPECT_TRUE(file.readAsFloat32(name, out.data(), out.size())) << name;
  }
  return out;
}

/// The run pads: otherwise the tests below would not test padding.
TEST(PaddedVocabulary, TheTp2PlanPadsTheVocabularyParameters) {
  auto plan = plan::readPlanDirectory(kRun + "/tp2.plan");
  ASSERT_TRUE(plan) << plan.message();
  std::set<std::string> padded;
  for (const plan::Parameter &p : plan->parameters())
    if (p.hf_rows() > 0) {
      EXPECT_EQ(p.hf_rows(), kVocab) << p.name();
      EXPECT_EQ(p.shape(0), kPaddedRows) << p.name();
      padded.insert(p.name());
    }
  EXPECT_EQ(padded, (std::set<std::string>{"model.embed_tokens.weight", "lm_head.weight"}));
}

TEST(PaddedVocabulary, LossesBeforeAndAfterTheExportAreTheReferences) {
  auto file = io::openSafetensors(kFixture + "/expected-padded.safetensors");
  ASSERT_TRUE(file) << file.message();
  std::vector<float> ref = read(*file, "loss");
  std::vector<double> ours = losses(kRun + "/trained.jsonl"), reloaded = losses(kRun + "/reloaded.jsonl");
  ours.insert(ours.end(), reloaded.begin(), reloaded.end());
  ASSERT_EQ(ours.size(), ref.size()) << "steps (trained, then reloaded)";
  for (size_t s = 0; s < ref.size(); ++s)
    EXPECT_NEAR(ours[s], ref[s], tolerance::kHfLossRel * ref[s]) << "step " << s + 1;
}

TEST(PaddedVocabulary, TheExportHoldsTheReferenceTensorsWithoutPadding) {
  auto ref = io::openSafetensors(kFixture + "/expected-padded.safetensors");
  auto initial = io::openSafetensors(kFixture + "/model.safetensors");
  auto exported = io::openSafetensors(kRun + "/export/model.safetensors");
  ASSERT_TRUE(ref) << ref.message();
  ASSERT_TRUE(initial) << initial.message();
  ASSERT_TRUE(exported) << exported.message();
  std::set<std::string> want, got;
  for (const io::TensorInfo &t : ref->tensors())
    if (t.name.rfind("exported.", 0) == 0)
      want.insert(t.name.substr(std::string("exported.").size()));
  for (const io::TensorInfo &t : exported->tensors())
    got.insert(t.name);
  ASSERT_EQ(got, want);
  for (const std::string &name : want) {
    const io::TensorInfo *mine = exported->find(name), *theirs = ref->find("exported." + name);
    ASSERT_EQ(mine->shape, theirs->shape) << name;
    std::vector<float> w = read(*exported, name), r = read(*ref, "exported." + name),
                       w0 = read(*initial, name);
    ASSERT_EQ(w0.size(), r.size()) << name;
    // As the several-steps fixtures: elementwise against the tensor's
    // largest movement over the 2 steps (Tolerances.h, kHfMovementRel).
    double maxMove = 0, worst = 0;
    for (size_t i = 0; i < r.size(); ++i) {
      maxMove = std::max(maxMove, double(std::fabs(r[i] - w0[i])));
      worst = std::max(worst, double(std::fabs(w[i] - r[i])));
    }
    EXPECT_GT(maxMove, 0.0) << name << " did not move";
    EXPECT_LE(worst, tolerance::kHfMovementRel * maxMove) << name;
  }
  std::ifstream config(kRun + "/export/config.json");
  EXPECT_EQ(nlohmann::json::parse(config)["vocab_size"].get<int64_t>(), kVocab);
}

} // namespace
} // namespace mt
