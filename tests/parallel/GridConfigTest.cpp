// The rank grid without MPI: validate()'s messages name the values and list valid ones, and the
// layout arithmetic (coordinates, groups, description) is consistent for every rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "core/check.h"
#include "parallel/grid.h"

using namespace seqvit::parallel;
using seqvit::model::ModelConfig;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqvit::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Default model: 32x64 grid, patch 4 -> 128 tokens, 4 heads, D 128, MLP 512, depth 4.
std::string validate_error(const GridConfig& c, int64_t world, int64_t batch = 8,
                           ModelConfig m = {}) {
  return error_of([&] { validate(c, world, m, batch); });
}

GridConfig grid(int dp, int pp, int tp, int u, int ring, SpMode mode = SpMode::Ulysses) {
  GridConfig c;
  c.dp = dp, c.pp = pp, c.tp = tp, c.sp_ulysses = u, c.sp_ring = ring, c.sp_mode = mode;
  return c;
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

}  // namespace

TEST(GridValidate, AcceptsValidConfigurations) {
  EXPECT_NO_THROW(validate(GridConfig{}, 1, ModelConfig{}, 8));
  EXPECT_NO_THROW(validate(grid(2, 2, 2, 2, 1), 16, ModelConfig{}, 8));
  EXPECT_NO_THROW(validate(grid(1, 1, 1, 2, 2, SpMode::TwoD), 4, ModelConfig{}, 8));
  EXPECT_NO_THROW(validate(grid(1, 1, 1, 1, 8, SpMode::Lss), 8, ModelConfig{}, 8));
  // Ring and LSS do not split heads: 16 segments of 8 tokens with 4 heads.
  EXPECT_NO_THROW(validate(grid(1, 1, 1, 1, 16, SpMode::Ring), 16, ModelConfig{}, 8));
  // Uneven head split (4 heads over 3 ranks: 2, 1, 1) is allowed; 24x48 / 4 = 72 tokens.
  ModelConfig m;
  m.img_h = 24, m.img_w = 48;
  EXPECT_NO_THROW(validate(grid(1, 1, 1, 3, 1), 3, m, 8));
}

TEST(GridValidate, WorldSizeMustMatchTheProduct) {
  auto msg = validate_error(grid(2, 1, 1, 2, 1), 6);
  EXPECT_HAS(msg, "world size 6 does not match the grid dp 2 x pp 1 x tp 1 x sp 2 = 4");
  EXPECT_HAS(msg, "with 6 ranks use dp = 3");
  msg = validate_error(grid(1, 1, 2, 2, 1), 6);
  EXPECT_HAS(msg, "pp x tp x sp = 4 does not divide 6; world sizes that fit are multiples of 4");
}

TEST(GridValidate, HeadsVersusUlyssesDegree) {
  auto msg = validate_error(grid(1, 1, 1, 8, 1), 8);
  EXPECT_HAS(msg,
             "4 heads cannot be split over sp_ulysses = 8: uneven head splits are allowed "
             "only when heads >= degree; valid Ulysses degrees: 1 to 4 (even splits: 1, 2 "
             "or 4)");
  msg = validate_error(grid(1, 1, 2, 4, 1), 8);
  EXPECT_HAS(msg,
             "2 heads per tensor-parallel rank (4 heads / tp 2) cannot be split over "
             "sp_ulysses = 4");
  // 2-D SP lifts it: only the Ulysses degree meets the heads.
  EXPECT_NO_THROW(validate(grid(1, 1, 1, 4, 2, SpMode::TwoD), 8, ModelConfig{}, 8));
}

TEST(GridValidate, TokensVersusSpDegree) {
  auto msg = validate_error(grid(1, 1, 1, 1, 3, SpMode::Lss), 3);
  EXPECT_HAS(msg,
             "128 tokens (aggregate tokenization, 32x64 grid, patch 4) cannot be split into "
             "equal segments over sp = 3; SP degrees that divide 128: 1, 2, 4, 8, 16, 32, "
             "64 or 128");
  ModelConfig m;
  m.tokenization = seqvit::model::Tokenization::PerVariable;  // 5 x 128 = 640 tokens
  msg = validate_error(grid(1, 1, 1, 3, 3, SpMode::TwoD), 9, 8, m);
  EXPECT_HAS(msg, "640 tokens (per_variable tokenization");
  EXPECT_HAS(msg, "over sp = sp_ulysses 3 x sp_ring 3 = 9");
}

TEST(GridValidate, TensorParallelDividesHeadsAndMlp) {
  auto msg = validate_error(grid(1, 1, 3, 1, 1), 3);
  EXPECT_HAS(msg, "tp = 3 must divide the 4 heads and the MLP width 512; valid tp: 1, 2 or 4");
  ModelConfig m;
  m.num_heads = 8, m.embed_dim = 120, m.mlp_ratio = 1.5;  // hidden 180
  msg = validate_error(grid(1, 1, 8, 1, 1), 8, 8, m);
  EXPECT_HAS(msg, "tp = 8 must divide the 8 heads and the MLP width 180; valid tp: 1, 2 or 4");
}

