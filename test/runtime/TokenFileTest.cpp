// Token files: round trips at both widths, the byte layout against a header
// written by hand, every rejected file, the id check, byte tokenization.
#include "runtime/io/TokenFile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

namespace mt::io {
namespace {

namespace fs = std::filesystem;

/// A fresh directory per test, removed afterwards.
class TokenFileTest : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("mt-tokenfile-" + std::to_string(::getpid()) + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string &name) const { return dir_ / name; }

  static std::vector<unsigned char> readBytes(const std::string &p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  static void writeBytes(const std::string &p,
                         const std::vector<unsigned char> &bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  /// The message of a failed open ("" when it succeeds).
  static std::string openError(const std::string &p) {
    Expected<TokenFile> f = openTokenFile(p);
    return f ? "" : f.message();
  }

  fs::path dir_;
};

/// A version-1 header written field by field, independently of the writer.
std::vector<unsigned char> handHeader(uint32_t width, uint64_t vocab,
                                      uint64_t count) {
  std::vector<unsigned char> h = {'M', 'T', 'T', 'O', 'K', 'E', 'N', 'S'};
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      h.push_back(static_cast<unsigned char>(v >> (8 * i)));
  };
  put(1, 4);
  put(width, 4);
  put(vocab, 8);
  put(count, 8);
  h.resize(64, 0);
  return h;
}

TEST_F(TokenFileTest, RoundTripsUint16Width) {
  std::vector<uint32_t> tokens = {0, 1, 255, 256, 40000, 65535};
  ASSERT_TRUE(writeTokenFile(path("a.bin"), tokens, 65536));
  Expected<TokenFile> f = openTokenFile(path("a.bin"));
  ASSERT_TRUE(f) << f.message();
  EXPECT_EQ(f->version(), 1u);
  EXPECT_EQ(f->tokenWidth(), 2u);
  EXPECT_EQ(f->vocabSize(), 65536u);
  ASSERT_EQ(f->size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_EQ(f->at(i), tokens[i]) << "position " << i;
  std::vector<uint32_t> mid(3);
  f->read(2, mid);
  EXPECT_EQ(mid, (std::vector<uint32_t>{255, 256, 40000}));
  EXPECT_EQ(fs::file_size(path("a.bin")), 64u + 6 * 2);
}

TEST_F(TokenFileTest, RoundTripsUint32Width) {
  std::vector<uint32_t> tokens = {0, 65536, 70000, 4294967295u, 7};
  ASSERT_TRUE(writeTokenFile(path("b.bin"), tokens, uint64_t(1) << 32));
  Expected<TokenFile> f = openTokenFile(path("b.bin"));
  ASSERT_TRUE(f) << f.message();
  EXPECT_EQ(f->tokenWidth(), 4u);
  EXPECT_EQ(f->vocabSize(), uint64_t(1) << 32);
  std::vector<uint32_t> all(f->size());
  f->read(0, all);
  EXPECT_EQ(all, tokens);
  EXPECT_EQ(fs::file_size(path("b.bin")), 64u + 5 * 4);
}

TEST_F(TokenFileTest, PicksWidthFromVocabSize) {
  std::vector<uint32_t> tokens = {1, 2};
  ASSERT_TRUE(writeTokenFile(path("w2.bin"), tokens, 65536));
  ASSERT_TRUE(writeTokenFile(path("w4.bin"), tokens, 65537));
  EXPECT_EQ(openTokenFile(path("w2.bin"))->tokenWidth(), 2u);
  EXPECT_EQ(openTokenFile(path("w4.bin"))->tokenWidth(), 4u);
}

TEST_F(TokenFileTest, HeaderLayoutMatchesBytesWrittenByHand) {
  std::vector<uint32_t> tokens = {1, 2, 0x1234};
  Status s = writeTokenFile(path("h.bin"), tokens, 5000);
  ASSERT_TRUE(s) << s.message();
  // clang-format off
  std::vector<unsigned char> want = {
      'M', 'T', 'T', 'O', 'K', 'E', 'N', 'S', // magic
      1, 0, 0, 0,                             // version 1
      2, 0, 0, 0,                             // width 2
      0x88, 0x13, 0, 0, 0, 0, 0, 0,           // vocab 5000
      3, 0, 0, 0, 0, 0, 0, 0};                // count 3
  want.resize(64, 0);                         // reserved
  // clang-format on
  for (unsigned char b : {0x01, 0x00, 0x02, 0x00, 0x34, 0x12})
    want.push_back(b);
  EXPECT_EQ(readBytes(path("h.bin")), want);
}

TEST_F(TokenFileTest, ReadsAFileWrittenByHand) {
  std::vector<unsigned char> bytes = handHeader(4, 100000, 2);
  for (unsigned char b : {0xa0, 0x86, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00})
    bytes.push_back(b);
  writeBytes(path("hand.bin"), bytes);
  Expected<TokenFile> f = openTokenFile(path("hand.bin"));
  ASSERT_TRUE(f) << f.message();
  EXPECT_EQ(f->vocabSize(), 100000u);
  ASSERT_EQ(f->size(), 2u);
  EXPECT_EQ(f->at(0), 100000u);
  EXPECT_EQ(f->at(1), 5u);
}

TEST_F(TokenFileTest, EmptyStreamIsAValidFile) {
  ASSERT_TRUE(writeTokenFile(path("e.bin"), {}, 256));
  Expected<TokenFile> f = openTokenFile(path("e.bin"));
  ASSERT_TRUE(f) << f.message();
  EXPECT_EQ(f->size(), 0u);
}

TEST_F(TokenFileTest, RejectsTruncatedFileNamingExpectedAndActualBytes) {
  std::vector<uint32_t> tokens(10, 7);
  ASSERT_TRUE(writeTokenFile(path("t.bin"), tokens, 256));
  fs::resize_file(path("t.bin"), 64 + 15);
  std::string err = openError(path("t.bin"));
  EXPECT_NE(err.find(path("t.bin") + ": truncated"), std::string::npos) << err;
  EXPECT_NE(err.find("10 tokens of 2 bytes"), std::string::npos) << err;
  EXPECT_NE(err.find("should be 84 bytes, but it is 79 bytes"),
            std::string::npos)
      << err;
}

TEST_F(TokenFileTest, RejectsFileShorterThanHeader) {
  writeBytes(path("s.bin"), {'M', 'T', 'T', 'O', 'K'});
  std::string err = openError(path("s.bin"));
  EXPECT_NE(err.find("truncated: the file is 5 bytes, shorter than the "
                     "64-byte token file header"),
            std::string::npos)
      << err;
}

TEST_F(TokenFileTest, RejectsTrailingData) {
  std::vector<unsigned char> bytes = handHeader(2, 256, 1);
  bytes.insert(bytes.end(), {1, 0, 9});
  writeBytes(path("x.bin"), bytes);
  std::string err = openError(path("x.bin"));
  EXPECT_NE(err.find("trailing data"), std::string::npos) << err;
  EXPECT_NE(err.find("should be 66 bytes, but it is 67 bytes"),
            std::string::npos)
      << err;
}

TEST_F(TokenFileTest, RejectsBadMagic) {
  std::vector<unsigned char> bytes = handHeader(2, 256, 0);
  bytes[7] = 'X';
  writeBytes(path("m.bin"), bytes);
  std::string err = openError(path("m.bin"));
  EXPECT_NE(err.find("bad magic \"MTTOKENX\", expected \"MTTOKENS\""),
            std::string::npos)
      << err;
  bytes[0] = 0;
  writeBytes(path("m.bin"), bytes);
  err = openError(path("m.bin"));
  EXPECT_NE(err.find("bad magic \"\\x00TTOKENX\""), std::string::npos) << err;
}

TEST_F(TokenFileTest, RejectsWrongVersion) {
  std::vector<unsigned char> bytes = handHeader(2, 256, 0);
  bytes[8] = 2;
  writeBytes(path("v.bin"), bytes);
  std::string err = openError(path("v.bin"));
  EXPECT_NE(err.find("unsupported token file version 2 (this reader supports "
                     "1)"),
            std::string::npos)
      << err;
}

TEST_F(TokenFileTest, RejectsBadWidth) {
  std::vector<unsigned char> bytes = handHeader(3, 256, 1);
  bytes.insert(bytes.end(), {1, 2, 3});
  writeBytes(path("w.bin"), bytes);
  std::string err = openError(path("w.bin"));
  EXPECT_NE(err.find("token width 3 bytes; must be 2 or 4"), std::string::npos)
      << err;
}

TEST_F(TokenFileTest, MissingFileNamesThePath) {
  std::string err = openError(path("absent.bin"));
  EXPECT_NE(err.find(path("absent.bin") + ": cannot open token file"),
            std::string::npos)
      << err;
}

TEST_F(TokenFileTest, WriterRejectsIdOutsideVocabAndKeepsOldFile) {
  std::vector<uint32_t> good = {1, 2, 3};
  ASSERT_TRUE(writeTokenFile(path("k.bin"), good, 256));
  std::vector<unsigned char> before = readBytes(path("k.bin"));

  std::vector<uint32_t> bad = {1, 2, 256, 3};
  Status s = writeTokenFile(path("k.bin"), bad, 256);
  ASSERT_FALSE(s);
  EXPECT_NE(
      s.message().find("token 256 at position 2 is >= the vocab size 256"),
      std::string::npos)
      << s.message();
  EXPECT_EQ(readBytes(path("k.bin")), before);
  // No temporary file is left beside the target.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), {}), 1);
}

TEST_F(TokenFileTest, WriterFailureLeavesNoFileAndNoTemp) {
  std::string target = path("no-such-dir/out.bin");
  EXPECT_FALSE(writeTokenFile(target, std::vector<uint32_t>{1}, 256));
  EXPECT_FALSE(fs::exists(target));
  Status zero = writeTokenFile(path("z.bin"), std::vector<uint32_t>{}, 0);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.message().find("vocab size 0 out of range"), std::string::npos)
      << zero.message();
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(TokenFileTest, CheckTokenIdsReportsFirstIdPastTheModelVocab) {
  std::vector<uint32_t> tokens = {5, 499, 12, 700, 900, 3};
  ASSERT_TRUE(writeTokenFile(path("c.bin"), tokens, 1000));
  Expected<TokenFile> f = openTokenFile(path("c.bin"));
  ASSERT_TRUE(f) << f.message();
  Status s = checkTokenIds(*f, 500);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find(
                "token 700 at position 3 is >= the model's vocab size 500"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("tokenizer vocab size 1000 exceeds"),
            std::string::npos)
      << s.message();
  EXPECT_TRUE(checkTokenIds(*f, 1000));
  // A model vocab padded past the tokenizer's is fine.
  EXPECT_TRUE(checkTokenIds(*f, 1024));
}

TEST_F(TokenFileTest, CheckTokenIdsRejectsALargerTokenizerVocab) {
  ASSERT_TRUE(writeTokenFile(path("c.bin"), std::vector<uint32_t>{1, 2}, 1000));
  Expected<TokenFile> f = openTokenFile(path("c.bin"));
  ASSERT_TRUE(f) << f.message();
  Status s = checkTokenIds(*f, 500);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("the file's tokenizer vocab size 1000 exceeds the "
                             "model's vocab size 500"),
            std::string::npos)
      << s.message();
}

TEST_F(TokenFileTest, CheckTokenIdsScansPastAnUnderstatedHeader) {
  // The header claims vocab 256, but the ids say otherwise.
  std::vector<unsigned char> bytes = handHeader(2, 256, 3);
  bytes.insert(bytes.end(), {1, 0, 0x2c, 0x01, 2, 0});
  writeBytes(path("u.bin"), bytes);
  Expected<TokenFile> f = openTokenFile(path("u.bin"));
  ASSERT_TRUE(f) << f.message();
  Status s = checkTokenIds(*f, 256);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("token 300 at position 1"), std::string::npos)
      << s.message();
}

TEST_F(TokenFileTest, CheckTokenIdsRefusesAnIdPastTheHeaderVocab) {
  // The header claims vocab 256; id 300 fits the model's 512 but not the
  // header, so the file is corrupt (or its ids another tokenizer's).
  std::vector<unsigned char> bytes = handHeader(2, 256, 3);
  bytes.insert(bytes.end(), {1, 0, 0x2c, 0x01, 2, 0});
  writeBytes(path("u.bin"), bytes);
  Expected<TokenFile> f = openTokenFile(path("u.bin"));
  ASSERT_TRUE(f) << f.message();
  const std::string expected =
      path("u.bin") + ": token 300 at position 1 is >= the vocab size 256 in the file's header";
  Status s = checkTokenIds(*f, 512);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message().find(expected), 0u) << s.message();
  s = checkDeclaredVocab(*f);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.message().find(expected), 0u) << s.message();
  ASSERT_TRUE(writeTokenFile(path("ok.bin"), std::vector<uint32_t>{1, 255}, 256));
  EXPECT_TRUE(checkDeclaredVocab(*openTokenFile(path("ok.bin"))));
}

