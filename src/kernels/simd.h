// Private helpers shared by the CPU kernels (not part of the ops.h contract):
//  - SEQVIT_AVX512: the target attribute for AVX-512 clones, chosen at run time through
//    cpu_features.h (the baseline build stays portable x86-64);
//  - a vector exp (AVX-512) and its scalar twin, same algorithm, so both paths agree to fp32
//    rounding;
//  - fixed row chunking for deterministic reductions (independent of the thread count).
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

// GCC 12 warns "__Y may be used uninitialized" inside its own AVX-512 intrinsic headers
// (_mm512_undefined_ps, GCC bug 105593, fixed in 13); the warning is a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define SEQVIT_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")))
#define SEQVIT_INLINE inline __attribute__((always_inline))

namespace seqvit::kernels::detail {

// Cody-Waite split of ln 2 (Cephes): n * kLn2Hi is exact for |n| < 2^11.
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
// exp(r) = 1 + r + r^2 P(r) on |r| <= ln2/2, Cephes expf coefficients (~1 ulp).
inline constexpr float kExpP0 = 1.9875691500e-4f, kExpP1 = 1.3981999507e-3f,
                       kExpP2 = 8.3334519073e-3f, kExpP3 = 4.1665795894e-2f,
                       kExpP4 = 1.6666665459e-1f, kExpP5 = 5.0000001201e-1f;
// Below this exp underflows to zero in fp32; above kExpMax it overflows.
inline constexpr float kExpMin = -104.0f, kExpMax = 88.72f;

// exp(a + b) where a may be large and exact (e.g. -x^2 split into hi) and b is a small
// correction (|b| < ~10): the reduction r = (a - n ln2_hi) - n ln2_lo + b keeps b's bits that a plain
// exp(a + b) would round away. Accuracy ~2 ulp. exp_sum(a, 0) is an ordinary exp.
SEQVIT_AVX512 SEQVIT_INLINE __m512 exp_sum(__m512 a, __m512 b) {
  // Operand order keeps NaN (max/min return their second operand when either is NaN).
  a = _mm512_min_ps(_mm512_set1_ps(kExpMax), _mm512_max_ps(_mm512_set1_ps(kExpMin), a));
  const __m512 s = _mm512_add_ps(a, b);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(s, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), a);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  r = _mm512_add_ps(r, b);
  __m512 p = _mm512_set1_ps(kExpP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP5));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n, gradual underflow handled by the hardware
}
SEQVIT_AVX512 SEQVIT_INLINE __m512 exp_ps(__m512 a) { return exp_sum(a, _mm512_setzero_ps()); }

// 2^k as a float for k in [-126, 127].
inline float pow2i(int k) {
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Scalar twin of exp_sum (no FMA on baseline x86-64: plain multiply-add). Written without
// libm calls so the compiler can vectorise loops over it.
inline float exp_sum_scalar(float a, float b) {
  a = std::clamp(a, kExpMin, kExpMax);
  const float s = a + b;
  if (s != s) return s;  // NaN
  // Round to nearest even via the 1.5 * 2^23 trick (valid for |x| < 2^22; here |x| < 160).
  const float n = (s * kLog2e + 12582912.0f) - 12582912.0f;
  float r = a - n * kLn2Hi;
  r = r - n * kLn2Lo;
  r = r + b;
  float p = kExpP0;
  p = p * r + kExpP1;
  p = p * r + kExpP2;
  p = p * r + kExpP3;
  p = p * r + kExpP4;
  p = p * r + kExpP5;
  p = p * (r * r) + (r + 1.0f);
  // p * 2^n with one rounding (gradual underflow like vscalefps): split n into two halves that
  // are each a normal power of two.
  const int ni = static_cast<int>(n);
  const int n1 = ni / 2;
  return p * pow2i(n1) * pow2i(ni - n1);
}
inline float exp_scalar(float a) { return exp_sum_scalar(a, 0.0f); }

// Deterministic reductions over rows: the rows are cut into chunks whose size depends only on
// the shape (never on the thread count); each chunk is reduced in order, then the chunk
// partials are summed in chunk order. The result is therefore bit-identical for any thread
// count. At most kReduceChunks chunks, each of at least kMinChunkElems elements so that
// zeroing and summing the partials stays small next to the row work.
inline constexpr int64_t kReduceChunks = 64;
inline constexpr int64_t kMinChunkElems = 1 << 14;
struct Chunking {
  int64_t n_chunks, rows_per_chunk;
};
inline Chunking chunk_rows(int64_t T, int64_t row_elems = 1) {
  const int64_t min_rows = (kMinChunkElems + row_elems - 1) / std::max<int64_t>(1, row_elems);
  const int64_t per =
      std::max<int64_t>({1, (T + kReduceChunks - 1) / kReduceChunks, min_rows});
  return {(T + per - 1) / per, per};
}

// Sum partial[c, 0:n] over chunks c (in order) into partial[0, 0:n]; rows are `stride` apart.
inline void sum_chunk_partials(double* partial, int64_t n_chunks, int64_t n, int64_t stride) {
  for (int64_t c = 1; c < n_chunks; ++c) {
    const double* pc = partial + c * stride;
    for (int64_t i = 0; i < n; ++i) partial[i] += pc[i];
  }
}

// Per-calling-thread scratch that only grows: no allocation once warmed up.
template <typename TElem>
TElem* scratch(std::vector<TElem>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// OpenMP-parallel only when the work is worth a fork/join (~1-2 us).
inline constexpr int64_t kParallelMinElems = 1 << 15;

// Split [0, n) into one contiguous range per thread (boundaries multiples of 16 floats, i.e.
// cache lines for aligned buffers) and call f(i0, i1) on each. Serial for small n.
template <typename F>
void parallel_ranges(int64_t n, F&& f) {
  if (n < kParallelMinElems || omp_get_max_threads() == 1 || omp_in_parallel()) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
    const int64_t i0 = std::min(n, id * per), i1 = std::min(n, i0 + per);
    if (i0 < i1) f(i0, i1);
  }
}

// Parallel loop over rows [0, T) (static schedule: deterministic assignment); serial when the
// whole job (T * row_elems) is small.
template <typename F>
void parallel_rows(int64_t T, int64_t row_elems, F&& f) {
  if (T * row_elems < kParallelMinElems || omp_get_max_threads() == 1 || omp_in_parallel()) {
    for (int64_t t = 0; t < T; ++t) f(t);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) f(t);
}

}  // namespace seqvit::kernels::detail
