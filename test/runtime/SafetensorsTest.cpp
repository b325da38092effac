// Tests of the safetensors reader and writer: dtype conversions, a file built
// byte by byte, round trips and every rejected input (sharded checkpoints:
// SafetensorsCheckpointTest.cpp).
#include "runtime/io/Safetensors.h"
#include "test/runtime/SafetensorsTestSupport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <unistd.h>

using mt::Expected;
using namespace mt::io;
using namespace mt::io::test;
namespace fs = std::filesystem;

namespace {

uint32_t bitsOf(float f) { return std::bit_cast<uint32_t>(f); }
float floatOf(uint32_t bits) { return std::bit_cast<float>(bits); }

//===-- Conversions -------------------------------------------------------===//

TEST(SafetensorsConversion, Bf16ToFloatIsExact) {
  EXPECT_EQ(bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(bf16ToFloat(0xc040), -3.0f);
  EXPECT_EQ(bf16ToFloat(0x3f81), 1.0078125f);
  EXPECT_EQ(bitsOf(bf16ToFloat(0x0001)), 0x00010000u); // 2^-133, fp32 subnormal
  EXPECT_EQ(bitsOf(bf16ToFloat(0x8000)), 0x80000000u); // -0
  EXPECT_EQ(bf16ToFloat(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16ToFloat(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16ToFloat(0x7fc0)));
  EXPECT_TRUE(std::isnan(bf16ToFloat(0x7f81)));
}

TEST(SafetensorsConversion, Fp16ToFloatIsExact) {
  EXPECT_EQ(fp16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(fp16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(fp16ToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(fp16ToFloat(0x7bff), 65504.0f); // largest finite
  EXPECT_EQ(fp16ToFloat(0x0400), 0x1p-14f); // smallest normal
  // Subnormals: mantissa * 2^-24.
  EXPECT_EQ(fp16ToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16ToFloat(0x0200), 0x1p-15f);
  EXPECT_EQ(fp16ToFloat(0x03ff), 1023.0f * 0x1p-24f);
  EXPECT_EQ(fp16ToFloat(0x8001), -0x1p-24f);
  EXPECT_EQ(bitsOf(fp16ToFloat(0x0000)), 0x00000000u);
  EXPECT_EQ(bitsOf(fp16ToFloat(0x8000)), 0x80000000u);
  EXPECT_EQ(fp16ToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16ToFloat(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16ToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16ToFloat(0x7c01))); // smallest payload: NaN, not inf
  EXPECT_TRUE(std::isnan(fp16ToFloat(0xfe00)));
  EXPECT_TRUE(std::signbit(fp16ToFloat(0xfe00)));
}

TEST(SafetensorsConversion, FloatToBf16RoundsToNearestEven) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16(floatOf(0x3f808000)), 0x3f80); // tie, 0x3f80 is even
  EXPECT_EQ(floatToBf16(floatOf(0x3f818000)), 0x3f82); // tie, 0x3f81 is odd
  EXPECT_EQ(floatToBf16(floatOf(0xbf818000)), 0xbf82); // same for negatives
  EXPECT_EQ(floatToBf16(floatOf(0x3f808001)), 0x3f81); // just above the tie
  EXPECT_EQ(floatToBf16(floatOf(0x3f807fff)), 0x3f80); // just below it
  EXPECT_EQ(floatToBf16(0.1f), 0x3dcd);                // 0x3dcccccd rounds up
  EXPECT_EQ(floatToBf16(floatOf(0x00008000)), 0x0000); // subnormal tie to even
  EXPECT_EQ(floatToBf16(floatOf(0x00018000)), 0x0002);
  EXPECT_EQ(floatToBf16(floatOf(0x7f7fffff)), 0x7f80); // max float overflows
  EXPECT_EQ(floatToBf16(floatOf(0x7f7f7fff)), 0x7f7f); // largest bf16 stays
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(floatToBf16(floatOf(0xffc00000)), 0xffc0);
  // A NaN whose payload lies in the dropped bits must not become inf.
  uint16_t nan = floatToBf16(floatOf(0x7f800001));
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x007f, 0);
  // Every non-NaN bf16 value survives a round trip through fp32.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7fff) <= 0x7f80) {
      ASSERT_EQ(floatToBf16(bf16ToFloat(uint16_t(h))), h) << std::hex << h;
    }
  }
}

TEST(SafetensorsConversion, FloatToBf16KeepsSignsAndNaNs) {
  EXPECT_EQ(floatToBf16(0.0f), 0x0000);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);                 // negative zero keeps its sign
  EXPECT_EQ(floatToBf16(floatOf(0x80008000)), 0x8000);   // negative subnormal tie to -0
  EXPECT_EQ(floatToBf16(floatOf(0x80018000)), 0x8002);   // ... and to the even -2 units
  EXPECT_EQ(floatToBf16(floatOf(0x7fc00000)), 0x7fc0);   // quiet NaN
  EXPECT_EQ(floatToBf16(floatOf(0xff800001)), 0xffc0);   // signalling NaN: quiet, signed
}

