// LayerNorm over the last dimension, forward and backward, PyTorch semantics:
//   mean = sum x / D, var = sum (x - mean)^2 / D (biased, two-pass), rstd = 1 / sqrt(var + eps),
//   y = (x - mean) rstd gamma + beta.
// Backward, with xhat = (x - mean) rstd and g = dy gamma:
//   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dgamma += sum_t dy xhat,  dbeta += sum_t dy.
// Rows run in parallel. dgamma/dbeta are reduced race-free and deterministically: rows are cut
// into a fixed number of chunks (simd.h), each chunk accumulates its own double partials, and
// the partials are summed in chunk order, so the result is identical for any thread count.
// Row bodies are written once and compiled as portable and AVX-512 clones (run-time dispatch).
#include <cmath>

#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

// One row: x[D] -> y[D], returns mean and rstd.
SEQVIT_INLINE void ln_fwd_row_body(const float* x, const float* gamma, const float* beta,
                                   float* y, float* mean_out, float* rstd_out, int64_t D,
                                   float eps) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < D; ++i) s += x[i];
  const float mean = s / static_cast<float>(D);
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < D; ++i) {
    const float c = x[i] - mean;
    ss += c * c;
  }
  const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
  for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
  *mean_out = mean;
  *rstd_out = rstd;
}

// One row of the backward; dg/db are this chunk's double partials.
SEQVIT_INLINE void ln_bwd_row_body(const float* dy, const float* x, const float* gamma,
                                   float mean, float rstd, float* dx, double* dg, double* db,
                                   int64_t D, bool accumulate_dx) {
  // One pass for the row sums and this chunk's dgamma/dbeta partials.
  float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t i = 0; i < D; ++i) {
    const float xhat = (x[i] - mean) * rstd;
    const float g = dy[i] * gamma[i];
    sum_g += g;
    sum_gx += g * xhat;
    dg[i] += static_cast<double>(dy[i] * xhat);
    db[i] += static_cast<double>(dy[i]);
  }
  const float mg = sum_g / static_cast<float>(D), mgx = sum_gx / static_cast<float>(D);
  if (accumulate_dx) {
    for (int64_t i = 0; i < D; ++i)
      dx[i] += rstd * (dy[i] * gamma[i] - mg - (x[i] - mean) * rstd * mgx);
  } else {
    for (int64_t i = 0; i < D; ++i)
      dx[i] = rstd * (dy[i] * gamma[i] - mg - (x[i] - mean) * rstd * mgx);
  }
}

SEQVIT_AVX512 void ln_fwd_row_avx512(const float* x, const float* gamma, const float* beta,
                                     float* y, float* mean, float* rstd, int64_t D, float eps) {
  ln_fwd_row_body(x, gamma, beta, y, mean, rstd, D, eps);
}
void ln_fwd_row_portable(const float* x, const float* gamma, const float* beta, float* y,
                         float* mean, float* rstd, int64_t D, float eps) {
  ln_fwd_row_body(x, gamma, beta, y, mean, rstd, D, eps);
}
SEQVIT_AVX512 void ln_bwd_row_avx512(const float* dy, const float* x, const float* gamma,
                                     float mean, float rstd, float* dx, double* dg, double* db,
                                     int64_t D, bool acc) {
  ln_bwd_row_body(dy, x, gamma, mean, rstd, dx, dg, db, D, acc);
}
void ln_bwd_row_portable(const float* dy, const float* x, const float* gamma, float mean,
                         float rstd, float* dx, double* dg, double* db, int64_t D, bool acc) {
  ln_bwd_row_body(dy, x, gamma, mean, rstd, dx, dg, db, D, acc);
}

}  // namespace

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t T, int64_t D, float eps) {
  // x[T,D], gamma[D], beta[D] -> y[T,D], mean[T], rstd[T]
  SEQVIT_CHECK(T >= 0 && D > 0, "layernorm_forward: bad shape T={} D={}", T, D);
  SEQVIT_CHECK(eps >= 0.0f, "layernorm_forward: eps={} must be >= 0", eps);
  const auto row = cpu_has_avx512() ? ln_fwd_row_avx512 : ln_fwd_row_portable;
  parallel_rows(T, D, [&](int64_t t) {
    row(x + t * D, gamma, beta, y + t * D, mean + t, rstd + t, D, eps);
  });
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                        const float* rstd, float* dx, float* dgamma, float* dbeta, int64_t T,
                        int64_t D, bool accumulate_dx) {
  // dy[T,D], x[T,D], gamma[D], mean[T], rstd[T] -> dx[T,D]; dgamma[D] +=, dbeta[D] +=
  SEQVIT_CHECK(T >= 0 && D > 0, "layernorm_backward: bad shape T={} D={}", T, D);
  if (T == 0) return;
  const auto row = cpu_has_avx512() ? ln_bwd_row_avx512 : ln_bwd_row_portable;
  const Chunking ch = chunk_rows(T, D);
  thread_local std::vector<double> buf;
  double* partial = scratch(buf, ch.n_chunks * 2 * D);  // partial[chunk, {dgamma, dbeta}, D]
  parallel_rows(ch.n_chunks, ch.rows_per_chunk * D, [&](int64_t c) {
    double* dg = partial + c * 2 * D;
    double* db = dg + D;
    std::fill(dg, dg + 2 * D, 0.0);
    const int64_t t1 = std::min(T, (c + 1) * ch.rows_per_chunk);
    for (int64_t t = c * ch.rows_per_chunk; t < t1; ++t)
      row(dy + t * D, x + t * D, gamma, mean[t], rstd[t], dx + t * D, dg, db, D, accumulate_dx);
  });
  sum_chunk_partials(partial, ch.n_chunks, 2 * D, 2 * D);
  for (int64_t i = 0; i < D; ++i) {
    dgamma[i] += static_cast<float>(partial[i]);
    dbeta[i] += static_cast<float>(partial[D + i]);
  }
}

}  // namespace seqvit::kernels
