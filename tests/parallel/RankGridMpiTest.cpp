// The rank grid's communicators (run at 4 and 8 ranks): for several orders and for 2-D SP, each
// rank's coordinates follow from an independent mixed-radix oracle, and every axis communicator
// holds exactly the ranks of its group, in coordinate order. Worked examples are checked
// literally (they are the ones in docs/parallelism.md).
#include <algorithm>
#include <map>
#include <sstream>

#include "core/check.h"
#include "parallel/grid.h"
#include "mpi_test.h"

using namespace seqvit::parallel;
using seqvit_test::MpiTest;

namespace {

// Oracle: rank -> (dp, pp, tp, sp) with the order string's first axis the most significant.
std::map<std::string, int> oracle_coords(const GridConfig& c, int rank) {
  std::map<std::string, int> deg{{"dp", c.dp}, {"pp", c.pp}, {"tp", c.tp}, {"sp", c.sp()}};
  std::vector<std::string> order;
  std::stringstream ss(c.order);
  for (std::string a; std::getline(ss, a, ',');) order.push_back(a);
  std::map<std::string, int> out;
  for (int i = static_cast<int>(order.size()) - 1; i >= 0; --i) {
    out[order[i]] = rank % deg[order[i]];
    rank /= deg[order[i]];
  }
  return out;
}

class Grid : public MpiTest {
 protected:
  // The world ranks of a communicator, gathered through it (so in its rank order).
  std::vector<int> members(Comm& c) {
    std::vector<int32_t> me{world.rank()}, all(c.size());
    c.all_gather<int32_t>(me, all);
    return {all.begin(), all.end()};
  }

  void check_grid(const GridConfig& cfg) {
    RankGrid g(world, cfg);
    const GridLayout& L = g.layout();
    const auto want = oracle_coords(cfg, rank());
    EXPECT_EQ(g.coords().dp, want.at("dp")) << cfg.order;
    EXPECT_EQ(g.coords().pp, want.at("pp")) << cfg.order;
    EXPECT_EQ(g.coords().tp, want.at("tp")) << cfg.order;
    EXPECT_EQ(g.coords().sp, want.at("sp")) << cfg.order;
    EXPECT_EQ(g.coords().sp_ulysses, want.at("sp") % cfg.sp_ulysses);
    EXPECT_EQ(g.coords().sp_ring, want.at("sp") / cfg.sp_ulysses);
    for (Axis a : kAllAxes) {
      Comm& c = g.comm(a);
      EXPECT_EQ(c.name(), to_string(a));
      EXPECT_EQ(c.size(), L.degree(a)) << to_string(a);
      EXPECT_EQ(c.rank(), L.coord(a, rank())) << to_string(a);
      EXPECT_EQ(members(c), L.group(a, rank())) << to_string(a) << " order " << cfg.order;
    }
    // Members of a group share every other coordinate.
    for (int m : L.group(Axis::Tp, rank())) {
      EXPECT_EQ(L.coords(m).dp, g.coords().dp);
      EXPECT_EQ(L.coords(m).sp, g.coords().sp);
      EXPECT_EQ(L.coords(m).pp, g.coords().pp);
    }
  }
};

GridConfig config(int dp, int pp, int tp, int u, int ring, const std::string& order,
                  SpMode mode = SpMode::Ulysses) {
  GridConfig c;
  c.dp = dp, c.pp = pp, c.tp = tp, c.sp_ulysses = u, c.sp_ring = ring, c.order = order;
  c.sp_mode = ring > 1 ? (u > 1 ? SpMode::TwoD : SpMode::Ring) : mode;
  return c;
}

std::vector<std::vector<int>> groups_of(const RankGrid& g, Axis a) { return g.layout().groups(a); }

}  // namespace

