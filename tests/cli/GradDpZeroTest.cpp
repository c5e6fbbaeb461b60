// `mpirun seqvit grad --dp D [--zero Z]` (with --sp/--tp/--pp) against the single-process
// `seqvit grad` on the same model and batch files: the samples split over D replicas, the
// gradients (ZeRO-2/3) and parameters (ZeRO-3) sharded over the dp x sp replicas; rank 0
// writes the logical file, which must hold the same pred, loss and every grad.<name> (relative
// error <= 1e-5, fp32); bad --dp/--zero configurations end every rank with one message.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

using seqvit_test::expect_error;
using seqvit_test::run_seqvit_mpi;

class GradDpZeroTest : public seqvit_test::GradCliTest {
 protected:
  void write_inputs(model::Tokenization tok) { GradCliTest::write_inputs(tok, 4, 4); }
  void check(model::Tokenization tok) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    struct Run {
      int np;
      std::string flags, name, needle;
    };
    const std::vector<Run> runs = {
        {2, "--dp 2", "dp2", "data parallel: 2 replicas, 2 of 4 samples each"},
        {2, "--zero 3 --sp 2", "zero3_sp2", "ZeRO-3 over the 2 ranks"},
        {4, "--zero 3 --dp 2 --tp 2", "zero3_dp2_tp2", "ZeRO-3 over the 2 ranks"},
        {4, "--zero 2 --dp 2 --pp 2 --micro-batches 2", "zero2_dp2_pp2", "ZeRO-2 over the 2"},
    };
    for (const auto& r : runs) {
      auto res = run_seqvit_mpi(r.np, grad_args(r.name + ".safetensors") + " " + r.flags);
      ASSERT_EQ(res.status, 0) << r.flags << "\n" << res.output;
      EXPECT_NE(res.output.find(r.needle), std::string::npos) << res.output;
      compare(r.name + ".safetensors", r.flags);
    }
  }
};

TEST_F(GradDpZeroTest, AggregateMatchesSingleProcess) { check(model::Tokenization::Aggregate); }

TEST_F(GradDpZeroTest, BadConfigurationsEndEveryRankWithOneMessage) {
  write_inputs(model::Tokenization::Aggregate);  // batch 4
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --dp 4"),
               "--dp 4 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(3, grad_args("o.safetensors") + " --dp 3"),
               "global batch 4 cannot be split over dp = 3");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --zero 3"),
               "--zero 3 shards over the data- and sequence-parallel ranks");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --dp 2 --zero 4"),
               "--zero 4 is out of range");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
