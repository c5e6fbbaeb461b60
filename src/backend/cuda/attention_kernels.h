// Internal to the CUDA attention (attention.h): the workspace plans that attention.cpp computes
// and checks, and the launchers of the kernels in flash_attention.cu and attention_dense.cu.
// Arguments reaching a launcher have been validated (shapes, pointers, head_dim, workspace);
// the launchers only check their own launches. No fmt here: nvcc compiles the users.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/attention_args.h"

namespace seqvit::backend::cuda {

constexpr int64_t kFlashMaxHeadDim = 128;
// At most this many queries per (batch, head) take the few-query ("rows") path.
constexpr int64_t kFewQueryMaxNq = 16;

inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// Flash attention. Tiled path (nq > kFewQueryMaxNq): forward needs no workspace; backward
// keeps Dv = rowsum(dO * O) [BH * nq] at dv. Few-query path: the forward splits the keys of
// each query row into fwd_splits chunks of fwd_chunk keys (partial o [BH * nq][splits][d] at
// part_o, partial lse [BH * nq][splits] at part_lse, merged by a second kernel) when
// fwd_splits > 1; the backward gives each warp bwd_chunk keys of one (batch, head).
struct FlashPlan {
  bool rows = false;  // the few-query path
  int64_t fwd_splits = 1, fwd_chunk = 0, bwd_splits = 1, bwd_chunk = 0;
  size_t part_o = 0, part_lse = 0;  // forward, rows path with fwd_splits > 1
  size_t dv = 0;                    // backward: Dv [BH * nq] fp32
  size_t fwd_bytes = 0, bwd_bytes = 0;
};

// Dense attention: forward needs no workspace (P goes to a.probs). Backward runs chunks of
// `chunk` (batch, head) pairs: dP, then dS in place, [chunk][nq][nk] fp32 at ds.
struct DensePlan {
  int64_t chunk = 1;
  size_t ds = 0;
  size_t bwd_bytes = 0;
};

// The naive oracle: backward sums dQ [BH][nq][d], dK and dV [BH][nk][d] (fp32, unscaled) in the
// workspace before adding them to the outputs; forward needs none.
struct NaivePlan {
  size_t dq = 0, dk = 0, dv = 0;
  size_t bwd_bytes = 0;
};

void flash_forward_launch(const AttentionArgs& a, const FlashPlan& p, cudaStream_t s);
void flash_backward_launch(const AttentionArgs& a, const FlashPlan& p, cudaStream_t s);
void dense_forward_launch(const AttentionArgs& a, cudaStream_t s);
void dense_backward_launch(const AttentionArgs& a, const DensePlan& p, cudaStream_t s);
void naive_forward_launch(const AttentionArgs& a, cudaStream_t s);
void naive_backward_launch(const AttentionArgs& a, const NaivePlan& p, cudaStream_t s);

}  // namespace seqvit::backend::cuda
