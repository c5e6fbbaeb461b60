// Attention on the GPU (docs/cuda.md "Attention"): the three kinds of backend/device.h with the
// CPU kernels' contract (kernels/attention.h): non-causal, Q/K/V/O/dO/dQ/dK/dV strided
// [batch][token][head][dim], lse [batch, heads, nq] in natural log, `accumulate` for the
// backward, bf16 = matrix inputs rounded to bf16 with fp32 accumulation and fp32 outputs.
//
//  - Flash: own FlashAttention-2 style kernels (flash_attention.cu), head_dim <= 128; bf16 uses
//    tensor cores (WMMA bf16 fragments), fp32 is exact fp32 FMA. nq <= 16 (ClimaX's variable
//    aggregation) takes a one-warp-per-query-row path that splits long key ranges over warps.
//  - Dense: P = softmax(scale Q K^T) written to a.probs, O = P V; backward from P.
//  - Naive: the one-thread-per-query-row oracle.
//
// All run on stream `s` and never allocate: scratch comes from a.workspace, at least
// attention_workspace_bytes(kind, a) bytes (one size for forward and backward). Arguments are
// checked here, on the host, before anything is enqueued; errors name the bad value.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/device.h"
#include "core/attention_args.h"

namespace seqvit::backend::cuda {

size_t attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a);
void attention_forward(AttentionKind kind, const AttentionArgs& a, cudaStream_t s);
void attention_backward(AttentionKind kind, const AttentionArgs& a, cudaStream_t s);

}  // namespace seqvit::backend::cuda
