// Dense ("standard", non-flash) attention: the comparison point for flash attention
// (docs/flash_attention.md, "Dense attention, for comparison"). Per (batch, head) it
// materialises S = scale Q K^T with a GEMM, turns it into the probabilities P in the caller's
// `probs` buffer [B, H, nq, nk] (kept for backward, as PyTorch's manual attention keeps its
// softmax output), and multiplies O = P V. Backward reads the stored P.
//
// Parallelism: with at least as many (batch, head) pairs as threads (and an even split, or many
// pairs) each thread takes whole heads and calls the GEMMs single-threaded (oneDNN runs on the
// calling thread inside a parallel region); otherwise the heads run one after another and the
// GEMMs and row loops use every thread. Each thread packs its head's Q, K, V (and dO) into
// contiguous scratch (bf16 in mixed precision), which also handles any strided layout.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

// Per-thread scratch layout (byte offsets, 64-byte aligned regions).
struct Layout {
  size_t q = 0, k = 0, v = 0, dout = 0;  // packed inputs: fp32 or bf16 [n][d]
  size_t oq = 0, ok = 0, ov = 0;         // fp32 outputs [n][d]: O or dQ, dK, dV
  size_t dp = 0;                         // fp32 [nq][nk]: dP, then dS (backward)
  size_t pb = 0;                         // bf16 [nq][nk]: P or dS as a GEMM input (bf16 only)
  size_t rowv = 0;                       // fp32 [nq]: rowsum(dO * O)
  size_t per_thread = 0;
};

Layout make_layout(const AttentionArgs& a) {
  Layout l;
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += (bytes + 63) / 64 * 64;
    return at;
  };
  const size_t nq = static_cast<size_t>(a.nq), nk = static_cast<size_t>(a.nk),
               d = static_cast<size_t>(a.head_dim), in = a.bf16 ? sizeof(bf16) : sizeof(float);
  l.q = take(nq * d * in);
  l.k = take(nk * d * in);
  l.v = take(nk * d * in);
  l.dout = take(nq * d * in);
  l.oq = take(nq * d * 4);
  l.ok = take(nk * d * 4);
  l.ov = take(nk * d * 4);
  l.dp = take(nq * nk * 4);
  if (a.bf16) l.pb = take(nq * nk * sizeof(bf16));
  l.rowv = take(nq * 4);
  l.per_thread = off;
  return l;
}

// Threads that take whole heads (the outer loop); 1: heads in turn, parallel inside.
int outer_threads(int64_t BH, int threads) {
  if (threads <= 1) return 1;
  if (BH >= threads && (BH % threads == 0 || BH >= 4 * threads)) return threads;
  return 1;
}

void validate(const AttentionArgs& a, bool backward) {
  SEQVIT_CHECK(a.batch >= 1 && a.heads >= 1 && a.nq >= 1 && a.nk >= 1 && a.head_dim >= 1,
               "dense attention: need batch, heads, nq, nk, head_dim >= 1, got batch={} heads={} "
               "nq={} nk={} head_dim={}",
               a.batch, a.heads, a.nq, a.nk, a.head_dim);
  SEQVIT_CHECK(a.scale > 0.f && std::isfinite(a.scale),
               "dense attention: scale={} must be positive (usually 1/sqrt(head_dim))", a.scale);
  SEQVIT_CHECK(a.q.data && a.k.data && a.v.data && a.o.data && a.lse && a.probs,
               "dense attention: q, k, v, o, lse and probs must be set");
  if (backward)
    SEQVIT_CHECK(a.dout.data && a.dq.data && a.dk.data && a.dv.data,
                 "dense attention backward: dout, dq, dk and dv must be set");
}

// Threads of the outer loop the workspace can feed; throws if it cannot feed one.
int threads_for(const AttentionArgs& a, const Layout& l) {
  const size_t have = a.workspace ? a.workspace_bytes : 0;
  const int want = omp_get_max_threads();
  if (have < l.per_thread)
    fail("dense attention: workspace of {} bytes is too small; this shape (batch={} heads={} "
         "nq={} nk={} head_dim={} bf16={}) needs dense_attention_workspace_bytes() = {} bytes "
         "for {} threads",
         have, a.batch, a.heads, a.nq, a.nk, a.head_dim, a.bf16,
         dense_attention_workspace_bytes(a, want), want);
  const int fit = static_cast<int>(std::min<size_t>(have / l.per_thread, 1024));
  const int outer = outer_threads(a.batch * a.heads, want);
  return outer > 1 && fit >= 2 ? std::min(outer, fit) : 1;
}