TEST(SafetensorsConversion, FloatToFp16RoundsToNearestEven) {
  EXPECT_EQ(floatToFp16(1.0f), 0x3c00);
  EXPECT_EQ(floatToFp16(-2.0f), 0xc000);
  EXPECT_EQ(floatToFp16(0.1f), 0x2e66);                // 0x3dcccccd: 0.0999755859375
  EXPECT_EQ(floatToFp16(floatOf(0x3f801000)), 0x3c00); // 1 + 2^-11: tie, 0x3c00 is even
  EXPECT_EQ(floatToFp16(floatOf(0x3f803000)), 0x3c02); // 1 + 3 x 2^-11: tie, 0x3c01 is odd
  EXPECT_EQ(floatToFp16(floatOf(0xbf803000)), 0xbc02); // same for negatives
  EXPECT_EQ(floatToFp16(floatOf(0x3f801001)), 0x3c01); // just above the tie
  EXPECT_EQ(floatToFp16(floatOf(0x3f800fff)), 0x3c00); // just below it
  // The top of the range: 65504 is the largest finite; 65520 is the tie
  // between it (odd mantissa) and 2^16, so it goes up to inf.
  EXPECT_EQ(floatToFp16(65504.0f), 0x7bff);
  EXPECT_EQ(floatToFp16(floatOf(0x477fefff)), 0x7bff); // 65519.996
  EXPECT_EQ(floatToFp16(65520.0f), 0x7c00);
  EXPECT_EQ(floatToFp16(-65520.0f), 0xfc00);
  EXPECT_EQ(floatToFp16(1e10f), 0x7c00);
  EXPECT_EQ(floatToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(floatToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  // Subnormals (units of 2^-24) and zeros.
  EXPECT_EQ(floatToFp16(0x1p-14f), 0x0400);            // smallest normal
  EXPECT_EQ(floatToFp16(0x1p-24f), 0x0001);            // smallest subnormal
  EXPECT_EQ(floatToFp16(-0x1p-24f), 0x8001);
  EXPECT_EQ(floatToFp16(1023.0f * 0x1p-24f), 0x03ff);  // largest subnormal
  EXPECT_EQ(floatToFp16(1023.5f * 0x1p-24f), 0x0400);  // tie: up to the smallest normal
  EXPECT_EQ(floatToFp16(0x1p-25f), 0x0000);            // half a unit: tie to even 0
  EXPECT_EQ(floatToFp16(floatOf(0x33000001)), 0x0001); // just above half a unit
  EXPECT_EQ(floatToFp16(1.5f * 0x1p-24f), 0x0002);     // tie between 1 and 2 units
  EXPECT_EQ(floatToFp16(2.5f * 0x1p-24f), 0x0002);     // tie between 2 and 3 units
  EXPECT_EQ(floatToFp16(-0x1p-25f), 0x8000);           // to negative zero
  EXPECT_EQ(floatToFp16(1e-40f), 0x0000);              // an fp32 subnormal
  EXPECT_EQ(floatToFp16(0.0f), 0x0000);
  EXPECT_EQ(floatToFp16(-0.0f), 0x8000);
  // NaNs stay NaN, quiet, signed, with the payload's top bits.
  EXPECT_EQ(floatToFp16(floatOf(0x7fc00000)), 0x7e00);
  EXPECT_EQ(floatToFp16(floatOf(0xffc00000)), 0xfe00);
  EXPECT_EQ(floatToFp16(floatOf(0x7f800001)), 0x7e00); // payload only in dropped bits: not inf
  EXPECT_EQ(floatToFp16(floatOf(0x7fa00000)), 0x7f00);
  // Every non-NaN fp16 value survives a round trip through fp32.
  for (uint32_t h = 0; h < 0x10000; ++h)
    if ((h & 0x7fff) <= 0x7c00) {
      ASSERT_EQ(floatToFp16(fp16ToFloat(uint16_t(h))), h) << std::hex << h;
    }
}

#ifdef __FLT16_MAX__
// The compiler's own float -> _Float16 conversion (libgcc's, round to nearest
// even) as an independent reference: every midpoint between neighbouring
// fp16 values and the floats next to it, and a stride through all floats.
TEST(SafetensorsConversion, FloatToFp16MatchesTheCompilersConversion) {
  auto reference = [](float f) { return std::bit_cast<uint16_t>(static_cast<_Float16>(f)); };
  auto check = [&](float f) {
    if (!std::isnan(f)) {
      ASSERT_EQ(floatToFp16(f), reference(f)) << std::hexfloat << f;
    }
  };
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    // fp16's midpoints are exact in fp32 (fp16 has 11 significant bits).
    float mid = (fp16ToFloat(uint16_t(h)) + fp16ToFloat(uint16_t(h + 1))) / 2;
    for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)})
      for (float g : {f, -f})
        check(g);
  }
  for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 65521)
    check(floatOf(uint32_t(bits)));
}
#endif

