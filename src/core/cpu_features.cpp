// Run-time CPU feature detection (see cpu_features.h).
#include "core/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace seqvit {
namespace {
bool forced_off() {
  const char* e = std::getenv("SEQVIT_NO_AVX512");
  return e && std::strcmp(e, "0") != 0 && e[0] != '\0';
}
}  // namespace

bool cpu_has_avx512() {
  static const bool has = !forced_off() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
}

bool cpu_has_avx512_bf16() {
  // GCC 12's __builtin_cpu_supports knows "avx512bf16".
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

}  // namespace seqvit
