// mt::Status and mt::Expected<T>: how library code reports failure. Only
// tools/ decide to print and exit.
#ifndef MT_RUNTIME_SUPPORT_STATUS_H
#define MT_RUNTIME_SUPPORT_STATUS_H

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mt {

class [[nodiscard]] Status {
public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) {
    Status s;
    s.message_ = std::move(message);
    return s;
  }
  bool isOk() const { return !message_; }
  explicit operator bool() const { return isOk(); }
  const std::string &message() const {
    assert(message_ && "message() of an ok Status");
    return *message_;
  }

private:
  std::optional<std::string> message_;
};

template <typename T> class [[nodiscard]] Expected {
public:
  Expected(T value) : state_(std::move(value)) {}
  Expected(Status error) : state_(std::move(error)) {
    assert(!std::get<Status>(state_).isOk() && "Expected from an ok Status");
  }
  bool isOk() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return isOk(); }
  T &operator*() { return std::get<T>(state_); }
  const T &operator*() const { return std::get<T>(state_); }
  T *operator->() { return &std::get<T>(state_); }
  const T *operator->() const { return &std::get<T>(state_); }
  const Status &status() const { return std::get<Status>(state_); }
  const std::string &message() const { return status().message(); }

private:
  std::variant<T, Status> state_;
};

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_STATUS_H
