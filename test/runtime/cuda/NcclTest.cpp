// The NCCL Communicator on two GPUs (label gpu2): every call of the
// interface, with one thread per rank, each on its own GPU, connected
// through a rendezvous directory as mtrun's ranks are (and once over TCP). As in nccl-tests,
// rank r's data is a function of (r, index), so each rank checks the whole
// result; with two ranks a sum does not depend on the order of its terms,
// so results are compared bit for bit.
#include "runtime/cuda/NcclCommunicator.h"
#include "test/runtime/comm/CommTestSupport.h"
#include "test/runtime/cuda/CudaTestSupport.h"

#include <filesystem>
#include <functional>
#include <thread>

#include <unistd.h>

namespace mt {
namespace {

using mt::commtest::TempDir;

using namespace std::chrono_literals;
using comm::DType;
using cuda::NcclCommunicator;
using comm::ReduceOp;
using cudatest::bf16Bits;
using cudatest::DeviceBuffer;
using cudatest::roundBf16;

/// Runs body(rank, world) on two threads, rank r on GPU r; they meet in a
/// rendezvous directory, or over TCP at 127.0.0.1:`port` when it is set.
void runTwoRanks(const std::function<void(int, NcclCommunicator &)> &body, int port = 0) {
  int gpus = 0;
  ASSERT_EQ(cudaGetDeviceCount(&gpus), cudaSuccess);
  ASSERT_GE(gpus, 2) << "the gpu2 tests need two GPUs";
  TempDir dir;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      comm::RankInfo info;
      info.rank = r;
      info.worldSize = 2;
      info.localRank = r;
      if (port > 0) {
        info.storeAddr = "127.0.0.1";
        info.storePort = port;
        info.storeSource = "MASTER_ADDR:MASTER_PORT";
      } else {
        info.rendezvous = dir.path;
      }
      auto groups = cuda::connectNccl(info, 60s);
      ASSERT_TRUE(groups.isOk()) << groups.message();
      int device = -1;
      ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
      EXPECT_EQ(device, r) << "rank " << r << " runs on LOCAL_RANK's GPU";
      auto *world = dynamic_cast<NcclCommunicator *>(&(*groups)->world());
      ASSERT_NE(world, nullptr);
      EXPECT_EQ(world->rank(), r);
      EXPECT_EQ(world->memory(), comm::Memory::Device);
      try {
        body(r, *world);
      } catch (const std::exception &e) {
        ADD_FAILURE() << "rank " << r << ": " << e.what();
      }
    });
  for (auto &t : threads)
    t.join();
}

float value(int rank, size_t i) {
  float v = std::ldexp(1.0f + float((rank * 7919 + i * 104729) % 1000) / 1000.0f,
                       int((rank * 5 + i * 3) % 24) - 12);
  return (rank + i) % 3 == 0 ? -v : v;
}

std::vector<float> rankData(int rank, size_t count, bool bf16 = false) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i)
    v[i] = bf16 ? roundBf16(value(rank, i)) : value(rank, i);
  return v;
}

/// Uploads `host` to a new device buffer.
std::unique_ptr<DeviceBuffer<float>> onDevice(const std::vector<float> &host) {
  auto d = std::make_unique<DeviceBuffer<float>>(host.size());
  d->upload(host.data());
  return d;
}

TEST(NcclCommunicator, ReductionsMatchTheTwoRankSum) {
  const size_t count = 1003;
  runTwoRanks([&](int r, NcclCommunicator &c) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      auto d = onDevice(rankData(r, count));
      MT_ASSERT_OK(c.allReduce(d->get(), count, DType::F32, op));
      auto got = cudatest::download(*d);
      for (size_t i = 0; i < count; ++i) {
        const float a = value(0, i), b = value(1, i);
        const float want = op == ReduceOp::Sum ? a + b
                           : op == ReduceOp::Avg ? (a + b) / 2.0f
                                                 : std::max(a, b);
        ASSERT_EQ(got[i], want) << "rank " << r << " op " << int(op) << " element " << i;
      }
    }
    // bf16: the sum of two bf16 values rounded once to bf16.
    std::vector<uint16_t> bits(count);
    for (size_t i = 0; i < count; ++i)
      bits[i] = bf16Bits(roundBf16(value(r, i)));
    DeviceBuffer<uint16_t> d(count);
    d.upload(bits.data());
    MT_ASSERT_OK(c.allReduce(d.get(), count, DType::BF16, ReduceOp::Sum));
    auto got = cudatest::download(d);
    for (size_t i = 0; i < count; ++i)
      ASSERT_EQ(got[i], bf16Bits(roundBf16(value(0, i)) + roundBf16(value(1, i))))
          << "rank " << r << " bf16 element " << i;
  });
}

// The unique id reaches rank 1 over TCP from rank 0's store (no directory).
TEST(NcclCommunicator, RanksMeetOverTcp) {
  const int port = commtest::freeLoopbackPort();
  ASSERT_NE(port, 0);
  const size_t count = 257;
  runTwoRanks(
      [&](int r, NcclCommunicator &c) {
        auto d = onDevice(rankData(r, count));
        MT_ASSERT_OK(c.allReduce(d->get(), count, DType::F32, ReduceOp::Sum));
        auto got = cudatest::download(*d);
        for (size_t i = 0; i < count; ++i)
          ASSERT_EQ(got[i], value(0, i) + value(1, i)) << "rank " << r << " element " << i;
      },
      port);
}

