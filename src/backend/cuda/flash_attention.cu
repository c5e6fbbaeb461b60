// Flash attention on the GPU (docs/cuda.md "Flash attention"): FlashAttention-2 style,
// non-causal, any nq/nk (partial tiles masked), head_dim <= 128, strided Q/K/V/O/dO/dQ/dK/dV,
// fp32 LSE in natural log (lse = max + log sum exp, as the CPU kernels).
//
// Kernels (128 threads = 4 warps per block unless said otherwise):
//  - flash_fwd_f32 / flash_fwd_bf16: one block per (batch, head, 64-query tile); loop over key
//    tiles with the online softmax. Exponents in base 2 (s * scale * log2 e), as the CPU.
//    fp32: every thread owns 4 query rows x (BK/8) keys of S and 4 rows x (D/8) columns of O in
//    registers; the 8 lanes sharing rows reduce the row max/sum by shuffles.
//    bf16: WMMA 16x16x16 bf16 fragments; warp w owns query rows [16w, 16w + 16): S = Q K^T
//    into shared memory, softmax by lane pairs (one row each), O (fp32, shared memory) rescaled
//    and then O += P V on the tensor cores. Q, K, V and the unnormalised P are bf16.
//  - flash_bwd_pre: Dv = rowsum(dO * O) (fp32, unrounded) and dQ = 0 unless accumulating.
//  - flash_bwd_f32 / flash_bwd_bf16: one block per (batch, head, key tile); K, V of the tile
//    stay in shared memory, dK and dV accumulate in registers over all query tiles, P is
//    recomputed from the LSE, and each query tile's dQ contribution is added to dQ with fp32
//    atomicAdd (so dQ is summed in a run-dependent order: not bitwise deterministic).
//  - flash_fwd_rows / flash_merge_splits / flash_bwd_rows: the few-query path (nq <= 16), one
//    warp per query row (forward) or per key chunk of a (batch, head) (backward), lanes along
//    head_dim; long key ranges are split over warps, partial (o, lse) merged exactly.
//    CUDA cores in both precisions (bf16 rounding points emulated): it is memory-bound.
// Head dims: templates for D = 32, 64, 128; any other d <= 128 runs the next larger D with the
// columns >= d zero in shared memory (they add nothing to the products) and never stored.
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/check.h"

namespace seqvit::backend::cuda {
namespace {

using namespace nvcuda;
using bf16_t = __nv_bfloat16;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

constexpr size_t a128(size_t bytes) { return (bytes + 127) / 128 * 128; }

__device__ __forceinline__ float round_bf16(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

__device__ __forceinline__ const float* row_of(const StridedTensor& t, int64_t b, int64_t i,
                                               int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}
__device__ __forceinline__ float* row_mut(const StridedTensor& t, int64_t b, int64_t i,
                                          int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

// rows x D tile of head (b, h) of t, rows r0.. into dst[r][c] (leading dimension ld): rows
// >= n and columns >= d are zero; `half` rounds to bf16 (T = float) or stores bf16.
template <typename T, int ROWS, int D>
__device__ __forceinline__ void load_tile(T* dst, int ld, const StridedTensor& t, int64_t b,
                                          int64_t h, int64_t r0, int64_t n, int d, bool half) {
  for (int e = threadIdx.x; e < ROWS * D; e += kThreads) {
    const int r = e / D, c = e % D;
    float v = 0.f;
    if (r0 + r < n && c < d) v = row_of(t, b, r0 + r, h)[c];
    if constexpr (sizeof(T) == 2)
      dst[r * ld + c] = __float2bfloat16_rn(v);
    else
      dst[r * ld + c] = half ? round_bf16(v) : v;
  }
}

// ============================================================ forward, fp32
// Shared memory (floats): Q [64][D+1], K [BK][D+1], V [BK][D], S/P [64][BK+1]. The +1 pads
// make the column reads of Q, K and P hit distinct banks.
template <int D, int BK>
struct FwdF32 {
  static constexpr int BQ = 64, LQ = D + 1, LK = D + 1, LV = D, LS = BK + 1;
  static constexpr int RM = BQ / 16, CN = BK / 8, DC = D / 8;  // per thread: rows, S cols, O cols
  static constexpr size_t q = 0, k = q + BQ * LQ, v = k + BK * LK, s = v + BK * LV,
                          bytes = (s + BQ * LS) * sizeof(float);
};

template <int D, int BK>
__global__ void __launch_bounds__(kThreads) flash_fwd_f32(AttentionArgs a) {
  using L = FwdF32<D, BK>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  float* smem = reinterpret_cast<float*>(smem_raw);
  float* Qs = smem + L::q;
  float* Ks = smem + L::k;
  float* Vs = smem + L::v;
  float* Ss = smem + L::s;
  const int64_t nqt = (a.nq + L::BQ - 1) / L::BQ;
  const int64_t bh = blockIdx.x / nqt, i0 = (blockIdx.x % nqt) * L::BQ;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const float cl = a.scale * kLog2e;
  // thread (tr, tc): query rows tr*RM + x, keys tc + 8u of S, columns tc + 8u of O. The 8
  // lanes with the same tr are consecutive lanes of one warp.
  const int tr = threadIdx.x / 8, tc = threadIdx.x % 8;
  load_tile<float, L::BQ, D>(Qs, L::LQ, a.q, b, h, i0, a.nq, d, false);
  float o[L::RM][L::DC], m[L::RM], l[L::RM];
#pragma unroll
  for (int x = 0; x < L::RM; ++x) {
    m[x] = -INFINITY;
    l[x] = 0.f;
#pragma unroll
    for (int c = 0; c < L::DC; ++c) o[x][c] = 0.f;
  }
  for (int64_t j0 = 0; j0 < a.nk; j0 += BK) {
    __syncthreads();  // the previous tile's K, V, P are consumed (and Q is loaded)
    load_tile<float, BK, D>(Ks, L::LK, a.k, b, h, j0, a.nk, d, false);
    load_tile<float, BK, D>(Vs, L::LV, a.v, b, h, j0, a.nk, d, false);
    __syncthreads();
    float s[L::RM][L::CN];
#pragma unroll
    for (int x = 0; x < L::RM; ++x)
#pragma unroll
      for (int u = 0; u < L::CN; ++u) s[x][u] = 0.f;
#pragma unroll 2
    for (int c = 0; c < D; ++c) {
      float qa[L::RM], kb[L::CN];
#pragma unroll
      for (int x = 0; x < L::RM; ++x) qa[x] = Qs[(tr * L::RM + x) * L::LQ + c];
#pragma unroll
      for (int u = 0; u < L::CN; ++u) kb[u] = Ks[(tc + 8 * u) * L::LK + c];
#pragma unroll
      for (int x = 0; x < L::RM; ++x)
#pragma unroll
        for (int u = 0; u < L::CN; ++u) s[x][u] = fmaf(qa[x], kb[u], s[x][u]);
    }
    // online softmax: running max m (base-2 units), sum l; keys >= nk get p = 0
#pragma unroll
    for (int x = 0; x < L::RM; ++x) {
      float tmax = -INFINITY;
#pragma unroll
      for (int u = 0; u < L::CN; ++u)
        if (j0 + tc + 8 * u < a.nk) tmax = fmaxf(tmax, s[x][u]);
      tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 1));
      tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 2));
      tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 4));
      const float mnew = fmaxf(m[x], tmax * cl);  // finite: every tile has a valid key
      const float alpha = exp2f(m[x] - mnew);    // 0 on the first tile
      float sum = 0.f;
#pragma unroll
      for (int u = 0; u < L::CN; ++u) {
        const float p = j0 + tc + 8 * u < a.nk ? exp2f(fmaf(s[x][u], cl, -mnew)) : 0.f;
        sum += p;
        Ss[(tr * L::RM + x) * L::LS + tc + 8 * u] = p;
      }
      sum += __shfl_xor_sync(kFull, sum, 1);
      sum += __shfl_xor_sync(kFull, sum, 2);
      sum += __shfl_xor_sync(kFull, sum, 4);
      l[x] = l[x] * alpha + sum;
      m[x] = mnew;
#pragma unroll
      for (int c = 0; c < L::DC; ++c) o[x][c] *= alpha;
    }
    __syncthreads();
    // O += P V (P of keys >= nk is zero, and so is V there)
