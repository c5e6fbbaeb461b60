// Every communication op against its adjoint (run at 2 and 4 ranks): <A x, y> = <x, A^T y> on
// random data, with the inner product of the distributed vector space, the sum over ranks of
// the local dot products (a replicated or root-only value counts once). Permutations (all-to-all,
// shifts, send/recv) must also invert exactly.
#include <cmath>
#include <numeric>

#include "mpi_test.h"

using seqvit::parallel::Request;
using seqvit_test::MpiTest;

namespace {
double dot(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += double(a[i]) * b[i];
  return s;
}
}  // namespace

class Adjoint : public MpiTest {
 protected:
  // Sum over ranks of a local value.
  double global(double local) {
    std::vector<double> v{local};
    world.all_reduce<double>(v);
    return v[0];
  }
  // <A x, y> and <x, A^T y> agree to float rounding (relative to the sizes of the terms).
  void expect_adjoint(double lhs, double rhs, double scale, const char* what) {
    EXPECT_NEAR(lhs, rhs, 1e-5 * scale)
        << what << ": <A x, y> = " << lhs << ", <x, A^T y> = " << rhs;
    EXPECT_GT(std::abs(lhs), 1e-3) << what << ": degenerate test data";
  }
  // Uneven counts that differ per rank, with one empty block when P > 2.
  std::vector<int64_t> counts(int salt) const {
    std::vector<int64_t> c(size());
    for (int i = 0; i < size(); ++i) c[i] = (i * 3 + salt) % 4 + (size() == 2 ? 1 : 0);
    return c;
  }
};

TEST_F(Adjoint, IdentityAndAllReduce) {
  // C: a replicated x in R^n -> (x, ..., x), one copy per rank; C^T = all_reduce.
  const size_t n = 37;
  auto x = random(n, 1);
  world.broadcast<float>(x, 0);  // replicated: the same x on every rank
  const auto y = random(n, 2);
  const double lhs = global(dot(x, y));  // sum over ranks of <x, y_r>
  auto cty = y;
  world.identity_adjoint<float>(cty);
  const double rhs = dot(x, cty);  // counted once: the value is replicated
  expect_adjoint(lhs, rhs, std::sqrt(double(n) * size()) * 4, "identity / all_reduce");
}

TEST_F(Adjoint, AllGatherAndReduceScatter) {
  const int P = size();
  const size_t b = 11;
  const auto x = random(b, 3), y = random(P * b, 4);
  std::vector<float> gx(P * b), gty(b);
  world.all_gather<float>(x, gx);
  world.all_gather_adjoint<float>(y, gty);
  expect_adjoint(global(dot(gx, y)), global(dot(x, gty)), 10.0 * P * std::sqrt(b),
                 "all_gather / reduce_scatter");
  // And read the other way: reduce_scatter's adjoint is all_gather.
  const auto u = random(P * b, 5), v = random(b, 6);
  std::vector<float> ru(b), rtv(P * b);
  world.reduce_scatter<float>(u, ru);
  world.reduce_scatter_adjoint<float>(v, rtv);
  expect_adjoint(global(dot(ru, v)), global(dot(u, rtv)), 10.0 * P * std::sqrt(b),
                 "reduce_scatter / all_gather");
}

TEST_F(Adjoint, AllGatherVAndReduceScatterV) {
  const auto c = counts(1);
  const int64_t total = std::accumulate(c.begin(), c.end(), int64_t{0});
  const auto x = random(c[rank()], 7), y = random(total, 8);
  std::vector<float> gx(total), gty(c[rank()]);
  world.all_gather_v<float>(x, gx, c);
  world.all_gather_v_adjoint<float>(y, gty, c);
  expect_adjoint(global(dot(gx, y)), global(dot(x, gty)), 10.0 * size() * std::sqrt(total),
                 "all_gather_v / reduce_scatter_v");
  std::vector<float> rx(c[rank()]), rtv(total);
  world.reduce_scatter_v<float>(y, rx, c);
  world.reduce_scatter_v_adjoint<float>(x, rtv, c);
  expect_adjoint(global(dot(rx, x)), global(dot(y, rtv)), 10.0 * size() * std::sqrt(total),
                 "reduce_scatter_v / all_gather_v");
}

