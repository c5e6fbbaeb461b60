// AdamW with ClimaX's parameter groups, gradient-norm clipping and the learning-rate schedule
// (linear warm-up, then cosine decay). State (m, v) mirrors the parameter table: one buffer each,
// in device memory; the update is the backend's multi-tensor AdamW (one call per step, clipping
// folded in), and the gradient norm its sum of squares (the step's one read of a value).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/device.h"
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
  // With a range [begin, end) of the flat buffer (ZeRO, train/zero.h) the optimizer keeps the
  // moments of that range only and updates only it; end < 0: the whole table. A range may cut
  // through tensors: weight decay is decided per tensor (decays()) for each piece.
  // Parameters, gradients and the moments are memory of `device`.
  AdamW(const TensorTable& table, const OptimConfig& cfg, int64_t begin = 0, int64_t end = -1,
        backend::Device& device = backend::cpu());
  // Clips (when configured) and applies one update to params using grads (full table layout,
  // only the range is read and written). Returns the global gradient norm before clipping.
  // `step` counts completed updates (0-based schedule index).
  double step(float* params, float* grads);
  // The two halves of step() for sharded gradients: the sum of squares of the range's
  // gradients, and the update with the GLOBAL norm (sqrt of the sum over the shards). p and g
  // point at the range's first element (p[0] is params[begin]).
  double range_sum_squares(const float* g) const;
  void update(float* p, float* g, double global_norm);
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  int64_t steps_done() const { return step_; }
  void set_steps_done(int64_t s) { step_ = s; }
  float* m() { return m_.as<float>(); }  // [end - begin], device: m()[k] is element begin + k's
  float* v() { return v_.as<float>(); }
  // Host copies of the moments (checkpoints): [end - begin] floats each.
  void read_moments(float* m, float* v) const;
  void write_moments(const float* m, const float* v);
  backend::Device& device() const { return dev_; }
  const OptimConfig& config() const { return cfg_; }
  size_t state_bytes() const { return m_.bytes() + v_.bytes(); }
  double last_lr() const { return last_lr_; }
  // Where this rank holds only part of the parameters (pipeline stages), `f` sums the
  // gradient's sum of squares over the parts so that clipping uses the global norm.
  void set_sum_squares(std::function<double(double)> f) { sum_squares_ = std::move(f); }

 private:
  const TensorTable& table_;
  OptimConfig cfg_;
  int64_t begin_ = 0, end_ = 0;
  backend::Device& dev_;
  backend::Allocation m_, v_;  // [end - begin]
  backend::Allocation norm_;   // [1] double: the sum of squares read back
  std::vector<backend::AdamSegment> segments_;  // the range's tensor pieces, from begin_
  std::vector<int64_t> ranges_;                 // the same as (first, count) pairs
  int64_t step_ = 0;
  double last_lr_ = 0;
  std::function<double(double)> sum_squares_;
};

}  // namespace seqvit::train
