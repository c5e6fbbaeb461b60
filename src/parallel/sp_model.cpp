// The model's sequence-parallel attention hook over parallel/sp_attention.h (see sp_model.h).
#include "parallel/sp_model.h"

#include <span>

#include "core/check.h"
#include "parallel/sp_attention.h"
#include "parallel/sp_attention_2d.h"

namespace seqvit::parallel {

namespace {
SpAttentionShape shape_of(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim) {
  return {batch, tokens, heads, head_dim};
}

// The kernels' arguments over this rank's N/P tokens -> the SP operators' arguments.
SpAttentionArgs to_sp(const AttentionArgs& a, int P, void* saved, size_t saved_bytes) {
  SpAttentionArgs s;
  s.shape = shape_of(a.batch, a.nq * P, a.heads, a.head_dim);
  s.scale = a.scale;
  s.q = a.q;
  s.k = a.k;
  s.v = a.v;
  s.o = a.o;
  s.dout = a.dout;
  s.dq = a.dq;
  s.dk = a.dk;
  s.dv = a.dv;
  s.saved = saved;
  s.saved_bytes = saved_bytes;
  s.workspace = a.workspace;
  s.workspace_bytes = a.workspace_bytes;
  return s;
}
}  // namespace

SpBlockAttention::SpBlockAttention(Comm& sp, SpMode mode) : sp_(&sp), mode_(mode) {
  SEQVIT_CHECK(mode != SpMode::TwoD,
               "sp_mode 2d is not a one-communicator scheme; construct SpBlockAttention with "
               "the sp_ulysses and sp_ring communicators");
}

SpBlockAttention::SpBlockAttention(Comm& sp_ulysses, Comm& sp_ring, SpMode outer)
    : ulysses_(&sp_ulysses), ring_(&sp_ring), mode_(SpMode::TwoD), outer_(outer) {
  SEQVIT_CHECK(outer == SpMode::Ring || outer == SpMode::Lss,
               "sp_outer {} is not a scheme across Ulysses groups; use ring or lss",
               to_string(outer));
}

SpBlockAttention::SpBlockAttention(RankGrid& grid)
    : SpBlockAttention(grid.config().sp_mode == SpMode::TwoD
                           ? SpBlockAttention(grid.sp_ulysses(), grid.sp_ring(),
                                              grid.config().sp_outer)
                           : SpBlockAttention(grid.sp(), grid.config().sp_mode)) {}

int SpBlockAttention::size() const {
  return sp_ ? sp_->size() : ulysses_->size() * ring_->size();
}

int SpBlockAttention::rank() const {
  return sp_ ? sp_->rank() : ring_->rank() * ulysses_->size() + ulysses_->rank();
}

size_t SpBlockAttention::saved_bytes(int64_t batch, int64_t tokens, int64_t heads,
                                     int64_t head_dim) const {
  const auto s = shape_of(batch, tokens, heads, head_dim);
  return sp_ ? sp_scheme(mode_).saved_bytes(s, size())
             : sp2d_saved_bytes(s, ulysses_->size(), ring_->size(), outer_);
}

size_t SpBlockAttention::workspace_bytes(int64_t batch, int64_t tokens, int64_t heads,
                                         int64_t head_dim, int threads) const {
  const auto s = shape_of(batch, tokens, heads, head_dim);
  return sp_ ? sp_scheme(mode_).workspace_bytes(s, size(), threads)
             : sp2d_workspace_bytes(s, ulysses_->size(), ring_->size(), outer_, threads);
}

void SpBlockAttention::forward(const AttentionArgs& a, void* saved, size_t bytes) {
  const auto s = to_sp(a, size(), saved, bytes);
  if (sp_)
    sp_scheme(mode_).forward(*sp_, s);
  else
    sp2d_attention_forward(*ulysses_, *ring_, outer_, s);
}

void SpBlockAttention::backward(const AttentionArgs& a, void* saved, size_t bytes) {
  const auto s = to_sp(a, size(), saved, bytes);
  if (sp_)
    sp_scheme(mode_).backward(*sp_, s);
  else
    sp2d_attention_backward(*ulysses_, *ring_, outer_, s);
}

double sp_reduce_loss(Comm& sp, double partial_loss) {
  double loss = partial_loss;
  sp.all_reduce(std::span<double>(&loss, 1));
  return loss;
}

void sp_reduce_gradients(Comm& sp, float* grads, int64_t n) {
  sp.all_reduce(std::span<float>(grads, static_cast<size_t>(n)));
}

void sp_gather_pred(Comm& sp, const float* pred, float* recv, int64_t n, int root) {
  sp.reduce(std::span<const float>(pred, static_cast<size_t>(n)),
            std::span<float>(recv, recv && sp.rank() == root ? static_cast<size_t>(n) : 0), root);
}

}  // namespace seqvit::parallel
