// Flash attention on the CPU (docs/flash_attention.md): non-causal, tiled, online
// softmax, O(N) memory, returns LSE. fp32, and bf16 mixed precision on AVX512_BF16.
//
// Design (numbers from the 2-core Zen 4 dev box, head_dim 64, per core, CPU time, so that
// other jobs on the box do not distort them; fwd+bwd counted as 14 N^2 d per head):
//  - All five matrix products of a tile go through one register-blocked micro-kernel per
//    precision: C[6 x 64] += A B with A broadcast from memory under any (row, k) strides and
//    B read as 16-wide row vectors; fp32 uses vfmadd231ps, bf16 uses vdpbf16ps on K-pair
//    interleaved ("VNNI") B. On the three tile shapes used (96x128x64, 96x64x128, 64x128x96)
//    ours runs 112-115 GFLOP/s fp32 and 216-224 bf16; dnnl_sgemm / dnnl_gemm_bf16bf16f32
//    called per tile inside an omp region (single-threaded) 104-112 and 181-201, and would
//    still need the same bf16 conversions of P and dS. oneDNN 2048^3: 108 fp32, 218 bf16.
//  - Whole kernel at N = 8192: fp32 97 GFLOP/s fwd+bwd (90% of the fp32 GEMM), bf16 170 (78%
//    of the bf16 GEMM); the rest goes to exp, the softmax bookkeeping, packing and the C tile
//    loads/stores of short (64..128) K loops.
//  - Scores live "query-rows x key-lanes": S[i][j] with 16 keys per vector. K^T (and, in
//    backward, V^T) are packed once per (batch, head) into the workspace, so no tile loop
//    transposes anything; Q, O, dO, dQ are read and written in place through their strides
//    (fp32) or from once-packed bf16 copies (bf16).
//  - exp is exp2 of a pre-scaled argument: range reduction to [-1/2, 1/2] + degree-6
//    polynomial + vscalefps, max relative error 2.2e-7 measured on [-100, 0.5] (~2 ulp);
//    one FMA folds scale * log2(e) and the row max (or LSE) in.
//  - Forward: parallel over (batch, head, query tile), dynamic schedule.
//    Backward: outer loop over key tiles so dK, dV of a tile accumulate in thread-private
//    registers/scratch and are written once, inner loop over query tiles. dQ is the only
//    cross-tile sum: if there are enough (batch, head) pairs to keep every thread busy, each
//    thread owns whole heads and accumulates dQ straight into the output (no races, no extra
//    memory); otherwise the key tiles of one head are split over threads, each accumulates
//    dQ into a private [nq, d] buffer and the buffers are summed (O(threads * nq * d) extra
//    work and memory against O(nq * nk * d) math). Two passes (dK/dV then dQ) would
//    recompute QK^T and dO V^T: 40% more FLOPs.
//  - Any head dim d >= 1 (ClimaX picks embed_dim / num_heads freely: 4, 12, 25, 100, ...).
//    d is the K dimension of S = QK^T and dP = dO V^T (any K works; bf16 pairs along d get a
//    zero pad column in the packed copies when d is odd), the M dimension of the dK^T/dV^T
//    products (any M works) and the N dimension of O += PV and dQ += dS K, where the
//    micro-kernel's last 16-wide vector is masked (separate instantiations, so multiples of
//    16 run the unchanged full-width code). Masking rather than padded copies keeps V, K and
//    dQ in place: no extra packing, workspace or dQ pass for odd d.
//  - nq <= 8 (ClimaX variable aggregation: nq = 1, nk = V): no tiles, no packing; one query
//    row at a time with vectors along head_dim, whole heads per thread (see "few queries").
//  - Without AVX-512 (or SEQVIT_NO_AVX512=1) the same tile algorithm runs with scalar
//    micro-kernels; without AVX512_BF16 the bf16 path emulates vdpbf16ps in scalar code (same
//    rounding points: inputs rounded to nearest even, fp32 accumulation).
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* in the reduce helpers,
// GCC bug 105593): a false positive, silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/bf16.h"
#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/attention.h"

#define FA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define FA_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))

namespace seqvit::kernels {
namespace {

// Tile sizes, measured (1 core, N = 8192, d = 64, f+b GFLOP/s fp32 / bf16): 64x64: 97 / 165,
// 64x128: 97 / 160, 96x64: 93 / 167, 96x128: 97 / 171. Bq a multiple of the micro-kernel's 6
// rows; Bk = 128 halves the per-row softmax bookkeeping of the forward.
constexpr int64_t kBq = 96;   // query rows per tile (even: bf16 pairs rows for VNNI packing)
constexpr int64_t kBk = 128;  // keys per tile (multiple of 16)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

int64_t rup(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Few-query path (see "few queries" below): nq <= 8 on AVX-512 machines.
constexpr int64_t kRowwiseMaxNq = 8;
constexpr int64_t kRowwiseMaxD = 256;
bool use_rowwise(const AttentionArgs& a) {
  return a.nq <= kRowwiseMaxNq && a.head_dim <= kRowwiseMaxD && cpu_has_avx512();
}

// ------------------------------------------------------------------------------------------
// Kernel table: the precision/ISA-specific pieces. Everything else is shared.
// gemm_f32: C[M,N] = (acc ? C : 0) + alpha * A B; A(m,k) = A[m*sam + k*sak], B row k at
//   B + k*ldb (N contiguous floats). Any M, N, K: N is a multiple of 16 for the key-wide
//   products and the head dim d (any d >= 1) for O += P V and dQ += dS K; neither B nor C is
//   touched past column N - 1.
// gemm_bf16: the same with K counted in bf16 pairs: A pair (m,kp) = A[m*sam + kp] (uint32 =
//   two bf16 along k), B pair-row kp at B + kp*ldb holds N (k, k+1) pairs ("VNNI").
// exp_row: p[j] = exp2(s[j]*c - m) for j < nvalid, 0 for nvalid <= j < n16; writes fp32 to p
//   (may alias s) and, if pb, bf16 to pb; returns the sum of the fp32 p.
// ds_row: ds[j] = p[j] * (dp[j] - dv), fp32 into dp (in place) and, if dsb, bf16 to dsb.
// vnni_rows: dst[j][2] = (bf16 r0[j], bf16 r1[j]) for j < n16; r1 null means zeros.
struct Kernels {
  void (*gemm_f32)(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
                   const float* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc);
  void (*gemm_bf16)(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t sam,
                    const uint32_t* B, int64_t ldb, float* C, int64_t ldc, float alpha,
                    bool acc);
  float (*row_max)(const float* s, int64_t nvalid);
  float (*exp_row)(const float* s, int64_t n16, int64_t nvalid, float c, float m, float* p,
                   bf16* pb);
  void (*ds_row)(const float* p, float* dp, int64_t n16, float dv, bf16* dsb);
  void (*vnni_rows)(const float* r0, const float* r1, int64_t n16, bf16* dst);
};

// ---------------------------------------------------------------- portable scalar kernels
namespace portable {

void gemm_f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
              const float* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc) {
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s += A[m * sam + k * sak] * B[k * ldb + n];
      c[n] = (acc ? c[n] : 0.f) + alpha * s;
    }
  }
}

float lo(uint32_t p) { return to_float(bf16{static_cast<uint16_t>(p & 0xffffu)}); }
float hi(uint32_t p) { return to_float(bf16{static_cast<uint16_t>(p >> 16)}); }

void gemm_bf16(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t sam,
               const uint32_t* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc) {
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    for (int64_t n = 0; n < N; ++n) {
      float s = 0.f;
      for (int64_t k = 0; k < K2; ++k) {
        const uint32_t a = A[m * sam + k], b = B[k * ldb + n];
        s += lo(a) * lo(b) + hi(a) * hi(b);  // bf16 products are exact in fp32
      }
      c[n] = (acc ? c[n] : 0.f) + alpha * s;
    }
  }
}

