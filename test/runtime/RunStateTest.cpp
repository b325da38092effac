// trainer.json: what a checkpoint records of its run, written through a
// checked stream, read back with every field checked, and compared with the
// plan a run resumes under.
#include "runtime/exec/RunState.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

namespace mt::exec {
namespace {

namespace fs = std::filesystem;

/// A plan of `layout`'s mesh and micro-batch with a schedule and AdamW.
plan::Plan runPlan(int64_t tp, int64_t microBatch, int64_t globalBatch) {
  plan::Plan p;
  p.mutable_mesh()->set_tp(tp);
  auto *t = p.mutable_training();
  t->set_micro_batch(microBatch), t->set_seq(16), t->set_global_batch(globalBatch);
  t->set_micro_batches_per_step(globalBatch / microBatch), t->set_vocab_size(95);
  t->set_train_steps(6);
  p.set_hf_config_json(R"({"model_type": "qwen3", "hidden_size": 64,
                           "transformers_version": "4.51.0"})");
  auto *program = p.add_programs();
  program->set_name("optimizer_step");
  auto attribute = [](plan::Instruction *instr, const std::string &name, auto value) {
    auto *a = instr->add_attributes();
    a->set_name(name);
    if constexpr (std::is_same_v<decltype(value), double>)
      a->set_f(value);
    else if constexpr (std::is_same_v<decltype(value), const char *>)
      a->set_s(value);
    else
      a->set_i(value);
  };
  auto *lr = program->add_instructions();
  lr->set_op("lr_schedule");
  attribute(lr, "max_lr", 1e-3), attribute(lr, "warmup_steps", int64_t(2));
  attribute(lr, "style", "cosine");
  for (double decay : {0.1, 0.0, 0.1}) { // per-parameter sizes depend on tp
    auto *adamw = program->add_instructions();
    adamw->set_op("adamw");
    attribute(adamw, "n", int64_t(4096 / tp)), attribute(adamw, "weight_decay", decay);
  }
  return p;
}

TEST(RunIdentity, NamesTheRunNotTheLayout) {
  RunIdentity id = runIdentity(runPlan(1, 2, 8), 4000, 0xabc);
  EXPECT_EQ(id, runIdentity(runPlan(2, 4, 8), 4000, 0xabc));
  EXPECT_EQ(id.at("global_batch"), "8");
  EXPECT_EQ(id.at("lr_schedule.max_lr"), "0.001");
  EXPECT_EQ(id.at("lr_schedule.style"), "\"cosine\"");
  EXPECT_EQ(id.at("adamw.weight_decay"), "[0.0,0.1]");
  EXPECT_EQ(id.at("model.hidden_size"), "64");
  EXPECT_EQ(id.at("data.tokens"), "4000");
  EXPECT_EQ(id.at("data.fingerprint"), "\"0000000000000abc\"");
  EXPECT_EQ(id.count("model.transformers_version"), 0u); // metadata
  EXPECT_EQ(id.count("adamw.n"), 0u);
  EXPECT_EQ(id.count("frozen"), 0u); // nothing frozen: no key, as before --freeze
}

// What --freeze keeps out of training is part of the run: a checkpoint's
// optimizer state covers the trainable parameters of its own run only.
TEST(RunIdentity, NamesTheFrozenParameters) {
  plan::Plan frozen = runPlan(1, 2, 8);
  for (const char *name : {"model.embed_tokens.weight", "model.norm.weight"}) {
    plan::Parameter *p = frozen.add_parameters();
    p->set_name(name);
    p->set_trainable(std::string(name) == "model.norm.weight");
  }
  RunIdentity id = runIdentity(frozen, 4000, 0xabc);
  EXPECT_EQ(id.at("frozen"), "[\"model.embed_tokens.weight\"]");
  EXPECT_NE(identityDifferences(runIdentity(runPlan(1, 2, 8), 4000, 0xabc), id)
                .find("frozen: checkpoint "),
            std::string::npos);
}

TEST(RunIdentity, DifferencesNameBothValues) {
  RunIdentity saved = runIdentity(runPlan(1, 2, 8), 4000, 0xabc);
  RunIdentity now = runIdentity(runPlan(1, 2, 32), 3000, 0xabd);
  now.erase("model.hidden_size");
  EXPECT_EQ(identityDifferences(saved, saved), "");
  EXPECT_EQ(identityDifferences(saved, now),
            "\n  data.fingerprint: checkpoint \"0000000000000abc\", this run \"0000000000000abd\""
            "\n  data.tokens: checkpoint 4000, this run 3000"
            "\n  global_batch: checkpoint 8, this run 32"
            "\n  model.hidden_size: checkpoint 64, this run absent");
}

class RunStateFile : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("mt-runstate-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static RunState state() {
    RunState s;
    s.step = 3, s.consumedSamples = 24, s.skippedSteps = 2, s.skippedInARow = 1;
    s.settings = {7, 5, 2e-3};
    s.identity = runIdentity(runPlan(1, 2, 8), 4000, 0xabc);
    return s;
  }
  /// Writes state(), then replaces `from` with `to` in its JSON text.
  std::string writeEdited(const std::string &from, const std::string &to) {
    std::string path = (dir_ / "trainer.json").string();
    EXPECT_TRUE(writeRunState(path, state()));
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    std::ofstream(path) << text.replace(at, from.size(), to);
    return path;
  }
  std::string errorOf(const std::string &path) {
    auto read = readRunState(path);
    return read ? "" : read.message();
  }

