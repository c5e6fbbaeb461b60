// Launch shapes of the CUDA ops (ops.h): grid-stride loops over int64 extents with a capped
// grid, so any n works with one launch and the grid never exceeds what keeps the GPU busy.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace seqvit::backend::cuda::detail {

constexpr int kBlock = 256;             // threads per block of the 1-D kernels
constexpr int64_t kMaxBlocks = 4096;    // grid cap: ~15 resident blocks per SM of an H100 (132)
constexpr int64_t kReduceBlocks = 1024; // grid cap of the kernels that end in an atomicAdd
constexpr unsigned kMultiTensorBlocks = 1024;  // grid of the multi-tensor kernels (sum_squares,
                                               // adamw): enough threads to fill an H100

// Blocks for `work` items at `per_block` items per block, at least 1, at most `cap`.
inline unsigned grid_for(int64_t work, int64_t per_block = kBlock, int64_t cap = kMaxBlocks) {
  const int64_t b = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, cap));
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}
// Warps: one per row in the row kernels.
__device__ __forceinline__ int64_t warp_index() { return thread_index() >> 5; }
__device__ __forceinline__ int64_t warp_count() { return thread_count() >> 5; }

// The index arithmetic of the permutation kernels (patches, block copies) in 32 bits when every
// index fits (integer division is several times cheaper), else in 64: fn(int32_t{}) or
// fn(int64_t{}) chooses the kernel instantiation. extent: the element count (every index is
// below it).
template <typename Fn>
void with_index_type(int64_t extent, Fn&& fn) {
  if (extent <= INT32_MAX)
    fn(int32_t{});
  else
    fn(int64_t{});
}

// Multi-tensor work split without a host-side plan: the ranges of a DEVICE table (range(k)
// returns {first, count} of entry k) are cut into chunks of `chunk` elements, numbered in table
// order, and chunk g goes to block g mod gridDim.x. Every block walks the whole table (uniform,
// cached loads), so the grid size need not know the total. body(k, begin, end) runs once per
// chunk with the element range [begin, end) of entry k. Returns whether this block got a chunk.
struct Range64 {
  int64_t first, count;
};
template <typename RangeOf, typename Body>
__device__ bool for_each_block_chunk(int64_t entries, int64_t chunk, RangeOf range_of, Body body) {
  const int64_t G = gridDim.x, b = blockIdx.x;
  int64_t base = 0;  // chunks of the entries before k
  bool any = false;
  for (int64_t k = 0; k < entries; ++k) {
    const Range64 r = range_of(k);
    if (r.count <= 0) continue;
    const int64_t nch = (r.count + chunk - 1) / chunk;
    const int64_t rem = base % G;
    for (int64_t g = base + (b >= rem ? b - rem : b + G - rem); g < base + nch; g += G) {
      const int64_t begin = r.first + (g - base) * chunk;
      const int64_t end = r.first + r.count;
      body(k, begin, begin + chunk < end ? begin + chunk : end);
      any = true;
    }
    base += nch;
  }
  return any;
}

}  // namespace seqvit::backend::cuda::detail