TEST_F(Grid, CoordinatesAndGroupsForSeveralOrders) {
  const int W = size();
  ASSERT_TRUE(W == 4 || W == 8);
  if (W == 4) {
    check_grid(config(2, 1, 1, 2, 1, "dp,pp,tp,sp"));
    check_grid(config(1, 2, 2, 1, 1, "tp,pp,dp,sp"));
    check_grid(config(2, 1, 2, 1, 1, "sp,tp,pp,dp"));
    check_grid(config(1, 1, 1, 2, 2, "dp,pp,tp,sp"));  // 2-D SP
    check_grid(config(1, 1, 1, 1, 4, "dp,pp,tp,sp"));  // ring
  } else {
    check_grid(config(2, 1, 2, 2, 1, "dp,pp,tp,sp"));
    check_grid(config(2, 2, 2, 1, 1, "pp,dp,sp,tp"));
    check_grid(config(1, 2, 1, 2, 2, "sp,pp,tp,dp"));
    check_grid(config(2, 1, 1, 2, 2, "dp,pp,tp,sp"));  // 2-D SP with dp
    check_grid(config(8, 1, 1, 1, 1, "dp,pp,tp,sp"));
  }
}

TEST_F(Grid, WorkedExampleEightRanks) {
  if (size() != 8) GTEST_SKIP() << "an 8-rank example";
  // dp 2 x tp 2 x sp 2, default order: rank = 4 dp + 2 tp + sp.
  RankGrid g(world, config(2, 1, 2, 2, 1, "dp,pp,tp,sp"));
  using V = std::vector<std::vector<int>>;
  EXPECT_EQ(groups_of(g, Axis::Sp), (V{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(groups_of(g, Axis::Tp), (V{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(groups_of(g, Axis::Dp), (V{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(groups_of(g, Axis::SpDp), (V{{0, 1, 4, 5}, {2, 3, 6, 7}}));
  EXPECT_EQ(groups_of(g, Axis::Pp).size(), 8u);

  // 2-D SP: dp 2 x (sp_ring 2 x sp_ulysses 2); sp = 2 ring + ulysses, Ulysses innermost.
  RankGrid h(world, config(2, 1, 1, 2, 2, "dp,pp,tp,sp"));
  EXPECT_EQ(groups_of(h, Axis::SpUlysses), (V{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(groups_of(h, Axis::SpRing), (V{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(groups_of(h, Axis::Sp), (V{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(groups_of(h, Axis::SpDp), (V{{0, 1, 2, 3, 4, 5, 6, 7}}));
  // A collective on a sub-group reaches exactly its members.
  std::vector<float> v{float(rank())};
  h.sp_ring().all_reduce<float>(v);
  const int base = rank() - 2 * h.coords().sp_ring;
  EXPECT_EQ(v[0], float(2 * base + 2));
}

TEST_F(Grid, StatsCoverEveryCommunicatorOfTheGrid) {
  RankGrid g(world, config(size() / 2, 1, 1, 2, 1, "dp,pp,tp,sp"));
  std::vector<float> x(6), y(6);
  g.sp().all_to_all<float>(x, y);  // 2 ranks, blocks of 3: 12 bytes
  g.dp().all_reduce<float>(x);
  const auto s = g.stats();
  EXPECT_EQ(s.bytes("sp", OpKind::AllToAll), 12u);
  EXPECT_GT(s.bytes("dp", OpKind::AllReduce), 0u);
  EXPECT_NE(s.report().find("sp all_to_all 12 B"), std::string::npos) << s.report();
  g.reset_stats();
  EXPECT_EQ(g.stats().report(), "no communication");
}

TEST_F(Grid, WrongWorldSizeThrowsOnEveryRank) {
  try {
    RankGrid g(world, config(size(), 1, 1, 2, 1, "dp,pp,tp,sp"));
    ADD_FAILURE() << "no error for a grid of twice the world size";
  } catch (const seqvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format(
                  "communicator 'world' has {} ranks but the grid dp {} x pp 1 x tp 1 x sp 2 "
                  "needs {}",
                  size(), size(), 2 * size())),
              std::string::npos)
        << e.what();
  }
}

TEST_F(Grid, DescribeListsEveryGroup) {
  RankGrid g(world, config(size() / 4, 1, 2, 2, 1, "dp,pp,tp,sp"));
  const std::string d = g.describe();
  EXPECT_NE(
      d.find(fmt::format("rank grid: {} ranks = dp {} x pp 1 x tp 2 x sp 2", size(), size() / 4)),
      std::string::npos)
      << d;
  EXPECT_NE(d.find("tp groups (" + std::to_string(size() / 2) + " of 2 ranks): [0 2] [1 3]"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("pp groups: size 1, no communication"), std::string::npos) << d;
  if (rank() == 0) std::printf("%s", d.c_str());
}
