// Tests for kernels/ops.h: every kernel against a naive double-precision oracle written here,
// on random inputs with awkward sizes; gradients checked twice (central differences on the
// double oracle, then the fp32 backward kernels against the analytic double gradient);
// layouts checked with values that encode coordinates; reductions checked for bit-identical
// results across thread counts. Run with SEQVIT_NO_AVX512=1 to exercise the portable paths.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/check.h"
#include "kernels/ops.h"

namespace seqvit::kernels {
namespace {

using VecF = std::vector<float>;
using VecD = std::vector<double>;

VecF randn(int64_t n, uint32_t seed, float scale = 1.0f, float shift = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  VecF v(static_cast<size_t>(n));
  for (auto& x : v) x = shift + scale * d(gen);
  return v;
}
VecD to_d(const VecF& v) { return VecD(v.begin(), v.end()); }

// max_i |a_i - b_i| / (atol + rtol |b_i|) must be <= 1.
void expect_close(const VecF& got, const VecD& want, double rtol, double atol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double r = std::fabs(got[i] - want[i]) / (atol + rtol * std::fabs(want[i]));
    if (!(r <= worst)) worst = r, at = i;  // also catches NaN
  }
  EXPECT_LE(worst, 1.0) << what << ": worst at " << at << " got " << got[at] << " want "
                        << want[at];
}

// Run f with a given OpenMP thread count, restoring the previous one.
void with_threads(int n, const std::function<void()>& f) {
  const int old = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(old);
}

const int64_t kT[] = {1, 7, 113};
const int64_t kD[] = {3, 64, 257};

// ------------------------------------------------------------------------------------ GEMM
// op(A)[i,k] for a row-major A with leading dimension lda.
template <typename TIn>
double op_at(const TIn* A, Op t, int64_t lda, int64_t i, int64_t k) {
  const TIn v = t == Op::N ? A[i * lda + k] : A[k * lda + i];
  if constexpr (std::is_same_v<TIn, bf16>)
    return to_float(v);
  else
    return v;
}

template <typename TIn>
void check_gemm(Op ta, Op tb, int64_t M, int64_t N, int64_t K, uint32_t seed) {
  const float alpha = 0.7f, beta = 0.3f;
  // Padded leading dimensions (+3) so lda != logical width is exercised.
  const int64_t lda = (ta == Op::N ? K : M) + 3, ldb = (tb == Op::N ? N : K) + 3, ldc = N + 2;
  const int64_t a_rows = ta == Op::N ? M : K, b_rows = tb == Op::N ? K : N;
  VecF Af = randn(a_rows * lda, seed), Bf = randn(b_rows * ldb, seed + 1);
  VecF C = randn(M * ldc, seed + 2);
  std::vector<TIn> A(Af.size()), B(Bf.size());
  for (size_t i = 0; i < A.size(); ++i) {
    if constexpr (std::is_same_v<TIn, bf16>) A[i] = to_bf16(Af[i]); else A[i] = Af[i];
  }
  for (size_t i = 0; i < B.size(); ++i) {
    if constexpr (std::is_same_v<TIn, bf16>) B[i] = to_bf16(Bf[i]); else B[i] = Bf[i];
  }
  // Oracle over the (bf16-rounded) inputs; tolerance scales with sum |a||b| (fp32 accumulation).
  VecD want(C.size());
  VecD scale(C.size());
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0.0, sa = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = op_at(A.data(), ta, lda, i, k) * op_at(B.data(), tb, ldb, k, j);
        s += p;
        sa += std::fabs(p);
      }
      want[i * ldc + j] = alpha * s + beta * static_cast<double>(C[i * ldc + j]);
      scale[i * ldc + j] = alpha * sa + beta * std::fabs(C[i * ldc + j]);
    }
  for (int64_t i = 0; i < M; ++i)  // padding columns are untouched
    for (int64_t j = N; j < ldc; ++j) want[i * ldc + j] = C[i * ldc + j];
  if constexpr (std::is_same_v<TIn, bf16>)
    gemm_bf16(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  else
    gemm_f32(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  for (size_t i = 0; i < C.size(); ++i)
    ASSERT_NEAR(C[i], want[i], 1e-6 * scale[i] + 1e-6)
        << "ta=" << int(ta) << " tb=" << int(tb) << " M=" << M << " N=" << N << " K=" << K
        << " at " << i;
}

TEST(Gemm, F32AllTransposesVsNaive) {
  for (Op ta : {Op::N, Op::T})
    for (Op tb : {Op::N, Op::T}) {
      check_gemm<float>(ta, tb, 7, 113, 33, 1);
      check_gemm<float>(ta, tb, 1, 257, 64, 2);
      check_gemm<float>(ta, tb, 113, 3, 257, 3);
      check_gemm<float>(ta, tb, 64, 96, 128, 4);
    }
}

TEST(Gemm, Bf16AllTransposesVsNaiveOfRoundedInputs) {
  for (Op ta : {Op::N, Op::T})
    for (Op tb : {Op::N, Op::T}) {
      check_gemm<bf16>(ta, tb, 7, 113, 33, 5);
      check_gemm<bf16>(ta, tb, 1, 257, 64, 6);
      check_gemm<bf16>(ta, tb, 113, 3, 257, 7);
      check_gemm<bf16>(ta, tb, 64, 96, 128, 8);
    }
}

TEST(Gemm, EmptyKScalesCAndBadLeadingDimensionThrows) {
  VecF C = {1.0f, 2.0f, 3.0f, 4.0f};
  gemm_f32(Op::N, Op::N, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2);
  EXPECT_EQ(C, (VecF{0.5f, 1.0f, 1.5f, 2.0f}));
  VecF A(16, 1.0f), B(16, 1.0f);
  EXPECT_THROW(gemm_f32(Op::N, Op::N, 2, 2, 4, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2),
               seqvit::Error);
  EXPECT_THROW(gemm_f32(Op::T, Op::N, 4, 2, 2, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2),
               seqvit::Error);
}

// ------------------------------------------------------------------------------ elementwise
TEST(Elementwise, BroadcastAddScaleSumSquares) {
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{113}, int64_t{257 * 113}, int64_t{100003}}) {
    const VecF a = randn(n, 10), b = randn(n, 11);
    VecF y = a;
    add_inplace(y.data(), b.data(), n);
    VecD want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = double(a[i]) + b[i];
    expect_close(y, want, 1e-7, 0.0, "add_inplace");
    VecF y2(n);
    add(a.data(), b.data(), y2.data(), n);
    EXPECT_EQ(y2, y) << "add";
    scale_inplace(y2.data(), -0.37f, n);
    for (int64_t i = 0; i < n; ++i) want[i] = double(y[i]) * -0.37f;
    expect_close(y2, want, 1e-7, 0.0, "scale_inplace");
    double ss = 0.0;
    for (float v : a) ss += double(v) * v;
    EXPECT_NEAR(sum_squares(a.data(), n), ss, 1e-12 * ss) << "sum_squares n=" << n;
  }
  for (int64_t T : kT)
    for (int64_t F : kD) {
      const VecF b = randn(F, 12);
      VecF y(T * F, -1.0f);
      broadcast_rows(y.data(), b.data(), T, F);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t f = 0; f < F; ++f) ASSERT_EQ(y[t * F + f], b[f]);
    }
}

