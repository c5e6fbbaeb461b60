// Shared by the trainer tests: a small ClimaX configuration and batches drawn from the
// built-in synthetic fields (data/synthetic.h), deterministic from the step index.
#pragma once

#include <cstdint>
#include <vector>

#include "data/synthetic.h"
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

// Batch memory for B samples; batch(step) fills it with samples step*B .. step*B + B-1.
class SyntheticBatch {
 public:
  SyntheticBatch(const seqvit::model::ModelConfig& c, int64_t B)
      : c_(c),
        f_(seqvit::data::SyntheticSpec{c.img_h, c.img_w, c.variables, c.out_variables, {6, 24},
                                       4, 3}),
        B_(B),
        x_(B * c.V() * c.img_h * c.img_w),
        y_(B * c.Vo() * c.img_h * c.img_w),
        lt_(B) {}
  seqvit::model::BatchView batch(uint64_t step) {
    const int64_t HW = c_.img_h * c_.img_w;
    for (int64_t s = 0; s < B_; ++s)
      f_.sample(step * B_ + s, x_.data() + s * c_.V() * HW, y_.data() + s * c_.Vo() * HW,
                lt_.data() + s);
    return {B_, x_.data(), y_.data(), lt_.data(), f_.lat().data()};
  }
  std::vector<float>& x() { return x_; }  // to inject bad values after batch()

 private:
  seqvit::model::ModelConfig c_;
  seqvit::data::SyntheticFields f_;
  int64_t B_;
  std::vector<float> x_, y_, lt_;
};

}  // namespace seqvit_test
