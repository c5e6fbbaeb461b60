// A rank that dies mid-collective must end the whole job quickly and say which rank it was: runs
// rank_failure_driver under mpirun (3 ranks, rank 1 fails before an all_reduce the others are
// in) with `timeout 60`, and checks a non-zero exit, the time taken and the message.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <regex>
#include <string>

namespace {

struct DriverRun {
  int status = -1;  // exit status of `timeout mpirun ...` (124: timed out)
  double seconds = 0;
  std::string output;
};

// `timeout 60 mpirun -np <np> <program> <args>` with the environment of the MPI tests.
DriverRun run_mpi(int np, const std::string& program_and_args) {
  const std::string cmd =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 "
      "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 "
      "timeout 60 " SEQVIT_MPIEXEC " -np " +
      std::to_string(np) + " --oversubscribe " + program_and_args + " 2>&1";
  DriverRun r;
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

DriverRun run_driver(const std::string& mode) {
  return run_mpi(3, std::string(SEQVIT_RANK_FAILURE_DRIVER) + " " + mode);
}

void expect_job_ends(const DriverRun& r, const std::regex& names_rank, const char* how) {
  EXPECT_NE(r.status, 0) << how << ": mpirun exited 0\n" << r.output;
  EXPECT_NE(r.status, 124) << how << ": the job hung until `timeout 60`\n" << r.output;
  EXPECT_LT(r.seconds, 15.0) << how << ": the job took " << r.seconds << " s to end\n" << r.output;
  EXPECT_TRUE(std::regex_search(r.output, names_rank))
      << how << ": the output does not name rank 1\n"
      << r.output;
  std::printf("%s: exit %d after %.2f s\n", how, r.status, r.seconds);
}

}  // namespace

TEST(RankFailure, HealthyJobSucceeds) {
  const DriverRun r = run_driver("none");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("all_reduce done: 3"), std::string::npos) << r.output;
}

TEST(RankFailure, AbortEndsTheJob) {
  expect_job_ends(run_driver("abort"), std::regex("process rank 1 .*signal 6"), "std::abort");
}

TEST(RankFailure, ExitWithoutFinalizeEndsTheJob) {
  // Open MPI names the process as [[jobid,0],rank] and gives its exit code.
  expect_job_ends(run_driver("exit"), std::regex("\\[\\[[0-9]+,[0-9]+\\],1\\][^]*Exit code: +3"),
                  "_exit(3)");
}

TEST(RankFailure, ErrorOnOneRankAbortsAll) {
  // The rank is named by the failing rank's own message. Open MPI's "MPI_ABORT was invoked on
  // rank 1" is not reliable: its help message races with the process' exit (Open MPI 4.1 then
  // logs "ORTE_ERROR_LOG: Data unpack would read past end of buffer" instead).
  expect_job_ends(run_driver("error"),
                  std::regex("seqvit: error on rank 1: rank 1 found a bad shard"),
                  "seqvit::Error + abort_all");
}

TEST(RankFailure, OneRankFailingFailsEveryRank) {
  // The harness of the *MpiTest programs: rank 0 reports rank 1's failure, rank 1 prints its
  // own, the job exits non-zero, and the next test still runs on every rank.
  const DriverRun r = run_mpi(2, SEQVIT_MPI_HARNESS_DRIVER " --gtest_color=no");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "hung\n" << r.output;
  EXPECT_NE(r.output.find("this test failed on rank(s) 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank 1] MpiTest.FailsOnRankOneOnly:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("deliberate failure"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("next test: all_reduce over 2 ranks done"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[  FAILED  ] 1 test"), std::string::npos) << r.output;
}