TEST(Elementwise, BiasBackwardAccumulates) {
  for (int64_t T : {int64_t{1}, int64_t{7}, int64_t{113}, int64_t{4099}})
    for (int64_t F : kD) {
      const VecF dy = randn(T * F, 13);
      VecF db = randn(F, 14);
      VecD want = to_d(db);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t f = 0; f < F; ++f) want[f] += dy[t * F + f];
      bias_backward(dy.data(), db.data(), T, F);
      expect_close(db, want, 1e-6, 1e-6, "bias_backward");
    }
}

TEST(Elementwise, ReductionsIndependentOfThreadCount) {
  const int64_t T = 5003, F = 257;
  const VecF dy = randn(T * F, 15);
  VecF db1(F, 0.0f), db2(F, 0.0f);
  double s1 = 0, s2 = 0;
  with_threads(1, [&] { bias_backward(dy.data(), db1.data(), T, F); s1 = sum_squares(dy.data(), T * F); });
  with_threads(2, [&] { bias_backward(dy.data(), db2.data(), T, F); s2 = sum_squares(dy.data(), T * F); });
  EXPECT_EQ(db1, db2);
  EXPECT_EQ(s1, s2);
}

// ------------------------------------------------------------------------------------ GELU
double gelu_d(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double gelu_grad_d(double x) {
  return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}

VecF gelu_inputs() {
  VecF x = randn(4099, 20, 3.0f);
  for (float v = -14.0f; v <= 14.0f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 30.0f, -30.0f}) x.push_back(v);
  return x;
}

