// Multi-tensor AdamW of the CUDA backend (ops.h), element for element kernels/adamw.cpp (which
// is PyTorch's single-tensor AdamW):
//   g *= grad_scale (stored back; skipped when 1)
//   p *= 1 - lr wd                          (wd = weight_decay where the segment decays, else 0)
//   m  = lerp(m, g, 1 - b1)                 (m + w (g - m) for w < 0.5, else g - (g - m)(1 - w))
//   v  = v b2 + ((1 - b2) g) g
//   p += (-lr / (1 - b1^step)) m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// The scalars are computed on the host in double exactly as the CPU does; the element update
// uses only correctly rounded fp32 operations in the CPU's order, written as _rn intrinsics so
// that nvcc cannot contract them into FMAs: p, m, v and g are bit-identical to the CPU's portable
// path. (Its AVX-512 clone is FMA-contracted by GCC and differs by 1 ulp; docs/cuda.md.)
//
// One launch for every segment: a fixed grid walks the DEVICE segment table, and chunks of
// kAdamChunk elements of the segments go round-robin to the blocks (launch.cuh
// for_each_block_chunk); threads of a block stride over a chunk (coalesced).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

constexpr int64_t kAdamChunk = 16 * kBlock;

struct AdamScalars {
  float decay;      // 1 - lr wd, for the segments that decay (the others use 1)
  float w1, w1c;    // 1 - beta1 (the lerp weight) and 1 - w1
  float beta2, one_minus_beta2;
  float neg_step;   // -lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
  float eps;
  float grad_scale;
};

__global__ void adamw_kernel(AdamArgs a, AdamScalars s) {
  const bool small_w = s.w1 < 0.5f;
  for_each_block_chunk(
      a.num_segments, kAdamChunk,
      [&](int64_t k) {
        const AdamSegment seg = a.segments[k];
        return Range64{seg.first, seg.count};
      },
      [&](int64_t k, int64_t begin, int64_t end) {
        const float decay = a.segments[k].decay ? s.decay : 1.0f;
        for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
          float g = a.g[i];
          if (s.grad_scale != 1.f) {
            g = __fmul_rn(g, s.grad_scale);
            a.g[i] = g;
          }
          const int64_t o = i - a.state_first;
          const float m0 = a.m[o], v0 = a.v[o];
          const float gm = __fsub_rn(g, m0);
          const float mi = small_w ? __fadd_rn(m0, __fmul_rn(s.w1, gm))
                                   : __fsub_rn(g, __fmul_rn(gm, s.w1c));
          const float vi =
              __fadd_rn(__fmul_rn(v0, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
          const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
          a.p[i] = __fadd_rn(__fmul_rn(a.p[i], decay), __fdiv_rn(__fmul_rn(s.neg_step, mi), denom));
          a.m[o] = mi;
          a.v[o] = vi;
        }
      });
}

}  // namespace

void adamw(const AdamArgs& a, cudaStream_t stream) {
  const char* op = "adamw";
  SEQVIT_CUDA_REQUIRE(a.step >= 1, op, "step must be >= 1 (1-based)", "step,num_segments", a.step,
                      a.num_segments);
  SEQVIT_CUDA_REQUIRE(a.beta1 >= 0.0f && a.beta1 < 1.0f && a.beta2 >= 0.0f && a.beta2 < 1.0f, op,
                      "beta1 and beta2 must be in [0, 1)", "step,num_segments", a.step,
                      a.num_segments);
  SEQVIT_CUDA_REQUIRE(a.num_segments >= 0, op, "num_segments must be >= 0", "step,num_segments",
                      a.step, a.num_segments);
  if (a.num_segments == 0) return;
  // The scalars as kernels/adamw.cpp adamw_step computes them.
  const double lr = a.lr, b1 = a.beta1, b2 = a.beta2, step = static_cast<double>(a.step);
  AdamScalars s;
  s.decay = static_cast<float>(1.0 - lr * a.weight_decay);
  s.w1 = static_cast<float>(1.0 - b1);
  s.w1c = 1.0f - s.w1;
  s.beta2 = a.beta2;
  s.one_minus_beta2 = static_cast<float>(1.0 - b2);
  s.neg_step = static_cast<float>(-(lr / (1.0 - std::pow(b1, step))));
  s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(b2, step)));
  s.eps = a.eps;
  s.grad_scale = a.grad_scale;
  adamw_kernel<<<kMultiTensorBlocks, kBlock, 0, stream>>>(a, s);
  SEQVIT_CUDA_LAUNCHED(op, "step,num_segments", a.step, a.num_segments);
}

}  // namespace seqvit::backend::cuda
