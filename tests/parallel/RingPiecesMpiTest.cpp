// Ring attention's pieces (parallel/sp_attention.cpp "Ring: pieces and progress"): each ring step
// runs its local flash attention in pieces (pairs of batch x head, or row ranges of one pair) and
// calls Request::test() between them so that rendezvous transfers move during the computation.
// The piece size comes from SEQVIT_RING_PIECE_FLOPS (tests) or the default. Checked here:
//  - every piece size gives the same O, dQ, dK, dV as one piece per step (bit-identical with
//    one thread), and matches single-process flash attention at 1e-5;
//  - a bad SEQVIT_RING_PIECE_FLOPS is refused, naming the value;
//  - Request::test() completes a large (rendezvous) transfer, checks the received count and
//    counts its time without counting calls.
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/sp_attention.h"
#include "kernels/attention.h"
#include "mpi_test.h"
#include "rel_err.h"

using seqvit::Error;
using seqvit::parallel::OpKind;
using seqvit::parallel::Request;
using seqvit::parallel::SpAttentionArgs;
using seqvit::parallel::SpAttentionShape;
using seqvit::StridedTensor;
using seqvit_test::MpiTest;
namespace sd = seqvit::parallel;
namespace sk = seqvit::kernels;

namespace {

std::vector<float> same_on_every_rank(size_t n, uint64_t seed) {
  seqvit::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

StridedTensor dense(float* p, int64_t n, int64_t H, int64_t d) {
  return StridedTensor{p, n * H * d, H * d, d};
}
StridedTensor packed(float* p, int64_t n, int64_t H, int64_t d, int c) {
  return StridedTensor{p + c * H * d, n * 3 * H * d, 3 * H * d, d};
}

// Sets an environment variable for one scope (the same on every rank).
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }

 private:
  const char* name_;
};

class RingPieces : public MpiTest {
 protected:
  // Full-sequence inputs, the same on every rank; this rank's slice packed as the model's qkv.
  void SetUp() override {
    const int P = size(), r = rank();
    Nl = N / P;
    const size_t full = static_cast<size_t>(B * N * H * d);
    q = same_on_every_rank(full, 11), k = same_on_every_rank(full, 12);
    v = same_on_every_rank(full, 13), dout = same_on_every_rank(full, 14);
    const size_t local = static_cast<size_t>(B * Nl * H * d);
    qkv.assign(3 * local, 0.f), do_l.assign(local, 0.f);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Nl; ++t) {
        const size_t src = static_cast<size_t>((b * N + r * Nl + t) * H * d);
        for (int c = 0; c < 3; ++c) {
          const std::vector<float>& from = c == 0 ? q : c == 1 ? k : v;
          std::copy_n(from.data() + src, H * d, qkv.data() + ((b * Nl + t) * 3 + c) * H * d);
        }
        std::copy_n(dout.data() + src, H * d, do_l.data() + (b * Nl + t) * H * d);
      }
  }

  // O and dQ, dK, dV of this rank (o then dqkv, each [B][Nl]...) from the ring operator.
  std::vector<float> ring() {
    const int P = size();
    const SpAttentionShape s{B, N, H, d};
    const size_t local = static_cast<size_t>(B * Nl * H * d);
    std::vector<float> o(local, NAN), dqkv(3 * local, NAN);
    std::vector<char> saved(sd::ring_saved_bytes(s, P)),
        ws(sd::ring_workspace_bytes(s, P, omp_get_max_threads()));
    SpAttentionArgs a;
    a.shape = s;
    a.scale = 1.f / std::sqrt(static_cast<float>(d));
    a.q = packed(qkv.data(), Nl, H, d, 0), a.k = packed(qkv.data(), Nl, H, d, 1);
    a.v = packed(qkv.data(), Nl, H, d, 2), a.o = dense(o.data(), Nl, H, d);
    a.dout = dense(do_l.data(), Nl, H, d);
    a.dq = packed(dqkv.data(), Nl, H, d, 0), a.dk = packed(dqkv.data(), Nl, H, d, 1);
    a.dv = packed(dqkv.data(), Nl, H, d, 2);
    a.saved = saved.data(), a.saved_bytes = saved.size();
    a.workspace = ws.data(), a.workspace_bytes = ws.size();
    world.reset_stats();
    sd::ring_attention_forward(world, a);
    sd::ring_attention_backward(world, a);
    const sd::SpAttentionBytes want = sd::ring_bytes_sent(s, P, rank());
    EXPECT_EQ(world.stats().bytes("", OpKind::Send), want.forward + want.backward);
    o.insert(o.end(), dqkv.begin(), dqkv.end());
    return o;
  }

  // The same quantities from single-process flash attention over the full sequence, sliced.
  std::vector<float> reference() {
    const size_t full = static_cast<size_t>(B * N * H * d);
    std::vector<float> o(full), dq(full), dk(full), dv(full), lse(B * H * N);
    sk::AttentionArgs f;
    f.batch = B, f.heads = H, f.nq = N, f.nk = N, f.head_dim = d;
    f.scale = 1.f / std::sqrt(static_cast<float>(d));
    f.q = dense(q.data(), N, H, d), f.k = dense(k.data(), N, H, d);
    f.v = dense(v.data(), N, H, d), f.o = dense(o.data(), N, H, d), f.lse = lse.data();
    f.dout = dense(dout.data(), N, H, d), f.dq = dense(dq.data(), N, H, d);
    f.dk = dense(dk.data(), N, H, d), f.dv = dense(dv.data(), N, H, d);
    std::vector<char> fws(sk::flash_attention_workspace_bytes(f, omp_get_max_threads()));
    f.workspace = fws.data(), f.workspace_bytes = fws.size();
    sk::flash_attention_forward(f);
    sk::flash_attention_backward(f);
    const size_t local = static_cast<size_t>(B * Nl * H * d);
    std::vector<float> out(4 * local);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Nl; ++t) {
        const size_t src = static_cast<size_t>((b * N + rank() * Nl + t) * H * d);
        std::copy_n(o.data() + src, H * d, out.data() + (b * Nl + t) * H * d);
        for (int c = 0; c < 3; ++c) {
          const std::vector<float>& from = c == 0 ? dq : c == 1 ? dk : dv;
          std::copy_n(from.data() + src, H * d,
                      out.data() + local + ((b * Nl + t) * 3 + c) * H * d);
        }
      }
    return out;
  }

  // N = 3200: at np 2, 1600 rows per rank, cut as finely as the tiles allow into query ranges
  // 768, 832 and key ranges 256 x 5, 320; at np 4, 800 rows: one query range, key ranges
  // 256 x 2, 288. 2 x 3 (batch, head) pairs for the grouped pieces.
  const int64_t B = 2, H = 3, d = 4;
  int64_t Nl = 0, N = 3200;
  std::vector<float> q, k, v, dout, qkv, do_l;
};