TEST(SafetensorsConversion, NarrowingToInfinityIsRefused) {
  std::vector<float> ok = {65504.0f, -1.0f, std::numeric_limits<float>::infinity(),
                           std::nanf("")};
  EXPECT_TRUE(checkNarrowing("w", Dtype::F16, ok.data(), ok.size()).isOk());
  std::vector<float> over = {1.0f, -70000.0f, 65520.0f};
  mt::Status s = checkNarrowing("model.norm.weight", Dtype::F16, over.data(), over.size());
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "tensor 'model.norm.weight': its largest magnitude 70000 exceeds "
                         "float16's largest finite value 65504 and would be written as "
                         "infinity");
  std::vector<float> tie = {65520.0f};
  EXPECT_FALSE(checkNarrowing("t", Dtype::F16, tie.data(), 1).isOk());
  EXPECT_TRUE(checkNarrowing("t", Dtype::BF16, tie.data(), 1).isOk());
  EXPECT_TRUE(checkNarrowing("t", Dtype::F32, over.data(), over.size()).isOk());
  std::vector<float> huge = {floatOf(0x7f7fffff)}; // FLT_MAX rounds to bf16's inf
  mt::Status b = checkNarrowing("h", Dtype::BF16, huge.data(), 1);
  ASSERT_FALSE(b.isOk());
  EXPECT_NE(b.message().find("tensor 'h': its largest magnitude 3.40282347e+38 exceeds "
                             "bfloat16's largest finite value 3.38953139e+38"),
            std::string::npos)
      << b.message();
}

//===-- Reading a file built by hand --------------------------------------===//