float row_max(const float* s, int64_t nvalid) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < nvalid; ++j) m = std::max(m, s[j]);
  return m;
}

float exp_row(const float* s, int64_t n16, int64_t nvalid, float c, float m, float* p,
              bf16* pb) {
  float sum = 0.f;
  for (int64_t j = 0; j < n16; ++j) {
    const float e = j < nvalid ? std::exp2(s[j] * c - m) : 0.f;
    sum += e;
    p[j] = e;
    if (pb) pb[j] = to_bf16(e);
  }
  return sum;
}

void ds_row(const float* p, float* dp, int64_t n16, float dv, bf16* dsb) {
  for (int64_t j = 0; j < n16; ++j) {
    dp[j] = p[j] * (dp[j] - dv);
    if (dsb) dsb[j] = to_bf16(dp[j]);
  }
}

void vnni_rows(const float* r0, const float* r1, int64_t n16, bf16* dst) {
  for (int64_t j = 0; j < n16; ++j) {
    dst[2 * j] = to_bf16(r0[j]);
    dst[2 * j + 1] = r1 ? to_bf16(r1[j]) : bf16{0};
  }
}

constexpr Kernels kKernels{gemm_f32, gemm_bf16, row_max, exp_row, ds_row, vnni_rows};

}  // namespace portable

// ---------------------------------------------------------------- AVX-512 kernels
namespace avx512 {

// The micro-kernels' epilogue: C[MR, 16 NV] = alpha * c (+ C when acc), the last vector
// masked to `tail` when Tail. Shared by the fp32 and bf16 kernels (inlined into both).
template <int MR, int NV, bool Tail>
FA_AVX512 inline __attribute__((always_inline)) void store_tile(const __m512 (&c)[MR][NV],
                                                                float* C, int64_t ldc,
                                                                float alpha, bool acc,
                                                                __mmask16 tail) {
  const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* cp = C + m * ldc + 16 * v;
      if (Tail && v == NV - 1) {
        const __m512 old = acc ? _mm512_maskz_loadu_ps(tail, cp) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(cp, tail, _mm512_fmadd_ps(al, c[m][v], old));
      } else {
        const __m512 old = acc ? _mm512_loadu_ps(cp) : _mm512_setzero_ps();
        _mm512_storeu_ps(cp, _mm512_fmadd_ps(al, c[m][v], old));
      }
    }
}

// Micro-kernel: MR rows x NV 16-wide vectors of C held in registers over the whole K loop.
// Tail: the last vector covers only the lanes in `tail` (N not a multiple of 16, i.e. N = head
// dim); its B loads and C loads/stores are masked, so B and C may end right after column N-1
// (V, K and dQ are read and written in place, next to other heads' data). The Tail = false
// instantiations are the full-width fast path, unchanged by the tail support.
template <int MR, int NV, bool Tail>
FA_AVX512 void mk_f32(int64_t K, const float* A, int64_t sam, int64_t sak, const float* B,
                      int64_t ldb, float* C, int64_t ldc, float alpha, bool acc, __mmask16 tail) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) c[m][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const float* a = A + k * sak;
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = Tail && v == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v)
                                  : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512 am = _mm512_set1_ps(a[m * sam]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) c[m][v] = _mm512_fmadd_ps(am, bv[v], c[m][v]);
    }
  }
  store_tile<MR, NV, Tail>(c, C, ldc, alpha, acc, tail);
}

template <int MR, int NV, bool Tail>
FA_AVX512BF16 void mk_bf16(int64_t K2, const uint32_t* A, int64_t sam, const uint32_t* B,
                           int64_t ldb, float* C, int64_t ldc, float alpha, bool acc,
                           __mmask16 tail) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) c[m][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K2; ++k) {
    const uint32_t* b = B + k * ldb;
    const uint32_t* a = A + k;
    __m512bh bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = (__m512bh)(Tail && v == NV - 1 ? _mm512_maskz_loadu_epi32(tail, b + 16 * v)
                                             : _mm512_loadu_si512(b + 16 * v));
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512bh am = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[m * sam]));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) c[m][v] = _mm512_dpbf16_ps(c[m][v], am, bv[v]);
    }
  }
  store_tile<MR, NV, Tail>(c, C, ldc, alpha, acc, tail);
}

constexpr int kMR = 6;  // 6 x 4 accumulators + 4 B vectors + 1 broadcast of the 32 zmm
constexpr int kNV = 4;

template <typename F, template <int, int> class Pick, int MR = 1, int NV = 1>
constexpr void fill(F (&t)[kMR][kNV]) {
  t[MR - 1][NV - 1] = Pick<MR, NV>::fn;
  if constexpr (NV < kNV) fill<F, Pick, MR, NV + 1>(t);
  else if constexpr (MR < kMR) fill<F, Pick, MR + 1, 1>(t);
}

using MkF32 = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                       int64_t, float, bool, __mmask16);
using MkBf16 = void (*)(int64_t, const uint32_t*, int64_t, const uint32_t*, int64_t, float*,
                        int64_t, float, bool, __mmask16);
template <int MR, int NV>
struct PickF32 {
  static constexpr MkF32 fn = mk_f32<MR, NV, false>;
};
template <int MR, int NV>
struct PickF32Tail {
  static constexpr MkF32 fn = mk_f32<MR, NV, true>;
};
template <int MR, int NV>
struct PickBf16 {
  static constexpr MkBf16 fn = mk_bf16<MR, NV, false>;
};
template <int MR, int NV>
struct PickBf16Tail {
  static constexpr MkBf16 fn = mk_bf16<MR, NV, true>;
};

struct Tables {
  MkF32 f32[2][kMR][kNV];  // [tail][rows - 1][vectors - 1]
  MkBf16 bf16[2][kMR][kNV];
  constexpr Tables() : f32{}, bf16{} {
    fill<MkF32, PickF32>(f32[0]);
    fill<MkF32, PickF32Tail>(f32[1]);
    fill<MkBf16, PickBf16>(bf16[0]);
    fill<MkBf16, PickBf16Tail>(bf16[1]);
  }
};

