// The two Hugging Face spellings of routed experts (exec::HfExpertLayout):
// the MoE fixtures of test/hf hold one tensor per expert; the test fuses
// them as transformers 5's conversion_mapping.py does (experts.gate_up_proj
// [E, 2F, H] = gate rows then up rows per expert, experts.down_proj
// [E, H, F], Mixtral's block_sparse_moe renamed mlp), loads both, and
// exports each in its own spelling: the same weights, the source's names.
#include "runtime/exec/Trainer.h"
#include "runtime/exec/Weights.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace mt {
namespace {

namespace fs = std::filesystem;

using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

Tensors readAll(const std::string &path) {
  Tensors out;
  auto file = io::openSafetensors(path);
  EXPECT_TRUE(file) << file.message();
  if (!file)
    return out;
  for (const io::TensorInfo &t : file->tensors()) {
    std::vector<float> v(t.numElements());
    EXPECT_TRUE(file->readAsFloat32(t.name, v.data(), v.size()));
    out[t.name] = {t.shape, std::move(v)};
  }
  return out;
}

void writeAll(const std::string &path, const Tensors &tensors) {
  std::vector<io::TensorToWrite> out;
  for (const auto &[name, t] : tensors)
    out.push_back({name, io::Dtype::F32, t.first, t.second.data()});
  ASSERT_TRUE(io::writeSafetensors(path, out, {{"format", "pt"}}));
}

/// The per-expert tensors of `perExpert` fused, written from the names
/// alone (independently of runtime/exec/Weights.cpp).
Tensors fuse(const Tensors &perExpert) {
  static const std::regex expert(
      R"((model\.layers\.\d+\.)(mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight)");
  static const std::regex router(R"((model\.layers\.\d+\.)block_sparse_moe\.gate\.weight)");
  struct Layer {
    std::map<int, const std::vector<float> *> gate, up, down;
    std::vector<int64_t> gateShape, downShape;
  };
  std::map<std::string, Layer> layers;
  Tensors out;
  for (const auto &[name, t] : perExpert) {
    std::smatch m;
    if (std::regex_match(name, m, router)) {
      out[m[1].str() + "mlp.gate.weight"] = t;
    } else if (std::regex_match(name, m, expert)) {
      Layer &l = layers[m[1].str() + "mlp.experts."];
      int e = std::stoi(m[3].str());
      std::string proj = m[4].str();
      if (proj == "gate_proj" || proj == "w1")
        l.gate[e] = &t.second, l.gateShape = t.first;
      else if (proj == "up_proj" || proj == "w3")
        l.up[e] = &t.second;
      else
        l.down[e] = &t.second, l.downShape = t.first;
    } else {
      out[name] = t;
    }
  }
  for (const auto &[prefix, l] : layers) {
    const int64_t E = int64_t(l.gate.size()), F = l.gateShape[0], H = l.gateShape[1];
    std::vector<float> gateUp, down;
    for (int64_t e = 0; e < E; ++e) {
      gateUp.insert(gateUp.end(), l.gate.at(int(e))->begin(), l.gate.at(int(e))->end());
      gateUp.insert(gateUp.end(), l.up.at(int(e))->begin(), l.up.at(int(e))->end());
      down.insert(down.end(), l.down.at(int(e))->begin(), l.down.at(int(e))->end());
    }
    out[prefix + "gate_up_proj"] = {{E, 2 * F, H}, gateUp};
    out[prefix + "down_proj"] = {{E, H, F}, down};
  }
  return out;
}

void expectSameTensors(const Tensors &got, const Tensors &want, const std::string &what) {
  std::set<std::string> gotNames, wantNames;
  for (const auto &[n, t] : got)
    gotNames.insert(n);
  for (const auto &[n, t] : want)
    wantNames.insert(n);
  ASSERT_EQ(gotNames, wantNames) << what;
  for (const auto &[name, t] : want) {
    EXPECT_EQ(got.at(name).first, t.first) << what << ": shape of " << name;
    EXPECT_EQ(got.at(name).second, t.second) << what << ": values of " << name;
  }
}

class ExpertLayout : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertLayout, FusedCheckpointsLoadAndExportInTheirSpelling) {
  const std::string model = GetParam(), fixture = std::string(MT_HF_FIXTURE_DIR) + "/" + model,
                    work = std::string(MT_HF_LAYOUT_DIR) + "/" + model;
  auto plan = plan::readPlanDirectory(std::string(MT_HF_PLAN_DIR) + "/" + model);
  ASSERT_TRUE(plan) << plan.message();
  const Tensors perExpert = readAll(fixture + "/model.safetensors");
  const Tensors fused = fuse(perExpert);
  ASSERT_LT(fused.size(), perExpert.size()) << "the fixture has no per-expert tensors";
  fs::remove_all(work);
  fs::create_directories(work + "/fused");
  writeAll(work + "/fused/model.safetensors", fused);
  fs::copy_file(fixture + "/config.json", work + "/fused/config.json");

