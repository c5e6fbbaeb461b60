// Flash attention throughput, fp32 and bf16, forward + backward, against the GEMM rate of
// the same machine measured in the same run (the napkin-math limit: attention is four/five
// GEMM-shaped products plus an exp per score). Validates against the naive oracle first.
//
//   bench_flash_attention [--max-n 65536] [--min-n 1024] [--heads 4] [--dim 64] [--cpu-time 1]
//
// --dim takes any head_dim >= 1 (multiples of 16 are the fast path). --cpu-time 1 times with
// the process CPU clock instead of the wall clock: with OMP_NUM_THREADS=1 that gives per-core
// rates that other jobs on a shared machine barely move (use it for before/after comparisons).
//
// FLOPs: forward 4 N^2 d per (batch, head) (QK^T and PV), backward 10 N^2 d (QK^T recompute,
// dO V^T, P^T dO, dS K, dS^T Q); fwd+bwd = 14 N^2 d: the standard FlashAttention count. exp
// and the softmax bookkeeping are not counted.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "kernels/attention.h"

// oneDNN 2.6 exports dnnl_gemm_bf16bf16f32 (row-major) without declaring it in its header.
extern "C" dnnl_status_t bench_dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M,
                                                     dnnl_dim_t N, dnnl_dim_t K, float alpha,
                                                     const uint16_t* A, dnnl_dim_t lda,
                                                     const uint16_t* B, dnnl_dim_t ldb,
                                                     float beta, float* C, dnnl_dim_t ldc)
    __asm__("dnnl_gemm_bf16bf16f32");

using namespace seqvit;
using namespace seqvit::kernels;

