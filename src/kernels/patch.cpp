// Patch (de)composition of images. Hp = H/p, Wp = W/p, Lp = Hp Wp; patch l = ph Wp + pw.
//   variable-major:  x[B,V,H,W] <-> patches[B,V,Lp,p*p],  within a patch (p_row, p_col);
//   channels-last:   img[B,V,H,W] <-> tok[B,Lp,p*p*V],    within a patch (p_row, p_col, v).
// Each pair is a permutation, so the inverse is also the adjoint. Pure data movement:
// parallel over (image, patch row) with contiguous p-wide copies where the layout allows.
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "kernels/simd.h"

namespace seqvit::kernels {
namespace {
using namespace detail;

void check_geometry(const char* fn, int64_t B, int64_t V, int64_t H, int64_t W, int64_t p) {
  SEQVIT_CHECK(B >= 0 && V >= 0 && H >= 0 && W >= 0, "{}: bad shape B={} V={} H={} W={}", fn,
               B, V, H, W);
  SEQVIT_CHECK(p > 0 && H % p == 0 && W % p == 0,
               "{}: patch size p={} must be positive and divide H={} and W={}", fn, p, H, W);
}

// Variable-major: to_patches selects the direction. One job = one (b, v, patch row).
void vmajor(const float* src, float* dst, int64_t B, int64_t V, int64_t H, int64_t W, int64_t p,
            bool to_patches) {
  const int64_t Hp = H / p, Wp = W / p, P2 = p * p;
  const size_t row_bytes = static_cast<size_t>(p) * sizeof(float);
  parallel_rows(B * V * Hp, p * W, [&](int64_t job) {
    const int64_t bv = job / Hp, ph = job % Hp;
    const int64_t img0 = bv * H * W, pat0 = bv * Hp * Wp * P2;
    for (int64_t pw = 0; pw < Wp; ++pw) {
      const int64_t l = ph * Wp + pw;
      for (int64_t r = 0; r < p; ++r) {
        const int64_t xi = img0 + (ph * p + r) * W + pw * p;  // x[bv, ph p + r, pw p ...]
        const int64_t pi = pat0 + l * P2 + r * p;            // patches[bv, l, r, 0...]
        if (to_patches)
          std::memcpy(dst + pi, src + xi, row_bytes);
        else
          std::memcpy(dst + xi, src + pi, row_bytes);
      }
    }
  });
}

// Channels-last: one job = one (b, patch row). tok[b, l, (r p + c) V + v] = img[b, v, ph p + r,
// pw p + c].
void channels_last(const float* img_in, float* img_out, const float* tok_in, float* tok_out,
                   int64_t B, int64_t V, int64_t H, int64_t W, int64_t p) {
  const int64_t Hp = H / p, Wp = W / p, E = p * p * V;
  parallel_rows(B * Hp, p * W * V, [&](int64_t job) {
    const int64_t b = job / Hp, ph = job % Hp;
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t r = 0; r < p; ++r) {
        const int64_t irow = ((b * V + v) * H + ph * p + r) * W;
        for (int64_t pw = 0; pw < Wp; ++pw) {
          const int64_t t0 = (b * Hp * Wp + ph * Wp + pw) * E + r * p * V + v;
          const int64_t i0 = irow + pw * p;
          if (tok_out) {
            for (int64_t c = 0; c < p; ++c) tok_out[t0 + c * V] = img_in[i0 + c];
          } else {
            for (int64_t c = 0; c < p; ++c) img_out[i0 + c] = tok_in[t0 + c * V];
          }
        }
      }
    }
  });
}

}  // namespace

void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H, int64_t W,
              int64_t p) {
  check_geometry("patchify", B, V, H, W, p);
  vmajor(x, patches, B, V, H, W, p, true);
}

void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                       int64_t W, int64_t p) {
  check_geometry("unpatchify_vmajor", B, V, H, W, p);
  vmajor(patches, x, B, V, H, W, p, false);
}

void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V, int64_t H,
                              int64_t W, int64_t p) {
  check_geometry("unpatchify_channels_last", B, V, H, W, p);
  channels_last(nullptr, img, tok, nullptr, B, V, H, W, p);
}

void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V, int64_t H,
                            int64_t W, int64_t p) {
  check_geometry("patchify_channels_last", B, V, H, W, p);
  channels_last(img, nullptr, nullptr, tok, B, V, H, W, p);
}

}  // namespace seqvit::kernels
