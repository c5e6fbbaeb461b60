#include "backend/cuda/require.h"

#include <fmt/format.h>

#include <string>

#include "core/check.h"

namespace seqvit::backend::cuda {

std::string describe_call(const char* op, const char* names,
                          std::initializer_list<int64_t> values) {
  std::string s = std::string(op) + "(";
  const std::string n = names ? names : "";
  size_t at = 0;
  bool first = true;
  for (int64_t v : values) {
    const size_t comma = n.find(',', at);
    const std::string name = n.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    at = comma == std::string::npos ? n.size() : comma + 1;
    s += fmt::format("{}{}={}", first ? "" : ", ", name, v);
    first = false;
  }
  return s + ")";
}

void bad_arguments(const char* op, const char* what, const char* names,
                   std::initializer_list<int64_t> values) {
  throw Error(describe_call(op, names, values) + ": " + what);
}

}  // namespace seqvit::backend::cuda