TEST_F(SafetensorsTest, ReadsHandBuiltFile) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("w32":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("wbf":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("wf16":{"dtype":"F16","shape":[3],"data_offsets":[22,28]},)"
      R"("w64":{"dtype":"F64","shape":[1],"data_offsets":[28,36]},)"
      R"("ids":{"dtype":"I32","shape":[2],"data_offsets":[36,44]},)"
      R"("empty":{"dtype":"F32","shape":[0,4],"data_offsets":[44,44]}})";
  std::string data;
  for (uint32_t f : {0x3f800000u, 0xc0200000u, 0x3f000000u, 0x40400000u})
    appendLe(data, f, 4); // 1, -2.5, 0.5, 3
  for (uint16_t h : {0x3f80, 0xc049, 0x0001})
    appendLe(data, h, 2); // 1, -3.140625, 2^-133
  for (uint16_t h : {0x3c00, 0x0001, 0xfc00})
    appendLe(data, h, 2); // 1, 2^-24, -inf
  appendLe(data, 0x3ff8000000000000ull, 8); // 1.5
  appendLe(data, 7, 4);
  appendLe(data, 0xffffffffu, 4); // -1

  Expected<SafetensorsFile> f = openBytes(header, data);
  ASSERT_TRUE(f.isOk()) << f.message();
  ASSERT_EQ(f->tensors().size(), 6u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const TensorInfo *w32 = f->find("w32");
  ASSERT_NE(w32, nullptr);
  EXPECT_EQ(w32->dtype, Dtype::F32);
  EXPECT_EQ(w32->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w32->dataBegin, 0u);
  EXPECT_EQ(w32->dataEnd, 16u);
  EXPECT_EQ(f->find("wf16")->dtype, Dtype::F16);
  EXPECT_EQ(f->find("nope"), nullptr);

  std::vector<float> v(4);
  ASSERT_TRUE(f->readAsFloat32("w32", v.data(), 4).isOk());
  EXPECT_EQ(v, (std::vector<float>{1.0f, -2.5f, 0.5f, 3.0f}));
  v.resize(3);
  ASSERT_TRUE(f->readAsFloat32("wbf", v.data(), 3).isOk());
  EXPECT_EQ(v, (std::vector<float>{1.0f, -3.140625f, 0x1p-133f}));
  ASSERT_TRUE(f->readAsFloat32("wf16", v.data(), 3).isOk());
  EXPECT_EQ(v, (std::vector<float>{1.0f, 0x1p-24f, -std::numeric_limits<float>::infinity()}));
  ASSERT_TRUE(f->readAsFloat32("w64", v.data(), 1).isOk());
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_TRUE(f->readAsFloat32("empty", nullptr, 0).isOk());

  int32_t ids[2];
  ASSERT_TRUE(f->readRaw("ids", ids, sizeof ids).isOk());
  EXPECT_EQ(ids[0], 7);
  EXPECT_EQ(ids[1], -1);
  expectError(f->readAsFloat32("ids", v.data(), 2), {"'ids'", "I32", "does not convert"});
  expectError(f->readAsFloat32("w32", v.data(), 3), {"'w32'", "4 elements", "holds 3"});
  expectError(f->readAsFloat32("nope", v.data(), 1), {"no tensor named 'nope'"});
}

TEST_F(SafetensorsTest, AcceptsUnpaddedHeader) {
  std::string header = R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
  std::string data;
  appendLe(data, 0x40490fdbu, 4); // pi
  writeRaw(path("u.safetensors"), fileBytes(header, data, /*pad=*/false));
  Expected<SafetensorsFile> f = openSafetensors(path("u.safetensors"));
  ASSERT_TRUE(f.isOk()) << f.message();
  float x = 0;
  ASSERT_TRUE(f->readAsFloat32("x", &x, 1).isOk());
  EXPECT_EQ(x, floatOf(0x40490fdb));
  EXPECT_TRUE(f->metadata().empty());
}

//===-- Writing -----------------------------------------------------------===//

TEST_F(SafetensorsTest, RoundTripF32) {
  std::vector<float> w = {1.5f, -0.0f, 1e-40f, std::numeric_limits<float>::infinity(),
                          -3.25e7f, 0.1f};
  std::vector<float> b = {7.0f, 8.0f, 9.0f};
  float scalar = 42.0f;
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "12"}};
  ASSERT_TRUE(writeSafetensors(path("m.safetensors"),
                               {{"layer.weight", Dtype::F32, {2, 3}, w.data()},
                                {"layer.bias", Dtype::F32, {3}, b.data()},
                                {"scale", Dtype::F32, {}, &scalar}},
                               meta)
                  .isOk());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1)
      << "a temporary file was left behind";

  Expected<SafetensorsFile> f = openSafetensors(path("m.safetensors"));
  ASSERT_TRUE(f.isOk()) << f.message();
  EXPECT_EQ(f->metadata(), meta);
  EXPECT_EQ(f->find("layer.weight")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_TRUE(f->find("scale")->shape.empty());
  std::vector<float> got(6);
  ASSERT_TRUE(f->readAsFloat32("layer.weight", got.data(), 6).isOk());
  EXPECT_EQ(std::memcmp(got.data(), w.data(), 6 * sizeof(float)), 0);
  ASSERT_TRUE(f->readAsFloat32("layer.bias", got.data(), 3).isOk());
  EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + 3), b);
  ASSERT_TRUE(f->readAsFloat32("scale", got.data(), 1).isOk());
  EXPECT_EQ(got[0], 42.0f);

  // Header padded with spaces to a multiple of 8; data packed right after it.
  std::string raw = readRaw(path("m.safetensors"));
  uint64_t headerLength = 0;
  std::memcpy(&headerLength, raw.data(), 8);
  EXPECT_EQ(headerLength % 8, 0u);
  std::string header = raw.substr(8, headerLength);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  EXPECT_EQ(raw.size(), 8 + headerLength + (6 + 3 + 1) * 4);
}

