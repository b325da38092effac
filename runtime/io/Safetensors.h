// Reading and writing safetensors files and sharded Hugging Face checkpoints
// (model.safetensors.index.json), with fp16/bf16 <-> fp32 conversion.
#ifndef MT_RUNTIME_IO_SAFETENSORS_H
#define MT_RUNTIME_IO_SAFETENSORS_H

#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mt::io {

/// The element types accepted in a header. Only the floating-point ones
/// convert to fp32; I32/I64 can be read raw.
enum class Dtype { F32, F16, BF16, F64, I32, I64 };

const char *dtypeName(Dtype dtype);
size_t dtypeSize(Dtype dtype);
std::optional<Dtype> parseDtype(const std::string &name);
/// Bytes of a tensor of `shape`; nullopt if a dimension is negative or the
/// size overflows 64 bits.
std::optional<uint64_t> tensorByteSize(Dtype dtype, const std::vector<int64_t> &shape);

/// Exact widening conversions (bf16/fp16 values are all representable in fp32).
float bf16ToFloat(uint16_t bits);
float fp16ToFloat(uint16_t bits);
/// Round-to-nearest-even narrowing; NaN stays a (quiet) NaN of the same sign.
uint16_t floatToBf16(float value);
/// Round-to-nearest-even narrowing to IEEE binary16: magnitudes below 2^-14
/// become subnormals (or zero, keeping the sign), those of 65520 and more
/// round to infinity; NaN stays a quiet NaN of the same sign with the top
/// bits of its payload.
uint16_t floatToFp16(float value);
/// The bits `value` narrows to in `dtype` (BF16 or F16, round to nearest
/// even): floatToBf16 or floatToFp16.
uint16_t narrowFloat(Dtype dtype, float value);
/// Checks that narrowing `count` values to `dtype` (BF16 or F16; F32 passes)
/// makes no finite value infinite. The error names `name`, its largest
/// finite magnitude and the dtype's largest finite value (F16: 65504).
Status checkNarrowing(const std::string &name, Dtype dtype, const float *values, uint64_t count);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  /// Byte range [dataBegin, dataEnd) relative to the start of the data area,
  /// i.e. the header's data_offsets.
  uint64_t dataBegin = 0;
  uint64_t dataEnd = 0;

  uint64_t numElements() const;
  uint64_t byteSize() const { return dataEnd - dataBegin; }
};

namespace detail {
struct OpenFile;
} // namespace detail

/// An opened, fully validated safetensors file. Tensor data is read on
/// demand with pread, so a value can be shared by threads that read at once;
/// the file stays open (and readable even if replaced on disk) while any copy
/// of it lives.
class SafetensorsFile {
public:
  const std::string &path() const { return path_; }
  /// Tensors in the order of their data (ascending offsets).
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;
  /// The optional `__metadata__` string map.
  const std::map<std::string, std::string> &metadata() const { return metadata_; }

  /// Converts tensor `name` to fp32 into `dst`, which has room for `count`
  /// elements; `count` must equal the tensor's element count.
  Status readAsFloat32(const std::string &name, float *dst, size_t count) const;
  /// Copies the tensor's bytes unconverted (little-endian, as stored);
  /// `byteCount` must equal its byte size.
  Status readRaw(const std::string &name, void *dst, size_t byteCount) const;

private:
  friend Expected<SafetensorsFile> openSafetensors(const std::string &path);
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t dataStart_ = 0;
  std::shared_ptr<const detail::OpenFile> file_;
};

/// Opens and validates `path`: header length within the file, a JSON object
/// header, known dtypes, data_offsets that match shape * dtype size and tile
/// the data area exactly (no overlap, gap, or bytes past the file end).
Expected<SafetensorsFile> openSafetensors(const std::string &path);

/// The tensors of a checkpoint directory, possibly split over several files.
class SafetensorsCheckpoint {
public:
  const std::vector<SafetensorsFile> &shards() const { return shards_; }
  const TensorInfo *find(const std::string &name) const;
  /// The shard that holds `name`, or null.
  const SafetensorsFile *shardOf(const std::string &name) const;
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  Status readAsFloat32(const std::string &name, float *dst, size_t count) const;

private:
  friend Expected<SafetensorsCheckpoint> openCheckpoint(const std::string &dir);
  std::string dir_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, size_t> shardIndex_;
};

