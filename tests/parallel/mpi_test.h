// The fixture of every *MpiTest: all ranks run the same tests, and a test that fails on one rank
// fails on all of them (TearDown gathers the failure flags), so the job's verdict and exit code
// never depend on which rank printed. Use EXPECT_* for per-element checks so that a rank that
// sees a wrong value still reaches the next collective with the others.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "core/rng.h"
#include "parallel/mpi_comm.h"

namespace seqvit_test {

class MpiTest : public ::testing::Test {
 protected:
  MpiTest() : world(seqvit::parallel::mpi_world()) {}

  void TearDown() override {
    const int failed = HasFailure() ? 1 : 0;
    std::vector<int> all(world.size());
    MPI_Allgather(&failed, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
    std::string ranks;
    for (int r = 0; r < world.size(); ++r)
      if (all[r]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
    if (!ranks.empty() && !failed) ADD_FAILURE() << "this test failed on rank(s) " << ranks;
    if (!ranks.empty() && failed && world.rank() == 0)
      std::fprintf(stderr, "[ failed on rank(s) %s ]\n", ranks.c_str());
  }

  // Random N(0,1) floats, different on every rank and for every seed.
  std::vector<float> random(size_t n, uint64_t seed) const {
    seqvit::Rng rng(seed * 7919 + static_cast<uint64_t>(world.rank()) * 104729 + 1);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
  }

  seqvit::parallel::Comm world;
  int rank() const { return world.rank(); }
  int size() const { return world.size(); }
};

}  // namespace seqvit_test
