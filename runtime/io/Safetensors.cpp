// Reading safetensors files (strict header validation, tensors as fp32),
// sharded checkpoint directories, and the fp16/bf16 conversions.
#include "runtime/io/Safetensors.h"

#include "runtime/support/AtomicFile.h"
#include "runtime/support/CheckedMath.h"
#include "runtime/support/FileKind.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// The format is little-endian; reading F32 straight into the caller's buffer
// and the bit-level conversions below rely on the host being so too.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace mt::io {

namespace detail {
/// Keeps the descriptor open while any SafetensorsFile copy refers to it.
struct OpenFile {
  explicit OpenFile(int fd) : fd(fd) {}
  ~OpenFile() { ::close(fd); }
  OpenFile(const OpenFile &) = delete;
  OpenFile &operator=(const OpenFile &) = delete;
  int fd;
};
} // namespace detail

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Thrown inside this file only and turned into a Status at the API boundary.
struct FormatError {
  std::string message;
};
[[noreturn]] void fail(std::string message) { throw FormatError{std::move(message)}; }

/// Header lengths beyond this are corrupt, not large: the reference reader
/// uses the same bound, and it stops us allocating gigabytes for a bad length.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
/// Elements converted per pread in readAsFloat32.
constexpr size_t kChunkElements = size_t(1) << 16;

struct DtypeEntry {
  Dtype dtype;
  const char *name;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {Dtype::F32, "F32", 4}, {Dtype::F16, "F16", 2}, {Dtype::BF16, "BF16", 2},
    {Dtype::F64, "F64", 8}, {Dtype::I32, "I32", 4}, {Dtype::I64, "I64", 8}};

std::string knownDtypes() {
  std::string out;
  for (const DtypeEntry &e : kDtypes)
    out += (out.empty() ? "" : ", ") + std::string(e.name);
  return out;
}

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string rangeString(const TensorInfo &t) {
  // Appended piecewise: `"[" + std::to_string(...)` trips GCC 12's false
  // -Wrestrict at -O3.
  std::string out = "[";
  out += std::to_string(t.dataBegin);
  out += ", ";
  out += std::to_string(t.dataEnd);
  return out + "]";
}

