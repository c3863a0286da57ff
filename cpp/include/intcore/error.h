// Errors the engine raises on bad arguments. The bindings map kType to Python's TypeError and
// kValue to ValueError, so every message must name the argument and say what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace intcore {

enum class ErrorKind { kType, kValue };

class Error : public std::invalid_argument {
 public:
  Error(ErrorKind kind, const std::string& message) : std::invalid_argument(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void throw_type_error(const std::string& message) {
  throw Error(ErrorKind::kType, message);
}
[[noreturn]] inline void throw_value_error(const std::string& message) {
  throw Error(ErrorKind::kValue, message);
}

}  // namespace intcore
