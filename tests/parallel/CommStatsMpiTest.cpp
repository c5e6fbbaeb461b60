// Counters (run at 4 ranks): the bytes each op records equal the documented per-rank byte counts
// exactly (comm.h, docs/parallelism.md), per communicator and op kind; reset and the report.
#include <numeric>

#include "mpi_test.h"

using seqvit::parallel::Comm;
using seqvit::parallel::CommStats;
using seqvit::parallel::OpKind;
using seqvit_test::MpiTest;

// The expected values assume 4 ranks; on another count every test fails at once (no hang).
class Counters : public MpiTest {
 protected:
  void SetUp() override { ASSERT_EQ(size(), 4) << "register this program with np 4"; }
};

TEST_F(Counters, BytesMatchTheDocumentedCounts) {
  const int r = rank(), P = 4;
  Comm sp = world.split(0, r, "sp");
  const uint64_t F = sizeof(float);

  std::vector<float> a(P * 3, 1.f), b(P * 3);
  sp.all_to_all<float>(a, b);
  sp.all_to_all<float>(a, b);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllToAll), 2 * 3 * 3 * F);
  EXPECT_EQ(sp.stats().calls("sp", OpKind::AllToAll), 2u);

  std::vector<int64_t> sc(P), rc(P);
  for (int j = 0; j < P; ++j) sc[j] = (r + 2 * j) % 3, rc[j] = (j + 2 * r) % 3;
  std::vector<float> vs(std::accumulate(sc.begin(), sc.end(), 0)),
      vr(std::accumulate(rc.begin(), rc.end(), 0));
  sp.all_to_all_v<float>(vs, sc, vr, rc);
  uint64_t want = 0;
  for (int j = 0; j < P; ++j) want += j == r ? 0 : sc[j] * F;
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllToAllV), want);

  std::vector<float> g5(5), g20(20);
  sp.all_gather<float>(g5, g20);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllGather), 3 * 5 * F);

  const std::vector<int64_t> counts{2, 0, 3, 1};
  std::vector<float> mine(counts[r]), all6(6);
  sp.all_gather_v<float>(mine, all6, counts);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllGatherV), 3 * counts[r] * F);

  std::vector<float> rs(3);
  sp.reduce_scatter<float>(a, rs);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::ReduceScatter), 3 * 3 * F);
  sp.reduce_scatter_v<float>(all6, mine, counts);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::ReduceScatterV), (6 - counts[r]) * F);

  // 10 elements over 4 ranks: shares 3, 3, 2, 2; ring volume 2 (n - share).
  std::vector<float> ten(10);
  sp.all_reduce<float>(ten);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllReduce), 2 * (10 - (r < 2 ? 3 : 2)) * F);

  std::vector<float> eight(8), sum8(r == 0 ? 8 : 0);
  sp.broadcast<float>(eight, 0);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::Broadcast), r == 0 ? 3 * 8 * F : 0);
  sp.reduce<float>(eight, sum8, 0);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::Reduce), r == 0 ? 0 : 8 * F);

  std::vector<float> five(5), got5(5);
  {
    auto rq = sp.irecv<float>(got5, (r + P - 1) % P);
    auto sq = sp.isend<float>(five, (r + 1) % P);
    rq.wait();
    sq.wait();
  }
  std::vector<float> three(3), got3(3);
  sp.shift<float>(three, got3, 1);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::Send), (5 + 3) * F);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::Recv), 0u);
  EXPECT_EQ(sp.stats().calls("sp", OpKind::Send), 2u);
  EXPECT_EQ(sp.stats().calls("sp", OpKind::Recv), 2u);
  sp.shift<float>(three, got3, 4);  // a shift by P stays on this rank: nothing leaves it
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::Send), (5 + 3) * F);

  std::vector<std::byte> seven(7), gathered(28);
  sp.all_gather<std::byte>(seven, gathered);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllGather), 3 * 5 * F + 3 * 7);

  for (const auto& e : sp.stats().entries) {
    EXPECT_EQ(e.comm, "sp");
    EXPECT_GE(e.seconds, 0.0);
  }
}

// A buffer larger than one all-reduce piece: summed right in every piece (also the last, short
// one), counted once as one call with the sum of the pieces' ring volumes.
TEST_F(Counters, LargeAllReduceGoesInPieces) {
  const int r = rank(), P = 4;
  Comm sp = world.split(0, r, "sp");
  const int64_t piece = static_cast<int64_t>(seqvit::parallel::kAllReducePieceBytes / sizeof(float));
  const int64_t n = 2 * piece + 7;  // two whole pieces and 7 elements (shares 2, 2, 2, 1)
  std::vector<float> buf(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>((i % 1000) * (r + 1));
  sp.all_reduce<float>(buf);
  bool right = true;
  for (int64_t i = 0; i < n && right; ++i) right = buf[i] == static_cast<float>((i % 1000) * 10);
  EXPECT_TRUE(right);
  const uint64_t F = sizeof(float);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::AllReduce),
            (2 * 2 * (piece - piece / P) + 2 * (7 - (r < 3 ? 2 : 1))) * F);
  EXPECT_EQ(sp.stats().calls("sp", OpKind::AllReduce), 1u);
}