Status preadAll(const detail::OpenFile &file, void *dst, size_t n, uint64_t offset,
                const std::string &path) {
  auto *p = static_cast<char *>(dst);
  while (n) {
    ssize_t r = ::pread(file.fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return Status::error(path + ": read failed: " + std::strerror(errno));
    if (r == 0)
      return Status::error(path + ": unexpected end of file at byte " +
                           std::to_string(offset) + " (truncated after opening?)");
    p += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
  return Status::ok();
}

/// Parses JSON, rejecting duplicate object keys, which nlohmann would
/// otherwise resolve silently by keeping the last one.
json parseStrictJson(const std::string &text, const std::string &what) {
  std::vector<std::set<std::string>> openObjects;
  std::optional<std::string> duplicate;
  auto onEvent = [&](int, json::parse_event_t event, json &parsed) {
    if (event == json::parse_event_t::object_start)
      openObjects.emplace_back();
    else if (event == json::parse_event_t::object_end)
      openObjects.pop_back();
    else if (event == json::parse_event_t::key && !duplicate &&
             !openObjects.back().insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  json root;
  try {
    root = json::parse(text, onEvent);
  } catch (const json::parse_error &e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    std::string detail = e.what();
    size_t tagEnd = detail.find("] ");
    fail(what + " is malformed JSON: " +
         (tagEnd == std::string::npos ? detail : detail.substr(tagEnd + 2)));
  }
  if (duplicate)
    fail(what + " has duplicate key '" + *duplicate + "'");
  return root;
}

/// One non-negative integer of a header array, as uint64.
uint64_t headerInteger(const json &v, const std::string &where, const char *field) {
  if (!v.is_number_unsigned())
    fail(where + ": " + field + " must hold non-negative integers, got " + v.dump());
  return v.get<uint64_t>();
}

TensorInfo parseTensor(const std::string &path, const std::string &name,
                       const json &v) {
  std::string where = path + ": tensor '" + name + "'";
  if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
      !v.contains("data_offsets"))
    fail(where + ": expected an object with dtype, shape and data_offsets, got " +
         v.dump());
  TensorInfo t;
  t.name = name;
  const json &dtype = v["dtype"];
  std::optional<Dtype> parsed =
      dtype.is_string() ? parseDtype(dtype.get<std::string>()) : std::nullopt;
  if (!parsed)
    fail(where + ": unknown dtype " + dtype.dump() + " (known: " + knownDtypes() + ")");
  t.dtype = *parsed;

  const json &shape = v["shape"];
  if (!shape.is_array())
    fail(where + ": shape must be an array, got " + shape.dump());
  for (const json &d : shape) {
    uint64_t dim = headerInteger(d, where, "shape");
    if (dim > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(where + ": shape dimension " + std::to_string(dim) + " is too large");
    t.shape.push_back(int64_t(dim));
  }
  const json &offsets = v["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(where + ": data_offsets must be [begin, end], got " + offsets.dump());
  t.dataBegin = headerInteger(offsets[0], where, "data_offsets");
  t.dataEnd = headerInteger(offsets[1], where, "data_offsets");
  if (t.dataBegin > t.dataEnd)
    fail(where + ": data_offsets " + rangeString(t) + " end before they begin");

  std::optional<uint64_t> bytes = tensorByteSize(t.dtype, t.shape);
  if (!bytes)
    fail(where + ": shape " + shapeString(t.shape) + " overflows 64-bit sizes");
  if (*bytes != t.byteSize())
    fail(where + ": data_offsets " + rangeString(t) + " span " +
         std::to_string(t.byteSize()) + " bytes but shape " + shapeString(t.shape) +
         " of " + dtypeName(t.dtype) + " needs " + std::to_string(*bytes));
  return t;
}

std::map<std::string, std::string> parseMetadata(const std::string &path,
                                                 const json &v) {
  if (!v.is_object())
    fail(path + ": __metadata__ must be an object, got " + v.dump());
  std::map<std::string, std::string> out;
  for (const auto &[key, value] : v.items()) {
    if (!value.is_string())
      fail(path + ": __metadata__ value of '" + key + "' must be a string, got " +
           value.dump());
    out[key] = value.get<std::string>();
  }
  return out;
}

/// Sorts `tensors` by offset and checks they tile [0, dataSize) exactly, as
/// the reference implementation requires: a gap or overlap means a corrupt
/// header, and bytes missing at the end mean a truncated file.
void checkLayout(const std::string &path, std::vector<TensorInfo> &tensors,
                 uint64_t dataSize) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo &a, const TensorInfo &b) {
    return std::tie(a.dataBegin, a.dataEnd, a.name) < std::tie(b.dataBegin, b.dataEnd, b.name);
  });
  uint64_t pos = 0;
  const TensorInfo *prev = nullptr;
  for (const TensorInfo &t : tensors) {
    std::string where = path + ": tensor '" + t.name + "'";
    if (t.dataEnd > dataSize)
      fail(where + ": data_offsets " + rangeString(t) +
           " lie outside the data area, which has " + std::to_string(dataSize) +
           " bytes (file truncated?)");
    if (t.dataBegin < pos)
      fail(where + ": data_offsets " + rangeString(t) + " overlap tensor '" +
           prev->name + "' " + rangeString(*prev));
    if (t.dataBegin > pos)
      fail(where + ": data_offsets " + rangeString(t) + " leave a gap of " +
           std::to_string(t.dataBegin - pos) + " unused bytes before it");
    pos = t.dataEnd;
    prev = &t;
  }
  if (pos != dataSize)
    fail(path + ": " + std::to_string(dataSize - pos) +
         " bytes after the last tensor are not covered by any data_offsets");
}

void parseHeader(const std::string &path, const json &header,
                 std::vector<TensorInfo> &tensors,
                 std::map<std::string, std::string> &metadata) {
  if (!header.is_object())
    fail(path + ": JSON header must be an object, got " + header.type_name());
  for (const auto &[key, value] : header.items()) {
    if (key == "__metadata__")
      metadata = parseMetadata(path, value);
    else
      tensors.push_back(parseTensor(path, key, value));
  }
}

void convertChunk(Dtype dtype, const unsigned char *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (dtype == Dtype::F64) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      dst[i] = static_cast<float>(d);
      continue;
    }
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = dtype == Dtype::BF16 ? bf16ToFloat(h) : fp16ToFloat(h);
  }
}

} // namespace

const char *dtypeName(Dtype dtype) {
  for (const DtypeEntry &e : kDtypes)
    if (e.dtype == dtype)
      return e.name;
  return "?";
}