#pragma unroll 4
    for (int jj = 0; jj < BK; ++jj) {
      float pv[L::RM];
#pragma unroll
      for (int x = 0; x < L::RM; ++x) pv[x] = Ss[(tr * L::RM + x) * L::LS + jj];
#pragma unroll
      for (int c = 0; c < L::DC; ++c) {
        const float vv = Vs[jj * L::LV + tc + 8 * c];
#pragma unroll
        for (int x = 0; x < L::RM; ++x) o[x][c] = fmaf(pv[x], vv, o[x][c]);
      }
    }
  }
#pragma unroll
  for (int x = 0; x < L::RM; ++x) {
    const int64_t i = i0 + tr * L::RM + x;
    if (i >= a.nq) continue;
    const float inv = 1.f / l[x];
    float* out = row_mut(a.o, b, i, h);
#pragma unroll
    for (int c = 0; c < L::DC; ++c)
      if (tc + 8 * c < d) out[tc + 8 * c] = o[x][c] * inv;
    if (tc == 0) a.lse[bh * a.nq + i] = (m[x] + log2f(l[x])) * kLn2;
  }
}

// ============================================================ forward, bf16 (tensor cores)
// Shared memory: Q, K, V bf16 [rows][D+8]; S fp32 [64][BK+4]; P bf16 [64][BK+8]; O fp32
// [64][D+4]. The pads keep WMMA's leading dimensions legal (multiples of 16 bytes) and spread
// the rows of a fragment over the banks; every fragment starts 32-byte aligned.
template <int D, int BK>
struct FwdBf16 {
  static constexpr int BQ = 64, LH = D + 8, LS = BK + 4, LP = BK + 8, LO = D + 4;
  static constexpr size_t q = 0, k = q + a128(BQ * LH * 2), v = k + a128(BK * LH * 2),
                          s = v + a128(BK * LH * 2), p = s + a128(BQ * LS * 4),
                          o = p + a128(BQ * LP * 2), bytes = o + a128(BQ * LO * 4);
};

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major>;
using FragAt = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

template <int D, int BK>
__global__ void __launch_bounds__(kThreads) flash_fwd_bf16(AttentionArgs a) {
  using L = FwdBf16<D, BK>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem + L::q);
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + L::k);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + L::v);
  float* Ss = reinterpret_cast<float*>(smem + L::s);
  bf16_t* Ps = reinterpret_cast<bf16_t*>(smem + L::p);
  float* Os = reinterpret_cast<float*>(smem + L::o);
  const int64_t nqt = (a.nq + L::BQ - 1) / L::BQ;
  const int64_t bh = blockIdx.x / nqt, i0 = (blockIdx.x % nqt) * L::BQ;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const float cl = a.scale * kLog2e;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  load_tile<bf16_t, L::BQ, D>(Qs, L::LH, a.q, b, h, i0, a.nq, d, true);
  for (int e = threadIdx.x; e < L::BQ * L::LO; e += kThreads) Os[e] = 0.f;
  __syncthreads();
  FragA qf[D / 16];  // this warp's 16 query rows, kept in registers for all key tiles
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    wmma::load_matrix_sync(qf[kk], Qs + 16 * warp * L::LH + 16 * kk, L::LH);
  // softmax: lanes 2r', 2r'+1 own row r = 16 warp + r', each half of its keys and of O's columns
  const int r = 16 * warp + lane / 2, half = lane % 2;
  constexpr int HK = BK / 2, HD = D / 2;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < a.nk; j0 += BK) {
    __syncthreads();  // the previous tile's K and V are consumed
    load_tile<bf16_t, BK, D>(Ks, L::LH, a.k, b, h, j0, a.nk, d, true);
    load_tile<bf16_t, BK, D>(Vs, L::LH, a.v, b, h, j0, a.nk, d, true);
    __syncthreads();
    // S[16 rows][BK] = Q K^T: K [key][dim] row-major is K^T column-major
#pragma unroll
    for (int n = 0; n < BK / 16; ++n) {
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        FragBt kf;
        wmma::load_matrix_sync(kf, Ks + 16 * n * L::LH + 16 * kk, L::LH);
        wmma::mma_sync(acc, qf[kk], kf, acc);
      }
      wmma::store_matrix_sync(Ss + 16 * warp * L::LS + 16 * n, acc, L::LS, wmma::mem_row_major);
    }
    __syncwarp();
    float sv[HK];
    float tmax = -INFINITY;