namespace {

bool g_cpu_time = false;  // --cpu-time: process CPU time (all threads) instead of wall time

double now() {
  if (g_cpu_time) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Runs f at least once and until min_s seconds have passed; returns seconds per call.
// A warm-up call first, except for long runs (min_s == 0) where it would double the time.
template <typename F>
double time_it(F&& f, double min_s) {
  if (min_s > 0) f();
  int reps = 0;
  const double t0 = now();
  double t = t0;
  do {
    f();
    ++reps;
    t = now();
  } while (t - t0 < min_s);
  return (t - t0) / reps;
}

double gemm_rate(bool use_bf16) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  std::vector<bf16> ah(n * n), bh(n * n);
  convert_to_bf16(a.data(), ah.data(), n * n);
  convert_to_bf16(b.data(), bh.data(), n * n);
  const double s = time_it(
      [&] {
        dnnl_status_t st =
            use_bf16
                ? bench_dnnl_gemm_bf16bf16f32('N', 'N', n, n, n, 1.f,
                                              reinterpret_cast<const uint16_t*>(ah.data()), n,
                                              reinterpret_cast<const uint16_t*>(bh.data()), n,
                                              0.f, c.data(), n)
                 : dnnl_sgemm('N', 'N', n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
        if (st != dnnl_success) {
          std::fprintf(stderr, "oneDNN gemm failed: %d\n", static_cast<int>(st));
          std::exit(1);
        }
      },
      0.5);
  return 2.0 * n * n * n / s * 1e-9;
}

// q, k, v, o, dO, dq, dk, dv as [B=1, N, Hh, d] and lse [Hh, N].
struct Buffers {
  std::vector<float> q, k, v, o, dout, dq, dk, dv, lse;
  std::vector<char> ws;
  AttentionArgs a;
  size_t tensor_bytes = 0;

  Buffers(int64_t N, int64_t Hh, int64_t d, bool use_bf16) {
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.f, 1.f);
    const size_t n = static_cast<size_t>(N * Hh * d);
    for (auto* x : {&q, &k, &v, &dout}) {
      x->resize(n);
      for (auto& e : *x) e = nd(rng);
    }
    for (auto* x : {&o, &dq, &dk, &dv}) x->assign(n, 0.f);
    lse.assign(static_cast<size_t>(Hh * N), 0.f);
    tensor_bytes = 8 * n * sizeof(float) + lse.size() * sizeof(float);
    auto t = [&](std::vector<float>& x) { return StridedTensor{x.data(), N * Hh * d, Hh * d, d}; };
    a.batch = 1;
    a.heads = Hh;
    a.nq = a.nk = N;
    a.head_dim = d;
    a.scale = 1.f / std::sqrt(static_cast<float>(d));
    a.bf16 = use_bf16;
    a.q = t(q);
    a.k = t(k);
    a.v = t(v);
    a.o = t(o);
    a.dout = t(dout);
    a.dq = t(dq);
    a.dk = t(dk);
    a.dv = t(dv);
    a.lse = lse.data();
    ws.resize(flash_attention_workspace_bytes(a, omp_get_max_threads()));
    a.workspace = ws.data();
    a.workspace_bytes = ws.size();
  }
};

double rel_err(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += double(x[i] - y[i]) * (x[i] - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / den);
}

// flash vs naive (same precision) on a small problem with the benchmarked head_dim; exits on a
// mismatch.
void validate(int64_t d, bool use_bf16) {
  Buffers f(300, 3, d, use_bf16), n(300, 3, d, use_bf16);
  f.a.workspace = f.ws.data();
  flash_attention_forward(f.a);
  flash_attention_backward(f.a);
  naive_attention_forward(n.a);
  naive_attention_backward(n.a);
  const double tol = use_bf16 ? 2e-2 : 1e-4;
  double worst = 0;
  for (auto [x, y] : {std::pair{&f.o, &n.o}, std::pair{&f.lse, &n.lse}, std::pair{&f.dq, &n.dq},
                      std::pair{&f.dk, &n.dk}, std::pair{&f.dv, &n.dv}})
    worst = std::max(worst, rel_err(*x, *y));
  std::printf("validate %s: N=300 Hh=3 d=%lld, max rel err flash vs naive over O, LSE, dQ, dK, "
              "dV = %.2e (limit %.0e) %s\n",
              use_bf16 ? "bf16" : "fp32", static_cast<long long>(d), worst, tol,
              worst <= tol ? "ok" : "FAILED");
  if (!(worst <= tol)) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t max_n = 65536, min_n = 1024, heads = 4, d = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (k == "--max-n") max_n = v;
    else if (k == "--min-n") min_n = v;
    else if (k == "--heads") heads = v;
    else if (k == "--dim") d = v;
    else if (k == "--cpu-time") g_cpu_time = v != 0;
    else {
      std::fprintf(stderr,
                   "usage: %s [--max-n N] [--min-n N] [--heads H] [--dim d] [--cpu-time 0|1]\n",
                   argv[0]);
      return 2;
    }
  }
  const int T = omp_get_max_threads();
  if (d < 1 || heads < 1 || min_n < 1) {
    std::fprintf(stderr, "need --dim, --heads, --min-n >= 1\n");
    return 2;
  }
  std::printf("flash attention bench: %d OpenMP threads, batch 1, head_dim %lld, %s time\n", T,
              static_cast<long long>(d), g_cpu_time ? "process CPU" : "wall-clock");
  std::printf("FLOP count: fwd 4 N^2 d, bwd 10 N^2 d, fwd+bwd 14 N^2 d per head "
              "(standard FlashAttention count; exp not counted)\n");
  validate(d, false);
  validate(d, true);
  // The same-precision GEMM rate is measured next to every row, so a busy machine lowers
  // both sides of the ratio alike.
  std::printf("GEMM = oneDNN 2048^3 (dnnl_sgemm / dnnl_gemm_bf16bf16f32), measured right after "
              "each row\n\n");
  std::printf("%7s %3s | %-4s | %9s %9s %9s | %9s %6s | %9s %9s | %8s %8s %8s\n", "N", "Hh",
              "prec", "fwd GF/s", "bwd GF/s", "f+b GF/s", "GEMM GF/s", "%GEMM", "f+b ms",
              "ms/head", "ws MiB", "tens MiB", "B/tok/hd");
  for (int64_t N = min_n; N <= max_n; N *= 2) {
    // Keep the run to a few minutes: fewer heads at the largest sizes.
    const int64_t Hh = N >= 32768 ? std::max<int64_t>(1, heads / 4 * (N >= 65536 ? 1 : 2))
                                  : heads;
    for (const bool use_bf16 : {false, true}) {
      Buffers b(N, Hh, d, use_bf16);
      const double per = 1e-9 * static_cast<double>(N) * N * d * Hh;
      const double min_s = N >= 16384 ? 0.0 : 0.5;
      const double tf = time_it([&] { flash_attention_forward(b.a); }, min_s);
      const double tb = time_it([&] { flash_attention_backward(b.a); }, min_s);
      const double fb = 14 * per / (tf + tb);
      const double g = gemm_rate(use_bf16);
      std::printf("%7lld %3lld | %-4s | %9.1f %9.1f %9.1f | %9.1f %5.0f%% | %9.1f %9.2f | %8.1f "
                  "%8.1f %8.0f\n",
                  static_cast<long long>(N), static_cast<long long>(Hh), use_bf16 ? "bf16" : "fp32",
                  4 * per / tf, 10 * per / tb, fb, g, 100.0 * fb / g, 1e3 * (tf + tb),
                  1e3 * (tf + tb) / Hh, b.ws.size() / 1048576.0, b.tensor_bytes / 1048576.0,
                  static_cast<double>(b.ws.size() + b.tensor_bytes) / static_cast<double>(N * Hh));
      std::fflush(stdout);
    }
  }
  std::printf("\n%%GEMM: fwd+bwd rate over the same-precision GEMM rate. ws = "
              "flash_attention_workspace_bytes(threads); tens = q, k, v, o, dO, dq, dk, dv, lse; "
              "B/tok/hd = (ws + tens) / (N * Hh), constant in N = memory linear in N.\n");
  return 0;
}
