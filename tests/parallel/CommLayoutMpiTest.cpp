// Layout of every collective (run at 4 ranks): each sent element encodes its own coordinates,
// value = source_rank * 1000 + index in the sender's buffer, and every received element is
// checked against where it must have come from. Uneven counts include empty blocks.
#include <cstring>
#include <functional>
#include <numeric>

#include "core/check.h"
#include "mpi_test.h"

using seqvit::parallel::Comm;
using seqvit::parallel::Request;
using seqvit_test::MpiTest;

namespace {
float code(int rank, int64_t index) { return static_cast<float>(rank * 1000 + index); }

std::vector<float> coded(int rank, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = code(rank, i);
  return v;
}

// Uneven counts sent from rank i to rank j, 0..2 elements (some pairs send nothing).
int64_t uneven(int i, int j) { return (i + 2 * j) % 3; }

// Packed offset of block j in a buffer of blocks with sizes count(0..P-1).
template <typename F>
int64_t offset(F count, int j) {
  int64_t o = 0;
  for (int k = 0; k < j; ++k) o += count(k);
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqvit::Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

// The expected values assume 4 ranks; on another count every test fails at once (no hang).
class Layout : public MpiTest {
 protected:
  void SetUp() override { ASSERT_EQ(size(), 4) << "register this program with np 4"; }
};

TEST_F(Layout, AllToAllSendsBlockJToRankJ) {
  const int P = size(), b = 3;
  const auto send = coded(rank(), P * b);
  std::vector<float> recv(P * b, -1.f);
  world.all_to_all<float>(send, recv);
  for (int i = 0; i < P; ++i)
    for (int k = 0; k < b; ++k)  // block i came from rank i's block `rank()`
      EXPECT_EQ(recv[i * b + k], code(i, rank() * b + k)) << "block " << i << " element " << k;
}

TEST_F(Layout, AllToAllVUnevenCounts) {
  const int P = size(), r = rank();
  std::vector<int64_t> sc(P), rc(P);
  for (int j = 0; j < P; ++j) sc[j] = uneven(r, j), rc[j] = uneven(j, r);
  const auto send = coded(r, std::accumulate(sc.begin(), sc.end(), int64_t{0}));
  std::vector<float> recv(std::accumulate(rc.begin(), rc.end(), int64_t{0}), -1.f);
  world.all_to_all_v<float>(send, sc, recv, rc);
  for (int i = 0; i < P; ++i) {
    const int64_t at = offset([&](int k) { return rc[k]; }, i);
    const int64_t from = offset([&](int k) { return uneven(i, k); }, r);  // in rank i's buffer
    for (int64_t k = 0; k < rc[i]; ++k)
      EXPECT_EQ(recv[at + k], code(i, from + k)) << "from rank " << i << " element " << k;
  }
}

TEST_F(Layout, AllToAllVWithDisplacements) {
  // Send blocks with a one-element gap before each; receive blocks in reverse rank order.
  const int P = size(), r = rank();
  std::vector<int64_t> sc(P), rc(P), sd(P), rd(P);
  int64_t s_end = 0;
  for (int j = 0; j < P; ++j) sc[j] = uneven(r, j) + 1, sd[j] = s_end + 1, s_end = sd[j] + sc[j];
  for (int i = 0; i < P; ++i) rc[i] = uneven(i, r) + 1;
  int64_t r_end = 0;
  for (int i = P - 1; i >= 0; --i) rd[i] = r_end, r_end += rc[i];
  const auto send = coded(r, s_end);
  std::vector<float> recv(r_end, -1.f);
  world.all_to_all_v<float>(send, sc, recv, rc, sd, rd);
  for (int i = 0; i < P; ++i) {
    int64_t from = 0;  // rank i's displacement of its block for us
    for (int j = 0; j <= r; ++j) from += 1 + (j < r ? uneven(i, j) + 1 : 0);
    for (int64_t k = 0; k < rc[i]; ++k)
      EXPECT_EQ(recv[rd[i] + k], code(i, from + k)) << "from rank " << i << " element " << k;
  }
}

TEST_F(Layout, AllGatherConcatenatesInRankOrder) {
  const int P = size(), b = 5;
  const auto send = coded(rank(), b);
  std::vector<float> recv(P * b, -1.f);
  world.all_gather<float>(send, recv);
  for (int i = 0; i < P; ++i)
    for (int k = 0; k < b; ++k) EXPECT_EQ(recv[i * b + k], code(i, k));
}

TEST_F(Layout, AllGatherVUnevenCounts) {
  const std::vector<int64_t> counts{2, 0, 3, 1};
  const auto send = coded(rank(), counts[rank()]);
  std::vector<float> recv(6, -1.f);
  world.all_gather_v<float>(send, recv, counts);
  for (int i = 0; i < size(); ++i) {
    const int64_t at = offset([&](int k) { return counts[k]; }, i);
    for (int64_t k = 0; k < counts[i]; ++k) EXPECT_EQ(recv[at + k], code(i, k));
  }
}

TEST_F(Layout, ReduceScatterSumsBlockRank) {
  const int P = size(), b = 3;
  const auto send = coded(rank(), P * b);
  std::vector<float> recv(b, -1.f);
  world.reduce_scatter<float>(send, recv);
  for (int k = 0; k < b; ++k) {
    float want = 0;
    for (int i = 0; i < P; ++i) want += code(i, rank() * b + k);
    EXPECT_EQ(recv[k], want) << "element " << k;
  }
}

TEST_F(Layout, ReduceScatterVUnevenCounts) {
  const std::vector<int64_t> counts{2, 0, 3, 1};
  const auto send = coded(rank(), 6);
  std::vector<float> recv(counts[rank()], -1.f);
  world.reduce_scatter_v<float>(send, recv, counts);
  const int64_t at = offset([&](int k) { return counts[k]; }, rank());
  for (int64_t k = 0; k < counts[rank()]; ++k) {
    float want = 0;
    for (int i = 0; i < size(); ++i) want += code(i, at + k);
    EXPECT_EQ(recv[k], want);
  }
}

TEST_F(Layout, AllReduceSumsInPlace) {
  auto f = coded(rank(), 7);
  world.all_reduce<float>(f);
  std::vector<double> d{double(rank()), 0.5};
  world.all_reduce<double>(d);
  std::vector<int64_t> n{int64_t(rank()) << 33};
  world.all_reduce<int64_t>(n);
  for (int k = 0; k < 7; ++k) EXPECT_EQ(f[k], 6000.f + 4 * k);
  EXPECT_EQ(d[0], 6.0);
  EXPECT_EQ(d[1], 2.0);
  EXPECT_EQ(n[0], int64_t{6} << 33);
}

TEST_F(Layout, BroadcastAndReduce) {
  auto f = coded(rank(), 4);
  world.broadcast<float>(f, 2);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(f[k], code(2, k));
  std::string text = rank() == 1 ? "config from rank 1" : std::string(18, '?');
  world.broadcast<std::byte>(std::as_writable_bytes(std::span(text.data(), text.size())), 1);
  EXPECT_EQ(text, "config from rank 1");

  const auto send = coded(rank(), 3);
  std::vector<float> sum(rank() == 3 ? 3 : 0, -1.f);
  world.reduce<float>(send, sum, 3);
  if (rank() == 3)
    for (int k = 0; k < 3; ++k) EXPECT_EQ(sum[k], 6000.f + 4 * k);
}

TEST_F(Layout, IsendIrecvRing) {
  const int P = size(), r = rank(), next = (r + 1) % P, prev = (r + P - 1) % P;
  const auto a = coded(r, 5), b = coded(r + 10, 2);
  std::vector<float> ra(5, -1.f), rb(2, -1.f);
  std::vector<Request> reqs;
  reqs.push_back(world.irecv<float>(rb, next, /*tag=*/2));  // tags keep the two streams apart
  reqs.push_back(world.irecv<float>(ra, prev, /*tag=*/1));
  reqs.push_back(world.isend<float>(a, next, 1));
  reqs.push_back(world.isend<float>(b, prev, 2));
  seqvit::parallel::wait_all(reqs);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(ra[k], code(prev, k));
  for (int k = 0; k < 2; ++k) EXPECT_EQ(rb[k], code(next + 10, k));
  for (auto& q : reqs) EXPECT_FALSE(q.active());
}

TEST_F(Layout, ShiftMovesToRankPlusK) {
  const int P = size(), r = rank();
  const auto send = coded(r, 3);
  for (int k : {1, -1, 2, 5, 0}) {
    std::vector<float> recv(3, -1.f);
    world.shift<float>(send, recv, k);
    const int from = ((r - k) % P + P) % P;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(recv[i], code(from, i)) << "k = " << k;
  }
}

TEST_F(Layout, SplitCommunicatorsOrderByKey) {
  // Two groups (even / odd world ranks), ordered by descending world rank.
  Comm half = world.split(rank() % 2, -rank(), "half");
  EXPECT_EQ(half.size(), 2);
  EXPECT_EQ(half.name(), "half");
  EXPECT_EQ(half.rank(), rank() < 2 ? 1 : 0);
  std::vector<float> one{float(rank())}, both(2);
  half.all_gather<float>(one, both);
  EXPECT_EQ(both[0], float(rank() % 2 + 2));
  EXPECT_EQ(both[1], float(rank() % 2));
  Comm moved = std::move(half);  // the moved-to communicator still works
  moved.all_reduce<float>(one);
  EXPECT_EQ(one[0], float(2 * (rank() % 2) + 2));
}

TEST_F(Layout, BadSizesNameOpCommunicatorAndRank) {
  // Every rank passes the same bad sizes, so every rank throws before any MPI call.
  std::vector<float> ten(10), ten2(10), four(4), eight(8);
  auto msg = error_of([&] { world.all_to_all<float>(ten, ten2); });
  EXPECT_NE(msg.find("all_to_all on communicator 'world'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("10 elements is not divisible by the group size 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("rank {} of 4", rank())), std::string::npos) << msg;

  msg = error_of([&] { world.all_gather<float>(four, four); });
  EXPECT_NE(msg.find("recv has 4 elements; it must be the group size 4 x send (4) = 16"),
            std::string::npos)
      << msg;
  msg = error_of([&] { world.reduce_scatter<float>(ten, four); });
  EXPECT_NE(msg.find("send has 10 elements"), std::string::npos) << msg;
  const std::vector<int64_t> three{1, 1, 1};
  msg = error_of([&] { world.all_to_all_v<float>(four, three, four, three); });
  EXPECT_NE(msg.find("send_counts has 3 entries; it needs one per rank (4)"), std::string::npos)
      << msg;
  const std::vector<int64_t> ones{1, 1, 1, 1}, twos{2, 2, 2, 2};
  msg = error_of([&] { world.all_to_all_v<float>(four, twos, four, ones); });
  EXPECT_NE(msg.find("send buffer has 4 elements but send_counts sum to 8"), std::string::npos)
      << msg;
  msg = error_of([&] { world.all_gather_v<float>(eight, four, ones); });
  EXPECT_NE(msg.find(fmt::format("send has 8 elements but recv_counts[{}] = 1", rank())),
            std::string::npos)
      << msg;
  msg = error_of([&] { world.broadcast<float>(four, 4); });
  EXPECT_NE(msg.find("broadcast on communicator 'world' (rank"), std::string::npos) << msg;
  EXPECT_NE(msg.find("root 4 is not a rank of 0..3"), std::string::npos) << msg;
  msg = error_of([&] { world.all_gather<float>(std::span<const float>(eight.data(), 2), eight); });
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
  msg = error_of([&] { (void)world.isend<float>(four, -1); });
  EXPECT_NE(msg.find("send on communicator 'world'"), std::string::npos) << msg;
}

TEST_F(Layout, MpiErrorsBecomeSeqvitErrors) {
  const std::string direct = error_of(
      [] { seqvit::parallel::check_mpi(MPI_ERR_COUNT, "MPI_Allreduce", "all_reduce", "dp", 1, 4, 5); });
  EXPECT_NE(direct.find("MPI_Allreduce (all_reduce) failed on communicator 'dp' (rank 1 of 4, "
                        "world rank 5): "),
            std::string::npos)
      << direct;
  EXPECT_GT(direct.size(), 80u) << "MPI's own message is missing: " << direct;

  // A real MPI error through the layer: each rank receives 4 elements into a buffer of 2.
  Comm c = world.split(0, rank(), "pair");
  const std::vector<float> send(4, 1.f);
  std::vector<float> small(2), big(8);
  auto msg = error_of([&] { c.sendrecv<float>(send, (rank() + 1) % 4, small, (rank() + 3) % 4); });
  EXPECT_NE(msg.find("MPI_Sendrecv (send) failed on communicator 'pair'"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("TRUNCATE"), std::string::npos) << msg;
  // ... and fewer elements than the buffer holds is an error too.
  msg = error_of([&] { c.sendrecv<float>(send, (rank() + 1) % 4, big, (rank() + 3) % 4); });
  EXPECT_NE(msg.find(fmt::format("received 4 elements from rank {} into a buffer of 8",
                                 (rank() + 3) % 4)),
            std::string::npos)
      << msg;
  // The same check for a non-blocking receive, at wait().
  auto rq = c.irecv<float>(big, (rank() + 3) % 4);
  auto sq = c.isend<float>(send, (rank() + 1) % 4);
  sq.wait();
  msg = error_of([&] { rq.wait(); });
  EXPECT_NE(msg.find(fmt::format("recv on communicator 'pair' (rank {} of 4): received 4 "
                                 "elements from rank {} into a buffer of 8",
                                 rank(), (rank() + 3) % 4)),
            std::string::npos)
      << msg;
  c.barrier();
}