#pragma unroll
    for (int u = 0; u < HK; ++u) {
      sv[u] = Ss[r * L::LS + half * HK + u];
      if (j0 + half * HK + u < a.nk) tmax = fmaxf(tmax, sv[u]);
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 1));
    const float mnew = fmaxf(m, tmax * cl);
    const float alpha = exp2f(m - mnew);
    float sum = 0.f;
#pragma unroll
    for (int u = 0; u < HK; ++u) {
      const float p = j0 + half * HK + u < a.nk ? exp2f(fmaf(sv[u], cl, -mnew)) : 0.f;
      sum += p;  // the row sum stays fp32; P enters P V as bf16
      Ps[r * L::LP + half * HK + u] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(kFull, sum, 1);
    l = l * alpha + sum;
    m = mnew;
#pragma unroll
    for (int c = 0; c < HD; ++c) Os[r * L::LO + half * HD + c] *= alpha;
    __syncwarp();
    // O[16 rows][D] += P V
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      FragC acc;
      wmma::load_matrix_sync(acc, Os + 16 * warp * L::LO + 16 * n, L::LO, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        FragA pf;
        FragB vf;
        wmma::load_matrix_sync(pf, Ps + 16 * warp * L::LP + 16 * kk, L::LP);
        wmma::load_matrix_sync(vf, Vs + 16 * kk * L::LH + 16 * n, L::LH);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(Os + 16 * warp * L::LO + 16 * n, acc, L::LO, wmma::mem_row_major);
    }
    __syncwarp();
  }
  const int64_t i = i0 + r;
  if (i < a.nq) {
    const float inv = 1.f / l;
    float* out = row_mut(a.o, b, i, h);
    for (int c = 0; c < HD; ++c) {
      const int col = half * HD + c;
      if (col < d) out[col] = Os[r * L::LO + col] * inv;
    }
    if (half == 0) a.lse[bh * a.nq + i] = (m + log2f(l)) * kLn2;
  }
}

// ============================================================ backward: Dv and dQ = 0
// One warp per query row (b, h, i): Dv[(b H + h) nq + i] = sum_c dO O (fp32, unrounded, as the
// CPU), and dQ's row zeroed when not accumulating (the backward kernels add into dQ).
__global__ void __launch_bounds__(kThreads) flash_bwd_pre(AttentionArgs a, float* Dv) {
  const int64_t row = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= a.batch * a.heads * a.nq) return;  // whole warps
  const int64_t bh = row / a.nq, i = row % a.nq, b = bh / a.heads, h = bh % a.heads;
  const float* go = row_of(a.dout, b, i, h);
  const float* o = row_of(a.o, b, i, h);
  float s = 0.f;
  for (int64_t c = lane; c < a.head_dim; c += 32) s = fmaf(go[c], o[c], s);
  s = warp_sum(s);
  if (lane == 0) Dv[row] = s;
  if (!a.accumulate) {
    float* dq = row_mut(a.dq, b, i, h);
    for (int64_t c = lane; c < a.head_dim; c += 32) dq[c] = 0.f;
  }
}

// ============================================================ backward, fp32
// Shared memory (floats): K, V [BK][D+1], Q, dO [BQ][D+1], P, dS [BQ][BK+1], lse, Dv [BQ].
// Thread (tr, tc): S/dP/dQ rows tr*RQ + x (keys / columns tc + 8u), dK/dV keys tr*RJ + y
// (columns tc + 8u).
template <int D, int BQ, int BK>
struct BwdF32 {
  static constexpr int LD = D + 1, LP = BK + 1;
  static constexpr int RQ = BQ / 16, RJ = BK / 16, CN = BK / 8, DC = D / 8;
  static constexpr size_t k = 0, v = k + BK * LD, q = v + BK * LD, g = q + BQ * LD,
                          p = g + BQ * LD, ds = p + BQ * LP, lse = ds + BQ * LP, dv = lse + BQ,
                          bytes = (dv + BQ) * sizeof(float);
};

