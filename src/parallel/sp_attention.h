// Sequence-parallel attention (docs/parallelism.md "Sequence parallelism"): three ways
// to compute non-causal attention over a sequence whose tokens are split over the P ranks of an
// SP group, each a hand-paired forward / backward around the flash kernels (kernels/attention.h).
//
//   Ulysses  all-to-all to [B, N, Hh_r, d] (full sequence, this rank's heads), local flash
//            attention, inverse all-to-all of O; the backward mirrors it with dO and dQ, dK, dV.
//   LSS      one all-gather of the packed [K | V]; local queries against all N keys; the backward
//            reduce-scatters the packed [dK | dV] back to the owners of the rows.
//   Ring     K/V blocks travel around the ring (isend/irecv, double-buffered, overlapped with the
//            block's flash attention); partial outputs merge by their log-sum-exp. The backward
//            sends K/V around again together with the dK/dV accumulators of their block.
//
// Per rank r, the inputs and outputs are its own contiguous token range [r N/P, (r+1) N/P):
// Q, K, V, O, dO, dQ, dK, dV all [B, N/P, Hh, d], addressed with the flash kernels' strides (d
// contiguous), so they may be views into a packed qkv[B, N/P, 3, Hh, d]. The result equals
// single-process attention over all N tokens, sliced. All ranks of `sp` call with the same shape.
//
// Memory is planned by the caller: `saved` (scheme-specific activations kept from a forward to
// its backward, one region per attention layer, *_saved_bytes) and `workspace` (scratch, free
// between calls, may be shared by all layers, *_workspace_bytes). Nothing allocates per call.
// Byte counts land in the communicator's counters; *_bytes_sent gives the exact expected values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "parallel/comm.h"
#include "core/attention_args.h"

