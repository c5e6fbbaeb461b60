// Data and sequence parallelism for `seqvit train` (see train_dist.h).
#include "cli/train_dist.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "parallel/logical.h"
#include "model/tp_layout.h"
#include "train/checkpoint.h"

namespace seqvit::cli {

int launched_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

uint64_t hash_floats(const float* p, int64_t n) {
  uint64_t h = 1469598103934665603ull;
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  for (int64_t i = 0; i < n * static_cast<int64_t>(sizeof(float)); ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

double SpDpReducer::reduce(double partial_loss, float* grads, int64_t n) {
  c_.all_reduce(std::span<double>(&partial_loss, 1));
  c_.all_reduce(std::span<float>(grads, static_cast<size_t>(n)));
  return partial_loss;
}

TrainDist::TrainDist(int dp, int sp, const std::string& sp_mode, bool bf16,
                     const model::ModelConfig& mc, int64_t global_batch, int sp_ulysses,
                     const std::string& sp_outer, int zero, const PipelineOptions& pipe, int tp,
                     const std::string& order)
    : dp_(dp),
      tp_(tp),
      local_batch_(global_batch),
      global_batch_(global_batch),
      depth_(mc.depth),
      pipe_opts_(pipe) {
  if (dp < 1) fail("--dp must be >= 1, got {}", dp);
  if (sp < 1) fail("--sp must be >= 1, got {}", sp);
  if (tp < 1) fail("--tp must be >= 1, got {}", tp);
  if (pipe.pp < 1) fail("--pp must be >= 1, got {}", pipe.pp);
  if (pipe.micro_batches < 1) fail("--micro-batches must be >= 1, got {}", pipe.micro_batches);
  train::parse_pipe_schedule(pipe.schedule);
  {
    parallel::GridConfig probe;  // the order string is checked even for one process
    probe.order = order;
    parallel::GridLayout check(probe);
  }
  if (zero < 0 || zero > 3)
    fail("--zero {} is out of range: valid stages are 0 (off), 1 (optimizer state), 2 (and "
         "gradients) and 3 (and parameters)",
         zero);
  const auto mode = parallel::parse_sp_mode(sp_mode);
  if (zero > 0 && dp * sp == 1)
    fail("--zero {} shards over the data- and sequence-parallel ranks, but --dp 1 --sp 1 is a "
         "single rank; add --dp D (and/or --sp P) under mpirun -np D*P, or drop --zero",
         zero);
  if (zero == 3 && bf16)
    fail("--zero 3 runs in fp32 only (the bf16 weight copy would be the whole model); use "
         "--zero 1 or 2 with --bf16");
  if (dp == 1 && sp == 1 && pipe.pp == 1 && tp == 1) {
    if (launched_ranks() > 1)
      fail(
          "seqvit train was launched as {} ranks without --dp/--sp/--pp; pass --dp D --sp P "
          "--pp S with D*P*S = {} (e.g. --dp {}), or run it as one process",
          launched_ranks(), launched_ranks(), launched_ranks());
    parallel::GridConfig g;  // gradient accumulation only: batch vs micro-batches
    g.micro_batches = pipe.micro_batches;
    parallel::validate(g, 1, mc, global_batch);
    return;
  }
  parallel::GridConfig g;  // the SP degrees, checked before MPI starts
  g.dp = dp;
  g.zero = zero;
  parallel::set_sp_degrees(g, sp, mode, sp_ulysses, parallel::parse_sp_outer(sp_outer));
  g.tp = tp;
  g.order = order;
  mpi_.emplace(nullptr, nullptr);
  world_.emplace(parallel::mpi_world());
  g.pp = pipe.pp;
  g.micro_batches = pipe.micro_batches;
  if (world_->size() != g.world_size())
    fail("--dp {} --sp {}{} needs {} ranks (mpirun -np {}), but this job has {}", dp, sp,
         std::string(pipe.pp > 1 ? fmt::format(" --pp {}", pipe.pp) : "") +
             std::string(tp > 1 ? fmt::format(" --tp {}", tp) : ""),
         g.world_size(), g.world_size(), world_->size());
  parallel::validate(g, world_->size(), mc, global_batch);
  local_batch_ = global_batch / dp;
  grid_.emplace(*world_, g);
  if (sp > 1) attn_.emplace(*grid_);
  if (tp > 1) tp_model_.emplace(grid_->tp());
  if (pipe.pp > 1)
    stage_reducer_.emplace(grid_->sp_dp(), grid_->pp());
  else
    reducer_.emplace(grid_->sp_dp());
  if (zero > 0) zero_.emplace(grid_->sp_dp(), zero);
}

void TrainDist::attach(train::Trainer& tr) {
  tr.set_reducer(reducer());
  if (!pipelined()) return;
  const auto s = train::parse_pipe_schedule(pipe_opts_.schedule);
  if (grid_)
    pipe_.emplace(grid_->pp(), tr.model(), s, pipe_opts_.micro_batches);
  else
    pipe_.emplace(tr.model(), s, pipe_opts_.micro_batches);
  tr.set_runner(&*pipe_);
}

double TrainDist::forward_loss(train::Trainer& tr, const model::BatchView& b) {
  if (pipe_) return pipe_->evaluate(tr.params(), b);
  return tr.model().forward(tr.params(), b);
}

void TrainDist::gather_optimizer(train::AdamW& shard, train::AdamW* full, int64_t total) {
  SEQVIT_CHECK(!tp_model_ && pipe_opts_.pp == 1,
               "gather_optimizer is for ZeRO alone; under --tp/--pp save_checkpoint gathers the "
               "ZeRO moments");
  const auto runs = zero_->moment_runs();
  parallel::gather_logical(grid_->sp_dp(), runs, shard.m(), full ? full->m() : nullptr, total, 0);
  parallel::gather_logical(grid_->sp_dp(), runs, shard.v(), full ? full->v() : nullptr, total, 0);
  if (full) full->set_steps_done(shard.steps_done());
}

train::TrainerParallel TrainDist::trainer_parallel() {
  train::TrainerParallel p;
  p.sp = attn_ ? &*attn_ : nullptr;
  p.loss_batch = grid_ || pipelined() ? global_batch_ : 0;
  p.sharded = zero_ ? &*zero_ : nullptr;
  const int S = pipe_opts_.pp, stage = this->stage();
  const int64_t depth = depth_;
  p.shard.first_block = stage * (depth / S);
  p.shard.last_block = (stage + 1) * (depth / S);
  p.micro_batches = pipe_opts_.micro_batches;
  p.slots = train::pipeline_slots(train::parse_pipe_schedule(pipe_opts_.schedule), S, stage,
                                 pipe_opts_.micro_batches);
  if (tp_model_) {
    p.shard.tp_size = tp_;
    p.shard.tp_rank = grid_->coords().tp;
    p.tp = &*tp_model_;
  }
  return p;
}

double TrainDist::sum_over_sp_dp(double v) {
  if (grid_) grid_->sp_dp().all_reduce(std::span<double>(&v, 1));
  return v;
}

double TrainDist::sum_over_dp(double v) {
  if (grid_) grid_->dp().all_reduce(std::span<double>(&v, 1));
  return v;
}

uint64_t TrainDist::check_replicated(const float* params, const TensorTable& table) {
  const uint64_t h = hash_floats(params, table.total());
  if (!grid_) return h;
  // Under TP: the tensors every rank of a stage holds whole (LayerNorms, embeddings, head,
  // row-parallel biases), hashed alone, must agree across TP coordinates too.
  uint64_t hr = 0;
  for (const auto& e : table.entries())
    if (tp_ > 1 && model::tp_split(e.name) == model::TpSplit::Replicated)
      hr = hr * 1099511628211ull ^ hash_floats(params + e.offset, e.numel);
  const int P = world_->size();
  const std::array<int64_t, 4> mine{static_cast<int64_t>(h), static_cast<int64_t>(hr),
                                    grid_->coords().tp, grid_->coords().pp};
  std::vector<int64_t> all(static_cast<size_t>(4 * P));
  world_->all_gather(std::span<const int64_t>(mine), std::span<int64_t>(all));
  for (int r = 0; r < P; ++r) {
    const int64_t* o = all.data() + 4 * r;
    if (o[3] != mine[3]) continue;  // another pipeline stage: other tensors
    if (o[2] == mine[2] && o[0] != mine[0])
      fail(
          "the replicated weights differ between ranks: hash {:016x} on rank {}, {:016x} on "
          "rank {}",
          static_cast<uint64_t>(o[0]), r, h, grid_->rank());
    if (o[1] != mine[1])
      fail(
          "the weights replicated over tensor parallelism differ between ranks: hash {:016x} on "
          "rank {} (tp {}), {:016x} on rank {} (tp {})",
          static_cast<uint64_t>(o[1]), r, o[2], hr, grid_->rank(), mine[2]);
  }
  return h;
}

void TrainDist::save_checkpoint(const std::string& out, const model::ModelConfig& mc,
                                train::Trainer& tr) {
  const model::ClimaX& m = tr.model();
  if (!tp_model_ && pipe_opts_.pp == 1) {  // every rank holds the logical buffers
    if (!root()) return;
    eval::save_model(out, mc, m.params(), tr.params());
    train::save_optimizer(eval::optimizer_path(out), m.params(), tr.optimizer());
    return;
  }
  const model::ClimaX whole(mc);
  const int64_t n = whole.params().total();
  const size_t held = root() ? static_cast<size_t>(n) : 0;
  std::vector<float> params(held, 0.f), mom(held, 0.f), var(held, 0.f);
  gather_logical_state(tr, params.data(), mom.data(), var.data());
  if (!root()) return;
  train::AdamW opt(whole.params(), tr.optimizer().config());
  std::copy(mom.begin(), mom.end(), opt.m());
  std::copy(var.begin(), var.end(), opt.v());
  opt.set_steps_done(tr.optimizer().steps_done());
  eval::save_model(out, mc, whole.params(), params.data());
  train::save_optimizer(eval::optimizer_path(out), whole.params(), opt);
}

void TrainDist::gather_logical_state(train::Trainer& tr, float* params, float* m, float* v) {
  // One replica of each shard (tensor-parallel slice of a pipeline stage) sends its runs, the
  // others send none; rank 0 assembles.
  const bool sends = grid_->coords().dp == 0 && grid_->coords().sp == 0;
  const auto runs = sends ? tr.model().logical_runs() : std::vector<model::LogicalRun>{};
  const int64_t n = tr.model().logical_total();
  parallel::gather_logical(*world_, runs, tr.params(), params, n, 0);
  // ZeRO: every rank holds the moments of its range of its shard's buffer only; those ranges'
  // pieces of the logical runs (moment_runs) from all ranks together cover the logical buffer
  const auto mruns = zero_ ? zero_->moment_runs() : runs;
  parallel::gather_logical(*world_, mruns, tr.optimizer().m(), m, n, 0);
  parallel::gather_logical(*world_, mruns, tr.optimizer().v(), v, n, 0);
}

void TrainDist::barrier() {
  if (world_) world_->barrier();
}

int64_t TrainDist::max_over_world(int64_t v) {
  if (!world_) return v;
  std::vector<int64_t> all(static_cast<size_t>(world_->size()));
  world_->all_gather(std::span<const int64_t>(&v, 1), std::span<int64_t>(all));
  return *std::max_element(all.begin(), all.end());
}

}  // namespace seqvit::cli