  fs::path dir_;
};

TEST_F(RunStateFile, RoundTrips) {
  std::string path = (dir_ / "trainer.json").string();
  ASSERT_TRUE(writeRunState(path, state()));
  auto read = readRunState(path);
  ASSERT_TRUE(read) << read.message();
  EXPECT_EQ(read->step, 3);
  EXPECT_EQ(read->consumedSamples, 24);
  EXPECT_EQ(read->skippedSteps, 2);
  EXPECT_EQ(read->skippedInARow, 1);
  EXPECT_EQ(read->settings.seed, 7u);
  EXPECT_EQ(read->settings.eosId, 5u);
  EXPECT_EQ(read->settings.peakLr, 2e-3);
  EXPECT_EQ(read->identity, state().identity);
  EXPECT_FALSE(read->scheduleOneAhead);
}

// Format 2 (an mtrun whose schedule ran one update ahead) is still read,
// and says so.
TEST_F(RunStateFile, ReadsFormatTwoAsScheduleOneAhead) {
  auto read = readRunState(writeEdited("\"format\": 3", "\"format\": 2"));
  ASSERT_TRUE(read) << read.message();
  EXPECT_TRUE(read->scheduleOneAhead);
  EXPECT_EQ(read->step, 3);
}

TEST_F(RunStateFile, AWriteThatFailsIsAnError) {
  std::string path = (dir_ / "missing-dir" / "trainer.json").string();
  Status s = writeRunState(path, state());
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(path + ": "), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(RunStateFile, NamesWhatIsWrong) {
  std::string path = (dir_ / "trainer.json").string();
  EXPECT_EQ(errorOf(path), path + ": missing (not a checkpoint written by mtrun --save)");
  EXPECT_EQ(errorOf(writeEdited("\"step\": 3", "\"step\": \"3\"")),
            path + ": field 'step' must be an integer from -9223372036854775808 to "
                   "9223372036854775807, got \"3\"");
  // Integers stay integers: json would truncate 3.5 and wrap -7 into the
  // unsigned seed.
  EXPECT_EQ(errorOf(writeEdited("\"step\": 3", "\"step\": 3.5")),
            path + ": field 'step' must be an integer from -9223372036854775808 to "
                   "9223372036854775807, got 3.5");
  EXPECT_EQ(errorOf(writeEdited("\"seed\": 7", "\"seed\": -7")),
            path + ": field 'seed' must be an integer from 0 to 18446744073709551615, got -7");
  EXPECT_EQ(errorOf(writeEdited("\"eos_id\": 5", "\"eos_id\": 4294967296")),
            path + ": field 'eos_id' must be an integer from 0 to 4294967295, got 4294967296");
  // A directory where the file should be (reading it threw).
  std::filesystem::create_directories(dir_ / "dir" / "trainer.json");
  const std::string inDir = (dir_ / "dir" / "trainer.json").string();
  EXPECT_EQ(errorOf(inDir), inDir + ": a directory, not a checkpoint's trainer.json");
  // A FIFO: opening it to read would wait for a writer.
  std::filesystem::create_directories(dir_ / "fifo");
  const std::string fifo = (dir_ / "fifo" / "trainer.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(errorOf(fifo), fifo + ": a device or pipe, not a checkpoint's trainer.json");
  EXPECT_EQ(errorOf(writeEdited("\"lr\": 0.002", "\"lr\": -0.002")),
            path + ": field 'lr' must be a learning rate > 0 or null, got -0.002");
  EXPECT_EQ(errorOf(writeEdited("\"seed\": 7,", "")), path + ": field 'seed' is missing");
  EXPECT_EQ(errorOf(writeEdited("\"format\": 3", "\"format\": 4")),
            path + ": format 4 is not supported (this mtrun reads formats 2 and 3)");
  EXPECT_EQ(errorOf(writeEdited("\"skipped_in_a_row\": 1", "\"skipped_in_a_row\": 3")),
            path + ": inconsistent counters: step 3, skipped_steps 2, skipped_in_a_row 3");
  EXPECT_EQ(errorOf(writeEdited("\"consumed_samples\": 24", "\"consumed_samples\": 25")),
            path + ": consumed_samples 25 is not step 3 x global_batch 8 (the file was "
                   "edited or is corrupt)");
  EXPECT_EQ(errorOf(writeEdited("\"eos_id\": 5", "\"eos_id\": null")), "");
  EXPECT_EQ(errorOf(writeEdited("{", "[")), path + ": not a JSON object (truncated or corrupt)");
}

TEST(ResumedSettings, FlagsNotGivenComeFromTheCheckpoint) {
  RunState saved;
  saved.settings = {7, 5, std::nullopt};
  saved.identity["lr_schedule.max_lr"] = "0.001";
  auto s = resumedSettings({}, saved, "ck");
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(s->seed, 7u);
  EXPECT_EQ(s->eosId, 5u);
  EXPECT_EQ(s->peakLr, std::nullopt);
  auto agreeing = resumedSettings({7, 5, 1e-3}, saved, "ck"); // --lr = the plan's peak
  ASSERT_TRUE(agreeing) << agreeing.message();
  EXPECT_EQ(agreeing->peakLr, 1e-3);
}

TEST(ResumedSettings, AContradictingFlagNamesBothValues) {
  RunState saved;
  saved.settings = {7, std::nullopt, 2e-3};
  EXPECT_EQ(resumedSettings({3, {}, {}}, saved, "ck").message(),
            "--seed 3 contradicts the checkpoint ck, whose run has seed 7: leave --seed out "
            "to continue that run");
  EXPECT_EQ(resumedSettings({{}, 5, {}}, saved, "ck").message(),
            "--eos-id 5 contradicts the checkpoint ck, whose run has no end-of-document id: "
            "leave --eos-id out to continue that run");
  EXPECT_EQ(resumedSettings({{}, {}, 1e-3}, saved, "ck").message(),
            "--lr 0.001 contradicts the checkpoint ck, whose run has peak learning rate "
            "0.002: leave --lr out to continue that run");
}

TEST(ResolveNullSizes, WritesWhatTransformersResolvesTheNullsTo) {
  auto config = nlohmann::json::parse(R"({"hidden_size": 64, "num_attention_heads": 4,
      "num_key_value_heads": null, "head_dim": null, "sliding_window": null})");
  resolveNullSizes(config);
  EXPECT_EQ(config["num_key_value_heads"], 4);
  EXPECT_EQ(config["head_dim"], 16);
  EXPECT_TRUE(config["sliding_window"].is_null()); // null means "none" there
  // Given values stay, and nothing is added.
  auto given = nlohmann::json::parse(R"({"hidden_size": 64, "num_attention_heads": 4,
      "num_key_value_heads": 2, "head_dim": 32})");
  auto before = given;
  resolveNullSizes(given);
  EXPECT_EQ(given, before);
  auto absent = nlohmann::json::parse(R"({"hidden_size": 64, "num_attention_heads": 4})");
  resolveNullSizes(absent);
  EXPECT_FALSE(absent.contains("head_dim"));
}

