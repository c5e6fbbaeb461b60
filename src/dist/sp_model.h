// ClimaX under sequence parallelism (docs/parallelism.md "The model under sequence
// parallelism"): the model's attention hook (model/sequence_parallel.h) implemented with the
// Ulysses, LSS and ring operators of dist/sp_attention.h, and the reductions that turn the
// shards' partial results into the single-process ones.
#pragma once

#include <cstdint>

#include "dist/comm.h"
#include "dist/grid.h"
#include "model/sequence_parallel.h"

namespace seqvit::dist {

// Block attention of one shard of the SP group `sp` with scheme `mode` (ulysses, lss or ring;
// 2d is not a 1-D operator). `sp` must outlive this object.
class SpBlockAttention final : public model::SequenceParallelAttention {
 public:
  SpBlockAttention(Comm& sp, SpMode mode);

  int size() const override { return sp_.size(); }
  int rank() const override { return sp_.rank(); }
  size_t saved_bytes(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim) const override;
  size_t workspace_bytes(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                         int threads) const override;
  void forward(const kernels::AttentionArgs& a, void* saved, size_t saved_bytes) override;
  void backward(const kernels::AttentionArgs& a, void* saved, size_t saved_bytes) override;

 private:
  Comm& sp_;
  SpMode mode_;
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

}  // namespace seqvit::dist
