// Dense attention and the naive oracle on the GPU (docs/cuda.md "Dense and naive attention"):
// the same contracts as kernels/attention_dense.cpp and kernels/attention_naive.cpp.
//
// Dense: per (batch, head) S = scale Q K^T written to probs [B, H, nq, nk], a row softmax in
// place (lse = max + log sum exp), O = P V. Backward from the stored P: dV = P^T dO,
// dP = dO V^T, dS = P (dP - rowsum(dO O)), dQ = scale dS K, dK = scale dS^T Q. All products go
// through one plain tiled kernel (dense_mm, 64 x 64 tiles, CUDA cores) that reads strided
// operands directly; bf16 rounds Q, K, V, P, dO and dS as they are loaded (a product of two
// bf16 values is exact in fp32, so this is bf16 x bf16 -> fp32 arithmetic). It is the "without
// flash" comparison, not a tuned path.
//
// Naive: one thread per query row (forward, dQ) or key row (dK, dV) of one (batch, head),
// recomputing scores as it goes; the order of every sum is the CPU oracle's.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/check.h"

namespace seqvit::backend::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
const char* const kShape = "batch,heads,nq,nk,head_dim";

__device__ __forceinline__ float rnd(float x, bool bf16) {
  return bf16 ? __bfloat162float(__float2bfloat16_rn(x)) : x;
}

__device__ __forceinline__ float* row_of(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  return x;
}

// ============================================================ dense
// A matrix of pair z = (b, h) (z in [z0, z0 + count)): element (r, c) at
// p + b sb + h sh + (z - z0) sz + r rs + c cs.
struct Mat {
  float* p;
  int64_t sb, sh, sz, rs, cs;
};

__device__ __forceinline__ float* mat_base(const Mat& m, int64_t z, int64_t z0, int64_t heads) {
  return m.p + (z / heads) * m.sb + (z % heads) * m.sh + (z - z0) * m.sz;
}

constexpr int kTM = 64, kTN = 64, kTK = 16, kMmThreads = 256;

// C[M, N] = (acc ? C : 0) + alpha A[M, K] B[K, N] for pairs z0 + blockIdx / tiles. 256
// threads, each a 4 x 4 block of C (rows ty*4 + x, columns tx + 16u). The tile loads walk the
// operand's unit-stride index fastest (coalesced whichever way the operand is stored).
__global__ void __launch_bounds__(kMmThreads)
    dense_mm(int64_t M, int64_t N, int64_t K, int64_t heads, int64_t z0, int64_t tiles_m,
             int64_t tiles_n, Mat A, Mat B, Mat C, float alpha, bool acc, bool bf16) {
  __shared__ float As[kTK][kTM + 1];  // As[k][m]
  __shared__ float Bs[kTK][kTN + 1];  // Bs[k][n]
  const int64_t per = tiles_m * tiles_n;
  const int64_t z = z0 + blockIdx.x / per, t = blockIdx.x % per;
  const int64_t m0 = (t / tiles_n) * kTM, n0 = (t % tiles_n) * kTN;
  const float* Ab = mat_base(A, z, z0, heads);
  const float* Bb = mat_base(B, z, z0, heads);
  float* Cb = mat_base(C, z, z0, heads);
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  float c[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTK) {
    for (int e = tid; e < kTM * kTK; e += kMmThreads) {
      const int m = A.cs == 1 ? e / kTK : e % kTM, k = A.cs == 1 ? e % kTK : e / kTM;
      const bool ok = m0 + m < M && k0 + k < K;
      As[k][m] = ok ? rnd(Ab[(m0 + m) * A.rs + (k0 + k) * A.cs], bf16) : 0.f;
    }
    for (int e = tid; e < kTK * kTN; e += kMmThreads) {
      const int n = B.cs == 1 ? e % kTN : e / kTK, k = B.cs == 1 ? e / kTN : e % kTK;
      const bool ok = n0 + n < N && k0 + k < K;
      Bs[k][n] = ok ? rnd(Bb[(k0 + k) * B.rs + (n0 + n) * B.cs], bf16) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int x = 0; x < 4; ++x) a[x] = As[k][ty * 4 + x];
#pragma unroll
      for (int u = 0; u < 4; ++u) b[u] = Bs[k][tx + 16 * u];
#pragma unroll
      for (int x = 0; x < 4; ++x)
#pragma unroll
        for (int u = 0; u < 4; ++u) c[x][u] = fmaf(a[x], b[u], c[x][u]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int x = 0; x < 4; ++x)
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t m = m0 + ty * 4 + x, n = n0 + tx + 16 * u;
      if (m >= M || n >= N) continue;
      float* out = Cb + m * C.rs + n * C.cs;
      *out = (acc ? *out : 0.f) + alpha * c[x][u];
    }
}

