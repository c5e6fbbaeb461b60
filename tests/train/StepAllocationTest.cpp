// "Nothing allocates inside the step loop": after the first step (which may grow per-thread
// scratch once), seqvit's code must not call operator new during a training step. This test
// binary replaces the global operator new to count calls while steps run. oneDNN's
// dnnl_sgemm builds small descriptor objects on every call; those are counted separately and
// reported, not failed (they are the library's, bounded, and do not change peak memory).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "kernels/ops.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
std::atomic<long> g_library_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) {
    if (seqvit::kernels::gemm_library_calls_in_flight() > 0)
      g_library_allocations.fetch_add(1);
    else
      g_allocations.fetch_add(1);
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace seqvit;

namespace {
void steps_without_allocation(model::Tokenization tok, model::Precision prec,
                              bool recompute = false, bool dense = false) {
  auto c = seqvit_test::tiny_config(tok);
  if (dense) c.attention = model::AttentionKernel::Dense;
  train::OptimConfig o;
  o.grad_clip = 1.0;
  train::TrainerParallel par;
  par.recompute = recompute;
  train::Trainer tr(c, o, 2, prec, 0, par);
  seqvit_test::SyntheticBatch data(c, 2);
  const model::BatchView b = data.batch(0);
  tr.step(b);  // first step: per-thread scratch may grow once
  g_allocations = 0;
  g_library_allocations = 0;
  g_counting = true;
  for (int s = 0; s < 3; ++s) tr.step(b);
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0) << "operator new called by seqvit inside the step loop";
  std::printf("3 steps: %ld allocations by seqvit, %ld inside oneDNN gemm calls\n",
              g_allocations.load(), g_library_allocations.load());
}
}  // namespace

TEST(StepAllocation, AggregateFp32) {
  steps_without_allocation(model::Tokenization::Aggregate, model::Precision::F32);
}
TEST(StepAllocation, PerVariableBf16) {
  steps_without_allocation(model::Tokenization::PerVariable, model::Precision::BF16);
}
TEST(StepAllocation, DenseAttentionFp32AndBf16) {
  steps_without_allocation(model::Tokenization::Aggregate, model::Precision::F32, false, true);
  steps_without_allocation(model::Tokenization::PerVariable, model::Precision::BF16, true, true);
}
TEST(StepAllocation, AggregateFp32Recompute) {
  steps_without_allocation(model::Tokenization::Aggregate, model::Precision::F32, true);
}