// Columns [n0, n0 + 64) of an N-wide product: vectors and the mask of the last one.
struct ColBlock {
  int nv;          // 16-wide vectors, the last one possibly partial
  int tail;        // 1 if the last vector is partial
  __mmask16 mask;  // its lanes
};
inline ColBlock col_block(int64_t N, int64_t n0) {
  const int64_t rem = std::min<int64_t>(16 * kNV, N - n0), part = rem % 16;
  return {static_cast<int>((rem + 15) / 16), part != 0,
          part ? static_cast<__mmask16>((1u << part) - 1u) : static_cast<__mmask16>(0xffff)};
}
constexpr Tables kTables;

// Loop order: each 64-wide column block of B stays in L1 while all row blocks stream by.
void gemm_f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t sam, int64_t sak,
              const float* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc) {
  for (int64_t n0 = 0; n0 < N; n0 += 16 * kNV) {
    const ColBlock cb = col_block(N, n0);
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      kTables.f32[cb.tail][mr - 1][cb.nv - 1](K, A + m0 * sam, sam, sak, B + n0, ldb,
                                              C + m0 * ldc + n0, ldc, alpha, acc, cb.mask);
    }
  }
}

void gemm_bf16(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t sam,
               const uint32_t* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc) {
  for (int64_t n0 = 0; n0 < N; n0 += 16 * kNV) {
    const ColBlock cb = col_block(N, n0);
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      kTables.bf16[cb.tail][mr - 1][cb.nv - 1](K2, A + m0 * sam, sam, B + n0, ldb,
                                               C + m0 * ldc + n0, ldc, alpha, acc, cb.mask);
    }
  }
}

// 2^x for x <= ~0: n = round(x), f = x - n in [-1/2, 1/2], 2^f by its degree-6 Taylor
// polynomial (truncation error (ln2/2)^7/7! = 1.2e-7 relative), times 2^n via vscalefps.
// Arguments are clamped at -125, so exp2 of very negative x is ~2e-38 rather than 0 (callers
// zero the masked-out lanes explicitly); never denormal.
FA_AVX512 inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-125.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5403530393381608e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

FA_AVX512 __mmask16 tail_mask(int64_t j, int64_t nvalid) {
  const int64_t r = nvalid - j;
  return r >= 16 ? __mmask16(0xffff) : r <= 0 ? __mmask16(0) : __mmask16((1u << r) - 1u);
}

FA_AVX512 float row_max(const float* s, int64_t nvalid) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < nvalid; j += 16)
    m = _mm512_mask_max_ps(m, tail_mask(j, nvalid), m, _mm512_loadu_ps(s + j));
  return _mm512_reduce_max_ps(m);
}

FA_AVX512BF16 float exp_row(const float* s, int64_t n16, int64_t nvalid, float c, float m,
                            float* p, bf16* pb) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n16; j += 16) {
    const __m512 e = _mm512_maskz_mov_ps(
        tail_mask(j, nvalid), exp2_ps(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vc, vm)));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(p + j, e);
    if (pb) _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), (__m256i)_mm512_cvtneps_pbh(e));
  }
  return _mm512_reduce_add_ps(sum);
}

// exp_row for machines with AVX-512 but without AVX512_BF16: bf16 output by scalar rounding.
FA_AVX512 float exp_row_nobf16(const float* s, int64_t n16, int64_t nvalid, float c, float m,
                               float* p, bf16* pb) {
  const __m512 vc = _mm512_set1_ps(c), vm = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n16; j += 16) {
    const __m512 e = _mm512_maskz_mov_ps(
        tail_mask(j, nvalid), exp2_ps(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vc, vm)));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(p + j, e);
  }
  if (pb)
    for (int64_t j = 0; j < n16; ++j) pb[j] = to_bf16(p[j]);
  return _mm512_reduce_add_ps(sum);
}

FA_AVX512BF16 void ds_row(const float* p, float* dp, int64_t n16, float dv, bf16* dsb) {
  const __m512 vdv = _mm512_set1_ps(dv);
  for (int64_t j = 0; j < n16; j += 16) {
    const __m512 ds =
        _mm512_mul_ps(_mm512_loadu_ps(p + j), _mm512_sub_ps(_mm512_loadu_ps(dp + j), vdv));
    _mm512_storeu_ps(dp + j, ds);
    if (dsb)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dsb + j), (__m256i)_mm512_cvtneps_pbh(ds));
  }
}

FA_AVX512BF16 void vnni_rows(const float* r0, const float* r1, int64_t n16, bf16* dst) {
  // cvtne2ps gives [bf16 r0[0..15] | bf16 r1[0..15]]; interleave the halves into pairs.
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                       24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                       16, 0);
  for (int64_t j = 0; j < n16; j += 16) {
    const __m512 x1 = r1 ? _mm512_loadu_ps(r1 + j) : _mm512_setzero_ps();
    const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(x1, _mm512_loadu_ps(r0 + j));
    _mm512_storeu_si512(dst + 2 * j, _mm512_permutexvar_epi16(idx, h));
  }
}

constexpr Kernels kKernels{gemm_f32, gemm_bf16, row_max, exp_row, ds_row, vnni_rows};
// AVX-512 without AVX512_BF16: fast fp32; bf16 products and packing emulated in scalar code.
constexpr Kernels kKernelsNoBf16{gemm_f32,       portable::gemm_bf16, row_max,
                                 exp_row_nobf16, portable::ds_row,    portable::vnni_rows};

}  // namespace avx512

const Kernels& pick_kernels() {
  if (cpu_has_avx512_bf16()) return avx512::kKernels;
  if (cpu_has_avx512()) return avx512::kKernelsNoBf16;
  return portable::kKernels;
}

// ------------------------------------------------------------------------------------------
// Workspace plan. Shared part: operands packed once per (batch, head) (BH = batch*heads,
// nkp = nk rounded up to 16, nqp = nq rounded up to 2, d2 = d rounded up to 2, pad entries
// zero; d2 > d only for odd d, where the zero column pads the bf16 pairs along d):
//   fp32: kt[BH][d][nkp] (K^T), vt[BH][d][nkp] (V^T, backward), dv[BH][nq] (backward)
//   bf16: kt2[BH][d2/2][nkp][2] (K^T, VNNI), v2[BH][nkp/2][d][2] (V, VNNI; forward),
//         qb[BH][nq][d2], vt2[BH][d2/2][nkp][2] (V^T, VNNI), k2[BH][nkp/2][d][2] (K, VNNI),
//         dob[BH][nq][d2], qbt[BH][d][nqp], dobt[BH][d][nqp], dv[BH][nq]
// Per thread: s, dp [Bq][Bk] f32, o [Bq][d] f32, ml [2][Bq] f32, pb, pv, dsb, dsv [Bq][Bk]
//   bf16, dkt, dvt [d][Bk] f32, dqp [nq][d] f32 (private dQ when key tiles are split),
//   few-query path: only rs [nkp] f32 per thread (one score row).
struct Plan {
  size_t kt = 0, vt = 0, dv = 0, kt2 = 0, v2 = 0, qb = 0, vt2 = 0, k2 = 0, dob = 0, qbt = 0,
         dobt = 0;
  size_t shared = 0;
  size_t s = 0, dp = 0, o = 0, ml = 0, pb = 0, pv = 0, dsb = 0, dsv = 0, dkt = 0, dvt = 0,
         dqp = 0, rs = 0;
  size_t per_thread = 0;
};

