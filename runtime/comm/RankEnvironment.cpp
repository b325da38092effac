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

Expected<int> parsePort(const char *name, const std::string &value) {
  auto port = parseInt(name, value, 1);
  if (port && *port > 65535)
    return Status::error(assignment(name, value) + " is not a TCP port (1..65535)");
  return port;
}

// Where rank 0 serves the TcpStore (RankInfo::storeAddr): the address and
// port, each from the first variable set, and the names they came from.
Status readStoreAddress(RankInfo &info) {
  const char *addr = lookup("MASTER_ADDR");
  std::string addrName = "MASTER_ADDR";
  if (addr) {
    info.storeAddr = addr;
  } else if (info.source == "slurm" && lookup("SLURM_JOB_NODELIST")) {
    info.storeAddr = firstSlurmHost(lookup("SLURM_JOB_NODELIST"));
    addrName = "SLURM_JOB_NODELIST";
  }
  std::string portName;
  if (const char *port = lookup("MT_STORE_PORT")) {
    auto parsed = parsePort("MT_STORE_PORT", port);
    if (!parsed)
      return parsed.status();
    info.storePort = *parsed, portName = "MT_STORE_PORT";
  } else if (const char *port = lookup("MASTER_PORT")) {
    auto parsed = parsePort("MASTER_PORT", port);
    if (!parsed)
      return parsed.status();
    // torchrun's agent serves its own (PyTorch) store on MASTER_PORT.
    const char *agent = lookup("TORCHELASTIC_USE_AGENT_STORE");
    bool taken = agent && std::string(agent) == "True";
    if (taken && *parsed == 65535)
      return Status::error("MASTER_PORT=65535 is torchrun's store, and the next port, which "
                           "rank 0 would serve on, does not exist: set MT_STORE_PORT");
    info.storePort = *parsed + (taken ? 1 : 0);
    portName = taken ? "MASTER_PORT+1" : "MASTER_PORT";
  } else if (const char *job = lookup("SLURM_JOB_ID"); job && info.source == "slurm") {
    std::string id = job;
    auto digits = parseInt("SLURM_JOB_ID", id.substr(id.size() > 4 ? id.size() - 4 : 0), 0);
    if (!digits)
      return digits.status();
    info.storePort = 15000 + *digits, portName = "SLURM_JOB_ID";
  }
  info.storeSource = addrName + ":" + (portName.empty() ? "MASTER_PORT" : portName);
  return Status::ok();
}

Status checkMeetingPlace(const RankInfo &info, const Style &style) {
  if (info.worldSize == 1 || !info.rendezvous.empty())
    return Status::ok();
  if (!info.storeAddr.empty() && info.storePort > 0)
    return Status::ok();
  std::string missing = info.storeAddr.empty() ? (info.source == "slurm"
                                                      ? "MASTER_ADDR (or SLURM_JOB_NODELIST)"
                                                      : "MASTER_ADDR")
                                               : "";
  if (info.storePort == 0)
    missing += std::string(missing.empty() ? "" : " and ") +
               (info.source == "slurm" ? "MASTER_PORT (or SLURM_JOB_ID)" : "MASTER_PORT");
  return Status::error(assignment(style.size, std::to_string(info.worldSize)) +
                       " needs a place where the ranks meet: " + missing +
                       " (rank 0 serves the rendezvous store there, over TCP), or "
                       "MT_RENDEZVOUS (a fresh directory on a file system every rank "
                       "reaches)");
}

} // namespace

std::string firstSlurmHost(const std::string &nodeList) {
  // The first entry ends at the first comma outside brackets.
  size_t open = nodeList.find('['), comma = nodeList.find(',');
  if (open == std::string::npos || (comma != std::string::npos && comma < open))
    return nodeList.substr(0, comma);
  size_t close = nodeList.find(']', open);
  if (close == std::string::npos)
    return {};
  std::string prefix = nodeList.substr(0, open);
  std::string range = nodeList.substr(open + 1, close - open - 1);
  std::string first = range.substr(0, range.find_first_of(",-"));
  if (first.empty())
    return {};
  std::string suffix = nodeList.substr(close + 1);
  return prefix + first + suffix.substr(0, suffix.find(','));
}

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
    if (Status s = readStoreAddress(*info); !s)
      return s;
    if (Status s = checkMeetingPlace(*info, style); !s)
      return s;
    return info;
  }
  RankInfo single;
  if (const char *host = lookup("MT_COMM_HOST"))
    single.host = host;
  return single;
}

} // namespace mt::comm
