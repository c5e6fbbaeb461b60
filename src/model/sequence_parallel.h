// The model's hook for sequence parallelism (docs/parallelism.md "The model under
// sequence parallelism"). ClimaX::plan() takes one of these to run as shard `rank()` of
// `size()` = P: the rank owns the contiguous token range [rank N/P, (rank+1) N/P) and runs the
// embeddings, LayerNorms, MLPs, head and loss on those tokens only. Block attention is the one
// place where tokens meet, so it is the one call that goes through this interface; src/parallel
// implements it with the Ulysses, LSS and ring operators (parallel/sp_model.h), which keeps the
// model library free of MPI.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/attention_args.h"

namespace seqvit::model {

class SequenceParallelAttention {
 public:
  virtual ~SequenceParallelAttention() = default;

  virtual int size() const = 0;  // P, the SP group size
  virtual int rank() const = 0;  // this rank's position in the group

  // Memory, planned by ClimaX::plan() for batches of up to `batch` samples of the whole
  // sequence of `tokens` (N over the group): bytes kept from one block's forward to its
  // backward (one region per block) and scratch shared by every block.
  virtual size_t saved_bytes(int64_t batch, int64_t tokens, int64_t heads,
                             int64_t head_dim) const = 0;
  virtual size_t workspace_bytes(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                                 int threads) const = 0;

  // `a` describes this rank's tokens as for the flash kernels: batch B, nq = nk = N/P, q, k, v,
  // o (and for backward dout, dq, dk, dv, written with =), scale, workspace (at least
  // workspace_bytes). a.lse and a.bf16 are not used (the scheme keeps its LSE in `saved`).
  // Collective over the group: every rank calls with the same shape.
  virtual void forward(const AttentionArgs& a, void* saved, size_t saved_bytes) = 0;
  virtual void backward(const AttentionArgs& a, void* saved, size_t saved_bytes) = 0;
};

}  // namespace seqvit::model