Plan make_plan(const AttentionArgs& a) {
  const size_t BH = static_cast<size_t>(a.batch * a.heads), d = static_cast<size_t>(a.head_dim);
  const size_t nq = static_cast<size_t>(a.nq), nkp = static_cast<size_t>(rup(a.nk, 16));
  const size_t nqp = static_cast<size_t>(rup(a.nq, 2)), d2 = static_cast<size_t>(rup(a.head_dim, 2));
  Plan p;
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += (bytes + 63) / 64 * 64;
    return at;
  };
  const size_t f = sizeof(float), h = sizeof(bf16);
  if (use_rowwise(a)) {  // no packing, one score row per thread
    p.rs = take(nkp * f);
    p.per_thread = off;
    return p;
  }
  if (!a.bf16) {
    p.kt = take(BH * d * nkp * f);
    p.vt = take(BH * d * nkp * f);
  } else {
    p.kt2 = take(BH * d2 * nkp * h);
    p.v2 = take(BH * d * nkp * h);
    p.qb = take(BH * nq * d2 * h);
    p.vt2 = take(BH * d2 * nkp * h);
    p.k2 = take(BH * d * nkp * h);
    p.dob = take(BH * nq * d2 * h);
    p.qbt = take(BH * d * nqp * h);
    p.dobt = take(BH * d * nqp * h);
  }
  p.dv = take(BH * nq * f);
  p.shared = off;
  off = 0;
  p.s = take(kBq * kBk * f);
  p.dp = take(kBq * kBk * f);
  p.o = take(kBq * d * f);
  p.ml = take(2 * kBq * f);
  p.pb = take(kBq * kBk * h);
  p.pv = take(kBq * kBk * h);
  p.dsb = take(kBq * kBk * h);
  p.dsv = take(kBq * kBk * h);
  p.dkt = take(d * kBk * f);
  p.dvt = take(d * kBk * f);
  p.dqp = take(nq * d * f);
  p.per_thread = off;
  return p;
}

void validate(const AttentionArgs& a, bool backward) {
  SEQVIT_CHECK(a.batch >= 1 && a.heads >= 1 && a.nq >= 1 && a.nk >= 1,
               "flash attention: need batch, heads, nq, nk >= 1, got batch={} heads={} nq={} "
               "nk={}",
               a.batch, a.heads, a.nq, a.nk);
  SEQVIT_CHECK(a.head_dim >= 1,
               "flash attention: head_dim={} must be >= 1 (any value works; multiples of 16 "
               "are the fastest)",
               a.head_dim);
  SEQVIT_CHECK(a.scale > 0.f && std::isfinite(a.scale),
               "flash attention: scale={} must be positive (usually 1/sqrt(head_dim))", a.scale);
  SEQVIT_CHECK(a.q.data && a.k.data && a.v.data && a.o.data && a.lse,
               "flash attention: q, k, v, o and lse must be set");
  if (backward)
    SEQVIT_CHECK(a.dout.data && a.dq.data && a.dk.data && a.dv.data,
                 "flash attention backward: dout, dq, dk and dv must be set");
}

// How many threads the caller's workspace can feed (at most `want`); throws if not even one.
int usable_threads(const AttentionArgs& a, const Plan& p, int want) {
  const size_t have = a.workspace ? a.workspace_bytes : 0;
  if (have >= p.shared + p.per_thread) {
    const size_t t = (have - p.shared) / p.per_thread;
    return static_cast<int>(std::min<size_t>(static_cast<size_t>(want), t));
  }
  fail("flash attention: workspace of {} bytes is too small; this shape (batch={} heads={} "
       "nq={} nk={} head_dim={} bf16={}) needs flash_attention_workspace_bytes() = {} bytes "
       "for 1 thread, {} for {} threads",
       have, a.batch, a.heads, a.nq, a.nk, a.head_dim, a.bf16, p.shared + p.per_thread,
       p.shared + p.per_thread * static_cast<size_t>(want), want);
}

// Per-call context: pointers into the workspace and constants.
struct Ctx {
  const AttentionArgs& a;
  const Kernels& kr;
  const Plan& pl;
  char* ws;
  int64_t BH, d, nq, nk, nkp, nqp;
  int64_t d2;  // d rounded up to 2: row length of the bf16 copies paired along d (qb, dob)
  float c;  // scale * log2(e): exponents are evaluated base 2

  template <typename T>
  T* sh(size_t off, int64_t bh, int64_t per_bh) const {
    return reinterpret_cast<T*>(ws + off) + bh * per_bh;
  }
  char* thread_base(int t) const { return ws + pl.shared + static_cast<size_t>(t) * pl.per_thread; }
  static const float* row(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
    return t.data + b * t.sb + i * t.sn + h * t.sh;
  }
  static float* row_mut(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
    return t.data + b * t.sb + i * t.sn + h * t.sh;
  }
};

const uint32_t* u32(const bf16* p) { return reinterpret_cast<const uint32_t*>(p); }

// ---------------------------------------------------------------- packing (once per head)
// Keys [j0, j1) of head (b, h) of t into the transposed layouts. Plain loops: O(N d) work
// against O(N^2 d) for the products.
void pack_keys_f32(const StridedTensor& t, int64_t b, int64_t h, int64_t j0, int64_t j1,
                   int64_t nk, int64_t d, int64_t nkp, float* dst /* [d][nkp] */) {
  for (int64_t j = j0; j < j1; ++j) {
    const float* src = j < nk ? Ctx::row(t, b, j, h) : nullptr;
    for (int64_t c = 0; c < d; ++c) dst[c * nkp + j] = src ? src[c] : 0.f;
  }
}

// VNNI of t^T: dst[c/2][j][c%2] for c < d rounded up to 2 (a 32-bit transpose of the bf16
// rows); an odd d gets a zero column c = d, so the last pair contributes nothing to products.
void pack_keys_t_bf16(const StridedTensor& t, int64_t b, int64_t h, int64_t j0, int64_t j1,
                      int64_t nk, int64_t d, int64_t nkp, bf16* dst) {
  for (int64_t j = j0; j < j1; ++j) {
    const float* src = j < nk ? Ctx::row(t, b, j, h) : nullptr;
    for (int64_t c = 0; c < d; ++c) dst[((c / 2) * nkp + j) * 2 + (c & 1)] = src ? to_bf16(src[c]) : bf16{0};
    if (d & 1) dst[((d / 2) * nkp + j) * 2 + 1] = bf16{0};
  }
}

