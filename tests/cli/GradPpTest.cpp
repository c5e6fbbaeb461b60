// `mpirun -np S*P seqvit grad --pp S [--sp P] --micro-batches m --pp-schedule 1f1b|gpipe`
// against the single-process `seqvit grad` on the same model and batch files: rank 0 assembles
// the logical file from the stages (parallel::gather_logical), which must hold the same pred, loss
// and every grad.<name> (relative error <= 1e-5, fp32); gradient accumulation (--micro-batches
// without --pp) too; bf16 stages against the bf16 single process (1e-4); and bad pipeline
// configurations end every rank with one clear message.
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

class GradPpTest : public seqvit_test::GradCliTest {
 protected:
  void write_inputs(model::Tokenization tok) { GradCliTest::write_inputs(tok, 4, 4); }
  void check(model::Tokenization tok) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    struct Run {
      int np;
      std::string flags, name;
    };
    const std::vector<Run> runs = {
        {2, "--pp 2 --micro-batches 2", "pp2_1f1b"},
        {2, "--pp 2 --micro-batches 2 --pp-schedule gpipe", "pp2_gpipe"},
        {1, "--pp 1 --micro-batches 4 --pp-schedule gpipe", "pp1_gpipe"},
        {4, "--pp 2 --sp 2 --sp-mode ring --micro-batches 2", "pp2_sp2"},
    };
    // gradient accumulation in one process (no MPI)
    auto acc = seqvit_test::run_seqvit(grad_args("accumulate.safetensors") + " --micro-batches 4");
    ASSERT_EQ(acc.status, 0) << acc.output;
    compare("accumulate.safetensors", "--micro-batches 4");
    // bf16 stages against the bf16 single process (the same bf16 roundings of the same values;
    // the micro-batch sums differ in order only)
    auto b1 = seqvit_test::run_seqvit(grad_args("single_bf16.safetensors") + " --bf16");
    ASSERT_EQ(b1.status, 0) << b1.output;
    auto b2 = run_seqvit_mpi(2, grad_args("pp2_bf16.safetensors") +
                                    " --bf16 --pp 2 --micro-batches 2");
    ASSERT_EQ(b2.status, 0) << b2.output;
    compare("pp2_bf16.safetensors", "--bf16 --pp 2", "single_bf16.safetensors", 1e-4);
    for (const auto& r : runs) {
      auto res = run_seqvit_mpi(r.np, grad_args(r.name + ".safetensors") + " " + r.flags);
      ASSERT_EQ(res.status, 0) << r.flags << "\n" << res.output;
      EXPECT_NE(res.output.find("pipeline: "), std::string::npos) << res.output;
      compare(r.name + ".safetensors", r.flags);
    }
  }
};

TEST_F(GradPpTest, AggregateMatchesSingleProcess) { check(model::Tokenization::Aggregate); }
TEST_F(GradPpTest, PerVariableMatchesSingleProcess) { check(model::Tokenization::PerVariable); }

TEST_F(GradPpTest, BadConfigurationsEndEveryRankWithOneMessage) {
  write_inputs(model::Tokenization::Aggregate);  // depth 2, batch 4
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --pp 4"),
               "--pp 4 --sp 1 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(4, grad_args("o.safetensors") + " --pp 4"),
               "depth 2 cannot be split into pp = 4 pipeline stages");
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --pp 2 --micro-batches 3"),
               "cannot be split into micro_batches = 3");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --pp 1 --pp-schedule zb"),
               "unknown pipeline schedule 'zb': valid schedules are 1f1b and gpipe");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --micro-batches 3"),
               "the batch of 4 cannot be split into --micro-batches 3");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