TEST_F(TokenFileTest, FingerprintHashesHeaderAndSampledTokens) {
  // FNV-1a written out in Python over 300 and 3 (8 bytes each) and the ids
  // 1, 2, 3 (4 bytes each), little-endian.
  ASSERT_TRUE(writeTokenFile(path("f.bin"), std::vector<uint32_t>{1, 2, 3}, 300));
  EXPECT_EQ(sampledFingerprint(*openTokenFile(path("f.bin"))), 0xebdd6409e72930ddULL);
  // 10000 tokens: positions floor(i * 10000 / 4096) = 0, 2, 4, 7, ... count.
  std::vector<uint32_t> tokens(10000, 7);
  ASSERT_TRUE(writeTokenFile(path("a.bin"), tokens, 300));
  uint64_t base = sampledFingerprint(*openTokenFile(path("a.bin")));
  tokens[1] = 8; // not sampled
  ASSERT_TRUE(writeTokenFile(path("b.bin"), tokens, 300));
  EXPECT_EQ(sampledFingerprint(*openTokenFile(path("b.bin"))), base);
  tokens[2] = 8; // sampled
  ASSERT_TRUE(writeTokenFile(path("c.bin"), tokens, 300));
  EXPECT_NE(sampledFingerprint(*openTokenFile(path("c.bin"))), base);
  ASSERT_TRUE(writeTokenFile(path("d.bin"), std::vector<uint32_t>(10000, 7), 301));
  EXPECT_NE(sampledFingerprint(*openTokenFile(path("d.bin"))), base); // the vocab
}

TEST(ByteTokens, EveryByteIsOneToken) {
  EXPECT_EQ(byteTokens("Hi!"), (std::vector<uint32_t>{72, 105, 33}));
  // UTF-8 "é" is two bytes, and byte values above 127 stay positive.
  EXPECT_EQ(byteTokens("\xc3\xa9\xff"), (std::vector<uint32_t>{195, 169, 255}));
  EXPECT_EQ(byteTokens(std::string_view("a\0b", 3)),
            (std::vector<uint32_t>{97, 0, 98}));
  EXPECT_TRUE(byteTokens("").empty());
}

} // namespace
} // namespace mt::io