// One warp per row of P [rows][nk]: P = softmax(P) in place, lse[row] = max + log sum exp.
__global__ void dense_softmax(float* P, float* lse, int64_t rows, int64_t nk) {
  const int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps
  float* p = P + row * nk;
  float m = -INFINITY;
  for (int64_t j = lane; j < nk; j += 32) m = fmaxf(m, p[j]);
  m = warp_max(m);
  float s = 0.f;
  for (int64_t j = lane; j < nk; j += 32) {
    const float e = expf(p[j] - m);
    p[j] = e;
    s += e;
  }
  s = warp_sum(s);
  const float inv = 1.f / s;
  for (int64_t j = lane; j < nk; j += 32) p[j] *= inv;
  if (lane == 0) lse[row] = m + logf(s);
}

// One warp per query row of pairs [z0, z0 + count): dS = P (dP - rowsum(dO O)) in place of dP
// (dS [count][nq][nk]); rowsum from fp32 dO and O, unrounded, as the CPU.
__global__ void dense_ds(AttentionArgs a, int64_t z0, int64_t count, float* dS) {
  const int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= count * a.nq) return;
  const int64_t z = z0 + row / a.nq, i = row % a.nq, b = z / a.heads, h = z % a.heads;
  const float* go = row_of(a.dout, b, i, h);
  const float* o = row_of(a.o, b, i, h);
  float r = 0.f;
  for (int64_t c = lane; c < a.head_dim; c += 32) r = fmaf(go[c], o[c], r);
  r = warp_sum(r);
  const float* p = a.probs + (z * a.nq + i) * a.nk;
  float* ds = dS + row * a.nk;
  for (int64_t j = lane; j < a.nk; j += 32) ds[j] = p[j] * (ds[j] - r);
}

Mat strided(const StridedTensor& t) { return Mat{t.data, t.sb, t.sh, 0, t.sn, 1}; }
// (r, c) = t[c][r]: the transpose of a strided [token][dim] head
Mat strided_t(const StridedTensor& t) { return Mat{t.data, t.sb, t.sh, 0, 1, t.sn}; }

void mm(const AttentionArgs& a, const char* op, int64_t z0, int64_t count, int64_t M, int64_t N,
        int64_t K, const Mat& A, const Mat& B, const Mat& C, float alpha, bool acc,
        cudaStream_t s) {
  const int64_t tm = (M + kTM - 1) / kTM, tn = (N + kTN - 1) / kTN, blocks = count * tm * tn;
  if (blocks > 0x7fffffff)
    fail(cudaErrorInvalidConfiguration, op, kShape, {a.batch, a.heads, a.nq, a.nk, a.head_dim});
  dense_mm<<<static_cast<unsigned>(blocks), kMmThreads, 0, s>>>(M, N, K, a.heads, z0, tm, tn, A,
                                                                 B, C, alpha, acc, a.bf16);
  SEQVIT_CUDA_LAUNCHED(op, kShape, a.batch, a.heads, a.nq, a.nk, a.head_dim);
}

unsigned warp_blocks(int64_t rows, int warps_per_block) {
  return static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
}

// ============================================================ naive
// s_ij = scale * sum_c q_c k_c with q, k rounded as the oracle rounds them.
__device__ float naive_score(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, int64_t j) {
  const float* q = row_of(a.q, b, i, h);
  const float* k = row_of(a.k, b, j, h);
  float acc = 0.f;
  for (int64_t c = 0; c < a.head_dim; ++c) acc += rnd(q[c], a.bf16) * rnd(k[c], a.bf16);
  return a.scale * acc;
}

// One thread per (b, h, i): m = max_j s, l = sum exp(s - m), o = sum rnd(exp(s - m)) v / l.
__global__ void naive_fwd(AttentionArgs a) {
  const int64_t rr = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (rr >= a.batch * a.heads * a.nq) return;
  const int64_t bh = rr / a.nq, i = rr % a.nq, b = bh / a.heads, h = bh % a.heads;
  float m = -INFINITY;
  for (int64_t j = 0; j < a.nk; ++j) m = fmaxf(m, naive_score(a, b, h, i, j));
  float l = 0.f;
  for (int64_t j = 0; j < a.nk; ++j) l += expf(naive_score(a, b, h, i, j) - m);
  float* o = row_of(a.o, b, i, h);
  for (int64_t c = 0; c < a.head_dim; ++c) o[c] = 0.f;
  for (int64_t j = 0; j < a.nk; ++j) {
    const float p = rnd(expf(naive_score(a, b, h, i, j) - m), a.bf16);
    const float* v = row_of(a.v, b, j, h);
    for (int64_t c = 0; c < a.head_dim; ++c) o[c] += p * rnd(v[c], a.bf16);
  }
  for (int64_t c = 0; c < a.head_dim; ++c) o[c] = o[c] / l;
  a.lse[rr] = m + logf(l);
}

