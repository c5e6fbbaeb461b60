// The CPU backend's dropout and drop-path (backend/device.h, DropoutArgs): the keep mask is
// recomputed from the counter-based hash of each element's single-process index, so the
// backward (the same call on dy) needs nothing saved and every backend draws the same mask.
#include <omp.h>

#include "backend/cpu/cpu_device.h"
#include "core/check.h"

namespace seqvit::backend {

void CpuDevice::dropout(const DropoutArgs& a) {
  SEQVIT_CHECK(a.p >= 0.f && a.p < 1.f, "dropout: drop probability {} is outside [0, 1)", a.p);
  SEQVIT_CHECK(a.B >= 0 && a.Nl >= 0 && a.C >= 0 && a.s0 >= 0 &&
                   (a.per_sample || (a.n0 >= 0 && a.n0 + a.Nl <= a.N && a.c0 >= 0 &&
                                     a.c0 + a.C <= a.Ctot)),
               "dropout: tokens [{}, {}) of {} and columns [{}, {}) of {} do not fit", a.n0,
               a.n0 + a.Nl, a.N, a.c0, a.c0 + a.C, a.Ctot);
  exec([=, this] {
    const char* op = "dropout";
    const int64_t n = a.B * a.Nl * a.C;
    const float* x = tr(a.x, n, op);
    float* y = tr(a.y, n, op);
    const uint64_t key = dropout_key(a.seed, a.step, a.site), thr = dropout_threshold(a.p);
    const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.p)));
    const int64_t rows = a.B * a.Nl;
  #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t s = r / a.Nl, j = r % a.Nl;
      const float* xr = x + r * a.C;
      float* yr = y + r * a.C;
      if (a.per_sample) {
        const float f = dropout_keep(key, static_cast<uint64_t>(a.s0 + s), thr) ? scale : 0.f;
        for (int64_t c = 0; c < a.C; ++c) yr[c] = xr[c] * f;
        continue;
      }
      const uint64_t id0 =
          static_cast<uint64_t>(((a.s0 + s) * a.N + a.n0 + j) * a.Ctot + a.c0);
      for (int64_t c = 0; c < a.C; ++c)
        yr[c] = dropout_keep(key, id0 + static_cast<uint64_t>(c), thr) ? xr[c] * scale : 0.f;
    }
  });
}

}  // namespace seqvit::backend