size_t dtypeSize(Dtype dtype) {
  for (const DtypeEntry &e : kDtypes)
    if (e.dtype == dtype)
      return e.size;
  return 0;
}

std::optional<Dtype> parseDtype(const std::string &name) {
  for (const DtypeEntry &e : kDtypes)
    if (name == e.name)
      return e.dtype;
  return std::nullopt;
}

std::optional<uint64_t> tensorByteSize(Dtype dtype, const std::vector<int64_t> &shape) {
  auto elements = checkedProduct(shape);
  return elements ? checkedMul<uint64_t>(*elements, dtypeSize(dtype)) : std::nullopt;
}

float bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

float fp16ToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in fp32 (a normal number).
    float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) // inf, or NaN keeping its payload
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

uint16_t floatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  // Rounding a NaN could carry into the exponent and give inf; keep it NaN.
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return uint16_t((bits >> 16) | 0x0040);
  bits += 0x7fffu + ((bits >> 16) & 1); // ties go to the even result
  return uint16_t(bits >> 16);
}

uint16_t floatToFp16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) // NaN: quiet, the payload's top bits kept
    return uint16_t(sign | 0x7e00 | ((magnitude >> 13) & 0x3ff));
  if (magnitude >= 0x47800000u) // 2^16 and above, inf included: inf
    return uint16_t(sign | 0x7c00);
  if (magnitude < 0x38800000u) { // below 2^-14: a subnormal (or zero)
    // Adding 0.5 makes the fp32 hardware round m x 2^-24 to an integer
    // count of 2^-24 in its mantissa, nearest even; exact below 2^-14.
    const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
    return uint16_t(sign | (std::bit_cast<uint32_t>(shifted) - 0x3f000000u));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to
  // nearest even; a carry into the exponent is the right next value (65520
  // and above become inf, 0x7c00).
  uint32_t rebased = magnitude - ((127u - 15u) << 23);
  rebased += 0xfffu + ((rebased >> 13) & 1);
  return uint16_t(sign | (rebased >> 13));
}

uint16_t narrowFloat(Dtype dtype, float value) {
  return dtype == Dtype::F16 ? floatToFp16(value) : floatToBf16(value);
}

Status checkNarrowing(const std::string &name, Dtype dtype, const float *values, uint64_t count) {
  if (dtype != Dtype::BF16 && dtype != Dtype::F16)
    return Status::ok();
  float largest = 0; // finite magnitudes only: inf and NaN stay what they are
  for (uint64_t i = 0; i < count; ++i)
    if (std::isfinite(values[i]))
      largest = std::max(largest, std::fabs(values[i]));
  const uint16_t narrowed = narrowFloat(dtype, largest);
  if ((narrowed & 0x7fff) != (dtype == Dtype::F16 ? 0x7c00 : 0x7f80))
    return Status::ok();
  char text[160];
  std::snprintf(text, sizeof(text), "its largest magnitude %.9g exceeds %s's largest finite "
                "value %.9g and would be written as infinity",
                double(largest), dtype == Dtype::F16 ? "float16" : "bfloat16",
                dtype == Dtype::F16 ? 65504.0 : double(bf16ToFloat(0x7f7f)));
  return Status::error("tensor '" + name + "': " + text);
}

