// The attention oracle: materialises the score matrix of one (batch, head) at a time with plain
// fp32 loops, so it is obviously right. Same interface and outputs (including lse) as the flash
// kernels in flash_attention.cpp, which tests compare against it.
//
// bf16 = true emulates the flash kernels' mixed-precision rounding points: Q, K, V and dO are
// rounded to bf16 before every product, so are the probabilities entering P V (forward: the
// unnormalised exp(s - m); backward: the normalised P entering dV = P^T dO) and dS entering
// dQ and dK. Softmax statistics, Dv = rowsum(dO * O), accumulation and outputs stay fp32.
#include <cmath>
#include <limits>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/attention.h"

namespace seqvit::kernels {
namespace {

float rnd(float x, bool bf16) { return bf16 ? to_float(to_bf16(x)) : x; }

void check_args(const AttentionArgs& a) {
  SEQVIT_CHECK(a.batch >= 1 && a.heads >= 1 && a.nq >= 1 && a.nk >= 1 && a.head_dim >= 1,
               "naive attention: bad shape batch={} heads={} nq={} nk={} head_dim={}", a.batch,
               a.heads, a.nq, a.nk, a.head_dim);
  SEQVIT_CHECK(a.q.data && a.k.data && a.v.data && a.lse, "naive attention: null q/k/v/lse");
}

// Copy one (b, h) slice of a strided tensor into rows[n][d] (optionally rounded to bf16).
void gather(const StridedTensor& t, int64_t b, int64_t h, int64_t n, int64_t d, bool bf16,
            std::vector<float>& rows) {
  rows.resize(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c)
      rows[i * d + c] = rnd(t.data[b * t.sb + i * t.sn + h * t.sh + c], bf16);
}

float* at(const StridedTensor& t, int64_t b, int64_t i, int64_t h) {
  return t.data + b * t.sb + i * t.sn + h * t.sh;
}

// s[nq][nk] = scale * q k^T (q, k already rounded as needed).
void scores(const std::vector<float>& q, const std::vector<float>& k, int64_t nq, int64_t nk,
            int64_t d, float scale, std::vector<float>& s) {
  s.resize(static_cast<size_t>(nq * nk));
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t j = 0; j < nk; ++j) {
      float acc = 0.f;
      for (int64_t c = 0; c < d; ++c) acc += q[i * d + c] * k[j * d + c];
      s[i * nk + j] = scale * acc;
    }
}

}  // namespace

void naive_attention_forward(const AttentionArgs& a) {
  check_args(a);
  SEQVIT_CHECK(a.o.data, "naive attention forward: null o");
  const int64_t nq = a.nq, nk = a.nk, d = a.head_dim;
  std::vector<float> q, k, v, s, p(static_cast<size_t>(nk));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h) {
      gather(a.q, b, h, nq, d, a.bf16, q);
      gather(a.k, b, h, nk, d, a.bf16, k);
      gather(a.v, b, h, nk, d, a.bf16, v);
      scores(q, k, nq, nk, d, a.scale, s);
      for (int64_t i = 0; i < nq; ++i) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < nk; ++j) m = std::max(m, s[i * nk + j]);
        float l = 0.f;
        for (int64_t j = 0; j < nk; ++j) {
          p[j] = std::exp(s[i * nk + j] - m);
          l += p[j];
        }
        float* o = at(a.o, b, i, h);
        for (int64_t c = 0; c < d; ++c) {
          float acc = 0.f;
          for (int64_t j = 0; j < nk; ++j) acc += rnd(p[j], a.bf16) * v[j * d + c];
          o[c] = acc / l;
        }
        a.lse[(b * a.heads + h) * nq + i] = m + std::log(l);
      }
    }
}

void naive_attention_backward(const AttentionArgs& a) {
  check_args(a);
  SEQVIT_CHECK(a.o.data && a.dout.data && a.dq.data && a.dk.data && a.dv.data,
               "naive attention backward: null o/dout/dq/dk/dv");
  const int64_t nq = a.nq, nk = a.nk, d = a.head_dim;
  std::vector<float> q, k, v, dout, s, dp(static_cast<size_t>(nk)), ds;
  std::vector<float> pr(static_cast<size_t>(nq * nk));  // P rounded as it enters dV
  std::vector<float> dq(static_cast<size_t>(nq * d)), dk(static_cast<size_t>(nk * d)),
      dv(static_cast<size_t>(nk * d));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h) {
      gather(a.q, b, h, nq, d, a.bf16, q);
      gather(a.k, b, h, nk, d, a.bf16, k);
      gather(a.v, b, h, nk, d, a.bf16, v);
      gather(a.dout, b, h, nq, d, a.bf16, dout);
      scores(q, k, nq, nk, d, a.scale, s);
      ds.assign(static_cast<size_t>(nq * nk), 0.f);
      for (int64_t i = 0; i < nq; ++i) {
        const float lse = a.lse[(b * a.heads + h) * nq + i];
        const float* o = at(a.o, b, i, h);
        const float* go = at(a.dout, b, i, h);
        float dvi = 0.f;  // Dv = rowsum(dO * O), unrounded
        for (int64_t c = 0; c < d; ++c) dvi += go[c] * o[c];
        for (int64_t j = 0; j < nk; ++j) {
          const float p = std::exp(s[i * nk + j] - lse);
          float acc = 0.f;
          for (int64_t c = 0; c < d; ++c) acc += dout[i * d + c] * v[j * d + c];
          pr[i * nk + j] = rnd(p, a.bf16);
          ds[i * nk + j] = rnd(p * (acc - dvi), a.bf16);
        }
      }
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t c = 0; c < d; ++c) {
          float acc = 0.f;
          for (int64_t j = 0; j < nk; ++j) acc += ds[i * nk + j] * k[j * d + c];
          dq[i * d + c] = a.scale * acc;
        }
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t c = 0; c < d; ++c) {
          float acc_k = 0.f, acc_v = 0.f;
          for (int64_t i = 0; i < nq; ++i) {
            acc_k += ds[i * nk + j] * q[i * d + c];
            acc_v += pr[i * nk + j] * dout[i * d + c];
          }
          dk[j * d + c] = a.scale * acc_k;
          dv[j * d + c] = acc_v;
        }
      auto store = [&](const StridedTensor& t, const std::vector<float>& x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          float* dst = at(t, b, i, h);
          for (int64_t c = 0; c < d; ++c) dst[c] = (a.accumulate ? dst[c] : 0.f) + x[i * d + c];
        }
      };
      store(a.dq, dq, nq);
      store(a.dk, dk, nk);
      store(a.dv, dv, nk);
    }
}

}  // namespace seqvit::kernels