TEST_F(Adjoint, AllToAllIsItsOwnInverse) {
  const int P = size();
  const size_t b = 6;
  const auto x = random(P * b, 9), y = random(P * b, 10);
  std::vector<float> ax(P * b), aty(P * b), back(P * b);
  world.all_to_all<float>(x, ax);
  world.all_to_all_adjoint<float>(y, aty);
  expect_adjoint(global(dot(ax, y)), global(dot(x, aty)), 10.0 * std::sqrt(P * b * P),
                 "all_to_all / inverse all_to_all");
  world.all_to_all_adjoint<float>(ax, back);
  EXPECT_EQ(back, x) << "the inverse all_to_all does not restore the input";
}

TEST_F(Adjoint, AllToAllVUneven) {
  // Rank r sends (r + 2 j) % 3 + (j == r) elements to rank j; the adjoint swaps the counts.
  const int P = size(), r = rank();
  std::vector<int64_t> sc(P), rc(P);
  for (int j = 0; j < P; ++j)
    sc[j] = (r + 2 * j) % 3 + (j == r), rc[j] = (j + 2 * r) % 3 + (j == r);
  const int64_t ns = std::accumulate(sc.begin(), sc.end(), int64_t{0});
  const int64_t nr = std::accumulate(rc.begin(), rc.end(), int64_t{0});
  const auto x = random(ns, 11), y = random(nr, 12);
  std::vector<float> ax(nr), aty(ns), back(ns);
  world.all_to_all_v<float>(x, sc, ax, rc);
  world.all_to_all_v_adjoint<float>(y, sc, aty, rc);
  expect_adjoint(global(dot(ax, y)), global(dot(x, aty)), 10.0 * std::sqrt(double(ns) * P),
                 "all_to_all_v / inverse all_to_all_v");
  world.all_to_all_v_adjoint<float>(ax, sc, back, rc);
  EXPECT_EQ(back, x) << "the inverse all_to_all_v does not restore the input";
}

TEST_F(Adjoint, BroadcastAndReduce) {
  // B: x on the root -> a copy on every rank; B^T = reduce (sum) to the root.
  const int root = size() - 1;
  const size_t n = 19;
  auto bx = random(n, 13);
  const auto x = bx;  // meaningful on the root only
  world.broadcast<float>(bx, root);
  const auto y = random(n, 14);
  std::vector<float> bty(rank() == root ? n : 0);
  world.broadcast_adjoint<float>(y, bty, root);
  const double lhs = global(dot(bx, y));
  const double rhs = global(rank() == root ? dot(x, bty) : 0.0);
  expect_adjoint(lhs, rhs, 10.0 * size() * std::sqrt(n), "broadcast / reduce");
}

TEST_F(Adjoint, ShiftAndItsInverse) {
  const size_t n = 13;
  for (int k : {1, 2, -1}) {
    const auto x = random(n, 15 + k), y = random(n, 20 + k);
    std::vector<float> sx(n), sty(n), back(n);
    world.shift<float>(x, sx, k);
    world.shift_adjoint<float>(y, sty, k);
    expect_adjoint(global(dot(sx, y)), global(dot(x, sty)), 10.0 * std::sqrt(n * size()),
                   "shift / shift back");
    world.shift_adjoint<float>(sx, back, k);
    EXPECT_EQ(back, x) << "shift by -" << k << " does not undo shift by " << k;
  }
}

TEST_F(Adjoint, SendAndRecv) {
  // Forward: isend to rank+1, irecv from rank-1. Adjoint: the gradient travels back, isend to
  // rank-1 and irecv from rank+1.
  const int P = size(), next = (rank() + 1) % P, prev = (rank() + P - 1) % P;
  const size_t n = 9;
  const auto x = random(n, 30), y = random(n, 31);
  std::vector<float> sx(n), sty(n), back(n);
  {
    Request r = world.irecv<float>(sx, prev);
    Request s = world.isend<float>(x, next);
    r.wait();
    s.wait();
  }
  {
    Request r = world.irecv<float>(sty, next, 1);
    Request s = world.isend<float>(y, prev, 1);
    r.wait();
    s.wait();
  }
  expect_adjoint(global(dot(sx, y)), global(dot(x, sty)), 10.0 * std::sqrt(n * P), "send / recv");
  {
    Request r = world.irecv<float>(back, next, 2);
    Request s = world.isend<float>(sx, prev, 2);
    // No explicit wait: the destructors complete both requests.
  }
  EXPECT_EQ(back, x);
}