TEST(Gelu, ForwardMatchesExactErfToRelative1e6) {
  const VecF x = gelu_inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  VecF y(n);
  gelu_forward(x.data(), y.data(), n);
  VecD want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = gelu_d(x[i]);
  // Relative accuracy even in the negative tail (erfc evaluated directly); tiny atol for the
  // values that underflow fp32.
  expect_close(y, want, 1e-6, 1e-37, "gelu_forward");
}

TEST(Gelu, BackwardMatchesAnalyticAndFiniteDifferences) {
  // The analytic oracle derivative against central differences of the oracle (double).
  for (double x : {-6.0, -2.5, -0.75, -0.1, 0.0, 0.3, 1.7, 4.0}) {
    const double h = 1e-5;
    EXPECT_NEAR((gelu_d(x + h) - gelu_d(x - h)) / (2 * h), gelu_grad_d(x), 1e-8) << x;
  }
  const VecF x = gelu_inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  const VecF dy = randn(n, 21);
  VecF dx(n);
  gelu_backward(x.data(), dy.data(), dx.data(), n);
  VecD want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = dy[i] * gelu_grad_d(x[i]);
  // gelu' has a root near x = -0.75: absolute slack there scaled by |dy|.
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(dx[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-7 * std::fabs(dy[i]))
        << "x=" << x[i];
  VecF alias = dy;  // dx may alias dy
  gelu_backward(x.data(), alias.data(), alias.data(), n);
  EXPECT_EQ(alias, dx);
}

TEST(Gelu, NonFiniteInputs) {
  const VecF x = {INFINITY, -INFINITY, NAN};
  VecF y(3), dx(3);
  const VecF dy = {1.0f, 1.0f, 1.0f};
  gelu_forward(x.data(), y.data(), 3);
  gelu_backward(x.data(), dy.data(), dx.data(), 3);
  EXPECT_EQ(y[0], INFINITY);
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_EQ(dx[0], 1.0f);
  EXPECT_EQ(dx[1], 0.0f);
  EXPECT_TRUE(std::isnan(dx[2]));
}

// ------------------------------------------------------------------------------- LayerNorm
struct LnOracle {
  VecD y, mean, rstd;
};
LnOracle ln_fwd_d(const VecD& x, const VecD& g, const VecD& b, int64_t T, int64_t D, double eps) {
  LnOracle o{VecD(T * D), VecD(T), VecD(T)};
  for (int64_t t = 0; t < T; ++t) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < D; ++i) m += x[t * D + i];
    m /= D;
    for (int64_t i = 0; i < D; ++i) v += (x[t * D + i] - m) * (x[t * D + i] - m);
    v /= D;
    o.mean[t] = m;
    o.rstd[t] = 1.0 / std::sqrt(v + eps);
    for (int64_t i = 0; i < D; ++i)
      o.y[t * D + i] = (x[t * D + i] - m) * o.rstd[t] * g[i] + b[i];
  }
  return o;
}
// Analytic backward in double: dx, dgamma, dbeta of L = <dy, y>.
void ln_bwd_d(const VecD& dy, const VecD& x, const VecD& g, int64_t T, int64_t D, double eps,
              VecD& dx, VecD& dg, VecD& db) {
  const LnOracle o = ln_fwd_d(x, g, VecD(D, 0.0), T, D, eps);
  dx.assign(T * D, 0.0);
  dg.assign(D, 0.0);
  db.assign(D, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < D; ++i) {
      const double xh = (x[t * D + i] - o.mean[t]) * o.rstd[t], gi = dy[t * D + i] * g[i];
      sg += gi;
      sgx += gi * xh;
      dg[i] += dy[t * D + i] * xh;
      db[i] += dy[t * D + i];
    }
    for (int64_t i = 0; i < D; ++i) {
      const double xh = (x[t * D + i] - o.mean[t]) * o.rstd[t];
      dx[t * D + i] = o.rstd[t] * (dy[t * D + i] * g[i] - sg / D - xh * sgx / D);
    }
  }
}