  auto a = exec::HostMemory::create(*plan), b = exec::HostMemory::create(*plan);
  ASSERT_TRUE(a && b);
  exec::HfExpertLayout layoutA = exec::HfExpertLayout::Fused, layoutB = layoutA;
  ASSERT_TRUE(exec::loadHfWeights(*plan, **a, nullptr, fixture, &layoutA));
  auto loaded = exec::loadHfWeights(*plan, **b, nullptr, work + "/fused", &layoutB);
  ASSERT_TRUE(loaded) << loaded.message();
  EXPECT_EQ(layoutA, exec::HfExpertLayout::PerExpert);
  EXPECT_EQ(layoutB, exec::HfExpertLayout::Fused);
  for (const plan::Parameter &p : plan->parameters()) {
    const int64_t n = (*a)->elements(p.param_buffer());
    std::vector<float> va((*a)->f32(p.param_buffer()), (*a)->f32(p.param_buffer()) + n),
        vb((*b)->f32(p.param_buffer()), (*b)->f32(p.param_buffer()) + n);
    EXPECT_EQ(va, vb) << p.name();
  }

  ASSERT_TRUE(exec::exportHf(*plan, **b, nullptr, work + "/export-fused", layoutB));
  expectSameTensors(readAll(work + "/export-fused/model.safetensors"), fused, "fused export");
  ASSERT_TRUE(exec::exportHf(*plan, **b, nullptr, work + "/export-per-expert"));
  expectSameTensors(readAll(work + "/export-per-expert/model.safetensors"), perExpert,
                    "per-expert export");
}

/// Names of a safetensors file's tensors.
std::set<std::string> namesOf(const Tensors &tensors) {
  std::set<std::string> names;
  for (const auto &[name, t] : tensors)
    names.insert(name);
  return names;
}

// mtrun --load-hf FUSED --export-hf OUT: a training run exports in the
// spelling it loaded (the Trainer carries the layout from load to export).
TEST(ExpertLayoutTraining, ExportKeepsTheLoadedSpelling) {
  const std::string model = "tiny-mixtral", fixture = std::string(MT_HF_FIXTURE_DIR) + "/" + model,
                    work = std::string(MT_HF_LAYOUT_DIR) + "/train-" + model;
  const Tensors fused = fuse(readAll(fixture + "/model.safetensors"));
  fs::remove_all(work);
  fs::create_directories(work + "/fused");
  writeAll(work + "/fused/model.safetensors", fused);
  fs::copy_file(fixture + "/config.json", work + "/fused/config.json");
  for (const auto &[load, want] :
       {std::pair<std::string, std::set<std::string>>{work + "/fused", namesOf(fused)},
        {fixture, namesOf(readAll(fixture + "/model.safetensors"))}}) {
    exec::TrainOptions o;
    o.planDir = std::string(MT_HF_PLAN_DIR) + "/" + model;
    o.dataPath = fixture + "/tokens.bin";
    o.steps = 1;
    o.backend = "cpu";
    o.loadHf = load;
    o.exportHf = work + "/export";
    std::ostringstream log;
    auto summary = exec::train(o, log);
    ASSERT_TRUE(summary) << summary.message() << "\n" << log.str();
    EXPECT_EQ(namesOf(readAll(work + "/export/model.safetensors")), want) << "loaded " << load;
  }
}

// A fused checkpoint with one expert tensor missing names it.
TEST(ExpertLayoutErrors, MissingFusedTensorIsNamed) {
  const std::string model = "tiny-qwen3-moe", work = std::string(MT_HF_LAYOUT_DIR) + "/missing";
  auto plan = plan::readPlanDirectory(std::string(MT_HF_PLAN_DIR) + "/" + model);
  ASSERT_TRUE(plan) << plan.message();
  Tensors fused = fuse(readAll(std::string(MT_HF_FIXTURE_DIR) + "/" + model + "/model.safetensors"));
  ASSERT_EQ(fused.erase("model.layers.2.mlp.experts.down_proj"), 1u);
  fs::remove_all(work);
  fs::create_directories(work);
  writeAll(work + "/model.safetensors", fused);
  auto memory = exec::HostMemory::create(*plan);
  ASSERT_TRUE(memory);
  Status s = exec::loadHfWeights(*plan, **memory, nullptr, work);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("missing: model.layers.2.mlp.experts.down_proj [4, 32, 24]"),
            std::string::npos)
      << s.message();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExpertLayout,
                         ::testing::Values("tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"),
                         [](const auto &info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

} // namespace
} // namespace mt
