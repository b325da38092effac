// The per-step metrics an mtrun --metrics file holds, for the equivalence
// tests that compare runs.
#ifndef MT_TEST_PARALLEL_METRICS_H
#define MT_TEST_PARALLEL_METRICS_H

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

namespace mt::test {

struct Step {
  double loss, gradNorm;
};

/// Every step's loss and gradient norm (JSON numbers round-trip a double exactly).
inline std::vector<Step> readMetrics(const std::string &path) {
  std::vector<Step> steps;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    steps.push_back({j["loss"].get<double>(), j["grad_norm"].get<double>()});
  }
  return steps;
}

} // namespace mt::test

#endif // MT_TEST_PARALLEL_METRICS_H
