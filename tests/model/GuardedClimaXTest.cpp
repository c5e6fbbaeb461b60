// The model on the guarded backend (backend/guarded): parameters, gradients, the batch and pred
// in device memory the host cannot touch. Loss, pred and every gradient must equal the CPU
// backend's bit for bit (the same kernels in the same order), in both tokenizations, fp32 and
// bf16, flash and dense attention, with and without recomputation; so no line of model/ reads
// or writes device memory itself. Also checks that the guard bites: a host buffer given to an
// op is an error naming the op, a host access to device memory faults, and the model frees all
// it allocated.
#include <gtest/gtest.h>

#include <vector>

#include "backend/device.h"
#include "backend/guarded/guarded_device.h"
#include "core/check.h"
#include "model/climax.h"
#include "model/device_batch.h"
#include "model/device_run.h"
#include "model/model_batch.h"

using namespace seqvit;
using namespace seqvit::model;

namespace {

using Result = seqvit_test::DeviceRun;
using seqvit_test::run_on_device;

void expect_same(Tokenization tok, Precision prec, bool recompute, AttentionKernel attn) {
  ModelConfig c = seqvit_test::tiny_config(tok);
  c.attention = attn;
  const Result cpu = run_on_device(backend::cpu(), c, prec, recompute);
  backend::GuardedDevice guarded;
  const Result g = run_on_device(guarded, c, prec, recompute);
  EXPECT_EQ(guarded.live_allocations(), 0u) << "the model and batch must free their memory";
  EXPECT_EQ(cpu.loss, g.loss);
  EXPECT_EQ(cpu.pred, g.pred);
  EXPECT_EQ(cpu.grads, g.grads);
  EXPECT_GT(cpu.loss, 0);
}

}  // namespace

TEST(GuardedClimaX, AggregateMatchesCpu) {
  expect_same(Tokenization::Aggregate, Precision::F32, false, AttentionKernel::Flash);
  expect_same(Tokenization::Aggregate, Precision::BF16, true, AttentionKernel::Flash);
}

TEST(GuardedClimaX, PerVariableMatchesCpu) {
  expect_same(Tokenization::PerVariable, Precision::F32, true, AttentionKernel::Flash);
  expect_same(Tokenization::PerVariable, Precision::BF16, false, AttentionKernel::Flash);
}

TEST(GuardedClimaX, DenseAttentionMatchesCpu) {
  expect_same(Tokenization::Aggregate, Precision::F32, false, AttentionKernel::Dense);
}

TEST(GuardedClimaX, HostBufferIsAnErrorNamingTheOp) {
  backend::GuardedDevice dev;
  const ModelConfig c = seqvit_test::tiny_config();
  ClimaX m(c, {}, dev);
  std::vector<float> host(m.params().total());
  m.init(host.data(), 1);
  m.plan(1, Precision::F32);
  DeviceBatch batch(dev, c, 1);
  seqvit_test::RandomBatch data(c, 1);
  try {
    m.forward(host.data(), batch.upload(data.batch(0)));
    FAIL() << "a host parameter buffer was accepted by the guarded device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not device memory"), std::string::npos) << e.what();
  }
}

TEST(GuardedClimaXDeathTest, HostAccessToDeviceMemoryFaults) {
  backend::GuardedDevice dev;
  auto* p = static_cast<volatile float*>(dev.allocate(64));
  EXPECT_DEATH(p[0] = 1.f, "");
  dev.deallocate(const_cast<float*>(p));
}
