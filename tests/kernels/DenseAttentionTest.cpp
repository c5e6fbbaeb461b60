// Dense (standard, non-flash) attention vs the naive oracle: forward O and LSE, backward dQ,
// dK, dV, in fp32 (relative error <= 1e-5) and bf16 (the tolerances of the flash bf16-vs-oracle
// test), on packed qkv strides and separate tensors, nq != nk, head dims that are not multiples
// of 16, batch 2 with several heads, both parallel modes (heads over threads; one head at a
// time with threaded GEMMs), accumulate, the stored probabilities, and bad arguments.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/check.h"
#include "kernels/attention.h"
#include "kernels/attention_test_util.h"

namespace seqvit::kernels {
namespace {

struct Shape {
  int64_t B, Hh, nq, nk, d;
  bool packed;  // Q, K, V read from one qkv[B, N, 3, Hh, d] (needs nq == nk)
};

struct Problem {
  Shape s;
  std::vector<float> qkv, dqkv, o, dout, lse, probs;
  std::vector<char> ws;
  AttentionArgs a;

  Problem(Shape sh, bool bf16, uint32_t seed) : s(sh) {
    const int64_t B = s.B, Hh = s.Hh, nq = s.nq, nk = s.nk, d = s.d;
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto fill = [&](std::vector<float>& x) {
      for (auto& e : x) e = nd(rng);
    };
    a.batch = B;
    a.heads = Hh;
    a.nq = nq;
    a.nk = nk;
    a.head_dim = d;
    a.scale = 1.f / std::sqrt(static_cast<float>(d));
    a.bf16 = bf16;
    if (s.packed) {
      const int64_t sn = 3 * Hh * d;
      qkv.resize(B * nq * sn);
      dqkv.resize(qkv.size());
      auto t = [&](float* base, int which) {
        return StridedTensor{base + which * Hh * d, nq * sn, sn, d};
      };
      a.q = t(qkv.data(), 0), a.k = t(qkv.data(), 1), a.v = t(qkv.data(), 2);
      a.dq = t(dqkv.data(), 0), a.dk = t(dqkv.data(), 1), a.dv = t(dqkv.data(), 2);
    } else {
      qkv.resize((nq + 2 * nk) * B * Hh * d);
      dqkv.resize(qkv.size());
      auto t = [&](float* base, int64_t off, int64_t n) {
        return StridedTensor{base + off, n * Hh * d, Hh * d, d};
      };
      const int64_t qs = B * nq * Hh * d, ks = B * nk * Hh * d;
      a.q = t(qkv.data(), 0, nq), a.k = t(qkv.data(), qs, nk), a.v = t(qkv.data(), qs + ks, nk);
      a.dq = t(dqkv.data(), 0, nq), a.dk = t(dqkv.data(), qs, nk),
      a.dv = t(dqkv.data(), qs + ks, nk);
    }
    fill(qkv);
    o.assign(B * nq * Hh * d, 0.f);
    dout.resize(o.size());
    fill(dout);
    lse.assign(B * Hh * nq, 0.f);
    a.o = StridedTensor{o.data(), nq * Hh * d, Hh * d, d};
    a.dout = StridedTensor{dout.data(), nq * Hh * d, Hh * d, d};
    a.lse = lse.data();
  }

