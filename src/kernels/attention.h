// Non-causal scaled-dot-product attention: flash (tiled, online softmax, O(N) memory) and a
// naive O(N^2) oracle with the same interface. See docs/flash_attention.md.
//
// Layout: each of Q, K, V, O, dO is addressed as [batch][token][head][dim] with dim contiguous
// and explicit element strides for batch, token and head, so the kernels read heads straight
// out of a packed qkv[B, N, 3, Hh, d] buffer without copies.
// LSE is [batch, heads, nq] contiguous: lse = max_j s_ij + log sum_j exp(s_ij - max), with
// s = scale * q.k. It lets partial results over different key ranges be merged exactly.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/attention_args.h"

namespace seqvit::kernels {

// The argument structs live in core/ (core/attention_args.h) so that the layers above the
// backend describe attention calls without seeing these kernels.
using seqvit::AttentionArgs;
using seqvit::StridedTensor;

// Bytes of scratch the flash kernels need for this shape with `threads` OpenMP threads.
// (covers forward and backward; depends on heads/nq/head_dim/batch, not on data.)
size_t flash_attention_workspace_bytes(const AttentionArgs& a, int threads);
void flash_attention_forward(const AttentionArgs& a);
void flash_attention_backward(const AttentionArgs& a);

// Dense ("standard") attention, as PyTorch's manual softmax(Q K^T * scale) V: per (batch,
// head) the score matrix by a GEMM, the row softmax into `probs` (kept for backward: O(B H nq
// nk) memory, what flash avoids), O = P V. Backward from the stored P: dV = P^T dO,
// dP = dO V^T, dS = P (dP - rowsum(dO O)), dQ = scale dS K, dK = scale dS^T Q. bf16: Q, K, V,
// P, dO and dS enter the GEMMs as bf16 (fp32 accumulation), P itself is stored in fp32.
// Same outputs (and lse) as flash. Scratch from dense_attention_workspace_bytes().
size_t dense_attention_probs_floats(const AttentionArgs& a);  // batch * heads * nq * nk
size_t dense_attention_workspace_bytes(const AttentionArgs& a, int threads);
void dense_attention_forward(const AttentionArgs& a);
void dense_attention_backward(const AttentionArgs& a);

// The oracle: materialises the score matrix per (batch, head). Same semantics, same outputs
// (including lse), allocates freely; for tests and small problems only.
void naive_attention_forward(const AttentionArgs& a);
void naive_attention_backward(const AttentionArgs& a);

}  // namespace seqvit::kernels