TEST(LayerNorm, ForwardVsDoubleOracle) {
  const float eps = 1e-5f;
  for (int64_t T : kT)
    for (int64_t D : kD) {
      // Offset mean (5) with unit spread: a one-pass E[x^2] - E[x]^2 would lose digits here.
      const VecF x = randn(T * D, 30, 1.0f, 5.0f), g = randn(D, 31), b = randn(D, 32);
      VecF y(T * D), mean(T), rstd(T);
      layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, eps);
      const LnOracle o = ln_fwd_d(to_d(x), to_d(g), to_d(b), T, D, eps);
      expect_close(mean, o.mean, 1e-6, 1e-6, "ln mean");
      expect_close(rstd, o.rstd, 1e-5, 0.0, "ln rstd");
      expect_close(y, o.y, 1e-5, 1e-5, "ln y");
    }
}

TEST(LayerNorm, OracleGradientMatchesFiniteDifferences) {
  const int64_t T = 3, D = 7;
  const double eps = 1e-5;
  const VecD x = to_d(randn(T * D, 33)), g = to_d(randn(D, 34)), b = to_d(randn(D, 35)),
             dy = to_d(randn(T * D, 36));
  VecD dx, dg, db;
  ln_bwd_d(dy, x, g, T, D, eps, dx, dg, db);
  auto loss = [&](const VecD& xx, const VecD& gg, const VecD& bb) {
    const LnOracle o = ln_fwd_d(xx, gg, bb, T, D, eps);
    double s = 0;
    for (int64_t i = 0; i < T * D; ++i) s += dy[i] * o.y[i];
    return s;
  };
  const double h = 1e-6;
  for (int64_t i = 0; i < T * D; ++i) {
    VecD xp = x, xm = x;
    xp[i] += h, xm[i] -= h;
    EXPECT_NEAR((loss(xp, g, b) - loss(xm, g, b)) / (2 * h), dx[i], 1e-6) << "dx " << i;
  }
  for (int64_t i = 0; i < D; ++i) {
    VecD gp = g, gm = g, bp = b, bm = b;
    gp[i] += h, gm[i] -= h, bp[i] += h, bm[i] -= h;
    EXPECT_NEAR((loss(x, gp, b) - loss(x, gm, b)) / (2 * h), dg[i], 1e-6) << "dgamma " << i;
    EXPECT_NEAR((loss(x, g, bp) - loss(x, g, bm)) / (2 * h), db[i], 1e-6) << "dbeta " << i;
  }
}

