// `seqvit train --dp D --sp P --sp-mode M --tp T` under `mpirun -np D*T*P` (docs/parallelism.md
// "Data parallelism", "Tensor parallelism"): the MPI runtime, the rank grid, the SP attention
// and the TP group of this rank and the gradient all-reduce over the sp x dp group, set up before
// the model is allocated. Without --dp/--sp/--tp above 1 nothing here touches MPI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "parallel/mpi_comm.h"
#include "parallel/grid.h"
#include "train/pipeline.h"
#include "parallel/sp_model.h"
#include "parallel/tp_model.h"
#include "train/zero.h"
#include "train/trainer.h"

namespace seqvit::cli {

// Sums the partial loss and gradients over the sp x dp group (every rank holds a replica of the
// weights): with every rank's loss normalised by the global count this is exactly the gradient
// of the global batch.
class SpDpReducer final : public train::GradientReducer {
 public:
  explicit SpDpReducer(parallel::Comm& sp_dp) : c_(sp_dp) {}
  double reduce(double partial_loss, float* grads, int64_t n) override;

 private:
  parallel::Comm& c_;
};

// Pipeline options of `seqvit train` (docs/parallelism.md "Pipeline parallelism").
struct PipelineOptions {
  int pp = 1;              // stages (--pp)
  int micro_batches = 1;   // per step and dp replica (--micro-batches)
  std::string schedule = "1f1b";  // --pp-schedule: 1f1b | gpipe
};

class TrainDist {
 public:
  // Validates dp, sp, sp_mode, tp, pp, micro-batches and the schedule; initialises MPI only if
  // dp, sp, tp or pp > 1; then checks the world size, the model and the global batch
  // (parallel::validate) before anything is allocated. Refuses a multi-rank launch without
  // --dp/--sp/--tp/--pp (every rank would write the same files). sp_ulysses, sp_outer:
  // --sp-mode 2d's Ulysses degree (dividing sp) and ring or lss across. zero > 0: ZeRO stage
  // over the sp x dp group (train/zero.h; needs dp * sp > 1), which under tp / pp shards each
  // rank's own slice / stage over the replicas of that (tp, pp) coordinate.
  // tp: the tensor-parallel degree.
  TrainDist(int dp, int sp, const std::string& sp_mode, bool bf16, const model::ModelConfig& mc,
            int64_t global_batch, int sp_ulysses = 0, const std::string& sp_outer = "ring",
            int zero = 0, const PipelineOptions& pipe = {}, int tp = 1,
            const std::string& order = "dp,pp,tp,sp");

  bool active() const { return grid_.has_value(); }
  bool root() const { return !grid_ || grid_->rank() == 0; }
  int dp() const { return dp_; }
  int dp_rank() const { return grid_ ? grid_->coords().dp : 0; }
  int64_t local_batch() const { return local_batch_; }
  int tp() const { return tp_; }
  // What the Trainer needs: the SP attention (or null), the global loss batch (or 0), this
  // rank's model shard (pipeline stage's blocks, TP slice) and TP group, micro-batches and
  // activation slots.
  train::TrainerParallel trainer_parallel();
  // After the Trainer exists: its gradient reducer and, with pipeline stages or micro-batches,
  // the schedule that runs its forward and backward.
  void attach(train::Trainer& tr);
  bool pipelined() const { return pipe_opts_.pp > 1 || pipe_opts_.micro_batches > 1; }
  int pp() const { return pipe_opts_.pp; }
  int stage() const { return grid_ ? grid_->coords().pp : 0; }
  const train::Pipeline* pipeline() const { return pipe_ ? &*pipe_ : nullptr; }
  // This rank's part of the loss of the local batch b, summed over the stages (forward only;
  // through the pipeline when there is one).
  double forward_loss(train::Trainer& tr, const model::BatchView& b);
  parallel::RankGrid& grid() { return *grid_; }
  parallel::Comm& world() { return *world_; }  // only when active()
  train::GradientReducer* reducer() {
    if (stage_reducer_) return &*stage_reducer_;
    return reducer_ ? &*reducer_ : nullptr;
  }
  // Sum of a value over the dp group (eval / persistence losses of the local samples; each is
  // already normalised by the global count). Identity without MPI.
  double sum_over_sp_dp(double v);
  double sum_over_dp(double v);
  // Every rank's hash of its parameter buffer (table layout), gathered: throws unless the ranks
  // that hold the same shard (the same pipeline stage and tp coordinate: the sp x dp replicas)
  // agree, and under TP unless the ranks of a stage agree on the tensors replicated over TP;
  // returns the hash. Single process: the local hash.
  uint64_t check_replicated(const float* params, const TensorTable& table);
  // Writes the model file `out` and its optimizer state (eval::optimizer_path) of the logical,
  // single-process model on world rank 0. Under TP or PP the shards are gathered first (by
  // model::LogicalRun, from the ranks with dp = sp = 0): collective, every rank calls it.
  // With ZeRO the moments come from every rank's ZeRO range (ZeroOptimizer::moment_runs);
  // ZeRO-3 parameters must be gathered first (gather_all_parameters).
  void save_checkpoint(const std::string& out, const model::ModelConfig& mc, train::Trainer& tr);
  // The logical parameters and AdamW moments of a TP / PP sharded model, gathered from the ranks
  // with dp = sp = 0 into params, m, v [logical_total] on world rank 0 (null elsewhere; the
  // buffers are only written where some rank holds the element). Collective: every rank calls
  // it. What save_checkpoint and the --data checkpoints (cli::ShardedState) write.
  void gather_logical_state(train::Trainer& tr, float* params, float* m, float* v);
  void barrier();
  // The maximum of v over every rank (a stop flag that a signal set on some ranks only).
  // Identity without MPI.
  int64_t max_over_world(int64_t v);
  // ZeRO (or null): the sharded optimizer the Trainer uses.
  train::ZeroOptimizer* zero() { return zero_ ? &*zero_ : nullptr; }
  // ZeRO without tp / pp: the logical AdamW moments from every rank's range into `full` on
  // rank 0 (null elsewhere), with its step count; collective. (With tp / pp: save_checkpoint.)
  void gather_optimizer(train::AdamW& shard, train::AdamW* full, int64_t total);

 private:
  int dp_ = 1, tp_ = 1;
  int64_t local_batch_ = 0, global_batch_ = 0, depth_ = 0;
  // Declared first so that it is destroyed last (MPI_Finalize after every communicator).
  std::optional<parallel::MpiRuntime> mpi_;
  std::optional<parallel::Comm> world_;
  std::optional<parallel::RankGrid> grid_;
  std::optional<parallel::SpBlockAttention> attn_;
  std::optional<parallel::TpModel> tp_model_;
  std::optional<SpDpReducer> reducer_;
  std::optional<train::ZeroOptimizer> zero_;
  PipelineOptions pipe_opts_;
  std::optional<train::StageReducer> stage_reducer_;  // pp > 1: also the clipping norm over stages
  std::optional<train::Pipeline> pipe_;
};

// The number of ranks this process was launched among by mpirun (Open MPI, MPICH/PMI), or 1.
int launched_ranks();

// FNV-1a of the bytes of p[n].
uint64_t hash_floats(const float* p, int64_t n);

}  // namespace seqvit::cli
