// The per-step metrics an mtrun --metrics file holds, for the equivalence
// tests that compare runs.
#ifndef MT_TEST_PARALLEL_METRICS_H
#define MT_TEST_PARALLEL_METRICS_H

#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace mt::test {

struct Step {
  double loss, gradNorm;
  /// Mixture-of-experts plans: the loss's language-model and load-balancing
  /// terms, and with a router z-loss its z term.
  std::optional<double> lmLoss, auxLoss, zLoss;
};

/// Every step's loss and gradient norm, and its lm_loss, aux_loss and
/// z_loss where written (JSON numbers round-trip a double exactly).
inline std::vector<Step> readMetrics(const std::string &path) {
  std::vector<Step> steps;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    Step s{j["loss"].get<double>(), j["grad_norm"].get<double>(), {}, {}, {}};
    if (j.contains("lm_loss"))
      s.lmLoss = j["lm_loss"].get<double>();
    if (j.contains("aux_loss"))
      s.auxLoss = j["aux_loss"].get<double>();
    if (j.contains("z_loss"))
      s.zLoss = j["z_loss"].get<double>();
    steps.push_back(s);
  }
  return steps;
}

} // namespace mt::test

#endif // MT_TEST_PARALLEL_METRICS_H
