// The whole model on the CUDA backend against the CPU backend (ctest label gpu; skipped without
// a usable GPU, failed instead with SEQVIT_REQUIRE_GPU=1): loss, pred and every parameter's
// gradient, tensor by tensor, in both tokenizations, with flash and dense attention and
// recomputation. fp32 on the GPU against fp32 on the CPU within 1e-5 (norm-wise relative, the
// repository's one rel_err); bf16 on the GPU against fp32 on the CPU within the bf16 tolerance
// docs/cuda.md states (the CPU's own bf16 run is held to the same bound, so the bound measures
// bf16 itself, not the device).
#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "backend/device.h"
#include "core/check.h"
#include "gpu_test.h"
#include "model/climax.h"
#include "model/device_batch.h"
#include "model/device_run.h"
#include "model/model_batch.h"
#include "rel_err.h"

using namespace seqvit;
using namespace seqvit::model;
using seqvit_test::rel_err;

namespace {

constexpr double kF32Tol = 1e-5;
constexpr double kBf16Tol = 3e-2;  // bf16 run against the fp32 reference (docs/cuda.md)

using Result = seqvit_test::DeviceRun;
using seqvit_test::run_on_device;

void expect_close(Tokenization tok, Precision prec, bool recompute, AttentionKernel attn) {
  ModelConfig c = seqvit_test::tiny_config(tok);
  c.embed_dim = 64;  // head dim 32: the smallest the CUDA flash kernel specialises
  c.attention = attn;
  const Result ref = run_on_device(backend::cpu(), c, Precision::F32, recompute);
  auto gpu = backend::make_device("cuda");
  const Result got = run_on_device(*gpu, c, prec, recompute);
  const double tol = prec == Precision::F32 ? kF32Tol : kBf16Tol;
  EXPECT_LE(std::fabs(got.loss - ref.loss), tol * std::fabs(ref.loss))
      << "loss " << got.loss << " vs cpu " << ref.loss;
  EXPECT_LE(rel_err(got.pred, ref.pred), tol) << "pred";
  const ClimaX shape(c);
  for (const TensorEntry& e : shape.params().entries()) {
    const std::span<const float> g(got.grads.data() + e.offset, static_cast<size_t>(e.numel)),
        r(ref.grads.data() + e.offset, static_cast<size_t>(e.numel));
    EXPECT_LE(rel_err(g, r), tol) << "gradient of " << e.name;
  }
}

class CudaClimaX : public ::testing::Test {
 protected:
  void SetUp() override { SEQVIT_NEED_DEVICE("cuda"); }
};

}  // namespace

TEST_F(CudaClimaX, AggregateMatchesCpu) {
  expect_close(Tokenization::Aggregate, Precision::F32, false, AttentionKernel::Flash);
  expect_close(Tokenization::Aggregate, Precision::F32, true, AttentionKernel::Flash);
  expect_close(Tokenization::Aggregate, Precision::BF16, false, AttentionKernel::Flash);
}

TEST_F(CudaClimaX, PerVariableMatchesCpu) {
  expect_close(Tokenization::PerVariable, Precision::F32, false, AttentionKernel::Flash);
  expect_close(Tokenization::PerVariable, Precision::BF16, true, AttentionKernel::Flash);
}

TEST_F(CudaClimaX, DenseAttentionMatchesCpu) {
  expect_close(Tokenization::Aggregate, Precision::F32, false, AttentionKernel::Dense);
}
