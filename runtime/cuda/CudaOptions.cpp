// The CUDA backend's options from the environment (CudaExecutor.h lists
// the variables) and the GPUs visible to this process.
#include "runtime/cuda/CudaExecutor.h"

#include <cstdlib>
#include <string>

namespace mt::cuda {

int deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

Expected<CudaOptions> optionsFromEnvironment() {
  auto is = [](const char *name, const char *value) {
    const char *v = std::getenv(name);
    return v && std::string(v) == value;
  };
  CudaOptions o;
  o.syncEachInstruction = is("MT_CUDA_SYNC", "1");
  o.graphs = !is("MT_CUDA_GRAPHS", "0");
  o.overlapGradReduce = !is("MT_CUDA_OVERLAP", "0");
  o.sparseEmbeddingGrad = !is("MT_CUDA_SPARSE_EMBEDDING_GRAD", "0");
  o.overlapRingTransfers = !is("MT_CUDA_OVERLAP_CP", "0");
  o.overlapSequenceParallel = !is("MT_CUDA_OVERLAP_SP", "0");
  o.stageGraphs = !is("MT_CUDA_STAGE_GRAPHS", "0");
  if (const char *bucket = std::getenv("MT_CUDA_BUCKET_ELEMENTS")) {
    char *end = nullptr;
    const unsigned long long n = std::strtoull(bucket, &end, 10);
    if (!*bucket || *end || n == 0 || bucket[0] == '-')
      return Status::error(std::string("MT_CUDA_BUCKET_ELEMENTS='") + bucket +
                           "' is not a positive integer (gradient elements per bucket)");
    o.bucketElements = size_t(n);
  }
  if (const char *backend = std::getenv("MT_ATTENTION_BACKEND")) {
    auto parsed = parseAttentionBackend(backend, "MT_ATTENTION_BACKEND");
    if (!parsed)
      return parsed.status();
    o.attention.backend = *parsed;
  }
  if (const char *deterministic = std::getenv("MT_ATTENTION_DETERMINISTIC")) {
    const std::string v = deterministic;
    if (v != "0" && v != "1")
      return Status::error("MT_ATTENTION_DETERMINISTIC='" + v + "' is not 0 or 1 (1: the "
                           "attention backward sums in a fixed order)");
    o.attentionDeterministic = v == "1";
  }
  if (const char *moeGemm = std::getenv("MT_MOE_GEMM")) {
    auto parsed = parseExpertGemm(moeGemm, "MT_MOE_GEMM");
    if (!parsed)
      return parsed.status();
    o.moeGemm = *parsed;
  }
  if (const char *lanes = std::getenv("MT_MOE_LANES")) {
    const std::string v = lanes;
    if (v.size() > 2 || v.empty() || v.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(v) > 16)
      return Status::error("MT_MOE_LANES='" + v + "' is not a whole number from 0 to 16 (the "
                           "streams the experts' weight gradients run side by side on)");
    o.moeLanes = std::stoi(v);
  }
  if (const char *choice = std::getenv("MT_GEMM_CHOICE")) {
    const std::string v = choice;
    if (v == "heuristic")
      o.gemmChoice = GemmRunner::Choice::Heuristic;
    else if (v == "timed")
      o.gemmChoice = GemmRunner::Choice::Timed;
    else if (v == "verbose")
      o.gemmChoice = GemmRunner::Choice::Verbose;
    else
      return Status::error("MT_GEMM_CHOICE='" + v + "' is not heuristic, timed or verbose "
                           "(how each GEMM shape's cuBLASLt algorithm is chosen)");
  }
  return o;
}

} // namespace mt::cuda
