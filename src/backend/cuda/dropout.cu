// Dropout and drop-path of the CUDA backend (ops.h, device.h DropoutArgs): one thread per
// element (grid-stride), the keep decision from the same constexpr hash as the CPU backend
// (backend/cpu/dropout.cpp), so both draw the same mask and write the same values (one fp32
// multiply by the same scale). Nothing is stored: a backward is the same call on dy.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

// x, y [B, Nl, C] (y may be x); element (s, j, c) has id ((s0 + s) N + n0 + j) Ctot + c0 + c,
// or s0 + s with per_sample.
__global__ void dropout_kernel(const float* x, float* y, int64_t Nl, int64_t C, int64_t n,
                               int64_t s0, int64_t N, int64_t n0, int64_t Ctot, int64_t c0,
                               bool per_sample, uint64_t key, uint64_t thr, float scale) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const int64_t r = i / C, c = i - r * C, s = r / Nl, j = r - s * Nl;
    const uint64_t id = per_sample ? static_cast<uint64_t>(s0 + s)
                                   : static_cast<uint64_t>(((s0 + s) * N + n0 + j) * Ctot + c0 + c);
    y[i] = dropout_keep(key, id, thr) ? x[i] * scale : 0.f;
  }
}

}  // namespace

void dropout(const DropoutArgs& a, cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(a.p >= 0.f && a.p < 1.f, "dropout", "the drop probability must be in [0, 1)",
                      "B,Nl,C", a.B, a.Nl, a.C);
  SEQVIT_CUDA_REQUIRE(a.B >= 0 && a.Nl >= 0 && a.C >= 0 && a.s0 >= 0 &&
                          (a.per_sample || (a.n0 >= 0 && a.n0 + a.Nl <= a.N && a.c0 >= 0 &&
                                            a.c0 + a.C <= a.Ctot)),
                      "dropout", "tokens [n0, n0 + Nl) must lie in N and columns [c0, c0 + C) in Ctot",
                      "B,Nl,C,N,n0,Ctot,c0", a.B, a.Nl, a.C, a.N, a.n0, a.Ctot, a.c0);
  const int64_t n = a.B * a.Nl * a.C;
  if (n <= 0) return;
  const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.p)));
  dropout_kernel<<<grid_for(n), kBlock, 0, stream>>>(
      a.x, a.y, a.Nl, a.C, n, a.s0, a.N, a.n0, a.Ctot, a.c0, a.per_sample,
      dropout_key(a.seed, a.step, a.site), dropout_threshold(a.p), scale);
  SEQVIT_CUDA_LAUNCHED("dropout", "n", n);
}

}  // namespace seqvit::backend::cuda