TEST(GridValidate, DepthVersusPipelineStages) {
  auto msg = validate_error(grid(1, 3, 1, 1, 1), 3);
  EXPECT_HAS(msg,
             "depth 4 cannot be split into pp = 3 pipeline stages of equal block counts; "
             "valid pp: 1, 2 or 4");
  msg = validate_error(grid(1, 8, 1, 1, 1), 8);
  EXPECT_HAS(msg, "depth 4 cannot be split into pp = 8");
}

TEST(GridValidate, BatchVersusDpAndMicroBatches) {
  auto msg = validate_error(grid(4, 1, 1, 1, 1), 4, 6);
  EXPECT_HAS(msg,
             "global batch 6 cannot be split over dp = 4 data-parallel replicas; use a "
             "batch that is a multiple of 4");
  GridConfig c = grid(2, 1, 1, 1, 1);
  c.micro_batches = 3;
  msg = validate_error(c, 2, 8);
  EXPECT_HAS(msg,
             "the batch per data-parallel replica, 4 (batch 8 / dp 2), cannot be split into "
             "micro_batches = 3; valid micro-batch counts: 1, 2 or 4");
  c.micro_batches = 0;
  EXPECT_HAS(validate_error(c, 2, 8), "micro_batches must be >= 1, got 0");
  EXPECT_HAS(validate_error(GridConfig{}, 1, 0), "batch must be >= 1, got 0");
}

TEST(GridValidate, ZeroStageModeOrderAndDegrees) {
  GridConfig c;
  c.zero = 4;
  EXPECT_HAS(validate_error(c, 1), "zero stage 4 is out of range: valid stages are 0 (off), 1");
  EXPECT_HAS(error_of([] { parse_sp_mode("megatron"); }),
             "unknown sp_mode 'megatron': valid modes are ulysses, lss, ring and 2d");
  EXPECT_EQ(parse_sp_mode("2d"), SpMode::TwoD);
  EXPECT_EQ(to_string(SpMode::Lss), "lss");

  c = GridConfig{};
  c.order = "dp,tp,sp";
  EXPECT_HAS(validate_error(c, 1),
             "grid order 'dp,tp,sp': 'pp' is missing; the order lists each "
             "of dp, pp, tp, sp exactly once, outermost first, e.g. "
             "'dp,pp,tp,sp'");
  c.order = "dp,pp,tp,sp,sp";
  EXPECT_HAS(validate_error(c, 1), "'sp' is listed twice");
  c.order = "dp,pp,xp,sp";
  EXPECT_HAS(validate_error(c, 1), "unknown axis 'xp'");
  c.order = " sp , tp,pp,dp";  // spaces are fine
  EXPECT_NO_THROW(validate(c, 1, ModelConfig{}, 8));

  EXPECT_HAS(validate_error(grid(0, 1, 1, 1, 1), 0), "dp must be >= 1, got 0");
  EXPECT_HAS(validate_error(grid(1, 1, 1, 1, 2), 2),
             "sp_mode ulysses uses sp_ulysses only, but sp_ring = 2; use sp_mode 2d");
  EXPECT_HAS(validate_error(grid(1, 1, 1, 2, 1, SpMode::Lss), 2),
             "sp_mode lss splits the sequence into segments over sp_ring, but sp_ulysses = 2; "
             "set sp_ring = 2 and sp_ulysses = 1, or use sp_mode 2d");
}

TEST(GridLayout, CoordinatesInvertAndGroupsPartitionTheWorld) {
  for (const char* order : {"dp,pp,tp,sp", "sp,tp,pp,dp", "tp,dp,sp,pp"}) {
    GridConfig c = grid(2, 3, 2, 2, 2, SpMode::TwoD);
    c.order = order;
    const GridLayout L(c);
    ASSERT_EQ(L.world_size(), 48);
    std::set<std::vector<int>> seen;
    for (int r = 0; r < 48; ++r) {
      const GridCoords g = L.coords(r);
      EXPECT_EQ(L.rank_of(g), r) << order;
      EXPECT_EQ(g.sp, g.sp_ring * 2 + g.sp_ulysses);
      seen.insert({g.dp, g.pp, g.tp, g.sp});
    }
    EXPECT_EQ(seen.size(), 48u) << "coordinates are not unique for order " << order;
    for (Axis a : kAllAxes) {
      std::vector<int> hits(48, 0);
      for (const auto& grp : L.groups(a)) {
        EXPECT_EQ(static_cast<int>(grp.size()), L.degree(a)) << to_string(a);
        for (size_t i = 0; i < grp.size(); ++i) {
          ++hits[grp[i]];
          EXPECT_EQ(L.coord(a, grp[i]), static_cast<int>(i)) << to_string(a);
          EXPECT_EQ(L.group(a, grp[i]), grp);
        }
      }
      EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }))
          << to_string(a) << " groups do not partition the world for order " << order;
    }
  }
}

