// Shared by the trainer tests that compare devices (GuardedTrainerTest, CudaTrainerTest): n
// steps of the tiny model on synthetic batches, with everything a comparison reads back.
#pragma once

#include <vector>

#include "backend/device.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

namespace seqvit_test {

// AdamW with warmup, weight decay and a clipping threshold small enough to clip.
inline seqvit::train::OptimConfig clipping_optim(int warmup_steps, int total_steps) {
  seqvit::train::OptimConfig o;
  o.lr = 2e-3;
  o.warmup_steps = warmup_steps;
  o.total_steps = total_steps;
  o.weight_decay = 0.05;
  o.grad_clip = 0.5;
  return o;
}

struct TrainRun {
  std::vector<seqvit::train::StepResult> steps;
  std::vector<float> params, m, v;  // after the last step, read back to the host
};

inline TrainRun train_steps(seqvit::backend::Device& dev, const seqvit::train::OptimConfig& oc,
                            seqvit::model::Precision prec, seqvit::model::Tokenization tok, int n,
                            const seqvit::model::Dropout& drop = {}) {
  const auto c = tiny_config(tok);
  seqvit::train::Trainer tr(c, oc, 2, prec, 3, {}, dev);
  tr.set_dropout(drop);
  SyntheticBatch d(c, 2);
  TrainRun r;
  for (int s = 0; s < n; ++s) r.steps.push_back(tr.step(d.batch(s)));
  r.params.resize(static_cast<size_t>(tr.model().params().total()));
  tr.read_params(r.params.data());
  r.m.resize(r.params.size());
  r.v.resize(r.params.size());
  tr.optimizer().read_moments(r.m.data(), r.v.data());
  return r;
}

}  // namespace seqvit_test
