#include "runtime/cuda/InstructionProfile.h"

#include "runtime/plan/OpRegistry.h"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <vector>

namespace mt::cuda {

const char *opClass(const std::string &op) {
  const plan::OpSignature *signature = plan::findOp(op);
  switch (signature ? signature->family : plan::OpFamily::Elementwise) {
  case plan::OpFamily::Gemm:
    return "GEMM (linear)";
  case plan::OpFamily::Attention:
    return "attention";
  case plan::OpFamily::Norm:
    return "norms";
  case plan::OpFamily::MoE:
    return "mixture of experts (router, permute, experts, shared-expert gate)";
  case plan::OpFamily::Loss:
    return "loss (cross-entropy)";
  case plan::OpFamily::Optimizer:
    return "optimizer";
  case plan::OpFamily::Fill:
    return "zero-fills";
  case plan::OpFamily::Collective:
    return "communication (NCCL)";
  case plan::OpFamily::Pipeline:
    return "pipeline transfers (NCCL; recv includes the wait)";
  case plan::OpFamily::Elementwise:
    break;
  }
  return "element-wise (rotary, swiglu, add, embedding)";
}

void InstructionProfile::record(const std::string &className, const std::string &op,
                                double deviceMs, double hostMs) {
  for (ProfileEntry *e : {&classes_[className], &ops_[op]}) {
    e->ms += deviceMs;
    e->hostMs += hostMs;
    e->launches += 1;
  }
}

void InstructionProfile::recordInGraph(const std::string &className, const std::string &op,
                                       double deviceMs) {
  record(className, op, deviceMs, 0.0);
  classes_[className].inGraph += 1;
  ops_[op].inGraph += 1;
}

void InstructionProfile::addWork(const std::string &className, double flops, double bytes) {
  if (auto entry = classes_.find(className); entry != classes_.end()) {
    entry->second.flops += flops;
    entry->second.bytes += bytes;
  }
}

namespace {

std::vector<std::pair<std::string, ProfileEntry>>
byTime(const std::map<std::string, ProfileEntry> &entries) {
  std::vector<std::pair<std::string, ProfileEntry>> rows(entries.begin(), entries.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto &a, const auto &b) { return a.second.ms > b.second.ms; });
  return rows;
}

} // namespace

std::string InstructionProfile::report(int topOps) const {
  const double wall = wall_, perStep = 1.0 / double(std::max<int64_t>(steps_, 1));
  double busy = 0;
  std::ostringstream out;
  out << std::fixed << "profile (CUDA events per instruction, mean over " << steps_
      << " steps after the first; inside the replayed CUDA graph where a program replays as "
         "one, else each instruction alone):\n";
  // The achieved rates of the roofline (plan/Roofline.h): model FLOPs and
  // the bytes each instruction moves at least, over the class's time.
  out << "  class                                           ms/step   share  launches/step"
         "   TFLOP/s      GB/s\n";
  auto line = [&](const std::string &name, const ProfileEntry &e) {
    out << "  " << std::left << std::setw(46) << name << std::right << std::setw(9)
        << std::setprecision(2) << e.ms * perStep << std::setw(7) << std::setprecision(1)
        << 100.0 * e.ms / wall << "%" << std::setw(10) << int64_t(e.launches * perStep);
    if (e.ms > 0 && e.bytes > 0)
      out << std::setw(15) << std::setprecision(1) << e.flops / e.ms / 1e9 << std::setw(10)
          << std::setprecision(0) << e.bytes / e.ms / 1e6;
    out << "\n";
  };
  for (const auto &[name, entry] : byTime(classes_)) {
    line(name, entry);
    busy += entry.ms;
  }
  line("host, launches and idle (wall - kernels)", {std::max(0.0, wall - busy)});
  line("wall (programs)", {wall});
  // Host time near the device's: the instruction waited for its launches or
  // for the device (e.g. a count read back), not for its kernels.
  out << "  ops by device time                              ms/step   share  launches/step"
         "   host ms/step\n";
  int shown = 0;
  for (const auto &[op, e] : byTime(ops_)) {
    if (shown++ == topOps)
      break;
    out << "  " << std::left << std::setw(46) << op << std::right << std::setw(9)
        << std::setprecision(2) << e.ms * perStep << std::setw(7) << std::setprecision(1)
        << 100.0 * e.ms / wall << "%" << std::setw(10) << int64_t(e.launches * perStep)
        << std::setw(15);
    if (e.inGraph == e.launches)
      out << "in graph" << "\n";
    else
      out << std::setprecision(2) << e.hostMs * perStep << "\n";
  }
  return out.str();
}

} // namespace mt::cuda
