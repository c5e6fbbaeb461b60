// Shared by the model tests and the layers above: a small ClimaX configuration, and batches of
// deterministic random fields (the model tests sit below data/, so they cannot draw the
// synthetic fields of data/synthetic.h; tests/train/synthetic_batch.h does).
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/climax.h"

namespace seqvit_test {

// 8x16 grid, patch 2 (32 patches), D=32, 2 heads, 2 blocks, 3 variables -> t2m, z_500.
inline seqvit::model::ModelConfig tiny_config(
    seqvit::model::Tokenization tok = seqvit::model::Tokenization::Aggregate) {
  seqvit::model::ModelConfig c;
  c.img_h = 8;
  c.img_w = 16;
  c.patch_size = 2;
  c.embed_dim = 32;
  c.num_heads = 2;
  c.depth = 2;
  c.decoder_depth = 1;
  c.variables = {"t2m", "z_500", "u10"};
  c.out_variables = {"t2m", "z_500"};
  c.tokenization = tok;
  return c;
}

// B samples of normal(0, 1) inputs, targets = inputs of the output variables plus noise, lead
// times 6 or 24 h, on the equiangular latitudes of the grid; batch(k) is deterministic in k.
class RandomBatch {
 public:
  RandomBatch(const seqvit::model::ModelConfig& c, int64_t B)
      : c_(c), B_(B), x_(B * c.V() * c.img_h * c.img_w), y_(B * c.Vo() * c.img_h * c.img_w),
        lt_(B), lat_(c.img_h) {
    for (int64_t i = 0; i < c.img_h; ++i)
      lat_[i] = static_cast<float>(-90.0 + 180.0 * (i + 0.5) / static_cast<double>(c.img_h));
  }
  seqvit::model::BatchView batch(uint64_t k) {
    seqvit::Rng rng(1000 + k);
    const int64_t HW = c_.img_h * c_.img_w;
    const auto oi = c_.out_index();
    for (auto& v : x_) v = static_cast<float>(rng.normal());
    for (int64_t s = 0; s < B_; ++s)
      for (int64_t o = 0; o < c_.Vo(); ++o)
        for (int64_t i = 0; i < HW; ++i)
          y_[(s * c_.Vo() + o) * HW + i] =
              x_[(s * c_.V() + oi[o]) * HW + i] + 0.3f * static_cast<float>(rng.normal());
    for (int64_t s = 0; s < B_; ++s) lt_[s] = (s + static_cast<int64_t>(k)) % 2 ? 24.f : 6.f;
    return {B_, x_.data(), y_.data(), lt_.data(), lat_.data()};
  }

 private:
  seqvit::model::ModelConfig c_;
  int64_t B_;
  std::vector<float> x_, y_, lt_, lat_;
};

}  // namespace seqvit_test
