// "Nothing allocates inside the step loop": after the first step (which may grow per-thread
// scratch once), a training step must not get memory from the system in any way: operator new
// (plain and aligned), malloc, calloc, realloc, aligned_alloc, posix_memalign or mmap, on any
// thread (tests/alloc_counter.h). What oneDNN's GEMMs (small descriptor objects on every call)
// and the OpenMP runtime allocate is counted separately and reported, not failed (the
// libraries', bounded, and it does not change peak memory). StepAllocationMpiTest does the same
// for distributed steps.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "alloc_counter.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

using namespace seqvit;

namespace {
void steps_without_allocation(model::Tokenization tok, model::Precision prec,
                              bool recompute = false, bool dense = false,
                              bool dropout = false) {
  auto c = seqvit_test::tiny_config(tok);
  if (dense) c.attention = model::AttentionKernel::Dense;
  train::OptimConfig o;
  o.grad_clip = 1.0;
  train::TrainerParallel par;
  par.recompute = recompute;
  train::Trainer tr(c, o, 2, prec, 0, par);
  if (dropout) tr.set_dropout({0.1, 0.1, 3});
  seqvit_test::SyntheticBatch data(c, 2);
  const model::BatchView b = data.batch(0);
  tr.step(b);  // first step: per-thread scratch may grow once
  seqvit_test::alloc::start();
  for (int s = 0; s < 3; ++s) tr.step(b);
  const auto n = seqvit_test::alloc::stop();
  EXPECT_EQ(n.total(), 0) << "allocations inside the step loop: " << n.str();
  seqvit_test::alloc::report(n, "in the step loop");
  std::printf("3 steps: %s allocations by seqvit; the libraries': %s\n", n.str().c_str(),
              n.excluded().c_str());
}
}  // namespace

// The counter itself: one call of each kind, made here (seqvit's origin), is counted as that
// kind; nothing is counted outside start() .. stop().
TEST(StepAllocation, CounterSeesEveryKind) {
  namespace a = seqvit_test::alloc;
  void* volatile sink;  // keeps the compiler from eliding an allocation and its release
  struct alignas(128) Wide {
    float x[32];
  };
  a::start();
  sink = new int(1);
  delete static_cast<int*>(sink);
  sink = new Wide;
  delete static_cast<Wide*>(sink);
  sink = std::malloc(64);
  sink = std::realloc(sink, 4096);
  std::free(sink);
  sink = std::calloc(4, 16);
  std::free(sink);
  sink = std::aligned_alloc(64, 128);
  std::free(sink);
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, 64, 128), 0);
  sink = p;
  std::free(sink);
  sink = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(sink, MAP_FAILED);
  munmap(sink, 1 << 16);
  const auto n = a::stop();
  for (int k = 0; k < a::kKinds; ++k) EXPECT_EQ(n.by_kind[k], 1) << a::kind_name(k);
  sink = std::malloc(8);  // not counting
  std::free(sink);
  EXPECT_EQ(a::stop().total(), a::kKinds);
}

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
TEST(StepAllocation, DropoutAndDropPath) {  // the masks are hashed: nothing to allocate
  steps_without_allocation(model::Tokenization::Aggregate, model::Precision::F32, false, false,
                           true);
  steps_without_allocation(model::Tokenization::PerVariable, model::Precision::BF16, true, false,
                           true);
}
TEST(StepAllocation, AggregateFp32Recompute) {
  steps_without_allocation(model::Tokenization::Aggregate, model::Precision::F32, true);
}
