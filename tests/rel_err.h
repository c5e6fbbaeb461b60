// The error measure of every comparison with a reference in the tests: the norm-wise relative
// error ||a - ref|| / ||ref|| (a NaN or Inf in `a` makes it infinite).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace seqvit_test {

inline double rel_err(const float* a, const float* ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += std::isfinite(d) ? d * d : INFINITY;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

inline double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  return rel_err(a.data(), ref.data(), static_cast<int64_t>(std::min(a.size(), ref.size())));
}

}  // namespace seqvit_test
