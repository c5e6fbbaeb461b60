// The parallel layout of a training run (`seqvit train --dp D --sp P --sp-mode M --tp T --pp S`
// under `mpirun -np D*T*S*P`; docs/parallelism.md): the MPI runtime, the rank grid, the SP
// attention and the TP group of this rank, the gradient all-reduce over the sp x dp group, ZeRO
// and the pipeline schedule, set up before the model is allocated. Without a degree above 1
// nothing here touches MPI. What train/loop.cpp runs every layout through.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "backend/device.h"
#include "parallel/mpi_comm.h"
#include "parallel/grid.h"
#include "train/pipeline.h"
#include "parallel/sp_model.h"
#include "parallel/tp_model.h"
#include "train/zero.h"
#include "train/options.h"
#include "train/trainer.h"

namespace seqvit::train {

// Sums the partial loss and gradients over the sp x dp group (every rank holds a replica of the
// weights): with every rank's loss normalised by the global count this is exactly the gradient
// of the global batch.
class SpDpReducer final : public GradientReducer {
 public:
  explicit SpDpReducer(parallel::Comm& sp_dp) : c_(sp_dp) {}
  double reduce(double partial_loss, float* grads, int64_t n) override;

 private:
  parallel::Comm& c_;
};

class Distributed {
 public:
  // Validates the options (validate_parallel_options); initialises MPI only if dp, sp, tp or pp
  // > 1 (then the world communicator is given `device`: collectives synchronise it and stage its
  // buffers); then checks the world size, the model and the global batch (parallel::validate)
  // before anything is allocated. Refuses a multi-rank launch without --dp/--sp/--tp/--pp (every
  // rank would write the same files). zero > 0: ZeRO stage over the sp x dp group
  // (train/zero.h), which under tp / pp shards each rank's own slice / stage over the replicas of
  // that (tp, pp) coordinate.
  Distributed(const ParallelOptions& p, bool bf16, const model::ModelConfig& mc,
              int64_t global_batch, backend::Device& device);

  bool active() const { return grid_.has_value(); }
  bool root() const { return !grid_ || grid_->rank() == 0; }
  int dp() const { return dp_; }
  int dp_rank() const { return grid_ ? grid_->coords().dp : 0; }
  int64_t local_batch() const { return local_batch_; }
  int tp() const { return tp_; }
  // What the Trainer needs: the SP attention (or null), the global loss batch (or 0), this
  // rank's model shard (pipeline stage's blocks, TP slice) and TP group, micro-batches and
  // activation slots.
  TrainerParallel trainer_parallel();
  // After the Trainer exists: its gradient reducer and, with pipeline stages or micro-batches,
  // the schedule that runs its forward and backward.
  void attach(Trainer& tr);
  bool pipelined() const { return opts_.pp > 1 || opts_.micro_batches > 1; }
  int pp() const { return opts_.pp; }
  int stage() const { return grid_ ? grid_->coords().pp : 0; }
  const Pipeline* pipeline() const { return pipe_ ? &*pipe_ : nullptr; }
  // This rank's part of the loss of the local batch b (DEVICE memory, model::DeviceBatch), summed
  // over the stages (forward only; through the pipeline when there is one).
  double forward_loss(Trainer& tr, const model::BatchView& b);
  const ParallelOptions& options() const { return opts_; }
  parallel::RankGrid& grid() { return *grid_; }
  parallel::Comm& world() { return *world_; }  // only when active()
  GradientReducer* reducer() {
    if (stage_reducer_) return &*stage_reducer_;
    return reducer_ ? &*reducer_ : nullptr;
  }
  // Sum of a value over the dp group (eval / persistence losses of the local samples; each is
  // already normalised by the global count). Identity without MPI.
  double sum_over_sp_dp(double v);
  double sum_over_dp(double v);
  // Every rank's hash of its parameter buffer (table layout; a HOST copy), gathered: throws unless
  // the ranks that hold the same shard (the same pipeline stage and tp coordinate: the sp x dp
  // replicas) agree, and under TP unless the ranks of a stage agree on the tensors replicated
  // over TP; returns the hash. Single process: the local hash.
  uint64_t check_replicated(const float* host_params, const TensorTable& table);
  // The logical parameters and AdamW moments of a TP / PP sharded model, gathered from the ranks
  // with dp = sp = 0 into the HOST buffers params, m, v [logical_total] on world rank 0 (null
  // elsewhere; the buffers are only written where some rank holds the element); with ZeRO the
  // moments come from every rank's ZeRO range (ZeroOptimizer::moment_runs; ZeRO-3 parameters
  // must be gathered first). Collective: every rank calls it. What the checkpoints
  // (train/checkpoint_sharding.h) write.
  void gather_logical_state(Trainer& tr, float* params, float* m, float* v);
  void barrier();
  // The maximum of v over every rank (a stop flag that a signal set on some ranks only).
  // Identity without MPI.
  int64_t max_over_world(int64_t v);
  // ZeRO (or null): the sharded optimizer the Trainer uses.
  ZeroOptimizer* zero() { return zero_ ? &*zero_ : nullptr; }

 private:
  ParallelOptions opts_;
  backend::Device& dev_;
  int dp_ = 1, tp_ = 1;
  int64_t local_batch_ = 0, global_batch_ = 0, depth_ = 0;
  // Declared first so that it is destroyed last (MPI_Finalize after every communicator).
  std::optional<parallel::MpiRuntime> mpi_;
  std::optional<parallel::Comm> world_;
  std::optional<parallel::RankGrid> grid_;
  std::optional<parallel::SpBlockAttention> attn_;
  std::optional<parallel::TpModel> tp_model_;
  std::optional<SpDpReducer> reducer_;
  std::optional<ZeroOptimizer> zero_;
  std::optional<StageReducer> stage_reducer_;  // pp > 1: also the clipping norm over stages
  std::optional<Pipeline> pipe_;
};

// FNV-1a of the bytes of p[n].
uint64_t hash_floats(const float* p, int64_t n);

}  // namespace seqvit::train
