// Distributed checkpoints of a training run (train/loop.h) (docs/checkpoints.md "Distributed
// checkpoints", docs/parallelism.md). A checkpoint on disk is always LOGICAL: the single-process
// parameter table (model.safetensors) and AdamW moments (model.optim.safetensors) in the format
// one process writes, whatever layout wrote it, so that a run resumes with any other layout
// (dp 2 x sp 2 -> one process, one process -> dp 2, sp 2 -> sp 4, ...). The layout that wrote a
// checkpoint is recorded in __metadata__["seqvit.layout"] for information only.
//
// The hook for a parallelism scheme is CheckpointSharding: `gather` turns the training state of
// every rank into the logical state on rank 0 just before rank 0 writes it, `scatter` takes the
// logical state read from the files (on every rank) into this rank's trainer on resume. Data and
// sequence parallelism replicate the whole state on every rank, so their gather only verifies
// the replication (a hash of weights and moments all-gathered) and hands rank 0 its own buffers
// (ReplicatedState). A scheme that shards the weights or the moments (tensor or pipeline
// parallelism, ZeRO) implements gather with parallel::gather_logical (src/parallel/logical.h) by its
// model's ClimaX::logical_runs(), over the ranks that hold distinct shards (e.g. the tp x pp
// ranks of one DP/SP replica), into logical buffers it owns on rank 0, and scatter with
// parallel::scatter_logical; make_checkpoint_sharding returns it for its flags. The writers, the
// reader and the resume checks in train/loop.cpp do not change. All buffers here are HOST memory:
// the trainer's device buffers are copied out (Trainer::read_params, AdamW::read_moments) and in
// (write_params, write_moments).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/distributed.h"
#include "train/options.h"
#include "train/trainer.h"

namespace seqvit::train {

// The single-process training state, in the layout of model::ClimaX(config).params().
struct LogicalState {
  const float* params = nullptr;  // [table.total()]
  const float* m = nullptr;       // AdamW first moments, same layout
  const float* v = nullptr;       // AdamW second moments
  int64_t steps_done = 0;         // optimizer steps
  uint64_t hash = 0;              // of params, m and v (information: logged with a checkpoint)
  bool valid() const { return params != nullptr; }
};

class CheckpointSharding {
 public:
  virtual ~CheckpointSharding() = default;
  // Collective: every rank calls it at the same step. Rank 0 receives the logical state
  // (host pointers, valid until the next gather); the other ranks an empty
  // one. Throws (on every rank alike) when the ranks' states are inconsistent.
  virtual LogicalState gather(Trainer& tr) = 0;
  // Every rank, on resume: this rank's part of `logical` (read from the files) into tr, which
  // is left ready to step (params_changed called).
  virtual void scatter(const LogicalState& logical, Trainer& tr) = 0;
  // The layout, a JSON object stored as seqvit.layout: {"world": 4, "dp": 2, "sp": 2,
  // "sp_mode": "ring", "state": "replicated"}.
  virtual std::string layout_json() const = 0;
};

// Data x sequence parallelism (and the single process): every rank holds the whole state.
class ReplicatedState final : public CheckpointSharding {
 public:
  ReplicatedState(Distributed& dist, const TrainOptions& o);
  LogicalState gather(Trainer& tr) override;
  void scatter(const LogicalState& logical, Trainer& tr) override;
  std::string layout_json() const override { return layout_; }

 private:
  Distributed& dist_;
  std::string layout_;
  std::vector<float> params_, m_, v_;  // host copies of the last gather
};

// What the sharded schemes share: rank 0 assembles the logical state of every rank's shard
// (Distributed::gather_logical_state: the weights from the ranks with dp = sp = 0, the moments by
// the optimizer's runs) into buffers it owns until the next gather.
class GatheredState : public CheckpointSharding {
 public:
  std::string layout_json() const override { return layout_; }

 protected:
  GatheredState(Distributed& dist, std::string layout) : dist_(dist), layout_(std::move(layout)) {}
  // Collective; rank 0 gets the state of `steps` optimizer steps, the other ranks an empty one.
  LogicalState collect(Trainer& tr, int64_t steps);

  Distributed& dist_;

 private:
  std::string layout_;
  std::vector<float> params_, m_, v_;  // rank 0: the logical state of the last gather
};

// Tensor and/or pipeline parallelism (x DP x SP): each rank holds its (stage, tp) shard of the
// weights and moments. gather: the replicas of each shard must agree (Distributed::
// check_replicated on weights, m and v), then collect(). scatter: every rank keeps its share of
// the logical files (ClimaX::slice_logical of weights and moments).
class ShardedState final : public GatheredState {
 public:
  ShardedState(Distributed& dist, const TrainOptions& o);
  LogicalState gather(Trainer& tr) override;
  void scatter(const LogicalState& logical, Trainer& tr) override;
};

// ZeRO-1/2/3 (alone or with TP / PP, x DP x SP): each rank holds the AdamW moments of its ZeRO
// range of its shard (ZeroOptimizer::moment_runs), and under ZeRO-3 only that range of the
// weights too. gather: ZeRO-3 all-gathers the weights into the full buffer first
// (gather_all_parameters) and releases them again after; the replicas of each (stage, tp) shard
// must agree on the weights; then collect() (the moments from every rank's range). scatter:
// every rank slices the logical files to its shard (ClimaX::slice_logical), keeps the weights
// (ZeRO-3: its own range, load_own_parameters) and its ZeRO range of the moments.
class ZeroState final : public GatheredState {
 public:
  ZeroState(Distributed& dist, const TrainOptions& o);
  LogicalState gather(Trainer& tr) override;
  void scatter(const LogicalState& logical, Trainer& tr) override;
};

// The sharding of the state under the layout the options describe.
std::unique_ptr<CheckpointSharding> make_checkpoint_sharding(Distributed& dist,
                                                             const TrainOptions& o);

// "dp 2 x sp 2 (ring)", "1 process": a seqvit.layout JSON for messages ("unknown" if absent).
std::string describe_layout(const std::string& layout_json);

}  // namespace seqvit::train