template <int D, int BQ, int BK>
__global__ void __launch_bounds__(kThreads) flash_bwd_f32(AttentionArgs a, const float* Dv) {
  using L = BwdF32<D, BQ, BK>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  float* smem = reinterpret_cast<float*>(smem_raw);
  float* Ks = smem + L::k;
  float* Vs = smem + L::v;
  float* Qs = smem + L::q;
  float* Gs = smem + L::g;  // dO
  float* Ps = smem + L::p;
  float* Ds = smem + L::ds;  // dS
  float* lse_s = smem + L::lse;
  float* dv_s = smem + L::dv;
  const int64_t nkt = (a.nk + BK - 1) / BK;
  const int64_t bh = blockIdx.x / nkt, j0 = (blockIdx.x % nkt) * BK;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const float cl = a.scale * kLog2e;
  const int tr = threadIdx.x / 8, tc = threadIdx.x % 8;
  load_tile<float, BK, D>(Ks, L::LD, a.k, b, h, j0, a.nk, d, false);
  load_tile<float, BK, D>(Vs, L::LD, a.v, b, h, j0, a.nk, d, false);
  float dk[L::RJ][L::DC], dv[L::RJ][L::DC];
#pragma unroll
  for (int y = 0; y < L::RJ; ++y)
#pragma unroll
    for (int c = 0; c < L::DC; ++c) dk[y][c] = dv[y][c] = 0.f;
  for (int64_t i0 = 0; i0 < a.nq; i0 += BQ) {
    __syncthreads();  // the previous query tile is consumed
    load_tile<float, BQ, D>(Qs, L::LD, a.q, b, h, i0, a.nq, d, false);
    load_tile<float, BQ, D>(Gs, L::LD, a.dout, b, h, i0, a.nq, d, false);
    for (int r = threadIdx.x; r < BQ; r += kThreads) {
      const bool ok = i0 + r < a.nq;
      lse_s[r] = ok ? a.lse[bh * a.nq + i0 + r] * kLog2e : 0.f;
      dv_s[r] = ok ? Dv[bh * a.nq + i0 + r] : 0.f;
    }
    __syncthreads();
    // S = Q K^T and dP = dO V^T for this thread's (row, key) entries
    float s[L::RQ][L::CN], dp[L::RQ][L::CN];
#pragma unroll
    for (int x = 0; x < L::RQ; ++x)
#pragma unroll
      for (int u = 0; u < L::CN; ++u) s[x][u] = dp[x][u] = 0.f;
#pragma unroll 2
    for (int c = 0; c < D; ++c) {
      float qa[L::RQ], ga[L::RQ], kb[L::CN], vb[L::CN];
#pragma unroll
      for (int x = 0; x < L::RQ; ++x) {
        qa[x] = Qs[(tr * L::RQ + x) * L::LD + c];
        ga[x] = Gs[(tr * L::RQ + x) * L::LD + c];
      }
#pragma unroll
      for (int u = 0; u < L::CN; ++u) {
        kb[u] = Ks[(tc + 8 * u) * L::LD + c];
        vb[u] = Vs[(tc + 8 * u) * L::LD + c];
      }
#pragma unroll
      for (int x = 0; x < L::RQ; ++x)
#pragma unroll
        for (int u = 0; u < L::CN; ++u) {
          s[x][u] = fmaf(qa[x], kb[u], s[x][u]);
          dp[x][u] = fmaf(ga[x], vb[u], dp[x][u]);
        }
    }
    // P = exp(S - lse), dS = P (dP - Dv); zero outside the valid rows and keys
#pragma unroll
    for (int x = 0; x < L::RQ; ++x)
#pragma unroll
      for (int u = 0; u < L::CN; ++u) {
        const int r = tr * L::RQ + x, jj = tc + 8 * u;
        const bool ok = i0 + r < a.nq && j0 + jj < a.nk;
        const float p = ok ? exp2f(fmaf(s[x][u], cl, -lse_s[r])) : 0.f;
        Ps[r * L::LP + jj] = p;
        Ds[r * L::LP + jj] = p * (dp[x][u] - dv_s[r]);
      }
    __syncthreads();
    // dV += P^T dO, dK += dS^T Q (dK scaled at the end)
#pragma unroll 2
    for (int r = 0; r < BQ; ++r) {
      float pj[L::RJ], sj[L::RJ];
#pragma unroll
      for (int y = 0; y < L::RJ; ++y) {
        pj[y] = Ps[r * L::LP + tr * L::RJ + y];
        sj[y] = Ds[r * L::LP + tr * L::RJ + y];
      }
#pragma unroll
      for (int c = 0; c < L::DC; ++c) {
        const float g = Gs[r * L::LD + tc + 8 * c], qq = Qs[r * L::LD + tc + 8 * c];
#pragma unroll
        for (int y = 0; y < L::RJ; ++y) {
          dv[y][c] = fmaf(pj[y], g, dv[y][c]);
          dk[y][c] = fmaf(sj[y], qq, dk[y][c]);
        }
      }
    }
    // dQ += scale dS K: this key tile's contribution, added atomically
    float dq[L::RQ][L::DC];
#pragma unroll
    for (int x = 0; x < L::RQ; ++x)
#pragma unroll
      for (int c = 0; c < L::DC; ++c) dq[x][c] = 0.f;
#pragma unroll 2
    for (int jj = 0; jj < BK; ++jj) {
      float sv[L::RQ];
#pragma unroll
      for (int x = 0; x < L::RQ; ++x) sv[x] = Ds[(tr * L::RQ + x) * L::LP + jj];
#pragma unroll
      for (int c = 0; c < L::DC; ++c) {
        const float kk = Ks[jj * L::LD + tc + 8 * c];
#pragma unroll
        for (int x = 0; x < L::RQ; ++x) dq[x][c] = fmaf(sv[x], kk, dq[x][c]);
      }
    }
#pragma unroll
    for (int x = 0; x < L::RQ; ++x) {
      const int64_t i = i0 + tr * L::RQ + x;
      if (i >= a.nq) continue;
      float* out = row_mut(a.dq, b, i, h);
#pragma unroll
      for (int c = 0; c < L::DC; ++c)
        if (tc + 8 * c < d) atomicAdd(out + tc + 8 * c, a.scale * dq[x][c]);
    }
  }
#pragma unroll
  for (int y = 0; y < L::RJ; ++y) {
    const int64_t j = j0 + tr * L::RJ + y;
    if (j >= a.nk) continue;
    float* ok = row_mut(a.dk, b, j, h);
    float* ov = row_mut(a.dv, b, j, h);
#pragma unroll
    for (int c = 0; c < L::DC; ++c) {
      const int col = tc + 8 * c;
      if (col >= d) continue;
      ok[col] = (a.accumulate ? ok[col] : 0.f) + a.scale * dk[y][c];
      ov[col] = (a.accumulate ? ov[col] : 0.f) + dv[y][c];
    }
  }
}

