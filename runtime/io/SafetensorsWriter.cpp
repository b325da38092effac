// Writing safetensors files (F32, and BF16 or F16 rounded from fp32) through an
// atomic rename, so a crash never leaves a half-written file under `path`.
#include "runtime/io/Safetensors.h"

#include "runtime/support/AtomicFile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace mt::io {
namespace {

/// Thrown inside this file only and turned into a Status at the API boundary.
struct FormatError {
  std::string message;
};
[[noreturn]] void fail(std::string message) { throw FormatError{std::move(message)}; }

/// Elements narrowed to BF16 or F16 per write.
constexpr uint64_t kChunkElements = uint64_t(1) << 16;

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

struct PlannedTensor {
  const TensorToWrite *tensor;
  uint64_t numElements;
  uint64_t bytes;
  uint64_t begin = 0; ///< offset in the data area, set once sorted
};

/// Validates `tensors` and assigns contiguous offsets: wider dtypes first, so
/// each tensor starts aligned to its element size, then by name.
std::vector<PlannedTensor> planLayout(const std::string &path,
                                      const std::vector<TensorToWrite> &tensors) {
  std::vector<PlannedTensor> plan;
  std::set<std::string> names;
  for (const TensorToWrite &t : tensors) {
    std::string where = path + ": tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__")
      fail(where + ": name is reserved or empty");
    if (!names.insert(t.name).second)
      fail(where + ": name given twice");
    if (t.dtype != Dtype::F32 && t.dtype != Dtype::BF16 && t.dtype != Dtype::F16)
      fail(where + ": cannot write dtype " + dtypeName(t.dtype) + " (F32, BF16 or F16)");
    std::optional<uint64_t> bytes = tensorByteSize(t.dtype, t.shape);
    if (!bytes)
      fail(where + ": invalid shape " + shapeString(t.shape));
    uint64_t n = *bytes / dtypeSize(t.dtype);
    if (n && !t.data)
      fail(where + ": data is null");
    // Before anything is written: a value that would turn infinite is an error.
    if (Status s = checkNarrowing(t.name, t.dtype, t.data, n); !s)
      fail(path + ": " + s.message());
    plan.push_back({&t, n, *bytes});
  }
  std::sort(plan.begin(), plan.end(), [](const PlannedTensor &a, const PlannedTensor &b) {
    size_t sa = dtypeSize(a.tensor->dtype), sb = dtypeSize(b.tensor->dtype);
    return sa != sb ? sa > sb : a.tensor->name < b.tensor->name;
  });
  uint64_t pos = 0;
  for (PlannedTensor &p : plan) {
    p.begin = pos;
    pos += p.bytes;
  }
  return plan;
}

/// The header text, padded with spaces so the data area starts 8-aligned.
std::string buildHeader(const std::vector<PlannedTensor> &plan,
                        const std::map<std::string, std::string> &metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty())
    header["__metadata__"] = metadata;
  for (const PlannedTensor &p : plan)
    header[p.tensor->name] = {{"dtype", dtypeName(p.tensor->dtype)},
                              {"shape", p.tensor->shape},
                              {"data_offsets", {p.begin, p.begin + p.bytes}}};
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return text;
}

void writeTensorData(std::ostream &os, const PlannedTensor &p) {
  const TensorToWrite &t = *p.tensor;
  if (t.dtype == Dtype::F32) {
    os.write(reinterpret_cast<const char *>(t.data), std::streamsize(p.numElements * 4));
    return;
  }
  std::vector<uint16_t> chunk(std::min<uint64_t>(p.numElements, kChunkElements));
  for (uint64_t done = 0; done < p.numElements;) {
    size_t n = size_t(std::min<uint64_t>(kChunkElements, p.numElements - done));
    for (size_t i = 0; i < n; ++i)
      chunk[i] = narrowFloat(t.dtype, t.data[done + i]);
    os.write(reinterpret_cast<const char *>(chunk.data()), std::streamsize(n * 2));
    done += n;
  }
}

} // namespace

Status writeSafetensors(const std::string &path,
                        const std::vector<TensorToWrite> &tensors,
                        const std::map<std::string, std::string> &metadata) try {
  std::vector<PlannedTensor> plan = planLayout(path, tensors);
  std::string header = buildHeader(plan, metadata);
  return writeFileAtomically(path, [&](std::ostream &os) {
    unsigned char length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * i));
    os.write(reinterpret_cast<const char *>(length), 8);
    os.write(header.data(), std::streamsize(header.size()));
    for (const PlannedTensor &p : plan)
      writeTensorData(os, p);
    return Status::ok();
  });
} catch (const FormatError &e) {
  return Status::error(e.message);
} catch (const std::exception &e) {
  // e.g. a name or metadata value that is not valid UTF-8 (json::type_error)
  return Status::error(path + ": " + e.what());
}

} // namespace mt::io
