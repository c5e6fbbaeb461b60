// Elementwise kernels of the CUDA backend (ops.h): bf16 conversion, bias broadcast and its
// column-sum backward, adds, scaling, the sum of squares over a device table of ranges, and the
// exact-erf GELU. The CPU twins are kernels/elementwise.cpp, kernels/gelu.cpp, core/bf16.h.
// Elementwise loops are grid-stride (int64, capped grid), one coalesced element per thread step.
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

// ------------------------------------------------------------------ bf16
// core/bf16.h to_bf16, bit for bit: NaN keeps its payload's top bits and is made quiet (0x40),
// everything else rounds to nearest even (overflow to inf as the carry dictates).
__device__ __forceinline__ uint16_t to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

__global__ void convert_to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y,
                                       int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) y[i] = to_bf16_bits(x[i]);
}

// ------------------------------------------------------------------ bias
// y[T, F] = b[F]; I is the index type (32 bits when T F fits).
template <typename I>
__global__ void broadcast_rows_kernel(float* __restrict__ y, const float* __restrict__ b,
                                      int64_t n, I F) {
  for (int64_t i = thread_index(); i < n; i += thread_count())
    y[i] = b[static_cast<I>(i) % F];
}

struct BiasValue {  // dy[t, f]
  const float* dy;
  __device__ void operator()(int64_t t, int64_t f, double* acc) const {
    acc[0] += dy[t * F + f];
  }
  int64_t F;
};
struct BiasEpilogue {  // db[f] += the column sum, rounded once as the CPU does
  float* db;
  __device__ void operator()(int64_t f, const double* s) const {
    db[f] += static_cast<float>(s[0]);
  }
};

// ------------------------------------------------------------------ adds and scaling
__global__ void add_inplace_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) y[i] += x[i];
}
__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) y[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* y, float s, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) y[i] *= s;
}

// ------------------------------------------------------------------ sum of squares
// ranges: DEVICE [num_ranges][2] (first, count). Chunks of the ranges are dealt to blocks
// (for_each_block_chunk); each block sums its chunks in double, reduces them in a fixed tree
// and adds the block's total to out[0] (zeroed before the launch) with one atomicAdd.
constexpr int64_t kSumSquaresChunk = 16 * kBlock;

__global__ void sum_squares_kernel(const float* __restrict__ x, const int64_t* __restrict__ ranges,
                                   int64_t num_ranges, double* out) {
  double acc = 0.0;
  const bool any = for_each_block_chunk(
      num_ranges, kSumSquaresChunk,
      [&](int64_t k) { return Range64{ranges[2 * k], ranges[2 * k + 1]}; },
      [&](int64_t, int64_t begin, int64_t end) {
        for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
          const double v = x[i];
          acc += v * v;
        }
      });
  if (!any) return;  // uniform over the block: no thread reaches block_sum's barrier
  const double s = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

// ------------------------------------------------------------------ GELU (exact erf)
// Phi(x) from CUDA's normcdff (erfc-based: full relative accuracy in the negative tail, <= 5 ulp),
// phi(x) = exp(-x^2/2) / sqrt(2 pi) with x^2 split exactly into h + l (FMA), so the large
// exponent loses no precision: exp(-(h + l)/2) = exp(-h/2) (1 - l/2) to ~1e-10 (|l| <= ulp(h)).
// |x| is clamped to 20 as on the CPU (Phi is 0 or 1 there in fp32; x = +-inf stays finite in the
// density term).
constexpr float kClamp = 20.0f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

__device__ __forceinline__ float clamp_x(float x) { return fminf(fmaxf(x, -kClamp), kClamp); }

// y may alias x (same element, same thread): no __restrict__.
__global__ void gelu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const float xi = x[i];
    y[i] = xi * normcdff(clamp_x(xi));  // NaN x: NaN (x * Phi); -inf: NaN as on the CPU
  }
}

// dx may alias dy (same element, same thread): no __restrict__ on those two.
__global__ void gelu_backward_kernel(const float* __restrict__ x, const float* dy, float* dx,
                                     int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const float xi = x[i];
    const float xc = clamp_x(xi);  // fmin/fmax drop a NaN: handled below
    const float h = xc * xc, l = fmaf(xc, xc, -h);
    const float phi = kInvSqrt2Pi * expf(-0.5f * h) * (1.0f - 0.5f * l);
    const float d = isnan(xi) ? xi : normcdff(xc) + xc * phi;
    dx[i] = dy[i] * d;
  }
}

}  // namespace

void convert_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_to_bf16_kernel<<<grid_for(n), kBlock, 0, stream>>>(x, reinterpret_cast<uint16_t*>(y), n);
  SEQVIT_CUDA_LAUNCHED("convert_to_bf16", "n", n);
}

void broadcast_rows(float* y, const float* b, int64_t T, int64_t F, cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(T >= 0 && F >= 0, "broadcast_rows", "T and F must be >= 0", "T,F", T, F);
  const int64_t n = T * F;
  if (n == 0) return;
  with_index_type(n, [&](auto zero) {
    using I = decltype(zero);
    broadcast_rows_kernel<I><<<grid_for(n), kBlock, 0, stream>>>(y, b, n, static_cast<I>(F));
  });
  SEQVIT_CUDA_LAUNCHED("broadcast_rows", "T,F", T, F);
}

void bias_backward(const float* dy, float* db, int64_t T, int64_t F, cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(T >= 0 && F >= 0, "bias_backward", "T and F must be >= 0", "T,F", T, F);
  if (T == 0 || F == 0) return;  // db += 0
  column_reduce<1>(T, F, BiasValue{dy, F}, BiasEpilogue{db}, stream);
  SEQVIT_CUDA_LAUNCHED("bias_backward", "T,F", T, F);
}

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_inplace_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, x, n);
  SEQVIT_CUDA_LAUNCHED("add_inplace", "n", n);
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n), kBlock, 0, stream>>>(a, b, y, n);
  SEQVIT_CUDA_LAUNCHED("add", "n", n);
}

void scale_inplace(float* y, float s, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n), kBlock, 0, stream>>>(y, s, n);
  SEQVIT_CUDA_LAUNCHED("scale_inplace", "n", n);
}

void sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges, double* out,
                 cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(num_ranges >= 0, "sum_squares", "num_ranges must be >= 0", "num_ranges",
                      num_ranges);
  SEQVIT_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream), "sum_squares", "num_ranges",
                    num_ranges);
  if (num_ranges == 0) return;
  sum_squares_kernel<<<kMultiTensorBlocks, kBlock, 0, stream>>>(x, ranges, num_ranges, out);
  SEQVIT_CUDA_LAUNCHED("sum_squares", "num_ranges", num_ranges);
}

void gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(x, y, n);
  SEQVIT_CUDA_LAUNCHED("gelu_forward", "n", n);
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(n), kBlock, 0, stream>>>(x, dy, dx, n);
  SEQVIT_CUDA_LAUNCHED("gelu_backward", "n", n);
}

}  // namespace seqvit::backend::cuda
