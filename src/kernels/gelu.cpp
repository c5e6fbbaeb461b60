// GELU with the exact erf: y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 erfc(-x/sqrt 2).
//
// Accuracy: Phi is computed from erfc of a NON-NEGATIVE argument z = |x|/sqrt 2,
//   erfc(z) = t exp(-z^2 + P(t)),  t = 1 / (1 + z/2)
// (Numerical Recipes' erfcc, a Chebyshev fit with relative error < 1.2e-7 for all z >= 0), and
// Phi(x) = 0.5 erfc(z) for x < 0, 1 - 0.5 erfc(z) for x >= 0. Because erfc is evaluated
// directly, the negative tail keeps full RELATIVE accuracy (no 1 + erf cancellation), so
// gelu(x) and gelu'(x) are within ~3e-7 relative of the exact values for all x, better than
// 0.5 x (1 + std::erf(x / sqrt 2)) evaluated in fp32. z^2 = x^2/2 is split into hi + lo (FMA,
// exact) and fed to exp_sum so the large exponent costs no precision.
// gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
// The AVX-512 path and the portable scalar path run the same algorithm.
#include <cmath>

#include "core/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

// P(t) of erfcc, highest degree first.
constexpr float kP[10] = {0.17087277f, -0.82215223f, 1.48851587f,  -1.13520398f, 0.27886807f,
                          -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f,  -1.26551223f};
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
// Beyond |x| = 20, Phi is exactly 0 or 1 in fp32; clamping keeps x^2 finite (x = +-inf works).
constexpr float kClamp = 20.0f;

// ---- portable scalar path
struct PhiScalar {
  float Phi, phi;  // CDF and density at x
};
inline PhiScalar phi_scalar(float x, bool need_density) {
  const float xc = std::fmin(std::fmax(x, -kClamp), kClamp);
  // -x^2/2 = -(hi + lo), exact in double then split.
  const double u = 0.5 * static_cast<double>(xc) * static_cast<double>(xc);
  const float hi = static_cast<float>(u), lo = static_cast<float>(u - hi);
  const float z = std::fabs(xc) * kInvSqrt2;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = kP[0];
  for (int i = 1; i < 10; ++i) p = p * t + kP[i];
  const float erfc = t * exp_sum_scalar(-hi, p - lo);
  const float half = 0.5f * erfc;
  PhiScalar r;
  r.Phi = xc < 0.0f ? half : 1.0f - half;
  r.phi = need_density ? kInvSqrt2Pi * exp_sum_scalar(-hi, -lo) : 0.0f;
  if (std::isnan(x)) r.Phi = r.phi = x;
  return r;
}

void gelu_fwd_portable(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * phi_scalar(x[i], false).Phi;
}
void gelu_bwd_portable(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const PhiScalar r = phi_scalar(x[i], true);
    const float xc = std::fmin(std::fmax(x[i], -kClamp), kClamp);  // inf * 0 must not be NaN
    dx[i] = dy[i] * (r.Phi + xc * r.phi);
  }
}

// ---- AVX-512 path
SEQVIT_AVX512 SEQVIT_INLINE void phi_avx512(__m512 x, __m512& Phi, __m512* phi) {
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(kClamp), _mm512_max_ps(_mm512_set1_ps(-kClamp), x));
  const __m512 half = _mm512_set1_ps(0.5f);
  // u = x^2/2 = hi + lo exactly: x*x = h + l by FMA, halving is exact.
  const __m512 h = _mm512_mul_ps(xc, xc);
  const __m512 l = _mm512_fmsub_ps(xc, xc, h);
  const __m512 nhi = _mm512_mul_ps(h, _mm512_set1_ps(-0.5f));
  const __m512 nlo = _mm512_mul_ps(l, _mm512_set1_ps(-0.5f));
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(xc), _mm512_set1_ps(kInvSqrt2));
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(half, z, _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < 10; ++i) p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(kP[i]));
  const __m512 he = _mm512_mul_ps(half, _mm512_mul_ps(t, exp_sum(nhi, _mm512_add_ps(p, nlo))));
  const __mmask16 neg = _mm512_cmp_ps_mask(xc, _mm512_setzero_ps(), _CMP_LT_OQ);
  Phi = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), he), he);
  if (phi) *phi = _mm512_mul_ps(_mm512_set1_ps(kInvSqrt2Pi), exp_sum(nhi, nlo));
}

SEQVIT_AVX512 void gelu_fwd_avx512(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    __m512 Phi;
    phi_avx512(xv, Phi, nullptr);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(xv, Phi));  // NaN x propagates via x * Phi
  }
}

SEQVIT_AVX512 void gelu_bwd_avx512(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 dyv = _mm512_maskz_loadu_ps(m, dy + i);
    __m512 Phi, phi;
    phi_avx512(xv, Phi, &phi);
    // Clamped x in the density term: for |x| > 20 phi is 0, and inf * 0 must not give NaN.
    const __m512 xc =
        _mm512_min_ps(_mm512_set1_ps(kClamp), _mm512_max_ps(_mm512_set1_ps(-kClamp), xv));
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(dyv, _mm512_fmadd_ps(xc, phi, Phi)));
  }
}

}  // namespace

void gelu_forward(const float* x, float* y, int64_t n) {
  const auto fn = cpu_has_avx512() ? gelu_fwd_avx512 : gelu_fwd_portable;
  parallel_ranges(n, [&](int64_t i0, int64_t i1) { fn(x + i0, y + i0, i1 - i0); });
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  const auto fn = cpu_has_avx512() ? gelu_bwd_avx512 : gelu_bwd_portable;
  parallel_ranges(n, [&](int64_t i0, int64_t i1) { fn(x + i0, dy + i0, dx + i0, i1 - i0); });
}

}  // namespace seqvit::kernels
