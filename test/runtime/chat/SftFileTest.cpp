// Prepared SFT files: round trip, validation on open and on write, and the
// rows io::Dataset makes of them (the trainer's inputs, labels, loss mask).
#include "runtime/io/Dataset.h"
#include "runtime/io/SftFile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace mt::io {
namespace {

namespace fs = std::filesystem;

class SftFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mt-sftfile-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string &name) { return (dir_ / name).string(); }
  /// Two rows of S = 4: prompt 1 2, response 3 4, then padding 0.
  static SftRows rows() {
    SftRows r;
    r.vocabSize = 10;
    r.seqLen = 4;
    r.padId = 0;
    r.inputIds = {1, 2, 3, 4, 0, 5, 6, 7, 8, 9};
    r.labels = {kIgnoreIndex, kIgnoreIndex, 3, 4, kIgnoreIndex, kIgnoreIndex, 6, 7, 8, 9};
    return r;
  }
  fs::path dir_;
};

TEST_F(SftFileTest, RoundTripAndTrainerRows) {
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  EXPECT_EQ(fs::file_size(path("a.bin")), 64u + 2 * 5 * 8);
  auto f = openSftFile(path("a.bin"));
  ASSERT_TRUE(f) << f.message();
  EXPECT_EQ(f->rows(), 2);
  EXPECT_EQ(f->seqLen(), 4);
  EXPECT_EQ(f->labels(1)[1], 6);
  DatasetOptions o;
  o.seqLen = 4;
  o.shuffle = false;
  auto d = Dataset::open(path("a.bin"), o);
  ASSERT_TRUE(d) << d.message();
  ASSERT_TRUE(d->prepared());
  EXPECT_EQ(d->numSamples(), 2);
  EXPECT_EQ(d->tokenCount(), 10u);
  std::vector<int32_t> in(4), lab(4);
  std::vector<float> mask(4);
  d->fillSample(0, in, lab, mask);
  // Input t predicts id t + 1 where labels[t + 1] is not ignored.
  EXPECT_EQ(in, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(lab, (std::vector<int32_t>{0, 3, 4, 0}));
  EXPECT_EQ(mask, (std::vector<float>{0, 1, 1, 0}));
  d->fillSample(1, in, lab, mask);
  EXPECT_EQ(in, (std::vector<int32_t>{5, 6, 7, 8}));
  EXPECT_EQ(lab, (std::vector<int32_t>{6, 7, 8, 9})); // a full row: the last id is predicted
  EXPECT_EQ(mask, (std::vector<float>{1, 1, 1, 1}));
}

TEST_F(SftFileTest, DatasetRefusesOtherSeqAndEosId) {
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  DatasetOptions o;
  o.seqLen = 8;
  auto d = Dataset::open(path("a.bin"), o);
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("prepared for sequence length 4 (cutoff_len), but the plan's is 8"),
            std::string::npos)
      << d.message();
  o.seqLen = 4;
  o.eosId = 0;
  d = Dataset::open(path("a.bin"), o);
  ASSERT_FALSE(d);
  EXPECT_NE(d.message().find("--eos-id"), std::string::npos) << d.message();
}

TEST_F(SftFileTest, WriterRefusesBadValuesAndWritesNothing) {
  SftRows r = rows();
  r.labels[3] = 12;
  Status s = writeSftFile(path("bad.bin"), r);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("row 0 position 3: label 12 is neither -100"), std::string::npos)
      << s.message();
  EXPECT_FALSE(fs::exists(path("bad.bin")));
  r = rows();
  r.inputIds.pop_back();
  EXPECT_FALSE(writeSftFile(path("bad.bin"), r));
  r = rows();
  r.padId = 10;
  EXPECT_FALSE(writeSftFile(path("bad.bin"), r));
}

TEST_F(SftFileTest, ReaderRefusesTruncatedAndCorrupt) {
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  fs::copy_file(path("a.bin"), path("short.bin"));
  fs::resize_file(path("short.bin"), fs::file_size(path("a.bin")) - 4);
  auto f = openSftFile(path("short.bin"));
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("truncated"), std::string::npos) << f.message();
  // An id past the vocab size, written over row 1 position 0.
  fs::copy_file(path("a.bin"), path("corrupt.bin"));
  {
    std::fstream out(path("corrupt.bin"), std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(64 + 5 * 4);
    uint32_t big = 77;
    out.write(reinterpret_cast<const char *>(&big), 4);
  }
  f = openSftFile(path("corrupt.bin"));
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("row 1 position 0: id 77 is >= the vocab size 10"),
            std::string::npos)
      << f.message();
  EXPECT_FALSE(hasSftMagic(path("missing.bin")));
}

TEST_F(SftFileTest, FingerprintSeesLabels) {
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  SftRows other = rows();
  other.labels[2] = kIgnoreIndex; // same ids, another mask
  ASSERT_TRUE(writeSftFile(path("b.bin"), other));
  EXPECT_NE(sampledFingerprint(*openSftFile(path("a.bin"))),
            sampledFingerprint(*openSftFile(path("b.bin"))));
}

