// `seqvit train --dp D --sp P --sp-mode M --tp T` under `mpirun -np D*T*P` (docs/parallelism.md
// "Data parallelism", "Tensor parallelism"): the MPI runtime, the rank grid, the SP attention
// and the TP group of this rank and the gradient all-reduce over the sp x dp group, set up before
// the model is allocated. Without --dp/--sp/--tp above 1 nothing here touches MPI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "dist/comm.h"
#include "dist/grid.h"
#include "dist/sp_model.h"
#include "dist/tp_model.h"
#include "dist/zero.h"
#include "train/trainer.h"

namespace seqvit::cli {

// Sums the partial loss and gradients over the sp x dp group (every rank holds a replica of the
// weights): with every rank's loss normalised by the global count this is exactly the gradient
// of the global batch.
class SpDpReducer final : public train::GradientReducer {
 public:
  explicit SpDpReducer(dist::Comm& sp_dp) : c_(sp_dp) {}
  double reduce(double partial_loss, float* grads, int64_t n) override;

 private:
  dist::Comm& c_;
};

class TrainDist {
 public:
  // Validates dp, sp, tp and sp_mode; initialises MPI only if one of dp, sp, tp is > 1; then
  // checks the world size, the model and the global batch (dist::validate) before anything is
  // allocated. Refuses a multi-rank launch without --dp/--sp/--tp (every rank would write the
  // same files). sp_ulysses, sp_outer: --sp-mode 2d's Ulysses degree (dividing sp) and ring or
  // lss across. zero > 0: ZeRO stage over the sp x dp group (dist/zero.h; needs dp * sp > 1).
  // tp: the tensor-parallel degree (not with zero > 0 yet).
  TrainDist(int dp, int sp, const std::string& sp_mode, bool bf16, const model::ModelConfig& mc,
            int64_t global_batch, int sp_ulysses = 0, const std::string& sp_outer = "ring",
            int zero = 0, int tp = 1);

  bool active() const { return grid_.has_value(); }
  bool root() const { return !grid_ || grid_->rank() == 0; }
  int dp() const { return dp_; }
  int dp_rank() const { return grid_ ? grid_->coords().dp : 0; }
  int64_t local_batch() const { return local_batch_; }
  int tp() const { return tp_; }
  // What the Trainer needs: the SP attention (or null), the global loss batch (or 0), this
  // rank's model shard and its TP group.
  train::TrainerParallel trainer_parallel();
  dist::RankGrid& grid() { return *grid_; }
  train::GradientReducer* reducer() { return reducer_ ? &*reducer_ : nullptr; }
  // Sum of a value over the dp group (eval / persistence losses of the local samples; each is
  // already normalised by the global count). Identity without MPI.
  double sum_over_sp_dp(double v);
  double sum_over_dp(double v);
  // Every rank's hash of its parameter buffer (table layout), gathered: throws unless the ranks
  // that hold the same shard (the same tp coordinate) agree, and under TP unless every rank
  // agrees on the replicated tensors; returns the hash. Single process: the local hash.
  uint64_t check_replicated(const float* params, const TensorTable& table);
  // Writes the model file `out` and its optimizer state (train::optimizer_path) of the logical,
  // single-process model on world rank 0. Under TP the slices are gathered first (by
  // model::LogicalRun, from the ranks with dp = sp = 0): collective, every rank calls it.
  void save_checkpoint(const std::string& out, const model::ModelConfig& mc, train::Trainer& tr);
  void barrier();
  // ZeRO (or null): the sharded optimizer the Trainer uses.
  dist::ZeroOptimizer* zero() { return zero_ ? &*zero_ : nullptr; }
  // ZeRO: the logical AdamW moments from every rank's range into `full` on rank 0 (null
  // elsewhere), with its step count; collective.
  void gather_optimizer(train::AdamW& shard, train::AdamW* full, int64_t total);

 private:
  int dp_ = 1, tp_ = 1;
  int64_t local_batch_ = 0, global_batch_ = 0;
  // Declared first so that it is destroyed last (MPI_Finalize after every communicator).
  std::optional<dist::MpiRuntime> mpi_;
  std::optional<dist::Comm> world_;
  std::optional<dist::RankGrid> grid_;
  std::optional<dist::SpBlockAttention> attn_;
  std::optional<dist::TpModel> tp_model_;
  std::optional<SpDpReducer> reducer_;
  std::optional<dist::ZeroOptimizer> zero_;
};

// The number of ranks this process was launched among by mpirun (Open MPI, MPICH/PMI), or 1.
int launched_ranks();

// FNV-1a of the bytes of p[n].
uint64_t hash_floats(const float* p, int64_t n);

}  // namespace seqvit::cli