TEST(LayerNorm, BackwardVsAnalyticDouble) {
  const float eps = 1e-5f;
  for (int64_t T : kT)
    for (int64_t D : kD) {
      const VecF x = randn(T * D, 40, 2.0f, 1.0f), g = randn(D, 41), b = randn(D, 42),
                 dy = randn(T * D, 43);
      VecF y(T * D), mean(T), rstd(T);
      layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, eps);
      VecD dx_d, dg_d, db_d;
      ln_bwd_d(to_d(dy), to_d(x), to_d(g), T, D, eps, dx_d, dg_d, db_d);
      // dgamma/dbeta accumulate into existing values; dx overwritten, then accumulated.
      VecF dx(T * D, 123.0f), dg = randn(D, 44), db = randn(D, 45);
      VecD dg_want = dg_d, db_want = db_d;
      for (int64_t i = 0; i < D; ++i) dg_want[i] += dg[i], db_want[i] += db[i];
      layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(),
                         dg.data(), db.data(), T, D, false);
      // dx is a difference of O(|g|) terms: scale the tolerance by the row's gradient size.
      expect_close(dx, dx_d, 1e-5, 1e-5, "ln dx");
      expect_close(dg, dg_want, 1e-5, 1e-5, "ln dgamma");
      expect_close(db, db_want, 1e-5, 1e-5, "ln dbeta");
      VecF dx2 = dx;
      VecF dg2(D, 0.0f), db2(D, 0.0f);
      layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx2.data(),
                         dg2.data(), db2.data(), T, D, true);
      for (int64_t i = 0; i < T * D; ++i) ASSERT_NEAR(dx2[i], 2.0 * dx[i], 1e-6 * (1 + std::fabs(dx[i])));
    }
}

TEST(LayerNorm, BackwardDeterministicAcrossRunsAndThreadCounts) {
  const int64_t T = 3001, D = 257;
  const VecF x = randn(T * D, 50), g = randn(D, 51), b = randn(D, 52), dy = randn(T * D, 53);
  VecF y(T * D), mean(T), rstd(T);
  layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, 1e-5f);
  auto run = [&](int threads) {
    VecF dx(T * D), dg(D, 0.0f), db(D, 0.0f);
    with_threads(threads, [&] {
      layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(),
                         dg.data(), db.data(), T, D, false);
    });
    dx.insert(dx.end(), dg.begin(), dg.end());
    dx.insert(dx.end(), db.begin(), db.end());
    return dx;
  };
  const VecF r2 = run(2);
  EXPECT_EQ(r2, run(2));
  EXPECT_EQ(r2, run(1));
  EXPECT_EQ(r2, run(3));
}

// --------------------------------------------------------------------------------- softmax
VecD softmax_d(const VecD& x, int64_t T, int64_t F) {
  VecD y(T * F);
  for (int64_t t = 0; t < T; ++t) {
    double m = -INFINITY, s = 0;
    for (int64_t f = 0; f < F; ++f) m = std::max(m, x[t * F + f]);
    for (int64_t f = 0; f < F; ++f) s += y[t * F + f] = std::exp(x[t * F + f] - m);
    for (int64_t f = 0; f < F; ++f) y[t * F + f] /= s;
  }
  return y;
}
VecD softmax_bwd_d(const VecD& y, const VecD& dy, int64_t T, int64_t F) {
  VecD dx(T * F);
  for (int64_t t = 0; t < T; ++t) {
    double s = 0;
    for (int64_t f = 0; f < F; ++f) s += dy[t * F + f] * y[t * F + f];
    for (int64_t f = 0; f < F; ++f) dx[t * F + f] = y[t * F + f] * (dy[t * F + f] - s);
  }
  return dx;
}

TEST(Softmax, ForwardBackwardVsOracle) {
  for (int64_t T : kT)
    for (int64_t F : kD) {
      const VecF x = randn(T * F, 60, 4.0f, 50.0f), dy = randn(T * F, 61);
      VecF y(T * F);
      softmax_forward(x.data(), y.data(), T, F);
      const VecD yd = softmax_d(to_d(x), T, F);
      expect_close(y, yd, 2e-6, 1e-30, "softmax y");
      VecF dx(T * F);
      softmax_backward(y.data(), dy.data(), dx.data(), T, F);
      // dx = y (dy - s) cancels when dy ~ s: the error scales with y (|dy| + |s|).
      const VecD dxd = softmax_bwd_d(yd, to_d(dy), T, F);
      for (int64_t t = 0; t < T; ++t) {
        double s = 0;
        for (int64_t f = 0; f < F; ++f) s += yd[t * F + f] * dy[t * F + f];
        for (int64_t f = 0; f < F; ++f) {
          const int64_t i = t * F + f;
          ASSERT_NEAR(dx[i], dxd[i], 1e-5 * yd[i] * (std::fabs(dy[i]) + std::fabs(s)) + 1e-30);
        }
      }
      VecF alias = x;  // y may alias x, dx may alias dy
      softmax_forward(alias.data(), alias.data(), T, F);
      EXPECT_EQ(alias, y);
      VecF dalias = dy;
      softmax_backward(y.data(), dalias.data(), dalias.data(), T, F);
      EXPECT_EQ(dalias, dx);
    }
}

