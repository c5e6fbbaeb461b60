// Every parallel layout on the guarded backend (backend/guarded): device memory the host cannot
// touch, and communicators that reach it through host staging (parallel/staging_transport.h).
// Each layout trains 3 steps on the CPU backend and on the guarded one, wired as `seqvit train`
// wires it (cli/train_dist.cpp); the losses, gradient norms and this rank's final parameters
// must be bit-identical. So no line of model/, parallel/ or train/ touches device memory
// itself, and every collective runs after the ops that produce its buffers. Layouts: data
// parallel, Ulysses, LSS, ring, 2-D sequence parallelism, tensor parallelism, a pipeline with
// micro-batches, ZeRO-1/2/3 and activation recomputation.
//
// Built a second time as CudaLayoutsMpiTest (SEQVIT_LAYOUTS_ON_CUDA; ctest label gpu): every rank
// on the one GPU of the machine (device buffers staged through host memory for MPI), compared
// with the same layout on the CPU backend within 1e-5 (losses, gradient norms) and 1e-4 (the
// parameters after 3 AdamW steps); the CPU layouts themselves equal one process (SpModelMpiTest,
// TpModelMpiTest, PipelineMpiTest, ZeroMpiTest). Skipped without a usable GPU.
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "backend/guarded/guarded_device.h"
#include "gpu_test.h"
#include "rel_err.h"
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
  int ulysses = 0;  // 2-D: the inner Ulysses degree
  bool recompute = false;
  model::Tokenization tok = model::Tokenization::Aggregate;
};

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

struct Result {
  std::vector<double> loss, norm;
  std::vector<float> params;
};

class GuardedLayoutsMpiTest : public seqvit_test::MpiTest {
 protected:
  Result train(const Layout& L, backend::Device& dev) {
    model::ModelConfig c = seqvit_test::tiny_config(L.tok);
    c.num_heads = 4;  // splits over tp 2 and Ulysses 2
    train::OptimConfig oc;
    oc.grad_clip = 0.5;
    parallel::GridConfig g;
    g.dp = L.dp;
    g.tp = L.tp;
    g.pp = L.pp;
    g.micro_batches = L.micro;
    g.zero = L.zero;
    parallel::set_sp_degrees(g, L.sp, L.mode, L.ulysses, SpMode::Ring);
    parallel::validate(g, size(), c, kBatch);
    parallel::Comm comm = world.split(0, rank(), "world");  // a communicator of this run's own
    comm.set_device(dev);
    parallel::RankGrid grid(comm, g);

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
    par.recompute = L.recompute;
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
    train::Trainer tr(c, oc, Bl, model::Precision::F32, 7, par, dev);
    std::optional<train::StageReducer> stage_reducer;
    std::optional<SumReducer> reducer;
    if (L.pp > 1) {
      stage_reducer.emplace(grid.sp_dp(), grid.pp());
      tr.set_reducer(&*stage_reducer);
    } else if (!zero) {
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
    Result r;
    for (int s = 0; s < 3; ++s) {
      const auto res = tr.step(data.batch(static_cast<uint64_t>(s * L.dp + d)));
      r.loss.push_back(res.loss);
      r.norm.push_back(res.grad_norm);
    }
    if (zero) zero->gather_all_parameters();  // ZeRO-3: the full parameters again
    r.params.resize(static_cast<size_t>(tr.model().params().total()));
    tr.read_params(r.params.data());
    return r;
  }

  void check(const Layout& L, const std::string& what) {
    if (L.dp * L.sp * L.tp * L.pp != size()) GTEST_SKIP() << what << " needs other ranks";
#ifdef SEQVIT_LAYOUTS_ON_CUDA
    SEQVIT_NEED_DEVICE("cuda");
#endif
    const Result cpu = train(L, backend::cpu());
#ifdef SEQVIT_LAYOUTS_ON_CUDA
    auto gpu = backend::make_device("cuda");
    const Result g = train(L, *gpu);
    ASSERT_EQ(cpu.loss.size(), g.loss.size());
    for (size_t s = 0; s < g.loss.size(); ++s) {
      EXPECT_LE(std::fabs(g.loss[s] - cpu.loss[s]), 1e-5 * std::fabs(cpu.loss[s]))
          << what << " step " << s;
      EXPECT_LE(std::fabs(g.norm[s] - cpu.norm[s]), 1e-5 * std::fabs(cpu.norm[s]))
          << what << " step " << s;
    }
    EXPECT_LE(seqvit_test::rel_err(g.params, cpu.params), 1e-4)
        << what << " (rank " << rank() << ")";
#else
    backend::GuardedDevice guarded;
    const Result g = train(L, guarded);
    EXPECT_EQ(cpu.loss, g.loss) << what;
    EXPECT_EQ(cpu.norm, g.norm) << what;
    EXPECT_EQ(cpu.params, g.params) << what << " (rank " << rank() << ")";
    EXPECT_EQ(guarded.live_allocations(), 0u) << what;
#endif
    if (rank() == 0) std::printf("  %s: losses %.6f %.6f %.6f on both\n", what.c_str(),
                                 g.loss[0], g.loss[1], g.loss[2]);
  }
};

}  // namespace

TEST_F(GuardedLayoutsMpiTest, DataParallel) {
  Layout L;
  L.dp = size();
  check(L, "dp " + std::to_string(size()));
}
TEST_F(GuardedLayoutsMpiTest, SequenceParallel) {
  for (SpMode m : {SpMode::Ulysses, SpMode::Lss, SpMode::Ring}) {
    Layout L;
    L.sp = size();
    L.mode = m;
    L.tok = m == SpMode::Ring ? model::Tokenization::PerVariable : model::Tokenization::Aggregate;
    check(L, "sp " + std::to_string(size()) + " " + parallel::to_string(m));
  }
}
TEST_F(GuardedLayoutsMpiTest, TwoDSequenceParallel) {
  Layout L;
  L.sp = 4;
  L.mode = SpMode::TwoD;
  L.ulysses = 2;
  check(L, "sp 4 2-D (Ulysses 2 x ring 2)");
}
TEST_F(GuardedLayoutsMpiTest, TensorParallelWithRecompute) {
  Layout L;
  L.tp = 2;
  L.recompute = true;
  check(L, "tp 2, recompute");
}
TEST_F(GuardedLayoutsMpiTest, Pipeline) {
  Layout L;
  L.pp = 2;
  L.micro = 2;
  check(L, "pp 2, 2 micro-batches");
}
TEST_F(GuardedLayoutsMpiTest, Zero) {
  for (int z : {1, 2, 3}) {
    Layout L;
    L.dp = size();
    L.zero = z;
    check(L, "dp zero " + std::to_string(z));
  }
}
TEST_F(GuardedLayoutsMpiTest, DpTimesTpWithZero2) {
  Layout L;
  L.dp = 2;
  L.tp = 2;
  L.zero = 2;
  check(L, "dp 2 x tp 2, zero 2");
}