const float* row(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}
float* row_mut(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}

// One head of t into dst[n][d] (fp32 or bf16).
void pack(const StridedTensor& t, int64_t b, int64_t h, int64_t n, int64_t d, bool half,
          char* dst) {
  for (int64_t i = 0; i < n; ++i) {
    if (half)
      convert_to_bf16(row(t, b, i, h), reinterpret_cast<bf16*>(dst) + i * d, d);
    else
      std::copy_n(row(t, b, i, h), d, reinterpret_cast<float*>(dst) + i * d);
  }
}

// dst head (b, h) = (or +=) src[n][d].
void unpack(const float* src, const StridedTensor& t, int64_t b, int64_t h, int64_t n, int64_t d,
            bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    float* y = row_mut(t, b, i, h);
    const float* x = src + i * d;
    if (accumulate)
      for (int64_t c = 0; c < d; ++c) y[c] += x[c];
    else
      std::copy_n(x, d, y);
  }
}

// C = alpha op(A) op(B) with A, B fp32 or bf16 (per `half`).
void mm(bool half, Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const char* A,
        int64_t lda, const char* B, int64_t ldb, float* C, int64_t ldc) {
  if (half)
    gemm_bf16(ta, tb, M, N, K, alpha, reinterpret_cast<const bf16*>(A), lda,
              reinterpret_cast<const bf16*>(B), ldb, 0.f, C, ldc);
  else
    gemm_f32(ta, tb, M, N, K, alpha, reinterpret_cast<const float*>(A), lda,
             reinterpret_cast<const float*>(B), ldb, 0.f, C, ldc);
}

struct Head {
  const AttentionArgs& a;
  const Layout& l;
  char* ws;  // this thread's scratch
  template <typename T>
  T* at(size_t off) const {
    return reinterpret_cast<T*>(ws + off);
  }
};

void forward_head(const Head& x, int64_t bh) {
  const AttentionArgs& a = x.a;
  const int64_t b = bh / a.heads, h = bh % a.heads, nq = a.nq, nk = a.nk, d = a.head_dim;
  pack(a.q, b, h, nq, d, a.bf16, x.at<char>(x.l.q));
  pack(a.k, b, h, nk, d, a.bf16, x.at<char>(x.l.k));
  pack(a.v, b, h, nk, d, a.bf16, x.at<char>(x.l.v));
  float* P = a.probs + bh * nq * nk;
  mm(a.bf16, Op::N, Op::T, nq, nk, d, a.scale, x.at<char>(x.l.q), d, x.at<char>(x.l.k), d, P,
     nk);
  float* lse = a.lse + bh * nq;
  softmax_forward(P, P, nq, nk, lse);
  float* O = x.at<float>(x.l.oq);
  if (a.bf16) {
    bf16* pb = x.at<bf16>(x.l.pb);
    parallel_ranges(nq * nk, [&](int64_t i0, int64_t i1) { convert_to_bf16(P + i0, pb + i0, i1 - i0); });
    mm(true, Op::N, Op::N, nq, d, nk, 1.f, reinterpret_cast<const char*>(pb), nk,
       x.at<char>(x.l.v), d, O, d);
  } else {
    mm(false, Op::N, Op::N, nq, d, nk, 1.f, reinterpret_cast<const char*>(P), nk,
       x.at<char>(x.l.v), d, O, d);
  }
  unpack(O, a.o, b, h, nq, d, false);
}

