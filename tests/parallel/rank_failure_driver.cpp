// Driver of RankFailureTest: every rank enters an all_reduce, except rank 1, which first dies in
// the way argv[1] names: "abort" (std::abort), "exit" (_exit(3) without MPI_Finalize), "error"
// (a seqvit::Error caught in main, which ends all ranks with abort_all, as seqvit's main does)
// or "none" (no failure: the job must succeed).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/check.h"
#include "parallel/mpi_comm.h"

int main(int argc, char** argv) {
  seqvit::parallel::MpiRuntime mpi(&argc, &argv);
  auto world = seqvit::parallel::mpi_world();
  const std::string mode = argc > 1 ? argv[1] : "none";
  try {
    if (world.rank() == 1) {
      if (mode == "abort") std::abort();
      if (mode == "exit") _exit(3);
      if (mode == "error") seqvit::fail("rank 1 found a bad shard (test)");
    }
    std::vector<float> x(1024, 1.f);
    world.all_reduce<float>(x);
    if (world.rank() == 0) std::printf("all_reduce done: %g\n", x[0]);
  } catch (const seqvit::Error& e) {
    std::fprintf(stderr, "seqvit: error on rank %d: %s\n", world.rank(), e.what());
    seqvit::parallel::abort_all(1);
  }
  return 0;
}
