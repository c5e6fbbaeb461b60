// GEMM and bandwidth-bound kernel throughput on this machine.
//   bench_gemm [--quick]
// Prints fp32 / bf16 GEMM GFLOP/s for 2048^3 and for transformer shapes (a Linear layer's
// forward Y = X W^T and its two backward products), the per-call cost of small GEMMs, and the
// GB/s of LayerNorm and GELU forward/backward. Every GEMM is validated against double-precision
// dot products at sampled entries before it is timed; the elementwise kernels are checked on a
// sample of rows. Napkin limits: fp32 peak = cores x 32 FLOP/cycle (two 256-bit FMA pipes on
// Zen 4) x clock; bf16 twice that (vdpbf16ps); bandwidth = the STREAM-like copy rate measured
// here.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/ops.h"

using namespace seqvit;
using namespace seqvit::kernels;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Median time of f over repetitions lasting at least min_s (after one warm-up call).
template <typename F>
double time_it(F&& f, double min_s = 0.3, int min_reps = 3) {
  f();
  std::vector<double> ts;
  const double start = now();
  while (static_cast<int>(ts.size()) < min_reps || now() - start < min_s) {
    const double t0 = now();
    f();
    ts.push_back(now() - t0);
    if (ts.size() >= 1000) break;
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void fill(std::vector<float>& v, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& x : v) x = d(g);
}

bool g_failed = false;

struct GemmCase {
  std::string name;
  Op ta, tb;
  int64_t M, N, K;
};

// Validate then time one shape in fp32 and bf16. Returns nothing; prints one line.
void bench_gemm_case(const GemmCase& c) {
  const int64_t a_rows = c.ta == Op::N ? c.M : c.K, a_cols = c.ta == Op::N ? c.K : c.M;
  const int64_t b_rows = c.tb == Op::N ? c.K : c.N, b_cols = c.tb == Op::N ? c.N : c.K;
  std::vector<float> A(a_rows * a_cols), B(b_rows * b_cols), C(c.M * c.N);
  fill(A, 1);
  fill(B, 2);
  std::vector<bf16> Ah(A.size()), Bh(B.size());
  convert_to_bf16(A.data(), Ah.data(), static_cast<int64_t>(A.size()));
  convert_to_bf16(B.data(), Bh.data(), static_cast<int64_t>(B.size()));
  auto at = [](const auto& X, Op t, int64_t ld, int64_t i, int64_t k) -> double {
    const auto v = t == Op::N ? X[i * ld + k] : X[k * ld + i];
    if constexpr (std::is_same_v<std::decay_t<decltype(v)>, bf16>)
      return to_float(v);
    else
      return v;
  };
  auto validate = [&](const char* prec, const auto& Av, const auto& Bv) {
    std::mt19937 g(3);
    double worst = 0;
    for (int s = 0; s < 64; ++s) {
      const int64_t i = g() % c.M, j = g() % c.N;
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double p = at(Av, c.ta, a_cols, i, k) * at(Bv, c.tb, b_cols, k, j);
        ref += p;
        mag += std::fabs(p);
      }
      worst = std::max(worst, std::fabs(C[i * c.N + j] - ref) / (mag * 1e-6 + 1e-6));
    }
    if (worst > 1.0) {
      std::printf("  VALIDATION FAILED: %s %s (error %.2f x tolerance)\n", c.name.c_str(), prec, worst);
      g_failed = true;
    }
  };
  auto run_f32 = [&] {
    gemm_f32(c.ta, c.tb, c.M, c.N, c.K, 1.0f, A.data(), a_cols, B.data(), b_cols, 0.0f, C.data(),
             c.N);
  };
  auto run_bf16 = [&] {
    gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, 1.0f, Ah.data(), a_cols, Bh.data(), b_cols, 0.0f,
              C.data(), c.N);
  };
  run_f32();
  validate("fp32", A, B);
  const double t32 = time_it(run_f32);
  run_bf16();
  validate("bf16", Ah, Bh);
  const double t16 = time_it(run_bf16);
  const double flop = 2.0 * c.M * c.N * c.K;
  std::printf("  %-34s %c%c M=%6lld N=%5lld K=%5lld  fp32 %7.1f GFLOP/s  bf16 %7.1f GFLOP/s\n",
              c.name.c_str(), c.ta == Op::N ? 'N' : 'T', c.tb == Op::N ? 'N' : 'T',
              static_cast<long long>(c.M), static_cast<long long>(c.N),
              static_cast<long long>(c.K), flop / t32 * 1e-9, flop / t16 * 1e-9);
}

// Per-call time of a small square GEMM (overhead dominated).
void bench_small_gemm(int64_t n) {
  std::vector<float> A(n * n), B(n * n), C(n * n);
  fill(A, 4);
  fill(B, 5);
  const double t = time_it(
      [&] {
        for (int r = 0; r < 100; ++r)
          gemm_f32(Op::N, Op::T, n, n, n, 1.0f, A.data(), n, B.data(), n, 0.0f, C.data(), n);
      },
      0.2) / 100;
  std::printf("  small fp32 gemm %4lld^3: %8.2f us/call  (%6.1f GFLOP/s)\n",
              static_cast<long long>(n), t * 1e6, 2.0 * n * n * n / t * 1e-9);
}