TEST(Softmax, OracleGradientMatchesFiniteDifferences) {
  const int64_t T = 2, F = 5;
  const VecD x = to_d(randn(T * F, 62)), dy = to_d(randn(T * F, 63));
  const VecD dx = softmax_bwd_d(softmax_d(x, T, F), dy, T, F);
  const double h = 1e-6;
  for (int64_t i = 0; i < T * F; ++i) {
    VecD xp = x, xm = x;
    xp[i] += h, xm[i] -= h;
    const VecD yp = softmax_d(xp, T, F), ym = softmax_d(xm, T, F);
    double fd = 0;
    for (int64_t j = 0; j < T * F; ++j) fd += dy[j] * (yp[j] - ym[j]) / (2 * h);
    EXPECT_NEAR(fd, dx[i], 1e-8) << i;
  }
}

TEST(Softmax, MaskedEntries) {
  const VecF x = {0.0f, -INFINITY, 1.0f, -INFINITY};
  VecF y(4);
  softmax_forward(x.data(), y.data(), 1, 4);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_NEAR(y[2], 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
}

// --------------------------------------------------------------------------------- patches
// Values encode coordinates: x[b,v,h,w] = ((b*8 + v)*64 + h)*64 + w (exact in fp32).
float coord(int64_t b, int64_t v, int64_t h, int64_t w) {
  return static_cast<float>(((b * 8 + v) * 64 + h) * 64 + w);
}

struct Geo {
  int64_t B, V, H, W, p;
};
const Geo kGeos[] = {{2, 3, 6, 10, 2}, {1, 5, 4, 8, 4}, {3, 1, 5, 7, 1}, {2, 2, 9, 6, 3}};

TEST(Patch, VariableMajorLayoutRoundTripAndAdjoint) {
  for (const Geo& g : kGeos) {
    const int64_t Hp = g.H / g.p, Wp = g.W / g.p, P2 = g.p * g.p, n = g.B * g.V * g.H * g.W;
    VecF x(n);
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t v = 0; v < g.V; ++v)
        for (int64_t h = 0; h < g.H; ++h)
          for (int64_t w = 0; w < g.W; ++w) x[((b * g.V + v) * g.H + h) * g.W + w] = coord(b, v, h, w);
    VecF pt(n, -1.0f);
    patchify(x.data(), pt.data(), g.B, g.V, g.H, g.W, g.p);
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t v = 0; v < g.V; ++v)
        for (int64_t l = 0; l < Hp * Wp; ++l)
          for (int64_t r = 0; r < g.p; ++r)
            for (int64_t c = 0; c < g.p; ++c)
              ASSERT_EQ(pt[((b * g.V + v) * Hp * Wp + l) * P2 + r * g.p + c],
                        coord(b, v, (l / Wp) * g.p + r, (l % Wp) * g.p + c));
    VecF back(n, -1.0f);
    unpatchify_vmajor(pt.data(), back.data(), g.B, g.V, g.H, g.W, g.p);
    EXPECT_EQ(back, x);
    // Adjointness on random data: <patchify(a), y> == <a, unpatchify(y)>.
    const VecF a = randn(n, 70), y = randn(n, 71);
    VecF pa(n), uy(n);
    patchify(a.data(), pa.data(), g.B, g.V, g.H, g.W, g.p);
    unpatchify_vmajor(y.data(), uy.data(), g.B, g.V, g.H, g.W, g.p);
    double l = 0, r = 0;
    for (int64_t i = 0; i < n; ++i) l += double(pa[i]) * y[i], r += double(a[i]) * uy[i];
    EXPECT_NEAR(l, r, 1e-9 * (1 + std::fabs(l)));
  }
}

