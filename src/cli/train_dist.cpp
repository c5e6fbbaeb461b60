// Data and sequence parallelism for `seqvit train` (see train_dist.h).
#include "cli/train_dist.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "dist/logical.h"

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
                     const std::string& sp_outer, int zero)
    : dp_(dp), local_batch_(global_batch), global_batch_(global_batch) {
  if (dp < 1) fail("--dp must be >= 1, got {}", dp);
  if (sp < 1) fail("--sp must be >= 1, got {}", sp);
  if (zero < 0 || zero > 3)
    fail("--zero {} is out of range: valid stages are 0 (off), 1 (optimizer state), 2 (and "
         "gradients) and 3 (and parameters)",
         zero);
  const auto mode = dist::parse_sp_mode(sp_mode);
  if (zero > 0 && dp * sp == 1)
    fail("--zero {} shards over the data- and sequence-parallel ranks, but --dp 1 --sp 1 is a "
         "single rank; add --dp D (and/or --sp P) under mpirun -np D*P, or drop --zero",
         zero);
  if (zero == 3 && bf16)
    fail("--zero 3 runs in fp32 only (the bf16 weight copy would be the whole model); use "
         "--zero 1 or 2 with --bf16");
  if (dp == 1 && sp == 1) {
    if (launched_ranks() > 1)
      fail(
          "seqvit train was launched as {} ranks without --dp/--sp; pass --dp D --sp P with "
          "D*P = {} (e.g. --dp {}), or run it as one process",
          launched_ranks(), launched_ranks(), launched_ranks());
    return;
  }
  dist::GridConfig g;  // the SP degrees, checked before MPI starts
  g.dp = dp;
  g.zero = zero;
  dist::set_sp_degrees(g, sp, mode, sp_ulysses, dist::parse_sp_outer(sp_outer));
  if (sp > 1 && bf16)
    fail("--sp runs in fp32 only (the SP attention operators have no bf16 mode); drop --bf16");
  mpi_.emplace(nullptr, nullptr);
  world_.emplace(dist::Comm::world());
  if (world_->size() != g.world_size())
    fail("--dp {} --sp {} needs {} ranks (mpirun -np {}), but this job has {}", dp, sp,
         g.world_size(), g.world_size(), world_->size());
  dist::validate(g, world_->size(), mc, global_batch);
  local_batch_ = global_batch / dp;
  grid_.emplace(*world_, g);
  if (sp > 1) attn_.emplace(*grid_);
  reducer_.emplace(grid_->sp_dp());
  if (zero > 0) zero_.emplace(grid_->sp_dp(), zero);
}

void TrainDist::gather_optimizer(train::AdamW& shard, train::AdamW* full, int64_t total) {
  const auto runs = zero_->moment_runs();
  dist::gather_logical(grid_->sp_dp(), runs, shard.m(), full ? full->m() : nullptr, total, 0);
  dist::gather_logical(grid_->sp_dp(), runs, shard.v(), full ? full->v() : nullptr, total, 0);
  if (full) full->set_steps_done(shard.steps_done());
}

train::TrainerParallel TrainDist::trainer_parallel() {
  train::TrainerParallel p;
  p.sp = attn_ ? &*attn_ : nullptr;
  p.loss_batch = grid_ ? global_batch_ : 0;
  p.sharded = zero_ ? &*zero_ : nullptr;
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

uint64_t TrainDist::check_replicated(const float* params, int64_t n) {
  const uint64_t h = hash_floats(params, n);
  if (!grid_) return h;
  std::vector<int64_t> all(static_cast<size_t>(world_->size()));
  const int64_t mine = static_cast<int64_t>(h);
  world_->all_gather(std::span<const int64_t>(&mine, 1), std::span<int64_t>(all));
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r] != mine)
      fail(
          "the replicated weights differ between ranks: hash {:016x} on rank {}, {:016x} on "
          "rank {}",
          static_cast<uint64_t>(all[r]), r, h, grid_->rank());
  return h;
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
