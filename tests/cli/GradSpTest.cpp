// `mpirun -np P seqvit grad --sp P --sp-mode M` against the single-process `seqvit grad` on the
// same model and batch files: rank 0's output file must hold the same pred, loss and every
// grad.<name> (relative error <= 1e-5, fp32), for ulysses, lss and ring at P = 2 and 4, both
// tokenizations; 2-D SP (--sp 4 --sp-mode 2d --sp-ulysses 2, ring or lss across); and bad SP
// configurations end every rank with one clear message.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
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

class GradSpTest : public seqvit_test::GradCliTest {
 protected:
  void write_inputs(model::Tokenization tok, int64_t heads = 4) {
    GradCliTest::write_inputs(tok, heads, 2);
  }
  void check_modes(model::Tokenization tok) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    for (int P : {2, 4})
      for (const char* mode : {"ulysses", "lss", "ring"}) {
        const std::string out = fmt_name(mode, P);
        auto r = run_seqvit_mpi(P, grad_args(out) + " --sp " + std::to_string(P) + " --sp-mode " + mode);
        ASSERT_EQ(r.status, 0) << r.output;
        EXPECT_NE(r.output.find("sequence parallel: " + std::to_string(P) + " ranks"),
                  std::string::npos)
            << r.output;
        compare(out, std::string(mode) + " P=" + std::to_string(P));
      }
  }
  static std::string fmt_name(const char* mode, int P) {
    return std::string("sp_") + mode + "_" + std::to_string(P) + ".safetensors";
  }
};

TEST_F(GradSpTest, AggregateMatchesSingleProcess) { check_modes(model::Tokenization::Aggregate); }
TEST_F(GradSpTest, PerVariableMatchesSingleProcess) {
  check_modes(model::Tokenization::PerVariable);
}

// Mixed precision: bf16 matrix products on every rank, the SP attention in fp32; against the
// single-process bf16 file (whose attention runs in bf16), so at a bf16 tolerance.
TEST_F(GradSpTest, Bf16MatchesSingleProcessBf16) {
  write_inputs(model::Tokenization::Aggregate);
  auto single = seqvit_test::run_seqvit(grad_args("single_bf16.safetensors") + " --bf16");
  ASSERT_EQ(single.status, 0) << single.output;
  for (const char* mode : {"ulysses", "ring"}) {
    const std::string out = std::string("bf16_") + mode + ".safetensors";
    auto r = run_seqvit_mpi(2, grad_args(out) + " --bf16 --sp 2 --sp-mode " + mode);
    ASSERT_EQ(r.status, 0) << r.output;
    compare(out, std::string(mode) + " bf16", "single_bf16.safetensors", 2e-2);
  }
}

// 2-D SP: 2 Ulysses ranks x 2 ring (LSS) groups under mpirun -np 4.
TEST_F(GradSpTest, TwoDMatchesSingleProcess) {
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable}) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    for (const char* outer : {"ring", "lss"}) {
      if (tok == model::Tokenization::PerVariable && std::string(outer) == "lss") continue;
      const std::string out = fmt_name(outer, 22);
      auto r = run_seqvit_mpi(
          4, grad_args(out) + " --sp 4 --sp-mode 2d --sp-ulysses 2 --sp-outer " + outer);
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_NE(r.output.find("sequence parallel: 4 ranks, 2d (ulysses 2 x " + std::string(outer) +
                              " 2)"),
                std::string::npos)
          << r.output;
      compare(out, std::string("2d ") + outer + " " + model::to_string(tok));
    }
  }
}

TEST_F(GradSpTest, BadConfigurationsEndEveryRankWithOneMessage) {
  write_inputs(model::Tokenization::Aggregate, 2);  // 32 tokens, 2 heads
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --sp 4"),
               "--sp 4 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(3, grad_args("o.safetensors") + " --sp 3 --sp-mode ring"),
               "cannot be split into equal segments over sp = 3");
  expect_error(run_seqvit_mpi(4, grad_args("o.safetensors") + " --sp 4 --sp-mode ulysses"),
               "2 heads cannot be split over sp_ulysses = 4");
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors")), "launched as 2 ranks without --sp");
  expect_error(run_seqvit_mpi(4, grad_args("o.safetensors") + " --sp 4 --sp-mode 2d"),
               "--sp-mode 2d needs --sp-ulysses U dividing --sp 4");
  expect_error(run_seqvit_mpi(4, grad_args("o.safetensors") + " --sp 4 --sp-mode 2d "
                                                               "--sp-ulysses 4 --sp-outer lss"),
               "2 heads cannot be split over sp_ulysses = 4");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") +
                                       " --sp 1 --sp-mode 2d --sp-ulysses 1 --sp-outer tree"),
               "unknown sp_outer 'tree'");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --sp 2 --sp-mode sideways"),
               "unknown sp_mode 'sideways'");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
