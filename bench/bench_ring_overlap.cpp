// Does ring attention's K/V transfer really overlap the local flash attention? (docs/parallelism.md
// "Ring attention: overlap"). Open MPI moves a message above the BTL's eager limit (vader: 4 KiB)
// with a rendezvous that progresses only inside MPI calls, so an isend/irecv posted before a long
// kernel call may not move at all until the wait after it.
//
// Per local block size n (tokens per rank; one K/V block is [B, n, 2, Hh, d] floats) the program
// times one ring step on every rank (per rep the max over ranks; for a wait the min over ranks,
// i.e. the wait of the rank that arrived last, which is not waiting for a slower peer's compute;
// then the median over --reps):
//   transfer  irecv from r-1 + isend to r+1 of the block, then wait: nothing else
//   compute   the block's flash attention forward (n queries x n keys), alone: one call, and
//             in the pieces below without communication (their own overhead)
//   nominal   post, one flash call, wait: the seconds in the call and in the wait after it
//   progress  post, the flash call split into pieces of one (batch, head) pair and --rows
//             queries with Request::test() on both requests between pieces, wait: the same
//             two numbers
// A wait after compute of ~0 means the transfer overlapped; ~transfer means it did not.
// Then the ring operator itself, parallel::ring_attention_forward + _backward at N = P n: wall
// seconds per call and the seconds its Comm counters spent in wait()/test() (Send + Recv, summed
// over the steps; min over ranks as above).
//   mpirun -np 2 bench_ring_overlap [--tokens n1,n2,..] [--batch B] [--heads Hh] [--dim d]
//       [--rows R] [--reps R] [--check]
// --check: validate only (tiny sizes, one rep): the pieces give bit-identical O and LSE, every
// received block equals the sent one, and the operator's byte counters match ring_bytes_sent.
// Exit 1 on a mismatch on any rank.
#include <fmt/core.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/mpi_comm.h"
#include "parallel/sp_attention.h"
#include "kernels/attention.h"

using namespace seqvit;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<int64_t> tokens{16, 256, 1024, 2048};
  int64_t batch = 1, heads = 8, dim = 64, rows = 768;
  int reps = 5;
  bool check = false;
};

[[noreturn]] void usage_error(const std::string& msg) {
  throw Error(msg + " (flags: --tokens n1,n2,.. --batch B --heads Hh --dim d --rows R "
                    "--reps R --check)");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    auto integer = [&](const std::string& v) -> int64_t {
      try {
        size_t used = 0;
        const int64_t x = std::stoll(v, &used);
        if (used == v.size() && x >= 1) return x;
      } catch (const std::exception&) {
      }
      usage_error(a + " needs integers >= 1, got '" + v + "'");
    };
    if (a == "--tokens") {
      o.tokens.clear();
      std::stringstream ss(value());
      for (std::string t; std::getline(ss, t, ',');) o.tokens.push_back(integer(t));
    } else if (a == "--batch") o.batch = integer(value());
    else if (a == "--heads") o.heads = integer(value());
    else if (a == "--dim") o.dim = integer(value());
    else if (a == "--rows") o.rows = integer(value());
    else if (a == "--reps") o.reps = static_cast<int>(integer(value()));
    else if (a == "--check") o.check = true;
    else usage_error("unknown flag " + a);
  }
  if (o.check) o.reps = 1;
  return o;
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double max_over_ranks(double x) {
  double y = x;
  MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return y;
}
double min_over_ranks(double x) {
  double y = x;
  MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
  return y;
}

// Part c of a packed [B][n][parts][H][d] buffer.
kernels::StridedTensor part(float* base, int64_t n, int64_t parts, int64_t H, int64_t d, int64_t c) {
  return kernels::StridedTensor{base + c * H * d, n * parts * H * d, parts * H * d, d};
}

