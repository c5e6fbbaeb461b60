// Row-wise kernels of the CUDA backend (ops.h): LayerNorm forward and backward, softmax forward
// (with the log-sum-exp) and backward. CPU twins: kernels/layernorm.cpp, kernels/softmax.cpp.
//
// One warp per row (grid-stride over rows): lanes stride over the row's columns (coalesced),
// row sums are fp32 per lane then a warp butterfly, as the CPU sums rows in fp32 vector lanes.
// The passes over a row re-read it from L1/L2. LayerNorm's dgamma/dbeta are column sums over
// all T rows in double (reduce.cuh column_reduce: deterministic, no atomics, no scratch).
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

constexpr int kRowsPerBlock = kBlock / 32;

unsigned row_grid(int64_t T) { return grid_for(T, kRowsPerBlock); }

// ------------------------------------------------------------------ LayerNorm
// x[T, D] -> y[T, D] (y may alias x), mean[T], rstd[T]. Two-pass variance as the CPU.
__global__ void layernorm_forward_kernel(const float* x, const float* __restrict__ gamma,
                                         const float* __restrict__ beta, float* y,
                                         float* __restrict__ mean, float* __restrict__ rstd,
                                         int64_t T, int64_t D, float eps) {
  const int lane = threadIdx.x & 31;
  for (int64_t t = warp_index(); t < T; t += warp_count()) {
    const float* xr = x + t * D;
    float* yr = y + t * D;
    float s = 0.0f;
    for (int64_t i = lane; i < D; i += 32) s += xr[i];
    const float mu = warp_sum(s) / static_cast<float>(D);
    float ss = 0.0f;
    for (int64_t i = lane; i < D; i += 32) {
      const float c = xr[i] - mu;
      ss += c * c;
    }
    const float r = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(D) + eps);
    for (int64_t i = lane; i < D; i += 32) yr[i] = (xr[i] - mu) * r * gamma[i] + beta[i];
    if (lane == 0) {
      mean[t] = mu;
      rstd[t] = r;
    }
  }
}

// dx[T, D] = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma (or += with accumulate).
// dx may alias dy: each lane reads dy[i] before it writes dx[i], and the passes are separated
// by the warp reductions.
__global__ void layernorm_backward_dx_kernel(const float* dy, const float* __restrict__ x,
                                             const float* __restrict__ gamma,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ rstd, float* dx, int64_t T,
                                             int64_t D, bool accumulate_dx) {
  const int lane = threadIdx.x & 31;
  for (int64_t t = warp_index(); t < T; t += warp_count()) {
    const float* dyr = dy + t * D;
    const float* xr = x + t * D;
    float* dxr = dx + t * D;
    const float mu = mean[t], r = rstd[t];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t i = lane; i < D; i += 32) {
      const float xhat = (xr[i] - mu) * r;
      const float g = dyr[i] * gamma[i];
      sum_g += g;
      sum_gx += g * xhat;
    }
    const float mg = warp_sum(sum_g) / static_cast<float>(D);
    const float mgx = warp_sum(sum_gx) / static_cast<float>(D);
    for (int64_t i = lane; i < D; i += 32) {
      const float v = r * (dyr[i] * gamma[i] - mg - (xr[i] - mu) * r * mgx);
      dxr[i] = accumulate_dx ? dxr[i] + v : v;
    }
  }
}

// dgamma[f] += sum_t dy xhat, dbeta[f] += sum_t dy: the CPU's per-element fp32 product, summed in
// double.
struct LayerNormParamValue {
  const float* dy;
  const float* x;
  const float* mean;
  const float* rstd;
  int64_t D;
  __device__ void operator()(int64_t t, int64_t f, double* acc) const {
    const int64_t i = t * D + f;
    const float g = dy[i];
    const float xhat = (x[i] - mean[t]) * rstd[t];
    acc[0] += static_cast<double>(g * xhat);
    acc[1] += static_cast<double>(g);
  }
};
struct LayerNormParamEpilogue {
  float* dgamma;
  float* dbeta;
  __device__ void operator()(int64_t f, const double* s) const {
    dgamma[f] += static_cast<float>(s[0]);
    dbeta[f] += static_cast<float>(s[1]);
  }
};