  // [B][Hh][n][d] double copy of a strided tensor.
  std::vector<double> dense(const StridedTensor& t, int64_t n) const {
    return seqvit_test::to_bhnd(t, s.B, s.Hh, n, s.d);
  }
};

using seqvit_test::attention_err;

struct Outputs {
  std::vector<double> o, lse, dq, dk, dv;
};

Outputs run(Problem& p, bool dense, float init = 0.f, int threads = 0) {
  if (threads <= 0) threads = omp_get_max_threads();
  if (dense) {
    p.ws.assign(dense_attention_workspace_bytes(p.a, threads), 0);
    p.a.workspace = p.ws.data();
    p.a.workspace_bytes = p.ws.size();
    p.probs.assign(dense_attention_probs_floats(p.a), -1.f);
    p.a.probs = p.probs.data();
  }
  std::fill(p.o.begin(), p.o.end(), -7.f);
  dense ? dense_attention_forward(p.a) : naive_attention_forward(p.a);
  Outputs r{p.dense(p.a.o, p.s.nq), {p.lse.begin(), p.lse.end()}, {}, {}, {}};
  std::fill(p.dqkv.begin(), p.dqkv.end(), init);
  dense ? dense_attention_backward(p.a) : naive_attention_backward(p.a);
  r.dq = p.dense(p.a.dq, p.s.nq);
  r.dk = p.dense(p.a.dk, p.s.nk);
  r.dv = p.dense(p.a.dv, p.s.nk);
  p.a.workspace = nullptr;
  p.a.workspace_bytes = 0;
  p.a.probs = nullptr;
  return r;
}

struct Tol {
  double o, lse, dq, dk, dv;
};
constexpr Tol kF32{1e-5, 1e-6, 1e-5, 1e-5, 1e-5};
// as FlashAttention.Bf16MatchesBf16Oracle: the bf16 rounding points are the oracle's
constexpr Tol kBf16{4e-3, 1e-5, 1e-2, 1e-2, 4e-3};

void compare(const Shape& s, bool bf16, int threads = 0) {
  Problem p(s, bf16, 1234u + static_cast<uint32_t>(s.nq * 7 + s.nk * 3 + s.d));
  const Outputs n = run(p, false);
  const Outputs dn = run(p, true, 0.f, threads);
  const Tol t = bf16 ? kBf16 : kF32;
  const auto where = ::testing::Message() << "B=" << s.B << " Hh=" << s.Hh << " nq=" << s.nq
                                          << " nk=" << s.nk << " d=" << s.d
                                          << " packed=" << s.packed << " bf16=" << bf16;
  EXPECT_LT(attention_err(dn.o, n.o), t.o) << "O " << where;
  EXPECT_LT(attention_err(dn.lse, n.lse), t.lse) << "LSE " << where;
  EXPECT_LT(attention_err(dn.dq, n.dq), t.dq) << "dQ " << where;
  EXPECT_LT(attention_err(dn.dk, n.dk), t.dk) << "dK " << where;
  EXPECT_LT(attention_err(dn.dv, n.dv), t.dv) << "dV " << where;
}

TEST(DenseAttention, Fp32MatchesOracle) {
  compare({2, 3, 113, 113, 64, true}, false);   // packed qkv, 6 heads over the threads
  compare({2, 2, 77, 201, 40, false}, false);   // nq != nk, d not a multiple of 16
  compare({1, 3, 131, 131, 25, true}, false);   // 3 heads: one at a time, threaded GEMMs
  compare({2, 4, 201, 77, 33, false}, false);   // more queries than keys
  compare({3, 2, 1, 92, 12, false}, false);     // one query (variable-aggregation-like)
  compare({2, 1, 1, 3, 8, false}, false);
}

TEST(DenseAttention, Bf16MatchesBf16Oracle) {
  compare({2, 3, 113, 113, 64, true}, true);
  compare({2, 2, 77, 201, 40, false}, true);
  compare({1, 3, 131, 131, 25, true}, true);
  compare({3, 2, 1, 92, 12, false}, true);
}

TEST(DenseAttention, SameResultOnAnyThreadCountAndWorkspace) {
  // a workspace for one thread runs the heads in turn; for two, heads over threads
  for (const bool bf16 : {false, true}) {
    compare({2, 2, 97, 97, 32, true}, bf16, 1);
    compare({2, 2, 97, 97, 32, true}, bf16, 2);
  }
}

TEST(DenseAttention, StoresProbabilities) {
  Problem p({2, 2, 17, 23, 16, false}, false, 3u);
  std::vector<char> ws(dense_attention_workspace_bytes(p.a, omp_get_max_threads()));
  std::vector<float> probs(dense_attention_probs_floats(p.a));
  ASSERT_EQ(probs.size(), 2u * 2 * 17 * 23);
  p.a.workspace = ws.data();
  p.a.workspace_bytes = ws.size();
  p.a.probs = probs.data();
  dense_attention_forward(p.a);
  for (int64_t r = 0; r < 2 * 2 * 17; ++r) {  // rows sum to 1, P = exp(s - lse)
    double sum = 0;
    for (int64_t j = 0; j < 23; ++j) sum += probs[r * 23 + j];
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
  const int64_t b = 1, h = 1, i = 5, j = 7;
  double s = 0;
  for (int64_t c = 0; c < 16; ++c)
    s += p.a.q.data[b * p.a.q.sb + i * p.a.q.sn + h * p.a.q.sh + c] *
         p.a.k.data[b * p.a.k.sb + j * p.a.k.sn + h * p.a.k.sh + c];
  const double want = std::exp(s * p.a.scale - p.lse[(b * 2 + h) * 17 + i]);
  EXPECT_NEAR(probs[((b * 2 + h) * 17 + i) * 23 + j], want, 1e-6);
}

TEST(DenseAttention, Accumulate) {
  for (const Shape s : {Shape{2, 3, 113, 113, 64, true}, Shape{1, 3, 50, 70, 24, false}}) {
    Problem p(s, false, 5u);
    const Outputs fresh = run(p, true, 0.f);
    p.a.accumulate = true;
    const Outputs acc = run(p, true, 0.5f);
    for (size_t i = 0; i < fresh.dq.size(); ++i) ASSERT_NEAR(acc.dq[i], fresh.dq[i] + 0.5, 1e-5);
    for (size_t i = 0; i < fresh.dk.size(); ++i) ASSERT_NEAR(acc.dk[i], fresh.dk[i] + 0.5, 1e-5);
    for (size_t i = 0; i < fresh.dv.size(); ++i) ASSERT_NEAR(acc.dv[i], fresh.dv[i] + 0.5, 1e-5);
  }
}

TEST(DenseAttention, RejectsBadArguments) {
  Problem p({1, 2, 16, 16, 8, false}, false, 9u);
  std::vector<char> ws(dense_attention_workspace_bytes(p.a, 1));
  std::vector<float> probs(dense_attention_probs_floats(p.a));
  p.a.workspace = ws.data();
  p.a.workspace_bytes = ws.size();
  EXPECT_THROW(dense_attention_forward(p.a), Error);  // no probs
  p.a.probs = probs.data();
  p.a.workspace_bytes = ws.size() - 1;
  try {
    dense_attention_forward(p.a);
    FAIL() << "expected a workspace error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dense_attention_workspace_bytes"), std::string::npos)
        << e.what();
  }
  p.a.workspace_bytes = ws.size();
  EXPECT_NO_THROW(dense_attention_forward(p.a));
  p.a.dq.data = nullptr;
  EXPECT_THROW(dense_attention_backward(p.a), Error);
}

}  // namespace
}  // namespace seqvit::kernels
