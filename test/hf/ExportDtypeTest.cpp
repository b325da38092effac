// Exports in the source's dtype (exec::ExportDtype): the fp32 masters of a
// fixture written as float32, bfloat16 or float16 and read back by
// loadHfWeights equal the masters rounded to nearest even (io's
// conversions, checked bit by bit in SafetensorsTest); config.json names the
// dtype written under the source's key; an export whose marker is gone is
// still recognised as mtc's; float16 overflow is refused by name.
#include "runtime/exec/Weights.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/PlanIO.h"
#include "runtime/support/OutputPath.h"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <bit>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace mt {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using exec::ExportDtype;

const std::string kModel = "tiny-llama";

class ExportDtypeTest : public ::testing::Test {
protected:
  void SetUp() override {
    auto plan = plan::readPlanDirectory(std::string(MT_HF_PLAN_DIR) + "/" + kModel);
    ASSERT_TRUE(plan) << plan.message();
    plan_ = std::move(*plan);
    source_ = json::parse(plan_.hf_config_json());
    auto memory = exec::HostMemory::create(plan_);
    ASSERT_TRUE(memory) << memory.message();
    memory_ = std::move(*memory);
    Status loaded = exec::loadHfWeights(plan_, *memory_, nullptr,
                                        std::string(MT_HF_FIXTURE_DIR) + "/" + kModel);
    ASSERT_TRUE(loaded) << loaded.message();
    work_ = std::string(MT_HF_EXPORT_DTYPE_DIR) + "/" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(work_);
    fs::create_directories(work_);
  }

  /// The plan with its source config's dtype keys replaced by `keys`.
  plan::Plan withSource(const json &keys) const {
    json config = source_;
    config.erase("dtype");
    config.erase("torch_dtype");
    config.erase("transformers_version");
    config.update(keys);
    plan::Plan p = plan_;
    p.set_hf_config_json(config.dump());
    return p;
  }

  json configOf(const std::string &dir) const {
    std::ifstream in(dir + "/config.json");
    return json::parse(in);
  }

  /// The dtypes of the tensors of `dir`/model.safetensors.
  std::set<std::string> dtypesOf(const std::string &dir) const {
    auto file = io::openSafetensors(dir + "/model.safetensors");
    EXPECT_TRUE(file) << file.message();
    std::set<std::string> dtypes;
    if (file)
      for (const io::TensorInfo &t : file->tensors())
        dtypes.insert(io::dtypeName(t.dtype));
    return dtypes;
  }

  /// Reads the export back and compares each parameter with the masters
  /// rounded by `round`, bit for bit.
  void expectRoundedMasters(const std::string &dir, float (*round)(float)) const {
    auto back = exec::HostMemory::create(plan_);
    ASSERT_TRUE(back);
    Status s = exec::loadHfWeights(plan_, **back, nullptr, dir);
    ASSERT_TRUE(s) << s.message();
    int64_t changed = 0;
    for (const plan::Parameter &p : plan_.parameters()) {
      const float *master = memory_->f32(p.param_buffer()), *got = (*back)->f32(p.param_buffer());
      for (int64_t i = 0; i < memory_->elements(p.param_buffer()); ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(round(master[i])))
            << p.name() << "[" << i << "]: master " << master[i];
        changed += got[i] != master[i];
      }
    }
    if (round(0.1f) != 0.1f) { // a narrowing export rounds the fixture's values
      EXPECT_GT(changed, 0);
    }
  }

  plan::Plan plan_;
  json source_;
  std::unique_ptr<exec::HostMemory> memory_;
  std::string work_;
};

float same(float x) { return x; }
float toBf16(float x) { return io::bf16ToFloat(io::floatToBf16(x)); }
float toFp16(float x) { return io::fp16ToFloat(io::floatToFp16(x)); }