using seqvit_test::rel_err;

TEST_F(RingPieces, EveryPieceSizeGivesTheSameResult) {
  std::vector<float> one;
  {
    EnvVar e("SEQVIT_RING_PIECE_FLOPS", "1e15");  // one piece per step
    one = ring();
  }
  EXPECT_LE(rel_err(one, reference()), 1e-5);
  // In flops of one forward pair (4 Nl^2 d; a backward pair is 2.5 times that): 2: forward
  // head ranges of 2 and 1, backward key ranges; 3.5: forward whole batches, backward single
  // pairs; 7: forward both batches, backward head ranges. 1: the finest cut.
  const double fp = 4.0 * double(Nl * Nl * d);
  for (const double flops : {1.0, 2 * fp, 3.5 * fp, 7 * fp}) {
    const std::string value = std::to_string(flops);
    EnvVar e("SEQVIT_RING_PIECE_FLOPS", value.c_str());
    const std::vector<float> x = ring();
    if (omp_get_max_threads() == 1) {
      size_t differ = 0;
      for (size_t i = 0; i < x.size(); ++i) differ += x[i] == one[i] ? 0 : 1;
      EXPECT_EQ(differ, 0u) << "SEQVIT_RING_PIECE_FLOPS=" << value;
    } else {  // the backward may sum dQ in another order
      EXPECT_LE(rel_err(x, one), 1e-6) << "SEQVIT_RING_PIECE_FLOPS=" << value;
    }
  }
}

TEST_F(RingPieces, RefusesABadPieceSize) {
  for (const char* bad : {"0", "-5", "lots"}) {
    EnvVar e("SEQVIT_RING_PIECE_FLOPS", bad);
    try {
      ring();
      ADD_FAILURE() << "SEQVIT_RING_PIECE_FLOPS=" << bad << " was accepted";
    } catch (const Error& err) {
      const std::string m = err.what();
      EXPECT_NE(m.find("SEQVIT_RING_PIECE_FLOPS"), std::string::npos) << m;
      EXPECT_NE(m.find(std::string("'") + bad + "'"), std::string::npos) << m;
    }
  }
}

// A 1 MiB message is far above vader's 4 KiB eager limit: it completes only through MPI calls,
// here test() alone (bounded polling, no wait()).
TEST_F(RingPieces, RequestTestCompletesARendezvousTransfer) {
  const int P = size(), r = rank();
  const size_t n = 1 << 18;
  std::vector<float> out(n), in(n, 0.f);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(r * 1000003 + i);
  world.reset_stats();
  Request rq = world.irecv<float>(std::span(in), (r + P - 1) % P, 9);
  Request sq = world.isend<float>(std::span<const float>(out), (r + 1) % P, 9);
  bool done = false;
  for (long i = 0; i < 100000000 && !done; ++i) done = rq.test() & sq.test();
  ASSERT_TRUE(done);
  EXPECT_FALSE(rq.active());
  EXPECT_TRUE(rq.test());  // inactive: complete
  const int from = (r + P - 1) % P;
  EXPECT_EQ(in[0], static_cast<float>(from * 1000003));
  EXPECT_EQ(in[n - 1], static_cast<float>(from * 1000003 + n - 1));
  const sd::CommStats st = world.stats();
  EXPECT_EQ(st.calls("", OpKind::Recv), 1u);  // test() counts time, not calls
  EXPECT_EQ(st.calls("", OpKind::Send), 1u);
  EXPECT_EQ(st.bytes("", OpKind::Send), n * sizeof(float));
  EXPECT_GT(st.seconds("", OpKind::Recv), 0.0);

  // A receive of fewer elements than posted is refused on completion, in test() as in wait().
  std::vector<float> small(4, 1.f), big(8);
  Request r2 = world.irecv<float>(std::span(big), (r + P - 1) % P, 10);
  Request s2 = world.isend<float>(std::span<const float>(small), (r + 1) % P, 10);
  s2.wait();
  try {
    while (!r2.test()) {
    }
    ADD_FAILURE() << "a short receive passed test()";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("received 4 elements"), std::string::npos) << e.what();
  }
}

}  // namespace
