// The backends a training run may take, and their executors.
#include "runtime/exec/Backends.h"

#include "runtime/cpu/CpuExecutor.h"

#ifdef MT_WITH_CUDA
#include "runtime/cuda/CudaExecutor.h"
#include "runtime/cuda/NcclCommunicator.h"
#endif

namespace mt::exec {

/// The backend `requested` resolves to for this plan and machine: `auto` is
/// the CUDA backend where a GPU is visible, unless the run reads temporaries
/// on the host (--dump-logits). The choice depends only on the plan and the
/// machine, so that every rank of
/// a job on like machines makes the same one; a rank without a GPU of its
/// own then stops with the CUDA backend's error rather than differ.
Expected<std::string> chooseBackend(const std::string &requested, const plan::Plan &plan,
                                    bool readsTemporaries) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda")
    return Status::error("--backend must be cpu, cuda or auto, got '" + requested + "'");
#ifdef MT_WITH_CUDA
  if (requested == "auto")
    return std::string(cuda::deviceCount() > 0 && !readsTemporaries ? "cuda" : "cpu");
  (void)plan;
#else
  (void)plan, (void)readsTemporaries;
  if (requested == "cuda")
    return Status::error("--backend cuda: this mtrun was built without the CUDA backend "
                         "(configure with -DMT_BUILD_CUDA=ON)");
  if (requested == "auto")
    return std::string("cpu");
#endif
  return requested;
}

/// How the ranks of `backend` meet: NCCL groups for cuda, Gloo's otherwise.
RankContext::Connect connectFor(const std::string &backend) {
#ifdef MT_WITH_CUDA
  if (backend == "cuda")
    return cuda::connectNccl;
#endif
  (void)backend;
  return RankContext::connectGloo;
}

/// The executor of `backend` ("cpu" or "cuda") for this rank's part of
/// `plan`, with the CUDA options of `o` (profiles, attention backend).
Expected<std::unique_ptr<Executor>> createExecutor(const std::string &backend,
                                                   const plan::Plan &plan, HostMemory &memory,
                                                   const RankContext *rank,
                                                   const TrainOptions &o) {
#ifdef MT_WITH_CUDA
  if (backend == "cuda") {
    auto options = cuda::optionsFromEnvironment();
    if (!options)
      return options.status();
    options->profile = o.profile;
    options->profileComm = o.profileComm;
    if (!o.attentionBackend.empty()) {
      auto attention = cuda::parseAttentionBackend(o.attentionBackend, "--attention-backend");
      if (!attention)
        return attention.status();
      options->attention.backend = *attention;
    }
    return cuda::createCudaExecutor(plan, memory, rank, *options);
  }
#endif
  (void)backend;
  if (!o.attentionBackend.empty() && o.attentionBackend != "auto")
    return Status::error("--attention-backend " + o.attentionBackend +
                         " chooses the CUDA backend's attention kernels; this run is on the "
                         "cpu backend");
  auto executor = cpu::CpuExecutor::create(plan, memory, rank);
  if (!executor)
    return executor.status();
  return std::unique_ptr<Executor>(std::make_unique<cpu::CpuExecutor>(std::move(*executor)));
}

} // namespace mt::exec
