// Elementwise and bias kernels. Each loop body is written once (always_inline) and compiled
// twice: a portable x86-64 clone and an AVX-512 clone picked at run time. They are IEEE
// add/multiply only (no FMA contraction under -std=c++20), so both clones give bit-identical
// results; only sum_squares' vector reduction order differs between them.
// Reductions (bias_backward, sum_squares) use the fixed chunking of simd.h, so their results do
// not depend on the thread count.
#include <cstring>

#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

SEQVIT_INLINE void add_inplace_body(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}
SEQVIT_INLINE void add_body(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
SEQVIT_INLINE void scale_body(float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}
SEQVIT_INLINE double sum_squares_body(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}
// acc[f] += dy[f] in double (bias gradient partial over one row).
SEQVIT_INLINE void acc_row_body(double* acc, const float* dy, int64_t F) {
  for (int64_t f = 0; f < F; ++f) acc[f] += dy[f];
}

// Two clones of each body: NAME_avx512 and NAME_portable.
#define SEQVIT_CLONES(ret, name, params, args)            \
  SEQVIT_AVX512 ret name##_avx512 params { return name##_body args; } \
  ret name##_portable params { return name##_body args; }

SEQVIT_CLONES(void, add_inplace, (float* y, const float* x, int64_t n), (y, x, n))
SEQVIT_CLONES(void, add, (const float* a, const float* b, float* y, int64_t n), (a, b, y, n))
SEQVIT_CLONES(void, scale, (float* y, float s, int64_t n), (y, s, n))
SEQVIT_CLONES(double, sum_squares, (const float* x, int64_t n), (x, n))
SEQVIT_CLONES(void, acc_row, (double* acc, const float* dy, int64_t F), (acc, dy, F))
#undef SEQVIT_CLONES

template <typename Fn>
Fn pick(Fn avx512, Fn portable) {
  return cpu_has_avx512() ? avx512 : portable;
}

}  // namespace

void broadcast_rows(float* y, const float* b, int64_t T, int64_t F) {
  SEQVIT_CHECK(T >= 0 && F >= 0, "broadcast_rows: bad shape T={} F={}", T, F);
  parallel_rows(T, F, [&](int64_t t) {
    std::memcpy(y + t * F, b, static_cast<size_t>(F) * sizeof(float));
  });
}

void bias_backward(const float* dy, float* db, int64_t T, int64_t F) {
  // dy[T,F] -> db[F] +=. Chunk partials in double: partial[c,F].
  SEQVIT_CHECK(T >= 0 && F >= 0, "bias_backward: bad shape T={} F={}", T, F);
  if (T == 0 || F == 0) return;
  const auto acc_row = pick(acc_row_avx512, acc_row_portable);
  const Chunking ch = chunk_rows(T, F);
  thread_local std::vector<double> buf;
  double* partial = scratch(buf, ch.n_chunks * F);
  auto do_chunk = [&](int64_t c) {
    double* acc = partial + c * F;
    std::fill(acc, acc + F, 0.0);
    const int64_t t1 = std::min(T, (c + 1) * ch.rows_per_chunk);
    for (int64_t t = c * ch.rows_per_chunk; t < t1; ++t) acc_row(acc, dy + t * F, F);
  };
  parallel_rows(ch.n_chunks, ch.rows_per_chunk * F, do_chunk);
  sum_chunk_partials(partial, ch.n_chunks, F, F);
  for (int64_t f = 0; f < F; ++f) db[f] += static_cast<float>(partial[f]);
}

void add_inplace(float* y, const float* x, int64_t n) {
  const auto fn = pick(add_inplace_avx512, add_inplace_portable);
  parallel_ranges(n, [&](int64_t i0, int64_t i1) { fn(y + i0, x + i0, i1 - i0); });
}

void add(const float* a, const float* b, float* y, int64_t n) {
  const auto fn = pick(add_avx512, add_portable);
  parallel_ranges(n, [&](int64_t i0, int64_t i1) { fn(a + i0, b + i0, y + i0, i1 - i0); });
}

void scale_inplace(float* y, float s, int64_t n) {
  const auto fn = pick(scale_avx512, scale_portable);
  parallel_ranges(n, [&](int64_t i0, int64_t i1) { fn(y + i0, s, i1 - i0); });
}

double sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const auto fn = pick(sum_squares_avx512, sum_squares_portable);
  const Chunking ch = chunk_rows(n);  // fixed element chunks -> thread-count independent
  double partial[kReduceChunks];
  parallel_rows(ch.n_chunks, ch.rows_per_chunk, [&](int64_t c) {
    const int64_t i0 = c * ch.rows_per_chunk, i1 = std::min(n, i0 + ch.rows_per_chunk);
    partial[c] = fn(x + i0, i1 - i0);
  });
  double s = 0.0;
  for (int64_t c = 0; c < ch.n_chunks; ++c) s += partial[c];
  return s;
}

}  // namespace seqvit::kernels
