// The sequence-parallel data movement of the CUDA backend (ops.h): the exact merge of two
// partial attention results by their log-sum-exp, and the strided 3-D block copy the SP
// operators pack and unpack with. CPU twins: backend/cpu/fused.cpp (merge_by_lse, block_copy).
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

// ------------------------------------------------------------------ merge_by_lse
// One warp per row (b, h, t) of [b0, b0 + nb) x [h0, h0 + nh) x [i0, i0 + ni), rows in lse order
// [b][h][t]: every lane reads both lse, lanes stride over the d values of o and o_in, and lane 0
// writes the merged lse after the warp has read it. A row whose two lse are both -inf (no key
// in either range) is left as it is (the CPU's formula gives NaN there).
__global__ void merge_by_lse_kernel(LseMerge m, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t per_b = m.nh * m.ni;
  for (int64_t y = warp_index(); y < rows; y += warp_count()) {
    const int64_t b = m.b0 + y / per_b, h = m.h0 + y % per_b / m.ni, t = m.i0 + y % m.ni;
    const int64_t x = (b * m.Hh + h) * m.Nl + t;
    const float l1 = m.lse[x], l2 = m.lse_in[x], mx = fmaxf(l1, l2);
    if (mx == -INFINITY) continue;  // uniform over the warp
    const float l = mx + log1pf(expf(-fabsf(l1 - l2)));
    const float w1 = expf(l1 - l), w2 = expf(l2 - l);
    float* out = m.o.data + b * m.o.sb + t * m.o.sn + h * m.o.sh;
    const float* in = m.o_in + ((b * m.Nl + t) * m.Hh + h) * m.d;
    for (int64_t c = lane; c < m.d; c += 32) out[c] = w1 * out[c] + w2 * in[c];
    __syncwarp();  // every lane has read lse[x]
    if (lane == 0) m.lse[x] = l;
  }
}

// ------------------------------------------------------------------ block_copy
// One thread per element of the n0 n1 n2 runs (grid-stride): element e of run (i, j, k).
enum class CopyMode { Zero, Copy, Accumulate };

template <CopyMode mode, typename I>
__global__ void block_copy_kernel(BlockCopy c, int64_t total) {
  const I run = static_cast<I>(c.run), n1 = static_cast<I>(c.n1), n2 = static_cast<I>(c.n2);
  for (int64_t idx = thread_index(); idx < total; idx += thread_count()) {
    I q = static_cast<I>(idx) / run;
    const I e = static_cast<I>(idx) - q * run;
    const I k = q % n2;
    q /= n2;
    const I j = q % n1, i = q / n1;
    float* d = c.dst + (static_cast<int64_t>(i) * c.d0 + static_cast<int64_t>(j) * c.d1 +
                        static_cast<int64_t>(k) * c.d2 + e);
    if constexpr (mode == CopyMode::Zero) {
      *d = 0.0f;
    } else {
      const float s = c.src[static_cast<int64_t>(i) * c.s0 + static_cast<int64_t>(j) * c.s1 +
                            static_cast<int64_t>(k) * c.s2 + e];
      if constexpr (mode == CopyMode::Copy)
        *d = s;
      else
        *d += s;
    }
  }
}

}  // namespace

void merge_by_lse(const LseMerge& m, cudaStream_t stream) {
  const char* op = "merge_by_lse";
  SEQVIT_CUDA_REQUIRE(m.nb >= 0 && m.nh >= 0 && m.ni >= 0 && m.d >= 0, op,
                      "nb, nh, ni and d must be >= 0", "nb,nh,ni,d", m.nb, m.nh, m.ni, m.d);
  const int64_t rows = m.nb * m.nh * m.ni;
  if (rows == 0) return;
  merge_by_lse_kernel<<<grid_for(rows, kBlock / 32), kBlock, 0, stream>>>(m, rows);
  SEQVIT_CUDA_LAUNCHED(op, "nb,nh,ni,d", m.nb, m.nh, m.ni, m.d);
}

void block_copy(const BlockCopy& c, cudaStream_t stream) {
  const char* op = "block_copy";
  if (c.n0 <= 0 || c.n1 <= 0 || c.n2 <= 0 || c.run <= 0) return;  // as the CPU: nothing to do
  const int64_t total = c.n0 * c.n1 * c.n2 * c.run;
  const unsigned grid = grid_for(total);
  with_index_type(total, [&](auto zero) {
    using I = decltype(zero);
    if (!c.src)
      block_copy_kernel<CopyMode::Zero, I><<<grid, kBlock, 0, stream>>>(c, total);
    else if (c.accumulate)
      block_copy_kernel<CopyMode::Accumulate, I><<<grid, kBlock, 0, stream>>>(c, total);
    else
      block_copy_kernel<CopyMode::Copy, I><<<grid, kBlock, 0, stream>>>(c, total);
  });
  SEQVIT_CUDA_LAUNCHED(op, "n0,n1,n2,run", c.n0, c.n1, c.n2, c.run);
}

}  // namespace seqvit::backend::cuda
