// The single-process training step: parameters, gradients and optimizer state each in one
// allocation of device memory laid out by the model's parameter table; activations planned
// once; a step is batch upload, zero-grad, forward, backward, clip, AdamW, bf16 weight refresh —
// nothing allocates inside it, and the host reads back only the loss and the gradient norm.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend/device.h"
#include "core/tensor_table.h"
#include "model/climax.h"
#include "model/device_batch.h"
#include "train/optimizer.h"

namespace seqvit::train {

struct StepResult {
  double loss = 0, grad_norm = 0, lr = 0;
};

class ShardedOptimizer;
class GradientReducer;

// How one rank takes part in a distributed step (docs/parallelism.md "Data parallelism"). The
// default is the single process.
struct TrainerParallel {
  // Sequence-parallel attention of this rank's SP group (not owned), or null.
  model::SequenceParallelAttention* sp = nullptr;
  // The global batch the loss is normalised by (ClimaX::plan), 0: the local batch.
  int64_t loss_batch = 0;
  // Pipeline stage (blocks of this rank) and micro-batches (docs/parallelism.md "Pipeline
  // parallelism"): the model is planned for batch / micro_batches samples with `slots`
  // activation slots, and a StepRunner (set_runner) runs the schedule.
  model::ModelShard shard;
  int micro_batches = 1;
  int slots = 1;
  // ZeRO (train/zero.h; not owned), or null: shards optimizer state, gradients, parameters.
  ShardedOptimizer* sharded = nullptr;
  // Activation recomputation per block (ClimaX::set_recompute).
  bool recompute = false;
  // The global index of this rank's first sample in the step's batch (data-parallel replica d:
  // d times the local batch), which the dropout masks are drawn by (model::BatchView).
  int64_t first_sample = 0;
  // With shard.tp_size > 1, this rank's tensor-parallel group (not owned). Under TP the
  // gradient norm that clipping uses is the global one (with ZeRO too).
  model::TensorParallel* tp = nullptr;
};

// Replaces the plain forward + backward of a step (pipeline schedules, gradient accumulation):
// ACCUMULATES this rank's gradients of the batch into grads and returns its loss.
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  virtual double forward_backward(const float* params, float* grads,
                                  const model::BatchView& batch) = 0;
};

// A sharded optimizer step (ZeRO-1/2/3, docs/parallelism.md "ZeRO / FSDP"). With one set, the
// Trainer keeps AdamW moments only for own_range() and lets it zero, reduce and update.
class ShardedOptimizer {
 public:
  virtual ~ShardedOptimizer() = default;
  // [begin, end) of the flat buffer of `total` values whose optimizer state this rank keeps.
  virtual std::pair<int64_t, int64_t> own_range(int64_t total) const = 0;
  // Once, after init and plan, with the full initial parameters (identical on every rank) and
  // the gradient store, both on the model's device.
  virtual void attach(model::ClimaX& model, backend::ParameterStore& params,
                      backend::ParameterStore& grads) = 0;
  virtual void zero_grads(float* grads) = 0;  // before forward
  // After backward: returns the global loss; gradients summed (ZeRO-1: all of them; ZeRO-2/3:
  // this rank's range, reduce-scattered during backward).
  virtual double reduce(double partial_loss, float* grads) = 0;
  // Clips by the global norm, runs `opt` on the own range and makes the parameters whole again
  // where they are replicated; returns the global norm before clipping.
  virtual double update(float* params, float* grads, AdamW& opt) = 0;
  // Planned bytes per rank of parameters and gradients under this stage.
  virtual size_t param_bytes() const = 0;
  virtual size_t grad_bytes() const = 0;
  // Composition with tensor / pipeline parallelism (set by the Trainer; either may be null):
  // the clipping norm sums TP-split tensors over `tp` (replicated ones once), then over the
  // stages by `stages`->sum_squares.
  virtual void set_norm_reduction(model::TensorParallel* tp, GradientReducer* stages) = 0;
};