// ============================================================ backward, bf16 (tensor cores)
// Shared memory: K, V bf16 [BK][D+8]; Q, dO bf16 [BQ][D+8]; S fp32 [BQ][BK+4]; U fp32
// [BQ][max(BK, D)+4] (dP, then this tile's dQ, at the end dK and dV); P, dS bf16 [BQ][BK+8];
// lse, Dv fp32 [BQ]. dK and dV live in accumulator fragments: warp w owns the fragments
// f = w + 4u of the (BK/16) x (D/16) grid.
template <int D, int BQ, int BK>
struct BwdBf16 {
  static_assert(BQ == BK, "U holds dK/dV [BK][D] at the end: BQ rows must cover BK");
  static constexpr int LH = D + 8, LS = BK + 4, LU = (BK > D ? BK : D) + 4, LP = BK + 8;
  static constexpr int NFK = (BK / 16) * (D / 16) / kWarps;  // dK (and dV) fragments per warp
  static_assert((BK / 16) * (D / 16) % kWarps == 0, "dK/dV fragments must split over 4 warps");
  static constexpr size_t k = 0, v = k + a128(BK * LH * 2), q = v + a128(BK * LH * 2),
                          g = q + a128(BQ * LH * 2), s = g + a128(BQ * LH * 2),
                          u = s + a128(BQ * LS * 4), p = u + a128(BQ * LU * 4),
                          ds = p + a128(BQ * LP * 2), lse = ds + a128(BQ * LP * 2),
                          dv = lse + a128(BQ * 4), bytes = dv + a128(BQ * 4);
};

