// AdamW with ClimaX's parameter groups, gradient-norm clipping and the learning-rate schedule
// (linear warm-up, then cosine decay). State (m, v) mirrors the parameter table: one buffer each.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/tensor_table.h"

namespace seqvit::train {

struct OptimConfig {
  double lr = 5e-4;               // base (peak) learning rate
  double warmup_start_lr = 1e-8;  // lr of step 0
  int64_t warmup_steps = 0;
  int64_t total_steps = 1000;  // cosine reaches min_lr here
  double min_lr = 1e-8;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 1e-5;
  double grad_clip = 0;  // max global gradient norm; 0 = off

  void validate() const;
  std::string to_json() const;
  static OptimConfig from_json(const std::string& json, const std::string& where);
};

// Learning rate for step s (0-based):
//   s < W:  warmup_start_lr + (lr - warmup_start_lr) * s / W
//   else:   min_lr + (lr - min_lr) * (1 + cos(pi * (s - W) / (S - W))) / 2   (s capped at S)
double learning_rate(const OptimConfig& c, int64_t step);

// ClimaX's grouping: no weight decay for names containing "pos_embed" or "var_embed".
bool decays(const std::string& param_name);

class AdamW {
 public:
  AdamW(const TensorTable& table, const OptimConfig& cfg);
  // Clips (when configured) and applies one update to params using grads. Returns the global
  // gradient norm before clipping. `step` counts completed updates (0-based schedule index).
  double step(float* params, float* grads);
  // The squared gradient norm that step() clips by, when the gradients are sharded over ranks
  // (tensor parallelism: a sum over the group of the shards, replicas counted once). Default:
  // the sum of squares of every local entry. Must not allocate.
  void set_sum_squares(std::function<double(const float* grads)> f) { sum_squares_ = std::move(f); }
  int64_t steps_done() const { return step_; }
  void set_steps_done(int64_t s) { step_ = s; }
  float* m() { return m_.data(); }
  float* v() { return v_.data(); }
  const OptimConfig& config() const { return cfg_; }
  size_t state_bytes() const { return m_.bytes() + v_.bytes(); }
  double last_lr() const { return last_lr_; }

 private:
  const TensorTable& table_;
  OptimConfig cfg_;
  Buffer<float> m_, v_;  // [table.total()]
  int64_t step_ = 0;
  double last_lr_ = 0;
  std::function<double(const float*)> sum_squares_;
};

}  // namespace seqvit::train