TEST_F(ExportDtypeTest, EachDtypeRoundTripsAsTheRoundedMasters) {
  const plan::Plan bf16Source = withSource({{"torch_dtype", "bfloat16"}});
  struct Case {
    ExportDtype choice;
    const char *name, *safetensors;
    float (*round)(float);
  };
  for (const Case &c : {Case{ExportDtype::Float32, "float32", "F32", same},
                        Case{ExportDtype::BFloat16, "bfloat16", "BF16", toBf16},
                        Case{ExportDtype::Float16, "float16", "F16", toFp16},
                        Case{ExportDtype::Auto, "bfloat16", "BF16", toBf16}}) {
    SCOPED_TRACE(std::string("export as ") + c.name);
    const std::string dir = work_ + "/" + c.name + (c.choice == ExportDtype::Auto ? "-auto" : "");
    Status s = exec::exportHf(bf16Source, *memory_, nullptr, dir,
                              exec::HfExpertLayout::PerExpert, c.choice);
    ASSERT_TRUE(s) << s.message();
    EXPECT_EQ(dtypesOf(dir), std::set<std::string>{c.safetensors});
    const json config = configOf(dir);
    EXPECT_EQ(config.value("torch_dtype", ""), c.name);
    EXPECT_FALSE(config.contains("dtype"));
    expectRoundedMasters(dir, c.round);
  }
}

// The key the source's transformers reads (`dtype` since 4.56,
// `torch_dtype` before), once, with the dtype written; auto follows the
// source's dtype, float32 where it names none.
TEST_F(ExportDtypeTest, ConfigNamesTheWrittenDtypeInTheSourcesSpelling) {
  struct Case {
    json source;
    ExportDtype choice;
    const char *key, *name, *safetensors;
  };
  const std::vector<Case> cases = {
      {{{"torch_dtype", "bfloat16"}}, ExportDtype::Auto, "torch_dtype", "bfloat16", "BF16"},
      {{{"dtype", "bfloat16"}}, ExportDtype::Auto, "dtype", "bfloat16", "BF16"},
      {{{"dtype", "float16"}}, ExportDtype::Auto, "dtype", "float16", "F16"},
      {{{"torch_dtype", "float32"}}, ExportDtype::Auto, "torch_dtype", "float32", "F32"},
      {{{"transformers_version", "4.40.0"}}, ExportDtype::Auto, "torch_dtype", "float32", "F32"},
      {{{"transformers_version", "4.57.1"}}, ExportDtype::Auto, "dtype", "float32", "F32"},
      {json::object(), ExportDtype::Auto, "torch_dtype", "float32", "F32"},
      {{{"dtype", "bfloat16"}}, ExportDtype::Float32, "dtype", "float32", "F32"},
      {{{"torch_dtype", "float32"}}, ExportDtype::BFloat16, "torch_dtype", "bfloat16", "BF16"},
      {{{"transformers_version", "5.0.0"}}, ExportDtype::Float16, "dtype", "float16", "F16"},
  };
  int n = 0;
  for (const Case &c : cases) {
    SCOPED_TRACE("source " + c.source.dump() + ", choice " + std::to_string(int(c.choice)));
    const std::string dir = work_ + "/" + std::to_string(n++);
    Status s = exec::exportHf(withSource(c.source), *memory_, nullptr, dir,
                              exec::HfExpertLayout::PerExpert, c.choice);
    ASSERT_TRUE(s) << s.message();
    const json config = configOf(dir);
    EXPECT_EQ(config.value(c.key, ""), c.name);
    EXPECT_FALSE(config.contains(std::string(c.key) == "dtype" ? "torch_dtype" : "dtype"));
    EXPECT_EQ(dtypesOf(dir), std::set<std::string>{c.safetensors});
  }
}

