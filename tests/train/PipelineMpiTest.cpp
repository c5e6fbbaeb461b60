// Pipeline parallelism (train/pipeline.h) against the single-process model on the same global
// batch: pp stages over RankGrid::pp(), composed with dp and sp, GPipe and 1F1B, m
// micro-batches; and gradient accumulation (pp 1, m > 1). Each case checks, on every rank:
//   - the stage's initial weights equal the single-process init of its tensors (exactly),
//   - the loss (summed over stages and sp_dp) and EVERY gradient of the stage's tensors after
//     the sp_dp all-reduce, relative error <= 1e-5,
//   - the weights after 3 AdamW steps with gradient clipping active (the clipping norm is global
//     over the stages), relative error <= 1e-5 per tensor,
//   - the logical buffer gathered from the stages (parallel::gather_logical) on rank 0.
// Cases whose grid does not match the world size are skipped, so one program serves np 2 and 4.
#include <cmath>
#include <optional>
#include <vector>

#include "core/check.h"
#include "parallel/grid.h"
#include "parallel/logical.h"
#include "parallel/mpi_test.h"
#include "rel_err.h"
#include "train/pipeline.h"
#include "parallel/sp_model.h"
#include "model/climax.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

using namespace seqvit;

namespace {

using seqvit_test::rel_err;
using seqvit_test::tensor;

constexpr double kTol = 1e-5;
constexpr int64_t kBatch = 8;  // global batch
constexpr int kSteps = 3;

using train::PipeSchedule;
using model::Tokenization;

struct Case {
  Tokenization tok = Tokenization::Aggregate;
  PipeSchedule schedule = PipeSchedule::OneFOneB;
  int pp = 1, dp = 1, sp = 1, micro = 4;
  int64_t depth = 2;
  bool recompute = false;  // activation recomputation inside the stages
};

class PipelineMpiTest : public seqvit_test::MpiTest {
 protected:
  void check(const Case& k) {
    if (k.pp * k.dp * k.sp != size()) GTEST_SKIP() << "needs " << k.pp * k.dp * k.sp << " ranks";
    model::ModelConfig c = seqvit_test::tiny_config(k.tok);
    c.depth = k.depth;
    train::OptimConfig oc;
    oc.lr = 1e-2;
    oc.warmup_steps = 1;
    oc.total_steps = kSteps;
    oc.grad_clip = 0.05;  // below the gradient norms here: clipping is active every step
    seqvit_test::SyntheticBatch data(c, kBatch);

    // the single-process reference: gradient of batch 0, then 3 steps on batches 0, 1, 2
    train::Trainer ref(c, oc, kBatch, model::Precision::F32, 7);
    const std::vector<float> init(ref.params(), ref.params() + ref.model().params().total());
    const double lref = ref.loss_and_grad(data.batch(0));
    const std::vector<float> gref(ref.grads(), ref.grads() + ref.model().params().total());
    std::vector<double> ref_norms;
    for (int t = 0; t < kSteps; ++t) ref_norms.push_back(ref.step(data.batch(t)).grad_norm);
    const TensorTable& rt = ref.model().params();

    // this rank: stage grid.coords().pp of the blocks, samples of its dp rank, tokens of its sp
    parallel::GridConfig g;
    g.pp = k.pp;
    g.dp = k.dp;
    g.sp_ulysses = k.sp;
    g.micro_batches = k.micro;
    parallel::validate(g, size(), c, kBatch);
    parallel::RankGrid grid(world, g);
    const int stage = grid.coords().pp;
    const int64_t per = c.depth / k.pp, Bl = kBatch / k.dp;
    model::ModelShard shard;
    shard.first_block = stage * per;
    shard.last_block = (stage + 1) * per;
    std::optional<parallel::SpBlockAttention> attn;
    if (k.sp > 1) attn.emplace(grid.sp(), parallel::SpMode::Ulysses);
    train::TrainerParallel par;
    par.sp = attn ? &*attn : nullptr;
    par.loss_batch = kBatch;
    par.shard = shard;
    par.micro_batches = k.micro;
    par.slots = train::pipeline_slots(k.schedule, k.pp, stage, k.micro);
    par.recompute = k.recompute;
    train::Trainer tr(c, oc, Bl, model::Precision::F32, 7, par);
    train::Pipeline pipe(grid.pp(), tr.model(), k.schedule, k.micro);
    train::StageReducer red(grid.sp_dp(), grid.pp());
    tr.set_runner(&pipe);
    tr.set_reducer(&red);
    const TensorTable& st = tr.model().params();
    auto local = [&](const model::BatchView& global) {
      return train::micro_batch(global, c, grid.coords().dp, k.dp);
    };

    // init: the single-process values of this stage's tensors
    for (const auto& e : st.entries())
      EXPECT_EQ(rel_err(tensor(tr.params(), e), tensor(init.data(), rt.get(e.name))), 0)
          << "init " << e.name;

    // loss and every gradient of batch 0
    double loss = tr.loss_and_grad(local(data.batch(0)));
    loss = red.reduce(loss, tr.grads(), st.total());
    EXPECT_LE(std::fabs(loss - lref) / std::fabs(lref), kTol) << loss << " vs " << lref;
    double worst = 0;
    for (const auto& e : st.entries()) {
      const auto err = rel_err(tensor(tr.grads(), e), tensor(gref.data(), rt.get(e.name)));
      EXPECT_LE(err, kTol) << "grad." << e.name;
      worst = std::max<double>(worst, err);
    }
    const double bubble = pipe.last_stats().bubble();

    // 3 AdamW steps (clipped by the global norm)
    double worst_w = 0;
    for (int t = 0; t < kSteps; ++t) {
      const auto r = tr.step(local(data.batch(t)));
      EXPECT_LE(std::fabs(r.grad_norm - ref_norms[t]) / ref_norms[t], kTol) << "norm, step " << t;
    }
    for (const auto& e : st.entries()) {
      const auto err = rel_err(tensor(tr.params(), e), tensor(ref.params(), rt.get(e.name)));
      EXPECT_LE(err, kTol) << "weights " << e.name;
      worst_w = std::max<double>(worst_w, err);
    }
    // the logical (single-process) weights assembled from the stages on rank 0
    const auto runs = tr.model().logical_runs();
    EXPECT_EQ(tr.model().logical_total(), rt.total());
    std::vector<float> logical(rank() == 0 ? rt.total() : 0, NAN);
    parallel::gather_logical(world, runs, tr.params(), logical.data(), rt.total(), 0);
    if (rank() == 0) {
      for (const auto& e : rt.entries())
        EXPECT_LE(rel_err(logical.data() + e.offset, ref.params() + e.offset, e.numel), kTol)
            << "gathered " << e.name;
      std::printf("  %s %s pp %d x dp %d x sp %d, m %d: loss %.2e, worst gradient %.2e, "
                  "weights %.2e; stage 0 bubble %.2f (ideal %.2f)\n",
                  train::to_string(k.schedule).c_str(), model::to_string(k.tok).c_str(), k.pp,
                  k.dp, k.sp, k.micro, std::fabs(loss - lref) / lref, worst, worst_w, bubble,
                  train::ideal_bubble(k.pp, k.micro));
    }
  }
};

constexpr auto Agg = Tokenization::Aggregate;
constexpr auto PerVar = Tokenization::PerVariable;
constexpr auto GPipe = PipeSchedule::GPipe;
constexpr auto F1B1 = PipeSchedule::OneFOneB;

// np 2: two stages, 4 micro-batches of 2
TEST_F(PipelineMpiTest, Pp2GPipeAggregate) { check({Agg, GPipe, 2, 1, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2OneFOneBAggregate) { check({Agg, F1B1, 2, 1, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2GPipePerVariable) { check({PerVar, GPipe, 2, 1, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2OneFOneBPerVariable) { check({PerVar, F1B1, 2, 1, 1, 4}); }
// np 2: with activation recomputation in the stages (xs[last] is recomputed after its send)
TEST_F(PipelineMpiTest, Pp2OneFOneBRecomputeAggregate) {
  check({Agg, F1B1, 2, 1, 1, 4, 4, true});
}
TEST_F(PipelineMpiTest, Pp2GPipeRecomputePerVariable) {
  check({PerVar, GPipe, 2, 1, 1, 4, 4, true});
}
// np 2: accumulation (pp 1) over 4 micro-batches of 1, with dp 2
TEST_F(PipelineMpiTest, AccumulateDp2Aggregate) { check({Agg, F1B1, 1, 2, 1, 4}); }
TEST_F(PipelineMpiTest, AccumulateDp2PerVariable) { check({PerVar, F1B1, 1, 2, 1, 4}); }
// np 4: two stages x dp 2, 4 micro-batches of 1
TEST_F(PipelineMpiTest, Pp2Dp2GPipeAggregate) { check({Agg, GPipe, 2, 2, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2Dp2OneFOneBAggregate) { check({Agg, F1B1, 2, 2, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2Dp2GPipePerVariable) { check({PerVar, GPipe, 2, 2, 1, 4}); }
TEST_F(PipelineMpiTest, Pp2Dp2OneFOneBPerVariable) { check({PerVar, F1B1, 2, 2, 1, 4}); }
// np 4: two stages x sp 2 (Ulysses); four stages of one block each
TEST_F(PipelineMpiTest, Pp2Sp2OneFOneBAggregate) { check({Agg, F1B1, 2, 1, 2, 4}); }
TEST_F(PipelineMpiTest, Pp4OneFOneBPerVariable) { check({PerVar, F1B1, 4, 1, 1, 4, 4}); }
TEST_F(PipelineMpiTest, Pp4GPipeAggregate) { check({Agg, GPipe, 4, 1, 1, 4, 4}); }

// The schedules themselves: order, slots, bubble.
TEST_F(PipelineMpiTest, ScheduleShapes) {
  const auto o = train::pipeline_order(F1B1, 4, 1, 6);  // warm-up 2, steady 4, cool-down 2
  ASSERT_EQ(o.size(), 12u);
  EXPECT_TRUE(o[0].forward && o[0].micro == 0 && o[1].forward && o[2].forward);
  EXPECT_TRUE(!o[3].forward && o[3].micro == 0);
  EXPECT_TRUE(!o[11].forward && o[11].micro == 5);
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(train::pipeline_slots(F1B1, 4, s, 6), 4 - s);
    EXPECT_EQ(train::pipeline_slots(F1B1, 4, s, 2), std::min(2, 4 - s));
    EXPECT_EQ(train::pipeline_slots(GPipe, 4, s, 6), 6);
  }
  EXPECT_EQ(train::pipeline_slots(F1B1, 1, 0, 4), 1);  // accumulation: one in flight
  EXPECT_DOUBLE_EQ(train::ideal_bubble(4, 6), 3.0 / 9.0);
  EXPECT_THROW(train::parse_pipe_schedule("zb"), seqvit::Error);
}

}  // namespace
