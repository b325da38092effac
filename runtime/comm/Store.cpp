// openStore: the job's store, joined by every rank.
#include "runtime/comm/Store.h"

#include "runtime/comm/FileStore.h"
#include "runtime/comm/TcpStore.h"

namespace mt::comm {

namespace {

// Every rank announces itself with its world size and waits for the others;
// a world size that differs from this rank's is an error naming both.
Status join(Store &store, const RankInfo &info) {
  std::string size = std::to_string(info.worldSize);
  std::string head = "[rank " + std::to_string(info.rank) + "/" + size + "] ";
  std::vector<std::string> keys;
  for (int r = 0; r < info.worldSize; ++r)
    keys.push_back("join/" + std::to_string(r));
  if (Status s = store.set(keys[size_t(info.rank)], {size.begin(), size.end()}); !s)
    return Status::error(head + "cannot join: " + s.message());
  if (Status s = store.wait(keys); !s)
    return Status::error(head + "not every rank joined (are all " + size +
                         " ranks running, with the same settings?): " + s.message());
  for (int r = 0; r < info.worldSize; ++r) {
    auto theirs = store.get(keys[size_t(r)]);
    if (!theirs)
      return theirs.status();
    if (std::string(theirs->begin(), theirs->end()) != size)
      return Status::error(head + "rank " + std::to_string(r) + " was started with a world "
                           "size of " + std::string(theirs->begin(), theirs->end()) +
                           ", this rank with " + size + ": every rank needs the same");
  }
  return Status::ok();
}

} // namespace

std::string formatDuration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms >= 1000 && ms % 1000 == 0)
    return std::to_string(ms / 1000) + " s";
  if (ms >= 1000 && ms % 100 == 0)
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
  return std::to_string(ms) + " ms";
}

Expected<std::unique_ptr<Store>> openStore(const RankInfo &info,
                                           std::chrono::milliseconds timeout) {
  const std::string who =
      "[rank " + std::to_string(info.rank) + "/" + std::to_string(info.worldSize) + "] ";
  std::unique_ptr<Store> store;
  if (!info.rendezvous.empty()) {
    auto files = FileStore::open(info.rendezvous, timeout);
    if (!files)
      return Status::error(who + files.message());
    store = std::make_unique<FileStore>(std::move(*files));
  } else if (info.storeAddr.empty() || info.storePort == 0) {
    return Status::error(who + "no place to meet the other ranks: set MASTER_ADDR and "
                               "MASTER_PORT (rank 0 serves the rendezvous store there), or "
                               "MT_RENDEZVOUS (a directory every rank reaches)");
  } else {
    auto tcp = TcpStore::connect(info, timeout);
    if (!tcp)
      return tcp.status();
    store = std::move(*tcp);
  }
  if (Status s = join(*store, info); !s)
    return s;
  return store;
}

} // namespace mt::comm
