// Shared by the trainer tests: batches drawn from the built-in synthetic fields
// (data/synthetic.h), deterministic from the step index, for tiny_config (model/model_batch.h).
#pragma once

#include <cstdint>
#include <vector>

#include "data/synthetic.h"
#include "model/climax.h"
#include "model/model_batch.h"  // tiny_config

namespace seqvit_test {

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
