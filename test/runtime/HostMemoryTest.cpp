// Host arenas (runtime/exec/Memory.h): zeroed, one copy per pipeline slot,
// and every allocation that cannot succeed is an error that names the rank,
// the arena, its size and the memory available, never an abort.
#include "runtime/exec/Memory.h"

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <tuple>

namespace mt::exec {
namespace {

/// A plan of one arena of `kind` holding one buffer of `bytes` bytes.
plan::Plan planOf(plan::ArenaKind kind, uint64_t bytes) {
  plan::Plan p;
  auto *arena = p.add_arenas();
  arena->set_kind(kind);
  arena->set_size_bytes(bytes);
  auto *b = p.add_buffers();
  b->set_dtype(plan::F32);
  b->add_shape(int64_t(bytes / 4));
  b->set_arena(kind);
  b->set_size_bytes(bytes);
  return p;
}

TEST(HostMemory, AllocatesZeroedArenasWithOneCopyPerSlot) {
  const plan::Plan p = planOf(plan::ACTIVATIONS, 100);
  auto memory = HostMemory::create(p, 3);
  ASSERT_TRUE(memory) << memory.message();
  EXPECT_EQ((*memory)->arenaBytes(plan::ACTIVATIONS), 128u); // 64-byte multiple
  EXPECT_EQ((*memory)->totalBytes(), 3 * 128u);
  std::byte *first = (*memory)->data(0);
  (*memory)->setSlot(2);
  EXPECT_EQ((*memory)->data(0), first + 2 * 128);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(first[i], std::byte{0}) << i;
}

// optimizer_offload with the fp32 weights on the host only
// (plan::hostWeightsAreMasters): the CUDA backend's host side keeps no
// parameter arena, and a parameter's buffer is its master's, so the host
// holds the weights once; the CPU backend computes from its own.
TEST(HostMemory, HostSideWeightsAreTheMastersWhenOnlyTheHostHasThem) {
  plan::Plan p;
  for (plan::ArenaKind kind : {plan::PARAMETERS, plan::HOST_PARAMETERS}) {
    auto *arena = p.add_arenas();
    arena->set_kind(kind);
    arena->set_size_bytes(1024);
  }
  for (auto [name, arena, offset] : {std::tuple{"w", plan::PARAMETERS, 0},
                                     {"v", plan::PARAMETERS, 512},
                                     {"master:v", plan::HOST_PARAMETERS, 0},
                                     {"master:w", plan::HOST_PARAMETERS, 512}}) {
    auto *b = p.add_buffers();
    b->set_id(uint32_t(p.buffers_size() - 1));
    b->set_name(name);
    b->set_dtype(plan::F32);
    b->add_shape(128);
    b->set_arena(arena);
    b->set_offset_bytes(uint64_t(offset));
    b->set_size_bytes(512);
  }
  for (auto [weights, master] : {std::pair{0u, 3u}, {1u, 2u}}) {
    plan::Parameter &param = *p.add_parameters();
    param.set_param_buffer(weights);
    param.set_trainable(true);
    param.set_master_buffer(master);
  }
  auto host = HostMemory::create(p, 1, HostMemory::Arenas::HostSide);
  ASSERT_TRUE(host) << host.message();
  EXPECT_EQ((*host)->arena(plan::PARAMETERS), nullptr);
  EXPECT_EQ((*host)->totalBytes(), 1024u);
  EXPECT_EQ((*host)->data(0), (*host)->data(3));
  EXPECT_EQ((*host)->data(1), (*host)->data(2));
  EXPECT_EQ((*host)->data(2), (*host)->arena(plan::HOST_PARAMETERS));

  auto cpu = HostMemory::create(p, 1, HostMemory::Arenas::All);
  ASSERT_TRUE(cpu) << cpu.message();
  EXPECT_EQ((*cpu)->totalBytes(), 2048u);
  EXPECT_NE((*cpu)->data(0), (*cpu)->data(3));

  p.mutable_parameters(1)->set_master_buffer(0); // v has no master: its own
  auto apart = HostMemory::create(p, 1, HostMemory::Arenas::HostSide);
  ASSERT_TRUE(apart) << apart.message();
  EXPECT_EQ((*apart)->totalBytes(), 2048u);
  EXPECT_NE((*apart)->data(0), (*apart)->data(3));
}

TEST(HostMemory, RefusesArenasLargerThanThisHost) {
  // 2^50 bytes (1 PiB): more than the memory and swap of any host.
  const plan::Plan p = planOf(plan::PARAMETERS, uint64_t(1) << 50);
  auto memory = HostMemory::create(p, 1, HostMemory::Arenas::All, "[rank 3/8]");
  ASSERT_FALSE(memory);
  EXPECT_NE(memory.message().find("[rank 3/8] the PARAMETERS arena (1048576.0 GiB) brings the "
                                  "plan's arenas to 1048576.0 GiB of host memory, more than "
                                  "this host has ("),
            std::string::npos)
      << memory.message();
}

TEST(HostMemory, RefusesSlotsWhoseSizeOverflows) {
  const plan::Plan p = planOf(plan::ACTIVATIONS, uint64_t(1) << 62);
  auto memory = HostMemory::create(p, 4, HostMemory::Arenas::All, "[rank 0/2]");
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.message(), "[rank 0/2] the ACTIVATIONS arena (x 4 pipeline slots) of "
                              "4611686018427387904 bytes overflows 64-bit sizes");
}

/// Lowers this process's address-space limit while alive.
class AddressSpaceLimit {
public:
  explicit AddressSpaceLimit(uint64_t bytes) {
    getrlimit(RLIMIT_AS, &before_);
    rlimit lower = before_;
    lower.rlim_cur = bytes;
    ok_ = setrlimit(RLIMIT_AS, &lower) == 0;
  }
  ~AddressSpaceLimit() { setrlimit(RLIMIT_AS, &before_); }
  bool ok() const { return ok_; }

private:
  rlimit before_{};
  bool ok_ = false;
};

TEST(HostMemory, AFailedAllocationIsAnError) {
  // Room for 64 MiB more than this process maps now; the arena needs 1 GiB,
  // less than any host running the tests has.
  uint64_t pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  ASSERT_GT(pages, 0u);
  const plan::Plan p = planOf(plan::OPTIMIZER, uint64_t(1) << 30);
  AddressSpaceLimit limit(pages * uint64_t(sysconf(_SC_PAGESIZE)) + (uint64_t(64) << 20));
  ASSERT_TRUE(limit.ok());
  auto memory = HostMemory::create(p, 1, HostMemory::Arenas::All, "[rank 1/2]");
  ASSERT_FALSE(memory);
  EXPECT_NE(memory.message().find("[rank 1/2] cannot allocate the OPTIMIZER arena (1073741824 "
                                  "bytes, 1.0 GiB) in host memory: "),
            std::string::npos)
      << memory.message();
  EXPECT_NE(memory.message().find(" GiB available, after 0.0 GiB of the plan's other arenas"),
            std::string::npos)
      << memory.message();
}

} // namespace
} // namespace mt::exec
