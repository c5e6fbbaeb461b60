// "Nothing allocates in the step loop" for distributed steps (tests/alloc_counter.h; the
// single-process steps: StepAllocationTest): on every rank, after one warm-up step, three
// training steps get no memory from the system (operator new plain or aligned, malloc, calloc,
// realloc, aligned_alloc, posix_memalign, mmap), on any thread; what the libraries allocate
// inside their calls (oneDNN's GEMMs, the OpenMP runtime, MPI) is reported, not failed. The
// layouts of 2 ranks, wired as `seqvit train` wires them (cli/train_dist.cpp): data parallel,
// sequence parallel (Ulysses, ring, LSS), tensor parallel, pipeline (1F1B, 2 micro-batches),
// ZeRO-1/2/3 over dp, and bf16 under dp.
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "alloc_counter.h"
#include "parallel/grid.h"
#include "parallel/mpi_test.h"
#include "parallel/sp_model.h"
#include "parallel/tp_model.h"
#include "model/climax.h"
#include "train/pipeline.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"
#include "train/zero.h"

using namespace seqvit;

namespace {

using parallel::SpMode;

constexpr int64_t kBatch = 4;  // global batch

struct Layout {
  int dp = 1, sp = 1, tp = 1, pp = 1, micro = 1, zero = 0;
  SpMode mode = SpMode::Ulysses;
  model::Precision prec = model::Precision::F32;
  model::Tokenization tok = model::Tokenization::Aggregate;
};

// The gradient reduction of `seqvit train` (cli::SpDpReducer): loss and gradients summed over
// the sp x dp group.
class SumReducer final : public train::GradientReducer {
 public:
  explicit SumReducer(parallel::Comm& c) : c_(c) {}
  double reduce(double loss, float* grads, int64_t n) override {
    c_.all_reduce(std::span<double>(&loss, 1));
    c_.all_reduce(std::span<float>(grads, static_cast<size_t>(n)));
    return loss;
  }

 private:
  parallel::Comm& c_;
};

class StepAllocationMpiTest : public seqvit_test::MpiTest {
 protected:
  void check(const Layout& L, const std::string& what) {
    if (L.dp * L.sp * L.tp * L.pp != size()) GTEST_SKIP() << what << " needs other ranks";
    model::ModelConfig c = seqvit_test::tiny_config(L.tok);
    c.num_heads = 4;  // splits over tp 2 and Ulysses 2
    train::OptimConfig oc;
    oc.grad_clip = 1.0;
    parallel::GridConfig g;
    g.dp = L.dp;
    g.tp = L.tp;
    g.pp = L.pp;
    g.micro_batches = L.micro;
    g.zero = L.zero;
    parallel::set_sp_degrees(g, L.sp, L.mode, 0, SpMode::Ring);
    parallel::validate(g, size(), c, kBatch);
    parallel::RankGrid grid(world, g);

    std::optional<parallel::SpBlockAttention> attn;
    if (L.sp > 1) attn.emplace(grid);
    std::optional<parallel::TpModel> tp;
    if (L.tp > 1) tp.emplace(grid.tp());
    std::optional<train::ZeroOptimizer> zero;
    if (L.zero > 0) zero.emplace(grid.sp_dp(), L.zero);
    const auto schedule = train::PipeSchedule::OneFOneB;
    const int stage = grid.coords().pp;
    train::TrainerParallel par;
    par.sp = attn ? &*attn : nullptr;
    par.loss_batch = kBatch;
    par.sharded = zero ? &*zero : nullptr;
    par.shard.first_block = stage * (c.depth / L.pp);
    par.shard.last_block = (stage + 1) * (c.depth / L.pp);
    par.micro_batches = L.micro;
    par.slots = train::pipeline_slots(schedule, L.pp, stage, L.micro);
    if (tp) {
      par.shard.tp_size = L.tp;
      par.shard.tp_rank = grid.coords().tp;
      par.tp = &*tp;
    }
    const int64_t Bl = kBatch / L.dp;
    train::Trainer tr(c, oc, Bl, L.prec, 7, par);
    std::optional<train::StageReducer> stage_reducer;
    std::optional<SumReducer> reducer;
    if (L.pp > 1) {
      stage_reducer.emplace(grid.sp_dp(), grid.pp());
      tr.set_reducer(&*stage_reducer);
    } else {
      reducer.emplace(grid.sp_dp());
      tr.set_reducer(&*reducer);
    }
    std::optional<train::Pipeline> pipe;
    if (L.pp > 1 || L.micro > 1) {
      pipe.emplace(grid.pp(), tr.model(), schedule, L.micro);
      tr.set_runner(&*pipe);
    }
    seqvit_test::SyntheticBatch data(c, Bl);
    const int d = grid.coords().dp;
    tr.step(data.batch(static_cast<uint64_t>(d)));  // warm-up: per-thread scratch may grow once
    for (int s = 1; s < 4; ++s) {
      const model::BatchView b = data.batch(static_cast<uint64_t>(s * L.dp + d));
      seqvit_test::alloc::start();
      const double loss = tr.step(b).loss;
      const auto n = seqvit_test::alloc::stop();
      EXPECT_TRUE(std::isfinite(loss)) << what;
      EXPECT_EQ(n.total(), 0) << what << ": allocations in step " << s + 1 << " on rank "
                              << rank() << ": " << n.str();
      seqvit_test::alloc::report(n, (what + " on rank " + std::to_string(rank())).c_str());
      if (rank() == 0 && s == 3)
        std::printf("  %s: %s allocations by seqvit in the last step; the libraries': %s\n",
                    what.c_str(), n.str().c_str(), n.excluded().c_str());
    }
  }
};

}  // namespace

TEST_F(StepAllocationMpiTest, DataParallel) {
  Layout L;
  L.dp = 2;
  check(L, "dp 2");
}
TEST_F(StepAllocationMpiTest, DataParallelBf16PerVariable) {
  Layout L;
  L.dp = 2;
  L.prec = model::Precision::BF16;
  L.tok = model::Tokenization::PerVariable;
  check(L, "dp 2 bf16 per-variable");
}
TEST_F(StepAllocationMpiTest, SequenceParallel) {
  for (SpMode m : {SpMode::Ulysses, SpMode::Ring, SpMode::Lss}) {
    Layout L;
    L.sp = 2;
    L.mode = m;
    check(L, "sp 2 " + parallel::to_string(m));
  }
}
TEST_F(StepAllocationMpiTest, TensorParallel) {
  Layout L;
  L.tp = 2;
  check(L, "tp 2");
}
TEST_F(StepAllocationMpiTest, Pipeline) {
  Layout L;
  L.pp = 2;
  L.micro = 2;
  check(L, "pp 2, 2 micro-batches");
}
TEST_F(StepAllocationMpiTest, Zero) {
  for (int z : {1, 2, 3}) {
    Layout L;
    L.dp = 2;
    L.zero = z;
    check(L, "dp 2 zero " + std::to_string(z));
  }
}