/// One row of S = 6 under neat_packing: samples [1 2 3] and [4 5], padding.
SftRows neatRows() {
  SftRows r;
  r.vocabSize = 10;
  r.seqLen = 6;
  r.padId = 0;
  r.inputIds = {1, 2, 3, 4, 5, 0, 0};
  r.labels = {kIgnoreIndex, 2, 3, 4, 5, kIgnoreIndex, kIgnoreIndex};
  r.positionIds = {0, 1, 2, 0, 1, 0, 0};
  return r;
}

// Position ids round-trip, and the trainer's rows get them with the loss
// mask 0 at the last token of each document (it would predict the next
// document's first token: here label 4, which LLaMA-Factory's prompt
// masking leaves -100 unless train_on_prompt).
TEST_F(SftFileTest, PositionIdsRoundTripAndMaskDocumentEnds) {
  ASSERT_TRUE(writeSftFile(path("n.bin"), neatRows()));
  EXPECT_EQ(fs::file_size(path("n.bin")), 64u + 7 * 12);
  auto f = openSftFile(path("n.bin"));
  ASSERT_TRUE(f) << f.message();
  ASSERT_TRUE(f->hasPositionIds());
  EXPECT_EQ(std::vector<uint32_t>(f->positionIds(0).begin(), f->positionIds(0).end()),
            (std::vector<uint32_t>{0, 1, 2, 0, 1, 0, 0}));
  DatasetOptions o;
  o.seqLen = 6;
  o.shuffle = false;
  auto d = Dataset::open(path("n.bin"), o);
  ASSERT_TRUE(d) << d.message();
  EXPECT_TRUE(d->hasPositionIds());
  std::vector<int32_t> in(6), lab(6), pos(6);
  std::vector<float> mask(6);
  d->fillSample(0, in, lab, mask, pos);
  EXPECT_EQ(in, (std::vector<int32_t>{1, 2, 3, 4, 5, 0}));
  EXPECT_EQ(lab, (std::vector<int32_t>{2, 3, 4, 5, 0, 0}));
  EXPECT_EQ(pos, (std::vector<int32_t>{0, 1, 2, 0, 1, 0}));
  EXPECT_EQ(mask, (std::vector<float>{1, 1, 0, 1, 0, 0}));
  // The batch needs (and gets) the position ids buffer; plain data refuses one.
  BatchLayout layout{1, 1, 1};
  Status s = d->fillBatch(layout, {}, in, lab, mask);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("no position_ids buffer"), std::string::npos) << s.message();
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  o.seqLen = 4;
  auto plain = Dataset::open(path("a.bin"), o);
  ASSERT_TRUE(plain) << plain.message();
  EXPECT_FALSE(plain->hasPositionIds());
  std::vector<int32_t> in4(4), lab4(4), pos4(4);
  std::vector<float> mask4(4);
  s = plain->fillBatch(layout, {}, in4, lab4, mask4, pos4);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("prepare it with neat_packing"), std::string::npos) << s.message();
}

TEST_F(SftFileTest, RefusesPositionIdsThatDoNotCount) {
  SftRows r = neatRows();
  r.positionIds[4] = 2; // after 0 comes 0 or 1
  Status s = writeSftFile(path("bad.bin"), r);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("row 0 position 4: position id 2 is neither 0"), std::string::npos)
      << s.message();
  EXPECT_FALSE(fs::exists(path("bad.bin")));
  r = neatRows();
  r.positionIds.pop_back();
  EXPECT_FALSE(writeSftFile(path("bad.bin"), r));
  // On open: a row must start at 0 (written over row 0 position 0).
  ASSERT_TRUE(writeSftFile(path("n.bin"), neatRows()));
  {
    std::fstream out(path("n.bin"), std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(64 + 2 * 7 * 4);
    uint32_t one = 1;
    out.write(reinterpret_cast<const char *>(&one), 4);
  }
  auto f = openSftFile(path("n.bin"));
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("row 0 position 0: position id 1 is neither 0"), std::string::npos)
      << f.message();
}

// A file of the previous format (version 1, before position ids) is refused
// with the advice to prepare it again.
TEST_F(SftFileTest, RefusesVersion1WithAdvice) {
  ASSERT_TRUE(writeSftFile(path("a.bin"), rows()));
  {
    std::fstream out(path("a.bin"), std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(8);
    uint32_t one = 1;
    out.write(reinterpret_cast<const char *>(&one), 4);
  }
  auto f = openSftFile(path("a.bin"));
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("unsupported prepared SFT version 1 (this reader supports 2): it "
                             "was written by an older mt-prepare-sft; prepare the data again"),
            std::string::npos)
      << f.message();
}

} // namespace
} // namespace mt::io
