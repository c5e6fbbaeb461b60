// Sequence-parallel attention under mpirun (np 1, 2 and 4): Ulysses (even and uneven head splits),
// LSS and ring, forward and backward, against single-process flash attention over the full
// sequence. Every rank draws the same full Q, K, V, dO from a seed, takes its token slice, runs
// the distributed forward + backward and compares O, dQ, dK, dV of its slice with the same slice
// of the single-process result (norm-wise relative error, tests/rel_err.h, <= 1e-5 in fp32).
// Q, K, V (and dQ, dK, dV) are views into packed [B, N/P, 3, Hh, d] buffers, so strides are
// exercised.
// The same runs check the comm counters against *_bytes_sent exactly.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/sp_attention.h"
#include "parallel/sp_attention_2d.h"
#include "kernels/attention.h"
#include "mpi_test.h"
#include "rel_err.h"

using seqvit::Error;
using seqvit::parallel::Comm;
using seqvit::parallel::OpKind;
using seqvit::parallel::SpAttentionArgs;
using seqvit::parallel::SpAttentionBytes;
using seqvit::parallel::SpAttentionShape;
using seqvit::AttentionArgs;
using seqvit::StridedTensor;
using seqvit_test::MpiTest;
using seqvit_test::rel_err;
namespace sd = seqvit::parallel;
namespace sk = seqvit::kernels;

namespace {

enum class Scheme { Ulysses, Lss, Ring, UlyssesRing, UlyssesLss };  // the last two: 2-D SP

struct SchemeFns {
  size_t (*saved)(const SpAttentionShape&, int);
  size_t (*workspace)(const SpAttentionShape&, int, int);
  SpAttentionBytes (*bytes)(const SpAttentionShape&, int, int);
  void (*forward)(Comm&, const SpAttentionArgs&);
  void (*backward)(Comm&, const SpAttentionArgs&);
};

SchemeFns fns(Scheme s) {
  switch (s) {
    case Scheme::UlyssesRing:
    case Scheme::UlyssesLss:
      break;  // two communicators: check() calls sp2d_* directly
    case Scheme::Ulysses:
      return {sd::ulysses_saved_bytes, sd::ulysses_workspace_bytes, sd::ulysses_bytes_sent,
              sd::ulysses_attention_forward, sd::ulysses_attention_backward};
    case Scheme::Lss:
      return {sd::lss_saved_bytes, sd::lss_workspace_bytes, sd::lss_bytes_sent,
              sd::lss_attention_forward, sd::lss_attention_backward};
    case Scheme::Ring:
      return {sd::ring_saved_bytes, sd::ring_workspace_bytes, sd::ring_bytes_sent,
              sd::ring_attention_forward, sd::ring_attention_backward};
  }
  return {};
}

// The same values on every rank (MpiTest::random differs per rank).
std::vector<float> same_on_every_rank(size_t n, uint64_t seed) {
  seqvit::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// A dense [B][n][H][d] tensor, and part c of a packed [B][n][3][H][d] one.
StridedTensor dense(float* p, int64_t n, int64_t H, int64_t d) {
  return StridedTensor{p, n * H * d, H * d, d};
}
StridedTensor packed(float* p, int64_t n, int64_t H, int64_t d, int c) {
  return StridedTensor{p + c * H * d, n * 3 * H * d, 3 * H * d, d};
}

// The B x nl x Hh x d slice of tokens [t0, t0 + nl) as a dense [B][nl][Hh][d] vector: of `x`
// (read through its strides; a NaN there is an element never written: dQ, dK, dV start as NaN)
// or of a full dense [B][N][Hh][d] reference.
std::vector<float> gather(const StridedTensor& x, const SpAttentionShape& s, int64_t nl) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(s.batch * nl * s.heads * s.head_dim));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t t = 0; t < nl; ++t)
      for (int64_t h = 0; h < s.heads; ++h)
        for (int64_t c = 0; c < s.head_dim; ++c)
          out.push_back(x.data[b * x.sb + t * x.sn + h * x.sh + c]);
  return out;
}
std::vector<float> gather(const std::vector<float>& ref_full, const SpAttentionShape& s,
                          int64_t t0, int64_t nl) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(s.batch * nl * s.heads * s.head_dim));
  for (int64_t b = 0; b < s.batch; ++b)
    out.insert(out.end(), ref_full.begin() + (b * s.tokens + t0) * s.heads * s.head_dim,
               ref_full.begin() + (b * s.tokens + t0 + nl) * s.heads * s.head_dim);
  return out;
}

