// Driver of RankFailureTest.OneRankFailingFailsEveryRank: an MpiTest program whose first test
// fails on rank 1 only. The harness (mpi_test.h, mpi_test_main.cpp) must fail it on every rank,
// name rank 1, and still run the next test, which needs every rank in a collective.
#include "mpi_test.h"

using seqvit_test::MpiTest;

TEST_F(MpiTest, FailsOnRankOneOnly) { EXPECT_NE(rank(), 1) << "deliberate failure"; }

TEST_F(MpiTest, NextTestStillRunsTogether) {
  std::vector<float> x{1.f};
  world.all_reduce<float>(x);
  EXPECT_EQ(x[0], float(size()));
  if (rank() == 0) std::printf("next test: all_reduce over %d ranks done\n", size());
}