// Reduce-scatters larger than kAllReducePieceBytes go round a ring in chunks (comm.cpp): the
// sums equal the small-message path's, with uneven counts (one rank empty, one spanning several
// chunks and a remainder), and the count is the documented total - counts[r].
TEST_F(Counters, LargeReduceScatterGoesRoundARing) {
  const int r = rank(), P = 4;
  Comm sp = world.split(0, r, "sp");
  const int64_t chunk = (int64_t{4} << 20) / sizeof(float);
  const std::vector<int64_t> counts{3 * chunk + 5, 0, chunk / 2 + 3, 2 * chunk};
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  ASSERT_GT(total * int64_t(sizeof(float)), int64_t(seqvit::parallel::kAllReducePieceBytes));
  std::vector<float> send(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) send[i] = static_cast<float>((i % 997) + 1000 * r);
  std::vector<float> mine(static_cast<size_t>(counts[r]));
  sp.reduce_scatter_v<float>(send, mine, counts);
  int64_t first = 0;
  for (int j = 0; j < r; ++j) first += counts[j];
  bool right = true;
  for (int64_t i = 0; i < counts[r] && right; ++i)
    right = mine[i] == static_cast<float>(4 * ((first + i) % 997) + 1000 * (0 + 1 + 2 + 3));
  EXPECT_TRUE(right) << "rank " << r;
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::ReduceScatterV),
            uint64_t(total - counts[r]) * sizeof(float));
  // the equal-block form through the same ring
  const int64_t b = chunk + 7;
  std::vector<float> s2(static_cast<size_t>(P * b), 1.f + r), r2(static_cast<size_t>(b));
  sp.reduce_scatter<float>(s2, r2);
  EXPECT_EQ(r2.front(), 10.f);
  EXPECT_EQ(r2.back(), 10.f);
  EXPECT_EQ(sp.stats().bytes("sp", OpKind::ReduceScatter), uint64_t(3 * b) * sizeof(float));
}

TEST_F(Counters, CommunicatorsCountSeparatelyAndReset) {
  Comm sp = world.split(0, rank(), "sp");
  Comm dp = world.split(rank() % 2, rank(), "dp");  // pairs {0, 2} and {1, 3}
  Comm one = world.split(rank(), 0, "solo");
  // 256 Ki floats: 1 MiB per rank and block.
  std::vector<float> block(1 << 18), gathered(4 << 18);
  sp.all_gather<float>(block, gathered);
  std::vector<float> n8(8);
  dp.all_reduce<float>(n8);  // 2 ranks, shares 4: 2 * (8 - 4) floats
  one.all_reduce<float>(n8);
  one.all_gather<float>(n8, std::span<float>(gathered.data(), 8));

  CommStats s = sp.stats();
  s += dp.stats();
  s += one.stats();
  EXPECT_EQ(s.bytes("sp", OpKind::AllGather), 3ull << 20);
  EXPECT_EQ(s.bytes("dp", OpKind::AllReduce), 32u);
  EXPECT_EQ(s.bytes("solo", OpKind::AllReduce), 0u) << "a one-rank group sends nothing";
  EXPECT_EQ(s.bytes("solo", OpKind::AllGather), 0u);
  EXPECT_EQ(s.bytes("", OpKind::AllReduce), 32u);
  EXPECT_EQ(s.total_bytes(), (3ull << 20) + 32);

  const std::string report = s.report();
  EXPECT_EQ(report.find("sp all_gather 3.0 MiB "), 0u) << report;
  EXPECT_NE(report.find(" | dp all_reduce 32 B "), std::string::npos) << report;
  EXPECT_NE(report.find(" | solo all_reduce 0 B "), std::string::npos) << report;
  EXPECT_EQ(report.find('\n'), std::string::npos) << "the report is one line: " << report;

  CommStats twice = s;
  twice += s;
  EXPECT_EQ(twice.entries.size(), s.entries.size());
  EXPECT_EQ(twice.bytes("dp", OpKind::AllReduce), 64u);

  sp.reset_stats();
  EXPECT_TRUE(sp.stats().entries.empty());
  EXPECT_EQ(sp.stats().report(), "no communication");
  EXPECT_EQ(dp.stats().bytes("dp", OpKind::AllReduce), 32u) << "reset is per communicator";
}