TEST_F(ExportDtypeTest, UnknownChoiceIsRefusedWithTheValidOnes) {
  EXPECT_EQ(*exec::parseExportDtype("auto", "--export-dtype"), ExportDtype::Auto);
  EXPECT_EQ(*exec::parseExportDtype("bfloat16", "--export-dtype"), ExportDtype::BFloat16);
  EXPECT_EQ(*exec::parseExportDtype("float16", "--export-dtype"), ExportDtype::Float16);
  EXPECT_EQ(*exec::parseExportDtype("float32", "--export-dtype"), ExportDtype::Float32);
  auto bad = exec::parseExportDtype("bf16", "--export-dtype");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.message(), "--export-dtype: unknown dtype 'bf16'; valid: auto, float32, "
                           "bfloat16, float16");
}

// A float16 export of a master float16 cannot hold names the tensor and its
// largest magnitude, and leaves no export behind.
TEST_F(ExportDtypeTest, Float16OverflowIsRefusedByName) {
  const plan::Parameter &p = plan_.parameters(0);
  memory_->f32(p.param_buffer())[1] = -70000.0f;
  const std::string dir = work_ + "/fp16";
  Status s = exec::exportHf(plan_, *memory_, nullptr, dir, exec::HfExpertLayout::PerExpert,
                            ExportDtype::Float16);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message(), "cannot export in float16: tensor '" + p.name() +
                             "': its largest magnitude 70000 exceeds float16's largest finite "
                             "value 65504 and would be written as infinity; choose bfloat16 or "
                             "float32 (mtrun --export-dtype, mtc train's infer_dtype)");
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(exec::exportHf(plan_, *memory_, nullptr, dir, exec::HfExpertLayout::PerExpert,
                             ExportDtype::BFloat16));
}

// A bfloat16 export may be replaced by the next one, marker or not; a
// downloaded model of the same two files may not.
TEST_F(ExportDtypeTest, Bf16ExportIsRecognisedAsMtcs) {
  const plan::Plan bf16Source = withSource({{"dtype", "bfloat16"}});
  const std::string dir = work_ + "/export";
  ASSERT_TRUE(exec::exportHf(bf16Source, *memory_, nullptr, dir));
  ASSERT_EQ(dtypesOf(dir), std::set<std::string>{"BF16"});
  auto file = io::openSafetensors(dir + "/model.safetensors");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at(io::kSafetensorsOutputKey), "hf-export");
  const std::vector<io::OutputTarget> target = {{"--export-hf", dir, io::OutputKind::HfExport}};
  EXPECT_TRUE(io::checkOutputs(target, {}, false));
  fs::remove(fs::path(dir) / io::kOutputMarkerFile); // copied without its marker
  EXPECT_TRUE(io::checkOutputs(target, {}, false));
  EXPECT_TRUE(exec::exportHf(bf16Source, *memory_, nullptr, dir));

  // The fixture as transformers saved it, in bf16: "format" only.
  const std::string downloaded = work_ + "/downloaded";
  fs::create_directories(downloaded);
  auto source = io::openSafetensors(std::string(MT_HF_FIXTURE_DIR) + "/" + kModel +
                                    "/model.safetensors");
  ASSERT_TRUE(source);
  std::vector<std::vector<float>> values;
  std::vector<io::TensorToWrite> tensors;
  values.reserve(source->tensors().size());
  for (const io::TensorInfo &t : source->tensors()) {
    values.emplace_back(t.numElements());
    ASSERT_TRUE(source->readAsFloat32(t.name, values.back().data(), values.back().size()));
    tensors.push_back({t.name, io::Dtype::BF16, t.shape, values.back().data()});
  }
  ASSERT_TRUE(io::writeSafetensors(downloaded + "/model.safetensors", tensors, {{"format", "pt"}}));
  std::ofstream(downloaded + "/config.json") << R"({"torch_dtype": "bfloat16"})";
  Status refused = io::checkOutputs({{"--export-hf", downloaded, io::OutputKind::HfExport}}, {},
                                    true);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.message().find("holding files mtc did not write"), std::string::npos)
      << refused.message();
  EXPECT_FALSE(exec::exportHf(bf16Source, *memory_, nullptr, downloaded));
  EXPECT_TRUE(fs::exists(downloaded + "/model.safetensors"));
}

} // namespace
} // namespace mt