template <int D, int BQ, int BK>
__global__ void __launch_bounds__(kThreads) flash_bwd_bf16(AttentionArgs a, const float* Dv) {
  using L = BwdBf16<D, BQ, BK>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* Ks = reinterpret_cast<bf16_t*>(smem + L::k);
  bf16_t* Vs = reinterpret_cast<bf16_t*>(smem + L::v);
  bf16_t* Qs = reinterpret_cast<bf16_t*>(smem + L::q);
  bf16_t* Gs = reinterpret_cast<bf16_t*>(smem + L::g);  // dO
  float* Ss = reinterpret_cast<float*>(smem + L::s);
  float* Us = reinterpret_cast<float*>(smem + L::u);
  bf16_t* Ps = reinterpret_cast<bf16_t*>(smem + L::p);
  bf16_t* Ds = reinterpret_cast<bf16_t*>(smem + L::ds);  // dS
  float* lse_s = reinterpret_cast<float*>(smem + L::lse);
  float* dv_s = reinterpret_cast<float*>(smem + L::dv);
  const int64_t nkt = (a.nk + BK - 1) / BK;
  const int64_t bh = blockIdx.x / nkt, j0 = (blockIdx.x % nkt) * BK;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const float cl = a.scale * kLog2e;
  const int warp = threadIdx.x / 32;
  constexpr int FD = D / 16;  // fragments along head_dim
  load_tile<bf16_t, BK, D>(Ks, L::LH, a.k, b, h, j0, a.nk, d, true);
  load_tile<bf16_t, BK, D>(Vs, L::LH, a.v, b, h, j0, a.nk, d, true);
  FragC dkf[L::NFK], dvf[L::NFK];
#pragma unroll
  for (int u = 0; u < L::NFK; ++u) {
    wmma::fill_fragment(dkf[u], 0.f);
    wmma::fill_fragment(dvf[u], 0.f);
  }
  for (int64_t i0 = 0; i0 < a.nq; i0 += BQ) {
    __syncthreads();  // the previous query tile is consumed
    load_tile<bf16_t, BQ, D>(Qs, L::LH, a.q, b, h, i0, a.nq, d, true);
    load_tile<bf16_t, BQ, D>(Gs, L::LH, a.dout, b, h, i0, a.nq, d, true);
    for (int r = threadIdx.x; r < BQ; r += kThreads) {
      const bool ok = i0 + r < a.nq;
      lse_s[r] = ok ? a.lse[bh * a.nq + i0 + r] * kLog2e : 0.f;
      dv_s[r] = ok ? Dv[bh * a.nq + i0 + r] : 0.f;
    }
    __syncthreads();
    // S = Q K^T into Ss, dP = dO V^T into Us
    for (int f = warp; f < (BQ / 16) * (BK / 16); f += kWarps) {
      const int fm = f / (BK / 16), fn = f % (BK / 16);
      FragC sacc, pacc;
      wmma::fill_fragment(sacc, 0.f);
      wmma::fill_fragment(pacc, 0.f);
#pragma unroll 2
      for (int kk = 0; kk < FD; ++kk) {
        FragA qa, ga;
        FragBt kb, vb;
        wmma::load_matrix_sync(qa, Qs + 16 * fm * L::LH + 16 * kk, L::LH);
        wmma::load_matrix_sync(kb, Ks + 16 * fn * L::LH + 16 * kk, L::LH);
        wmma::mma_sync(sacc, qa, kb, sacc);
        wmma::load_matrix_sync(ga, Gs + 16 * fm * L::LH + 16 * kk, L::LH);
        wmma::load_matrix_sync(vb, Vs + 16 * fn * L::LH + 16 * kk, L::LH);
        wmma::mma_sync(pacc, ga, vb, pacc);
      }
      wmma::store_matrix_sync(Ss + 16 * fm * L::LS + 16 * fn, sacc, L::LS, wmma::mem_row_major);
      wmma::store_matrix_sync(Us + 16 * fm * L::LU + 16 * fn, pacc, L::LU, wmma::mem_row_major);
    }
    __syncthreads();
    // P = exp(S - lse), dS = P (dP - Dv) with fp32 P; both enter the products as bf16
    for (int e = threadIdx.x; e < BQ * BK; e += kThreads) {
      const int r = e / BK, jj = e % BK;
      const bool ok = i0 + r < a.nq && j0 + jj < a.nk;
      const float p = ok ? exp2f(fmaf(Ss[r * L::LS + jj], cl, -lse_s[r])) : 0.f;
      Ps[r * L::LP + jj] = __float2bfloat16_rn(p);
      Ds[r * L::LP + jj] = __float2bfloat16_rn(p * (Us[r * L::LU + jj] - dv_s[r]));
    }
    __syncthreads();
    // dV += P^T dO, dK += dS^T Q: P [q][k] row-major is P^T column-major
#pragma unroll
    for (int u = 0; u < L::NFK; ++u) {
      const int f = warp + kWarps * u, fm = f / FD, fn = f % FD;
#pragma unroll
      for (int kk = 0; kk < BQ / 16; ++kk) {
        FragAt pa, sa;
        FragB gb, qb;
        wmma::load_matrix_sync(pa, Ps + 16 * kk * L::LP + 16 * fm, L::LP);
        wmma::load_matrix_sync(gb, Gs + 16 * kk * L::LH + 16 * fn, L::LH);
        wmma::mma_sync(dvf[u], pa, gb, dvf[u]);
        wmma::load_matrix_sync(sa, Ds + 16 * kk * L::LP + 16 * fm, L::LP);
        wmma::load_matrix_sync(qb, Qs + 16 * kk * L::LH + 16 * fn, L::LH);
        wmma::mma_sync(dkf[u], sa, qb, dkf[u]);
      }
    }
    // this tile's dQ = dS K into Us (dP there is consumed), then added atomically
    for (int f = warp; f < (BQ / 16) * FD; f += kWarps) {
      const int fm = f / FD, fn = f % FD;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        FragA sa;
        FragB kb;
        wmma::load_matrix_sync(sa, Ds + 16 * fm * L::LP + 16 * kk, L::LP);
        wmma::load_matrix_sync(kb, Ks + 16 * kk * L::LH + 16 * fn, L::LH);
        wmma::mma_sync(acc, sa, kb, acc);
      }
      wmma::store_matrix_sync(Us + 16 * fm * L::LU + 16 * fn, acc, L::LU, wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BQ * D; e += kThreads) {
      const int r = e / D, c = e % D;
      if (i0 + r < a.nq && c < d)
        atomicAdd(row_mut(a.dq, b, i0 + r, h) + c, a.scale * Us[r * L::LU + c]);
    }
  }
  // dK, then dV, through Us to the strided outputs
  auto write = [&](FragC(&frags)[L::NFK], const StridedTensor& t, float sc) {
    __syncthreads();  // Us is free
#pragma unroll
    for (int u = 0; u < L::NFK; ++u) {
      const int f = warp + kWarps * u, fm = f / FD, fn = f % FD;
      wmma::store_matrix_sync(Us + 16 * fm * L::LU + 16 * fn, frags[u], L::LU,
                              wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < BK * D; e += kThreads) {
      const int jr = e / D, c = e % D;
      if (j0 + jr >= a.nk || c >= d) continue;
      float* out = row_mut(t, b, j0 + jr, h) + c;
      *out = (a.accumulate ? *out : 0.f) + sc * Us[jr * L::LU + c];
    }
  };
  write(dkf, a.dk, a.scale);
  write(dvf, a.dv, 1.f);
}

// ============================================================ few queries (nq <= 16)
// Forward: one warp per (query row, key split); lanes hold DV = D/32 columns of q and o. Per
// key: s = q.k by a warp reduction, then the online softmax update. With one split the row is
// written directly; otherwise the split's normalised o and its lse go to the workspace.
template <int DV>
__global__ void __launch_bounds__(kThreads)
    flash_fwd_rows(AttentionArgs a, int64_t splits, int64_t chunk, float* part_o,
                   float* part_lse) {
  const int64_t gw = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t R = a.batch * a.heads * a.nq;
  if (gw >= R * splits) return;  // whole warps
  const int64_t rr = gw / splits, sp = gw % splits;
  const int64_t bh = rr / a.nq, i = rr % a.nq, b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const float cl = a.scale * kLog2e;
  const bool half = a.bf16;
  float q[DV], o[DV];
  const float* qi = row_of(a.q, b, i, h);
#pragma unroll
  for (int t = 0; t < DV; ++t) {
    const int c = lane + 32 * t;
    const float x = c < d ? qi[c] : 0.f;
    q[t] = half ? round_bf16(x) : x;
    o[t] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int64_t jb = sp * chunk, je = jb + chunk < a.nk ? jb + chunk : a.nk;
  for (int64_t j = jb; j < je; ++j) {
    const float* kj = row_of(a.k, b, j, h);
    const float* vj = row_of(a.v, b, j, h);
    float s = 0.f, vv[DV];
#pragma unroll
    for (int t = 0; t < DV; ++t) {
      const int c = lane + 32 * t;
      const float kx = c < d ? kj[c] : 0.f, vx = c < d ? vj[c] : 0.f;
      s = fmaf(q[t], half ? round_bf16(kx) : kx, s);
      vv[t] = half ? round_bf16(vx) : vx;
    }
    s = warp_sum(s);
    const float mnew = fmaxf(m, s * cl);
    const float alpha = exp2f(m - mnew);
    const float p = exp2f(fmaf(s, cl, -mnew));
    l = l * alpha + p;
    m = mnew;
    const float pr = half ? round_bf16(p) : p;
#pragma unroll
    for (int t = 0; t < DV; ++t) o[t] = fmaf(pr, vv[t], o[t] * alpha);
  }
  const float inv = 1.f / l, lse = (m + log2f(l)) * kLn2;
  if (splits == 1) {
    float* out = row_mut(a.o, b, i, h);
#pragma unroll
    for (int t = 0; t < DV; ++t)
      if (lane + 32 * t < d) out[lane + 32 * t] = o[t] * inv;
    if (lane == 0) a.lse[rr] = lse;
  } else {
    float* out = part_o + (rr * splits + sp) * d;
#pragma unroll
    for (int t = 0; t < DV; ++t)
      if (lane + 32 * t < d) out[lane + 32 * t] = o[t] * inv;
    if (lane == 0) part_lse[rr * splits + sp] = lse;
  }
}

// One warp per query row: (o, lse) = the exact merge of the splits' partial results,
// o = sum_s e^(lse_s - M) o_s / L, lse = M + log L, L = sum_s e^(lse_s - M).
__global__ void __launch_bounds__(kThreads)
    flash_merge_splits(AttentionArgs a, int64_t splits, const float* part_o,
                       const float* part_lse) {
  const int64_t rr = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (rr >= a.batch * a.heads * a.nq) return;
  const int64_t bh = rr / a.nq, i = rr % a.nq, b = bh / a.heads, h = bh % a.heads;
  const float* ls = part_lse + rr * splits;
  float M = -INFINITY;
  for (int64_t s = 0; s < splits; ++s) M = fmaxf(M, ls[s]);
  float L = 0.f;
  for (int64_t s = 0; s < splits; ++s) L += expf(ls[s] - M);
  const float inv = 1.f / L;
  float* out = row_mut(a.o, b, i, h);
  for (int64_t c = lane; c < a.head_dim; c += 32) {
    float acc = 0.f;
    for (int64_t s = 0; s < splits; ++s)
      acc = fmaf(expf(ls[s] - M), part_o[(rr * splits + s) * a.head_dim + c], acc);
    out[c] = acc * inv;
  }
  if (lane == 0) a.lse[rr] = M + logf(L);
}

// Backward: one warp per (batch, head, key chunk); each key's dK, dV are summed over the nq
// queries in registers and written once; dQ of the nq rows accumulates over the warp's keys in
// registers and is added atomically at the end (dQ zeroed or kept by flash_bwd_pre).
template <int DV>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_rows(AttentionArgs a, int64_t splits, int64_t chunk, const float* Dv) {
  const int64_t gw = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (gw >= a.batch * a.heads * splits) return;  // whole warps
  const int64_t bh = gw / splits, sp = gw % splits, b = bh / a.heads, h = bh % a.heads;
  const int d = static_cast<int>(a.head_dim);
  const int nq = static_cast<int>(a.nq);  // <= kFewQueryMaxNq
  const float cl = a.scale * kLog2e;
  const bool half = a.bf16;
  constexpr int NQ = kFewQueryMaxNq;
  float lse2[NQ], dvi[NQ], dq[NQ][DV];
#pragma unroll
  for (int i = 0; i < NQ; ++i) {
    lse2[i] = i < nq ? a.lse[bh * nq + i] * kLog2e : 0.f;
    dvi[i] = i < nq ? Dv[bh * nq + i] : 0.f;
#pragma unroll
    for (int t = 0; t < DV; ++t) dq[i][t] = 0.f;
  }
  auto load = [&](const float* row, int t) {
    const int c = lane + 32 * t;
    const float x = c < d ? row[c] : 0.f;
    return half ? round_bf16(x) : x;
  };
  const int64_t jb = sp * chunk, je = jb + chunk < a.nk ? jb + chunk : a.nk;
  for (int64_t j = jb; j < je; ++j) {
    float kj[DV], vj[DV], dk[DV], dv[DV];
#pragma unroll
    for (int t = 0; t < DV; ++t) {
      kj[t] = load(row_of(a.k, b, j, h), t);
      vj[t] = load(row_of(a.v, b, j, h), t);
      dk[t] = dv[t] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < NQ; ++i) {
      if (i >= nq) break;  // uniform over the warp
      float qi[DV], gi[DV], s = 0.f, dp = 0.f;
#pragma unroll
      for (int t = 0; t < DV; ++t) {
        qi[t] = load(row_of(a.q, b, i, h), t);
        gi[t] = load(row_of(a.dout, b, i, h), t);
        s = fmaf(qi[t], kj[t], s);
        dp = fmaf(gi[t], vj[t], dp);
      }
      s = warp_sum(s);
      dp = warp_sum(dp);
      const float p = exp2f(fmaf(s, cl, -lse2[i]));
      const float ds = p * (dp - dvi[i]);
      const float pr = half ? round_bf16(p) : p, dsr = half ? round_bf16(ds) : ds;
#pragma unroll
      for (int t = 0; t < DV; ++t) {
        dv[t] = fmaf(pr, gi[t], dv[t]);
        dk[t] = fmaf(dsr, qi[t], dk[t]);
        dq[i][t] = fmaf(dsr, kj[t], dq[i][t]);
      }
    }
    float* ok = row_mut(a.dk, b, j, h);
    float* ov = row_mut(a.dv, b, j, h);
#pragma unroll
    for (int t = 0; t < DV; ++t) {
      const int c = lane + 32 * t;
      if (c >= d) continue;
      ok[c] = (a.accumulate ? ok[c] : 0.f) + a.scale * dk[t];
      ov[c] = (a.accumulate ? ov[c] : 0.f) + dv[t];
    }
  }
#pragma unroll
  for (int i = 0; i < NQ; ++i) {
    if (i >= nq) break;
    float* out = row_mut(a.dq, b, i, h);
#pragma unroll
    for (int t = 0; t < DV; ++t)
      if (lane + 32 * t < d) atomicAdd(out + lane + 32 * t, a.scale * dq[i][t]);
  }
}

// ============================================================ launchers
const char* const kShape = "batch,heads,nq,nk,head_dim";

// Launches kernel<<<blocks, 128, smem, s>>>(args...), opting in to more than 48 KiB of dynamic
// shared memory where the kernel needs it (sm_80: up to 163 KiB, sm_90: 227 KiB; ours <= 99).
template <typename... P, typename... A>
void launch(const char* op, const AttentionArgs& a, void (*kernel)(P...), int64_t blocks,
            size_t smem, cudaStream_t s, A... args) {
  if (blocks > 0x7fffffff)
    fail(cudaErrorInvalidConfiguration, op, kShape, {a.batch, a.heads, a.nq, a.nk, a.head_dim});
  if (smem > 48 * 1024)
    SEQVIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)),
                      op, kShape, a.batch, a.heads, a.nq, a.nk, a.head_dim);
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, s>>>(args...);
  SEQVIT_CUDA_LAUNCHED(op, kShape, a.batch, a.heads, a.nq, a.nk, a.head_dim);
}

