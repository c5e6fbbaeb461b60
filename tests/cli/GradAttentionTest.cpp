// `--attention flash|dense` of seqvit grad and train: the dense (standard attention) gradient
// file equals the flash one (relative error <= 1e-5, fp32), also with recomputation, tensor
// parallelism and pipeline stages; a bad value is an error naming it
// and the valid ones; dense under sequence parallelism ends every rank with one clear message;
// a short synthetic training run with dense attention.
#include <gtest/gtest.h>

#include <string>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"

using namespace seqvit;

namespace {

using seqvit_test::expect_error;
using seqvit_test::run_seqvit;

class GradAttentionTest : public seqvit_test::GradCliTest {};

TEST_F(GradAttentionTest, DenseMatchesFlash) {
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable}) {
    write_inputs(tok, 2, 2);
    auto flash = run_seqvit(grad_args("single.safetensors") + " --attention flash");
    ASSERT_EQ(flash.status, 0) << flash.output;
    auto dense = run_seqvit(grad_args("dense.safetensors") + " --attention dense");
    ASSERT_EQ(dense.status, 0) << dense.output;
    compare("dense.safetensors", "dense " + model::to_string(tok));
    auto rc = run_seqvit(grad_args("dense_rc.safetensors") + " --attention dense --recompute");
    ASSERT_EQ(rc.status, 0) << rc.output;
    compare("dense_rc.safetensors", "dense recompute " + model::to_string(tok));
  }
}

// Tensor parallelism (each rank keeps the probabilities of its heads) and pipeline stages
// (each stage those of its blocks, per micro-batch slot) with dense attention.
TEST_F(GradAttentionTest, DenseUnderTensorAndPipelineParallelism) {
  write_inputs(model::Tokenization::Aggregate, 2, 2);
  auto flash = run_seqvit(grad_args("single.safetensors"));
  ASSERT_EQ(flash.status, 0) << flash.output;
  auto tp = seqvit_test::run_seqvit_mpi(2, grad_args("tp.safetensors") +
                                               " --tp 2 --attention dense");
  ASSERT_EQ(tp.status, 0) << tp.output;
  compare("tp.safetensors", "dense tp2");
  auto pp = seqvit_test::run_seqvit_mpi(
      2, grad_args("pp.safetensors") + " --pp 2 --micro-batches 2 --attention dense");
  ASSERT_EQ(pp.status, 0) << pp.output;
  compare("pp.safetensors", "dense pp2 m2");
}

TEST_F(GradAttentionTest, BadValuesAndSequenceParallelismAreRefused) {
  write_inputs(model::Tokenization::Aggregate, 4, 2);
  const auto bad = run_seqvit(grad_args("o.safetensors") + " --attention naive");
  expect_error(bad, "'naive'");
  expect_error(bad, "'flash' and 'dense'");
  expect_error(run_seqvit("train --steps 1 --attention Dense"), "'Dense'");
  expect_error(seqvit_test::run_seqvit_mpi(2, grad_args("o.safetensors") +
                                                  " --sp 2 --attention dense"),
               "--attention dense does not work with sequence parallelism");
}

TEST_F(GradAttentionTest, TrainsWithDenseAttention) {
  const auto r = run_seqvit("train --steps 2 --batch 2 --img 8x16 --patch 2 --embed-dim 32 "
                            "--depth 2 --heads 2 --log-every 1 --attention dense --out " +
                            path("m.safetensors"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("attention: dense"), std::string::npos) << r.output;
}

}  // namespace