class SpAttention : public MpiTest {
 protected:
  // Runs `scheme` on `shape` over all ranks and checks values and byte counters.
  void check(Scheme scheme, SpAttentionShape s, uint64_t seed) {
    const int P = size(), r = rank();
    ASSERT_EQ(s.tokens % P, 0) << "test shape must split over " << P << " ranks";
    const int64_t B = s.batch, N = s.tokens, H = s.heads, d = s.head_dim, Nl = N / P;
    const size_t full = static_cast<size_t>(B * N * H * d);
    const float scale = 1.f / std::sqrt(static_cast<float>(d));

    // Single-process reference over the full sequence.
    std::vector<float> q = same_on_every_rank(full, seed), k = same_on_every_rank(full, seed + 1),
                       v = same_on_every_rank(full, seed + 2),
                       dout = same_on_every_rank(full, seed + 3);
    std::vector<float> o(full), dq(full), dk(full), dv(full), lse(B * H * N);
    AttentionArgs f;
    f.batch = B, f.heads = H, f.nq = N, f.nk = N, f.head_dim = d, f.scale = scale;
    f.q = dense(q.data(), N, H, d), f.k = dense(k.data(), N, H, d), f.v = dense(v.data(), N, H, d),
    f.o = dense(o.data(), N, H, d), f.lse = lse.data();
    f.dout = dense(dout.data(), N, H, d), f.dq = dense(dq.data(), N, H, d),
    f.dk = dense(dk.data(), N, H, d), f.dv = dense(dv.data(), N, H, d);
    std::vector<char> fws(sk::flash_attention_workspace_bytes(f, omp_get_max_threads()));
    f.workspace = fws.data(), f.workspace_bytes = fws.size();
    sk::flash_attention_forward(f);
    sk::flash_attention_backward(f);

    // This rank's slice: q, k, v packed per token as in the model's qkv buffer.
    const size_t local = static_cast<size_t>(B * Nl * H * d);
    std::vector<float> qkv(3 * local), o_l(local), do_l(local), dqkv(3 * local, NAN);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Nl; ++t)
        for (int c = 0; c < 3; ++c) {
          const std::vector<float>& src = c == 0 ? q : c == 1 ? k : v;
          std::copy_n(src.data() + (b * N + r * Nl + t) * H * d, H * d,
                      qkv.data() + ((b * Nl + t) * 3 + c) * H * d);
          if (c == 0)
            std::copy_n(dout.data() + (b * N + r * Nl + t) * H * d, H * d,
                        do_l.data() + (b * Nl + t) * H * d);
        }

