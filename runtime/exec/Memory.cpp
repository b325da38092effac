// Arena allocation for the CPU backend.
#include "runtime/exec/Memory.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace mt::exec {

void HostMemory::Free::operator()(std::byte *p) const { std::free(p); }

HostMemory::HostMemory(const plan::Plan &plan, int64_t slots, Arenas arenas)
    : plan_(plan), slots_(std::max<int64_t>(slots, 1)) {
  for (const plan::Arena &a : plan.arenas()) {
    if (arenas == Arenas::HostSide &&
        (a.kind() == plan::ACTIVATIONS || a.kind() == plan::GRADIENTS))
      continue;
    uint64_t size = (a.size_bytes() + 63) / 64 * 64;
    if (perSlot(a.kind()))
      size *= uint64_t(slots_);
    auto *p = static_cast<std::byte *>(std::aligned_alloc(64, size ? size : 64));
    if (!p)
      throw std::bad_alloc();
    std::memset(p, 0, size);
    arenas_[a.kind()] = {std::unique_ptr<std::byte[], Free>(p), size};
  }
}

std::byte *HostMemory::data(uint32_t buffer) const {
  const plan::Buffer &b = plan_.buffers(buffer);
  const auto &arena = arenas_.at(b.arena());
  uint64_t slotOffset = perSlot(b.arena()) ? arena.second / uint64_t(slots_) * uint64_t(slot_) : 0;
  return arena.first.get() + slotOffset + b.offset_bytes();
}

int64_t HostMemory::elements(uint32_t buffer) const {
  int64_t n = 1;
  for (int64_t d : plan_.buffers(buffer).shape())
    n *= d;
  return n;
}

void HostMemory::clear(plan::ArenaKind arena) {
  auto it = arenas_.find(arena);
  if (it != arenas_.end())
    std::memset(it->second.first.get(), 0, it->second.second);
}

std::byte *HostMemory::arena(plan::ArenaKind kind) const {
  auto it = arenas_.find(kind);
  return it == arenas_.end() ? nullptr : it->second.first.get();
}

uint64_t HostMemory::arenaBytes(plan::ArenaKind kind) const {
  auto it = arenas_.find(kind);
  if (it == arenas_.end())
    return 0;
  return perSlot(kind) ? it->second.second / uint64_t(slots_) : it->second.second;
}

uint64_t HostMemory::totalBytes() const {
  uint64_t total = 0;
  for (const auto &[kind, arena] : arenas_)
    total += arena.second;
  return total;
}

} // namespace mt::exec