TEST_F(SafetensorsTest, RoundTripBf16) {
  // Exact in bf16, then ties and an inexact value.
  std::vector<float> v = {1.0f, -2.0f, 3.140625f, -0.0f,
                          std::numeric_limits<float>::infinity(),
                          1.00390625f,  // 1 + 2^-8: tie, rounds down to even 1.0
                          1.01171875f,  // 1 + 3*2^-8: tie, rounds up to 1.015625
                          0.1f, std::nanf("")};
  std::vector<float> f32 = {5.0f};
  ASSERT_TRUE(writeSafetensors(path("b.safetensors"),
                               {{"a.bf16", Dtype::BF16, {3, 3}, v.data()},
                                {"z.f32", Dtype::F32, {1}, f32.data()}})
                  .isOk());
  Expected<SafetensorsFile> f = openSafetensors(path("b.safetensors"));
  ASSERT_TRUE(f.isOk()) << f.message();
  const TensorInfo *a = f->find("a.bf16");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, Dtype::BF16);
  EXPECT_EQ(a->byteSize(), 18u);
  // Wider dtypes come first so every tensor is aligned to its element size.
  EXPECT_EQ(f->find("z.f32")->dataBegin, 0u);
  EXPECT_EQ(a->dataBegin, 4u);

  std::vector<float> got(9);
  ASSERT_TRUE(f->readAsFloat32("a.bf16", got.data(), 9).isOk());
  std::vector<float> want = {1.0f, -2.0f, 3.140625f, -0.0f,
                             std::numeric_limits<float>::infinity(),
                             1.0f, 1.015625f, 0.10009765625f};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(bitsOf(got[i]), bitsOf(want[i])) << "element " << i;
  EXPECT_TRUE(std::isnan(got[8]));
}

