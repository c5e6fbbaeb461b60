// 2-D sequence parallelism: the Ulysses exchange over sp_ulysses around the ring or LSS operator
// over sp_ring (sp_attention_2d.h, docs/parallelism.md "2-D SP").
//
// Buffers (Hh_u = this rank's heads of the segment, regions sized for Hm = ceil(Hh / U) so that
// every rank plans the same bytes; Ns = N / R, the segment):
//
//   saved      qkv   [B][Ns][3][Hh_u][d]   the segment's q, k, v for this rank's heads
//              o     [B][Ns][Hh_u][d]      its attention output
//              outer the ring / LSS saved state of {B, N, Hh_u, d} over R
//   workspace  x     Ulysses exchange buffers (counts, send, recv) of {B, Ns, Hh, d} over U;
//                    backward: dO of the segment is unpacked into x.send and the outer
//                    backward writes dq, dk, dv [B][Ns][3][Hh_u][d] into x.recv (as in 1-D
//                    Ulysses), so the outer scheme's workspace comes after them
//              outer the ring / LSS workspace, flash kernels included
#include "parallel/sp_attention_2d.h"

#include "core/check.h"

namespace seqvit::parallel {
namespace {

using seqvit::StridedTensor;

size_t align64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// Part c of a packed [B][n][parts][H][d] buffer, as the flash kernels address it.
StridedTensor part(float* base, int64_t n, int64_t parts, int64_t H, int64_t d, int64_t c) {
  return StridedTensor{base + c * H * d, n * parts * H * d, parts * H * d, d};
}

// The two sub-problems of one call on rank (ring, ulysses) = (q, u).
struct Shapes {
  SpAttentionShape segment;  // {B, N/R, Hh, d} over the U ranks of sp_ulysses
  SpAttentionShape outer;    // {B, N, Hh_u, d} over the R ranks of sp_ring
  SpAttentionShape planned;  // {B, N, Hm, d}: what the buffers are sized for
};

Shapes shapes(const SpAttentionShape& s, int U, int R, int u) {
  const int64_t Hm = (s.heads + U - 1) / U;
  return Shapes{{s.batch, s.tokens / R, s.heads, s.head_dim},
                {s.batch, s.tokens, ulysses_heads(s.heads, U, u).count, s.head_dim},
                {s.batch, s.tokens, Hm, s.head_dim}};
}

struct Layout {
  float* qkv = nullptr;  // saved: [B][Ns][3][Hh_u][d]
  float* o = nullptr;    // saved: [B][Ns][Hh_u][d]
  char* outer_saved = nullptr;
  size_t saved_bytes = 0;
  UlyssesBuffers x;  // workspace
  char* outer_ws = nullptr;
  size_t ws_head = 0;  // bytes before outer_ws (x)
  size_t outer_ws_bytes = 0;
};

// saved / ws == nullptr: sizes only.
Layout layout(const SpAttentionShape& s, int U, int R, SpMode outer, int threads, void* saved,
              void* ws) {
  const Shapes sh = shapes(s, U, R, 0);
  const SpScheme o = sp_scheme(outer);
  const size_t seg = static_cast<size_t>(sh.segment.batch * sh.segment.tokens *
                                         sh.planned.heads * s.head_dim) *
                     sizeof(float);
  Layout L;
  char* sv = static_cast<char*>(saved);
  L.qkv = sv ? reinterpret_cast<float*>(sv) : nullptr;
  L.o = sv ? reinterpret_cast<float*>(sv + align64(3 * seg)) : nullptr;
  const size_t head = align64(3 * seg) + align64(seg);
  L.outer_saved = sv ? sv + head : nullptr;
  L.saved_bytes = head + o.saved_bytes(sh.planned, R);
  L.x = ulysses_buffers(sh.segment, U, ws);
  L.ws_head = L.x.bytes;
  L.outer_ws = ws ? static_cast<char*>(ws) + L.ws_head : nullptr;
  L.outer_ws_bytes = o.workspace_bytes(sh.planned, R, threads);
  return L;
}

// Checks the whole call before the first collective (the shape is the same on every rank, so a
// shape error throws everywhere alike).
void validate(const Comm& uly, const Comm& ring, SpMode outer, const SpAttentionArgs& a,
              bool backward) {
  if (outer != SpMode::Ring && outer != SpMode::Lss)
    fail("sp2d attention: the scheme across Ulysses groups must be ring or lss, got {}",
         to_string(outer));
  const int U = uly.size(), R = ring.size();
  if (a.shape.heads < U)
    fail(
        "sp2d attention: {} heads cannot be split over the {} ranks of communicator '{}': every "
        "rank needs at least one head; use a Ulysses degree of at most {}",
        a.shape.heads, U, uly.name(), a.shape.heads);
  const Layout L = layout(a.shape, U, R, outer, 1, nullptr, nullptr);
  // (a literal group name: nothing allocates per call)
  check_sp_args("sp2d", "sp_ulysses x sp_ring", U * R, a, backward,
                L.saved_bytes, L.ws_head + L.outer_ws_bytes, /*inputs=*/!backward);
}

// The outer scheme's arguments over the segment buffers of this rank's heads.
SpAttentionArgs outer_args(const SpAttentionArgs& a, const Shapes& sh, const Layout& L) {
  const int64_t Ns = sh.segment.tokens, H = sh.outer.heads, d = a.shape.head_dim;
  SpAttentionArgs o;
  o.shape = sh.outer;
  o.scale = a.scale;
  o.q = part(L.qkv, Ns, 3, H, d, 0);
  o.k = part(L.qkv, Ns, 3, H, d, 1);
  o.v = part(L.qkv, Ns, 3, H, d, 2);
  o.o = part(L.o, Ns, 1, H, d, 0);
  o.saved = L.outer_saved;
  o.saved_bytes = a.saved_bytes - static_cast<size_t>(L.outer_saved - static_cast<char*>(a.saved));
  o.workspace = L.outer_ws;
  o.workspace_bytes = a.workspace_bytes - L.ws_head;
  return o;
}

}  // namespace

SpScheme sp_scheme(SpMode mode) {
  switch (mode) {
    case SpMode::Ulysses:
      return {ulysses_saved_bytes, ulysses_workspace_bytes, ulysses_bytes_sent,
              ulysses_attention_forward, ulysses_attention_backward};
    case SpMode::Lss:
      return {lss_saved_bytes, lss_workspace_bytes, lss_bytes_sent, lss_attention_forward,
              lss_attention_backward};
    case SpMode::Ring:
      return {ring_saved_bytes, ring_workspace_bytes, ring_bytes_sent, ring_attention_forward,
              ring_attention_backward};
    case SpMode::TwoD:
      break;
  }
  fail("sp_mode {} is not a one-communicator scheme; use ulysses, lss or ring",
       to_string(mode));
}

size_t sp2d_saved_bytes(const SpAttentionShape& s, int U, int R, SpMode outer) {
  return layout(s, U, R, outer, 1, nullptr, nullptr).saved_bytes;
}

size_t sp2d_workspace_bytes(const SpAttentionShape& s, int U, int R, SpMode outer, int threads) {
  const Layout L = layout(s, U, R, outer, threads, nullptr, nullptr);
  return L.ws_head + L.outer_ws_bytes;
}

SpAttentionBytes sp2d_bytes_sent(const SpAttentionShape& s, int U, int R, SpMode outer,
                                 int rank) {
  const int u = rank % U, q = rank / U;
  const Shapes sh = shapes(s, U, R, u);
  const SpAttentionBytes a = ulysses_bytes_sent(sh.segment, U, u);
  const SpAttentionBytes b = sp_scheme(outer).bytes_sent(sh.outer, R, q);
  return {a.forward + b.forward, a.backward + b.backward};
}

void sp2d_attention_forward(Comm& uly, Comm& ring, SpMode outer, const SpAttentionArgs& a) {
  validate(uly, ring, outer, a, false);
  const Shapes sh = shapes(a.shape, uly.size(), ring.size(), uly.rank());
  const Layout L = layout(a.shape, uly.size(), ring.size(), outer, 1, a.saved, a.workspace);
  const StridedTensor in[3] = {a.q, a.k, a.v};
  ulysses_seq_to_heads(uly, sh.segment, in, 3, L.qkv, L.x);
  sp_scheme(outer).forward(ring, outer_args(a, sh, L));
  ulysses_heads_to_seq(uly, sh.segment, L.o, 1, &a.o, L.x);
}

void sp2d_attention_backward(Comm& uly, Comm& ring, SpMode outer, const SpAttentionArgs& a) {
  validate(uly, ring, outer, a, true);
  const Shapes sh = shapes(a.shape, uly.size(), ring.size(), uly.rank());
  const Layout L = layout(a.shape, uly.size(), ring.size(), outer, 1, a.saved, a.workspace);
  const int64_t Ns = sh.segment.tokens, H = sh.outer.heads, d = a.shape.head_dim;
  ulysses_seq_to_heads(uly, sh.segment, &a.dout, 1, L.x.send, L.x);  // dO [B][Ns][Hh_u][d]
  SpAttentionArgs o = outer_args(a, sh, L);
  o.dout = part(L.x.send, Ns, 1, H, d, 0);
  o.dq = part(L.x.recv, Ns, 3, H, d, 0);  // dq, dk, dv [B][Ns][3][Hh_u][d]
  o.dk = part(L.x.recv, Ns, 3, H, d, 1);
  o.dv = part(L.x.recv, Ns, 3, H, d, 2);
  sp_scheme(outer).backward(ring, o);
  const StridedTensor out[3] = {a.dq, a.dk, a.dv};
  ulysses_heads_to_seq(uly, sh.segment, L.x.recv, 3, out, L.x);
}

}  // namespace seqvit::parallel