void backward_head(const Head& x, int64_t bh) {
  const AttentionArgs& a = x.a;
  const int64_t b = bh / a.heads, h = bh % a.heads, nq = a.nq, nk = a.nk, d = a.head_dim;
  const char* q = x.at<char>(x.l.q);
  const char* k = x.at<char>(x.l.k);
  const char* v = x.at<char>(x.l.v);
  const char* go = x.at<char>(x.l.dout);
  pack(a.q, b, h, nq, d, a.bf16, x.at<char>(x.l.q));
  pack(a.k, b, h, nk, d, a.bf16, x.at<char>(x.l.k));
  pack(a.v, b, h, nk, d, a.bf16, x.at<char>(x.l.v));
  pack(a.dout, b, h, nq, d, a.bf16, x.at<char>(x.l.dout));
  const float* P = a.probs + bh * nq * nk;
  float* dS = x.at<float>(x.l.dp);
  bf16* pb = a.bf16 ? x.at<bf16>(x.l.pb) : nullptr;
  auto to_bf16_all = [&](const float* src) {
    parallel_ranges(nq * nk,
                    [&](int64_t i0, int64_t i1) { convert_to_bf16(src + i0, pb + i0, i1 - i0); });
  };
  // dV = P^T dO
  float* dV = x.at<float>(x.l.ov);
  if (a.bf16) to_bf16_all(P);
  mm(a.bf16, Op::T, Op::N, nk, d, nq, 1.f,
     a.bf16 ? reinterpret_cast<const char*>(pb) : reinterpret_cast<const char*>(P), nk, go, d, dV,
     d);
  // dP = dO V^T, then dS = P (dP - rowsum(dO O)) in place
  mm(a.bf16, Op::N, Op::T, nq, nk, d, 1.f, go, d, v, d, dS, nk);
  float* rowv = x.at<float>(x.l.rowv);
  for (int64_t i = 0; i < nq; ++i) {  // fp32, unrounded dO (as flash)
    const float* o = row(a.o, b, i, h);
    const float* g = row(a.dout, b, i, h);
    float s = 0.f;
    for (int64_t c = 0; c < d; ++c) s += g[c] * o[c];
    rowv[i] = s;
  }
  parallel_rows(nq, nk, [&](int64_t i) {
    const float* p = P + i * nk;
    float* ds = dS + i * nk;
    const float r = rowv[i];
#pragma omp simd
    for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - r);
  });
  const char* dsm = reinterpret_cast<const char*>(dS);
  if (a.bf16) {
    to_bf16_all(dS);
    dsm = reinterpret_cast<const char*>(pb);
  }
  // dQ = scale dS K, dK = scale dS^T Q
  float* dQ = x.at<float>(x.l.oq);
  float* dK = x.at<float>(x.l.ok);
  mm(a.bf16, Op::N, Op::N, nq, d, nk, a.scale, dsm, nk, k, d, dQ, d);
  mm(a.bf16, Op::T, Op::N, nk, d, nq, a.scale, dsm, nk, q, d, dK, d);
  unpack(dQ, a.dq, b, h, nq, d, a.accumulate);
  unpack(dK, a.dk, b, h, nk, d, a.accumulate);
  unpack(dV, a.dv, b, h, nk, d, a.accumulate);
}

template <typename F>
void run_heads(const AttentionArgs& a, const Layout& l, F&& f) {
  const int T = threads_for(a, l);
  char* ws = static_cast<char*>(a.workspace);
  const int64_t BH = a.batch * a.heads;
  if (T == 1) {
    const Head x{a, l, ws};
    for (int64_t bh = 0; bh < BH; ++bh) f(x, bh);
    return;
  }
#pragma omp parallel for num_threads(T) schedule(dynamic, 1)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const Head x{a, l, ws + static_cast<size_t>(omp_get_thread_num()) * l.per_thread};
    f(x, bh);
  }
}

}  // namespace

size_t dense_attention_probs_floats(const AttentionArgs& a) {
  return static_cast<size_t>(a.batch) * static_cast<size_t>(a.heads) *
         static_cast<size_t>(a.nq) * static_cast<size_t>(a.nk);
}

size_t dense_attention_workspace_bytes(const AttentionArgs& a, int threads) {
  return make_layout(a).per_thread *
         static_cast<size_t>(outer_threads(a.batch * a.heads, std::max(threads, 1)));
}

void dense_attention_forward(const AttentionArgs& a) {
  validate(a, false);
  const Layout l = make_layout(a);
  run_heads(a, l, forward_head);
}

void dense_attention_backward(const AttentionArgs& a) {
  validate(a, true);
  const Layout l = make_layout(a);
  run_heads(a, l, backward_head);
}

}  // namespace seqvit::kernels