int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

// The template head dim: the smallest of 32, 64, 128 that holds d.
int pad_dim(int64_t d) { return d <= 32 ? 32 : d <= 64 ? 64 : 128; }

// The shared memory a block may use on every target (sm_80: 163 KiB, sm_90: 227 KiB,
// sm_86/89: 99 KiB), so that 2+ blocks fit per SM on A100/H100.
constexpr size_t kMaxSharedBytes = 99 * 1024;

template <int D>
void forward_tiled(const AttentionArgs& a, cudaStream_t s) {
  constexpr int BK = D == 128 ? 32 : 64;  // keeps shared memory <= 81 KiB
  static_assert(FwdF32<D, BK>::bytes <= kMaxSharedBytes && FwdBf16<D, BK>::bytes <= kMaxSharedBytes);
  const int64_t blocks = a.batch * a.heads * ceil_div(a.nq, 64);
  if (a.bf16)
    launch("flash_attention_forward (bf16)", a, flash_fwd_bf16<D, BK>, blocks,
           FwdBf16<D, BK>::bytes, s, a);
  else
    launch("flash_attention_forward (fp32)", a, flash_fwd_f32<D, BK>, blocks,
           FwdF32<D, BK>::bytes, s, a);
}

template <int D>
void backward_tiled(const AttentionArgs& a, const float* Dv, cudaStream_t s) {
  const int64_t BH = a.batch * a.heads;
  if (a.bf16) {
    constexpr int B = D == 128 ? 32 : 64;  // BQ = BK; <= 89 KiB of shared memory
    static_assert(BwdBf16<D, B, B>::bytes <= kMaxSharedBytes);
    launch("flash_attention_backward (bf16)", a, flash_bwd_bf16<D, B, B>, BH * ceil_div(a.nk, B),
           BwdBf16<D, B, B>::bytes, s, a, Dv);
  } else {
    constexpr int BQ = 32, BK = D == 128 ? 32 : 64;  // <= 73 KiB
    static_assert(BwdF32<D, BQ, BK>::bytes <= kMaxSharedBytes);
    launch("flash_attention_backward (fp32)", a, flash_bwd_f32<D, BQ, BK>,
           BH * ceil_div(a.nk, BK), BwdF32<D, BQ, BK>::bytes, s, a, Dv);
  }
}

