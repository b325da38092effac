// Tests of sharded safetensors checkpoints: reading a directory through its
// index (or its single file), save_pretrained's split, and a sharded save
// over an earlier one, interrupted or not.
#include "test/runtime/SafetensorsTestSupport.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using mt::Expected;
using namespace mt::io;
using namespace mt::io::test;

namespace {

//===-- Checkpoint directories --------------------------------------------===//

constexpr const char *kShard1 = "model-00001-of-00002.safetensors";
constexpr const char *kShard2 = "model-00002-of-00002.safetensors";

TEST_F(SafetensorsTest, OpensShardedCheckpointWithIndex) {
  writeShard(kShard1, {{"a", {1, 2}}, {"b", {3}}});
  writeShard(kShard2, {{"c", {4, 5, 6}}});
  writeShard("unrelated.safetensors", {{"a", {9}}}); // not named by the index
  writeRaw(path("model.safetensors.index.json"),
           R"({"metadata":{"total_size":24},"weight_map":{"a":")" + std::string(kShard1) +
               R"(","b":")" + kShard1 + R"(","c":")" + kShard2 + R"("}})");
  Expected<SafetensorsCheckpoint> ckpt = openCheckpoint(dir_.string());
  ASSERT_TRUE(ckpt.isOk()) << ckpt.message();
  EXPECT_EQ(ckpt->shards().size(), 2u);
  EXPECT_EQ(ckpt->names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ckpt->find("c")->shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(ckpt->shardOf("c")->path(), path(kShard2));
  EXPECT_EQ(ckpt->find("zzz"), nullptr);
  std::vector<float> got(3);
  ASSERT_TRUE(ckpt->readAsFloat32("c", got.data(), 3).isOk());
  EXPECT_EQ(got, (std::vector<float>{4, 5, 6}));
  ASSERT_TRUE(ckpt->readAsFloat32("a", got.data(), 2).isOk());
  EXPECT_EQ(got[1], 2.0f);
  expectError(ckpt->readAsFloat32("zzz", got.data(), 1), {"no tensor named 'zzz'"});
}

TEST_F(SafetensorsTest, RejectsIndexNamingMissingFileOrTensor) {
  writeShard(kShard1, {{"a", {1}}});
  std::string index = path("model.safetensors.index.json");
  writeRaw(index, R"({"weight_map":{"a":")" + std::string(kShard1) + R"(","c":")" +
                      kShard2 + R"("}})");
  expectError(openCheckpoint(dir_.string()),
              {index, "tensor 'c' maps to missing file '" + std::string(kShard2) + "'"});
  writeRaw(index, R"({"weight_map":{"a":")" + std::string(kShard1) + R"(","d":")" +
                      kShard1 + R"("}})");
  expectError(openCheckpoint(dir_.string()),
              {index, "tensor 'd' maps to '" + std::string(kShard1) + "'", "no tensor"});
  writeRaw(index, R"({"weight_map":{"a":"x","a":"y"}})");
  expectError(openCheckpoint(dir_.string()), {index, "duplicate key 'a'"});
  writeRaw(index, R"({"weight_map":[]})");
  expectError(openCheckpoint(dir_.string()), {index, "weight_map"});
}

TEST_F(SafetensorsTest, RejectsShardTensorMissingFromIndex) {
  writeShard(kShard1, {{"a", {1}}, {"b", {2}}});
  writeRaw(path("model.safetensors.index.json"),
           R"({"weight_map":{"a":")" + std::string(kShard1) + R"("}})");
  expectError(openCheckpoint(dir_.string()), {"tensor 'b'", kShard1, "not listed"});
}

TEST_F(SafetensorsTest, RejectsTensorInTwoShards) {
  writeShard("part-a.safetensors", {{"x", {1}}, {"y", {2}}});
  writeShard("part-b.safetensors", {{"x", {3}}});
  expectError(openCheckpoint(dir_.string()),
              {"tensor 'x' appears in both", path("part-a.safetensors"),
               path("part-b.safetensors")});
}

TEST_F(SafetensorsTest, PrefersModelSafetensorsThenAnySafetensors) {
  writeShard("part-a.safetensors", {{"x", {1}}});
  writeShard("part-b.safetensors", {{"y", {2}}});
  Expected<SafetensorsCheckpoint> all = openCheckpoint(dir_.string());
  ASSERT_TRUE(all.isOk()) << all.message();
  EXPECT_EQ(all->names(), (std::vector<std::string>{"x", "y"}));

  writeShard("model.safetensors", {{"z", {3}}});
  Expected<SafetensorsCheckpoint> single = openCheckpoint(dir_.string());
  ASSERT_TRUE(single.isOk()) << single.message();
  EXPECT_EQ(single->names(), (std::vector<std::string>{"z"}));
}

TEST_F(SafetensorsTest, RejectsDirectoryWithoutSafetensors) {
  expectError(openCheckpoint(dir_.string()), {dir_.string(), "no model.safetensors"});
  expectError(openCheckpoint(path("absent")), {"not a checkpoint directory"});
}