namespace seqvit::parallel {

// Global shape of one attention call: N is the whole sequence (N % P == 0); each rank holds
// N/P tokens of every head.
struct SpAttentionShape {
  int64_t batch = 0;     // B
  int64_t tokens = 0;    // N, over the whole SP group
  int64_t heads = 0;     // Hh
  int64_t head_dim = 0;  // d
};

struct SpAttentionArgs {
  SpAttentionShape shape;
  float scale = 0.f;                  // usually 1/sqrt(d)
  StridedTensor q, k, v, o;  // this rank's tokens, [B, N/P, Hh, d]: the forward
                                      // reads q, k, v and writes o; the LSS and ring
                                      // backwards read all four again (Ulysses' reads none:
                                      // it saved its full-sequence copies)
  StridedTensor dout;        // backward: dO [B, N/P, Hh, d], read
  StridedTensor dq, dk, dv;  // backward: [B, N/P, Hh, d], written (=, not +=)
  void* saved = nullptr;              // forward -> backward of this call: *_saved_bytes
  size_t saved_bytes = 0;
  void* workspace = nullptr;  // scratch: *_workspace_bytes
  size_t workspace_bytes = 0;
};

// Bytes this rank sends in one forward and in one backward (what the comm counters record).
struct SpAttentionBytes {
  uint64_t forward = 0;
  uint64_t backward = 0;
};

// ---- Ulysses ---------------------------------------------------------------------------------
// Heads are dealt to ranks in contiguous ranges, the first Hh % P ranks one more: rank r owns
// heads [first, first + count). Needs Hh >= P.
struct HeadRange {
  int64_t first = 0;
  int64_t count = 0;
};
HeadRange ulysses_heads(int64_t heads, int P, int rank);

// saved: qkv [B, N, 3, Hh_r, d], o [B, N, Hh_r, d], lse [B, Hh_r, N] (sized for the largest Hh_r,
// so the same on every rank): 4 B N D / P floats when P | Hh. workspace: two exchange buffers of
// 3 B N D / P floats each and the flash kernels' scratch for `threads` OpenMP threads.
size_t ulysses_saved_bytes(const SpAttentionShape& s, int P);
size_t ulysses_workspace_bytes(const SpAttentionShape& s, int P, int threads);
// forward: B (N/P) d (3 (Hh - Hh_r) + (P-1) Hh_r) floats, 4 B N D (P-1) / P^2 when P | Hh;
// backward: B (N/P) d ((Hh - Hh_r) + 3 (P-1) Hh_r) floats, the same when P | Hh.
SpAttentionBytes ulysses_bytes_sent(const SpAttentionShape& s, int P, int rank);
void ulysses_attention_forward(Comm& sp, const SpAttentionArgs& a);
void ulysses_attention_backward(Comm& sp, const SpAttentionArgs& a);

// ---- LSS (segment SP) ------------------------------------------------------------------------
// saved: kv [B, N, 2, Hh, d] (the gathered keys and values: O(N) memory), lse [B, Hh, N/P].
// workspace: 4 B N D + 2 B N D / P floats (gathered blocks, full dK/dV, own [K | V]) and the
// flash kernels' scratch.
size_t lss_saved_bytes(const SpAttentionShape& s, int P);
size_t lss_workspace_bytes(const SpAttentionShape& s, int P, int threads);
// forward and backward: 2 B (N/P) Hh d (P-1) floats = 2 B N D (P-1)/P.
SpAttentionBytes lss_bytes_sent(const SpAttentionShape& s, int P, int rank);
void lss_attention_forward(Comm& sp, const SpAttentionArgs& a);
void lss_attention_backward(Comm& sp, const SpAttentionArgs& a);

// ---- Ring ------------------------------------------------------------------------------------
// saved: lse [B, Hh, N/P] only (the backward re-circulates K and V): O(N/P) memory.
// workspace: 10 B N D / P floats (two K/V blocks; two dK/dV accumulators and the incoming one, or
// the forward's partial output) and the flash kernels' scratch.
size_t ring_saved_bytes(const SpAttentionShape& s, int P);
size_t ring_workspace_bytes(const SpAttentionShape& s, int P, int threads);
// forward: 2 B N D (P-1)/P in P-1 messages of [K | V]; backward: twice that, the K/V blocks
// (P-1 messages) and the dK/dV accumulators (P-1 messages).
SpAttentionBytes ring_bytes_sent(const SpAttentionShape& s, int P, int rank);
void ring_attention_forward(Comm& sp, const SpAttentionArgs& a);
void ring_attention_backward(Comm& sp, const SpAttentionArgs& a);

// ---- Building blocks (2-D SP composes them: parallel/sp_attention_2d.h) ---------------------------
// The checks every operator runs before its first collective, for a group of P ranks named
// `group`: positive shape and scale, tokens % P == 0, the tensors the call reads and writes
// set (`inputs`: whether it reads the caller's q, k, v, o), saved and workspace at least
// saved_need and ws_need bytes. Throws seqvit::Error naming `scheme` and the values.
void check_sp_args(const char* scheme, std::string_view group, int P, const SpAttentionArgs& a,
                   bool backward, size_t saved_need, size_t ws_need, bool inputs = true);

// The Ulysses exchange on its own. Its buffers are the first ulysses_buffers(..).bytes of a
// Ulysses workspace (workspace == nullptr: sizes only):
struct UlyssesBuffers {
  float* send = nullptr;      // [X], X = 3 B d max(N/P Hh, N Hh_max): the largest exchange
  float* recv = nullptr;      // [X]
  size_t bytes = 0;           // the two, 64-byte aligned
};
UlyssesBuffers ulysses_buffers(const SpAttentionShape& s, int P, void* workspace);
// seq_to_heads: `parts` tensors (q, k, v, or one) of this rank's tokens, each [B, N/P, Hh, d]
// strided -> full [B][N][parts][Hh_r][d] (all N tokens of the group, this rank's heads).
// heads_to_seq: the inverse, which is also the adjoint. Both leave `send` and `recv` free once
// they return: send holds nothing the caller needs, so `full` may alias send in seq_to_heads
// (written after the exchange) and recv in heads_to_seq (read before it).
void ulysses_seq_to_heads(Comm& sp, const SpAttentionShape& s, const StridedTensor* in,
                          int64_t parts, float* full, const UlyssesBuffers& b);
void ulysses_heads_to_seq(Comm& sp, const SpAttentionShape& s, const float* full, int64_t parts,
                          const StridedTensor* out, const UlyssesBuffers& b);

}  // namespace seqvit::parallel
