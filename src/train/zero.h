// ZeRO-1/2/3 (FSDP) over the group of ranks that hold replicas of the same weights: the sp_dp
// communicator (docs/parallelism.md "ZeRO / FSDP"). Rank r of the Z ranks owns the
// contiguous, balanced range [r n / Z, (r + 1) n / Z) of the flat parameter buffer of n values.
//
//  stage 1  gradients all-reduced (as without ZeRO); AdamW (its moments) only on the own range;
//           then the updated range all-gathered into every rank's full parameters.
//  stage 2  as 1, but each unit's gradients (model/parameter_hooks.h) are reduce-scattered right
//           after the unit's backward and its pages of the full gradient buffer released: only
//           the own range of the summed gradients outlives the backward.
//  stage 3  as 2, and the parameters too are kept only as the own range: each unit's are
//           all-gathered into the full-size buffer before its forward and again before its
//           backward, and their pages released after.
//
// Gradient clipping uses the global norm sqrt(sum over ranks of the shard's sum of squares).
//
// Composition (docs/parallelism.md "ZeRO with tensor and pipeline parallelism"): the buffer is
// THIS rank's parameter table, which under --tp / --pp is its tensor-parallel slice of its
// pipeline stage's units; the replicas of that shard are exactly the sp_dp group of its
// (tp, pp) coordinate. Units a stage does not hold are empty. Under micro-batches each unit's
// gradients are reduce-scattered after every micro-batch's backward and ADDED to the shard,
// and ZeRO-3 gathers a unit for every forward and every backward of every micro-batch (the
// least memory; 2 m all-gathers per unit and step). The clipping norm: squares summed over the
// group, then TP-split tensors over the TP group (replicated ones counted once), then stages.
// The full-size buffers are the Trainer's parameter stores (backend::ParameterStore), so
// released pages really leave memory; pages shared by two units are kept. Everything runs on
// the model's device: shards and scratch are device memory, the group communicator must have
// that device (Comm::set_device).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "model/climax.h"
#include "model/parameter_hooks.h"
#include "train/trainer.h"

namespace seqvit::train {

class ZeroOptimizer final : public ShardedOptimizer, public model::ParameterHooks {
 public:
  // `group`: the ranks that share the weights (sp_dp); not owned. stage 1..3.
  ZeroOptimizer(parallel::Comm& group, int stage);
  ~ZeroOptimizer() override;

  int stage() const { return stage_; }

  // ShardedOptimizer
  std::pair<int64_t, int64_t> own_range(int64_t total) const override;
  void attach(model::ClimaX& model, backend::ParameterStore& params,
              backend::ParameterStore& grads) override;
  void zero_grads(float* grads) override;
  double reduce(double partial_loss, float* grads) override;
  double update(float* params, float* grads, AdamW& opt) override;
  size_t param_bytes() const override;
  size_t grad_bytes() const override;
  void set_norm_reduction(model::TensorParallel* tp, GradientReducer* stages) override;

  // model::ParameterHooks (stages 2, 3)
  void forward_begin(int unit) override;
  void forward_end(int unit) override;
  void backward_begin(int unit) override;
  void backward_end(int unit) override;

  // This rank's share of the logical buffer (for parallel::gather_logical of the moments, which
  // the AdamW keeps as [end - begin], and of the stage-2/3 shards): the model's logical_runs()
  // cut to the own range. After attach().
  std::vector<model::LogicalRun> moment_runs() const;
  // Stage 3: all-gathers every unit into the full parameter buffer on every rank (for the
  // checkpoint and the replica check at the end of training). Stages 1, 2: nothing to do.
  void gather_all_parameters();
  // Stage 3: releases the pages of the whole full parameter buffer again (after a checkpoint
  // gathered it with gather_all_parameters; the next forward gathers unit by unit). Stages 1, 2:
  // nothing to do.
  void release_all_parameters();
  // Stage 3: the own range of `full` (this rank's full parameter table, e.g. the buffer the
  // Trainer passed to attach(), filled from a checkpoint) becomes the master shard, and the
  // pages of the full buffer are released. Stages 1, 2: nothing to do (the full buffer is the
  // parameters).
  void load_own_parameters(const float* full);
  // Stage 3: the own range of the parameters (the master copy), [end - begin].
  const float* param_shard() const { return pshard_.data(); }  // device memory
  const float* grad_shard() const { return gshard_.data(); }   // stages 2, 3

  // With tracking on, each hook records how many bytes of the full parameter and gradient
  // buffers are resident (mincore) at that moment; peak_resident() is the largest sum seen.
  void track_residency(bool on) { track_ = on; }
  size_t peak_resident() const { return peak_resident_; }
  void reset_peak_resident() { peak_resident_ = 0; }

 private:
  void gather_unit(int unit);
  void sample_residency();

  parallel::Comm& c_;
  int stage_;
  int z_ = 1, r_ = 0;
  int64_t total_ = 0, begin_ = 0, end_ = 0;
  model::ClimaX* model_ = nullptr;
  backend::Device* dev_ = nullptr;
  backend::ParameterStore* Ps_ = nullptr;  // full-size parameters (stage 3: gathered units)
  backend::ParameterStore* Gs_ = nullptr;  // full-size gradients (stages 2, 3: the unit in
                                           // backward)
  float* P_ = nullptr;  // their data()
  float* G_ = nullptr;
  backend::DeviceArray<float> pshard_, gshard_, scratch_;  // [end - begin], when used
  backend::DeviceArray<float> acc_;  // stages 2, 3: one unit's own part
  backend::DeviceArray<double> sq_;  // [2] the TP-split and other sums of squares
  backend::Arena arena_;
  std::vector<int64_t> piece_ranges_[2];  // (offset, count) from begin: TP-split, other
  model::TensorParallel* tp_ = nullptr;
  GradientReducer* stages_ = nullptr;
  std::vector<std::pair<int64_t, int64_t>> units_;       // [begin, end) of each unit
  std::vector<std::vector<int64_t>> unit_counts_;        // per unit: elements owned by each rank
  std::vector<int64_t> unit_own_off_;                    // per unit: its offset in the shard
  std::vector<int64_t> all_counts_;                      // own-range sizes of every rank
  bool track_ = false;
  size_t peak_resident_ = 0;
};

}  // namespace seqvit::train