    // 2-D: Ulysses degree U = 2 when P >= 2 (sp = ring * U + ulysses, as the rank grid numbers it)
    const bool two_d = scheme == Scheme::UlyssesRing || scheme == Scheme::UlyssesLss;
    const sd::SpMode outer = scheme == Scheme::UlyssesLss ? sd::SpMode::Lss : sd::SpMode::Ring;
    const int U = two_d ? std::min(P, 2) : 1, R = P / U;
    const SchemeFns fn = fns(scheme);
    std::vector<char> saved(two_d ? sd::sp2d_saved_bytes(s, U, R, outer) : fn.saved(s, P)),
        ws(two_d ? sd::sp2d_workspace_bytes(s, U, R, outer, omp_get_max_threads())
                 : fn.workspace(s, P, omp_get_max_threads()));
    SpAttentionArgs a;
    a.shape = s;
    a.scale = scale;
    a.q = packed(qkv.data(), Nl, H, d, 0), a.k = packed(qkv.data(), Nl, H, d, 1),
    a.v = packed(qkv.data(), Nl, H, d, 2), a.o = dense(o_l.data(), Nl, H, d);
    a.dout = dense(do_l.data(), Nl, H, d);
    a.dq = packed(dqkv.data(), Nl, H, d, 0), a.dk = packed(dqkv.data(), Nl, H, d, 1),
    a.dv = packed(dqkv.data(), Nl, H, d, 2);
    a.saved = saved.data(), a.saved_bytes = saved.size();
    a.workspace = ws.data(), a.workspace_bytes = ws.size();

    Comm sp = world.split(0, r, "sp");
    Comm uly = world.split(r / U, r % U, "sp_ulysses"), ring = world.split(r % U, r / U, "sp_ring");
    const SpAttentionBytes want = two_d ? sd::sp2d_bytes_sent(s, U, R, outer, r) : fn.bytes(s, P, r);
    auto sent = [&] {
      return sp.stats().total_bytes() + uly.stats().total_bytes() + ring.stats().total_bytes();
    };
    if (two_d)
      sd::sp2d_attention_forward(uly, ring, outer, a);
    else
      fn.forward(sp, a);
    EXPECT_EQ(sent(), want.forward) << "forward bytes";
    sp.reset_stats(), uly.reset_stats(), ring.reset_stats();
    if (two_d)
      sd::sp2d_attention_backward(uly, ring, outer, a);
    else
      fn.backward(sp, a);
    EXPECT_EQ(sent(), want.backward) << "backward bytes";
    last_stats = sp.stats();
    last_stats += uly.stats();
    last_stats += ring.stats();

    const double tol = 1e-5;
    EXPECT_LE(rel_err(gather(a.o, s, Nl), gather(o, s, r * Nl, Nl)), tol) << "O";
    EXPECT_LE(rel_err(gather(a.dq, s, Nl), gather(dq, s, r * Nl, Nl)), tol) << "dQ";
    EXPECT_LE(rel_err(gather(a.dk, s, Nl), gather(dk, s, r * Nl, Nl)), tol) << "dK";
    EXPECT_LE(rel_err(gather(a.dv, s, Nl), gather(dv, s, r * Nl, Nl)), tol) << "dV";
  }
  seqvit::parallel::CommStats last_stats;  // the backward's counters of the last check()
};

SpAttentionShape shape(int64_t B, int64_t N, int64_t H, int64_t d) { return {B, N, H, d}; }

}  // namespace

// N = 204 is not a power of two and splits over 2 and 4 ranks (102 / 51 tokens), d = 24 is not a
// multiple of 16; the full N spans two key tiles of the flash kernels.
TEST_F(SpAttention, UlyssesEvenHeads) {
  check(Scheme::Ulysses, shape(2, 204, 4, 24), 11);
  EXPECT_EQ(last_stats.calls("sp", OpKind::AllToAll), 2u);  // dO, then [dQ | dK | dV]
}

// 6 heads over 4 ranks: 2, 2, 1, 1 (all_to_all_v); over 2 ranks 3, 3 (even). 5 heads: uneven
// at both.
TEST_F(SpAttention, UlyssesUnevenHeads) {
  check(Scheme::Ulysses, shape(2, 204, 6, 24), 21);
  if (size() == 4) EXPECT_EQ(last_stats.calls("sp", OpKind::AllToAllV), 2u);
  check(Scheme::Ulysses, shape(2, 204, 5, 24), 22);
  if (size() > 1) EXPECT_EQ(last_stats.calls("sp", OpKind::AllToAllV), 2u);
}

