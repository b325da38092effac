// Arena allocation for the CPU backend.
#include "runtime/exec/Memory.h"

#include "runtime/plan/DeviceFootprint.h"
#include "runtime/support/CheckedMath.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace mt::exec {

void HostMemory::Free::operator()(std::byte *p) const { std::free(p); }

namespace {

/// This host's memory in bytes, from /proc/meminfo (sysconf where absent).
struct HostMemoryInfo {
  uint64_t total = 0;     // RAM and swap
  uint64_t available = 0; // MemAvailable and free swap
};

HostMemoryInfo hostMemoryInfo() {
  std::map<std::string, uint64_t> kib;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  while (meminfo >> key >> value && meminfo.ignore(64, '\n'))
    kib[key] = value;
  if (kib.count("MemTotal:") && kib.count("MemAvailable:"))
    return {(kib["MemTotal:"] + kib["SwapTotal:"]) << 10,
            (kib["MemAvailable:"] + kib["SwapFree:"]) << 10};
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  return {uint64_t(sysconf(_SC_PHYS_PAGES)) * page, uint64_t(sysconf(_SC_AVPHYS_PAGES)) * page};
}

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", double(bytes) / double(uint64_t(1) << 30));
  return text;
}

} // namespace

Expected<std::unique_ptr<HostMemory>> HostMemory::create(const plan::Plan &plan, int64_t slots,
                                                         Arenas arenas, const std::string &rank) {
  std::unique_ptr<HostMemory> m(new HostMemory(plan, std::max<int64_t>(slots, 1)));
  const std::string who = rank.empty() ? "" : rank + " ";
  auto arenaName = [&](const plan::Arena &a) {
    return "the " + plan::ArenaKind_Name(a.kind()) + " arena" +
           (perSlot(a.kind()) && m->slots_ > 1
                ? " (x " + std::to_string(m->slots_) + " pipeline slots)"
                : std::string());
  };
  // Sizes first (64-byte multiples, one copy per slot), checked for
  // overflow and against this host, so that nothing is allocated in vain.
  const HostMemoryInfo host = hostMemoryInfo();
  std::vector<std::pair<const plan::Arena *, uint64_t>> sizes;
  uint64_t total = 0;
  const bool weightsAreMasters = arenas == Arenas::HostSide && plan::hostWeightsAreMasters(plan);
  if (weightsAreMasters)
    for (const plan::Parameter &p : plan.parameters())
      m->masterOf_[p.param_buffer()] = p.master_buffer();
  for (const plan::Arena &a : plan.arenas()) {
    if (arenas == Arenas::HostSide &&
        (a.kind() == plan::ACTIVATIONS || a.kind() == plan::GRADIENTS ||
         a.kind() == plan::STAGED_GRADIENTS || a.kind() == plan::STAGED_WEIGHTS ||
         (a.kind() == plan::PARAMETERS && weightsAreMasters)))
      continue;
    auto padded = checkedAdd<uint64_t>(a.size_bytes(), 63);
    auto size = padded ? checkedMul<uint64_t>(*padded / 64 * 64,
                                              perSlot(a.kind()) ? uint64_t(m->slots_) : 1)
                       : std::nullopt;
    auto sum = size ? checkedAdd<uint64_t>(total, *size) : std::nullopt;
    if (!sum)
      return Status::error(who + arenaName(a) + " of " + std::to_string(a.size_bytes()) +
                           " bytes overflows 64-bit sizes");
    if (*sum > host.total)
      return Status::error(who + arenaName(a) + " (" + gib(*size) +
                           ") brings the plan's arenas to " + gib(*sum) +
                           " of host memory, more than this host has (" + gib(host.total) +
                           " of memory and swap, " + gib(host.available) + " available)");
    sizes.push_back({&a, *size});
    total = *sum;
  }
  uint64_t done = 0;
  for (auto [arena, size] : sizes) {
    auto *p = static_cast<std::byte *>(std::aligned_alloc(64, size ? size : 64));
    if (!p)
      return Status::error(who + "cannot allocate " + arenaName(*arena) + " (" +
                           std::to_string(size) + " bytes, " + gib(size) +
                           ") in host memory: " + gib(hostMemoryInfo().available) +
                           " available, after " + gib(done) + " of the plan's other arenas");
    std::memset(p, 0, size);
    m->arenas_[arena->kind()] = {std::unique_ptr<std::byte[], Free>(p), size};
    done += size;
  }
  return m;
}

std::byte *HostMemory::data(uint32_t buffer) const {
  if (auto master = masterOf_.find(buffer); master != masterOf_.end())
    buffer = master->second;
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

bool HostMemory::mainGradientsOnHost() const {
  for (const plan::Parameter &p : plan_.parameters())
    if (p.trainable() && plan_.buffers(p.grad_buffer()).arena() == plan::HOST_GRADIENTS)
      return true;
  return false;
}

std::byte *HostMemory::arena(plan::ArenaKind kind) const {
  auto it = arenas_.find(kind);
  if (it == arenas_.end())
    return nullptr;
  return it->second.first.get() + (perSlot(kind) ? arenaBytes(kind) * uint64_t(slot_) : 0);
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
