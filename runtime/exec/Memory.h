// The static arenas of a plan, allocated once, and typed views of buffers.
#ifndef MT_RUNTIME_EXEC_MEMORY_H
#define MT_RUNTIME_EXEC_MEMORY_H

#include "runtime/plan/plan.pb.h"
#include "runtime/support/Status.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace mt::exec {

class HostMemory {
public:
  enum class Arenas {
    All,      // the CPU backend computes in host memory
    HostSide, // parameters, optimizer state, inputs and outputs only: what
              // the host writes or reads while a device computes. Where the
              // host masters are the only fp32 weights
              // (plan::hostWeightsAreMasters), no parameter arena: a
              // parameter's buffer is its master's.
  };
  /// Allocates the arenas of `plan` (64-byte aligned, zero-filled). With
  /// `slots` > 1 (pipelines: micro-batches in flight) the per-micro-batch
  /// arenas (activations, inputs, outputs) get one copy per slot. Fails,
  /// allocating nothing, when the arenas together exceed this host's memory
  /// and swap, and when an allocation fails; the message starts with
  /// `rank` (e.g. RankContext::describe()) and names the arena, its size
  /// and the memory available.
  static Expected<std::unique_ptr<HostMemory>> create(const plan::Plan &plan, int64_t slots = 1,
                                                      Arenas arenas = Arenas::All,
                                                      const std::string &rank = "");

  /// The copy of the per-micro-batch arenas later accesses use.
  void setSlot(int64_t slot) { slot_ = slot; }
  int64_t slot() const { return slot_; }
  int64_t slots() const { return slots_; }

  /// The buffer's memory (a parameter's master where they are one: Arenas).
  std::byte *data(uint32_t buffer) const;
  float *f32(uint32_t buffer) const { return reinterpret_cast<float *>(data(buffer)); }
  int32_t *i32(uint32_t buffer) const { return reinterpret_cast<int32_t *>(data(buffer)); }
  int64_t *i64(uint32_t buffer) const { return reinterpret_cast<int64_t *>(data(buffer)); }
  int64_t elements(uint32_t buffer) const;
  /// Zero-fills a whole arena (gradients at the start of a step).
  void clear(plan::ArenaKind arena);
  /// Whether the plan keeps the main gradients in HOST_GRADIENTS
  /// (grad_offload: a parameter's grad_buffer is there), so that a step
  /// starts by zero-filling that arena as it does GRADIENTS.
  bool mainGradientsOnHost() const;
  /// Bytes allocated in all arenas.
  uint64_t totalBytes() const;
  /// The whole arena `kind` (the current slot's copy of a per-micro-batch
  /// arena) and its size; null when not allocated.
  std::byte *arena(plan::ArenaKind kind) const;
  uint64_t arenaBytes(plan::ArenaKind kind) const;

private:
  HostMemory(const plan::Plan &plan, int64_t slots) : plan_(plan), slots_(slots) {}
  struct Free {
    void operator()(std::byte *p) const;
  };
  const plan::Plan &plan_;
  static bool perSlot(plan::ArenaKind kind) {
    return kind == plan::ACTIVATIONS || kind == plan::INPUTS || kind == plan::OUTPUTS;
  }
  std::map<plan::ArenaKind, std::pair<std::unique_ptr<std::byte[], Free>, uint64_t>> arenas_;
  std::map<uint32_t, uint32_t> masterOf_; // parameter buffer -> its master, where they are one
  int64_t slots_ = 1, slot_ = 0;
};

} // namespace mt::exec

#endif // MT_RUNTIME_EXEC_MEMORY_H
