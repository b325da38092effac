// optimizer_offload on the GPU: the plan's copies between device arenas and
// pinned host arenas run on a copy stream of their own, ordered with events
// (a copy to the host after what the compute stream enqueued before it;
// the compute stream after a copy to the device), and AdamW runs on the
// host, on all OpenMP threads, once the copies it reads are done. The copies
// of later gradients overlap the host's update of earlier ones.
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/kernels/HostAdamW.h"

namespace mt::cuda {
namespace {

using plan::Attrs;

bool onHost(const plan::Plan &plan, uint32_t buffer) {
  const plan::ArenaKind kind = plan.buffers(buffer).arena();
  return kind == plan::HOST_PARAMETERS || kind == plan::HOST_GRADIENTS ||
         kind == plan::HOST_OPTIMIZER;
}

/// A new event owned by the resources (timing off: only ordering).
cudaEvent_t newEvent(Lowerer &L) {
  auto e = L.resources().event();
  if (!e) {
    L.fail("cannot create a copy event: " + e.message());
    return nullptr;
  }
  return *e;
}

/// The event of host buffer `id`'s copies, and the copy stream, made once.
cudaEvent_t copyEvent(Lowerer &L, uint32_t id) {
  Resources &r = L.resources();
  if (!r.copyStream)
    if (cudaError_t e = cudaStreamCreateWithFlags(&r.copyStream, cudaStreamNonBlocking);
        e != cudaSuccess) {
      L.fail(std::string("cannot create the copy stream: ") + cudaGetErrorString(e));
      return nullptr;
    }
  auto [it, inserted] = r.copyDone.try_emplace(id, nullptr);
  if (inserted)
    it->second = newEvent(L);
  return it->second;
}

/// Whether the current instruction copies n fp32 elements the way `toHost`
/// says; else records why not.
bool checkCopy(Lowerer &L, bool toHost) {
  const plan::Instruction &in = L.instruction();
  const bool fromHost = onHost(L.plan(), in.inputs(0)), intoHost = onHost(L.plan(), in.outputs(0));
  if (fromHost == !toHost && intoHost == toHost)
    return true;
  L.fail(std::string(toHost ? "copy_to_host" : "copy_to_device") + " copies from a " +
         (fromHost ? "host" : "device") + " buffer into a " + (intoHost ? "host" : "device") +
         " one; expected from the " + (toHost ? "device to the host" : "host to the device"));
  return false;
}

/// copy_to_host: device gradients or weights into a host arena, after what
/// the compute stream enqueued before.
void copyToHost(Lowerer &L, const Attrs &a) {
  if (!checkCopy(L, true))
    return;
  const float *device = L.f32In(0);
  float *host = L.f32Out(0);
  const size_t bytes = size_t(a.i("n")) * sizeof(float);
  cudaEvent_t ready = newEvent(L), done = copyEvent(L, L.instruction().outputs(0));
  cudaStream_t copies = L.resources().copyStream;
  if (!device || !host || !ready || !done)
    return;
  L.emit(
      [=](cudaStream_t s) -> Status {
        MT_CUDA_CHECK(cudaEventRecord(ready, s));
        MT_CUDA_CHECK(cudaStreamWaitEvent(copies, ready, 0));
        MT_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, copies));
        MT_CUDA_CHECK(cudaEventRecord(done, copies));
        return Status::ok();
      },
      /*onHost=*/true);
}

/// copy_to_device: updated master weights into the device's fp32 weights
/// and their bf16 copy (the shadow the layers read, as AdamW on the GPU
/// writes it); the compute stream waits for it before what follows.
void copyToDevice(Lowerer &L, const Attrs &a) {
  if (!checkCopy(L, false))
    return;
  const uint32_t out = L.instruction().outputs(0);
  const float *host = L.f32In(0);
  float *device = L.f32Out(0);
  bf16 *shadow = L.resources().arenas->bf16Data(out);
  const int64_t n = a.i("n");
  cudaEvent_t done = copyEvent(L, L.instruction().inputs(0));
  cudaStream_t copies = L.resources().copyStream;
  if (!host || !device || !done)
    return;
  if (!shadow)
    return L.fail("copy_to_device writes '" + L.plan().buffers(out).name() +
                  "', which has no bf16 copy on the GPU (expected a parameter or its shard)");
  L.emit(
      [=](cudaStream_t s) -> Status {
        MT_CUDA_CHECK(cudaMemcpyAsync(device, host, size_t(n) * sizeof(float),
                                      cudaMemcpyHostToDevice, copies));
        MT_CUDA_RETURN_IF_ERROR(castFloatToBf16(device, shadow, n, copies));
        MT_CUDA_CHECK(cudaEventRecord(done, copies));
        MT_CUDA_CHECK(cudaStreamWaitEvent(s, done, 0));
        return Status::ok();
      },
      /*onHost=*/true);
}

} // namespace

void hostAdamW(Lowerer &L, const Attrs &a) {
  const plan::Instruction &in = L.instruction();
  for (int i : {0, 1, 2, 3})
    if (!onHost(L.plan(), in.inputs(i)))
      return L.fail("adamw of host master weights reads input " + std::to_string(i) + " '" +
                    L.plan().buffers(in.inputs(i)).name() + "' from the device");
  for (int i : {0, 2, 3})
    if (in.outputs(i == 0 ? 0 : i - 1) != in.inputs(i))
      return L.fail("adamw updates its parameter and moments in place");
  float *param = const_cast<float *>(L.f32In(0)), *m = const_cast<float *>(L.f32In(2)),
        *v = const_cast<float *>(L.f32In(3));
  const float *grad = L.f32In(1), *lr = L.hostIn(4), *gradScale = L.hostIn(6);
  const int64_t *step = L.hostI64In(5);
  // The master's last copy (last step's to the device, or the master
  // weights program's to the host) and the gradient's.
  cudaEvent_t masterCopied = copyEvent(L, in.inputs(0)), gradCopied = copyEvent(L, in.inputs(1));
  if (!param || !grad || !m || !v || !step || !masterCopied || !gradCopied)
    return;
  const double beta1 = a.f("beta1"), beta2 = a.f("beta2"), eps = a.f("eps"),
               weightDecay = a.f("weight_decay");
  const int64_t n = a.i("n");
  L.emit(
      [=](cudaStream_t) -> Status {
        MT_CUDA_CHECK(cudaEventSynchronize(masterCopied));
        MT_CUDA_CHECK(cudaEventSynchronize(gradCopied));
        kernels::adamwStep(param, grad, m, v, n,
                           {*lr, beta1, beta2, eps, weightDecay, *step, *gradScale});
        return Status::ok();
      },
      /*onHost=*/true);
}

void addOffloadLowerings(LoweringTable &t) {
  t[plan::Op::copy_to_host] = copyToHost;
  t[plan::Op::copy_to_device] = copyToDevice;
}

} // namespace mt::cuda