//===-- Sharded writing (save_pretrained's layout) ------------------------===//

/// huggingface_hub's split_state_dict_into_shards_factory, by hand: with
/// max 64 bytes, F32 tensors of 10, 25, 8 and 8 elements (40, 100, 32, 32
/// bytes) give [t1] (over the limit: its own shard, ahead of the one being
/// filled), [t0] (40 + 32 > 64 closes it), [t2, t3].
TEST(SafetensorsShards, FollowHuggingFaceHubsSplit) {
  std::vector<float> v(25, 1.0f);
  std::vector<TensorToWrite> ts = {{"t0", Dtype::F32, {10}, v.data()},
                                   {"t1", Dtype::F32, {25}, v.data()},
                                   {"t2", Dtype::F32, {8}, v.data()},
                                   {"t3", Dtype::F32, {8}, v.data()}};
  const std::vector<std::vector<size_t>> want = {{1}, {0}, {2, 3}};
  EXPECT_EQ(planShards(ts, 64), want);
  EXPECT_EQ(planShards(ts, 1000), (std::vector<std::vector<size_t>>{{0, 1, 2, 3}}));
}

// Shards are planned on the bytes written: half as many per BF16 or F16
// element as per F32 one, so the same tensors fill fewer shards.
TEST(SafetensorsShards, CountTheBytesOfTheWrittenDtype) {
  std::vector<float> v(25, 1.0f);
  std::vector<TensorToWrite> ts = {{"t0", Dtype::BF16, {10}, v.data()},
                                   {"t1", Dtype::BF16, {25}, v.data()},
                                   {"t2", Dtype::F16, {8}, v.data()},
                                   {"t3", Dtype::BF16, {8}, v.data()}};
  // 20 + 50 > 64: t1 (50 bytes) starts a shard; 50 + 16 > 64: t2 another.
  EXPECT_EQ(planShards(ts, 64), (std::vector<std::vector<size_t>>{{0}, {1}, {2, 3}}));
  // 32 bytes: t1 (50) alone ahead of the shard being filled.
  EXPECT_EQ(planShards(ts, 32), (std::vector<std::vector<size_t>>{{1}, {0}, {2, 3}}));
}

TEST_F(SafetensorsTest, ShardedBf16CheckpointCountsItsBytes) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9};
  std::vector<TensorToWrite> ts = {{"a", Dtype::BF16, {2, 2}, a.data()},
                                   {"b", Dtype::BF16, {2}, b.data()},
                                   {"c", Dtype::BF16, {3}, c.data()}};
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 8).isOk());
  // a (8 bytes) fills one shard; b (4) + c (6) > 8: b and c apart.
  std::string index = readRaw(path("model.safetensors.index.json"));
  EXPECT_NE(index.find("\"total_size\": 18"), std::string::npos) << index;
  EXPECT_NE(index.find("\"c\": \"model-00003-of-00003.safetensors\""), std::string::npos) << index;
  auto checkpoint = openCheckpoint(dir_.string());
  ASSERT_TRUE(checkpoint.isOk()) << checkpoint.message();
  EXPECT_EQ(checkpoint->find("c")->dtype, Dtype::BF16);
  std::vector<float> got(3);
  ASSERT_TRUE(checkpoint->readAsFloat32("c", got.data(), 3).isOk());
  EXPECT_EQ(got, c);
}

TEST_F(SafetensorsTest, ShardedCheckpointReadsBackWithItsIndex) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9};
  std::vector<TensorToWrite> ts = {{"a", Dtype::F32, {2, 2}, a.data()},
                                   {"b", Dtype::F32, {2}, b.data()},
                                   {"c", Dtype::F32, {3}, c.data()}};
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 16).isOk());
  // a (16 bytes) fills one shard; b (8) + c (12) > 16: b and c apart.
  std::string index = readRaw(path("model.safetensors.index.json"));
  EXPECT_NE(index.find("\"total_size\": 36"), std::string::npos) << index;
  EXPECT_NE(index.find("\"c\": \"model-00003-of-00003.safetensors\""), std::string::npos) << index;
  auto checkpoint = openCheckpoint(dir_.string());
  ASSERT_TRUE(checkpoint.isOk()) << checkpoint.message();
  EXPECT_EQ(checkpoint->shards().size(), 3u);
  std::vector<float> got(3);
  ASSERT_TRUE(checkpoint->readAsFloat32("c", got.data(), 3).isOk());
  EXPECT_EQ(got, c);
  // One shard: model.safetensors and no index, as save_pretrained.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 1000).isOk());
  EXPECT_TRUE(fs::exists(path("model.safetensors")));
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
}

