// Shared by the attention kernel tests: a [B][Hh][n][d] double copy of a strided tensor, the
// layout the tests compare kernels and the oracle in, and their error measure.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "rel_err.h"

namespace seqvit_test {

inline std::vector<double> to_bhnd(const seqvit::kernels::StridedTensor& t, int64_t B,
                                   int64_t Hh, int64_t n, int64_t d) {
  std::vector<double> x(static_cast<size_t>(B * Hh * n * d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hh; ++h)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < d; ++c)
          x[((b * Hh + h) * n + i) * d + c] = t.data[b * t.sb + i * t.sn + h * t.sh + c];
  return x;
}

// rel_err with the reference norm floored at 1e-3 * sqrt(n), so that a reference that is exactly
// zero (dQ, dK with a single key) is compared in absolute terms.
inline RelErr attention_err(const std::vector<double>& x, const std::vector<double>& ref) {
  return rel_err(x, ref, 1e-3 * std::sqrt(static_cast<double>(ref.size())));
}

}  // namespace seqvit_test
