// Flash attention vs the naive oracle vs a double-precision reference in this file.
// Tolerances are relative to the error of a same-precision reference: both fp32 (or bf16)
// flash and fp32 (or bf16) naive are compared with the exact double answer, and flash may be
// at most a few times worse than naive. Awkward sizes (1, 113, 1023), nq != nk (the ClimaX
// variable aggregation: nq = 1, nk = 92), packed qkv strides, accumulate, bf16, any head dim
// (1 .. 100, not only multiples of 16), no reads or writes outside the d columns of a head,
// the portable (no AVX-512) kernels, and the LSE merge that ring attention relies on.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/check.h"
#include "kernels/attention.h"
#include "kernels/attention_test_util.h"

namespace seqvit::kernels {
namespace {

// ---------------------------------------------------------------- double reference
// Dense rows x[n][d] per (b, h) in double, the exact answer (no bf16 rounding).
struct Ref {
  std::vector<double> o, lse, dq, dk, dv;  // o/dq: [B][Hh][nq][d], dk/dv: [B][Hh][nk][d]
};

// q: [B][Hh][nq][d], k, v: [B][Hh][nk][d], dout: [B][Hh][nq][d] (dout may be empty).
Ref reference(const std::vector<double>& q, const std::vector<double>& k,
              const std::vector<double>& v, const std::vector<double>& dout, int64_t BH,
              int64_t nq, int64_t nk, int64_t d, double scale) {
  Ref r;
  r.o.assign(BH * nq * d, 0.0);
  r.lse.assign(BH * nq, 0.0);
  const bool bwd = !dout.empty();
  if (bwd) {
    r.dq.assign(BH * nq * d, 0.0);
    r.dk.assign(BH * nk * d, 0.0);
    r.dv.assign(BH * nk * d, 0.0);
  }
  std::vector<double> p(nk), dp(nk);
  for (int64_t bh = 0; bh < BH; ++bh) {
    const double* Q = &q[bh * nq * d];
    const double* K = &k[bh * nk * d];
    const double* V = &v[bh * nk * d];
    for (int64_t i = 0; i < nq; ++i) {
      double m = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += Q[i * d + c] * K[j * d + c];
        p[j] = s * scale;
        m = std::max(m, p[j]);
      }
      double l = 0;
      for (int64_t j = 0; j < nk; ++j) l += (p[j] = std::exp(p[j] - m));
      for (int64_t j = 0; j < nk; ++j) p[j] /= l;
      double* O = &r.o[(bh * nq + i) * d];
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t c = 0; c < d; ++c) O[c] += p[j] * V[j * d + c];
      r.lse[bh * nq + i] = m + std::log(l);
      if (!bwd) continue;
      const double* dO = &dout[(bh * nq + i) * d];
      double Dv = 0;
      for (int64_t c = 0; c < d; ++c) Dv += dO[c] * O[c];
      for (int64_t j = 0; j < nk; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += dO[c] * V[j * d + c];
        const double ds = p[j] * (s - Dv);
        for (int64_t c = 0; c < d; ++c) {
          r.dq[(bh * nq + i) * d + c] += scale * ds * K[j * d + c];
          r.dk[(bh * nk + j) * d + c] += scale * ds * Q[i * d + c];
          r.dv[(bh * nk + j) * d + c] += p[j] * dO[c];
        }
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------- strided test problem
struct Shape {
  int64_t B, Hh, nq, nk, d;
  bool packed;  // q, k, v in one qkv[B, N, 3, Hh, d] buffer (needs nq == nk), grads likewise
};

struct Problem {
  Shape s;
  std::vector<float> qkv, dqkv;        // packed storage, or q|k|v concatenated
  std::vector<float> o, dout, lse;     // o, dout: [B][nq][Hh][d]
  AttentionArgs a;

  explicit Problem(Shape sh, bool bf16, uint32_t seed, float qk_gain = 1.f) : s(sh) {
    const int64_t B = s.B, Hh = s.Hh, nq = s.nq, nk = s.nk, d = s.d;
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto fill = [&](std::vector<float>& x, float g) {
      for (auto& e : x) {
        e = g * nd(rng);
        if (e == 0.f) e = 0.25f;  // never zeros
      }
    };
    a.batch = B;
    a.heads = Hh;
    a.nq = nq;
    a.nk = nk;
    a.head_dim = d;
    a.scale = 1.f / std::sqrt(static_cast<float>(d));
    a.bf16 = bf16;
    if (s.packed) {
      const int64_t N = nq, sn = 3 * Hh * d;
      qkv.resize(B * N * sn);
      dqkv.resize(B * N * sn);
      fill(qkv, qk_gain);
      auto t = [&](float* base, int which) {
        return StridedTensor{base + which * Hh * d, N * sn, sn, d};
      };
      a.q = t(qkv.data(), 0);
      a.k = t(qkv.data(), 1);
      a.v = t(qkv.data(), 2);
      a.dq = t(dqkv.data(), 0);
      a.dk = t(dqkv.data(), 1);
      a.dv = t(dqkv.data(), 2);
    } else {
      qkv.resize((nq + 2 * nk) * B * Hh * d);
      dqkv.resize(qkv.size());
      fill(qkv, qk_gain);
      auto t = [&](float* base, int64_t off, int64_t n) {
        return StridedTensor{base + off, n * Hh * d, Hh * d, d};
      };
      const int64_t qs = B * nq * Hh * d, ks = B * nk * Hh * d;
      a.q = t(qkv.data(), 0, nq);
      a.k = t(qkv.data(), qs, nk);
      a.v = t(qkv.data(), qs + ks, nk);
      a.dq = t(dqkv.data(), 0, nq);
      a.dk = t(dqkv.data(), qs, nk);
      a.dv = t(dqkv.data(), qs + ks, nk);
    }
    // V and dO at unit scale (only Q, K carry the gain that sharpens the softmax).
    if (qk_gain != 1.f)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < nk; ++j)
          for (int64_t h = 0; h < Hh; ++h)
            for (int64_t c = 0; c < d; ++c)
              a.v.data[b * a.v.sb + j * a.v.sn + h * a.v.sh + c] /= qk_gain;
    o.assign(B * nq * Hh * d, 0.f);
    dout.resize(B * nq * Hh * d);
    fill(dout, 1.f);
    lse.assign(B * Hh * nq, 0.f);
    a.o = StridedTensor{o.data(), nq * Hh * d, Hh * d, d};
    a.dout = StridedTensor{dout.data(), nq * Hh * d, Hh * d, d};
    a.lse = lse.data();
  }

  // [B][Hh][n][d] double copy of a strided tensor.
  std::vector<double> dense(const StridedTensor& t, int64_t n) const {
    return seqvit_test::to_bhnd(t, s.B, s.Hh, n, s.d);
  }
  std::vector<double> dense_lse() const { return {lse.begin(), lse.end()}; }
};

using seqvit_test::attention_err;

struct Outputs {
  std::vector<double> o, lse, dq, dk, dv;
};

// Runs forward (+ backward) with the flash or the naive kernels; grads start at `init`.
Outputs run(Problem& p, bool flash, bool backward, float init = 0.f) {
  std::vector<char> ws;
  if (flash) {
    ws.resize(flash_attention_workspace_bytes(p.a, omp_get_max_threads()));
    p.a.workspace = ws.data();
    p.a.workspace_bytes = ws.size();
  }
  std::fill(p.o.begin(), p.o.end(), -7.f);
  flash ? flash_attention_forward(p.a) : naive_attention_forward(p.a);
  Outputs r{p.dense(p.a.o, p.s.nq), p.dense_lse(), {}, {}, {}};
  if (backward) {
    std::fill(p.dqkv.begin(), p.dqkv.end(), init);
    flash ? flash_attention_backward(p.a) : naive_attention_backward(p.a);
    r.dq = p.dense(p.a.dq, p.s.nq);
    r.dk = p.dense(p.a.dk, p.s.nk);
    r.dv = p.dense(p.a.dv, p.s.nk);
  }
  p.a.workspace = nullptr;
  p.a.workspace_bytes = 0;
  return r;
}

// flash error <= factor * naive error + floor, for every output, against the double answer.
void compare(const Shape& s, bool bf16, bool backward, double factor, double floor,
             float qk_gain = 1.f) {
  Problem p(s, bf16, 1234u + static_cast<uint32_t>(s.nq * 7 + s.nk * 3 + s.d), qk_gain);
  const Outputs f = run(p, true, backward);
  const Outputs n = run(p, false, backward);
  const Ref r = reference(p.dense(p.a.q, s.nq), p.dense(p.a.k, s.nk), p.dense(p.a.v, s.nk),
                          backward ? p.dense(p.a.dout, s.nq) : std::vector<double>{},
                          s.B * s.Hh, s.nq, s.nk, s.d, p.a.scale);
  auto check = [&](const char* what, const std::vector<double>& fx,
                   const std::vector<double>& nx, const std::vector<double>& rx) {
    const auto ef = attention_err(fx, rx), en = attention_err(nx, rx);
    EXPECT_LE(ef, factor * en + floor)
        << what << ": flash rel err " << ef << " vs naive " << en << " (B=" << s.B
        << " Hh=" << s.Hh << " nq=" << s.nq << " nk=" << s.nk << " d=" << s.d
        << " bf16=" << bf16 << ")";
  };
  check("O", f.o, n.o, r.o);
  check("LSE", f.lse, n.lse, r.lse);
  if (backward) {
    check("dQ", f.dq, n.dq, r.dq);
    check("dK", f.dk, n.dk, r.dk);
    check("dV", f.dv, n.dv, r.dv);
  }
}

// fp32: flash within 3x of naive's fp32 error, or 2e-6 relative.
constexpr double kF32Factor = 3.0, kF32Floor = 2e-6;
// bf16: the error is dominated by rounding the inputs (~2^-9 relative), which both share.
constexpr double kBf16Factor = 1.5, kBf16Floor = 1e-3;

TEST(FlashAttention, SingleToken) {
  // One key: the exact dQ and dK are zero and naive gets exactly zero (exp(0) = 1); flash's
  // polynomial exp leaves ~1e-7-sized residues, so the floor is absolute (rms 1e-7).
  compare({2, 1, 1, 1, 32, false}, false, true, kF32Factor, 1e-4);
}
TEST(FlashAttention, Packed113ThreeHeads) { compare({2, 3, 113, 113, 64, true}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, Packed1023KeySplit) {
  // batch*heads = 3 on 2 threads: the backward splits key tiles over threads (private dQ).
  compare({1, 3, 1023, 1023, 64, true}, false, true, kF32Factor, kF32Floor);
}
TEST(FlashAttention, Batch2Heads1N1023Dim32) { compare({2, 1, 1023, 1023, 32, false}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, Dim128) { compare({2, 3, 113, 113, 128, true}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, Dim48Generic) { compare({1, 2, 70, 70, 48, false}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, SharpSoftmax) {
  // Large logits: the running max changes across key tiles, exercising the rescaling.
  compare({2, 1, 200, 300, 64, false}, false, true, kF32Factor, kF32Floor, 4.f);
}
TEST(FlashAttention, FewQueriesManyKeys) { compare({2, 3, 113, 1023, 128, false}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, ManyQueriesFewKeys) { compare({2, 3, 1023, 113, 64, false}, false, true, kF32Factor, kF32Floor); }
TEST(FlashAttention, VariableAggregation) {
  // ClimaX: one learned query per patch over V = 92 variable tokens; batch = B * Lp.
  compare({64, 3, 1, 92, 32, false}, false, true, kF32Factor, kF32Floor);
  compare({16, 2, 1, 3, 64, false}, false, true, kF32Factor, kF32Floor);
}
TEST(FlashAttention, Bf16) {
  compare({2, 3, 113, 113, 64, true}, true, true, kBf16Factor, kBf16Floor);
  compare({1, 3, 1023, 1023, 32, true}, true, true, kBf16Factor, kBf16Floor);
  compare({2, 1, 113, 1023, 128, false}, true, true, kBf16Factor, kBf16Floor);
  compare({32, 3, 1, 92, 64, false}, true, true, kBf16Factor, kBf16Floor);
  compare({2, 1, 1, 1, 32, false}, true, true, kBf16Factor, kBf16Floor);
  compare({2, 1, 200, 301, 64, false}, true, true, kBf16Factor, kBf16Floor, 4.f);
}

TEST(FlashAttention, Bf16MatchesBf16Oracle) {
  // Same rounding points: flash bf16 and naive bf16 agree far better than either does with the
  // exact answer (only P's rounding in the forward depends on the running max).
  Problem p({2, 3, 113, 97, 64, false}, true, 99u);
  const Outputs f = run(p, true, true), n = run(p, false, true);
  EXPECT_LT(attention_err(f.o, n.o), 4e-3);
  EXPECT_LT(attention_err(f.lse, n.lse), 1e-5);
  EXPECT_LT(attention_err(f.dq, n.dq), 1e-2);
  EXPECT_LT(attention_err(f.dk, n.dk), 1e-2);
  EXPECT_LT(attention_err(f.dv, n.dv), 4e-3);
}

TEST(FlashAttention, Accumulate) {
  for (const bool flash : {true, false}) {
    Problem p({2, 3, 113, 113, 64, true}, false, 5u);
    const Outputs fresh = run(p, flash, true, 0.f);
    p.a.accumulate = true;
    const Outputs acc = run(p, flash, true, 0.5f);
    for (size_t i = 0; i < fresh.dq.size(); ++i) ASSERT_NEAR(acc.dq[i], fresh.dq[i] + 0.5, 1e-5);
    for (size_t i = 0; i < fresh.dk.size(); ++i) ASSERT_NEAR(acc.dk[i], fresh.dk[i] + 0.5, 1e-5);
    for (size_t i = 0; i < fresh.dv.size(); ++i) ASSERT_NEAR(acc.dv[i], fresh.dv[i] + 0.5, 1e-5);
  }
  // key-split backward (batch*heads = 3 on 2 threads) and the few-query path (nq = 1), with
  // head dims that are and are not multiples of 16
  for (const Shape s : {Shape{1, 3, 300, 300, 32, false}, Shape{5, 2, 1, 92, 64, false},
                        Shape{1, 3, 131, 131, 25, true}, Shape{5, 2, 1, 92, 12, false}}) {
    Problem p(s, false, 6u);
    const Outputs fresh = run(p, true, true, 0.f);
    p.a.accumulate = true;
    const Outputs acc = run(p, true, true, -1.f);
    for (size_t i = 0; i < fresh.dq.size(); ++i) ASSERT_NEAR(acc.dq[i], fresh.dq[i] - 1.0, 1e-5);
    for (size_t i = 0; i < fresh.dk.size(); ++i) ASSERT_NEAR(acc.dk[i], fresh.dk[i] - 1.0, 1e-5);
    for (size_t i = 0; i < fresh.dv.size(); ++i) ASSERT_NEAR(acc.dv[i], fresh.dv[i] - 1.0, 1e-5);
  }
}

TEST(FlashAttention, LseMergeOfKeyRanges) {
  // Attention over keys [0, a) and [a, nk) merged with their LSEs equals attention over all keys:
  // lse = log(e^l1 + e^l2), O = e^(l1 - lse) O1 + e^(l2 - lse) O2. Ring attention relies on it.
  for (const bool bf16 : {false, true}) {
    const Shape s{2, 3, 150, 200, 64, false};
    Problem full(s, bf16, 77u);
    const Outputs all = run(full, true, false);
    const int64_t split = 77;
    Problem part = full;  // same data; re-point k, v at the two key ranges
    auto rebase = [&](Problem& p) {
      const int64_t qs = s.B * s.nq * s.Hh * s.d, ks = s.B * s.nk * s.Hh * s.d;
      p.a.q.data = p.qkv.data();
      p.a.k.data = p.qkv.data() + qs;
      p.a.v.data = p.qkv.data() + qs + ks;
      p.a.o.data = p.o.data();
      p.a.dout.data = p.dout.data();
      p.a.lse = p.lse.data();
    };
    rebase(part);
    part.a.nk = split;
    const Outputs o1 = run(part, true, false);
    rebase(part);
    part.a.k.data += split * part.a.k.sn;
    part.a.v.data += split * part.a.v.sn;
    part.a.nk = s.nk - split;
    const Outputs o2 = run(part, true, false);
    std::vector<double> o(all.o.size()), lse(all.lse.size());
    for (int64_t bh = 0; bh < s.B * s.Hh; ++bh)
      for (int64_t i = 0; i < s.nq; ++i) {
        const int64_t r = bh * s.nq + i;
        const double l1 = o1.lse[r], l2 = o2.lse[r], m = std::max(l1, l2);
        lse[r] = m + std::log(std::exp(l1 - m) + std::exp(l2 - m));
        for (int64_t c = 0; c < s.d; ++c)
          o[r * s.d + c] =
              std::exp(l1 - lse[r]) * o1.o[r * s.d + c] + std::exp(l2 - lse[r]) * o2.o[r * s.d + c];
      }
    EXPECT_LT(attention_err(lse, all.lse), 1e-6);
    EXPECT_LT(attention_err(o, all.o), bf16 ? 4e-3 : 1e-5) << "bf16=" << bf16;
  }
}

TEST(FlashAttention, NaiveBackwardMatchesFiniteDifferences) {
  // The double reference's gradients against central differences of its loss
  // L = sum(dO * O); then the fp32 naive kernels against the double reference.
  const int64_t nq = 3, nk = 4, d = 16, BH = 1;
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> q(nq * d), k(nk * d), v(nk * d), dout(nq * d);
  for (auto* x : {&q, &k, &v, &dout})
    for (auto& e : *x) e = nd(rng);
  const double scale = 0.4;
  const Ref r = reference(q, k, v, dout, BH, nq, nk, d, scale);
  auto loss = [&]() {
    const Ref f = reference(q, k, v, {}, BH, nq, nk, d, scale);
    double L = 0;
    for (size_t i = 0; i < f.o.size(); ++i) L += dout[i] * f.o[i];
    return L;
  };
  const double h = 1e-6;
  for (auto [x, g] : {std::pair{&q, &r.dq}, std::pair{&k, &r.dk}, std::pair{&v, &r.dv}})
    for (size_t i = 0; i < x->size(); ++i) {
      const double x0 = (*x)[i];
      (*x)[i] = x0 + h;
      const double lp = loss();
      (*x)[i] = x0 - h;
      const double lm = loss();
      (*x)[i] = x0;
      EXPECT_NEAR((*g)[i], (lp - lm) / (2 * h), 1e-7 * (1 + std::abs((*g)[i])));
    }
  Problem p({2, 3, 31, 45, 32, false}, false, 11u);
  const Outputs n = run(p, false, true);
  const Ref rr = reference(p.dense(p.a.q, 31), p.dense(p.a.k, 45), p.dense(p.a.v, 45),
                           p.dense(p.a.dout, 31), 6, 31, 45, 32, p.a.scale);
  EXPECT_LT(attention_err(n.o, rr.o), 1e-6);
  EXPECT_LT(attention_err(n.lse, rr.lse), 1e-6);
  EXPECT_LT(attention_err(n.dq, rr.dq), 1e-5);
  EXPECT_LT(attention_err(n.dk, rr.dk), 1e-5);
  EXPECT_LT(attention_err(n.dv, rr.dv), 1e-5);
}

TEST(FlashAttention, RejectsBadArguments) {
  Problem p({1, 1, 8, 8, 64, false}, false, 1u);
  std::vector<char> ws(16);
  p.a.workspace = ws.data();
  p.a.workspace_bytes = ws.size();
  EXPECT_THROW(flash_attention_forward(p.a), Error);  // workspace too small
  ws.resize(flash_attention_workspace_bytes(p.a, 1));
  p.a.workspace = ws.data();
  p.a.workspace_bytes = ws.size();
  EXPECT_NO_THROW(flash_attention_forward(p.a));  // enough for one thread: runs on one
  p.a.head_dim = 0;
  EXPECT_THROW(flash_attention_forward(p.a), Error);
  p.a.head_dim = 64;
  p.a.scale = 0.f;
  EXPECT_THROW(flash_attention_forward(p.a), Error);
}

// ---------------------------------------------------------------- any head dim
// Head dims that are not multiples of 16 run the same kernels with a masked last vector along
// d (and a zero pad column in the bf16 pairs for odd d). Per head dim: the tiled path with odd
// token counts (packed qkv, 3 heads: key-split backward, rows of odd length back to back), the
// tiled path with nq != nk and whole heads per thread, a tiled nq = 9 just above the few-query
// path, and the ClimaX aggregation shape nq = 1, nk = 92 (few-query path).
void compare_any_dim(int64_t d, bool bf16) {
  const double factor = bf16 ? kBf16Factor : kF32Factor, floor = bf16 ? kBf16Floor : kF32Floor;
  compare({1, 3, 131, 131, d, true}, bf16, true, factor, floor);
  compare({2, 2, 77, 201, d, false}, bf16, true, factor, floor);
  compare({2, 1, 9, 37, d, false}, bf16, true, factor, floor);
  compare({24, 2, 1, 92, d, false}, bf16, true, factor, floor);
}
constexpr int64_t kOddDims[] = {1, 4, 8, 12, 25, 40, 100};

TEST(FlashAttention, AnyHeadDimFp32) {
  for (const int64_t d : kOddDims) compare_any_dim(d, false);
}
TEST(FlashAttention, AnyHeadDimBf16) {
  for (const int64_t d : kOddDims) compare_any_dim(d, true);
}

// Each tensor gets gaps between heads, tokens and batches, filled with a NaN sentinel: any
// read of a gap would turn outputs into NaN, any write would change the sentinel's bits. Covers
// the masked tails (V, K, dQ are read/written in place) at head dims with and without a tail.
void check_gaps_untouched(int64_t d, int64_t nq, int64_t nk, int64_t B, bool bf16) {
  const int64_t Hh = 2;
  const uint32_t kSentinelBits = 0x7fc0beefu;
  float sentinel;
  std::memcpy(&sentinel, &kSentinelBits, 4);
  struct Buf {
    std::vector<float> x;
    StridedTensor t;
  };
  std::mt19937 rng(static_cast<uint32_t>(d * 131 + nq));
  std::normal_distribution<float> nd(0.f, 1.f);
  auto make = [&](int64_t n, bool random) {
    Buf b;
    b.t.sh = d + 3;              // gap of 3 after each head
    b.t.sn = Hh * b.t.sh + 1;    // and 1 after each token
    b.t.sb = n * b.t.sn + 5;     // and 5 after each batch
    b.x.assign(static_cast<size_t>(B * b.t.sb + 16), sentinel);  // + a vector past the end
    b.t.data = b.x.data();
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < Hh; ++h)
          for (int64_t c = 0; c < d; ++c)
            b.x[bb * b.t.sb + i * b.t.sn + h * b.t.sh + c] = random ? nd(rng) : 0.f;
    return b;
  };
  Buf q = make(nq, true), k = make(nk, true), v = make(nk, true), dout = make(nq, true);
  Buf o = make(nq, false), dq = make(nq, false), dk = make(nk, false), dv = make(nk, false);
  std::vector<float> lse(B * Hh * nq);
  AttentionArgs a;
  a.batch = B;
  a.heads = Hh;
  a.nq = nq;
  a.nk = nk;
  a.head_dim = d;
  a.scale = 1.f / std::sqrt(static_cast<float>(d));
  a.bf16 = bf16;
  a.q = q.t, a.k = k.t, a.v = v.t, a.o = o.t, a.dout = dout.t;
  a.dq = dq.t, a.dk = dk.t, a.dv = dv.t;
  a.lse = lse.data();
  std::vector<char> ws(flash_attention_workspace_bytes(a, omp_get_max_threads()));
  a.workspace = ws.data();
  a.workspace_bytes = ws.size();
  flash_attention_forward(a);
  flash_attention_backward(a);
  // the naive oracle on dense copies of the same inputs
  Problem n({B, Hh, nq, nk, d, false}, bf16, 1u);
  auto copy = [&](const StridedTensor& from, const StridedTensor& to, int64_t rows) {
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t h = 0; h < Hh; ++h)
          for (int64_t c = 0; c < d; ++c)
            to.data[bb * to.sb + i * to.sn + h * to.sh + c] =
                from.data[bb * from.sb + i * from.sn + h * from.sh + c];
  };
  copy(q.t, n.a.q, nq);
  copy(k.t, n.a.k, nk);
  copy(v.t, n.a.v, nk);
  copy(dout.t, n.a.dout, nq);
  const Outputs ref = run(n, false, true);
  const double tol = bf16 ? 2e-2 : 1e-5;
  const std::string where = "d=" + std::to_string(d) + " nq=" + std::to_string(nq) +
                            " nk=" + std::to_string(nk) + " bf16=" + std::to_string(bf16);
  EXPECT_LT(attention_err(n.dense(o.t, nq), ref.o), tol) << "O " << where;
  EXPECT_LT(attention_err(n.dense(dq.t, nq), ref.dq), tol) << "dQ " << where;
  EXPECT_LT(attention_err(n.dense(dk.t, nk), ref.dk), tol) << "dK " << where;
  EXPECT_LT(attention_err(n.dense(dv.t, nk), ref.dv), tol) << "dV " << where;
  for (const Buf* b : {&o, &dq, &dk, &dv}) {
    int64_t touched = 0;
    for (size_t at = 0; at < b->x.size(); ++at) {
      const int64_t e = static_cast<int64_t>(at) % b->t.sb, i = e / b->t.sn, r = e % b->t.sn;
      const int64_t h = r / b->t.sh, c = r % b->t.sh;
      const bool inside = static_cast<int64_t>(at) < B * b->t.sb &&
                          i < (b == &o || b == &dq ? nq : nk) && h < Hh && c < d;
      uint32_t bits;
      std::memcpy(&bits, &b->x[at], 4);
      if (!inside && bits != kSentinelBits) ++touched;
    }
    EXPECT_EQ(touched, 0) << "gap elements written, " << where;
  }
}

TEST(FlashAttention, GapsBetweenHeadsUntouched) {
  for (const bool bf16 : {false, true})
    for (const int64_t d : {int64_t{1}, int64_t{25}, int64_t{40}, int64_t{64}}) {
      check_gaps_untouched(d, 131, 131, 1, bf16);  // tiled, key tiles split over threads
      check_gaps_untouched(d, 1, 92, 6, bf16);     // few-query path
    }
}

// The portable (no AVX-512) kernels. CPU detection is cached per process, so this test runs
// the any-head-dim, gap and accumulate tests again in a child process of this binary with
// SEQVIT_NO_AVX512=1 (a subset, to keep the suite fast: the scalar micro-kernels are ~20x
// slower; the whole suite can be run that way by hand, see docs/flash_attention.md).
TEST(FlashAttention, PortableKernelsInChildProcess) {
  if (const char* e = std::getenv("SEQVIT_NO_AVX512"); e && e[0] && std::strcmp(e, "0") != 0)
    GTEST_SKIP() << "already running the portable kernels";
  char self[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);  // this test binary
  const std::string cmd =
      std::string("SEQVIT_NO_AVX512=1 '") + self +
      "' --gtest_filter='FlashAttention.AnyHeadDim*:FlashAttention.GapsBetweenHeadsUntouched:"
      "FlashAttention.Accumulate' 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr) << cmd;
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int status = pclose(f);
  EXPECT_EQ(status, 0) << cmd << "\n" << out;
  EXPECT_NE(out.find("[  PASSED  ] 4 tests"), std::string::npos) << out;
}

}  // namespace
}  // namespace seqvit::kernels
