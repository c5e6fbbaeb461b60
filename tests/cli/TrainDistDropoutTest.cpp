// Dropout and drop-path under every parallel layout (docs/model.md "Dropout"): the masks are a
// function of the seed, the optimizer step and each element's place in the single-process
// tensors (global sample, token, column), so `mpirun seqvit train --dropout --drop-path` with
// --dp, --sp, --tp, --pp and micro-batches, --zero 3 draws the single process's masks: every step's loss
// and gradient norm and the final weights agree within 1e-5 (tests/cli/TrainDistTest.cpp's
// comparison), and so does --device guarded.
#include <gtest/gtest.h>

#include <string>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"

namespace {

using seqvit_test::run_seqvit_mpi;

class TrainDistDropoutTest : public seqvit_test::CliDirTest {
 protected:
  // A tiny model (2 blocks: drop-path 0 and 0.3), 3 steps of a global batch of 4.
  std::string train_args(const std::string& name) const {
    return "train --steps 3 --batch 4 --img 8x16 --patch 4 --embed-dim 16 --depth 2 "
           "--decoder-depth 1 --heads 2 --mlp-ratio 2 --variables t2m,u10 --warmup 1 "
           "--lr 1e-3 --seed 3 --threads 1 --dropout 0.2 --drop-path 0.3 --out " +
           path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
};

TEST_F(TrainDistDropoutTest, EveryLayoutDrawsTheSingleProcessMasks) {
  const auto single = seqvit_test::run_seqvit(train_args("single"));
  ASSERT_EQ(single.status, 0) << single.output;
  // without dropout the run differs (the masks matter)
  ASSERT_EQ(seqvit_test::run_seqvit(train_args("plain") + " --dropout 0 --drop-path 0").status, 0);
  EXPECT_NE(seqvit_test::read_numbers(path("plain.loss"))[0],
            seqvit_test::read_numbers(path("single.loss"))[0]);
  // gradient accumulation over micro-batches, one process; the guarded device
  for (const auto& [name, extra] :
       {std::pair<std::string, std::string>{"accumulate", " --micro-batches 2"},
        {"guarded", " --device guarded"}}) {
    const auto r = seqvit_test::run_seqvit(train_args(name) + extra);
    ASSERT_EQ(r.status, 0) << r.output;
    expect_same_run(name, name, false);
  }
  for (const auto& [name, extra] :
       {std::pair<std::string, std::string>{"dp2", " --dp 2"},
        {"sp2", " --sp 2 --sp-mode ring"},
        {"tp2", " --tp 2"},
        {"pp2", " --pp 2 --micro-batches 2"},
        {"zero3", " --dp 2 --zero 3"}}) {
    const auto r = run_seqvit_mpi(2, train_args(name) + extra);
    ASSERT_EQ(r.status, 0) << name << "\n" << r.output;
    expect_same_run(name, name, false);
  }
}

}  // namespace
