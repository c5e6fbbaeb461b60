// Shared by the model's gradient tests (ClimaXGradTest, ClimaXDropoutTest): a small random batch
// on a 4x6 grid, and the check of an analytic gradient against central finite differences of the
// loss at 4 random elements of every parameter tensor.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/climax.h"

namespace seqvit_test {

// 4x6 grid, patch 2, D 32, 2 heads, `depth` blocks, 3 variables -> z_500, t2m; B <= 3 samples.
struct GradFixture {
  seqvit::model::ModelConfig cfg;
  int64_t B;
  std::vector<float> x, y, lt, lat;
  GradFixture(seqvit::model::Tokenization tok, int64_t batch, int64_t depth) : B(batch) {
    cfg.img_h = 4;
    cfg.img_w = 6;
    cfg.patch_size = 2;
    cfg.embed_dim = 32;
    cfg.num_heads = 2;
    cfg.depth = depth;
    cfg.decoder_depth = 1;
    cfg.variables = {"t2m", "z_500", "u10"};
    cfg.out_variables = {"z_500", "t2m"};
    cfg.tokenization = tok;
    seqvit::Rng rng(42);
    const int64_t HW = cfg.img_h * cfg.img_w;
    x.resize(B * cfg.V() * HW);
    y.resize(B * cfg.Vo() * HW);
    for (auto& v : x) v = static_cast<float>(rng.normal());
    for (auto& v : y) v = static_cast<float>(rng.normal());
    lt.assign({6.f, 72.f, 24.f});
    lt.resize(static_cast<size_t>(B));
    lat = {60.f, 20.f, -15.f, -70.f};
  }
  seqvit::model::BatchView view() const {
    return {B, x.data(), y.data(), lt.data(), lat.data()};
  }
};

// G (from m.backward at P) against (loss(P + h e_i) - loss(P - h e_i)) / 2h at 4 elements of
// each tensor drawn from rng, h = 1e-2 max(1, |P_i|): relative error < 2e-2 per tensor. Returns
// how many elements were checked. P is restored.
inline int expect_gradients_match_finite_differences(seqvit::model::ClimaX& m,
                                                     std::vector<float>& P,
                                                     const std::vector<float>& G,
                                                     const seqvit::model::BatchView& batch,
                                                     seqvit::Rng& rng) {
  int checked = 0;
  for (const auto& e : m.params().entries()) {
    double max_err = 0;
    for (int probe = 0; probe < 4; ++probe) {
      const int64_t i = e.offset + static_cast<int64_t>(rng.uniform() * e.numel) % e.numel;
      const float saved = P[i];
      const float h = 1e-2f * std::max(1.0f, std::fabs(saved));
      P[i] = saved + h;
      const double lp = m.forward(P.data(), batch);
      P[i] = saved - h;
      const double lm = m.forward(P.data(), batch);
      P[i] = saved;
      // central difference with the actual (rounded) step; O(h^2) truncation error
      const double fd = (lp - lm) / (2.0 * h);
      const double err = std::fabs(fd - G[i]) / (1e-4 + std::fabs(fd));
      max_err = std::max(max_err, err);
      ++checked;
    }
    EXPECT_LT(max_err, 2e-2) << e.name;
  }
  return checked;
}

}  // namespace seqvit_test
