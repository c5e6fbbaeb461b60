// The CUDA attention's boundary (attention.h): argument checks, workspace plans, dispatch to
// the kernels of flash_attention.cu and attention_dense.cu. See docs/cuda.md "Attention".
#include "backend/cuda/attention.h"

#include <algorithm>
#include <cmath>

#include "backend/cuda/attention_kernels.h"
#include "core/check.h"

namespace seqvit::backend::cuda {
namespace {

// Warps the few-query path aims for: a few times what an H100 keeps resident (132 SMs x 64),
// so that splitting keys hides latency on any current GPU. A constant, not a device query, so
// that the workspace size depends on the shape alone (the planner asks for other machines).
constexpr int64_t kTargetWarps = 16384;
// The few-query forward gives each split at least this many keys (the merge costs one partial
// row per split), the backward each warp at least kMinBwdChunk keys (one dQ atomic flush per
// warp and query row).
constexpr int64_t kMinFwdChunk = 128;
constexpr int64_t kMinBwdChunk = 32;
// Dense backward: dS of as many (batch, head) pairs at once as fit in this many bytes (at least
// one pair), so that its scratch does not double the O(B H N^2) memory of the stored P.
constexpr size_t kDenseScratchBytes = size_t{256} << 20;

int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

const char* kind_name(AttentionKind k) {
  switch (k) {
    case AttentionKind::Flash: return "flash";
    case AttentionKind::Dense: return "dense";
    case AttentionKind::Naive: return "naive";
  }
  return "?";
}

void check_shape(AttentionKind kind, const AttentionArgs& a) {
  SEQVIT_CHECK(a.batch >= 1 && a.heads >= 1 && a.nq >= 1 && a.nk >= 1 && a.head_dim >= 1,
               "cuda {} attention: need batch, heads, nq, nk, head_dim >= 1, got batch={} "
               "heads={} nq={} nk={} head_dim={}",
               kind_name(kind), a.batch, a.heads, a.nq, a.nk, a.head_dim);
  if (kind == AttentionKind::Flash && a.head_dim > kFlashMaxHeadDim)
    seqvit::fail("cuda flash attention: head_dim={} is above the {} the kernels support (one tile of "
         "64 rows x head_dim per block in shared memory); use fewer dimensions per head (more "
         "heads) or dense attention",
         a.head_dim, kFlashMaxHeadDim);
}

FlashPlan flash_plan(const AttentionArgs& a) {
  FlashPlan p;
  const int64_t BH = a.batch * a.heads, R = BH * a.nq;
  const size_t f = sizeof(float);
  p.rows = a.nq <= kFewQueryMaxNq;
  if (p.rows) {
    int64_t splits = R >= kTargetWarps ? 1 : ceil_div(kTargetWarps, R);
    splits = std::max<int64_t>(1, std::min(splits, ceil_div(a.nk, kMinFwdChunk)));
    p.fwd_chunk = ceil_div(a.nk, splits);
    p.fwd_splits = ceil_div(a.nk, p.fwd_chunk);  // every split non-empty
    if (p.fwd_splits > 1) {
      const size_t parts = static_cast<size_t>(R) * static_cast<size_t>(p.fwd_splits);
      p.part_o = 0;
      p.part_lse = align256(parts * static_cast<size_t>(a.head_dim) * f);
      p.fwd_bytes = p.part_lse + align256(parts * f);
    }
    int64_t bsplits = BH >= kTargetWarps ? 1 : ceil_div(kTargetWarps, BH);
    bsplits = std::max<int64_t>(1, std::min(bsplits, ceil_div(a.nk, kMinBwdChunk)));
    p.bwd_chunk = ceil_div(a.nk, bsplits);
    p.bwd_splits = ceil_div(a.nk, p.bwd_chunk);
  }
  p.dv = 0;
  p.bwd_bytes = align256(static_cast<size_t>(R) * f);
  return p;
}

DensePlan dense_plan(const AttentionArgs& a) {
  DensePlan p;
  const int64_t BH = a.batch * a.heads;
  const size_t per_pair = static_cast<size_t>(a.nq) * static_cast<size_t>(a.nk) * sizeof(float);
  p.chunk = std::clamp<int64_t>(static_cast<int64_t>(kDenseScratchBytes / per_pair), 1, BH);
  p.ds = 0;
  p.bwd_bytes = align256(static_cast<size_t>(p.chunk) * per_pair);
  return p;
}

NaivePlan naive_plan(const AttentionArgs& a) {
  NaivePlan p;
  const size_t BH = static_cast<size_t>(a.batch * a.heads), d = static_cast<size_t>(a.head_dim);
  const size_t q = align256(BH * static_cast<size_t>(a.nq) * d * sizeof(float));
  const size_t k = align256(BH * static_cast<size_t>(a.nk) * d * sizeof(float));
  p.dq = 0;
  p.dk = q;
  p.dv = q + k;
  p.bwd_bytes = q + 2 * k;
  return p;
}

size_t needed_bytes(AttentionKind kind, const AttentionArgs& a, bool backward) {
  switch (kind) {
    case AttentionKind::Flash: {
      const FlashPlan p = flash_plan(a);
      return backward ? p.bwd_bytes : p.fwd_bytes;
    }
    case AttentionKind::Dense: return backward ? dense_plan(a).bwd_bytes : 0;
    case AttentionKind::Naive: return backward ? naive_plan(a).bwd_bytes : 0;
  }
  return 0;
}

void check_call(AttentionKind kind, const AttentionArgs& a, bool backward) {
  check_shape(kind, a);
  const char* k = kind_name(kind);
  const char* dir = backward ? "backward" : "forward";
  SEQVIT_CHECK(a.scale > 0.f && std::isfinite(a.scale),
               "cuda {} attention {}: scale={} must be positive (usually 1/sqrt(head_dim))", k,
               dir, a.scale);
  SEQVIT_CHECK(a.q.data && a.k.data && a.v.data && a.o.data && a.lse,
               "cuda {} attention {}: q, k, v, o and lse must be set", k, dir);
  if (backward)
    SEQVIT_CHECK(a.dout.data && a.dq.data && a.dk.data && a.dv.data,
                 "cuda {} attention backward: dout, dq, dk and dv must be set", k);
  if (kind == AttentionKind::Dense)
    SEQVIT_CHECK(a.probs, "cuda dense attention {}: probs [batch, heads, nq, nk] must be set", dir);
  const size_t need = needed_bytes(kind, a, backward);
  const size_t have = a.workspace ? a.workspace_bytes : 0;
  if (have < need)
    seqvit::fail("cuda {} attention {}: workspace of {} bytes is too small; this shape (batch={} heads={} "
         "nq={} nk={} head_dim={}) needs attention_workspace_bytes() = {} bytes",
         k, dir, have, a.batch, a.heads, a.nq, a.nk, a.head_dim,
         attention_workspace_bytes(kind, a));
}

}  // namespace

size_t attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a) {
  check_shape(kind, a);
  return std::max(needed_bytes(kind, a, false), needed_bytes(kind, a, true));
}

void attention_forward(AttentionKind kind, const AttentionArgs& a, cudaStream_t s) {
  check_call(kind, a, false);
  switch (kind) {
    case AttentionKind::Flash: return flash_forward_launch(a, flash_plan(a), s);
    case AttentionKind::Dense: return dense_forward_launch(a, s);
    case AttentionKind::Naive: return naive_forward_launch(a, s);
  }
}

void attention_backward(AttentionKind kind, const AttentionArgs& a, cudaStream_t s) {
  check_call(kind, a, true);
  switch (kind) {
    case AttentionKind::Flash: return flash_backward_launch(a, flash_plan(a), s);
    case AttentionKind::Dense: return dense_backward_launch(a, dense_plan(a), s);
    case AttentionKind::Naive: return naive_backward_launch(a, naive_plan(a), s);
  }
}

}  // namespace seqvit::backend::cuda
