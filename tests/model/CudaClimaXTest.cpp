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
#include "model/model_batch.h"
#include "rel_err.h"

using namespace seqvit;
using namespace seqvit::model;
using seqvit_test::rel_err;

namespace {

constexpr double kF32Tol = 1e-5;
constexpr double kBf16Tol = 3e-2;  // bf16 run against the fp32 reference (docs/cuda.md)

struct Result {
  double loss = 0;
  std::vector<float> pred, grads;
};

Result run(backend::Device& dev, const ModelConfig& c, Precision prec, bool recompute) {
  ClimaX m(c, {}, dev);
  m.set_recompute(recompute);
  const int64_t B = 2, n = m.params().total();
  const int64_t pred_n = B * c.Vo() * c.img_h * c.img_w;
  std::vector<float> host(n);
  m.init(host.data(), 5);
  backend::Allocation P(dev, sizeof(float) * n), G(dev, sizeof(float) * n),
      pred(dev, sizeof(float) * pred_n);
  dev.copy_to_device(P.get(), host.data(), sizeof(float) * n);
  m.plan(B, prec);
  m.sync_weights(P.as<float>());
  seqvit_test::RandomBatch data(c, B);
  DeviceBatch batch(dev, c, B);
  Result r;
  for (int step = 0; step < 2; ++step) {  // twice: state left by a step must not matter
    dev.zero(G.get(), G.bytes());
    r.loss = m.forward(P.as<float>(), batch.upload(data.batch(7)), pred.as<float>());
    m.backward(P.as<float>(), G.as<float>());
  }
  r.pred.resize(pred_n);
  r.grads.resize(n);
  dev.copy_to_host(r.pred.data(), pred.get(), pred.bytes());
  dev.copy_to_host(r.grads.data(), G.get(), G.bytes());
  return r;
}

void expect_close(Tokenization tok, Precision prec, bool recompute, AttentionKernel attn) {
  ModelConfig c = seqvit_test::tiny_config(tok);
  c.embed_dim = 64;  // head dim 32: the smallest the CUDA flash kernel specialises
  c.attention = attn;
  const Result ref = run(backend::cpu(), c, Precision::F32, recompute);
  auto gpu = backend::make_device("cuda");
  const Result got = run(*gpu, c, prec, recompute);
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
