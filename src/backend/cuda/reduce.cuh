// Reductions of the CUDA ops. All of them are deterministic (fixed trees, no atomics) except
// where a kernel ends in one atomicAdd per block (the losses, sum_squares; docs/cuda.md):
//   warp_sum / warp_max  butterfly over the 32 lanes, every lane gets the result;
//   block_sum            warps, then the warp partials in warp 0 (result in warp 0);
//   column_reduce        per-column sums of a [T, F] matrix for T up to 10^6 and more without
//                        scratch: one block per tile of TX columns, its TY = 1024 / TX thread
//                        rows stride over the T rows accumulating in double, then a fixed
//                        shared-memory tree over the thread rows; an epilogue per column.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/launch.cuh"

namespace seqvit::backend::cuda::detail {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// fmaxf drops a NaN operand; a NaN in a softmax row still reaches every output through exp.
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The sum over a 1-D block (blockDim.x a multiple of 32, at most 1024); valid in warp 0. Call at
// most once per kernel (its shared array is not re-synchronised for a second use).
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  T r = T(0);
  if (warp == 0) {
    r = lane < static_cast<int>(blockDim.x >> 5) ? part[lane] : T(0);
    r = warp_sum(r);
  }
  return r;
}

// Column sums of NV quantities over the rows of a [T, F] matrix. value(t, f, acc) adds row t's
// contributions to column f into acc[0..NV) (double); epilogue(f, sums) consumes the totals.
// Block (TX, TY): thread (x, y) takes column tile * TX + x and rows y, y + TY, ...; a warp reads
// 32 / TX rows of TX consecutive floats (whole 32-byte sectors for TX >= 8).
template <int TX, int NV, typename Value, typename Epilogue>
__global__ void __launch_bounds__(1024)
    column_reduce_kernel(int64_t T, int64_t F, Value value, Epilogue epilogue) {
  constexpr int TY = 1024 / TX;
  __shared__ double sh[NV][TY][TX];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t tile = blockIdx.x; tile * TX < F; tile += gridDim.x) {
    const int64_t f = tile * TX + tx;
    double acc[NV];
#pragma unroll
    for (int k = 0; k < NV; ++k) acc[k] = 0.0;
    if (f < F) {
#pragma unroll 4
      for (int64_t t = ty; t < T; t += TY) value(t, f, acc);
    }
#pragma unroll
    for (int k = 0; k < NV; ++k) sh[k][ty][tx] = acc[k];
    __syncthreads();
    for (int s = TY / 2; s > 0; s >>= 1) {
      if (ty < s) {
#pragma unroll
        for (int k = 0; k < NV; ++k) sh[k][ty][tx] += sh[k][ty + s][tx];
      }
      __syncthreads();
    }
    if (ty == 0 && f < F) {
      double sums[NV];
#pragma unroll
      for (int k = 0; k < NV; ++k) sums[k] = sh[k][0][tx];
      epilogue(f, sums);
    }
    __syncthreads();  // sh is rewritten by the next tile
  }
}

// Launches column_reduce_kernel with the widest tile that still gives ~256 blocks (two per SM
// of an H100), so narrow matrices (F = 1024) still spread over the GPU: TX = 32 from F = 8192,
// 16 from F = 2048, else 8. Requires F > 0; T may be 0 (every sum is then 0).
// The caller checks the launch (SEQVIT_CUDA_LAUNCHED).
template <int NV, typename Value, typename Epilogue>
void column_reduce(int64_t T, int64_t F, Value value, Epilogue epilogue,
                          cudaStream_t stream) {
  if (F >= 8192)
    column_reduce_kernel<32, NV><<<grid_for(F, 32), dim3(32, 32), 0, stream>>>(T, F, value,
                                                                               epilogue);
  else if (F >= 2048)
    column_reduce_kernel<16, NV><<<grid_for(F, 16), dim3(16, 64), 0, stream>>>(T, F, value,
                                                                               epilogue);
  else
    column_reduce_kernel<8, NV><<<grid_for(F, 8), dim3(8, 128), 0, stream>>>(T, F, value,
                                                                             epilogue);
}

}  // namespace seqvit::backend::cuda::detail