// dS_ij = rnd(P_ij (dO_i . V_j - Dv_i)) with P_ij = exp(s_ij - lse_i), Dv_i = dO_i . O_i
// (fp32, unrounded); also returns rnd(P_ij) in *pr.
__device__ float naive_ds(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, int64_t j,
                          float Dv, float* pr) {
  const float p = expf(naive_score(a, b, h, i, j) - a.lse[(b * a.heads + h) * a.nq + i]);
  const float* go = row_of(a.dout, b, i, h);
  const float* v = row_of(a.v, b, j, h);
  float dp = 0.f;
  for (int64_t c = 0; c < a.head_dim; ++c) dp += rnd(go[c], a.bf16) * rnd(v[c], a.bf16);
  *pr = rnd(p, a.bf16);
  return rnd(p * (dp - Dv), a.bf16);
}

__device__ float naive_dv(const AttentionArgs& a, int64_t b, int64_t h, int64_t i) {
  const float* go = row_of(a.dout, b, i, h);
  const float* o = row_of(a.o, b, i, h);
  float s = 0.f;
  for (int64_t c = 0; c < a.head_dim; ++c) s += go[c] * o[c];
  return s;
}

// One thread per (b, h, i): dQ_i = (acc ? dQ_i : 0) + scale sum_j dS_ij K_j, summed in w.
__global__ void naive_bwd_dq(AttentionArgs a, float* w) {
  const int64_t rr = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (rr >= a.batch * a.heads * a.nq) return;
  const int64_t bh = rr / a.nq, i = rr % a.nq, b = bh / a.heads, h = bh % a.heads;
  const int64_t d = a.head_dim;
  float* acc = w + rr * d;
  for (int64_t c = 0; c < d; ++c) acc[c] = 0.f;
  const float Dv = naive_dv(a, b, h, i);
  for (int64_t j = 0; j < a.nk; ++j) {
    float pr;
    const float ds = naive_ds(a, b, h, i, j, Dv, &pr);
    const float* k = row_of(a.k, b, j, h);
    for (int64_t c = 0; c < d; ++c) acc[c] += ds * rnd(k[c], a.bf16);
  }
  float* dq = row_of(a.dq, b, i, h);
  for (int64_t c = 0; c < d; ++c) dq[c] = (a.accumulate ? dq[c] : 0.f) + a.scale * acc[c];
}

// One thread per (b, h, j): dK_j = scale sum_i dS_ij Q_i, dV_j = sum_i rnd(P_ij) dO_i (+= the
// old values when accumulating), summed in wk, wv.
__global__ void naive_bwd_dkv(AttentionArgs a, float* wk, float* wv) {
  const int64_t rr = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (rr >= a.batch * a.heads * a.nk) return;
  const int64_t bh = rr / a.nk, j = rr % a.nk, b = bh / a.heads, h = bh % a.heads;
  const int64_t d = a.head_dim;
  float* acck = wk + rr * d;
  float* accv = wv + rr * d;
  for (int64_t c = 0; c < d; ++c) acck[c] = accv[c] = 0.f;
  for (int64_t i = 0; i < a.nq; ++i) {
    float pr;
    const float ds = naive_ds(a, b, h, i, j, naive_dv(a, b, h, i), &pr);
    const float* q = row_of(a.q, b, i, h);
    const float* go = row_of(a.dout, b, i, h);
    for (int64_t c = 0; c < d; ++c) {
      acck[c] += ds * rnd(q[c], a.bf16);
      accv[c] += pr * rnd(go[c], a.bf16);
    }
  }
  float* dk = row_of(a.dk, b, j, h);
  float* dv = row_of(a.dv, b, j, h);
  for (int64_t c = 0; c < d; ++c) {
    dk[c] = (a.accumulate ? dk[c] : 0.f) + a.scale * acck[c];
    dv[c] = (a.accumulate ? dv[c] : 0.f) + accv[c];
  }
}