TEST(NcclCommunicator, GatherScatterBroadcastAndMessages) {
  const size_t n = 517;
  runTwoRanks([&](int r, NcclCommunicator &c) {
    // all_gather in place: this rank's slot of the output is the input.
    std::vector<float> slots(2 * n, -1.0f);
    std::copy_n(rankData(r, n).begin(), n, slots.begin() + long(r * n));
    auto gathered = onDevice(slots);
    MT_ASSERT_OK(c.allGather(gathered->get() + r * n, gathered->get(), n, DType::F32));
    auto all = cudatest::download(*gathered);
    for (size_t i = 0; i < 2 * n; ++i)
      ASSERT_EQ(all[i], value(int(i / n), i % n)) << "rank " << r << " all_gather " << i;

    // reduce_scatter: block r of the sum.
    auto whole = onDevice(rankData(r, 2 * n));
    DeviceBuffer<float> block(n);
    MT_ASSERT_OK(c.reduceScatter(whole->get(), block.get(), n, DType::F32, ReduceOp::Sum));
    auto mine = cudatest::download(block);
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(mine[i], value(0, r * n + i) + value(1, r * n + i)) << "rank " << r;

    // broadcast from group rank 1, bf16.
    std::vector<uint16_t> bits(n, 0);
    if (r == 1)
      for (size_t i = 0; i < n; ++i)
        bits[i] = bf16Bits(value(1, i));
    DeviceBuffer<uint16_t> root(n);
    root.upload(bits.data());
    MT_ASSERT_OK(c.broadcast(root.get(), n, DType::BF16, 1));
    auto copied = cudatest::download(root);
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(copied[i], bf16Bits(value(1, i))) << "rank " << r << " broadcast " << i;

    // A send and a recv in both directions at once: one NCCL group.
    auto out = onDevice(rankData(r + 5, n));
    DeviceBuffer<float> in(n);
    MT_ASSERT_OK(c.grouped([&] {
      if (Status s = c.send(out->get(), n, DType::F32, 1 - r); !s)
        return s;
      return c.recv(in.get(), n, DType::F32, 1 - r);
    }));
    auto received = cudatest::download(in);
    for (size_t i = 0; i < n; ++i)
      ASSERT_EQ(received[i], value(1 - r + 5, i)) << "rank " << r << " recv " << i;

    Status self = c.send(out->get(), n, DType::F32, r);
    ASSERT_FALSE(self.isOk());
    EXPECT_NE(self.message().find("send over group 'world' (ranks 0,1): peer " +
                                  std::to_string(r) + " is not a group rank"),
              std::string::npos)
        << self.message();
  });
}

// The bookkeeping calls on host memory (losses, checkpoints) stage through
// the GPU and return with the result.
TEST(NcclCommunicator, HostCallsStageThroughTheGpu) {
  runTwoRanks([&](int r, NcclCommunicator &c) {
    float loss = float(r + 1);
    MT_ASSERT_OK(c.allReduceHost(&loss, 1, ReduceOp::Avg));
    EXPECT_EQ(loss, 1.5f);
    std::vector<float> both(6, 0.0f), mine = {float(r), float(10 * r), -1.0f};
    MT_ASSERT_OK(c.allGatherHost(mine.data(), both.data(), 3));
    EXPECT_EQ(both, (std::vector<float>{0, 0, -1, 1, 10, -1}));
    std::vector<float> big = rankData(r, 1 << 20);
    MT_ASSERT_OK(c.broadcastHost(big.data(), big.size(), 0));
    EXPECT_EQ(big, rankData(0, 1 << 20));
    MT_ASSERT_OK(c.barrier());
  });
}

// NCCL inside a captured CUDA graph, replayed twice. The CUDA executor keeps
// collectives out of its graphs; this records whether capture would work.
TEST(NcclCommunicator, AllReduceCapturedInAGraphReplays) {
  const size_t count = 4096;
  runTwoRanks([&](int r, NcclCommunicator &c) {
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    auto d = onDevice(rankData(r, count));
    c.setStream(stream);
    // One eager call first, as the executor's first run is eager: NCCL
    // connects its peers lazily, which capture must not see.
    DeviceBuffer<float> warm(count);
    MT_ASSERT_OK(c.allReduce(warm.get(), count, DType::F32, ReduceOp::Sum));
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    Status captured = c.allReduce(d->get(), count, DType::F32, ReduceOp::Sum);
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    MT_ASSERT_OK(captured);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (int replay = 0; replay < 2; ++replay)
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    auto got = cudatest::download(*d);
    for (size_t i = 0; i < count; ++i) { // x -> 2 sums: (a + b) then 2(a + b)
      const float once = value(0, i) + value(1, i);
      ASSERT_EQ(got[i], once + once) << "rank " << r << " element " << i;
    }
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(graph);
    c.setStream(nullptr);
    (void)cudaStreamDestroy(stream);
  });
}

} // namespace
} // namespace mt
