// `mpirun -np T*P seqvit grad --tp T [--sp P --sp-mode M]` against the single-process
// `seqvit grad` on the same model and batch files: rank 0 gathers the logical gradients of the
// tensor-parallel slices, so its output file must hold the same pred, loss and every
// grad.<name> (relative error <= 1e-5, fp32) as one process; for tp 2 alone, tp 4, and tp 2 x
// sp 2 (Ulysses, ring), both tokenizations; bad TP configurations end every rank with one
// clear message.
#include <gtest/gtest.h>
#include <unistd.h>

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

class GradTpTest : public seqvit_test::GradCliTest {
 protected:
  void write_inputs(model::Tokenization tok, int64_t heads = 4) {
    GradCliTest::write_inputs(tok, heads, 2);
  }
  void check(model::Tokenization tok) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    struct Case {
      int np, tp;
      std::string flags, name;
    };
    for (const Case& k : {Case{2, 2, "--tp 2", "tp2"}, Case{4, 4, "--tp 4", "tp4"},
                          Case{4, 2, "--tp 2 --sp 2 --sp-mode ulysses", "tp2_ulysses2"},
                          Case{4, 2, "--tp 2 --sp 2 --sp-mode ring", "tp2_ring2"}}) {
      const std::string out = k.name + ".safetensors";
      auto r = run_seqvit_mpi(k.np, grad_args(out) + " " + k.flags);
      ASSERT_EQ(r.status, 0) << k.flags << "\n" << r.output;
      EXPECT_NE(r.output.find("tensor parallel: " + std::to_string(k.tp) + " ranks"),
                std::string::npos)
          << r.output;
      compare(out, k.flags);
    }
  }
};

TEST_F(GradTpTest, AggregateMatchesSingleProcess) { check(model::Tokenization::Aggregate); }
TEST_F(GradTpTest, PerVariableMatchesSingleProcess) { check(model::Tokenization::PerVariable); }

TEST_F(GradTpTest, BadConfigurationsEndEveryRankWithOneMessage) {
  write_inputs(model::Tokenization::Aggregate, 2);  // 2 heads, MLP width 128
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --tp 2 --sp 2"),
               "--tp 2 --sp 2 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(3, grad_args("o.safetensors") + " --tp 3"),
               "tp = 3 must divide the 2 heads and the MLP width 128");
  expect_error(run_seqvit_mpi(4, grad_args("o.safetensors") + " --tp 2 --sp 2 --sp-mode ulysses"),
               "1 heads per tensor-parallel rank (2 heads / tp 2) cannot be split over "
               "sp_ulysses = 2");
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors")), "launched as 2 ranks without --sp");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