template <int DV>
void forward_rows(const AttentionArgs& a, const FlashPlan& p, cudaStream_t s) {
  char* ws = static_cast<char*>(a.workspace);
  float* part_o = p.fwd_splits > 1 ? reinterpret_cast<float*>(ws + p.part_o) : nullptr;
  float* part_lse = p.fwd_splits > 1 ? reinterpret_cast<float*>(ws + p.part_lse) : nullptr;
  const int64_t R = a.batch * a.heads * a.nq;
  launch("flash_attention_forward (few queries)", a, flash_fwd_rows<DV>,
         ceil_div(R * p.fwd_splits, kWarps), 0, s, a, p.fwd_splits, p.fwd_chunk, part_o,
         part_lse);
  if (p.fwd_splits > 1)
    launch("flash_attention_forward (merge of key splits)", a, flash_merge_splits,
           ceil_div(R, kWarps), 0, s, a, p.fwd_splits, static_cast<const float*>(part_o),
           static_cast<const float*>(part_lse));
}

template <int DV>
void backward_rows(const AttentionArgs& a, const FlashPlan& p, const float* Dv, cudaStream_t s) {
  launch("flash_attention_backward (few queries)", a, flash_bwd_rows<DV>,
         ceil_div(a.batch * a.heads * p.bwd_splits, kWarps), 0, s, a, p.bwd_splits, p.bwd_chunk,
         Dv);
}

}  // namespace

void flash_forward_launch(const AttentionArgs& a, const FlashPlan& p, cudaStream_t s) {
  switch (pad_dim(a.head_dim)) {
    case 32: return p.rows ? forward_rows<1>(a, p, s) : forward_tiled<32>(a, s);
    case 64: return p.rows ? forward_rows<2>(a, p, s) : forward_tiled<64>(a, s);
    default: return p.rows ? forward_rows<4>(a, p, s) : forward_tiled<128>(a, s);
  }
}

void flash_backward_launch(const AttentionArgs& a, const FlashPlan& p, cudaStream_t s) {
  float* Dv = reinterpret_cast<float*>(static_cast<char*>(a.workspace) + p.dv);
  launch("flash_attention_backward (Dv = rowsum(dO O))", a, flash_bwd_pre,
         ceil_div(a.batch * a.heads * a.nq, kWarps), 0, s, a, Dv);
  const float* cDv = Dv;
  switch (pad_dim(a.head_dim)) {
    case 32: return p.rows ? backward_rows<1>(a, p, cDv, s) : backward_tiled<32>(a, cDv, s);
    case 64: return p.rows ? backward_rows<2>(a, p, cDv, s) : backward_tiled<64>(a, cDv, s);
    default: return p.rows ? backward_rows<4>(a, p, cDv, s) : backward_tiled<128>(a, cDv, s);
  }
}

}  // namespace seqvit::backend::cuda