/// Opens `dir/model.safetensors` if it exists, else
/// `dir/model.safetensors.index.json` and the shards it names, else every
/// `*.safetensors` in `dir` (transformers' from_pretrained order: the single
/// file wins over an index beside it).
/// A tensor that appears in two shards, an index entry whose file or tensor
/// is missing, a shard tensor the index does not list, and a shard named as
/// save_pretrained names them (isShardName) with no index are errors.
Expected<SafetensorsCheckpoint> openCheckpoint(const std::string &dir);

struct TensorToWrite {
  std::string name;
  Dtype dtype = Dtype::F32; ///< F32, BF16 or F16 (rounded from `data`: narrowFloat)
  std::vector<int64_t> shape;
  const float *data = nullptr; ///< product(shape) values
};

/// Writes a safetensors file through writeFileAtomically (in
/// SafetensorsWriter.cpp). Tensors are laid out contiguously, wider dtypes
/// first then by name, so every tensor starts at a multiple of its element
/// size; the header is padded with spaces to a multiple of 8 bytes. A BF16
/// or F16 tensor with a finite value that would round to infinity is
/// refused before anything is written (checkNarrowing).
Status writeSafetensors(const std::string &path,
                        const std::vector<TensorToWrite> &tensors,
                        const std::map<std::string, std::string> &metadata = {});

/// The shards transformers' save_pretrained makes of `tensors`, in order
/// (huggingface_hub's split_state_dict_into_shards_factory): tensors go into
/// the current shard until the next would take it past `maxShardBytes`; a
/// tensor larger than that gets a shard of its own (placed before the one
/// being filled). Each shard lists indices into `tensors`.
std::vector<std::vector<size_t>> planShards(const std::vector<TensorToWrite> &tensors,
                                            uint64_t maxShardBytes);

/// Whether `name` is a shard's name as save_pretrained and
/// writeShardedSafetensors write it: model-0000k-of-0000n.safetensors.
bool isShardName(const std::string &name);

/// Writes `tensors` into the existing directory `dir` as save_pretrained
/// does: one shard is `model.safetensors`; several are
/// `model-0000k-of-0000n.safetensors` plus `model.safetensors.index.json`
/// ({"metadata": {"total_size": bytes of all tensors}, "weight_map": {name:
/// file}}, keys sorted). Each file is written atomically with `metadata` in
/// its header ({"format": "pt"} as transformers writes it by default).
/// `maxShardBytes` (> 0) is save_pretrained's max_shard_size (default 5 GB
/// = 5e9 bytes). The weight files of an earlier save in `dir` that this one
/// does not replace are removed after it (save_pretrained's clean-up of
/// stale model-0000k-of-0000n shards, and here also a stale index or single
/// model.safetensors), so that no reader takes the earlier weights. Several
/// shards: the earlier index is removed first and the new one written
/// last, so that a save interrupted in between leaves no index naming
/// shards of two saves (openCheckpoint refuses shards without an index).
Status writeShardedSafetensors(const std::string &dir, const std::vector<TensorToWrite> &tensors,
                               uint64_t maxShardBytes,
                               const std::map<std::string, std::string> &metadata = {
                                   {"format", "pt"}});

/// The header metadata of every file of a Hugging Face export mtc writes
/// (mtrun --export-hf, and mtc train's checkpoint-N and final model):
/// transformers' {"format": "pt"} and kSafetensorsOutputKey: "hf-export"
/// (runtime/support/OutputPath.h), by which an export is known as mtc's.
const std::map<std::string, std::string> &hfExportMetadata();

/// Writes `tensors` into `dir` as a Hugging Face export: writeShardedSafetensors
/// with hfExportMetadata() in every shard. The default `maxShardBytes`
/// writes one model.safetensors.
Status writeHfExportSafetensors(const std::string &dir, const std::vector<TensorToWrite> &tensors,
                                uint64_t maxShardBytes = UINT64_MAX);

} // namespace mt::io

#endif // MT_RUNTIME_IO_SAFETENSORS_H