// ------------------------------------------------------------------ softmax
// y[T, F] (may alias x) = exp(x - max) / sum, lse[T] (optional) = max + log(sum).
__global__ void softmax_forward_kernel(const float* x, float* y, float* __restrict__ lse,
                                       int64_t T, int64_t F) {
  const int lane = threadIdx.x & 31;
  for (int64_t t = warp_index(); t < T; t += warp_count()) {
    const float* xr = x + t * F;
    float* yr = y + t * F;
    float m = -INFINITY;
    for (int64_t f = lane; f < F; f += 32) m = fmaxf(m, xr[f]);
    m = warp_max(m);
    float s = 0.0f;
    for (int64_t f = lane; f < F; f += 32) {
      const float e = expf(xr[f] - m);
      yr[f] = e;
      s += e;
    }
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int64_t f = lane; f < F; f += 32) yr[f] *= inv;
    if (lse && lane == 0) lse[t] = m + logf(s);
  }
}

// dx[T, F] (may alias dy) = y (dy - sum_f dy y).
__global__ void softmax_backward_kernel(const float* __restrict__ y, const float* dy, float* dx,
                                        int64_t T, int64_t F) {
  const int lane = threadIdx.x & 31;
  for (int64_t t = warp_index(); t < T; t += warp_count()) {
    const float* yr = y + t * F;
    const float* dyr = dy + t * F;
    float* dxr = dx + t * F;
    float s = 0.0f;
    for (int64_t f = lane; f < F; f += 32) s += dyr[f] * yr[f];
    s = warp_sum(s);
    for (int64_t f = lane; f < F; f += 32) dxr[f] = yr[f] * (dyr[f] - s);
  }
}

}  // namespace

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t T, int64_t D, float eps,
                       cudaStream_t stream) {
  const char* op = "layernorm_forward";
  SEQVIT_CUDA_REQUIRE(T >= 0 && D > 0, op, "T must be >= 0 and D > 0", "T,D", T, D);
  SEQVIT_CUDA_REQUIRE(eps >= 0.0f, op, "eps must be >= 0", "T,D", T, D);
  if (T == 0) return;
  layernorm_forward_kernel<<<row_grid(T), kBlock, 0, stream>>>(x, gamma, beta, y, mean, rstd, T,
                                                               D, eps);
  SEQVIT_CUDA_LAUNCHED(op, "T,D", T, D);
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                        const float* rstd, float* dx, float* dgamma, float* dbeta, int64_t T,
                        int64_t D, bool accumulate_dx, cudaStream_t stream) {
  const char* op = "layernorm_backward";
  SEQVIT_CUDA_REQUIRE(T >= 0 && D > 0, op, "T must be >= 0 and D > 0", "T,D", T, D);
  if (T == 0) return;
  // The parameter gradients first: they read dy, which dx may overwrite.
  column_reduce<2>(T, D, LayerNormParamValue{dy, x, mean, rstd, D},
                   LayerNormParamEpilogue{dgamma, dbeta}, stream);
  SEQVIT_CUDA_LAUNCHED(op, "T,D", T, D);
  layernorm_backward_dx_kernel<<<row_grid(T), kBlock, 0, stream>>>(dy, x, gamma, mean, rstd, dx,
                                                                   T, D, accumulate_dx);
  SEQVIT_CUDA_LAUNCHED(op, "T,D", T, D);
}

void softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse,
                     cudaStream_t stream) {
  const char* op = "softmax_forward";
  SEQVIT_CUDA_REQUIRE(T >= 0 && F > 0, op, "T must be >= 0 and F > 0", "T,F", T, F);
  if (T == 0) return;
  softmax_forward_kernel<<<row_grid(T), kBlock, 0, stream>>>(x, y, lse, T, F);
  SEQVIT_CUDA_LAUNCHED(op, "T,F", T, F);
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t T, int64_t F,
                      cudaStream_t stream) {
  const char* op = "softmax_backward";
  SEQVIT_CUDA_REQUIRE(T >= 0 && F > 0, op, "T must be >= 0 and F > 0", "T,F", T, F);
  if (T == 0) return;
  softmax_backward_kernel<<<row_grid(T), kBlock, 0, stream>>>(y, dy, dx, T, F);
  SEQVIT_CUDA_LAUNCHED(op, "T,F", T, F);
}

}  // namespace seqvit::backend::cuda