// One block's local attention: q [B, n, Hh, d], kv [B, n, 2, Hh, d] (the ring's packed block),
// o and lse outputs, the flash workspace.
struct Block {
  int64_t B, n, H, d;
  std::vector<float> q, kv, kv_in, o, lse, ws;
  kernels::AttentionArgs args() {
    kernels::AttentionArgs f;
    f.batch = B, f.heads = H, f.nq = n, f.nk = n, f.head_dim = d;
    f.scale = 1.f / std::sqrt(static_cast<float>(d));
    f.q = part(q.data(), n, 1, H, d, 0);
    f.k = part(kv.data(), n, 2, H, d, 0);
    f.v = part(kv.data(), n, 2, H, d, 1);
    f.o = part(o.data(), n, 1, H, d, 0);
    f.lse = lse.data();
    f.workspace = ws.data();
    f.workspace_bytes = ws.size() * sizeof(float);
    return f;
  }
};

Block make_block(int64_t B, int64_t n, int64_t H, int64_t d, int rank) {
  Block b{B, n, H, d, {}, {}, {}, {}, {}, {}};
  std::mt19937 rng(1234 + rank);
  std::normal_distribution<float> nd;
  b.q.resize(B * n * H * d);
  b.kv.resize(2 * B * n * H * d);
  for (auto& x : b.q) x = nd(rng);
  for (auto& x : b.kv) x = nd(rng);
  b.kv_in.assign(b.kv.size(), 0.f);
  b.o.assign(b.q.size(), 0.f);
  b.lse.assign(B * H * n, 0.f);
  const auto f = b.args();
  b.ws.resize(kernels::flash_attention_workspace_bytes(f, omp_get_max_threads()) / sizeof(float) + 16);
  return b;
}

// The flash forward of `f` in pieces: one (batch, head) pair and `rows` queries each (the last
// range of a pair takes the remainder), calling test() on `pending` between pieces. The ring
// operator cuts its steps the same way (sizes from the flops of a pair, parallel/sp_attention.cpp).
void pieced_forward(kernels::AttentionArgs f, int64_t rows, parallel::Request* pending, int np) {
  const kernels::AttentionArgs g = f;
  auto at = [](kernels::StridedTensor t, int64_t b, int64_t i, int64_t h) {
    t.data += b * t.sb + i * t.sn + h * t.sh;
    return t;
  };
  f.batch = 1, f.heads = 1;
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t h = 0; h < g.heads; ++h)
      for (int64_t i0 = 0; i0 < g.nq;) {
        const int64_t i1 = g.nq - i0 < 2 * rows ? g.nq : i0 + rows;
        f.nq = i1 - i0;
        f.q = at(g.q, b, i0, h), f.o = at(g.o, b, i0, h);
        f.k = at(g.k, b, 0, h), f.v = at(g.v, b, 0, h);
        f.lse = g.lse + (b * g.heads + h) * g.nq + i0;
        kernels::flash_attention_forward(f);
        for (int i = 0; i < np; ++i) pending[i].test();
        i0 = i1;
      }
}

struct StepTimes {
  double compute = 0, wait = 0;
};

// One ring step: post irecv from prev and isend to next of the block, compute (rows == 0: one
// call; else pieced with test()), then wait.
StepTimes ring_step(parallel::Comm& world, Block& blk, int64_t rows) {
  const int P = world.size(), r = world.rank();
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  parallel::Request req[2];
  world.barrier();
  req[0] = world.irecv<float>(std::span(blk.kv_in), prev, 5);
  req[1] = world.isend<float>(std::span<const float>(blk.kv), next, 5);
  const auto t0 = Clock::now();
  if (rows == 0) kernels::flash_attention_forward(blk.args());
  else pieced_forward(blk.args(), rows, req, 2);
  StepTimes t;
  t.compute = since(t0);
  const auto t1 = Clock::now();
  parallel::wait_all(req);
  t.wait = since(t1);
  return t;
}

double transfer_only(parallel::Comm& world, Block& blk) {
  const int P = world.size(), r = world.rank();
  parallel::Request req[2];
  world.barrier();
  const auto t0 = Clock::now();
  req[0] = world.irecv<float>(std::span(blk.kv_in), (r + P - 1) % P, 6);
  req[1] = world.isend<float>(std::span<const float>(blk.kv), (r + 1) % P, 6);
  parallel::wait_all(req);
  return since(t0);
}