constexpr int kNaiveThreads = 128;

unsigned thread_blocks(int64_t n) {
  return static_cast<unsigned>((n + kNaiveThreads - 1) / kNaiveThreads);
}

}  // namespace

void dense_forward_launch(const AttentionArgs& a, cudaStream_t s) {
  const int64_t BH = a.batch * a.heads, nq = a.nq, nk = a.nk, d = a.head_dim;
  const Mat P{a.probs, a.heads * nq * nk, nq * nk, 0, nk, 1};
  // S = scale Q K^T into probs; B(k = c, n = j) = K[j][c]
  mm(a, "dense_attention_forward: S = scale Q K^T", 0, BH, nq, nk, d, strided(a.q),
     strided_t(a.k), P, a.scale, false, s);
  const int warps = 4;
  dense_softmax<<<warp_blocks(BH * nq, warps), 32 * warps, 0, s>>>(a.probs, a.lse, BH * nq, nk);
  SEQVIT_CUDA_LAUNCHED("dense_attention_forward: softmax", kShape, a.batch, a.heads, a.nq, a.nk,
                       a.head_dim);
  mm(a, "dense_attention_forward: O = P V", 0, BH, nq, d, nk, P, strided(a.v), strided(a.o), 1.f,
     false, s);
}

void dense_backward_launch(const AttentionArgs& a, const DensePlan& p, cudaStream_t s) {
  const int64_t BH = a.batch * a.heads, nq = a.nq, nk = a.nk, d = a.head_dim;
  const Mat Pt{a.probs, a.heads * nq * nk, nq * nk, 0, 1, nk};
  float* ws = reinterpret_cast<float*>(static_cast<char*>(a.workspace) + p.ds);
  const Mat dS{ws, 0, 0, nq * nk, nk, 1};
  const Mat dSt{ws, 0, 0, nq * nk, 1, nk};
  for (int64_t z0 = 0; z0 < BH; z0 += p.chunk) {
    const int64_t n = BH - z0 < p.chunk ? BH - z0 : p.chunk;
    mm(a, "dense_attention_backward: dV = P^T dO", z0, n, nk, d, nq, Pt, strided(a.dout),
       strided(a.dv), 1.f, a.accumulate, s);
    mm(a, "dense_attention_backward: dP = dO V^T", z0, n, nq, nk, d, strided(a.dout),
       strided_t(a.v), dS, 1.f, false, s);
    const int warps = 4;
    dense_ds<<<warp_blocks(n * nq, warps), 32 * warps, 0, s>>>(a, z0, n, ws);
    SEQVIT_CUDA_LAUNCHED("dense_attention_backward: dS", kShape, a.batch, a.heads, a.nq, a.nk,
                         a.head_dim);
    mm(a, "dense_attention_backward: dQ = scale dS K", z0, n, nq, d, nk, dS, strided(a.k),
       strided(a.dq), a.scale, a.accumulate, s);
    mm(a, "dense_attention_backward: dK = scale dS^T Q", z0, n, nk, d, nq, dSt, strided(a.q),
       strided(a.dk), a.scale, a.accumulate, s);
  }
}

void naive_forward_launch(const AttentionArgs& a, cudaStream_t s) {
  naive_fwd<<<thread_blocks(a.batch * a.heads * a.nq), kNaiveThreads, 0, s>>>(a);
  SEQVIT_CUDA_LAUNCHED("naive_attention_forward", kShape, a.batch, a.heads, a.nq, a.nk,
                       a.head_dim);
}

void naive_backward_launch(const AttentionArgs& a, const NaivePlan& p, cudaStream_t s) {
  char* ws = static_cast<char*>(a.workspace);
  naive_bwd_dq<<<thread_blocks(a.batch * a.heads * a.nq), kNaiveThreads, 0, s>>>(
      a, reinterpret_cast<float*>(ws + p.dq));
  SEQVIT_CUDA_LAUNCHED("naive_attention_backward: dQ", kShape, a.batch, a.heads, a.nq, a.nk,
                       a.head_dim);
  naive_bwd_dkv<<<thread_blocks(a.batch * a.heads * a.nk), kNaiveThreads, 0, s>>>(
      a, reinterpret_cast<float*>(ws + p.dk), reinterpret_cast<float*>(ws + p.dv));
  SEQVIT_CUDA_LAUNCHED("naive_attention_backward: dK, dV", kShape, a.batch, a.heads, a.nq, a.nk,
                       a.head_dim);
}

}  // namespace seqvit::backend::cuda
