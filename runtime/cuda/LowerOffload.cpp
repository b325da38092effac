// optimizer_offload, grad_offload and param_offload on the GPU: the plan's copies between
// device arenas and pinned host arenas run on a copy stream of their own,
// ordered with events (a copy after what the compute stream enqueued before
// it, a copy into a staged buffer only after the last use of its memory;
// the compute stream after a copy to the device), and AdamW and the
// gradients' sum of squares of host buffers run on the host, on all OpenMP
// threads, once the copies they read are done. The copies of later
// gradients overlap the host's update of earlier ones.
// optimizer_offload's host gradients (HOST_STAGED_GRADIENTS, pinned) reuse
// host memory by liveness: a gradient's copy into memory that an earlier
// one held is enqueued after the host AdamW that read the earlier one has
// returned (host steps run in program order, and the plan puts the copy
// after that AdamW), so it cannot overwrite a gradient still being read.
// grad_offload's staged gradients and param_offload's staged weights reuse
// device memory by liveness: every staged buffer is first written by a copy
// to the device, which the copy stream runs after its earlier copies out of
// the same memory, and which the compute stream waits for.
// CUDA graphs: a copy is a host step (Step::onHost), as a copy to the host
// forks the copy stream without joining it in the program, so a program
// with copies is not captured and runs eagerly; under param_offload every
// program that reads weights copies them, so nothing of it is captured.
#include "runtime/cuda/Check.h"
#include "runtime/cuda/Elementwise.h"
#include "runtime/cuda/Lowering.h"
#include "runtime/kernels/HostAdamW.h"
#include "runtime/plan/DeviceFootprint.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace mt::cuda {
namespace {

using plan::Attrs;

bool onHost(const plan::Plan &plan, uint32_t buffer) {
  return plan::isHostArena(plan.buffers(buffer).arena());
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

/// The master-weights program's copy_to_host of weights whose fp32 copy is
/// on the host only (plan::fp32WeightsOnHost): the weights mtrun wrote
/// there, into the masters, on the host once the copy stream is idle;
/// nothing where mtrun wrote the masters themselves
/// (plan::hostWeightsAreMasters).
void weightsToMasters(Lowerer &L, const Attrs &a) {
  const auto *weights =
      reinterpret_cast<const std::byte *>(L.resources().host->data(L.instruction().inputs(0)));
  float *master = L.f32Out(0);
  const size_t bytes = size_t(a.i("n")) * sizeof(float);
  cudaEvent_t done = copyEvent(L, L.instruction().outputs(0)); // makes the copy stream
  cudaStream_t copies = L.resources().copyStream;
  if (!weights || !master || !done || weights == reinterpret_cast<const std::byte *>(master))
    return;
  L.emit(
      [=](cudaStream_t) -> Status {
        MT_CUDA_CHECK(cudaStreamSynchronize(copies));
        std::memcpy(master, weights, bytes);
        return Status::ok();
      },
      /*onHost=*/true);
}

/// Device memory for the fp32 weights that copy_to_device casts into their
/// bf16 copy when the GPU keeps no fp32 weights (plan::fp32WeightsOnHost):
/// plan::DeviceFootprint::weightStaging (the largest such copy), made once;
/// the copies use it one after the other on the copy stream.
float *weightStaging(Lowerer &L) {
  Resources &r = L.resources();
  if (r.weightStaging)
    return r.weightStaging;
  auto p = r.allocate(plan::deviceFootprint(L.plan()).weightStaging);
  if (!p) {
    L.fail(p.message());
    return nullptr;
  }
  return r.weightStaging = static_cast<float *>(*p);
}

/// copy_to_host: device gradients or weights into a host arena, after what
/// the compute stream enqueued before.
void copyToHost(Lowerer &L, const Attrs &a) {
  if (!checkCopy(L, true))
    return;
  const uint32_t in = L.instruction().inputs(0);
  if (L.resources().arenas->storage(in) == DeviceArenas::Storage::Parameter &&
      !L.resources().arenas->data(in))
    return weightsToMasters(L, a);
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
/// writes it), a host weight into its staged copy and that copy's bf16
/// copy (param_offload), or a host gradient into its staged copy
/// (grad_offload), after what the compute stream enqueued before (which
/// may have used the staged copy's memory); the compute stream waits for it
/// before what follows. The copy into a staged buffer (grad_offload's,
/// param_offload's) waits only for the last earlier use of its memory in
/// the program (Lowerer::recordAfterLastUse), so that it overlaps the
/// compute in between.
void copyToDevice(Lowerer &L, const Attrs &a) {
  if (!checkCopy(L, false))
    return;
  const uint32_t out = L.instruction().outputs(0);
  const float *host = L.f32In(0);
  DeviceArenas &arenas = *L.resources().arenas;
  const DeviceArenas::Storage storage = arenas.storage(out);
  const bool weights = storage == DeviceArenas::Storage::Parameter ||
                       storage == DeviceArenas::Storage::ShardView ||
                       storage == DeviceArenas::Storage::StagedWeight;
  bf16 *shadow = weights ? arenas.bf16Data(out) : nullptr;
  // No fp32 weights on the GPU (plan::fp32WeightsOnHost): through the
  // staging memory into the bf16 copy alone.
  float *device = weights && !arenas.data(out) ? weightStaging(L) : L.f32Out(0);
  const int64_t n = a.i("n");
  cudaEvent_t ready = newEvent(L), done = copyEvent(L, L.instruction().inputs(0));
  cudaStream_t copies = L.resources().copyStream;
  if (!host || !device || !ready || !done)
    return;
  if (weights && !shadow)
    return L.fail("copy_to_device writes '" + L.plan().buffers(out).name() +
                  "', which has no bf16 copy on the GPU (expected a parameter or its shard)");
  // A staged copy's memory is used only by the instructions that name a
  // staged buffer in it: the copy waits for the last of them, not for all
  // the compute before it, and so runs while the compute between them does.
  const plan::ArenaKind arena = L.plan().buffers(out).arena();
  const bool early =
      (arena == plan::STAGED_WEIGHTS || arena == plan::STAGED_GRADIENTS) &&
      L.recordAfterLastUse(
          {{reinterpret_cast<const std::byte *>(device),
            reinterpret_cast<const std::byte *>(device + n)},
           {reinterpret_cast<const std::byte *>(shadow),
            reinterpret_cast<const std::byte *>(shadow ? shadow + n : nullptr)}},
          ready);
  L.emit(
      [=](cudaStream_t s) -> Status {
        if (!early)
          MT_CUDA_CHECK(cudaEventRecord(ready, s));
        MT_CUDA_CHECK(cudaStreamWaitEvent(copies, ready, 0));
        MT_CUDA_CHECK(cudaMemcpyAsync(device, host, size_t(n) * sizeof(float),
                                      cudaMemcpyHostToDevice, copies));
        if (shadow)
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

void hostSumSquares(Lowerer &L, const Attrs &a) {
  const plan::Instruction &in = L.instruction();
  std::vector<kernels::HostGradient> grads;
  std::vector<cudaEvent_t> copied;
  for (int i = 0; i < in.inputs_size(); ++i) {
    if (!onHost(L.plan(), in.inputs(i)))
      return L.fail("sum_squares reads host gradients and '" +
                    L.plan().buffers(in.inputs(i)).name() +
                    "' from the device; expected all on one side");
    grads.push_back({L.f32In(i), plan::elementsOf(L.plan().buffers(in.inputs(i)))});
    copied.push_back(copyEvent(L, in.inputs(i)));
    if (!grads.back().data || !copied.back())
      return;
  }
  const std::string replicated = a.s("replicated");
  const int64_t replicas = a.i("replicas", 1);
  if (replicas < 1)
    return L.fail("sum_squares: replicas is " + std::to_string(replicas) + ", expected >= 1");
  float *out = L.f32Out(0);
  // The host's result, held where the copy to the device reads it from.
  float *sum = &L.resources().hostScalars[in.outputs(0)];
  if (!out)
    return;
  L.emit(
      [=](cudaStream_t s) -> Status {
        for (cudaEvent_t e : copied)
          MT_CUDA_CHECK(cudaEventSynchronize(e));
        // The previous step's copy of the result may still be in flight.
        MT_CUDA_CHECK(cudaStreamSynchronize(s));
        *sum = float(kernels::weightedSumOfSquares(grads, replicated, replicas));
        MT_CUDA_CHECK(cudaMemcpyAsync(out, sum, sizeof(float), cudaMemcpyHostToDevice, s));
        return Status::ok();
      },
      /*onHost=*/true);
}

void addOffloadLowerings(LoweringTable &t) {
  t[plan::Op::copy_to_host] = copyToHost;
  t[plan::Op::copy_to_device] = copyToDevice;
}

} // namespace mt::cuda