// rows == 0: one call; else the pieces without any request to test (their own overhead).
double compute_only(parallel::Comm& world, Block& blk, int64_t rows) {
  world.barrier();
  const auto t0 = Clock::now();
  if (rows == 0) kernels::flash_attention_forward(blk.args());
  else pieced_forward(blk.args(), rows, nullptr, 0);
  return since(t0);
}

// The ring operator at N = P n: forward + backward wall seconds (medians of the max over ranks)
// and the seconds its counters spent in wait()/test(), per call.
struct OpTimes {
  double fwd = 0, fwd_wait = 0, bwd = 0, bwd_wait = 0;
  bool bytes_ok = true;
};

OpTimes ring_operator(parallel::Comm& world, const Options& o, int64_t n) {
  const int P = world.size(), r = world.rank();
  const parallel::SpAttentionShape s{o.batch, n * P, o.heads, o.dim};
  const int64_t e = o.batch * n * o.heads * o.dim;
  std::vector<float> qkv(3 * e), out(e), dout(e), dqkv(3 * e);
  std::mt19937 rng(99 + r);
  std::normal_distribution<float> nd;
  for (auto& x : qkv) x = nd(rng);
  for (auto& x : dout) x = nd(rng);
  std::vector<char> saved(parallel::ring_saved_bytes(s, P)),
      ws(parallel::ring_workspace_bytes(s, P, omp_get_max_threads()));
  parallel::SpAttentionArgs a;
  a.shape = s;
  a.scale = 1.f / std::sqrt(static_cast<float>(o.dim));
  a.q = part(qkv.data(), n, 3, o.heads, o.dim, 0);
  a.k = part(qkv.data(), n, 3, o.heads, o.dim, 1);
  a.v = part(qkv.data(), n, 3, o.heads, o.dim, 2);
  a.o = part(out.data(), n, 1, o.heads, o.dim, 0);
  a.dout = part(dout.data(), n, 1, o.heads, o.dim, 0);
  a.dq = part(dqkv.data(), n, 3, o.heads, o.dim, 0);
  a.dk = part(dqkv.data(), n, 3, o.heads, o.dim, 1);
  a.dv = part(dqkv.data(), n, 3, o.heads, o.dim, 2);
  a.saved = saved.data(), a.saved_bytes = saved.size();
  a.workspace = ws.data(), a.workspace_bytes = ws.size();
  const parallel::SpAttentionBytes want = parallel::ring_bytes_sent(s, P, r);
  std::vector<double> fwd, fwd_wait, bwd, bwd_wait;
  OpTimes t;
  for (int rep = 0; rep < o.reps; ++rep) {
    auto waited = [&] {
      const parallel::CommStats st = world.stats();
      return st.seconds("", parallel::OpKind::Send) + st.seconds("", parallel::OpKind::Recv);
    };
    world.barrier();
    world.reset_stats();
    auto t0 = Clock::now();
    parallel::ring_attention_forward(world, a);
    fwd.push_back(max_over_ranks(since(t0)));
    fwd_wait.push_back(min_over_ranks(waited()));
    t.bytes_ok = t.bytes_ok && world.stats().bytes("", parallel::OpKind::Send) == want.forward;
    world.barrier();
    world.reset_stats();
    t0 = Clock::now();
    parallel::ring_attention_backward(world, a);
    bwd.push_back(max_over_ranks(since(t0)));
    bwd_wait.push_back(min_over_ranks(waited()));
    t.bytes_ok = t.bytes_ok && world.stats().bytes("", parallel::OpKind::Send) == want.backward;
  }
  t.fwd = median(fwd), t.fwd_wait = median(fwd_wait);
  t.bwd = median(bwd), t.bwd_wait = median(bwd_wait);
  return t;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  parallel::Comm world = parallel::mpi_world();
  const int P = world.size(), r = world.rank();
  SEQVIT_CHECK(P >= 2, "bench_ring_overlap needs at least 2 ranks (mpirun -np 2), got {}", P);
  bool ok = true;
  if (r == 0) {
    fmt::print("ring step per rank, np {}, OMP threads {}, B {} Hh {} d {}, piece rows {}, ms, median "
               "over {} reps of the max over ranks (wait: of the min, the last rank to arrive)\n",
               P, omp_get_max_threads(), o.batch, o.heads, o.dim, o.rows, o.reps);
    fmt::print("{:>6} {:>10} {:>9} {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9}\n", "n", "block",
               "transfer", "compute", "pieces", "nominal", "wait", "progress", "wait");
  }
  for (const int64_t n : o.tokens) {
    Block blk = make_block(o.batch, n, o.heads, o.dim, r);
    // Validation: the pieces give the same bits as one call, and the block arrives intact.
    {
      ring_step(world, blk, 0);
      const std::vector<float> o1 = blk.o, l1 = blk.lse;
      std::fill(blk.kv_in.begin(), blk.kv_in.end(), 0.f);
      ring_step(world, blk, o.rows);
      const bool same = std::memcmp(o1.data(), blk.o.data(), o1.size() * 4) == 0 &&
                        std::memcmp(l1.data(), blk.lse.data(), l1.size() * 4) == 0;
      const Block peer = make_block(o.batch, n, o.heads, o.dim, (r + P - 1) % P);
      const bool arrived = peer.kv == blk.kv_in;
      if (!same) fmt::print(stderr, "rank {}: n {}: pieced O/LSE differ from one call\n", r, n);
      if (!arrived) fmt::print(stderr, "rank {}: n {}: received block differs\n", r, n);
      ok = ok && same && arrived;
    }
    std::vector<double> tr, co, cp, nc, nw, pc, pw;
    auto mx = [](double x) { return max_over_ranks(x); };
    auto mn = [](double x) { return min_over_ranks(x); };
    for (int rep = 0; rep < o.reps; ++rep) {
      tr.push_back(mx(transfer_only(world, blk)));
      co.push_back(mx(compute_only(world, blk, 0)));
      cp.push_back(mx(compute_only(world, blk, o.rows)));
      const StepTimes a = ring_step(world, blk, 0);
      nc.push_back(mx(a.compute)), nw.push_back(mn(a.wait));
      const StepTimes b = ring_step(world, blk, o.rows);
      pc.push_back(mx(b.compute)), pw.push_back(mn(b.wait));
    }
    double v[7] = {median(tr), median(co), median(cp), median(nc),
                   median(nw), median(pc), median(pw)};
    for (double& x : v) x *= 1e3;
    const double kib = 2.0 * o.batch * n * o.heads * o.dim * 4 / 1024.0;
    if (r == 0)
      fmt::print("{:>6} {:>6.0f} KiB {:>9.3f} {:>9.3f} {:>9.3f} | {:>9.3f} {:>9.3f} | {:>9.3f} "
                 "{:>9.3f}\n",
                 n, kib, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
  }
  if (r == 0)
    fmt::print("\nring operator, N = {} x n (ms per call, max over ranks; wait = Comm counters' "
               "Send + Recv seconds, in wait() and test(), min over ranks)\n"
               "{:>6} {:>9} {:>9} | {:>9} {:>9}\n",
               P, "n", "forward", "wait", "backward", "wait");
  for (const int64_t n : o.tokens) {
    const OpTimes t = ring_operator(world, o, n);
    if (!t.bytes_ok) fmt::print(stderr, "rank {}: n {}: bytes differ from ring_bytes_sent\n", r, n);
    ok = ok && t.bytes_ok;
    if (r == 0)
      fmt::print("{:>6} {:>9.3f} {:>9.3f} | {:>9.3f} {:>9.3f}\n", n, t.fwd * 1e3, t.fwd_wait * 1e3,
                 t.bwd * 1e3, t.bwd_wait * 1e3);
  }
  int bad = ok ? 0 : 1, any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (r == 0 && o.check) fmt::print("{}\n", any ? "CHECK FAILED" : "check ok");
  return o.check && any ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiRuntime mpi(&argc, &argv);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ring_overlap: %s\n", e.what());
    parallel::abort_all(2);
  }
}