// Called by Trainer::step between backward and the optimizer step: turns this rank's partial
// loss and gradients grads[n] into the global ones (an all-reduce over every rank that holds a
// replica of the weights) and returns the global loss. Must not allocate.
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual double reduce(double partial_loss, float* grads, int64_t n) = 0;
  // The global sum of squares of the gradient from this rank's (for clipping): the identity
  // where every rank holds every parameter; a sum over the stages under pipeline parallelism.
  virtual double sum_squares(double local) { return local; }
};

class Trainer {
 public:
  // `batch`: the samples of one step on this rank (the local batch under data parallelism).
  // Everything runs on `device` (not owned; must outlive the trainer).
  Trainer(const model::ModelConfig& mcfg, const OptimConfig& ocfg, int64_t batch,
          model::Precision precision, uint64_t seed, const TrainerParallel& par = {},
          backend::Device& device = backend::cpu());

  model::ClimaX& model() { return model_; }
  backend::Device& device() const { return dev_; }
  // Device memory, params().total() floats each (see backend/device.h).
  float* params() { return params_->data(); }
  float* grads() { return grads_->data(); }
  // Host copies of the whole local parameter buffer (checkpoints); write_params also refreshes
  // the bf16 weights.
  void read_params(float* host) const;
  void write_params(const float* host);
  AdamW& optimizer() { return opt_; }
  int64_t batch() const { return batch_; }

  // Distributed steps: `r` (not owned, may be null) runs between backward and the update.
  void set_reducer(GradientReducer* r);
  // Pipeline / accumulation: `r` (not owned, may be null) replaces forward + backward.
  void set_runner(StepRunner* r) { runner_ = r; }

  // Dropout and drop-path in the training steps (model::Dropout; off by default): step() runs
  // its forwards and backwards with the masks of the optimizer step it takes; loss_and_grad()
  // alone (seqvit grad) and every evaluation forward do not drop.
  void set_dropout(const model::Dropout& d) { model_.set_dropout(d); }

  // Call after changing params() by hand (e.g. loading a checkpoint).
  void params_changed() { model_.sync_weights(params_->data()); }
  // One optimizer step on a batch in HOST memory (uploaded to the device first). Throws
  // seqvit::Error if the loss is NaN/Inf (weights are left untouched in that case).
  StepResult step(const model::BatchView& batch);
  // Forward + backward only (gradients in grads()) of a HOST batch; returns the loss; pred
  // (optional) is device memory. Under ZeRO-2/3 the gradients end up reduce-scattered into the
  // ShardedOptimizer's shard instead.
  double loss_and_grad(const model::BatchView& batch, float* pred = nullptr);

  // A human-readable memory plan: bytes of parameters, gradients, optimizer state,
  // activations and workspace.
  std::string memory_report() const;
  size_t total_bytes() const;
  size_t param_bytes() const;  // per rank, as planned for the ZeRO stage
  size_t grad_bytes() const;

 private:
  backend::Device& dev_;
  model::ClimaX model_;
  // [table.total()] each; parameter stores, whose pages ZeRO hands back
  std::unique_ptr<backend::ParameterStore> params_, grads_;
  AdamW opt_;
  model::DeviceBatch batch_dev_;
  backend::Allocation sq_;  // [2] doubles: the TP-split and replicated sums of squares
  int64_t batch_;
  int64_t first_sample_ = 0;  // TrainerParallel::first_sample
  GradientReducer* reducer_ = nullptr;
  ShardedOptimizer* sharded_ = nullptr;
  StepRunner* runner_ = nullptr;
  model::TensorParallel* tp_ = nullptr;
  std::vector<int64_t> tp_ranges_[2];  // (offset, count) of the TP-split / replicated tensors
  double tp_sum_squares(const float* grads) const;
};

std::string human_bytes(double bytes);  // "1.23 GiB"

}  // namespace seqvit::train