TEST_F(SpAttention, Lss) {
  check(Scheme::Lss, shape(2, 204, 3, 24), 31);
  EXPECT_EQ(last_stats.calls("sp", OpKind::ReduceScatter), 1u);
}

TEST_F(SpAttention, Ring) {
  check(Scheme::Ring, shape(2, 204, 3, 24), 41);
  // Backward: P-1 K/V blocks and P-1 dK/dV accumulators.
  EXPECT_EQ(last_stats.calls("sp", OpKind::Send), 2u * (size() - 1));
}

// Segments longer than one query/key tile of the flash kernels (96 x 128): 520 tokens, 260 or
// 130 per rank, one head, d = 16 (the vector path without a tail).
TEST_F(SpAttention, SegmentsSpanSeveralTiles) {
  check(Scheme::Ring, shape(1, 520, 1, 16), 51);
  check(Scheme::Lss, shape(1, 520, 1, 16), 52);
}

// Short segments: 24 tokens are 6 per rank at P = 4, which runs the kernels' few-query path in
// the ring's per-block attention; odd d.
TEST_F(SpAttention, ShortSegments) {
  check(Scheme::Ring, shape(2, 24, 2, 5), 61);
  check(Scheme::Lss, shape(2, 24, 2, 5), 62);
  check(Scheme::Ulysses, shape(2, 24, 4, 5), 63);
}

// The per-rank byte counts against docs/parallelism.md's closed forms (D = Hh d), in floats:
// Ulysses 4 B N D (P-1)/P^2 each way when P | Hh, LSS 2 B N D (P-1)/P each way, ring the same
// forward and twice that backward; uneven Ulysses splits add up to the even total over ranks.
TEST_F(SpAttention, BytesFollowTheDesignFormulas) {
  const int P = size();
  const uint64_t F = sizeof(float);
  const SpAttentionShape s = shape(2, 204, 4, 24);
  const uint64_t BND = 2 * 204 * 4 * 24;
  for (int r = 0; r < P; ++r) {
    EXPECT_EQ(sd::ulysses_bytes_sent(s, P, r).forward, 4 * BND * (P - 1) / (P * P) * F);
    EXPECT_EQ(sd::ulysses_bytes_sent(s, P, r).backward, 4 * BND * (P - 1) / (P * P) * F);
    EXPECT_EQ(sd::lss_bytes_sent(s, P, r).forward, 2 * BND * (P - 1) / P * F);
    EXPECT_EQ(sd::lss_bytes_sent(s, P, r).backward, 2 * BND * (P - 1) / P * F);
    EXPECT_EQ(sd::ring_bytes_sent(s, P, r).forward, 2 * BND * (P - 1) / P * F);
    EXPECT_EQ(sd::ring_bytes_sent(s, P, r).backward, 4 * BND * (P - 1) / P * F);
  }
  // 6 heads: the exchange moves every (token, head) row that changes owner once per tensor, so
  // the sum over ranks equals the even formula summed over ranks whatever the split.
  const SpAttentionShape u = shape(2, 204, 6, 24);
  const uint64_t rows = 2 * (204 / P) * 24;  // B N/P d
  uint64_t fwd = 0, bwd = 0;
  for (int r = 0; r < P; ++r) {
    fwd += sd::ulysses_bytes_sent(u, P, r).forward;
    bwd += sd::ulysses_bytes_sent(u, P, r).backward;
  }
  EXPECT_EQ(fwd, 4 * rows * 6 * (P - 1) * F);
  EXPECT_EQ(bwd, 4 * rows * 6 * (P - 1) * F);
}