// VNNI of t: dst[j/2][c][j%2].
void pack_keys_bf16(const StridedTensor& t, int64_t b, int64_t h, int64_t j0, int64_t j1,
                    int64_t nk, int64_t d, bf16* dst) {
  for (int64_t j = j0; j < j1; ++j) {
    const float* src = j < nk ? Ctx::row(t, b, j, h) : nullptr;
    for (int64_t c = 0; c < d; ++c) dst[((j / 2) * d + c) * 2 + (j & 1)] = src ? to_bf16(src[c]) : bf16{0};
  }
}

// Query-side rows [i0, i1): row-major bf16 rows[nq][d2] (d2 = d rounded up to 2, the pad
// column zero: rows are A operands paired along d) and transposed rowst[d][nqp].
void pack_queries_bf16(const StridedTensor& t, int64_t b, int64_t h, int64_t i0, int64_t i1,
                       int64_t nq, int64_t d, int64_t nqp, bf16* rows, bf16* rowst) {
  const int64_t d2 = rup(d, 2);
  for (int64_t i = i0; i < i1; ++i) {
    if (i < nq) {
      const float* src = Ctx::row(t, b, i, h);
      if (rows) {
        convert_to_bf16(src, rows + i * d2, d);
        if (d2 > d) rows[i * d2 + d] = bf16{0};
      }
      if (rowst)
        for (int64_t c = 0; c < d; ++c) rowst[c * nqp + i] = to_bf16(src[c]);
    } else if (rowst) {
      for (int64_t c = 0; c < d; ++c) rowst[c * nqp + i] = bf16{0};
    }
  }
}

// ---------------------------------------------------------------- forward
void forward_tile(const Ctx& x, int64_t bh, int64_t i0, char* tb) {
  const AttentionArgs& a = x.a;
  const Kernels& kr = x.kr;
  const int64_t b = bh / a.heads, h = bh % a.heads, d = x.d;
  const int64_t mi = std::min(kBq, x.nq - i0);
  float* S = reinterpret_cast<float*>(tb + x.pl.s);   // [Bq][Bk] scores, then P
  float* O = reinterpret_cast<float*>(tb + x.pl.o);   // [Bq][d] unnormalised output
  float* m = reinterpret_cast<float*>(tb + x.pl.ml);  // [Bq] running max (log2 units)
  float* l = m + kBq;                                 // [Bq] running sum
  bf16* Pb = reinterpret_cast<bf16*>(tb + x.pl.pb);   // [Bq][Bk] P in bf16
  std::fill(m, m + mi, -std::numeric_limits<float>::infinity());
  std::fill(l, l + mi, 0.f);
  std::fill(O, O + mi * d, 0.f);
  const float* q = Ctx::row(a.q, b, i0, h);
  for (int64_t j0 = 0; j0 < x.nk; j0 += kBk) {
    const int64_t nj = std::min(kBk, x.nk - j0), n16 = rup(nj, 16);
    if (a.bf16) {  // S = Q K^T
      kr.gemm_bf16(mi, n16, x.d2 / 2, u32(x.sh<bf16>(x.pl.qb, bh, x.nq * x.d2) + i0 * x.d2),
                   x.d2 / 2, u32(x.sh<bf16>(x.pl.kt2, bh, x.d2 * x.nkp)) + j0, x.nkp, S, kBk,
                   1.f, false);
    } else {
      kr.gemm_f32(mi, n16, d, q, a.q.sn, 1, x.sh<float>(x.pl.kt, bh, d * x.nkp) + j0, x.nkp, S,
                  kBk, 1.f, false);
    }
    for (int64_t r = 0; r < mi; ++r) {  // online softmax
      float* sr = S + r * kBk;
      const float mnew = std::max(m[r], kr.row_max(sr, nj) * x.c);
      const float alpha = std::exp2(m[r] - mnew);
      const float sum = kr.exp_row(sr, n16, nj, x.c, mnew, sr, a.bf16 ? Pb + r * kBk : nullptr);
      l[r] = l[r] * alpha + sum;
      m[r] = mnew;
      if (alpha != 1.f)
        for (int64_t c = 0; c < d; ++c) O[r * d + c] *= alpha;
    }
    if (a.bf16) {  // O += P V
      kr.gemm_bf16(mi, d, rup(nj, 2) / 2, u32(Pb), kBk / 2,
                   u32(x.sh<bf16>(x.pl.v2, bh, x.nkp * d)) + (j0 / 2) * d, d, O, d, 1.f, true);
    } else {
      kr.gemm_f32(mi, d, nj, S, kBk, 1, Ctx::row(a.v, b, j0, h), a.v.sn, O, d, 1.f, true);
    }
  }
  float* lse = a.lse + bh * x.nq + i0;
  for (int64_t r = 0; r < mi; ++r) {
    float* o = Ctx::row_mut(a.o, b, i0 + r, h);
    const float inv = 1.f / l[r];
    for (int64_t c = 0; c < d; ++c) o[c] = O[r * d + c] * inv;
    lse[r] = (m[r] + std::log2(l[r])) * kLn2;
  }
}

// Pack the per-head operands; called inside the parallel region, ends with a barrier.
void pack_operands(const Ctx& x, bool backward) {
  const AttentionArgs& a = x.a;
  const int64_t d = x.d, nkt = x.nkp / 16, nqt = (x.nqp + 15) / 16;
  // keys, in chunks of 16 rows
#pragma omp for schedule(static) nowait
  for (int64_t t = 0; t < x.BH * nkt; ++t) {
    const int64_t bh = t / nkt, j0 = (t % nkt) * 16, b = bh / a.heads, h = bh % a.heads;
    const int64_t j1 = j0 + 16;
    if (!a.bf16) {
      pack_keys_f32(a.k, b, h, j0, j1, x.nk, d, x.nkp, x.sh<float>(x.pl.kt, bh, d * x.nkp));
      if (backward)
        pack_keys_f32(a.v, b, h, j0, j1, x.nk, d, x.nkp, x.sh<float>(x.pl.vt, bh, d * x.nkp));
    } else {
      pack_keys_t_bf16(a.k, b, h, j0, j1, x.nk, d, x.nkp, x.sh<bf16>(x.pl.kt2, bh, x.d2 * x.nkp));
      if (backward) {
        pack_keys_t_bf16(a.v, b, h, j0, j1, x.nk, d, x.nkp,
                         x.sh<bf16>(x.pl.vt2, bh, x.d2 * x.nkp));
        pack_keys_bf16(a.k, b, h, j0, j1, x.nk, d, x.sh<bf16>(x.pl.k2, bh, d * x.nkp));
      } else {
        pack_keys_bf16(a.v, b, h, j0, j1, x.nk, d, x.sh<bf16>(x.pl.v2, bh, d * x.nkp));
      }
    }
  }
  // queries, in chunks of 16 rows: bf16 copies and Dv = rowsum(dO * O)
#pragma omp for schedule(static)
  for (int64_t t = 0; t < x.BH * nqt; ++t) {
    const int64_t bh = t / nqt, i0 = (t % nqt) * 16, b = bh / a.heads, h = bh % a.heads;
    const int64_t i1 = std::min(i0 + 16, x.nqp);
    if (a.bf16) {
      pack_queries_bf16(a.q, b, h, i0, i1, x.nq, d, x.nqp, x.sh<bf16>(x.pl.qb, bh, x.nq * x.d2),
                        backward ? x.sh<bf16>(x.pl.qbt, bh, d * x.nqp) : nullptr);
      if (backward)
        pack_queries_bf16(a.dout, b, h, i0, i1, x.nq, d, x.nqp,
                          x.sh<bf16>(x.pl.dob, bh, x.nq * x.d2),
                          x.sh<bf16>(x.pl.dobt, bh, d * x.nqp));
    }
    if (backward) {
      float* dv = x.sh<float>(x.pl.dv, bh, x.nq);
      for (int64_t i = i0; i < std::min(i1, x.nq); ++i) {
        const float* go = Ctx::row(a.dout, b, i, h);
        const float* o = Ctx::row(a.o, b, i, h);
        float s = 0.f;
        for (int64_t c = 0; c < d; ++c) s += go[c] * o[c];
        dv[i] = s;
      }
    }
  }
}