// A sharded save over an earlier one that fails part-way (here its second
// shard cannot be written; a kill would do the same) leaves no index naming
// shards of two saves: the earlier index went first, and shards without an
// index are refused by name rather than read as one model.
TEST_F(SafetensorsTest, AnInterruptedShardedSaveLeavesNoLoadableMix) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9};
  std::vector<TensorToWrite> ts = {{"a", Dtype::F32, {2, 2}, a.data()},
                                   {"b", Dtype::F32, {2}, b.data()},
                                   {"c", Dtype::F32, {3}, c.data()}};
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 16).isOk());
  ASSERT_TRUE(openCheckpoint(dir_.string()).isOk());
  fs::remove(path("model-00002-of-00003.safetensors"));
  fs::create_directories(path("model-00002-of-00003.safetensors")); // unwritable as a file
  a = {9, 9, 9, 9};
  ASSERT_FALSE(writeShardedSafetensors(dir_.string(), ts, 16).isOk());
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
  fs::remove(path("model-00002-of-00003.safetensors"));
  auto checkpoint = openCheckpoint(dir_.string());
  ASSERT_FALSE(checkpoint.isOk());
  EXPECT_NE(checkpoint.message().find("model-00001-of-00003.safetensors is a shard of a sharded "
                                      "save, but model.safetensors.index.json is missing"),
            std::string::npos)
      << checkpoint.message();
}

// A save over an earlier one in the same directory leaves only its own
// weight files (no reader may take the earlier weights): one file after
// three shards removes the shards and the index, three shards after six
// remove the six and a single file, and another file stays. A single file
// beside an index is read first, as transformers' from_pretrained does.
TEST_F(SafetensorsTest, ASaveReplacesTheEarlierSavesWeightFiles) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9}, a2 = {4, 3, 2, 1};
  std::vector<TensorToWrite> ts = {{"a", Dtype::F32, {2, 2}, a.data()},
                                   {"b", Dtype::F32, {2}, b.data()},
                                   {"c", Dtype::F32, {3}, c.data()}};
  auto weightFiles = [&] {
    std::vector<std::string> names;
    for (const auto &e : fs::directory_iterator(dir_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  std::ofstream(path("config.json")) << "{}";
  for (int i = 0; i < 6; ++i) // an earlier save in six shards
    ASSERT_TRUE(writeSafetensors(path("model-0000" + std::to_string(i + 1) +
                                      "-of-00006.safetensors"),
                                 {ts[0]})
                    .isOk());
  ASSERT_TRUE(writeSafetensors(path("model.safetensors"), {ts[0]}).isOk());
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 16).isOk());
  EXPECT_EQ(weightFiles(),
            (std::vector<std::string>{"config.json", "model-00001-of-00003.safetensors",
                                      "model-00002-of-00003.safetensors",
                                      "model-00003-of-00003.safetensors",
                                      "model.safetensors.index.json"}));
  ts[0].data = a2.data();
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 1000).isOk());
  EXPECT_EQ(weightFiles(), (std::vector<std::string>{"config.json", "model.safetensors"}));
  auto checkpoint = openCheckpoint(dir_.string());
  ASSERT_TRUE(checkpoint.isOk()) << checkpoint.message();
  std::vector<float> got(4);
  ASSERT_TRUE(checkpoint->readAsFloat32("a", got.data(), 4).isOk());
  EXPECT_EQ(got, a2);
  // An index beside the single file (a save of another tool) is not read.
  std::ofstream(path("model.safetensors.index.json")) << "{\"weight_map\": {\"a\": \"gone\"}}";
  checkpoint = openCheckpoint(dir_.string());
  ASSERT_TRUE(checkpoint.isOk()) << checkpoint.message();
  ASSERT_TRUE(checkpoint->readAsFloat32("a", got.data(), 4).isOk());
  EXPECT_EQ(got, a2);
}

// A Hugging Face export (mtrun --export-hf, mtc train's checkpoints and
// final model) is marked in every shard's header, read here from the raw
// bytes: {"format":"pt","mtc_output":"hf-export"}.
TEST_F(SafetensorsTest, HfExportMarksEveryShard) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, c = {7, 8, 9};
  std::vector<TensorToWrite> ts = {{"a", Dtype::F32, {2, 2}, a.data()},
                                   {"b", Dtype::F32, {2}, b.data()},
                                   {"c", Dtype::F32, {3}, c.data()}};
  auto header = [&](const std::string &file) {
    std::string raw = readRaw(path(file));
    uint64_t size = 0;
    std::memcpy(&size, raw.data(), 8);
    return raw.substr(8, size);
  };
  const std::string marker = "\"__metadata__\":{\"format\":\"pt\",\"mtc_output\":\"hf-export\"}";
  ASSERT_TRUE(writeHfExportSafetensors(dir_.string(), ts, 16).isOk());
  for (const char *file : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"})
    EXPECT_NE(header(file).find(marker), std::string::npos) << file << ": " << header(file);
  // One file by default (mtrun --export-hf), marked the same.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ASSERT_TRUE(writeHfExportSafetensors(dir_.string(), ts).isOk());
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
  EXPECT_NE(header("model.safetensors").find(marker), std::string::npos)
      << header("model.safetensors");
  // A plain sharded checkpoint keeps transformers' metadata alone.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ASSERT_TRUE(writeShardedSafetensors(dir_.string(), ts, 1000).isOk());
  EXPECT_EQ(header("model.safetensors").find("mtc_output"), std::string::npos);
}

} // namespace
