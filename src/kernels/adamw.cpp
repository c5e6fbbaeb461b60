// AdamW step, operation for operation as PyTorch's single-tensor CPU AdamW
// (torch/optim/adamw.py, _single_tensor_adamw), so results match it to the last bit when the
// hyper-parameters are the same floats:
//   p *= 1 - lr wd                               (scalar computed in double, applied in fp32)
//   m  = lerp(m, g, 1 - b1)                      (ATen lerp: m + w (g - m) for w < 0.5)
//   v  = v b2 + (1 - b2) g g                     (addcmul: v + ((1 - b2) g) g)
//   p += (-lr / (1 - b1^step)) m / (sqrt(v) / sqrt(1 - b2^step) + eps)   (addcdiv)
// The bias corrections are scalars computed in double, as Python does. Both paths use only
// correctly-rounded IEEE operations in the same order (no FMA), so they are bit-identical.
#include <cmath>

#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

struct AdamScalars {
  float decay;      // 1 - lr wd
  float w1;         // 1 - beta1 (lerp weight)
  float beta2, one_minus_beta2;
  float neg_step;   // -lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float eps;
};

// One element; the portable path runs this, the AVX-512 path the same operations in vectors.
// (The compiler cannot auto-vectorise std::sqrt here without -fno-math-errno, hence intrinsics.)
SEQVIT_INLINE void adamw_elem(float& p, float g, float& m, float& v, const AdamScalars& s) {
  const float mi = s.w1 < 0.5f ? m + s.w1 * (g - m) : g - (g - m) * (1.0f - s.w1);
  const float vi = v * s.beta2 + s.one_minus_beta2 * g * g;
  const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
  p = p * s.decay + s.neg_step * mi / denom;
  m = mi;
  v = vi;
}

void adamw_portable(float* p, const float* g, float* m, float* v, int64_t n, AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) adamw_elem(p[i], g[i], m[i], v[i], s);
}

SEQVIT_AVX512 void adamw_avx512(float* p, const float* g, float* m, float* v, int64_t n,
                                AdamScalars s) {
  const bool small_w = s.w1 < 0.5f;
  const __m512 decay = _mm512_set1_ps(s.decay), w1 = _mm512_set1_ps(s.w1),
               w1c = _mm512_set1_ps(1.0f - s.w1), b2 = _mm512_set1_ps(s.beta2),
               omb2 = _mm512_set1_ps(s.one_minus_beta2), nstep = _mm512_set1_ps(s.neg_step),
               bc2 = _mm512_set1_ps(s.bc2_sqrt), eps = _mm512_set1_ps(s.eps);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 gi = _mm512_loadu_ps(g + i), m0 = _mm512_loadu_ps(m + i);
    const __m512 gm = _mm512_sub_ps(gi, m0);
    const __m512 mi = small_w ? _mm512_add_ps(m0, _mm512_mul_ps(w1, gm))
                              : _mm512_sub_ps(gi, _mm512_mul_ps(gm, w1c));
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2),
                                    _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    const __m512 pi = _mm512_mul_ps(_mm512_loadu_ps(p + i), decay);
    _mm512_storeu_ps(p + i, _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(nstep, mi), denom)));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
  }
  for (; i < n; ++i) adamw_elem(p[i], g[i], m[i], v[i], s);
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  // p[n], g[n], m[n], v[n]
  SEQVIT_CHECK(step >= 1, "adamw_step: step={} must be >= 1 (1-based)", step);
  SEQVIT_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f,
               "adamw_step: betas ({}, {}) must be in [0, 1)", beta1, beta2);
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  AdamScalars s;
  s.decay = static_cast<float>(1.0 - lr_d * weight_decay);
  s.w1 = static_cast<float>(1.0 - b1);
  s.beta2 = beta2;
  s.one_minus_beta2 = static_cast<float>(1.0 - b2);
  s.neg_step = static_cast<float>(-(lr_d / (1.0 - std::pow(b1, static_cast<double>(step)))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(b2, static_cast<double>(step))));
  s.eps = eps;
  const auto fn = cpu_has_avx512() ? adamw_avx512 : adamw_portable;
  parallel_ranges(n, [&](int64_t i0, int64_t i1) {
    fn(p + i0, g + i0, m + i0, v + i0, i1 - i0, s);
  });
}

}  // namespace seqvit::kernels
