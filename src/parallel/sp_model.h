// ClimaX under sequence parallelism (docs/parallelism.md "The model under sequence
// parallelism"): the model's attention hook (model/sequence_parallel.h) implemented with the
// Ulysses, LSS and ring operators of parallel/sp_attention.h (or their 2-D composition,
// parallel/sp_attention_2d.h), and the reductions that turn the
// shards' partial results into the single-process ones.
#pragma once

#include <cstdint>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "model/sequence_parallel.h"

namespace seqvit::parallel {

// Block attention of one shard of the SP group. `sp` (or both 2-D groups, and the grid) must
// outlive this object.
class SpBlockAttention final : public model::SequenceParallelAttention {
 public:
  // 1-D: scheme `mode` (ulysses, lss or ring) over `sp`.
  SpBlockAttention(Comm& sp, SpMode mode);
  // 2-D (parallel/sp_attention_2d.h): Ulysses over `sp_ulysses` inside each group, `outer` (ring or
  // lss) over `sp_ring` across them; this shard is number sp_ring.rank() * U + sp_ulysses.rank().
  SpBlockAttention(Comm& sp_ulysses, Comm& sp_ring, SpMode outer);
  // The grid's scheme (config().sp_mode, and sp_outer for 2d) over its communicators.
  explicit SpBlockAttention(RankGrid& grid);

  int size() const override;
  int rank() const override;
  size_t saved_bytes(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim) const override;
  size_t workspace_bytes(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                         int threads) const override;
  void forward(const AttentionArgs& a, void* saved, size_t saved_bytes) override;
  void backward(const AttentionArgs& a, void* saved, size_t saved_bytes) override;

 private:
  Comm* sp_ = nullptr;       // 1-D
  Comm* ulysses_ = nullptr;  // 2-D
  Comm* ring_ = nullptr;
  SpMode mode_;
  SpMode outer_ = SpMode::Ring;  // 2-D only
};

// After ClimaX::forward/backward on every shard: sums the loss and the partial gradient
// grads[n] over the group (all-reduce: every rank ends with the full gradient, ready for DP
// averaging or an optimizer step on replicated weights).
double sp_reduce_loss(Comm& sp, double partial_loss);
void sp_reduce_gradients(Comm& sp, float* grads, int64_t n);
// pred[n] ([B, Vo, H, W]): each rank holds its own tokens' pixels and zeros elsewhere; every
// pixel belongs to exactly one rank, so the sum onto `root` is the gathered prediction (exact).
// recv may be null except on root.
void sp_gather_pred(Comm& sp, const float* pred, float* recv, int64_t n, int root);

}  // namespace seqvit::parallel
