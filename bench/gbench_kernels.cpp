// Google Benchmark micro-benchmarks of the memory-bound kernels (LayerNorm, GELU, AdamW,
// patchify), reported as bytes/s so they can be read against the machine's copy rate
// (30–50 GB/s here). Each benchmark checks its output is finite before timing.
//   build/bench/gbench_kernels --benchmark_filter=LayerNorm
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "kernels/ops.h"

using namespace seqvit;

namespace {

std::vector<float> random_vector(int64_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(r.normal());
  return v;
}

void check_finite(benchmark::State& state, const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) {
      state.SkipWithError("non-finite output");
      return;
    }
}

void LayerNormForward(benchmark::State& state) {
  const int64_t T = state.range(0), D = state.range(1);
  auto x = random_vector(T * D, 1), g = random_vector(D, 2), b = random_vector(D, 3);
  std::vector<float> y(T * D), mean(T), rstd(T);
  kernels::layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, 1e-5f);
  check_finite(state, y);
  for (auto _ : state) {
    kernels::layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * T * D * 8);  // read x, write y
}

void LayerNormBackward(benchmark::State& state) {
  const int64_t T = state.range(0), D = state.range(1);
  auto x = random_vector(T * D, 1), g = random_vector(D, 2), b = random_vector(D, 3),
       dy = random_vector(T * D, 4);
  std::vector<float> y(T * D), mean(T), rstd(T), dx(T * D), dg(D), db(D);
  kernels::layernorm_forward(x.data(), g.data(), b.data(), y.data(), mean.data(), rstd.data(), T, D, 1e-5f);
  kernels::layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(), dg.data(), db.data(), T, D, false);
  check_finite(state, dx);
  for (auto _ : state) {
    kernels::layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(), dg.data(), db.data(), T, D, false);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetBytesProcessed(state.iterations() * T * D * 12);  // read dy, x; write dx
}

void GeluForward(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto x = random_vector(n, 5);
  std::vector<float> y(n);
  kernels::gelu_forward(x.data(), y.data(), n);
  check_finite(state, y);
  for (auto _ : state) {
    kernels::gelu_forward(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * n * 8);
}

void AdamWStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto p = random_vector(n, 6), g = random_vector(n, 7);
  std::vector<float> m(n), v(n);
  int64_t step = 0;
  for (auto _ : state) {
    kernels::adamw_step(p.data(), g.data(), m.data(), v.data(), n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.05f, ++step);
    benchmark::DoNotOptimize(p.data());
  }
  check_finite(state, p);
  state.SetBytesProcessed(state.iterations() * n * 28);  // read p g m v, write p m v
}

void Patchify(benchmark::State& state) {
  const int64_t B = 2, V = 5, H = 128, W = 256, p = state.range(0);
  auto x = random_vector(B * V * H * W, 8);
  std::vector<float> out(x.size());
  for (auto _ : state) {
    kernels::patchify(x.data(), out.data(), B, V, H, W, p);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.size()) * 8);
}

}  // namespace

BENCHMARK(LayerNormForward)->Args({8192, 256})->Args({65536, 1024})->UseRealTime();
BENCHMARK(LayerNormBackward)->Args({8192, 256})->Args({65536, 1024})->UseRealTime();
BENCHMARK(GeluForward)->Arg(8192 * 1024)->Arg(65536 * 1024)->UseRealTime();
BENCHMARK(AdamWStep)->Arg(1 << 20)->Arg(1 << 24)->UseRealTime();
BENCHMARK(Patchify)->Arg(2)->Arg(4)->UseRealTime();
BENCHMARK_MAIN();
