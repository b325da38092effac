// The error text of the layout and option checks, shared by the flag
// resolver (ParallelConfig.cpp) and the Megatron option file's reader
// (ParallelConfigYaml.cpp).
#ifndef MT_COMPILER_CONFIG_CONFIGERROR_H
#define MT_COMPILER_CONFIG_CONFIGERROR_H

#include "runtime/support/Status.h"

#include <sstream>
#include <utility>

namespace mt::config {

/// Status::error of the arguments streamed one after another (numbers as
/// operator<< prints them).
template <typename... Args> Status fail(Args &&...args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return Status::error(os.str());
}

} // namespace mt::config

#endif // MT_COMPILER_CONFIG_CONFIGERROR_H