double copy_bandwidth() {
  const int64_t n = int64_t{1} << 26;  // 256 MiB each
  std::vector<float> a(n, 1.0f), b(n);
  const double t = time_it([&] {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) b[i] = a[i];
  });
  return 8.0 * n / t * 1e-9;
}

void bench_rowwise(int64_t T, int64_t D) {
  const int64_t n = T * D;
  std::vector<float> x(n), y(n), dy(n), dx(n), g(D), b(D), mean(T), rstd(T), dg(D), db(D);
  fill(x, 6);
  fill(dy, 7);
  fill(g, 8);
  fill(b, 9);
  // Validate a few rows of the LayerNorm forward (mean 0 / var 1 of (y - b) / g by construction).
  layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D,
                    1e-5f);
  for (int64_t t : {int64_t{0}, T / 2, T - 1}) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < D; ++i) m += x[t * D + i];
    m /= D;
    for (int64_t i = 0; i < D; ++i) v += (x[t * D + i] - m) * (x[t * D + i] - m);
    const double r = 1.0 / std::sqrt(v / D + 1e-5);
    for (int64_t i = 0; i < D; ++i) {
      const double want = (x[t * D + i] - m) * r * g[i] + b[i];
      if (std::fabs(y[t * D + i] - want) > 1e-4 * (1 + std::fabs(want))) {
        std::printf("  VALIDATION FAILED: layernorm_forward row %lld\n", static_cast<long long>(t));
        g_failed = true;
        break;
      }
    }
  }
  gelu_forward(x.data(), y.data(), n);
  for (int64_t i : {int64_t{0}, n / 3, n - 1}) {
    const double want = 0.5 * x[i] * std::erfc(-x[i] / std::sqrt(2.0));
    if (std::fabs(y[i] - want) > 1e-6 * std::fabs(want) + 1e-30) {
      std::printf("  VALIDATION FAILED: gelu_forward at %lld\n", static_cast<long long>(i));
      g_failed = true;
    }
  }
  const double fb = 4.0 * n;  // bytes of one [T,D] fp32 tensor
  const double t_lnf = time_it([&] {
    layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, 1e-5f);
  });
  const double t_lnb = time_it([&] {
    layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(),
                       dg.data(), db.data(), T, D, false);
  });
  const double t_gf = time_it([&] { gelu_forward(x.data(), y.data(), n); });
  const double t_gb = time_it([&] { gelu_backward(x.data(), dy.data(), dx.data(), n); });
  // Compulsory traffic: LN fwd reads x, writes y; LN bwd reads dy, x, writes dx; same for GELU.
  std::printf("  T=%6lld D=%5lld  LN fwd %6.1f GB/s  LN bwd %6.1f GB/s  GELU fwd %6.1f GB/s "
              "(%5.2f Gelem/s)  GELU bwd %6.1f GB/s\n",
              static_cast<long long>(T), static_cast<long long>(D), 2 * fb / t_lnf * 1e-9,
              3 * fb / t_lnb * 1e-9, 2 * fb / t_gf * 1e-9, n / t_gf * 1e-9,
              3 * fb / t_gb * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  std::printf("bench_gemm: %d OpenMP threads%s\n", omp_get_max_threads(), quick ? " (quick)" : "");

  std::printf("GEMM (C = op(A) op(B), row-major; Linear y = x W^T with x[T,in], W[out,in]):\n");
  std::vector<GemmCase> cases = {{"square 2048^3", Op::N, Op::N, 2048, 2048, 2048}};
  for (int64_t T : {int64_t{8192}, int64_t{65536}}) {
    if (quick && T > 8192) break;
    for (auto [in, out] : {std::pair<int64_t, int64_t>{256, 768}, {256, 1024}, {1024, 256}}) {
      const std::string shape = "[" + std::to_string(in) + "->" + std::to_string(out) + "]";
      cases.push_back({"fwd  y=xW^T   " + shape, Op::N, Op::T, T, out, in});
      cases.push_back({"bwd  dx=dyW   " + shape, Op::N, Op::N, T, in, out});
      cases.push_back({"bwd  dW=dy^Tx " + shape, Op::T, Op::N, out, in, T});
    }
  }
  for (const auto& c : cases) bench_gemm_case(c);
  {
    const int old = omp_get_max_threads();
    omp_set_num_threads(1);
    bench_gemm_case({"square 2048^3, 1 thread", Op::N, Op::N, 2048, 2048, 2048});
    omp_set_num_threads(old);
  }
  for (int64_t n : {16, 64, 128, 256}) bench_small_gemm(n);

  std::printf("Bandwidth-bound kernels (copy rate of this machine: %.1f GB/s):\n",
              copy_bandwidth());
  for (int64_t T : {int64_t{8192}, int64_t{65536}}) {
    if (quick && T > 8192) break;
    for (int64_t D : {int64_t{256}, int64_t{1024}}) bench_rowwise(T, D);
  }
  if (g_failed) {
    std::printf("bench_gemm: VALIDATION FAILED\n");
    return 1;
  }
  return 0;
}