// ---------------------------------------------------------------- backward
// One key tile [j0, j0 + Bk) of head bh against all queries. dK, dV of the tile accumulate in
// dkt/dvt ([d][Bk], transposed) and are written once; dQ rows accumulate into dq (row stride
// dq_sn), which this thread owns for the duration.
void backward_key_tile(const Ctx& x, int64_t bh, int64_t j0, char* tb, float* dq, int64_t dq_sn) {
  const AttentionArgs& a = x.a;
  const Kernels& kr = x.kr;
  const int64_t b = bh / a.heads, h = bh % a.heads, d = x.d;
  const int64_t nj = std::min(kBk, x.nk - j0), n16 = rup(nj, 16);
  float* S = reinterpret_cast<float*>(tb + x.pl.s);    // [Bq][Bk] S, then P
  float* dP = reinterpret_cast<float*>(tb + x.pl.dp);  // [Bq][Bk] dP, then dS
  bf16* Pv = reinterpret_cast<bf16*>(tb + x.pl.pv);    // [Bq/2][Bk][2] P (VNNI)
  bf16* dSb = reinterpret_cast<bf16*>(tb + x.pl.dsb);  // [Bq][Bk] dS
  bf16* dSv = reinterpret_cast<bf16*>(tb + x.pl.dsv);  // [Bq/2][Bk][2] dS (VNNI)
  float* dKt = reinterpret_cast<float*>(tb + x.pl.dkt);  // [d][Bk]
  float* dVt = reinterpret_cast<float*>(tb + x.pl.dvt);  // [d][Bk]
  std::fill(dKt, dKt + d * kBk, 0.f);
  std::fill(dVt, dVt + d * kBk, 0.f);
  const float* lse = a.lse + bh * x.nq;
  const float* Dv = x.sh<float>(x.pl.dv, bh, x.nq);
  for (int64_t i0 = 0; i0 < x.nq; i0 += kBq) {
    const int64_t mi = std::min(kBq, x.nq - i0), mi2 = rup(mi, 2);
    const float* q = Ctx::row(a.q, b, i0, h);
    const float* go = Ctx::row(a.dout, b, i0, h);
    // S = Q K^T, P = exp(S - LSE)
    if (a.bf16)
      kr.gemm_bf16(mi, n16, x.d2 / 2, u32(x.sh<bf16>(x.pl.qb, bh, x.nq * x.d2) + i0 * x.d2),
                   x.d2 / 2, u32(x.sh<bf16>(x.pl.kt2, bh, x.d2 * x.nkp)) + j0, x.nkp, S, kBk,
                   1.f, false);
    else
      kr.gemm_f32(mi, n16, d, q, a.q.sn, 1, x.sh<float>(x.pl.kt, bh, d * x.nkp) + j0, x.nkp, S,
                  kBk, 1.f, false);
    for (int64_t r = 0; r < mi; ++r)
      kr.exp_row(S + r * kBk, n16, nj, x.c, lse[i0 + r] * kLog2e, S + r * kBk, nullptr);
    // dV^T += dO^T P
    if (a.bf16) {
      for (int64_t r = 0; r < mi; r += 2)
        kr.vnni_rows(S + r * kBk, r + 1 < mi ? S + (r + 1) * kBk : nullptr, n16, Pv + r * kBk);
      kr.gemm_bf16(d, n16, mi2 / 2, u32(x.sh<bf16>(x.pl.dobt, bh, d * x.nqp)) + i0 / 2,
                   x.nqp / 2, u32(Pv), kBk, dVt, kBk, 1.f, true);
    } else {
      kr.gemm_f32(d, n16, mi, go, 1, a.dout.sn, S, kBk, dVt, kBk, 1.f, true);
    }
    // dP = dO V^T, dS = P * (dP - Dv)
    if (a.bf16)
      kr.gemm_bf16(mi, n16, x.d2 / 2, u32(x.sh<bf16>(x.pl.dob, bh, x.nq * x.d2) + i0 * x.d2),
                   x.d2 / 2, u32(x.sh<bf16>(x.pl.vt2, bh, x.d2 * x.nkp)) + j0, x.nkp, dP, kBk,
                   1.f, false);
    else
      kr.gemm_f32(mi, n16, d, go, a.dout.sn, 1, x.sh<float>(x.pl.vt, bh, d * x.nkp) + j0, x.nkp,
                  dP, kBk, 1.f, false);
    for (int64_t r = 0; r < mi; ++r)
      kr.ds_row(S + r * kBk, dP + r * kBk, n16, Dv[i0 + r], a.bf16 ? dSb + r * kBk : nullptr);
    // dK^T += Q^T dS (scaled at the end), dQ += scale dS K
    if (a.bf16) {
      for (int64_t r = 0; r < mi; r += 2)
        kr.vnni_rows(dP + r * kBk, r + 1 < mi ? dP + (r + 1) * kBk : nullptr, n16, dSv + r * kBk);
      kr.gemm_bf16(d, n16, mi2 / 2, u32(x.sh<bf16>(x.pl.qbt, bh, d * x.nqp)) + i0 / 2,
                   x.nqp / 2, u32(dSv), kBk, dKt, kBk, 1.f, true);
      kr.gemm_bf16(mi, d, rup(nj, 2) / 2, u32(dSb), kBk / 2,
                   u32(x.sh<bf16>(x.pl.k2, bh, d * x.nkp)) + (j0 / 2) * d, d, dq + i0 * dq_sn,
                   dq_sn, a.scale, true);
    } else {
      kr.gemm_f32(d, n16, mi, q, 1, a.q.sn, dP, kBk, dKt, kBk, 1.f, true);
      kr.gemm_f32(mi, d, nj, dP, kBk, 1, Ctx::row(a.k, b, j0, h), a.k.sn, dq + i0 * dq_sn, dq_sn,
                  a.scale, true);
    }
  }
  for (int64_t jj = 0; jj < nj; ++jj) {
    float* dk = Ctx::row_mut(a.dk, b, j0 + jj, h);
    float* dv = Ctx::row_mut(a.dv, b, j0 + jj, h);
    for (int64_t c = 0; c < d; ++c) {
      dk[c] = (a.accumulate ? dk[c] : 0.f) + a.scale * dKt[c * kBk + jj];
      dv[c] = (a.accumulate ? dv[c] : 0.f) + dVt[c * kBk + jj];
    }
  }
}