TEST(GridLayout, InnermostAxisIsConsecutive) {
  // Default order: sp innermost, then tp; an sp group is a run of consecutive ranks.
  const GridLayout L(grid(2, 1, 2, 4, 1));
  EXPECT_EQ(L.group(Axis::Sp, 9), (std::vector<int>{8, 9, 10, 11}));
  EXPECT_EQ(L.group(Axis::Tp, 9), (std::vector<int>{9, 13}));
  EXPECT_EQ(L.group(Axis::Dp, 9), (std::vector<int>{1, 9}));
  EXPECT_EQ(L.group(Axis::SpDp, 9), (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(L.coord(Axis::SpDp, 13), 5);
}

TEST(GridLayout, DescribeWorkedExample) {
  GridConfig c = grid(2, 1, 2, 2, 1);
  c.zero = 1, c.micro_batches = 2;
  const std::string d = GridLayout(c).describe();
  EXPECT_HAS(d,
             "rank grid: 8 ranks = dp 2 x pp 1 x tp 2 x sp 2, order dp,pp,tp,sp (outermost "
             "first)\n");
  EXPECT_HAS(d, "  sp_mode ulysses, zero 1, micro_batches 2, recompute off\n");
  EXPECT_HAS(d, "0: (0, 0, 0, 0)  1: (0, 0, 0, 1)  2: (0, 0, 1, 0)");
  EXPECT_HAS(d, "  dp groups (4 of 2 ranks): [0 4] [1 5] [2 6] [3 7]\n");
  EXPECT_HAS(d, "  pp groups: size 1, no communication\n");
  EXPECT_HAS(d, "  tp groups (4 of 2 ranks): [0 2] [1 3] [4 6] [5 7]\n");
  EXPECT_HAS(d, "  sp groups (4 of 2 ranks): [0 1] [2 3] [4 5] [6 7]\n");
  EXPECT_HAS(d,
             "  sp_dp groups (2 of 4 ranks) (gradient averaging over sp x dp): [0 1 4 5] "
             "[2 3 6 7]\n");
  const std::string two_d = GridLayout(grid(1, 1, 1, 2, 2, SpMode::TwoD)).describe();
  EXPECT_HAS(two_d, "(sp_ring 2 x sp_ulysses 2)");
  EXPECT_HAS(two_d, "3: (0, 0, 0, 1.1)");
  EXPECT_HAS(two_d, "sp_ulysses groups (2 of 2 ranks): [0 1] [2 3]");
  EXPECT_HAS(two_d, "sp_ring groups (2 of 2 ranks): [0 2] [1 3]");
  EXPECT_HAS(two_d, "sp_mode 2d (ulysses inside, ring across)");
}

// The command line's --sp P --sp-mode M --sp-ulysses U --sp-outer O.
TEST(GridValidate, SpDegreesFromTheCommandLine) {
  GridConfig c;
  set_sp_degrees(c, 4, SpMode::Ulysses);
  EXPECT_EQ(c.sp_ulysses, 4);
  EXPECT_EQ(c.sp_ring, 1);
  set_sp_degrees(c, 4, SpMode::Ring);
  EXPECT_EQ(c.sp_ulysses, 1);
  EXPECT_EQ(c.sp_ring, 4);
  set_sp_degrees(c, 8, SpMode::TwoD, 2, SpMode::Lss);
  EXPECT_EQ(c.sp_ulysses, 2);
  EXPECT_EQ(c.sp_ring, 4);
  EXPECT_EQ(c.sp_mode, SpMode::TwoD);
  EXPECT_EQ(c.sp_outer, SpMode::Lss);
  EXPECT_NO_THROW(validate(c, 8, ModelConfig{}, 8));
  EXPECT_HAS(error_of([&] { set_sp_degrees(c, 6, SpMode::TwoD, 4); }),
             "--sp-mode 2d needs --sp-ulysses U dividing --sp 6 (U ranks split the heads inside a "
             "group, --sp / U groups run ring across them); got 4; valid U: 1, 2, 3 or 6");
  EXPECT_HAS(error_of([&] { set_sp_degrees(c, 4, SpMode::TwoD); }), "got none");
  EXPECT_HAS(error_of([&] { set_sp_degrees(c, 4, SpMode::Lss, 2); }),
             "--sp-ulysses 2 is for --sp-mode 2d");
  EXPECT_EQ(parse_sp_outer("lss"), SpMode::Lss);
  EXPECT_HAS(error_of([] { parse_sp_outer("ulysses"); }),
             "unknown sp_outer 'ulysses': 2-D SP runs ring or lss across its Ulysses groups");
  // Only the Ulysses degree meets the heads: 4 heads over sp_ulysses 4 x sp_ring 8 is fine.
  set_sp_degrees(c, 32, SpMode::TwoD, 4);
  EXPECT_NO_THROW(validate(c, 32, ModelConfig{}, 8));
  c.sp_outer = SpMode::Ulysses;
  EXPECT_HAS(validate_error(c, 32), "sp_mode 2d runs ring or lss across its Ulysses groups");
}