// A loaded config.json whose rotary scaling (either spelling), partial
// rotary or other math the plan's config lacks is named: the plan does
// not apply it. transformers 5's rope_parameters of the default type is
// no scaling.
TEST(LoadedConfigNote, NamesTheMathThePlanDoesNotApply) {
  const plan::Plan plan = runPlan(1, 2, 8);
  const fs::path dir = fs::temp_directory_path() / ("loaded-config-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto noteFor = [&](const std::string &config) {
    std::ofstream(dir / "config.json") << config;
    return loadedConfigNote(plan, dir.string());
  };
  EXPECT_EQ(noteFor(R"({"model_type": "qwen3", "hidden_size": 64})"), "");
  EXPECT_EQ(noteFor(R"({"model_type": "qwen3", "hidden_size": 64, "rope_parameters":
                        {"rope_type": "default", "rope_theta": 10000.0}})"),
            "");
  std::string note = noteFor(R"({"model_type": "qwen3", "hidden_size": 64, "rope_scaling":
                                 {"type": "yarn", "factor": 4.0}, "partial_rotary_factor": 0.5})");
  EXPECT_NE(note.find("\n  rope_scaling: {\"factor\":4.0,\"type\":\"yarn\"} there, not in "
                      "the plan (not applied)"),
            std::string::npos)
      << note;
  EXPECT_NE(note.find("\n  partial_rotary_factor: 0.5 there, not in the plan (not applied)"),
            std::string::npos)
      << note;
  note = noteFor(R"({"model_type": "qwen3", "hidden_size": 64, "rope_parameters":
                    {"rope_type": "llama3", "factor": 8.0}})");
  EXPECT_NE(note.find("rope_parameters: {"), std::string::npos) << note;
  fs::remove_all(dir);
}

} // namespace
} // namespace mt::exec
