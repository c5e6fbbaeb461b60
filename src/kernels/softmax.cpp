// Row softmax (max-subtracted, so exp never overflows) and its backward
// dx = y (dy - sum_f dy y). Rows run in parallel; within a row the AVX-512 path uses the vector
// exp of simd.h, the portable path its scalar twin (same algorithm, ~2 ulp).
#include <cmath>

#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

// Each row function returns the row's log-sum-exp, max + log(sum exp(x - max)).
float softmax_row_portable(const float* x, float* y, int64_t F) {
  float m = x[0];
  for (int64_t f = 1; f < F; ++f) m = std::max(m, x[f]);  // NaN in x propagates through exp
  float s = 0.0f;
  for (int64_t f = 0; f < F; ++f) {
    y[f] = exp_scalar(x[f] - m);
    s += y[f];
  }
  const float inv = 1.0f / s;
  for (int64_t f = 0; f < F; ++f) y[f] *= inv;
  return m + std::log(s);
}

SEQVIT_AVX512 float softmax_row_avx512(const float* x, float* y, int64_t F) {
  auto mask = [F](int64_t f) {
    return F - f >= 16 ? __mmask16(0xffff) : __mmask16((1u << (F - f)) - 1);
  };
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 mv = ninf;
  for (int64_t f = 0; f < F; f += 16)
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, mask(f), x + f));
  const float mx = _mm512_reduce_max_ps(mv);
  const __m512 m = _mm512_set1_ps(mx);
  __m512 sv = _mm512_setzero_ps();
  for (int64_t f = 0; f < F; f += 16) {
    const __mmask16 k = mask(f);
    const __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + f), m)));
    sv = _mm512_add_ps(sv, e);
    _mm512_mask_storeu_ps(y + f, k, e);
  }
  const float sum = _mm512_reduce_add_ps(sv);
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
  for (int64_t f = 0; f < F; f += 16) {
    const __mmask16 k = mask(f);
    _mm512_mask_storeu_ps(y + f, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + f), inv));
  }
  return mx + std::log(sum);
}

SEQVIT_INLINE void softmax_bwd_row_body(const float* y, const float* dy, float* dx, int64_t F) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t f = 0; f < F; ++f) s += dy[f] * y[f];
  for (int64_t f = 0; f < F; ++f) dx[f] = y[f] * (dy[f] - s);
}
SEQVIT_AVX512 void softmax_bwd_row_avx512(const float* y, const float* dy, float* dx, int64_t F) {
  softmax_bwd_row_body(y, dy, dx, F);
}
void softmax_bwd_row_portable(const float* y, const float* dy, float* dx, int64_t F) {
  softmax_bwd_row_body(y, dy, dx, F);
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse) {
  // x[T,F] -> y[T,F] (y may alias x), lse[T] if given
  SEQVIT_CHECK(T >= 0 && F > 0, "softmax_forward: bad shape T={} F={}", T, F);
  const auto row = cpu_has_avx512() ? softmax_row_avx512 : softmax_row_portable;
  parallel_rows(T, F, [&](int64_t t) {
    const float l = row(x + t * F, y + t * F, F);
    if (lse) lse[t] = l;
  });
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t T, int64_t F) {
  // y[T,F], dy[T,F] -> dx[T,F] (dx may alias dy)
  SEQVIT_CHECK(T >= 0 && F > 0, "softmax_backward: bad shape T={} F={}", T, F);
  const auto row = cpu_has_avx512() ? softmax_bwd_row_avx512 : softmax_bwd_row_portable;
  parallel_rows(T, F, [&](int64_t t) { row(y + t * F, dy + t * F, dx + t * F, F); });
}

}  // namespace seqvit::kernels
