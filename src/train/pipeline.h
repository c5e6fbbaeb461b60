// Pipeline parallelism (docs/parallelism.md "Pipeline parallelism"): the blocks are
// split into PP stages over RankGrid::pp() (stage = rank in that communicator); each step's
// local batch is split into m micro-batches that flow through the stages with point-to-point
// messages of the residual stream [B_micro, N_local, D] (forward) and its gradient (backward).
//
// Schedules: GPipe (every forward, then every backward; m micro-batches in flight) and 1F1B
// (PP - 1 - stage warm-up forwards, then one forward / one backward, then the remaining
// backwards; at most PP - stage in flight). Both accumulate the gradients of all m
// micro-batches, in the same order, so they give the same numbers. Ideal bubble fraction
// (PP - 1) / (m + PP - 1). With PP = 1 the same code is gradient accumulation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor_table.h"
#include "parallel/comm.h"
#include "model/climax.h"
#include "train/trainer.h"

namespace seqvit::train {

enum class PipeSchedule { GPipe, OneFOneB };
std::string to_string(PipeSchedule s);             // "gpipe" | "1f1b"
PipeSchedule parse_pipe_schedule(const std::string& s);  // throws listing the valid ones

// One operation of a stage's schedule: the forward or backward of micro-batch `micro`.
struct PipeOp {
  bool forward = true;
  int micro = 0;
};
// The operations of `stage` (of `stages`) for m micro-batches, in execution order.
std::vector<PipeOp> pipeline_order(PipeSchedule s, int stages, int stage, int micro_batches);
// The most micro-batches in flight (forward done, backward not) at `stage`: the activation
// slots its model must be planned with (GPipe m; 1F1B min(m, stages - stage)).
int pipeline_slots(PipeSchedule s, int stages, int stage, int micro_batches);
// (PP - 1) / (m + PP - 1).
double ideal_bubble(int stages, int micro_batches);

// Micro-batch k of m of `b` (b.B divisible by m): a view into b's arrays, no copy.
model::BatchView micro_batch(const model::BatchView& b, const model::ModelConfig& c, int k, int m);

// What one step's schedule measured on this rank.
struct PipelineStats {
  double seconds = 0;  // wall time of the schedule
  double idle = 0;     // of which waiting for messages (receives and send completions)
  uint64_t bytes_sent = 0;
  double bubble() const { return seconds > 0 ? idle / seconds : 0; }
};

// Runs one stage's schedule. The model is this stage's shard (ModelShard blocks of the stage),
// planned for micro-batches (max_batch >= B / m) with pipeline_slots() activation slots and,
// under data parallelism, loss_batch = the global batch. `pp` must outlive this object.
class Pipeline final : public StepRunner {
 public:
  Pipeline(parallel::Comm& pp, model::ClimaX& model, PipeSchedule schedule, int micro_batches);
  // One stage, no communicator (gradient accumulation in a single process, no MPI).
  Pipeline(model::ClimaX& model, PipeSchedule schedule, int micro_batches);

  // Forward and backward of the m micro-batches of b; ACCUMULATES into grads. Returns the loss
  // summed over the micro-batches and the stages (an all-reduce over pp: every stage returns
  // it); under SP / DP it is still this rank's part, to be summed over sp_dp like the gradients.
  // pred (optional, [B, Vo, H, W]) is written on the last stage only.
  double run(const float* params, float* grads, const model::BatchView& b, float* pred = nullptr);
  // Forward only (evaluation): the loss of b summed over micro-batches and stages.
  double evaluate(const float* params, const model::BatchView& b);
  double forward_backward(const float* params, float* grads, const model::BatchView& b) override {
    return run(params, grads, b);
  }

  int stages() const { return stages_; }
  int stage() const { return stage_; }
  int micro_batches() const { return m_; }
  PipeSchedule schedule() const { return schedule_; }
  const PipelineStats& last_stats() const { return stats_; }

 private:
  Pipeline(parallel::Comm* pp, model::ClimaX& model, PipeSchedule schedule, int micro_batches);
  parallel::Comm* pp_;  // null: one stage, no MPI
  model::ClimaX& model_;
  PipeSchedule schedule_;
  int m_, stages_, stage_;
  std::vector<PipeOp> order_;
  std::vector<parallel::Request> act_sends_;   // [slots]: the pending send of each slot's stage output
  parallel::Request grad_send_;                // the pending send of the last input gradient
  backend::Allocation grad_out_;     // [B_micro, N_local, D]: that gradient, sent from here
  PipelineStats stats_;
};

// Gradient reduction of a stage (GradientReducer): the loss and this stage's gradients
// summed over the ranks that replicate the stage's weights (`sp_dp`: the same pp and tp
// coordinates), and, for clipping, the gradient's sum of squares summed over the stages (`pp`,
// which hold disjoint parameters). With every loss normalised by the global batch the result is
// the single-process gradient of the global batch, stage by stage.
class StageReducer final : public GradientReducer {
 public:
  StageReducer(parallel::Comm& sp_dp, parallel::Comm& pp) : sp_dp_(sp_dp), pp_(pp) {}
  double reduce(double partial_loss, float* grads, int64_t n) override;
  double sum_squares(double local) override;

 private:
  parallel::Comm& sp_dp_;
  parallel::Comm& pp_;
};

}  // namespace seqvit::train
