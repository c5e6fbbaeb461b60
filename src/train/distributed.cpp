// The parallel layout of a training run (see distributed.h).
#include "train/distributed.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "parallel/logical.h"
#include "model/tp_layout.h"
#include "train/checkpoint.h"

namespace seqvit::train {

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

Distributed::Distributed(const ParallelOptions& p, bool bf16, const model::ModelConfig& mc,
                         int64_t global_batch, backend::Device& device)
    : opts_(p),
      dev_(device),
      dp_(p.dp),
      tp_(p.tp),
      local_batch_(global_batch),
      global_batch_(global_batch),
      depth_(mc.depth) {
  validate_parallel_options(p, bf16, "train");
  const auto mode = parallel::parse_sp_mode(p.sp_mode);
  if (p.world() == 1) {
    if (launched_ranks() > 1)
      fail(
          "seqvit train was launched as {} ranks without --dp/--sp/--tp/--pp; pass --dp D --sp P "
          "--tp T --pp S with D*P*T*S = {} (e.g. --dp {}), or run it as one process",
          launched_ranks(), launched_ranks(), launched_ranks());
    parallel::GridConfig g;  // gradient accumulation only: batch vs micro-batches
    g.micro_batches = p.micro_batches;
    parallel::validate(g, 1, mc, global_batch);
    return;
  }
  parallel::GridConfig g;  // the SP degrees, checked before MPI starts
  g.dp = p.dp;
  g.zero = p.zero;
  parallel::set_sp_degrees(g, p.sp, mode, p.sp_ulysses, parallel::parse_sp_outer(p.sp_outer));
  g.tp = p.tp;
  g.order = p.order;
  mpi_.emplace(nullptr, nullptr);
  world_.emplace(parallel::mpi_world());
  world_->set_device(device);  // before the grid splits it: every communicator inherits it
  g.pp = p.pp;
  g.micro_batches = p.micro_batches;
  if (world_->size() != g.world_size())
    fail("--dp {} --sp {}{} needs {} ranks (mpirun -np {}), but this job has {}", p.dp, p.sp,
         std::string(p.pp > 1 ? fmt::format(" --pp {}", p.pp) : "") +
             std::string(p.tp > 1 ? fmt::format(" --tp {}", p.tp) : ""),
         g.world_size(), g.world_size(), world_->size());
  parallel::validate(g, world_->size(), mc, global_batch);
  local_batch_ = global_batch / p.dp;
  grid_.emplace(*world_, g);
  if (p.sp > 1) attn_.emplace(*grid_);
  if (p.tp > 1) tp_model_.emplace(grid_->tp());
  if (p.pp > 1)
    stage_reducer_.emplace(grid_->sp_dp(), grid_->pp());
  else
    reducer_.emplace(grid_->sp_dp());
  if (p.zero > 0) zero_.emplace(grid_->sp_dp(), p.zero);
}

void Distributed::attach(Trainer& tr) {
  tr.set_reducer(reducer());
  if (!pipelined()) return;
  const auto s = parse_pipe_schedule(opts_.pp_schedule);
  if (grid_)
    pipe_.emplace(grid_->pp(), tr.model(), s, opts_.micro_batches);
  else
    pipe_.emplace(tr.model(), s, opts_.micro_batches);
  tr.set_runner(&*pipe_);
}

double Distributed::forward_loss(Trainer& tr, const model::BatchView& b) {
  if (pipe_) return pipe_->evaluate(tr.params(), b);
  return tr.model().forward(tr.params(), b);
}

TrainerParallel Distributed::trainer_parallel() {
  TrainerParallel p;
  p.sp = attn_ ? &*attn_ : nullptr;
  p.loss_batch = grid_ || pipelined() ? global_batch_ : 0;
  p.sharded = zero_ ? &*zero_ : nullptr;
  const int S = opts_.pp, stage = this->stage();
  const int64_t depth = depth_;
  p.shard.first_block = stage * (depth / S);
  p.shard.last_block = (stage + 1) * (depth / S);
  p.micro_batches = opts_.micro_batches;
  p.first_sample = static_cast<int64_t>(dp_rank()) * local_batch();
  p.slots = pipeline_slots(parse_pipe_schedule(opts_.pp_schedule), S, stage,
                                 opts_.micro_batches);
  if (tp_model_) {
    p.shard.tp_size = tp_;
    p.shard.tp_rank = grid_->coords().tp;
    p.tp = &*tp_model_;
  }
  return p;
}

double Distributed::sum_over_sp_dp(double v) {
  if (grid_) grid_->sp_dp().all_reduce(std::span<double>(&v, 1));
  return v;
}

double Distributed::sum_over_dp(double v) {
  if (grid_) grid_->dp().all_reduce(std::span<double>(&v, 1));
  return v;
}

uint64_t Distributed::check_replicated(const float* params, const TensorTable& table) {
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

void Distributed::gather_logical_state(Trainer& tr, float* params, float* m, float* v) {
  // One replica of each shard (tensor-parallel slice of a pipeline stage) sends its runs, the
  // others send none; rank 0 assembles.
  const bool sends = grid_->coords().dp == 0 && grid_->coords().sp == 0;
  const auto runs = sends ? tr.model().logical_runs() : std::vector<model::LogicalRun>{};
  const int64_t n = tr.model().logical_total();
  // gather_logical works on host buffers: this rank's parameters and moments, copied out of
  // device memory first
  std::vector<float> local(static_cast<size_t>(tr.model().params().total()));
  tr.read_params(local.data());
  parallel::gather_logical(*world_, runs, local.data(), params, n, 0);
  // ZeRO: every rank holds the moments of its range of its shard's buffer only; those ranges'
  // pieces of the logical runs (moment_runs) from all ranks together cover the logical buffer
  const auto mruns = zero_ ? zero_->moment_runs() : runs;
  auto& opt = tr.optimizer();
  const auto len = static_cast<size_t>(opt.end() - opt.begin());
  std::vector<float> lm(len), lv(len);
  opt.read_moments(lm.data(), lv.data());
  parallel::gather_logical(*world_, mruns, lm.data(), m, n, 0);
  parallel::gather_logical(*world_, mruns, lv.data(), v, n, 0);
}

void Distributed::barrier() {
  if (world_) world_->barrier();
}

int64_t Distributed::max_over_world(int64_t v) {
  if (!world_) return v;
  std::vector<int64_t> all(static_cast<size_t>(world_->size()));
  world_->all_gather(std::span<const int64_t>(&v, 1), std::span<int64_t>(all));
  return *std::max_element(all.begin(), all.end());
}

}  // namespace seqvit::train
