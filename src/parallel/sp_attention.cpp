// Sequence-parallel attention: Ulysses, LSS and ring, forward and backward (sp_attention.h,
// docs/parallelism.md). Each scheme moves K/V (or heads) between the ranks of the SP group with
// the checked collectives of comm.h and runs the unchanged flash kernels on what it holds.
//
// Packed buffers use the flash kernels' addressing: a buffer [B][n][parts][H][d] holds `parts`
// tensors (q, k, v or k, v) interleaved per token, and part c is the strided tensor
// {base + c H d, sb = n parts H d, sn = parts H d, sh = d}. The all-to-all and all-gather receive
// per-source blocks, which are not token-linear when B > 1 (block i holds tokens i N/P.. of every
// batch), so received blocks are unpacked into [B][N][parts][H][d] before the kernels read them.
#include "parallel/sp_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>
#include <array>

#include "backend/device.h"
#include "core/check.h"

namespace seqvit::parallel {
namespace {

using backend::AttentionKind;
using backend::BlockCopy;

constexpr int kTagKv = 71;   // ring: K/V blocks
constexpr int kTagDkv = 72;  // ring backward: dK/dV accumulators

// Carves 64-byte aligned pieces off a caller's buffer; with base == nullptr it only measures.
class Carve {
 public:
  explicit Carve(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(size_t n) {
    const size_t at = off_;
    off_ += (n * sizeof(T) + 63) / 64 * 64;
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  size_t used() const { return off_; }
  void rewind(size_t to) { off_ = to; }

 private:
  char* base_;
  size_t off_ = 0;
};

// Per-rank dimensions of one call.
struct Dims {
  int64_t B, N, Nl, Hh, d;  // Nl = N / P
  int P, r;
};

Dims dims(const SpAttentionShape& s, int P, int rank) {
  return Dims{s.batch, s.tokens, s.tokens / P, s.heads, s.head_dim, P, rank};
}

// Part c of a packed [B][n][parts][H][d] buffer.
StridedTensor part(float* base, int64_t n, int64_t parts, int64_t H, int64_t d, int64_t c) {
  return StridedTensor{base + c * H * d, n * parts * H * d, parts * H * d, d};
}

AttentionArgs flash_args(int64_t B, int64_t H, int64_t nq, int64_t nk, int64_t d, float scale) {
  AttentionArgs f;
  f.batch = B;
  f.heads = H;
  f.nq = nq;
  f.nk = nk;
  f.head_dim = d;
  f.scale = scale;
  return f;
}

// (sized for the CPU kernels with `threads` threads: the workspace sizes of these operators are
// what the planner and the model ask, for this machine or another)
size_t flash_bytes(int64_t B, int64_t H, int64_t nq, int64_t nk, int64_t d, int threads) {
  return backend::attention_workspace_bytes("cpu", AttentionKind::Flash,
                                            flash_args(B, H, nq, nk, d, 1.f), threads);
}

// A BlockCopy of runs of `run` floats over (i, j, k) < (n0, n1, n2).
BlockCopy block(float* dst, std::array<int64_t, 3> ds, const float* src, std::array<int64_t, 3> ss,
                std::array<int64_t, 3> n, int64_t run, bool accumulate = false) {
  BlockCopy c;
  c.dst = dst;
  c.src = src;
  c.n0 = n[0], c.n1 = n[1], c.n2 = n[2], c.run = run;
  c.d0 = ds[0], c.d1 = ds[1], c.d2 = ds[2];
  c.s0 = ss[0], c.s1 = ss[1], c.s2 = ss[2];
  c.accumulate = accumulate;
  return c;
}

// The flash kernels get whatever follows the scheme's own buffers.
void give_rest(AttentionArgs& f, const SpAttentionArgs& a, size_t used) {
  f.workspace = static_cast<char*>(a.workspace) + used;
  f.workspace_bytes = a.workspace_bytes - used;
}

}  // namespace

// Checks everything before the first collective. All ranks pass the same shape, so a shape error
// throws on every rank alike; a buffer error is local (the caller planned it with the functions
// below, so it is a programming error).
// `inputs`: whether the call reads the caller's q, k, v, o (Ulysses' backward does not).
void check_sp_args(const char* scheme, std::string_view group, int P, const SpAttentionArgs& a,
                   bool backward, size_t saved_need, size_t ws_need, bool inputs) {
  const SpAttentionShape& s = a.shape;
  SEQVIT_CHECK(s.batch >= 1 && s.tokens >= 1 && s.heads >= 1 && s.head_dim >= 1,
               "{} attention: need batch, tokens, heads, head_dim >= 1, got {}, {}, {}, {}", scheme,
               s.batch, s.tokens, s.heads, s.head_dim);
  SEQVIT_CHECK(a.scale > 0.f && std::isfinite(a.scale),
               "{} attention: scale={} must be positive (usually 1/sqrt(head_dim))", scheme,
               a.scale);
  if (s.tokens % P != 0)
    fail(
        "{} attention: {} tokens cannot be split into equal segments over the {} ranks of "
        "communicator '{}'; the token count must be a multiple of the SP degree",
        scheme, s.tokens, P, group);
  if (inputs || !backward)
    SEQVIT_CHECK(a.q.data && a.k.data && a.v.data && a.o.data,
                 "{} attention: q, k, v and o must be set", scheme);
  if (backward)
    SEQVIT_CHECK(a.dout.data && a.dq.data && a.dk.data && a.dv.data,
                 "{} attention backward: dout, dq, dk and dv must be set", scheme);
  if ((saved_need && !a.saved) || a.saved_bytes < saved_need)
    fail(
        "{} attention: saved buffer of {} bytes is too small; {}_saved_bytes() = {} for batch {} "
        "tokens {} heads {} head_dim {} over P = {}",
        scheme, a.saved ? a.saved_bytes : 0, scheme, saved_need, s.batch, s.tokens, s.heads,
        s.head_dim, P);
  if (!a.workspace || a.workspace_bytes < ws_need)
    fail(
        "{} attention: workspace of {} bytes is too small; {}_workspace_bytes() = {} (for 1 "
        "thread) for batch {} tokens {} heads {} head_dim {} over P = {}",
        scheme, a.workspace ? a.workspace_bytes : 0, scheme, ws_need, s.batch, s.tokens, s.heads,
        s.head_dim, P);
}

namespace {

void validate(const char* scheme, const Comm& sp, const SpAttentionArgs& a, bool backward,
              size_t saved_need, size_t ws_need, bool inputs = true) {
  check_sp_args(scheme, sp.name(), sp.size(), a, backward, saved_need, ws_need, inputs);
}

// ---- Ulysses ----------------------------------------------------------------------------------
//
// The two exchanges, for `parts` tensors at once (3: q, k, v or dq, dk, dv; 1: o or do):
//
//   seq_to_heads  local [B][N/P][Hh][d] x parts  ->  full [B][N][parts][Hh_r][d]
//     send  [P dest j][parts][B][N/P][Hh_j][d]   block j at parts B (N/P) d first_j
//     recv  [P src  i][parts][B][N/P][Hh_r][d]   block i at i parts B (N/P) Hh_r d
//   heads_to_seq  full [B][N][parts][Hh_r][d]   ->  local [B][N/P][Hh][d] x parts
//     send  [P dest i][parts][B][N/P][Hh_r][d]   (the recv layout above)
//     recv  [P src  j][parts][B][N/P][Hh_j][d]   (the send layout above)
//
// heads_to_seq is the inverse (and the adjoint) of seq_to_heads. With P | Hh all blocks are equal
// and the exchange is all_to_all; otherwise all_to_all_v with these counts.

struct UlyssesLayout {
  // saved; Hh_r = this rank's heads, each region sized for Hh_max = ceil(Hh / P)
  float* qkv;  // [B][N][3][Hh_r][d]
  float* o;    // [B][N][Hh_r][d]
  float* lse;  // [B][Hh_r][N]
  size_t saved_bytes;
  // workspace
  float* send;  // [X] X = 3 B d max(N/P Hh, N Hh_max): the largest packed exchange
  float* recv;  // [X]
  // The backward's full-sequence gradients alias the exchange buffers: dO is unpacked into
  // `send` once the exchange that used it is done, and the flash backward writes dq, dk, dv into
  // `recv` once dO has been unpacked from it; heads_to_seq packs them into `send` before its
  // exchange overwrites `recv`.
  float* dout;   // = send: [B][N][Hh_r][d]     dO of this rank's heads
  float* dqkv;   // = recv: [B][N][3][Hh_r][d]  dq, dk, dv of this rank's heads
  size_t used;   // bytes before the flash kernels' part
  size_t flash;  // the flash kernels' part for `threads`
};

UlyssesLayout ulysses_layout(const SpAttentionShape& s, int P, void* saved, void* ws, int threads) {
  const Dims g = dims(s, P, 0);
  const int64_t Hm = (g.Hh + P - 1) / P;
  const size_t full = static_cast<size_t>(g.B * g.N * Hm * g.d);
  UlyssesLayout L{};
  Carve cs(saved);
  L.qkv = cs.take<float>(3 * full);
  L.o = cs.take<float>(full);
  L.lse = cs.take<float>(static_cast<size_t>(g.B * Hm * g.N));
  L.saved_bytes = cs.used();
  const UlyssesBuffers x = ulysses_buffers(s, P, ws);  // first in the workspace
  L.send = x.send;
  L.recv = x.recv;
  L.dout = L.send;  // X >= B N Hh_max d
  L.dqkv = L.recv;  // X >= 3 B N Hh_max d
  L.used = x.bytes;
  L.flash = flash_bytes(g.B, Hm, g.N, g.N, g.d, threads);
  return L;
}

void exchange(Comm& sp, const Dims& g, int64_t parts, bool to_heads, const float* send,
              float* recv) {
  const int64_t Hr = ulysses_heads(g.Hh, g.P, g.r).count;
  const size_t n_local = static_cast<size_t>(parts * g.B * g.Nl * g.Hh * g.d);
  const size_t n_full = static_cast<size_t>(parts * g.B * g.N * Hr * g.d);
  const size_t n_send = to_heads ? n_local : n_full, n_recv = to_heads ? n_full : n_local;
  if (g.Hh % g.P == 0) {
    sp.all_to_all<float>(std::span(send, n_send), std::span(recv, n_recv));
    return;
  }
  // the counts of the uneven exchange, [2][P] on the host (kept: sized on the first call)
  thread_local std::vector<int64_t> counts;
  counts.resize(2 * static_cast<size_t>(g.P));
  int64_t* theirs = counts.data();  // block j holds rank j's heads
  int64_t* mine = theirs + g.P;     // block i holds this rank's heads
  for (int j = 0; j < g.P; ++j) {
    theirs[j] = parts * g.B * g.Nl * ulysses_heads(g.Hh, g.P, j).count * g.d;
    mine[j] = parts * g.B * g.Nl * Hr * g.d;
  }
  const std::span<const int64_t> ct(theirs, g.P), cm(mine, g.P);
  sp.all_to_all_v<float>(std::span(send, n_send), to_heads ? ct : cm, std::span(recv, n_recv),
                         to_heads ? cm : ct);
}

// Packs or unpacks the per-destination blocks: send block j holds rank j's heads of this rank's
// tokens, [parts][B][N/P][Hh_j][d], read from (or, to_send false, written to) the strided `t`.
void blocks_of_heads(backend::Device& dev, const Dims& g, const StridedTensor* t, int64_t parts,
                     float* buf, bool to_send) {
  for (int j = 0; j < g.P; ++j) {
    const HeadRange hj = ulysses_heads(g.Hh, g.P, j);
    for (int64_t c = 0; c < parts; ++c) {
      float* packed = buf + parts * g.B * g.Nl * g.d * hj.first + c * g.B * g.Nl * hj.count * g.d;
      const std::array<int64_t, 3> ps{g.Nl * hj.count * g.d, hj.count * g.d, g.d},
          ts{t[c].sb, t[c].sn, t[c].sh};
      float* strided = t[c].data + hj.first * t[c].sh;
      dev.block_copy(to_send ? block(packed, ps, strided, ts, {g.B, g.Nl, hj.count}, g.d)
                             : block(strided, ts, packed, ps, {g.B, g.Nl, hj.count}, g.d));
    }
  }
}

// recv [i][c][b][t] <-> full [b][i Nl + t][c] (this rank's heads, Hh_r d per row).
void blocks_of_tokens(backend::Device& dev, const Dims& g, int64_t parts, float* recv, float* full,
                      bool to_full) {
  const int64_t w = ulysses_heads(g.Hh, g.P, g.r).count * g.d;
  for (int64_t i = 0; i < g.P; ++i)
    for (int64_t c = 0; c < parts; ++c) {
      float* r = recv + (i * parts + c) * g.B * g.Nl * w;
      float* f = full + (i * g.Nl * parts + c) * w;
      const std::array<int64_t, 3> rs{g.Nl * w, w, 0}, fs{g.N * parts * w, parts * w, 0};
      dev.block_copy(to_full ? block(f, fs, r, rs, {g.B, g.Nl, 1}, w)
                             : block(r, rs, f, fs, {g.B, g.Nl, 1}, w));
    }
}

void seq_to_heads(Comm& sp, const Dims& g, const StridedTensor* in, int64_t parts, float* full,
                  float* send, float* recv) {
  backend::Device& dev = sp.device();
  blocks_of_heads(dev, g, in, parts, send, true);
  exchange(sp, g, parts, true, send, recv);
  blocks_of_tokens(dev, g, parts, recv, full, true);
}

void heads_to_seq(Comm& sp, const Dims& g, const float* full, int64_t parts,
                  const StridedTensor* out, float* send, float* recv) {
  backend::Device& dev = sp.device();
  blocks_of_tokens(dev, g, parts, send, const_cast<float*>(full), false);
  exchange(sp, g, parts, false, send, recv);
  blocks_of_heads(dev, g, out, parts, recv, false);
}

// ---- LSS --------------------------------------------------------------------------------------

struct LssLayout {
  // saved
  float* kv;   // [B][N][2][Hh][d]   the gathered keys and values, unpacked
  float* lse;  // [B][Hh][N/P]
  size_t saved_bytes;
  // workspace
  float* mine;    // [B][N/P][2][Hh][d]     this rank's packed [K | V] (forward), [dK | dV] (bwd)
  float* blocks;  // [P][B][N/P][2][Hh][d]  all-gather output; reduce-scatter input
  float* dkv;     // [B][N][2][Hh][d]       backward: dK, dV of all N rows from local queries
  size_t used;
  size_t flash;
};

LssLayout lss_layout(const SpAttentionShape& s, int P, void* saved, void* ws, int threads) {
  const Dims g = dims(s, P, 0);
  const size_t full = static_cast<size_t>(2 * g.B * g.N * g.Hh * g.d);
  LssLayout L{};
  Carve cs(saved);
  L.kv = cs.take<float>(full);
  L.lse = cs.take<float>(static_cast<size_t>(g.B * g.Hh * g.Nl));
  L.saved_bytes = cs.used();
  Carve cw(ws);
  L.mine = cw.take<float>(full / P);
  L.blocks = cw.take<float>(full);
  L.dkv = cw.take<float>(full);
  L.used = cw.used();
  L.flash = flash_bytes(g.B, g.Hh, g.Nl, g.N, g.d, threads);
  return L;
}

// [P][B][N/P][2 Hh d] <-> [B][N][2 Hh d]: block i holds tokens [i N/P, (i+1) N/P) of every batch.
void blocks_to_full(backend::Device& dev, const Dims& g, float* blocks, float* full,
                    bool to_full) {
  const int64_t w = 2 * g.Hh * g.d;
  const std::array<int64_t, 3> bs{g.Nl * w, w, 0}, fs{g.N * w, w, 0};
  for (int64_t i = 0; i < g.P; ++i) {
    float* b = blocks + i * g.B * g.Nl * w;
    float* f = full + i * g.Nl * w;
    dev.block_copy(to_full ? block(f, fs, b, bs, {g.B, g.Nl, 1}, w)
                           : block(b, bs, f, fs, {g.B, g.Nl, 1}, w));
  }
}

// Local K, V (strided) <-> packed [B][N/P][2][Hh][d]: pack, or unpack into dk, dv (= or +=).
void pack_kv(backend::Device& dev, const Dims& g, const StridedTensor& k, const StridedTensor& v,
             float* kv) {
  const std::array<int64_t, 3> ps{g.Nl * 2 * g.Hh * g.d, 2 * g.Hh * g.d, g.d};
  dev.block_copy(block(kv, ps, k.data, {k.sb, k.sn, k.sh}, {g.B, g.Nl, g.Hh}, g.d));
  dev.block_copy(block(kv + g.Hh * g.d, ps, v.data, {v.sb, v.sn, v.sh}, {g.B, g.Nl, g.Hh}, g.d));
}

void unpack_dkv(backend::Device& dev, const Dims& g, const float* dkv, const StridedTensor& dk,
                const StridedTensor& dv, bool add) {
  const std::array<int64_t, 3> ps{g.Nl * 2 * g.Hh * g.d, 2 * g.Hh * g.d, g.d};
  dev.block_copy(block(dk.data, {dk.sb, dk.sn, dk.sh}, dkv, ps, {g.B, g.Nl, g.Hh}, g.d, add));
  dev.block_copy(
      block(dv.data, {dv.sb, dv.sn, dv.sh}, dkv + g.Hh * g.d, ps, {g.B, g.Nl, g.Hh}, g.d, add));
}

// ---- Ring -------------------------------------------------------------------------------------

struct RingLayout {
  float* lse;  // saved: [B][Hh][N/P]
  size_t saved_bytes;
  float* kv[2];  // [B][N/P][2][Hh][d] each: the block being used and the one arriving
  // forward only
  float* o_blk;    // [B][N/P][Hh][d]   this block's partial output
  float* lse_blk;  // [B][Hh][N/P]      and its LSE
  // backward only (shares memory with the forward-only buffers)
  float* acc[2];  // [B][N/P][2][Hh][d] dK, dV accumulator of the block: computed here, or in flight
  float* dkv_in;  // [B][N/P][2][Hh][d] the accumulator arriving from the previous rank
  size_t used;
  size_t flash;
};

RingLayout ring_layout(const SpAttentionShape& s, int P, void* saved, void* ws, int threads) {
  const Dims g = dims(s, P, 0);
  const size_t blk = static_cast<size_t>(g.B * g.Nl * g.Hh * g.d);  // one [B][N/P][Hh][d]
  const size_t lse = static_cast<size_t>(g.B * g.Hh * g.Nl);
  RingLayout L{};
  Carve cs(saved);
  L.lse = cs.take<float>(lse);
  L.saved_bytes = cs.used();
  Carve cw(ws);
  L.kv[0] = cw.take<float>(2 * blk);
  L.kv[1] = cw.take<float>(2 * blk);
  const size_t mark = cw.used();
  L.o_blk = cw.take<float>(blk);
  L.lse_blk = cw.take<float>(lse);
  const size_t end_fwd = cw.used();
  cw.rewind(mark);
  L.acc[0] = cw.take<float>(2 * blk);
  L.acc[1] = cw.take<float>(2 * blk);
  L.dkv_in = cw.take<float>(2 * blk);
  L.used = std::max(end_fwd, cw.used());
  L.flash = flash_bytes(g.B, g.Hh, g.Nl, g.Nl, g.d, threads);
  return L;
}

// ---- Ring: pieces and progress ----
// Open MPI (ob1 over vader; UCX and OFI rendezvous likewise unless the network progresses on its
// own) moves a message above the eager limit with a rendezvous that advances only inside MPI
// calls, so K/V posted before one long flash call would sit until the wait after it. Each ring step therefore runs its local attention in pieces of
// about kPieceFlops per thread and calls test() on the step's pending requests between pieces.
// A piece is whole batches or a head range of one batch (its LSE rows, [B][Hh][N/P], are then
// contiguous), or, when one (batch, head) pair is more work than a piece, a row range of one
// pair: queries in the forward, keys in the backward (dQ then accumulates over the key pieces in
// the same order as over the kernel's own key tiles). The kernels take every piece through the
// same strides, without copies. Row ranges are multiples of the kernels' tiles (96 queries, 128
// keys), so every row is computed exactly as in one call: with one thread O, LSE, dQ, dK, dV are
// bit-identical to the unpieced step; with several threads the backward's dQ may be summed in
// another order (fp32 rounding). A forward call packs K^T of all its keys, so query ranges are
// at least 8 tiles (768 rows: the packing then costs ~3%, bench_ring_overlap "pieces"); a
// backward call packs only its own keys, so key ranges may be as short as 2 tiles.
// Piece size: kPieceFlops per thread (~1.3 ms at the kernels' ~100 GFLOP/s), unless the
// environment sets SEQVIT_RING_PIECE_FLOPS (a positive number; tests use 1 to cut every step as
// finely as the tiles allow; a transport that needs fewer progress calls may raise it). With
// P = 1 there is nothing to progress: one piece. docs/parallelism.md "Ring attention: overlap".
constexpr double kPieceFlops = 128.0 * (1 << 20);
constexpr int64_t kQueryTile = 96, kKeyTile = 128;  // the flash kernels' kBq, kBk
constexpr int64_t kMinQueryTiles = 8, kMinKeyTiles = 2;

double piece_flops() {
  const char* e = std::getenv("SEQVIT_RING_PIECE_FLOPS");
  if (!e || !*e) return kPieceFlops;
  char* end = nullptr;
  const double v = std::strtod(e, &end);
  SEQVIT_CHECK(*end == '\0' && v > 0 && std::isfinite(v),
               "SEQVIT_RING_PIECE_FLOPS must be a positive number of flops per thread (default "
               "{}), got '{}'",
               kPieceFlops, e);
  return v;
}

struct RingPieces {
  int64_t batches, heads;  // pairs per piece: batches > 1 only with heads == Hh
  int64_t rows;            // rows per piece (N/P: not split; else batches = heads = 1)
};

// `rows` of `min_rows` or more in multiples of `tile`; `row_flops`: the flops of one row (query
// or key) of one pair.
RingPieces ring_pieces(const Dims& g, int threads, int64_t tile, int64_t min_rows,
                       double row_flops) {
  if (g.P == 1) return RingPieces{g.B, g.Hh, g.Nl};
  const double target = piece_flops() * threads, pair = row_flops * static_cast<double>(g.Nl);
  if (pair > target) {
    const double fit = std::min(target / row_flops, static_cast<double>(g.Nl));
    const int64_t rows = std::max<int64_t>(static_cast<int64_t>(fit) / tile * tile,
                                           std::max<int64_t>(min_rows, tile * threads));
    if (rows < g.Nl) return RingPieces{1, 1, rows};
  }
  const int64_t per = std::max<int64_t>(
      static_cast<int64_t>(std::min(target / pair, static_cast<double>(g.B * g.Hh))), 1);
  return per >= g.Hh ? RingPieces{per / g.Hh, g.Hh, g.Nl} : RingPieces{1, per, g.Nl};
}

// fn(b0, nb, h0, nh, i0, ni) for every piece, in (batch, head, row) order: batches
// [b0, b0 + nb) x heads [h0, h0 + nh) x rows [i0, i0 + ni). The last row range of a pair takes
// the remainder, so none is shorter than pc.rows.
template <typename Fn>
void for_each_piece(const Dims& g, const RingPieces& pc, Fn&& fn) {
  for (int64_t b0 = 0; b0 < g.B; b0 += pc.batches)
    for (int64_t h0 = 0; h0 < g.Hh; h0 += pc.heads)
      for (int64_t i0 = 0; i0 < g.Nl;) {
        const int64_t i1 = g.Nl - i0 < 2 * pc.rows ? g.Nl : i0 + pc.rows;
        fn(b0, std::min(pc.batches, g.B - b0), h0, std::min(pc.heads, g.Hh - h0), i0, i1 - i0);
        i0 = i1;
      }
}

StridedTensor shifted(StridedTensor t, int64_t b, int64_t i, int64_t h) {
  if (t.data) t.data += b * t.sb + i * t.sn + h * t.sh;
  return t;
}

// The forward `f` of one ring step (all B x Hh pairs, N/P queries) restricted to a piece.
AttentionArgs forward_piece(const AttentionArgs& f, int64_t Hh, int64_t b0, int64_t nb,
                            int64_t h0, int64_t nh, int64_t i0, int64_t ni) {
  AttentionArgs p = f;
  p.batch = nb, p.heads = nh, p.nq = ni;
  p.q = shifted(f.q, b0, i0, h0);
  p.o = shifted(f.o, b0, i0, h0);
  p.k = shifted(f.k, b0, 0, h0);
  p.v = shifted(f.v, b0, 0, h0);
  p.lse = f.lse + (b0 * Hh + h0) * f.nq + i0;
  return p;
}

// The backward `f` of one ring step restricted to a piece; the rows are keys [j0, j0 + nj).
AttentionArgs backward_piece(const AttentionArgs& f, int64_t Hh, int64_t b0, int64_t nb,
                             int64_t h0, int64_t nh, int64_t j0, int64_t nj) {
  AttentionArgs p = f;
  p.batch = nb, p.heads = nh, p.nk = nj;
  for (StridedTensor* t : {&p.q, &p.o, &p.dout, &p.dq}) *t = shifted(*t, b0, 0, h0);
  for (StridedTensor* t : {&p.k, &p.v, &p.dk, &p.dv}) *t = shifted(*t, b0, j0, h0);
  p.lse = f.lse + (b0 * Hh + h0) * f.nq;
  return p;
}

// One MPI_Test per request still pending: lets rendezvous transfers advance.
template <typename... R>
void progress(R&... requests) {
  (requests.test(), ...);
}

// (o, lse) <- the attention over the union of both key ranges, for the rows of one piece.
void merge_by_lse(backend::Device& dev, const Dims& g, const StridedTensor& o, float* lse,
                  const float* o2, const float* lse2, int64_t b0, int64_t nb, int64_t h0,
                  int64_t nh, int64_t i0, int64_t ni) {
  backend::LseMerge m;
  m.o = o;
  m.lse = lse;
  m.o_in = o2;
  m.lse_in = lse2;
  m.Hh = g.Hh, m.Nl = g.Nl, m.d = g.d;
  m.b0 = b0, m.nb = nb, m.h0 = h0, m.nh = nh, m.i0 = i0, m.ni = ni;
  dev.merge_by_lse(m);
}

}  // namespace

// ---- Ulysses ----------------------------------------------------------------------------------

HeadRange ulysses_heads(int64_t heads, int P, int rank) {
  const int64_t base = heads / P, extra = heads % P;
  return HeadRange{rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

size_t ulysses_saved_bytes(const SpAttentionShape& s, int P) {
  return ulysses_layout(s, P, nullptr, nullptr, 1).saved_bytes;
}

size_t ulysses_workspace_bytes(const SpAttentionShape& s, int P, int threads) {
  const UlyssesLayout L = ulysses_layout(s, P, nullptr, nullptr, threads);
  return L.used + L.flash;
}

SpAttentionBytes ulysses_bytes_sent(const SpAttentionShape& s, int P, int rank) {
  const uint64_t rows = static_cast<uint64_t>(s.batch * (s.tokens / P) * s.head_dim),
                 hr = static_cast<uint64_t>(ulysses_heads(s.heads, P, rank).count),
                 others = static_cast<uint64_t>(s.heads) - hr, f = sizeof(float);
  return SpAttentionBytes{rows * (3 * others + (P - 1) * hr) * f,
                          rows * (others + 3 * (P - 1) * hr) * f};
}

UlyssesBuffers ulysses_buffers(const SpAttentionShape& s, int P, void* ws) {
  const Dims g = dims(s, P, 0);
  const int64_t Hm = (g.Hh + P - 1) / P;
  const size_t X = static_cast<size_t>(3 * g.B * g.d * std::max(g.Nl * g.Hh, g.N * Hm));
  Carve cw(ws);
  UlyssesBuffers b{};
  b.send = cw.take<float>(X);
  b.recv = cw.take<float>(X);
  b.bytes = cw.used();
  return b;
}

void ulysses_seq_to_heads(Comm& sp, const SpAttentionShape& s, const StridedTensor* in,
                          int64_t parts, float* full, const UlyssesBuffers& b) {
  seq_to_heads(sp, dims(s, sp.size(), sp.rank()), in, parts, full, b.send, b.recv);
}

void ulysses_heads_to_seq(Comm& sp, const SpAttentionShape& s, const float* full, int64_t parts,
                          const StridedTensor* out, const UlyssesBuffers& b) {
  heads_to_seq(sp, dims(s, sp.size(), sp.rank()), full, parts, out, b.send, b.recv);
}

static void validate_ulysses(const Comm& sp, const SpAttentionArgs& a, bool backward) {
  const int P = sp.size();
  if (a.shape.heads < P)
    fail(
        "ulysses attention: {} heads cannot be split over the {} ranks of communicator '{}': "
        "every rank needs at least one head; use an SP degree of at most {} (or LSS / ring)",
        a.shape.heads, P, sp.name(), a.shape.heads);
  validate("ulysses", sp, a, backward, ulysses_saved_bytes(a.shape, P),
           ulysses_workspace_bytes(a.shape, P, 1), /*inputs=*/!backward);
}

void ulysses_attention_forward(Comm& sp, const SpAttentionArgs& a) {
  validate_ulysses(sp, a, false);
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const UlyssesLayout L = ulysses_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const int64_t Hr = ulysses_heads(g.Hh, g.P, g.r).count;
  const StridedTensor in[3] = {a.q, a.k, a.v};
  seq_to_heads(sp, g, in, 3, L.qkv, L.send, L.recv);
  AttentionArgs f = flash_args(g.B, Hr, g.N, g.N, g.d, a.scale);
  f.q = part(L.qkv, g.N, 3, Hr, g.d, 0);
  f.k = part(L.qkv, g.N, 3, Hr, g.d, 1);
  f.v = part(L.qkv, g.N, 3, Hr, g.d, 2);
  f.o = part(L.o, g.N, 1, Hr, g.d, 0);
  f.lse = L.lse;
  give_rest(f, a, L.used);
  sp.device().attention_forward(AttentionKind::Flash, f);
  heads_to_seq(sp, g, L.o, 1, &a.o, L.send, L.recv);
}

void ulysses_attention_backward(Comm& sp, const SpAttentionArgs& a) {
  validate_ulysses(sp, a, true);
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const UlyssesLayout L = ulysses_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const int64_t Hr = ulysses_heads(g.Hh, g.P, g.r).count;
  seq_to_heads(sp, g, &a.dout, 1, L.dout, L.send, L.recv);
  AttentionArgs f = flash_args(g.B, Hr, g.N, g.N, g.d, a.scale);
  f.q = part(L.qkv, g.N, 3, Hr, g.d, 0);
  f.k = part(L.qkv, g.N, 3, Hr, g.d, 1);
  f.v = part(L.qkv, g.N, 3, Hr, g.d, 2);
  f.o = part(L.o, g.N, 1, Hr, g.d, 0);
  f.lse = L.lse;
  f.dout = part(L.dout, g.N, 1, Hr, g.d, 0);
  f.dq = part(L.dqkv, g.N, 3, Hr, g.d, 0);
  f.dk = part(L.dqkv, g.N, 3, Hr, g.d, 1);
  f.dv = part(L.dqkv, g.N, 3, Hr, g.d, 2);
  give_rest(f, a, L.used);
  sp.device().attention_backward(AttentionKind::Flash, f);
  const StridedTensor out[3] = {a.dq, a.dk, a.dv};
  heads_to_seq(sp, g, L.dqkv, 3, out, L.send, L.recv);
}

// ---- LSS --------------------------------------------------------------------------------------

size_t lss_saved_bytes(const SpAttentionShape& s, int P) {
  return lss_layout(s, P, nullptr, nullptr, 1).saved_bytes;
}

size_t lss_workspace_bytes(const SpAttentionShape& s, int P, int threads) {
  const LssLayout L = lss_layout(s, P, nullptr, nullptr, threads);
  return L.used + L.flash;
}

// Every other rank's packed [K | V] block of B (N/P) Hh d floats each, once: what the LSS
// all-gather and the ring's P - 1 forward steps send per rank.
static uint64_t kv_blocks_bytes(const SpAttentionShape& s, int P) {
  return static_cast<uint64_t>(2 * s.batch * (s.tokens / P) * s.heads * s.head_dim) * (P - 1) *
         sizeof(float);
}

SpAttentionBytes lss_bytes_sent(const SpAttentionShape& s, int P, int rank) {
  const uint64_t b = kv_blocks_bytes(s, P);
  return SpAttentionBytes{b, b};
}

void lss_attention_forward(Comm& sp, const SpAttentionArgs& a) {
  validate("lss", sp, a, false, lss_saved_bytes(a.shape, sp.size()),
           lss_workspace_bytes(a.shape, sp.size(), 1));
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const LssLayout L = lss_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const size_t n = static_cast<size_t>(2 * g.B * g.Nl * g.Hh * g.d);
  pack_kv(sp.device(), g, a.k, a.v, L.mine);
  sp.all_gather<float>(std::span(L.mine, n), std::span(L.blocks, n * g.P));
  blocks_to_full(sp.device(), g, L.blocks, L.kv, true);
  AttentionArgs f = flash_args(g.B, g.Hh, g.Nl, g.N, g.d, a.scale);
  f.q = a.q;
  f.k = part(L.kv, g.N, 2, g.Hh, g.d, 0);
  f.v = part(L.kv, g.N, 2, g.Hh, g.d, 1);
  f.o = a.o;
  f.lse = L.lse;
  give_rest(f, a, L.used);
  sp.device().attention_forward(AttentionKind::Flash, f);
}

void lss_attention_backward(Comm& sp, const SpAttentionArgs& a) {
  validate("lss", sp, a, true, lss_saved_bytes(a.shape, sp.size()),
           lss_workspace_bytes(a.shape, sp.size(), 1));
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const LssLayout L = lss_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const size_t n = static_cast<size_t>(2 * g.B * g.Nl * g.Hh * g.d);
  AttentionArgs f = flash_args(g.B, g.Hh, g.Nl, g.N, g.d, a.scale);
  f.q = a.q;
  f.k = part(L.kv, g.N, 2, g.Hh, g.d, 0);
  f.v = part(L.kv, g.N, 2, g.Hh, g.d, 1);
  f.o = a.o;
  f.lse = L.lse;
  f.dout = a.dout;
  f.dq = a.dq;
  f.dk = part(L.dkv, g.N, 2, g.Hh, g.d, 0);
  f.dv = part(L.dkv, g.N, 2, g.Hh, g.d, 1);
  give_rest(f, a, L.used);
  sp.device().attention_backward(AttentionKind::Flash, f);
  blocks_to_full(sp.device(), g, L.blocks, L.dkv, false);
  sp.reduce_scatter<float>(std::span<const float>(L.blocks, n * g.P), std::span(L.mine, n));
  unpack_dkv(sp.device(), g, L.mine, a.dk, a.dv, false);
}

// ---- Ring -------------------------------------------------------------------------------------

size_t ring_saved_bytes(const SpAttentionShape& s, int P) {
  return ring_layout(s, P, nullptr, nullptr, 1).saved_bytes;
}

size_t ring_workspace_bytes(const SpAttentionShape& s, int P, int threads) {
  const RingLayout L = ring_layout(s, P, nullptr, nullptr, threads);
  return L.used + L.flash;
}

SpAttentionBytes ring_bytes_sent(const SpAttentionShape& s, int P, int rank) {
  const uint64_t b = kv_blocks_bytes(s, P);
  return SpAttentionBytes{b, 2 * b};
}

// Step s (0..P-1): this rank holds the K/V block of rank r - s, sends it on to r + 1 and receives
// the block of r - s - 1 from r - 1 while it attends its queries to the block in hand. Step 0
// uses the caller's K, V (the packed copy is only for sending); the partial outputs of steps >= 1
// merge into O by their LSE.
void ring_attention_forward(Comm& sp, const SpAttentionArgs& a) {
  validate("ring", sp, a, false, ring_saved_bytes(a.shape, sp.size()),
           ring_workspace_bytes(a.shape, sp.size(), 1));
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const RingLayout L = ring_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const size_t n = static_cast<size_t>(2 * g.B * g.Nl * g.Hh * g.d);
  const int next = (g.r + 1) % g.P, prev = (g.r + g.P - 1) % g.P;
  const RingPieces pc = ring_pieces(g, sp.device().threads(), kQueryTile,
                                    kMinQueryTiles * kQueryTile, 4.0 * double(g.Nl * g.d));
  if (g.P > 1) pack_kv(sp.device(), g, a.k, a.v, L.kv[0]);
  AttentionArgs f = flash_args(g.B, g.Hh, g.Nl, g.Nl, g.d, a.scale);
  f.q = a.q;
  give_rest(f, a, L.used);
  for (int s = 0; s < g.P; ++s) {
    float* cur = L.kv[s % 2];
    Request recv, send;
    if (s + 1 < g.P) {
      recv = sp.irecv<float>(std::span(L.kv[(s + 1) % 2], n), prev, kTagKv);
      send = sp.isend<float>(std::span<const float>(cur, n), next, kTagKv);
    }
    f.k = s == 0 ? a.k : part(cur, g.Nl, 2, g.Hh, g.d, 0);
    f.v = s == 0 ? a.v : part(cur, g.Nl, 2, g.Hh, g.d, 1);
    f.o = s == 0 ? a.o : part(L.o_blk, g.Nl, 1, g.Hh, g.d, 0);
    f.lse = s == 0 ? L.lse : L.lse_blk;
    for_each_piece(g, pc, [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh, int64_t i0,
                              int64_t ni) {
      sp.device().attention_forward(AttentionKind::Flash, forward_piece(f, g.Hh, b0, nb, h0, nh, i0, ni));
      if (s > 0) merge_by_lse(sp.device(), g, a.o, L.lse, L.o_blk, L.lse_blk, b0, nb, h0, nh, i0, ni);
      progress(recv, send);
    });
    recv.wait();
    send.wait();
  }
}

// The same circulation of K/V, computing each block's backward against the saved global LSE and
// the final O (so the kernel's P = exp(S - LSE) and Dv = rowsum(dO * O) are the global ones and
// the per-block gradients simply add up). dQ accumulates here. The dK/dV of block r - s is
// computed into acc at step s >= 1, plus the accumulator of the same block received from r - 1
// (which did steps 1..s-1 of it), and sent on to r + 1; after step P-1 the accumulator of block
// r + 1 goes to its owner, which adds it to the own-block gradient it computed at step 0.
void ring_attention_backward(Comm& sp, const SpAttentionArgs& a) {
  validate("ring", sp, a, true, ring_saved_bytes(a.shape, sp.size()),
           ring_workspace_bytes(a.shape, sp.size(), 1));
  const Dims g = dims(a.shape, sp.size(), sp.rank());
  const RingLayout L = ring_layout(a.shape, g.P, a.saved, a.workspace, 1);
  const size_t n = static_cast<size_t>(2 * g.B * g.Nl * g.Hh * g.d);
  const int next = (g.r + 1) % g.P, prev = (g.r + g.P - 1) % g.P;
  const RingPieces pc = ring_pieces(g, sp.device().threads(), kKeyTile,
                                    kMinKeyTiles * kKeyTile, 10.0 * double(g.Nl * g.d));
  if (g.P > 1) pack_kv(sp.device(), g, a.k, a.v, L.kv[0]);
  AttentionArgs f = flash_args(g.B, g.Hh, g.Nl, g.Nl, g.d, a.scale);
  f.q = a.q;
  f.o = a.o;
  f.lse = L.lse;
  f.dout = a.dout;
  f.dq = a.dq;
  give_rest(f, a, L.used);
  Request acc_sent[2];  // the accumulator of each buffer in flight to r + 1
  for (int s = 0; s < g.P; ++s) {
    float* cur = L.kv[s % 2];
    Request recv, send, acc_in;
    if (s + 1 < g.P) {
      recv = sp.irecv<float>(std::span(L.kv[(s + 1) % 2], n), prev, kTagKv);
      send = sp.isend<float>(std::span<const float>(cur, n), next, kTagKv);
    }
    if (s >= 2) acc_in = sp.irecv<float>(std::span(L.dkv_in, n), prev, kTagDkv);
    if (s == 0) {  // own block: dQ, dK, dV written
      f.k = a.k;
      f.v = a.v;
      f.dk = a.dk;
      f.dv = a.dv;
      for_each_piece(g, pc, [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh, int64_t j0,
                                int64_t nj) {
        AttentionArgs p = backward_piece(f, g.Hh, b0, nb, h0, nh, j0, nj);
        // The first key range of a pair writes dQ; later ones add to it, onto zeroed dK, dV
        // rows (0 + x == x: the same values as one call).
        p.accumulate = j0 > 0;
        if (p.accumulate)
          for (const StridedTensor& t : {p.dk, p.dv})
            sp.device().block_copy(block(t.data, {t.sn, 0, 0}, nullptr, {}, {nj, 1, 1}, g.d));
        sp.device().attention_backward(AttentionKind::Flash, p);
        progress(recv, send);
      });
    } else {
      float* acc = L.acc[s % 2];
      acc_sent[s % 2].wait();  // sent at step s - 2
      sp.device().zero(acc, sizeof(float) * n);
      f.k = part(cur, g.Nl, 2, g.Hh, g.d, 0);
      f.v = part(cur, g.Nl, 2, g.Hh, g.d, 1);
      f.dk = part(acc, g.Nl, 2, g.Hh, g.d, 0);
      f.dv = part(acc, g.Nl, 2, g.Hh, g.d, 1);
      f.accumulate = true;
      Request& acc_prev = acc_sent[(s + 1) % 2];  // sent at step s - 1, still in flight
      for_each_piece(g, pc, [&](int64_t b0, int64_t nb, int64_t h0, int64_t nh, int64_t j0,
                                int64_t nj) {
        sp.device().attention_backward(AttentionKind::Flash, backward_piece(f, g.Hh, b0, nb, h0, nh, j0, nj));
        progress(recv, send, acc_in, acc_prev);
      });
      if (s >= 2) {
        acc_in.wait();
        sp.device().add_inplace(acc, L.dkv_in, static_cast<int64_t>(n));
      }
      acc_sent[s % 2] = sp.isend<float>(std::span<const float>(acc, n), next, kTagDkv);
    }
    recv.wait();
    send.wait();
  }
  if (g.P > 1) {  // the accumulator of this rank's block, from every other rank
    Request home = sp.irecv<float>(std::span(L.dkv_in, n), prev, kTagDkv);
    home.wait();
    unpack_dkv(sp.device(), g, L.dkv_in, a.dk, a.dv, true);
  }
  wait_all(acc_sent);
}

}  // namespace seqvit::parallel