TEST_F(SafetensorsTest, RoundTripF16) {
  // Exact, a tie to even, an inexact value, a subnormal, signed zero, NaN.
  std::vector<float> v = {1.0f, -2.0f, 65504.0f, 1.00048828125f /* 1 + 2^-11 */,
                          0.1f, 0x1p-24f, -0.0f, std::nanf("")};
  std::vector<float> f32 = {5.0f};
  ASSERT_TRUE(writeSafetensors(path("h.safetensors"),
                               {{"a.f16", Dtype::F16, {2, 4}, v.data()},
                                {"z.f32", Dtype::F32, {1}, f32.data()}},
                               {{"format", "pt"}})
                  .isOk());
  Expected<SafetensorsFile> f = openSafetensors(path("h.safetensors"));
  ASSERT_TRUE(f.isOk()) << f.message();
  const TensorInfo *a = f->find("a.f16");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, Dtype::F16);
  EXPECT_EQ(a->byteSize(), 16u);
  EXPECT_EQ(a->dataBegin, 4u); // after the wider F32
  std::vector<uint16_t> raw(8);
  ASSERT_TRUE(f->readRaw("a.f16", raw.data(), 16).isOk());
  const std::vector<uint16_t> want = {0x3c00, 0xc000, 0x7bff, 0x3c00,
                                      0x2e66, 0x0001, 0x8000, 0x7e00};
  EXPECT_EQ(raw, want);
}

TEST_F(SafetensorsTest, WriterRefusesOverflowAndKeepsOldFile) {
  writeRaw(path("o.safetensors"), "previous content");
  std::vector<float> fine = {1.0f}, big = {3.0f, -1e5f};
  mt::Status s = writeSafetensors(path("o.safetensors"), {{"fine", Dtype::F16, {1}, fine.data()},
                                                      {"lm_head.weight", Dtype::F16, {2},
                                                       big.data()}});
  expectError(s, {path("o.safetensors"), "tensor 'lm_head.weight'", "largest magnitude 100000",
                  "float16's largest finite value 65504"});
  EXPECT_EQ(readRaw(path("o.safetensors")), "previous content");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
  // The same values fit bf16.
  EXPECT_TRUE(writeSafetensors(path("o.safetensors"),
                               {{"lm_head.weight", Dtype::BF16, {2}, big.data()}})
                  .isOk());
}

TEST_F(SafetensorsTest, WriterRejectsBadTensorsAndKeepsOldFile) {
  writeRaw(path("w.safetensors"), "previous content");
  float x[2] = {1, 2};
  auto write = [&](std::vector<TensorToWrite> ts) {
    return writeSafetensors(path("w.safetensors"), ts);
  };
  expectError(write({{"a", Dtype::F32, {1}, x}, {"a", Dtype::F32, {1}, x}}),
              {"tensor 'a'", "given twice"});
  expectError(write({{"d", Dtype::F64, {2}, x}}), {"tensor 'd'", "cannot write dtype F64"});
  expectError(write({{"n", Dtype::F32, {2}, nullptr}}), {"tensor 'n'", "data is null"});
  expectError(write({{"s", Dtype::F32, {-2}, x}}), {"tensor 's'", "invalid shape [-2]"});
  expectError(write({{"__metadata__", Dtype::F32, {1}, x}}), {"reserved"});
  expectError(writeSafetensors(path("w.safetensors"), {{"ok", Dtype::F32, {1}, x}},
                               {{"key", "\xff"}}),
              {path("w.safetensors"), "UTF-8"});
  EXPECT_EQ(readRaw(path("w.safetensors")), "previous content");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

//===-- Rejected inputs ---------------------------------------------------===//

constexpr const char *kTwoF32 = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":)";

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthField) {
  writeRaw(path("t.safetensors"), "abcde");
  expectError(openSafetensors(path("t.safetensors")),
              {path("t.safetensors"), "truncated", "5 bytes"});
}

