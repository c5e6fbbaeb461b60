// The arguments of one non-causal attention call: shapes, strides and the buffers of Q, K, V,
// O (and for backward dO, dQ, dK, dV), the log-sum-exp, and scratch. Every backend's attention
// (backend/device.h) and the model's sequence-parallel hook (model/sequence_parallel.h) take
// this struct; the pointers are device memory of the backend that runs the call.
//
// Layout: each of Q, K, V, O, dO is addressed as [batch][token][head][dim] with dim contiguous
// and explicit element strides for batch, token and head, so the kernels read heads straight
// out of a packed qkv[B, N, 3, Hh, d] buffer without copies.
// LSE is [batch, heads, nq] contiguous: lse = max_j s_ij + log sum_j exp(s_ij - max), with
// s = scale * q.k. It lets partial results over different key ranges be merged exactly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace seqvit {

struct StridedTensor {  // one of Q, K, V, O, dO, dQ, dK, dV
  float* data = nullptr;
  int64_t sb = 0;  // batch stride (elements)
  int64_t sn = 0;  // token stride
  int64_t sh = 0;  // head stride
};

struct AttentionArgs {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, head_dim = 0;  // all >= 1; any head_dim
                                                                // (multiples of 16 fastest)
  float scale = 0.f;  // usually 1/sqrt(head_dim)
  bool bf16 = false;  // mixed precision: matrix inputs (Q, K, V, P, dO, dS) rounded to bf16,
                      // fp32 accumulation and fp32 outputs
  StridedTensor q, k, v, o;  // forward: reads q, k, v; writes o
  float* lse = nullptr;      // [batch, heads, nq]: written by forward, read by backward
  // backward only:
  StridedTensor dout;      // reads dO
  StridedTensor dq, dk, dv;  // written (or accumulated into, see accumulate)
  bool accumulate = false;   // backward: dq/dk/dv += instead of =
  // Dense attention only: the probabilities P [batch, heads, nq, nk] fp32 (dense_attention_
  // probs_floats()), written by forward and read by backward. Flash ignores it.
  float* probs = nullptr;
  // Scratch memory provided by the caller (planned before the step loop; kernels never
  // allocate). Size from attention_workspace_bytes(); may be null if that returns 0.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

}  // namespace seqvit
