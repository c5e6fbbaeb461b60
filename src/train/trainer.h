// The single-process training step: parameters, gradients and optimizer state each in one
// allocation laid out by the model's parameter table; activations planned once; a step is
// zero-grad, forward, backward, clip, AdamW, bf16 weight refresh — nothing allocates inside it.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor_table.h"
#include "model/climax.h"
#include "train/optimizer.h"

namespace seqvit::train {

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0;
};

class Trainer {
 public:
  Trainer(const model::ModelConfig& mcfg, const OptimConfig& ocfg, int64_t batch,
          model::Precision precision, uint64_t seed);

  model::ClimaX& model() { return model_; }
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  AdamW& optimizer() { return opt_; }
  int64_t batch() const { return batch_; }

  // Call after changing params() by hand (e.g. loading a checkpoint).
  void params_changed() { model_.sync_weights(params_.data()); }
  // One optimizer step on a batch. Throws seqvit::Error if the loss is NaN/Inf (weights are left
  // untouched in that case).
  StepResult step(const model::BatchView& batch);
  // Forward + backward only (gradients in grads()); returns the loss.
  double loss_and_grad(const model::BatchView& batch, float* pred = nullptr);

  // A human-readable memory plan: bytes of parameters, gradients, optimizer state,
  // activations and workspace.
  std::string memory_report() const;
  size_t total_bytes() const;

 private:
  model::ClimaX model_;
  Buffer<float> params_, grads_;  // [table.total()]
  AdamW opt_;
  int64_t batch_;
};

std::string human_bytes(double bytes);  // "1.23 GiB"

}  // namespace seqvit::train