uint64_t TensorInfo::numElements() const {
  uint64_t n = 1;
  for (int64_t d : shape)
    n *= uint64_t(d);
  return n;
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Expected<SafetensorsFile> openSafetensors(const std::string &path) try {
  // O_NONBLOCK: opening a FIFO would wait for a writer (fstat refuses it).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    fail(path + ": cannot open: " + std::strerror(errno));
  auto file = std::make_shared<detail::OpenFile>(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0)
    fail(path + ": cannot stat: " + std::strerror(errno));
  if (std::string what = notARegularFile(st.st_mode); !what.empty())
    fail(path + ": " + what + ", not a safetensors file");
  uint64_t fileSize = uint64_t(st.st_size);
  if (fileSize < 8)
    fail(path + ": file is truncated: " + std::to_string(fileSize) +
         " bytes, too short for the 8-byte header length");

  unsigned char lengthBytes[8];
  if (Status s = preadAll(*file, lengthBytes, 8, 0, path); !s)
    fail(s.message());
  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i)
    headerLength = (headerLength << 8) | lengthBytes[i];
  if (headerLength > fileSize - 8)
    fail(path + ": header length " + std::to_string(headerLength) +
         " is larger than the file, which has " + std::to_string(fileSize - 8) +
         " bytes after the length field");
  if (headerLength > kMaxHeaderBytes)
    fail(path + ": header length " + std::to_string(headerLength) +
         " exceeds the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");

  std::string text(headerLength, '\0');
  if (Status s = preadAll(*file, text.data(), text.size(), 8, path); !s)
    fail(s.message());
  json header = parseStrictJson(text, path + ": header");

  SafetensorsFile f;
  parseHeader(path, header, f.tensors_, f.metadata_);
  checkLayout(path, f.tensors_, fileSize - 8 - headerLength);
  for (size_t i = 0; i < f.tensors_.size(); ++i)
    f.index_.emplace(f.tensors_[i].name, i);
  f.path_ = path;
  f.dataStart_ = 8 + headerLength;
  f.file_ = std::move(file);
  return f;
} catch (const FormatError &e) {
  return Status::error(e.message);
} catch (const std::exception &e) {
  return Status::error(path + ": " + e.what());
}

Status SafetensorsFile::readRaw(const std::string &name, void *dst,
                                size_t byteCount) const {
  const TensorInfo *t = find(name);
  if (!t)
    return Status::error(path_ + ": no tensor named '" + name + "'");
  if (byteCount != t->byteSize())
    return Status::error(path_ + ": tensor '" + name + "' has " +
                         std::to_string(t->byteSize()) + " bytes, but the destination holds " +
                         std::to_string(byteCount));
  return preadAll(*file_, dst, byteCount, dataStart_ + t->dataBegin, path_);
}

Status SafetensorsFile::readAsFloat32(const std::string &name, float *dst,
                                      size_t count) const {
  const TensorInfo *t = find(name);
  if (!t)
    return Status::error(path_ + ": no tensor named '" + name + "'");
  if (count != t->numElements())
    return Status::error(path_ + ": tensor '" + name + "' has " +
                         std::to_string(t->numElements()) + " elements (shape " +
                         shapeString(t->shape) + "), but the destination holds " +
                         std::to_string(count));
  if (t->dtype == Dtype::I32 || t->dtype == Dtype::I64)
    return Status::error(path_ + ": tensor '" + name + "' has dtype " +
                         dtypeName(t->dtype) +
                         ", which does not convert to fp32 (F32, F16, BF16 and F64 do)");
  if (t->dtype == Dtype::F32)
    return preadAll(*file_, dst, count * 4, dataStart_ + t->dataBegin, path_);

  size_t elementSize = dtypeSize(t->dtype);
  std::vector<unsigned char> buffer(std::min(count, kChunkElements) * elementSize);
  for (size_t done = 0; done < count;) {
    size_t n = std::min(kChunkElements, count - done);
    uint64_t offset = dataStart_ + t->dataBegin + done * elementSize;
    if (Status s = preadAll(*file_, buffer.data(), n * elementSize, offset, path_); !s)
      return s;
    convertChunk(t->dtype, buffer.data(), dst + done, n);
    done += n;
  }
  return Status::ok();
}

//===-- Sharded checkpoints ----------------------------------------------===//