TEST_F(SafetensorsTest, RejectsHeaderLengthLargerThanFile) {
  std::string bytes;
  appendLe(bytes, 1000, 8);
  writeRaw(path("t.safetensors"), bytes + "{}      ");
  expectError(openSafetensors(path("t.safetensors")),
              {path("t.safetensors"), "header length 1000 is larger than the file"});
}

TEST_F(SafetensorsTest, RejectsMalformedJson) {
  expectError(openBytes(R"({"a":{"dtype":"F32",)", ""),
              {path("t.safetensors"), "malformed JSON"});
  expectError(openBytes("[1, 2]", ""), {"header must be an object"});
  expectError(openBytes("", ""), {"malformed JSON"});
}

TEST_F(SafetensorsTest, RejectsTensorNamedTwice) {
  std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expectError(openBytes(h, std::string(8, '\0')), {"duplicate key 'a'"});
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  expectError(openBytes(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
                        std::string(4, '\0')),
              {path("t.safetensors"), "tensor 'w'", "unknown dtype \"F8_E4M3\"",
               "F32, F16, BF16, F64, I32, I64"});
}

TEST_F(SafetensorsTest, RejectsMalformedTensorEntries) {
  expectError(openBytes(R"({"w":{"dtype":"F32","shape":[1]}})", std::string(4, '\0')),
              {"tensor 'w'", "dtype, shape and data_offsets"});
  expectError(openBytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                        std::string(4, '\0')),
              {"tensor 'w'", "shape must hold non-negative integers"});
  expectError(openBytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
                        std::string(4, '\0')),
              {"tensor 'w'", "end before they begin"});
  expectError(openBytes(R"({"__metadata__":{"k":1}})", ""),
              {"__metadata__ value of 'k' must be a string"});
}

TEST_F(SafetensorsTest, RejectsOffsetsNotMatchingShape) {
  expectError(openBytes(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})",
                        std::string(8, '\0')),
              {path("t.safetensors"), "tensor 'w'", "span 8 bytes", "[3] of BF16 needs 6"});
}

TEST_F(SafetensorsTest, RejectsOffsetsOutsideDataArea) {
  expectError(openBytes(std::string(kTwoF32) + "[400,404]}}", std::string(8, '\0')),
              {path("t.safetensors"), "tensor 'b'", "[400, 404]",
               "outside the data area, which has 8 bytes"});
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expectError(openBytes(h, std::string(12, '\0')),
              {"tensor 'b'", "[4, 12] overlap tensor 'a' [0, 8]"});
}

TEST_F(SafetensorsTest, RejectsGapsAndUncoveredBytes) {
  expectError(openBytes(std::string(kTwoF32) + "[8,12]}}", std::string(12, '\0')),
              {"tensor 'b'", "gap of 4 unused bytes"});
  expectError(openBytes(std::string(kTwoF32) + "[4,8]}}", std::string(6, '\0')),
              {"tensor 'b'", "outside the data area"});
  expectError(openBytes(std::string(kTwoF32) + "[4,8]}}", std::string(13, '\0')),
              {"5 bytes after the last tensor"});
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  std::vector<float> v(16, 1.0f);
  ASSERT_TRUE(writeSafetensors(path("t.safetensors"),
                               {{"first", Dtype::F32, {16}, v.data()},
                                {"second", Dtype::BF16, {16}, v.data()}})
                  .isOk());
  ASSERT_TRUE(openSafetensors(path("t.safetensors")).isOk());
  fs::resize_file(path("t.safetensors"), fs::file_size(path("t.safetensors")) - 3);
  expectError(openSafetensors(path("t.safetensors")),
              {path("t.safetensors"), "tensor 'second'", "outside the data area", "truncated"});
}

TEST_F(SafetensorsTest, RejectsMissingFile) {
  expectError(openSafetensors(path("absent.safetensors")),
              {path("absent.safetensors"), "cannot open"});
}

} // namespace
