// parallel/logical.h: a logical buffer of 1,000 floats (value = index) shared out in runs that
// overlap between ranks (replicas) and in a different order locally; the root's gather is the
// logical buffer, scatter returns every rank exactly its own runs, and a run outside the
// buffers is refused by name.
#include <vector>

#include "core/check.h"
#include "parallel/logical.h"
#include "parallel/mpi_test.h"

using namespace seqvit;

namespace {

constexpr int64_t kLogical = 1000;

// Rank r holds the blocks b = r (mod P) of 100 floats, plus block 0 (a replica on every rank),
// stored in reverse block order locally.
std::vector<model::LogicalRun> runs_of(int rank, int size) {
  std::vector<int64_t> blocks{0};
  for (int64_t b = rank; b < 10; b += size)
    if (b != 0) blocks.push_back(b);
  std::vector<model::LogicalRun> runs;
  int64_t local = 0;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    runs.push_back({local, *it * 100, 100});
    local += 100;
  }
  return runs;
}

class LogicalMpiTest : public seqvit_test::MpiTest {};

TEST_F(LogicalMpiTest, GatherAssemblesAndScatterReturnsEachRanksRuns) {
  const auto runs = runs_of(rank(), size());
  const int64_t local_n = static_cast<int64_t>(runs.size()) * 100;
  std::vector<float> local(static_cast<size_t>(local_n));
  for (const auto& r : runs)
    for (int64_t i = 0; i < r.count; ++i) local[r.local_offset + i] = float(r.logical_offset + i);
  parallel::check_runs(runs, local_n, kLogical);
  for (int root : {0, size() - 1}) {
    std::vector<float> logical(kLogical, -1.f);
    parallel::gather_logical(world, runs, local.data(), logical.data(), kLogical, root);
    if (rank() == root) {
      for (int64_t i = 0; i < kLogical; ++i)  // every block has an owner
        EXPECT_EQ(logical[i], float(i)) << i;
    }
    std::vector<float> back(local.size(), -2.f);
    parallel::scatter_logical(world, runs, back.data(), logical.data(), kLogical, root);
    EXPECT_EQ(back, local);
  }
}

TEST_F(LogicalMpiTest, RunsOutsideTheBuffersAreRefused) {
  const std::vector<model::LogicalRun> bad{{0, 950, 100}};
  EXPECT_THROW(parallel::check_runs(bad, 100, kLogical), Error);
}

}  // namespace