namespace {

/// Adds `file` as a shard, rejecting a tensor some earlier shard already has.
void addShard(SafetensorsFile file, std::vector<SafetensorsFile> &shards,
              std::unordered_map<std::string, size_t> &shardIndex,
              const std::string &dir) {
  for (const TensorInfo &t : file.tensors()) {
    auto [it, inserted] = shardIndex.emplace(t.name, shards.size());
    if (!inserted)
      fail(dir + ": tensor '" + t.name + "' appears in both " +
           shards[it->second].path() + " and " + file.path());
  }
  shards.push_back(std::move(file));
}

SafetensorsFile openOrFail(const std::string &path) {
  Expected<SafetensorsFile> f = openSafetensors(path);
  if (!f)
    fail(f.message());
  return std::move(*f);
}

/// weight_map of an index file: tensor name -> shard file name.
std::map<std::string, std::string> readWeightMap(const std::string &indexPath) {
  if (std::string what = notARegularFile(indexPath); !what.empty())
    fail(indexPath + ": " + what + ", not a JSON file");
  std::ifstream in(indexPath, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    fail(indexPath + ": cannot read: " + std::strerror(errno));
  json root = parseStrictJson(text.str(), indexPath);
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object())
    fail(indexPath + ": expected an object with a \"weight_map\" object");
  std::map<std::string, std::string> weightMap;
  for (const auto &[name, file] : root["weight_map"].items()) {
    if (!file.is_string())
      fail(indexPath + ": weight_map entry '" + name + "' must be a file name, got " +
           file.dump());
    weightMap[name] = file.get<std::string>();
  }
  return weightMap;
}

/// The index and the shards must agree exactly: every listed tensor is in the
/// file the index names, and every shard tensor is listed.
void openIndexed(const std::string &dir, const std::string &indexPath,
                 std::vector<SafetensorsFile> &shards,
                 std::unordered_map<std::string, size_t> &shardIndex) {
  std::map<std::string, std::string> weightMap = readWeightMap(indexPath);
  std::map<std::string, std::string> firstTensorOf; // shard file -> a tensor
  for (const auto &[name, file] : weightMap)
    firstTensorOf.emplace(file, name);
  std::vector<std::string> shardNames;
  for (const auto &[file, name] : firstTensorOf) {
    fs::path p = fs::path(dir) / file;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      fail(indexPath + ": tensor '" + name + "' maps to missing file '" + file + "'");
    addShard(openOrFail(p.string()), shards, shardIndex, dir);
    shardNames.push_back(file);
  }
  for (const auto &[name, file] : weightMap) {
    auto it = shardIndex.find(name);
    if (it == shardIndex.end() || shardNames[it->second] != file)
      fail(indexPath + ": tensor '" + name + "' maps to '" + file +
           "', which has no tensor of that name");
  }
  for (const auto &[name, shard] : shardIndex)
    if (!weightMap.count(name))
      fail(indexPath + ": tensor '" + name + "' of shard '" + shardNames[shard] +
           "' is not listed in the weight_map");
}

} // namespace

const SafetensorsFile *SafetensorsCheckpoint::shardOf(const std::string &name) const {
  auto it = shardIndex_.find(name);
  return it == shardIndex_.end() ? nullptr : &shards_[it->second];
}

const TensorInfo *SafetensorsCheckpoint::find(const std::string &name) const {
  const SafetensorsFile *shard = shardOf(name);
  return shard ? shard->find(name) : nullptr;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto &entry : shardIndex_)
    out.push_back(entry.first);
  std::sort(out.begin(), out.end());
  return out;
}

Status SafetensorsCheckpoint::readAsFloat32(const std::string &name, float *dst,
                                            size_t count) const {
  const SafetensorsFile *shard = shardOf(name);
  if (!shard)
    return Status::error(dir_ + ": no tensor named '" + name + "' in the checkpoint");
  return shard->readAsFloat32(name, dst, count);
}

Expected<SafetensorsCheckpoint> openCheckpoint(const std::string &dir) try {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(dir + ": not a checkpoint directory" + interruptedReplaceHint(dir));
  SafetensorsCheckpoint ckpt;
  ckpt.dir_ = dir;
  fs::path indexPath = fs::path(dir) / "model.safetensors.index.json";
  fs::path single = fs::path(dir) / "model.safetensors";
  std::vector<std::string> files;
  if (fs::exists(single, ec)) {
    files.push_back(single.string());
  } else if (fs::exists(indexPath, ec)) {
    openIndexed(dir, indexPath.string(), ckpt.shards_, ckpt.shardIndex_);
    return ckpt;
  } else {
    for (const fs::directory_entry &e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty())
    fail(dir + ": no model.safetensors.index.json, model.safetensors or "
               "*.safetensors file");
  // save_pretrained's shards are read through their index only: without
  // it they may be of two saves (one interrupted while it replaced them).
  for (const std::string &f : files)
    if (isShardName(fs::path(f).filename().string()))
      fail(dir + ": " + fs::path(f).filename().string() + " is a shard of a sharded save, "
           "but model.safetensors.index.json is missing: a save that was interrupted (its "
           "shards may be of two saves) or an incomplete copy; save or copy the model again");
  for (const std::string &f : files)
    addShard(openOrFail(f), ckpt.shards_, ckpt.shardIndex_, dir);
  return ckpt;
} catch (const FormatError &e) {
  return Status::error(e.message);
} catch (const std::exception &e) {
  return Status::error(dir + ": " + e.what());
}

} // namespace mt::io
