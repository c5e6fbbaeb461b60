// Bulk fp32 <-> bf16 conversion with an AVX-512 path chosen at run time.
#include "core/bf16.h"

#include <immintrin.h>

#include "core/cpu_features.h"

namespace seqvit {
namespace {

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void to_bf16_avx512bf16(
    const float* src, bf16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<__m256i&>(h));
  }
  for (; i < n; ++i) dst[i] = to_bf16(src[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void to_float_avx512(const bf16* src,
                                                                           float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
  }
  for (; i < n; ++i) dst[i] = to_float(src[i]);
}

}  // namespace

void convert_to_bf16(const float* src, bf16* dst, int64_t n) {
  if (cpu_has_avx512_bf16()) return to_bf16_avx512bf16(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

void convert_to_float(const bf16* src, float* dst, int64_t n) {
  if (cpu_has_avx512()) return to_float_avx512(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

void round_to_bf16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = to_float(to_bf16(x[i]));
}

}  // namespace seqvit
