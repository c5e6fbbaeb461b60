// Patch (de)composition kernels of the CUDA backend (ops.h); CPU twin: kernels/patch.cpp.
// Hp = H/p, Wp = W/p, Lp = Hp Wp, patch l = ph Wp + pw:
//   variable-major:  x[B, V, H, W] <-> patches[B, V, Lp, p p],  within a patch (p_row, p_col);
//   channels-last:   img[B, V, H, W] <-> tok[B, Lp, p p V],     within a patch (p_row, p_col, v).
// Each is a permutation: one thread per element of the OUTPUT (grid-stride), so the writes are
// coalesced and the reads gather; the index arithmetic is 32-bit when B V H W < 2^31.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

template <typename I>
struct Geometry {
  I V, H, W, p, Wp, Lp;
};

// patches[bv, l, r, c] = x[bv, ph p + r, pw p + c]
template <typename I>
__global__ void patchify_kernel(const float* __restrict__ x, float* __restrict__ patches,
                                int64_t n, Geometry<I> g) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    I q = static_cast<I>(i);
    const I c = q % g.p;
    q /= g.p;
    const I r = q % g.p;
    q /= g.p;
    const I l = q % g.Lp, bv = q / g.Lp;
    const I ph = l / g.Wp, pw = l % g.Wp;
    patches[i] = x[(bv * g.H + ph * g.p + r) * g.W + pw * g.p + c];
  }
}

// x[bv, y, xc] = patches[bv, (y/p) Wp + xc/p, y%p, xc%p]
template <typename I>
__global__ void unpatchify_vmajor_kernel(const float* __restrict__ patches, float* __restrict__ x,
                                         int64_t n, Geometry<I> g) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    I q = static_cast<I>(i);
    const I xc = q % g.W;
    q /= g.W;
    const I y = q % g.H, bv = q / g.H;
    const I ph = y / g.p, r = y % g.p, pw = xc / g.p, c = xc % g.p;
    x[i] = patches[((bv * g.Lp + ph * g.Wp + pw) * g.p + r) * g.p + c];
  }
}

// img[b, v, y, xc] = tok[b, (y/p) Wp + xc/p, ((y%p) p + xc%p) V + v]
template <typename I>
__global__ void unpatchify_channels_last_kernel(const float* __restrict__ tok,
                                                float* __restrict__ img, int64_t n,
                                                Geometry<I> g) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    I q = static_cast<I>(i);
    const I xc = q % g.W;
    q /= g.W;
    const I y = q % g.H;
    q /= g.H;
    const I v = q % g.V, b = q / g.V;
    const I ph = y / g.p, r = y % g.p, pw = xc / g.p, c = xc % g.p;
    img[i] = tok[((b * g.Lp + ph * g.Wp + pw) * g.p * g.p + r * g.p + c) * g.V + v];
  }
}

// tok[b, l, (r p + c) V + v] = img[b, v, ph p + r, pw p + c]
template <typename I>
__global__ void patchify_channels_last_kernel(const float* __restrict__ img,
                                              float* __restrict__ tok, int64_t n, Geometry<I> g) {
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    I q = static_cast<I>(i);
    const I v = q % g.V;
    q /= g.V;
    const I c = q % g.p;
    q /= g.p;
    const I r = q % g.p;
    q /= g.p;
    const I l = q % g.Lp, b = q / g.Lp;
    const I ph = l / g.Wp, pw = l % g.Wp;
    tok[i] = img[((b * g.V + v) * g.H + ph * g.p + r) * g.W + pw * g.p + c];
  }
}

enum class Kind { Patchify, UnpatchifyVmajor, UnpatchifyChannelsLast, PatchifyChannelsLast };

// Checks the geometry as kernels/patch.cpp does, then launches the kernel of `kind`.
void launch(Kind kind, const char* op, const float* src, float* dst, int64_t B, int64_t V,
            int64_t H, int64_t W, int64_t p, cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(B >= 0 && V >= 0 && H >= 0 && W >= 0, op, "B, V, H and W must be >= 0",
                      "B,V,H,W,p", B, V, H, W, p);
  SEQVIT_CUDA_REQUIRE(p > 0 && H % p == 0 && W % p == 0, op,
                      "the patch size p must be positive and divide H and W", "B,V,H,W,p", B, V,
                      H, W, p);
  const int64_t n = B * V * H * W;
  if (n == 0) return;
  with_index_type(n, [&](auto zero) {
    using I = decltype(zero);
    const int64_t Wp = W / p, Lp = (H / p) * Wp;
    const Geometry<I> g{static_cast<I>(V),  static_cast<I>(H),  static_cast<I>(W),
                        static_cast<I>(p),  static_cast<I>(Wp), static_cast<I>(Lp)};
    const unsigned grid = grid_for(n);
    switch (kind) {
      case Kind::Patchify:
        patchify_kernel<I><<<grid, kBlock, 0, stream>>>(src, dst, n, g);
        break;
      case Kind::UnpatchifyVmajor:
        unpatchify_vmajor_kernel<I><<<grid, kBlock, 0, stream>>>(src, dst, n, g);
        break;
      case Kind::UnpatchifyChannelsLast:
        unpatchify_channels_last_kernel<I><<<grid, kBlock, 0, stream>>>(src, dst, n, g);
        break;
      case Kind::PatchifyChannelsLast:
        patchify_channels_last_kernel<I><<<grid, kBlock, 0, stream>>>(src, dst, n, g);
        break;
    }
  });
  SEQVIT_CUDA_LAUNCHED(op, "B,V,H,W,p", B, V, H, W, p);
}

}  // namespace

void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H, int64_t W,
              int64_t p, cudaStream_t stream) {
  launch(Kind::Patchify, "patchify", x, patches, B, V, H, W, p, stream);
}

void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                       int64_t W, int64_t p, cudaStream_t stream) {
  launch(Kind::UnpatchifyVmajor, "unpatchify_vmajor", patches, x, B, V, H, W, p, stream);
}

void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V, int64_t H,
                              int64_t W, int64_t p, cudaStream_t stream) {
  launch(Kind::UnpatchifyChannelsLast, "unpatchify_channels_last", tok, img, B, V, H, W, p,
         stream);
}

void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V, int64_t H,
                            int64_t W, int64_t p, cudaStream_t stream) {
  launch(Kind::PatchifyChannelsLast, "patchify_channels_last", img, tok, B, V, H, W, p, stream);
}

}  // namespace seqvit::backend::cuda