// ---------------------------------------------------------------- few queries (nq <= 8)
// The ClimaX variable aggregation runs batch = B*Lp tiny problems with nq = 1 and nk = V
// (3..92): tiling and packing would cost more than the math. Here each thread owns whole
// heads and works one query row at a time with vectors along head_dim: scores are dot
// products, dK/dV/dQ updates are axpys. Same rounding points as the tiled kernels.
// A head dim that is not a multiple of 16 ends in a masked vector (Tail = true): masked-off
// lanes load as zero (no effect on dot products) and are never stored.
namespace avx512 {

// Round to the nearest bf16 (ties to even), kept in fp32 (finite inputs).
FA_AVX512 inline __m512 round_bf16(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

inline float round_scalar(float x, bool bf16) { return bf16 ? to_float(to_bf16(x)) : x; }

// Vector v of a row of d floats: 16 lanes, except the last vector of a row with d % 16 != 0
// when Tail (the lanes of `tail`; nothing past column d - 1 is read or written).
template <bool Tail>
struct RowVec {
  int64_t nv;      // vectors per row: ceil(d / 16)
  __mmask16 tail;  // lanes of the last vector

  explicit RowVec(int64_t d)
      : nv((d + 15) / 16), tail(static_cast<__mmask16>((1u << (d % 16)) - 1u)) {}
  FA_AVX512 __m512 load(const float* p, int64_t v) const {
    return Tail && v == nv - 1 ? _mm512_maskz_loadu_ps(tail, p + 16 * v)
                               : _mm512_loadu_ps(p + 16 * v);
  }
  FA_AVX512 __m512 load_r(const float* p, int64_t v, bool bf16) const {  // bf16: rounded
    const __m512 x = load(p, v);
    return bf16 ? round_bf16(x) : x;
  }
  FA_AVX512 void store(float* p, int64_t v, __m512 x) const {
    if (Tail && v == nv - 1) _mm512_mask_storeu_ps(p + 16 * v, tail, x);
    else _mm512_storeu_ps(p + 16 * v, x);
  }
};

// s[j] = q . k_j for all keys (q already rounded, io.nv vectors).
template <bool Tail>
FA_AVX512 inline void dots(const RowVec<Tail>& io, const __m512* q, const StridedTensor& k,
                           int64_t b, int64_t h, int64_t nk, bool bf16, float* s) {
  for (int64_t j = 0; j < nk; ++j) {
    const float* kj = k.data + b * k.sb + j * k.sn + h * k.sh;
    __m512 acc = _mm512_mul_ps(q[0], io.load_r(kj, 0, bf16));
    for (int64_t v = 1; v < io.nv; ++v) acc = _mm512_fmadd_ps(q[v], io.load_r(kj, v, bf16), acc);
    s[j] = _mm512_reduce_add_ps(acc);
  }
}

template <bool Tail>
FA_AVX512 void rowwise_forward(const AttentionArgs& a, int64_t bh, float* s, const Kernels& kr) {
  const int64_t b = bh / a.heads, h = bh % a.heads, nk = a.nk;
  const RowVec<Tail> io(a.head_dim);
  const int64_t nv = io.nv;
  const float c = a.scale * kLog2e;
  __m512 q[kRowwiseMaxD / 16], o[kRowwiseMaxD / 16];
  for (int64_t i = 0; i < a.nq; ++i) {
    const float* qi = a.q.data + b * a.q.sb + i * a.q.sn + h * a.q.sh;
    for (int64_t v = 0; v < nv; ++v) q[v] = io.load_r(qi, v, a.bf16);
    dots(io, q, a.k, b, h, nk, a.bf16, s);
    const float m = kr.row_max(s, nk) * c;
    const float l = kr.exp_row(s, rup(nk, 16), nk, c, m, s, nullptr);
    for (int64_t v = 0; v < nv; ++v) o[v] = _mm512_setzero_ps();
    for (int64_t j = 0; j < nk; ++j) {
      const float* vj = a.v.data + b * a.v.sb + j * a.v.sn + h * a.v.sh;
      const __m512 p = _mm512_set1_ps(round_scalar(s[j], a.bf16));
      for (int64_t v = 0; v < nv; ++v) o[v] = _mm512_fmadd_ps(p, io.load_r(vj, v, a.bf16), o[v]);
    }
    float* oi = a.o.data + b * a.o.sb + i * a.o.sn + h * a.o.sh;
    const __m512 inv = _mm512_set1_ps(1.f / l);
    for (int64_t v = 0; v < nv; ++v) io.store(oi, v, _mm512_mul_ps(o[v], inv));
    a.lse[bh * a.nq + i] = (m + std::log2(l)) * kLn2;
  }
}

template <bool Tail>
FA_AVX512 void rowwise_backward(const AttentionArgs& a, int64_t bh, float* s, const Kernels& kr) {
  const int64_t b = bh / a.heads, h = bh % a.heads, nk = a.nk;
  const RowVec<Tail> io(a.head_dim);
  const int64_t nv = io.nv;
  const float c = a.scale * kLog2e;
  auto row = [&](const StridedTensor& t, int64_t i) { return t.data + b * t.sb + i * t.sn + h * t.sh; };
  __m512 q[kRowwiseMaxD / 16], go[kRowwiseMaxD / 16], dq[kRowwiseMaxD / 16];
  const __m512 vscale = _mm512_set1_ps(a.scale);
  for (int64_t i = 0; i < a.nq; ++i) {
    const float* oi = row(a.o, i);
    const float* goi = row(a.dout, i);
    __m512 dvacc = _mm512_setzero_ps();  // Dv = rowsum(dO * O), unrounded
    for (int64_t v = 0; v < nv; ++v) {
      q[v] = io.load_r(row(a.q, i), v, a.bf16);
      go[v] = io.load_r(goi, v, a.bf16);
      dq[v] = _mm512_setzero_ps();
      dvacc = _mm512_fmadd_ps(io.load(goi, v), io.load(oi, v), dvacc);
    }
    const float Dv = _mm512_reduce_add_ps(dvacc);
    dots(io, q, a.k, b, h, nk, a.bf16, s);
    kr.exp_row(s, rup(nk, 16), nk, c, a.lse[bh * a.nq + i] * kLog2e, s, nullptr);
    for (int64_t j = 0; j < nk; ++j) {
      const float* kj = row(a.k, j);
      const float* vj = row(a.v, j);
      __m512 dpacc = _mm512_mul_ps(go[0], io.load_r(vj, 0, a.bf16));
      for (int64_t v = 1; v < nv; ++v) dpacc = _mm512_fmadd_ps(go[v], io.load_r(vj, v, a.bf16), dpacc);
      const float ds = s[j] * (_mm512_reduce_add_ps(dpacc) - Dv);
      const __m512 pr = _mm512_set1_ps(round_scalar(s[j], a.bf16));
      const __m512 dsr = _mm512_set1_ps(round_scalar(ds, a.bf16));
      const __m512 dss = _mm512_mul_ps(dsr, vscale);
      float* dkj = row(a.dk, j);
      float* dvj = row(a.dv, j);
      const bool first = i == 0 && !a.accumulate;  // overwrite: no zero-fill pass over dK, dV
      for (int64_t v = 0; v < nv; ++v) {
        const __m512 dv0 = first ? _mm512_setzero_ps() : io.load(dvj, v);
        const __m512 dk0 = first ? _mm512_setzero_ps() : io.load(dkj, v);
        io.store(dvj, v, _mm512_fmadd_ps(pr, go[v], dv0));
        io.store(dkj, v, _mm512_fmadd_ps(dss, q[v], dk0));
        dq[v] = _mm512_fmadd_ps(dsr, io.load_r(kj, v, a.bf16), dq[v]);
      }
    }
    float* dqi = row(a.dq, i);
    for (int64_t v = 0; v < nv; ++v) {
      const __m512 old = a.accumulate ? io.load(dqi, v) : _mm512_setzero_ps();
      io.store(dqi, v, _mm512_fmadd_ps(vscale, dq[v], old));
    }
  }
}

// Picks the full-width (d % 16 == 0) or the masked-tail instantiation once per (batch, head).
void rowwise(const AttentionArgs& a, bool backward, int64_t bh, float* s, const Kernels& kr) {
  const bool tail = a.head_dim % 16 != 0;
  if (backward) tail ? rowwise_backward<true>(a, bh, s, kr) : rowwise_backward<false>(a, bh, s, kr);
  else tail ? rowwise_forward<true>(a, bh, s, kr) : rowwise_forward<false>(a, bh, s, kr);
}

}  // namespace avx512

Ctx make_ctx(const AttentionArgs& a, const Plan& pl) {
  return Ctx{a,           pick_kernels(), pl,          static_cast<char*>(a.workspace),
             a.batch * a.heads, a.head_dim, a.nq, a.nk, rup(a.nk, 16), rup(a.nq, 2),
             rup(a.head_dim, 2), a.scale * kLog2e};
}

}  // namespace

