// Errors and checks. User-facing problems (bad configuration, bad files, bad shapes) throw
// seqvit::Error with a message that names the offending value and what would be valid; main()
// catches it once. SEQVIT_CHECK is for preconditions that are always checked (cheap).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace seqvit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace seqvit

// SEQVIT_CHECK(cond, "fmt {}", args...): throw seqvit::Error naming the call site if !cond.
#define SEQVIT_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      throw ::seqvit::Error(::fmt::format(__VA_ARGS__) + " [" #cond " at " +             \
                            std::string(__FILE__) + ":" + std::to_string(__LINE__) + "]"); \
    }                                                                                    \
  } while (0)