// 2-D SP (U = 2 when P >= 2): Ulysses over sp_ulysses, ring or LSS over sp_ring. 4 heads split
// evenly, 3 heads 2 + 1 (the two ring groups then run different head counts); at P = 4 the
// counters split into an all-to-all on sp_ulysses and the outer scheme's traffic on sp_ring.
TEST_F(SpAttention, TwoD) {
  check(Scheme::UlyssesRing, shape(2, 204, 4, 24), 71);
  if (size() == 4) {
    EXPECT_EQ(last_stats.calls("sp_ulysses", OpKind::AllToAll), 2u);
    EXPECT_EQ(last_stats.calls("sp_ring", OpKind::Send), 2u);
  }
  check(Scheme::UlyssesLss, shape(2, 204, 4, 24), 72);
  if (size() == 4) EXPECT_EQ(last_stats.calls("sp_ring", OpKind::ReduceScatter), 1u);
  check(Scheme::UlyssesRing, shape(2, 204, 3, 24), 73);
  check(Scheme::UlyssesLss, shape(1, 24, 3, 5), 74);
  if (size() == 4) {
    // docs/parallelism.md combined, U = R = 2, 4 heads: Ulysses over U on the segment + ring over R.
    const uint64_t F = sizeof(float), BND = 2 * 204 * 4 * 24;
    const SpAttentionBytes b = sd::sp2d_bytes_sent(shape(2, 204, 4, 24), 2, 2, sd::SpMode::Ring, 3);
    EXPECT_EQ(b.forward, (4 * BND * 1 / (2 * 4) + 2 * BND * 1 / 4) * F);
    EXPECT_EQ(b.backward, (4 * BND * 1 / (2 * 4) + 4 * BND * 1 / 4) * F);
  }
  if (size() >= 2) {  // one head cannot be split over sp_ulysses = 2: refused before any exchange
    const int r = rank();
    Comm uly = world.split(r / 2, r % 2, "sp_ulysses"), ring = world.split(r % 2, r / 2, "sp_ring");
    std::vector<float> buf(64);
    std::vector<char> big(1 << 20);
    SpAttentionArgs a;
    a.shape = shape(1, 4 * size(), 1, 4);
    a.scale = 1.f;
    a.q = a.k = a.v = a.o = dense(buf.data(), 1, 1, 1);
    a.saved = a.workspace = big.data();
    a.saved_bytes = a.workspace_bytes = big.size();
    try {
      sd::sp2d_attention_forward(uly, ring, sd::SpMode::Ring, a);
      ADD_FAILURE() << "no error for 1 head over sp_ulysses 2";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("1 heads cannot be split over the 2 ranks of "
                                           "communicator 'sp_ulysses'"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(uly.stats().total_bytes() + ring.stats().total_bytes(), 0u);
  }
}

// Configuration errors throw on every rank alike (same shape everywhere), before any collective.
TEST_F(SpAttention, RejectsBadShapesAndBuffers) {
  const int P = size();
  Comm sp = world.split(0, rank(), "sp");
  std::vector<float> buf(64);
  SpAttentionArgs a;
  a.scale = 1.f;
  a.q = a.k = a.v = a.o = a.dout = a.dq = a.dk = a.dv = dense(buf.data(), 1, 1, 1);
  std::vector<char> big(1 << 20);
  a.saved = a.workspace = big.data();
  a.saved_bytes = a.workspace_bytes = big.size();

  if (P > 1) {  // every shape splits over one rank, and one head is enough
    a.shape = shape(1, 4 * P + 1, P, 4);
    try {
      sd::ring_attention_forward(sp, a);
      ADD_FAILURE() << "no error for " << a.shape.tokens << " tokens";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot be split into equal segments"),
                std::string::npos)
          << e.what();
    }
    a.shape = shape(1, 4 * P, P - 1, 4);
    try {
      sd::ulysses_attention_forward(sp, a);
      ADD_FAILURE() << "no error for " << P - 1 << " heads";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("every rank needs at least one head"), std::string::npos)
          << e.what();
    }
  }
  a.shape = shape(1, 4 * P, P, 4);
  a.workspace_bytes = 16;
  try {
    sd::lss_attention_backward(sp, a);
    ADD_FAILURE() << "no error for a 16-byte workspace";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lss_workspace_bytes()"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sp.stats().total_bytes(), 0u);
}
