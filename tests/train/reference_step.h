// The single-process reference of the model-level MPI tests: the weights of seed 11, the
// synthetic batch of step 3, one forward (loss, pred) and backward (every gradient).
#pragma once

#include <vector>

#include "model/climax.h"
#include "train/synthetic_batch.h"

namespace seqvit_test {

struct ReferenceStep {
  ReferenceStep(const seqvit::model::ModelConfig& c, int64_t B, seqvit::model::Precision prec)
      : data(c, B), batch(data.batch(3)) {
    seqvit::model::ClimaX ref(c);
    const int64_t n = ref.params().total();
    params.assign(static_cast<size_t>(n), 0.f);
    grads.assign(static_cast<size_t>(n), 0.f);
    pred.assign(static_cast<size_t>(B * c.Vo() * c.img_h * c.img_w), 0.f);
    ref.init(params.data(), 11);
    ref.plan(B, prec);
    ref.sync_weights(params.data());
    loss = ref.forward(params.data(), batch, pred.data());
    ref.backward(params.data(), grads.data());
  }

  SyntheticBatch data;
  seqvit::model::BatchView batch;
  std::vector<float> params, grads, pred;  // [table.total()], the same, [B, Vo, H, W]
  double loss = 0;
};

}  // namespace seqvit_test
