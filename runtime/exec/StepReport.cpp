// The log line and metrics line of a training step.
#include "runtime/exec/StepReport.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace mt::exec {
namespace {

/// "nan", "inf" or "-inf": how both the log and the metrics file spell a
/// value that is not finite (NaN's sign is meaningless).
std::string nonFiniteText(double v) {
  return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

/// `v` as JSON with a space after each ':' and ',' (as Python's json.dumps).
std::string jsonText(const nlohmann::ordered_json &v) {
  if (!v.is_object())
    return v.dump();
  std::string text = "{";
  for (const auto &[key, value] : v.items())
    text += (text.size() > 1 ? ", " : "") + nlohmann::json(key).dump() + ": " + jsonText(value);
  return text + "}";
}

/// `v` with `precision` decimals, or its nonFiniteText.
std::string fixed(double v, int precision) {
  if (!std::isfinite(v))
    return nonFiniteText(v);
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

} // namespace

Status openMetrics(std::ofstream &out, const std::string &path,
                   const std::vector<std::string> &kept) {
  // A non-blocking open of a FIFO for writing fails at once (ENXIO) where
  // nothing reads it; while it is held, a reader sees no end of file, so
  // the stream's (blocking) open below finds the reader still there.
  int probe = -1;
  if (struct stat st {}; ::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) {
    probe = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (probe < 0 && errno == ENXIO)
      return Status::error("--metrics " + path + ": a FIFO that no program reads: writing to "
                           "it would wait for a reader; start the program that reads it "
                           "first, or give a regular file");
    if (probe < 0)
      return Status::error("--metrics " + path + ": cannot open the FIFO: " +
                           std::strerror(errno));
  }
  out.open(path, std::ios::trunc);
  if (probe >= 0)
    ::close(probe);
  for (const std::string &line : kept)
    out << line << "\n";
  if (!out)
    return Status::error(path + ": cannot write the metrics file");
  return Status::ok();
}

void writeMetrics(std::ofstream &out, const StepRecord &r, int64_t tokens) {
  nlohmann::ordered_json j, nonFinite = nlohmann::ordered_json::object();
  auto number = [&](const char *key, double v) {
    if (std::isfinite(v))
      j[key] = v;
    else
      j[key] = nullptr, nonFinite[key] = nonFiniteText(v);
  };
  j["step"] = r.step;
  number("loss", r.loss.loss);
  if (r.loss.lmLoss)
    number("lm_loss", *r.loss.lmLoss), number("aux_loss", *r.loss.auxLoss);
  if (r.loss.zLoss)
    number("z_loss", *r.loss.zLoss);
  number("grad_norm", r.gradNorm);
  number("lr", r.lr);
  j["tokens"] = tokens;
  number("tokens_per_s", std::round(r.tokensPerSecond * 10) / 10);
  j["skipped"] = r.skipped;
  if (r.skipped)
    j["skip_reason"] = r.skipReason;
  if (!nonFinite.empty())
    j["non_finite"] = nonFinite;
  out << jsonText(j) << "\n";
  out.flush();
}

void report(std::ostream &log, const StepRecord &r, int64_t last, double etaSeconds,
            bool bar) {
  std::ostringstream line;
  line << "step " << r.step << "/" << last << "  loss " << fixed(r.loss.loss, 4);
  if (r.loss.lmLoss)
    line << " (lm " << fixed(*r.loss.lmLoss, 4) << ", aux " << fixed(*r.loss.auxLoss, 4)
         << (r.loss.zLoss ? ", z " + fixed(*r.loss.zLoss, 4) : std::string()) << ")";
  line << "  grad_norm " << fixed(r.gradNorm, 3) << "  lr " << std::scientific
       << std::setprecision(2) << r.lr << std::fixed << "  " << std::setprecision(0) << r.tokensPerSecond << " tok/s  ETA "
       << std::setprecision(0) << etaSeconds << " s";
  if (r.skipped)
    line << "  SKIPPED (" << r.skipReason << ")";
  if (bar) {
    int width = 24, done = int(width * double(r.step) / double(last));
    log << "\r[" << std::string(done, '#') << std::string(width - done, '.') << "] "
        << line.str() << "   " << std::flush;
    if (r.step == last)
      log << "\n";
  } else {
    log << line.str() << "\n";
  }
}

} // namespace mt::exec
