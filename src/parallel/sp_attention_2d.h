// 2-D sequence parallelism (docs/parallelism.md "2-D SP"): Ulysses inside a group of U
// ranks, ring or LSS across the R groups, so that only U must divide (or, unevenly, not exceed)
// the heads while the sequence is split over P = U R ranks.
//
// The SP group's ranks are numbered sp = ring * U + ulysses (parallel/grid.h: the Ulysses sub-axis
// innermost), and rank sp owns tokens [sp N/P, (sp+1) N/P) as in 1-D SP. So the U ranks of
// Ulysses group `ring` together own the contiguous segment [ring N/R, (ring+1) N/R), and:
//
//   forward   q, k, v [B, N/P, Hh, d]  --all-to-all over sp_ulysses (Ulysses exchange of the
//             segment)-->  [B, N/R, Hh_u, d]: the whole segment for this rank's heads
//             (Hh_u = Hh/U, or floor/ceil of it) --ring or LSS over sp_ring, the R segments of
//             those heads-->  O [B, N/R, Hh_u, d]  --inverse all-to-all-->  O [B, N/P, Hh, d]
//   backward  dO the same way in; the ring / LSS backward on the segment; dQ, dK, dV back with
//             the inverse all-to-all (the exchange's adjoint).
//
// Every rank of a ring group has the same Ulysses coordinate, hence the same heads, so the ring
// / LSS operator runs unchanged on shape {B, N, Hh_u, d} over R ranks. The building blocks are
// the 1-D operators of parallel/sp_attention.h; nothing is reimplemented here.
#pragma once

#include <cstddef>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/sp_attention.h"

namespace seqvit::parallel {

// The functions of one 1-D scheme (ulysses, lss or ring), looked up by mode; throws for 2d.
struct SpScheme {
  size_t (*saved_bytes)(const SpAttentionShape&, int P);
  size_t (*workspace_bytes)(const SpAttentionShape&, int P, int threads);
  SpAttentionBytes (*bytes_sent)(const SpAttentionShape&, int P, int rank);
  void (*forward)(Comm& sp, const SpAttentionArgs&);
  void (*backward)(Comm& sp, const SpAttentionArgs&);
};
SpScheme sp_scheme(SpMode mode);

// `shape` is global (N over all P = U R ranks) and the caller's tensors are this rank's
// [B, N/P, Hh, d], exactly as for the 1-D operators; `outer` is SpMode::Ring or SpMode::Lss.
// saved: the segment's q, k, v [B, N/R, 3, Hh_u, d] and o [B, N/R, Hh_u, d] (4 B N D / P floats
// when U | Hh) and the outer scheme's saved state for {B, N, Hh_u, d} over R (ring: its LSE;
// LSS: also the gathered K, V of the segment's heads, 2 B N D / U). workspace: the Ulysses
// exchange buffers (2 x 3 B N D / P floats; the backward's segment dO and dQ, dK, dV alias them)
// and the outer scheme's workspace, flash kernels included.
size_t sp2d_saved_bytes(const SpAttentionShape& s, int U, int R, SpMode outer);
size_t sp2d_workspace_bytes(const SpAttentionShape& s, int U, int R, SpMode outer, int threads);
// Rank `rank` of the SP group (rank = ring * U + ulysses) sends the Ulysses bytes of the segment
// over U (ulysses_bytes_sent({B, N/R, Hh, d}, U, ulysses)) on sp_ulysses plus the outer scheme's
// bytes for its heads over R (ring_ or lss_bytes_sent({B, N, Hh_u, d}, R, ring)) on sp_ring.
// When U | Hh, per layer: forward 4 B N D (U-1)/(U P) + 2 B N D (R-1)/P; backward the same
// Ulysses term plus 4 B N D (R-1)/P (ring) or 2 B N D (R-1)/P (LSS).
SpAttentionBytes sp2d_bytes_sent(const SpAttentionShape& s, int U, int R, SpMode outer, int rank);
// Collective over both groups: every rank of the SP group calls with the same shape and outer.
void sp2d_attention_forward(Comm& sp_ulysses, Comm& sp_ring, SpMode outer,
                            const SpAttentionArgs& a);
// Reads only the saved state (not the caller's q, k, v, o) and dout; writes dq, dk, dv.
void sp2d_attention_backward(Comm& sp_ulysses, Comm& sp_ring, SpMode outer,
                             const SpAttentionArgs& a);

}  // namespace seqvit::parallel
