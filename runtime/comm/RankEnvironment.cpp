// rankFromEnvironment: which rank this process is, from the variables that
// mtrun --nproc, torchrun, Slurm or OpenMPI set.
#include "runtime/comm/RankEnvironment.h"

#include <charconv>
#include <cstdlib>

namespace mt::comm {

namespace {

// One launcher's names for (rank, world size, local rank), by precedence.
struct Style {
  const char *source, *rank, *size, *localRank;
};
constexpr Style kStyles[] = {
    {"mtrun", "MT_RANK", "MT_WORLD_SIZE", "MT_LOCAL_RANK"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
};

const char *lookup(const char *name) { return std::getenv(name); }

std::string assignment(const char *name, const std::string &value) {
  return std::string(name) + "=" + value;
}

// A whole-string decimal integer >= minValue (no sign, spaces or suffix).
Expected<int> parseInt(const char *name, const std::string &value, int minValue) {
  int result = 0;
  const char *end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, result);
  if (value.empty() || ec != std::errc() || ptr != end || result < minValue)
    return Status::error(std::string(name) + "='" + value + "' is not " +
                         (minValue > 0 ? "a positive integer" : "a non-negative integer"));
  return result;
}

Expected<RankInfo> fromStyle(const Style &style) {
  const char *names[] = {style.rank, style.size, style.localRank};
  std::string present, missing;
  for (const char *name : names) {
    if (const char *v = lookup(name))
      present += (present.empty() ? "" : ", ") + assignment(name, v);
    else
      missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  if (!missing.empty())
    return Status::error(std::string(style.source) + " rank variables are incomplete: " +
                         present + " set, " + missing + " missing");
  auto rank = parseInt(style.rank, lookup(style.rank), 0);
  auto size = parseInt(style.size, lookup(style.size), 1);
  auto local = parseInt(style.localRank, lookup(style.localRank), 0);
  for (auto *value : {&rank, &size, &local})
    if (!*value)
      return value->status();
  if (*rank >= *size)
    return Status::error(assignment(style.rank, std::to_string(*rank)) +
                         " is not less than " + assignment(style.size, std::to_string(*size)));
  if (*local >= *size)
    return Status::error(assignment(style.localRank, std::to_string(*local)) +
                         " is not less than " + assignment(style.size, std::to_string(*size)));
  RankInfo info;
  info.rank = *rank;
  info.worldSize = *size;
  info.localRank = *local;
  info.source = style.source;
  return info;
}

// torchrun's rendezvous address, kept for the message that explains why it
// cannot be used.
Status readMaster(RankInfo &info) {
  if (const char *addr = lookup("MASTER_ADDR"))
    info.masterAddr = addr;
  if (const char *port = lookup("MASTER_PORT")) {
    auto parsed = parseInt("MASTER_PORT", port, 1);
    if (!parsed)
      return parsed.status();
    if (*parsed > 65535)
      return Status::error(assignment("MASTER_PORT", port) + " is not a TCP port");
    info.masterPort = *parsed;
  }
  return Status::ok();
}

Status checkRendezvous(const RankInfo &info, const Style &style) {
  if (info.worldSize == 1 || !info.rendezvous.empty())
    return Status::ok();
  std::string need = assignment(style.size, std::to_string(info.worldSize)) +
                     " needs MT_RENDEZVOUS: a directory that every rank can reach (on a "
                     "filesystem shared by all nodes), fresh for each job";
  if (info.source == "torchrun")
    return Status::error(need + "; the Gloo used here has no TCP store, so ranks cannot meet "
                                "at MASTER_ADDR:MASTER_PORT (" +
                         (info.masterAddr.empty() ? "unset" : info.masterAddr) + ":" +
                         std::to_string(info.masterPort) + ")");
  return Status::error(need);
}

} // namespace

Expected<RankInfo> rankFromEnvironment() {
  for (const Style &style : kStyles) {
    if (!lookup(style.rank) && !lookup(style.size))
      continue;
    auto info = fromStyle(style);
    if (!info)
      return info;
    if (const char *dir = lookup("MT_RENDEZVOUS"))
      info->rendezvous = dir;
    if (const char *host = lookup("MT_COMM_HOST"))
      info->host = host;
    if (info->source == "torchrun")
      if (Status s = readMaster(*info); !s)
        return s;
    if (Status s = checkRendezvous(*info, style); !s)
      return s;
    return info;
  }
  RankInfo single;
  if (const char *host = lookup("MT_COMM_HOST"))
    single.host = host;
  return single;
}

} // namespace mt::comm