TEST(Patch, ChannelsLastLayoutRoundTripAndAdjoint) {
  for (const Geo& g : kGeos) {
    const int64_t Hp = g.H / g.p, Wp = g.W / g.p, n = g.B * g.V * g.H * g.W;
    VecF img(n);
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t v = 0; v < g.V; ++v)
        for (int64_t h = 0; h < g.H; ++h)
          for (int64_t w = 0; w < g.W; ++w)
            img[((b * g.V + v) * g.H + h) * g.W + w] = coord(b, v, h, w);
    VecF tok(n, -1.0f);
    patchify_channels_last(img.data(), tok.data(), g.B, g.V, g.H, g.W, g.p);
    const int64_t E = g.p * g.p * g.V;
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t l = 0; l < Hp * Wp; ++l)
        for (int64_t r = 0; r < g.p; ++r)
          for (int64_t c = 0; c < g.p; ++c)
            for (int64_t v = 0; v < g.V; ++v)
              ASSERT_EQ(tok[(b * Hp * Wp + l) * E + (r * g.p + c) * g.V + v],
                        coord(b, v, (l / Wp) * g.p + r, (l % Wp) * g.p + c));
    VecF back(n, -1.0f);
    unpatchify_channels_last(tok.data(), back.data(), g.B, g.V, g.H, g.W, g.p);
    EXPECT_EQ(back, img);
    const VecF a = randn(n, 72), y = randn(n, 73);
    VecF pa(n), uy(n);
    patchify_channels_last(a.data(), pa.data(), g.B, g.V, g.H, g.W, g.p);
    unpatchify_channels_last(y.data(), uy.data(), g.B, g.V, g.H, g.W, g.p);
    double l = 0, r = 0;
    for (int64_t i = 0; i < n; ++i) l += double(pa[i]) * y[i], r += double(a[i]) * uy[i];
    EXPECT_NEAR(l, r, 1e-9 * (1 + std::fabs(l)));
  }
}

TEST(Patch, RejectsPatchSizeNotDividingImage) {
  VecF x(2 * 6 * 10), pt(x.size());
  EXPECT_THROW(patchify(x.data(), pt.data(), 1, 2, 6, 10, 4), seqvit::Error);
  EXPECT_THROW(patchify_channels_last(x.data(), pt.data(), 1, 2, 6, 10, 0), seqvit::Error);
}

// ----------------------------------------------------------------------------------- AdamW
TEST(AdamW, MatchesDoubleReferenceOverSeveralSteps) {
  const int64_t n = 1000 + 13;  // not a multiple of the vector width
  const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  VecF p = randn(n, 80), m(n, 0.0f), v(n, 0.0f);
  VecD pd = to_d(p), md(n, 0.0), vd(n, 0.0);
  for (int64_t step = 1; step <= 6; ++step) {
    const VecF g = randn(n, 81 + static_cast<uint32_t>(step), 0.5f);
    adamw_step(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
    for (int64_t i = 0; i < n; ++i) {  // torch.optim.AdamW, written out in double
      pd[i] *= 1.0 - double(lr) * wd;
      md[i] = b1 * md[i] + (1.0 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1.0 - b2) * double(g[i]) * g[i];
      const double bc1 = 1.0 - std::pow(double(b1), double(step));
      const double bc2 = 1.0 - std::pow(double(b2), double(step));
      pd[i] -= (lr / bc1) * md[i] / (std::sqrt(vd[i]) / std::sqrt(bc2) + eps);
    }
    expect_close(m, md, 1e-5, 1e-7, "adamw m");
    expect_close(v, vd, 1e-5, 1e-9, "adamw v");
    expect_close(p, pd, 1e-6, 1e-7, "adamw p");
  }
  EXPECT_THROW(adamw_step(p.data(), p.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, 0),
               seqvit::Error);
}

}  // namespace
}  // namespace seqvit::kernels
