// `mpirun -np D*S*P seqvit train --pp S --dp D [--sp P] --micro-batches m --pp-schedule
// 1f1b|gpipe` (synthetic mode, tiny model of 2 blocks, 3 steps) against the single-process run
// of the same global batch: every step's loss and gradient norm (the norm is global over the
// stages, so clipping agrees), and every tensor of the checkpoint and of its optimizer file,
// which rank 0 assembles from the stages (relative error <= 1e-5); gradient accumulation
// (--micro-batches without --pp) in one process; bad pipeline configurations.
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


class TrainPpTest : public seqvit_test::CliDirTest {
 protected:
  // A tiny model of 2 blocks, 3 steps of a global batch of 4, clipping on (--grad-clip 0.05 is
  // below the gradient norms, so every step clips by the global norm).
  std::string train_args(const std::string& tok, const std::string& name) const {
    return "train --steps 3 --batch 4 --img 8x16 --patch 4 --embed-dim 16 --depth 2 "
           "--decoder-depth 1 --heads 2 --mlp-ratio 2 --variables t2m,u10 --warmup 1 "
           "--lr 1e-3 --grad-clip 0.05 --seed 3 --threads 1 --log-every 1 --tokenization " +
           tok + " --out " + path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
  void compare(const std::string& name, const std::string& what) { expect_same_run(name, what); }
  void check(const std::string& tok, int np, const std::string& flags, const std::string& name) {
    auto r = np == 0 ? seqvit_test::run_seqvit(train_args(tok, name) + " " + flags)
                     : run_seqvit_mpi(np, train_args(tok, name) + " " + flags);
    ASSERT_EQ(r.status, 0) << flags << "\n" << r.output;
    EXPECT_NE(r.output.find("pipeline: "), std::string::npos) << r.output;
    if (np > 0 && flags.find("--pp 2") != std::string::npos) {  // one plan line per stage
      EXPECT_NE(r.output.find("memory plan per rank"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("(stage 0, tp 0)"), std::string::npos) << r.output;
      EXPECT_NE(r.output.find("(stage 1, tp 0)"), std::string::npos) << r.output;
    }
    compare(name, flags);
  }
  void single(const std::string& tok) {
    auto r = seqvit_test::run_seqvit(train_args(tok, "single"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void expect_error(const seqvit_test::Result& r, const std::string& needle) {
    seqvit_test::expect_error(r, needle, 1);
  }
};

TEST_F(TrainPpTest, AggregateMatchesSingleProcess) {
  single("aggregate");
  check("aggregate", 2, "--pp 2 --micro-batches 2", "pp2_1f1b");
  check("aggregate", 2, "--pp 2 --micro-batches 4 --pp-schedule gpipe", "pp2_gpipe");
  check("aggregate", 4, "--pp 2 --dp 2 --micro-batches 2", "pp2_dp2");
  check("aggregate", 0, "--micro-batches 4", "accumulate");
}

TEST_F(TrainPpTest, PerVariableMatchesSingleProcess) {
  single("per_variable");
  check("per_variable", 4, "--pp 2 --dp 2 --micro-batches 2 --pp-schedule gpipe", "pp2_dp2");
  check("per_variable", 4, "--pp 2 --sp 2 --sp-mode ring --micro-batches 2", "pp2_sp2");
}

TEST_F(TrainPpTest, BadConfigurationsExitWithOneMessage) {
  expect_error(run_seqvit_mpi(2, train_args("aggregate", "o") + " --pp 2 --dp 2"),
               "--dp 2 --sp 1 --pp 2 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(4, train_args("aggregate", "o") + " --pp 4"),
               "depth 2 cannot be split into pp = 4 pipeline stages");
  expect_error(run_seqvit_mpi(2, train_args("aggregate", "o") + " --pp 2 --micro-batches 3"),
               "cannot be split into micro_batches = 3");
  expect_error(seqvit_test::run_seqvit(train_args("aggregate", "o") + " --micro-batches 3"),
               "cannot be split into micro_batches = 3");
  expect_error(seqvit_test::run_seqvit(train_args("aggregate", "o") + " --pp-schedule zb"),
               "unknown pipeline schedule 'zb'");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
