// `mpirun -np D*T*P seqvit train --tp T [--dp D] [--sp P --sp-mode M]` (synthetic mode, tiny
// model, 3 steps, gradient clipping on) against the single-process run with the same global
// batch: every step's loss and gradient norm (--loss-log; the norm is the global one over the
// tensor-parallel slices) and every tensor of the written model and optimizer files (rank 0
// gathers the logical, single-process tensors) match (relative error <= 1e-5); the replicated
// tensors are bitwise identical on every rank (all-gathered hashes); bad configurations end
// with one clear message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace {

using seqvit_test::run_seqvit_mpi;

using seqvit_test::read_numbers;

class TrainTpTest : public seqvit_test::CliDirTest {
 protected:
  // D 16 with 4 heads (d 4) and MLP width 32, so tp 2 x Ulysses 2 splits the heads.
  std::string train_args(const std::string& tok, const std::string& name) const {
    return "train --steps 3 --batch 4 --img 8x16 --patch 4 --embed-dim 16 --depth 2 "
           "--decoder-depth 1 --heads 4 --mlp-ratio 2 --variables t2m,u10 --warmup 1 "
           "--lr 1e-3 --grad-clip 0.05 --seed 3 --threads 1 --log-every 1 --tokenization " +
           tok + " --out " + path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
  void check(const std::string& tok, const std::string& flags, int np, const std::string& name) {
    auto r = run_seqvit_mpi(np, train_args(tok, name) + " " + flags);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("weights identical on all " + std::to_string(np) + " ranks"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("tp all_reduce"), std::string::npos) << r.output;
    expect_same_run(name, flags);
  }
  void single(const std::string& tok) {
    auto r = seqvit_test::run_seqvit(train_args(tok, "single"));
    ASSERT_EQ(r.status, 0) << r.output;
    // clipping must act for the test to check the global norm
    for (size_t i = 1; i < 6; i += 2) EXPECT_GT(read_numbers(path("single.loss"))[i], 0.05);
  }
  static void expect_error(const seqvit_test::Result& r, const std::string& needle) {
    seqvit_test::expect_error(r, needle, 1);
  }
};

TEST_F(TrainTpTest, AggregateMatchesSingleProcess) {
  single("aggregate");
  check("aggregate", "--tp 2", 2, "tp2");
  check("aggregate", "--tp 2 --dp 2", 4, "tp2_dp2");
  // another rank order: dp innermost, the TP pairs are ranks {0, 2} and {1, 3}
  check("aggregate", "--tp 2 --dp 2 --order sp,tp,pp,dp", 4, "tp2_dp2_order");
  check("aggregate", "--tp 2 --pp 2 --micro-batches 2 --pp-schedule gpipe", 4, "tp2_pp2");
  check("aggregate", "--tp 2 --sp 2 --sp-mode lss", 4, "tp2_lss2");
  // 2-D SP inside each TP coordinate: Ulysses 2 splits a TP rank's 2 heads, ring 2 across
  check("aggregate", "--tp 2 --sp 4 --sp-mode 2d --sp-ulysses 2", 8, "tp2_2d");
}

TEST_F(TrainTpTest, PerVariableMatchesSingleProcess) {
  single("per_variable");
  check("per_variable", "--tp 2 --sp 2 --sp-mode ulysses", 4, "tp2_ulysses2");
  check("per_variable", "--tp 4", 4, "tp4");
  // tensor x pipeline: each of 2 stages split over 2 TP ranks, 2 micro-batches (1F1B)
  check("per_variable", "--tp 2 --pp 2 --micro-batches 2", 4, "tp2_pp2");
  // recomputation re-runs each block's forward, all-reduces included, on every TP rank
  check("per_variable", "--tp 2 --dp 2 --recompute", 4, "tp2_dp2_recompute");
}

TEST_F(TrainTpTest, BadConfigurationsExitWithOneMessage) {
  expect_error(run_seqvit_mpi(2, train_args("aggregate", "o") + " --tp 2 --dp 2"),
               "--dp 2 --sp 1 --tp 2 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(3, train_args("aggregate", "o") + " --tp 3"),
               "tp = 3 must divide the 4 heads and the MLP width 32");
  expect_error(seqvit_test::run_seqvit(train_args("aggregate", "o") + " --tp 0"),
               "--tp must be >= 1, got 0");
  expect_error(seqvit_test::run_seqvit(train_args("aggregate", "o") + " --order dp,tp,sp"),
               "grid order 'dp,tp,sp'");
  expect_error(run_seqvit_mpi(2, train_args("aggregate", "o") + " --tp 2 --zero 1"),
               "--zero 1 shards over the data- and sequence-parallel ranks");
  expect_error(seqvit_test::run_seqvit("train --data " + path("none.nc") + " --tp 2 --zero 1"),
               "--zero 1 shards over the data- and sequence-parallel ranks");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