size_t flash_attention_workspace_bytes(const AttentionArgs& a, int threads) {
  const Plan p = make_plan(a);
  return p.shared + p.per_thread * static_cast<size_t>(std::max(threads, 1));
}

void flash_attention_forward(const AttentionArgs& a) {
  validate(a, false);
  const Plan pl = make_plan(a);
  const int T = usable_threads(a, pl, omp_get_max_threads());
  const Ctx x = make_ctx(a, pl);
  if (use_rowwise(a)) {
#pragma omp parallel for num_threads(T) schedule(dynamic, 16)
    for (int64_t bh = 0; bh < x.BH; ++bh)
      avx512::rowwise(a, false, bh,
                      reinterpret_cast<float*>(x.thread_base(omp_get_thread_num()) + pl.rs), x.kr);
    return;
  }
  const int64_t nqt = (a.nq + kBq - 1) / kBq;
#pragma omp parallel num_threads(T)
  {
    char* tb = x.thread_base(omp_get_thread_num());
    pack_operands(x, false);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < x.BH * nqt; ++t) forward_tile(x, t / nqt, (t % nqt) * kBq, tb);
  }
}

void flash_attention_backward(const AttentionArgs& a) {
  validate(a, true);
  const Plan pl = make_plan(a);
  const int T = usable_threads(a, pl, omp_get_max_threads());
  const Ctx x = make_ctx(a, pl);
  const int64_t nkt = (a.nk + kBk - 1) / kBk, d = a.head_dim;
  // Whole heads per thread when that balances (see the top of the file), else split keys.
  const bool per_head = T == 1 || nkt < 2 || x.BH % T == 0 || x.BH >= 4 * T;
  if (use_rowwise(a)) {
#pragma omp parallel for num_threads(T) schedule(dynamic, 16)
    for (int64_t bh = 0; bh < x.BH; ++bh)
      avx512::rowwise(a, true, bh,
                      reinterpret_cast<float*>(x.thread_base(omp_get_thread_num()) + pl.rs), x.kr);
    return;
  }
#pragma omp parallel num_threads(T)
  {
    const int tid = omp_get_thread_num();
    char* tb = x.thread_base(tid);
    pack_operands(x, true);
    if (per_head) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t bh = 0; bh < x.BH; ++bh) {
        const int64_t b = bh / a.heads, h = bh % a.heads;
        float* dq = Ctx::row_mut(a.dq, b, 0, h);
        if (!a.accumulate)
          for (int64_t i = 0; i < a.nq; ++i) std::fill(dq + i * a.dq.sn, dq + i * a.dq.sn + d, 0.f);
        for (int64_t j0 = 0; j0 < a.nk; j0 += kBk) backward_key_tile(x, bh, j0, tb, dq, a.dq.sn);
      }
    } else {
      float* dqp = reinterpret_cast<float*>(tb + pl.dqp);  // [nq][d] this thread's dQ part
      const int nt = omp_get_num_threads();
      for (int64_t bh = 0; bh < x.BH; ++bh) {
        const int64_t b = bh / a.heads, h = bh % a.heads;
        std::fill(dqp, dqp + a.nq * d, 0.f);
#pragma omp for schedule(dynamic, 1)
        for (int64_t jt = 0; jt < nkt; ++jt) backward_key_tile(x, bh, jt * kBk, tb, dqp, d);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < a.nq; ++i) {
          float* dst = Ctx::row_mut(a.dq, b, i, h);
          for (int64_t c = 0; c < d; ++c) {
            float s = a.accumulate ? dst[c] : 0.f;
            for (int t = 0; t < nt; ++t)
              s += reinterpret_cast<const float*>(x.thread_base(t) + pl.dqp)[i * d + c];
            dst[c] = s;
          }
        }
      }
    }
  }
}

}  // namespace seqvit::kernels
