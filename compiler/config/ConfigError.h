// The error text of the layout and option checks, shared by the flag
// resolver (ParallelConfig.cpp) and the Megatron option file's reader
// (ParallelConfigYaml.cpp).
#ifndef MT_COMPILER_CONFIG_CONFIGERROR_H
#define MT_COMPILER_CONFIG_CONFIGERROR_H

#include "runtime/support/Status.h"
#include "runtime/support/Wording.h"

#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mt::config {

/// Status::error of the arguments streamed one after another (numbers as
/// operator<< prints them).
template <typename... Args> Status fail(Args &&...args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return Status::error(os.str());
}

/// Several errors told as one: none is ok, one is itself, more are
/// "<count> <noun>s<suffix>:" then each on its own indented line ("2 layout
/// errors:", "6 errors in FILE:").
inline Status errorList(const std::vector<std::string> &errors, const std::string &noun,
                        const std::string &suffix = "") {
  if (errors.size() <= 1)
    return errors.empty() ? Status::ok() : Status::error(errors.front());
  std::string message = countOf(int64_t(errors.size()), noun) + suffix + ":";
  for (const std::string &e : errors)
    message += "\n  " + e;
  return Status::error(message);
}

} // namespace mt::config

#endif // MT_COMPILER_CONFIG_CONFIGERROR_H
