// Tests of the output-path rules: what mtc recognises as its own output, and
// every write that would destroy an input or a user's file is refused.
#include "runtime/support/OutputPath.h"

#include "runtime/io/Safetensors.h"
#include "runtime/io/TokenFile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <sys/stat.h>
#include <unistd.h>

using mt::Status;
using namespace mt::io;
namespace fs = std::filesystem;

namespace {

void writeText(const fs::path &path, const std::string &text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string readAll(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class OutputPathTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path(::testing::TempDir()) /
           ("mt-output-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string &name) const { return (dir_ / name).string(); }

  /// checkOutputs of one output with no inputs.
  Status check(const std::string &name, OutputKind kind, bool overwrite = false) const {
    return checkOutputs({{"--out", path(name), kind}}, {}, overwrite);
  }

  /// A directory `name` holding empty files `files`.
  void makeDir(const std::string &name, const std::vector<std::string> &files) const {
    fs::create_directories(dir_ / name);
    for (const std::string &f : files)
      writeText(dir_ / name / f, "x");
  }

  /// An output directory of `kind` written the way every writer writes one.
  void writeOutputDir(const std::string &name, OutputKind kind,
                      const std::vector<std::string> &files) const {
    Status s = replaceOutputDirectory(path(name), kind, [&](const std::string &tmp) {
      for (const std::string &f : files)
        writeText(fs::path(tmp) / f, "x");
      return Status::ok();
    });
    ASSERT_TRUE(s) << s.message();
  }

  fs::path dir_;
};

void expectRefused(const Status &s, const std::string &fragment) {
  ASSERT_FALSE(s) << "expected a refusal containing: " << fragment;
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
}

//===-- Directories -------------------------------------------------------===//

TEST_F(OutputPathTest, AbsentAndEmptyDirectoriesMayBeWritten) {
  EXPECT_TRUE(check("new", OutputKind::Plan));
  makeDir("empty", {});
  EXPECT_TRUE(check("empty", OutputKind::Checkpoint));
}

TEST_F(OutputPathTest, MarkerListsTheWrittenFilesAndItsKind) {
  writeOutputDir("plan", OutputKind::Plan, {"plan.pb", "plan.txt"});
  std::string marker = readAll(dir_ / "plan" / kOutputMarkerFile);
  EXPECT_NE(marker.find("\"mtc_output\": \"plan\""), std::string::npos) << marker;
  EXPECT_NE(marker.find("\"mtc_version\""), std::string::npos) << marker;
  EXPECT_NE(marker.find("\"plan.txt\""), std::string::npos) << marker;
  EXPECT_TRUE(check("plan", OutputKind::Plan));
  // Whatever the writer produces is listed: a new file kind needs no rule.
  writeOutputDir("ck", OutputKind::Checkpoint, {"model.safetensors", "run-state.json"});
  EXPECT_TRUE(check("ck", OutputKind::Checkpoint));
}

TEST_F(OutputPathTest, ForeignDirectoryIsRefusedEvenWithOverwrite) {
  makeDir("mydir", {"notes.txt"});
  for (bool overwrite : {false, true})
    expectRefused(check("mydir", OutputKind::Plan, overwrite),
                  "--out " + path("mydir") + ": is a directory holding files mtc did not "
                  "write (notes.txt)");
}

TEST_F(OutputPathTest, FileAddedToAnOutputDirectoryIsProtected) {
  writeOutputDir("plan", OutputKind::Plan, {"plan.pb", "plan.txt"});
  writeText(dir_ / "plan" / "notes.txt", "mine");
  expectRefused(check("plan", OutputKind::Plan, /*overwrite=*/true),
                "is a plan directory that also holds files mtc did not write (notes.txt)");
}

TEST_F(OutputPathTest, ReplaceOutputDirectoryLeavesForeignContentAlone) {
  makeDir("mydir", {"notes.txt"});
  Status s = replaceOutputDirectory(path("mydir"), OutputKind::Plan,
                                    [](const std::string &) { return Status::ok(); });
  expectRefused(s, "refusing to replace it");
  EXPECT_TRUE(fs::exists(dir_ / "mydir" / "notes.txt"));
  writeText(dir_ / "file", "mine");
  expectRefused(replaceOutputDirectory(path("file"), OutputKind::Plan,
                                       [](const std::string &) { return Status::ok(); }),
                "a file mtc did not write");
  EXPECT_EQ(readAll(dir_ / "file"), "mine");
}

TEST_F(OutputPathTest, OtherKindNeedsOverwrite) {
  writeOutputDir("plan", OutputKind::Plan, {"plan.pb", "plan.txt"});
  expectRefused(check("plan", OutputKind::Checkpoint),
                "is a plan directory; --out writes a checkpoint directory: pass --overwrite");
  EXPECT_TRUE(check("plan", OutputKind::Checkpoint, /*overwrite=*/true));
}

TEST_F(OutputPathTest, MarkerOfUnknownKindIsForeign) {
  makeDir("odd", {"a.bin"});
  writeText(dir_ / "odd" / kOutputMarkerFile, R"({"mtc_output": "metrics", "files": ["a.bin"]})");
  expectRefused(check("odd", OutputKind::Plan, true), "not a marker of this mtc");
}

TEST_F(OutputPathTest, DirectoriesOfOlderMtcAreRecognisedByTheirFiles) {
  makeDir("plan", {"plan.pb", "plan.txt"});
  EXPECT_TRUE(check("plan", OutputKind::Plan));
  makeDir("ck", {"trainer.json", "model.safetensors", "optimizer.safetensors"});
  EXPECT_TRUE(check("ck", OutputKind::Checkpoint));
  makeDir("dump", {"00-input.mlir", "01-mt-autodiff.mlir"});
  EXPECT_TRUE(check("dump", OutputKind::IrDump));
  makeDir("tests", {"01-attention.mlir", "02-norms.mlir"}); // no pipeline input: not a dump
  expectRefused(check("tests", OutputKind::IrDump, true), "01-attention.mlir, 02-norms.mlir");
  // A float32 model of config.json and model.safetensors alone, without
  // the export's safetensors key, may be a download: never replaced, and
  // the message says what to do with an older mtc's export.
  makeDir("export", {"model.safetensors"});
  writeText(dir_ / "export" / "config.json", R"({"torch_dtype": "float32"})");
  expectRefused(check("export", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors); if an mtc "
                "older than its export marker wrote them, remove the directory yourself");
  EXPECT_TRUE(fs::exists(dir_ / "export" / "model.safetensors"));
  // Nor is a bf16 model with the same two files.
  makeDir("downloaded", {"model.safetensors"});
  writeText(dir_ / "downloaded" / "config.json", R"({"torch_dtype": "bfloat16"})");
  expectRefused(check("downloaded", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors)");
  // One file more than an older plan had is not a plan.
  makeDir("plus", {"plan.pb", "plan.txt", "notes.txt"});
  expectRefused(check("plus", OutputKind::Plan, true), "notes.txt, plan.pb, plan.txt");
}

// An export in bf16 or fp16 whose marker is gone is recognised by the entry
// its safetensors header carries; a downloaded model of the same two files
// (transformers' header: "format" only) is not.
TEST_F(OutputPathTest, ExportsInAnyDtypeAreRecognisedByTheirSafetensorsHeader) {
  const float w[2] = {1.0f, -2.0f};
  auto model = [&](const std::string &dir, std::map<std::string, std::string> metadata,
                   const std::string &config) {
    fs::create_directories(dir_ / dir);
    ASSERT_TRUE(writeSafetensors(path(dir + "/model.safetensors"),
                                 {{"w", Dtype::BF16, {2}, w}}, metadata));
    writeText(dir_ / dir / "config.json", config);
  };
  const std::map<std::string, std::string> ours = {{"format", "pt"},
                                                   {kSafetensorsOutputKey, "hf-export"}};
  model("bf16", ours, R"({"torch_dtype": "bfloat16"})");
  EXPECT_TRUE(check("bf16", OutputKind::HfExport));
  model("fp16", ours, R"({"dtype": "float16"})");
  EXPECT_TRUE(check("fp16", OutputKind::HfExport));
  // Our key in a float32 export (transformers >= 4.56 spells it `dtype`).
  model("new-float32", ours, R"({"dtype": "float32"})");
  EXPECT_TRUE(check("new-float32", OutputKind::HfExport));
  makeDir("downloaded-float32", {"model.safetensors"});
  writeText(dir_ / "downloaded-float32" / "config.json", R"({"dtype": "float32"})");
  expectRefused(check("downloaded-float32", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors)");

  model("downloaded", {{"format", "pt"}}, R"({"torch_dtype": "bfloat16"})");
  expectRefused(check("downloaded", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors)");
  model("other-kind", {{"format", "pt"}, {kSafetensorsOutputKey, "checkpoint"}},
        R"({"dtype": "bfloat16"})");
  expectRefused(check("other-kind", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors)");
  model("not-a-string", {{"format", "pt"}}, R"({"torch_dtype": 32, "dtype": ["float32"]})");
  expectRefused(check("not-a-string", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors)");
  // Our header in a directory holding more than the two files is not ours.
  model("more", ours, R"({"dtype": "bfloat16"})");
  writeText(dir_ / "more" / "tokenizer.json", "{}");
  expectRefused(check("more", OutputKind::HfExport, true),
                "holding files mtc did not write (config.json, model.safetensors, "
                "tokenizer.json)");
  EXPECT_EQ(readAll(dir_ / "more" / "tokenizer.json"), "{}");
}

TEST_F(OutputPathTest, CurrentDirectoryAndItsParentsAreRefused) {
  std::string cwd = fs::current_path().string();
  expectRefused(checkOutputs({{"-o", cwd, OutputKind::Plan}}, {}, true),
                "is the current directory");
  expectRefused(checkOutputs({{"-o", fs::current_path().parent_path().string(),
                               OutputKind::Plan}},
                             {}, true),
                "contains the current directory");
  expectRefused(replaceOutputDirectory(".", OutputKind::Plan,
                                       [](const std::string &) { return Status::ok(); }),
                "is the current directory");
}

//===-- Inputs and other outputs ------------------------------------------===//

TEST_F(OutputPathTest, InputIsRefusedByPathLinkOrContainingDirectory) {
  writeText(dir_ / "c2.bin", "data");
  std::vector<InputPath> inputs = {{"--data", path("c2.bin")}};
  expectRefused(checkOutputs({{"--save", path("c2.bin"), OutputKind::Checkpoint}}, inputs, true),
                "is an input of this command (--data)");
  expectRefused(checkOutputs({{"--metrics", path("sub/../c2.bin"), OutputKind::Metrics}},
                             inputs, true),
                "is an input of this command (--data)");
  fs::create_hard_link(dir_ / "c2.bin", dir_ / "hard.bin");
  expectRefused(checkOutputs({{"--metrics", path("hard.bin"), OutputKind::Metrics}}, inputs,
                             true),
                "is an input of this command (--data)");
  fs::create_symlink(dir_ / "c2.bin", dir_ / "soft.bin");
  expectRefused(checkOutputs({{"--metrics", path("soft.bin"), OutputKind::Metrics}}, inputs,
                             true),
                "is an input of this command (--data)");
  expectRefused(checkOutputs({{"-o", dir_.string() + "/", OutputKind::Plan}}, inputs, true),
                "contains an input of this command (--data " + path("c2.bin") + ")");
  EXPECT_EQ(readAll(dir_ / "c2.bin"), "data");
}

TEST_F(OutputPathTest, ResumedCheckpointMayBeReplacedByACheckpointOnly) {
  writeOutputDir("ck", OutputKind::Checkpoint, {"trainer.json"});
  std::vector<InputPath> inputs = {{"--resume", path("ck"), OutputKind::Checkpoint}};
  EXPECT_TRUE(checkOutputs({{"--save", path("ck"), OutputKind::Checkpoint}}, inputs, false));
  expectRefused(checkOutputs({{"--export-hf", path("ck"), OutputKind::HfExport}}, inputs, true),
                "is an input of this command (--resume)");
}

TEST_F(OutputPathTest, OutputsMayNotShareAPathOrNest) {
  expectRefused(checkOutputs({{"-o", path("p"), OutputKind::Plan},
                              {"--dump-dir", path("p/"), OutputKind::IrDump}},
                             {}, true),
                "--dump-dir " + path("p/") + ": is also the path of -o");
  expectRefused(checkOutputs({{"--metrics", path("ck/m.jsonl"), OutputKind::Metrics},
                              {"--save", path("ck"), OutputKind::Checkpoint}},
                             {}, true),
                "lies inside the directory of --save");
  EXPECT_TRUE(checkOutputs({{"--metrics", "", OutputKind::Metrics},
                            {"--save", "", OutputKind::Checkpoint}},
                           {}, false));
}

//===-- Files -------------------------------------------------------------===//

TEST_F(OutputPathTest, FilesOfEachKindAreRecognisedByTheirFormat) {
  std::vector<uint32_t> tokens = {1, 2, 3};
  ASSERT_TRUE(writeTokenFile(path("t.bin"), tokens, 256));
  writeText(dir_ / "m.jsonl", "{\"step\": 1, \"loss\": 5.4, \"tokens\": 64, "
                              "\"tokens_per_s\": 30.1, \"skipped\": false}\n");
  writeText(dir_ / "model.mlir", "module attributes {mt.hf_config = \"{}\"} {\n}\n");
  ASSERT_TRUE(writePipelineSvg(path("new.svg"), "<svg>\n</svg>\n"));
  writeText(dir_ / "old.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"352\" "
                              "height=\"158\">\n<rect width=\"100%\" height=\"100%\" "
                              "fill=\"white\"/>\n</svg>\n");
  float values[2] = {1, 2};
  ASSERT_TRUE(writeSafetensors(path("logits.safetensors"),
                               {{"logits", Dtype::F32, {2}, values},
                                {"input_ids", Dtype::F32, {2}, values}},
                               {{"step", "1"}, {"micro_batch", "0"}}));
  struct Case {
    const char *name;
    OutputKind kind;
  };
  const Case cases[] = {{"t.bin", OutputKind::TokenFile},
                        {"m.jsonl", OutputKind::Metrics},
                        {"model.mlir", OutputKind::Model},
                        {"new.svg", OutputKind::PipelineSvg},
                        {"old.svg", OutputKind::PipelineSvg},
                        {"logits.safetensors", OutputKind::LogitsDump}};
  for (const Case &c : cases) {
    EXPECT_TRUE(check(c.name, c.kind)) << c.name;
    // Another kind of output is not written over it without --overwrite.
    OutputKind other = c.kind == OutputKind::Metrics ? OutputKind::TokenFile
                                                     : OutputKind::Metrics;
    expectRefused(check(c.name, other), "pass --overwrite");
    EXPECT_TRUE(check(c.name, other, /*overwrite=*/true)) << c.name;
  }
}

TEST_F(OutputPathTest, ForeignFileNeedsOverwriteAndEmptyFileDoesNot) {
  writeText(dir_ / "notes.txt", "mine");
  expectRefused(check("notes.txt", OutputKind::Metrics),
                "is a file mtc did not write; --out writes a metrics file: pass --overwrite");
  EXPECT_TRUE(check("notes.txt", OutputKind::Metrics, /*overwrite=*/true));
  // A safetensors model is not a logits dump.
  float w[1] = {1};
  ASSERT_TRUE(writeSafetensors(path("model.safetensors"), {{"weight", Dtype::F32, {1}, w}}));
  expectRefused(check("model.safetensors", OutputKind::LogitsDump), "a file mtc did not write");
  writeText(dir_ / "empty", "");
  EXPECT_TRUE(check("empty", OutputKind::PipelineSvg));
}

TEST_F(OutputPathTest, FilesAndDirectoriesDoNotReplaceEachOther) {
  writeText(dir_ / "t.bin", "");
  expectRefused(check("t.bin", OutputKind::Checkpoint, true),
                "is an empty file; --out writes a checkpoint directory: choose another path");
  makeDir("d", {});
  expectRefused(check("d", OutputKind::Metrics, true),
                "is an empty directory; --out writes a metrics file: choose another path");
}

TEST_F(OutputPathTest, OutputsGoWhereTheyCanBeCreated) {
  // A directory's missing parents are created; a file's are not.
  EXPECT_TRUE(check("new/deeper/ir", OutputKind::IrDump));
  expectRefused(check("new/plan.svg", OutputKind::PipelineSvg),
                "--out " + path("new/plan.svg") + ": its directory " + path("new") +
                    " does not exist: create it first, or choose another path");
  // Below a file, nothing can be created.
  writeText(dir_ / "file", "x");
  for (OutputKind kind : {OutputKind::IrDump, OutputKind::Metrics})
    expectRefused(check("file/out", kind, true),
                  path("file") + " is a file, not a directory: choose another path");
  expectRefused(check("file/a/b", OutputKind::Plan), path("file") + " is a file, not a directory");
  // A directory the user cannot write into (root writes anywhere).
  if (::geteuid() != 0) {
    makeDir("locked", {});
    fs::permissions(dir_ / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    expectRefused(check("locked/ir", OutputKind::IrDump),
                  "cannot write into " + path("locked") + " (Permission denied)");
    fs::permissions(dir_ / "locked", fs::perms::owner_all);
  }
}

TEST_F(OutputPathTest, SpecialFilesTakeOnlyStreamedMetrics) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  EXPECT_TRUE(check("fifo", OutputKind::Metrics));
  expectRefused(check("fifo", OutputKind::LogitsDump, true), "is not a regular file or directory");
}

} // namespace
