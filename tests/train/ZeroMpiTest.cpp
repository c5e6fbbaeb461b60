// ZeRO-1/2/3 (train/zero.h) and activation recomputation against the single process: 3 AdamW
// steps of the same global batch, every step's loss, the weights after them, the logical AdamW
// moments and the last step's (clipped) gradients gathered from the shards, relative error
// <= 1e-5 (fp32), for data parallelism, sequence parallelism (the sp_dp group shards) and both;
// replicated weights bitwise identical on every rank; recomputation on vs off gives bitwise the
// same loss and gradients (single process and under SP); ZeRO-3 keeps only about one unit of
// the full parameter and gradient buffers resident (mincore).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "core/page_buffer.h"
#include "parallel/grid.h"
#include "parallel/logical.h"
#include "parallel/mpi_test.h"
#include "alloc_counter.h"
#include "rel_err.h"
#include "parallel/sp_model.h"
#include "train/zero.h"
#include "model/climax.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

// Counts every allocation (operator new, malloc, mmap, ...: tests/alloc_counter.h) while ZeRO
// steps run (after the first): the step must not allocate.

using namespace seqvit;

namespace {

using seqvit_test::rel_err;
using seqvit_test::tensor;

constexpr double kTol = 1e-5;
constexpr int64_t kBatch = 4;  // global batch
constexpr int kSteps = 3;

train::OptimConfig optim(double clip) {
  train::OptimConfig o;
  o.lr = 1e-3;
  o.warmup_steps = 1;
  o.total_steps = kSteps;
  o.weight_decay = 0.1;  // so that a range cutting through decayed / undecayed tensors matters
  o.grad_clip = clip;
  return o;
}

class ZeroMpiTest : public seqvit_test::MpiTest {
 protected:
  // stage 1..3 over dp x sp (= the world), sp in Ulysses mode.
  void check(int stage, int dp, int sp, double clip, bool recompute,
             model::Tokenization tok = model::Tokenization::Aggregate,
             parallel::SpMode mode = parallel::SpMode::Ulysses) {
    if (dp * sp != size()) GTEST_SKIP() << "needs " << dp * sp << " ranks";
    const model::ModelConfig c = seqvit_test::tiny_config(tok);
    const auto oc = optim(clip);
    // the single-process reference of the global batch
    train::Trainer ref(c, oc, kBatch, model::Precision::F32, 5);
    seqvit_test::SyntheticBatch ref_data(c, kBatch);
    std::vector<double> ref_loss;
    for (int s = 0; s < kSteps; ++s) ref_loss.push_back(ref.step(ref_data.batch(s)).loss);
    const int64_t n = ref.model().params().total();

    parallel::GridConfig g;
    g.dp = dp;
    parallel::set_sp_degrees(g, sp, mode, mode == parallel::SpMode::TwoD ? 2 : 0, parallel::SpMode::Ring);
    g.zero = stage;
    g.recompute = recompute;
    parallel::validate(g, size(), c, kBatch);
    parallel::RankGrid grid(world, g);
    std::optional<parallel::SpBlockAttention> attn;
    if (sp > 1) attn.emplace(grid);
    train::ZeroOptimizer zero(grid.sp_dp(), stage);
    zero.track_residency(true);
    train::TrainerParallel par;
    par.sp = attn ? &*attn : nullptr;
    par.loss_batch = kBatch;
    par.sharded = &zero;
    par.recompute = recompute;
    const int64_t Bl = kBatch / dp;
    train::Trainer tr(c, oc, Bl, model::Precision::F32, 5, par);
    seqvit_test::SyntheticBatch data(c, Bl);
    const int d = grid.coords().dp;
    for (int s = 0; s < kSteps; ++s) {
      // DP rank d takes samples [s B + d Bl, s B + (d + 1) Bl) of the global batch
      const model::BatchView view = data.batch(static_cast<uint64_t>(s * dp + d));
      seqvit_test::alloc::start();
      grid.sp_dp().reset_stats();
      const double loss = tr.step(view).loss;
      const auto allocs = seqvit_test::alloc::stop();
      // bytes this rank sent over sp_dp in the step: docs/parallelism.md "ZeRO / FSDP"
      const int Z = grid.sp_dp().size(), r = grid.sp_dp().rank();
      const int64_t own = tr.optimizer().end() - tr.optimizer().begin(), nn = n;
      auto share = [&](int64_t m) { return m / Z + (r < m % Z ? 1 : 0); };  // all-reduce
      uint64_t want = 2 * 2 * (1 - share(1)) * sizeof(double);  // loss and squared norm
      if (stage == 1) want += 2 * (nn - share(nn)) * sizeof(float);        // gradients
      if (stage <= 2) want += (Z - 1) * own * sizeof(float);               // parameters
      if (stage >= 2) want += (nn - own) * sizeof(float);                  // per-unit RS
      if (stage == 3) want += 2 * (Z - 1) * own * sizeof(float);           // per-unit AG x 2
      EXPECT_EQ(grid.sp_dp().stats().total_bytes(), want) << "sp_dp bytes in step " << s + 1;
      if (s > 0) {  // the first step may grow per-thread scratch once
        EXPECT_EQ(allocs.total(), 0)
            << "allocations inside ZeRO step " << s + 1 << ": " << allocs.str();
        seqvit_test::alloc::report(allocs, "in a ZeRO step");
      }
      EXPECT_LE(std::fabs(loss - ref_loss[s]) / std::fabs(ref_loss[s]), kTol)
          << "step " << s + 1 << ": " << loss << " vs " << ref_loss[s];
    }
    // weights: ZeRO-3 gathers them back from the shards; ZeRO-1/2 hold them replicated
    if (stage == 3) {
      std::vector<float> logical(static_cast<size_t>(n), NAN);
      parallel::gather_logical(grid.sp_dp(), zero.moment_runs(), zero.param_shard(), logical.data(),
                           n, 0);
      if (rank() == 0)
        EXPECT_LE(rel_err(logical.data(), ref.params(), n), kTol) << "gathered parameter shards";
      zero.gather_all_parameters();
    }
    double worst = 0;
    for (const auto& e : tr.model().params().entries()) {
      const auto err = rel_err(tensor(tr.params(), e), tensor(ref.params(), e));
      EXPECT_LE(err, kTol) << e.name;
      worst = std::max<double>(worst, err);
    }
    // replicated weights (ZeRO-1/2 after their all-gather, ZeRO-3 after gathering) are bitwise
    // identical on every rank
    std::vector<float> all(static_cast<size_t>(n) * size());
    world.all_gather<float>(std::span<const float>(tr.params(), n), all);
    for (int q = 0; q < size(); ++q)
      EXPECT_EQ(std::memcmp(all.data() + q * n, all.data(), sizeof(float) * n), 0)
          << "weights of rank " << q << " differ from rank 0's";
    // logical moments and the last step's (clipped) gradients, gathered from the ranges
    const auto runs = zero.moment_runs();
    std::vector<float> m(static_cast<size_t>(n), NAN), v(m), gr(m);
    parallel::gather_logical(grid.sp_dp(), runs, tr.optimizer().m(), m.data(), n, 0);
    parallel::gather_logical(grid.sp_dp(), runs, tr.optimizer().v(), v.data(), n, 0);
    const float* gshard = stage == 1 ? tr.grads() + tr.optimizer().begin() : zero.grad_shard();
    parallel::gather_logical(grid.sp_dp(), runs, gshard, gr.data(), n, 0);
    if (rank() == 0) {
      for (const auto& e : ref.model().params().entries()) {
        EXPECT_LE(rel_err(m.data() + e.offset, ref.optimizer().m() + e.offset, e.numel), kTol)
            << "adam.m." << e.name;
        EXPECT_LE(rel_err(v.data() + e.offset, ref.optimizer().v() + e.offset, e.numel), kTol)
            << "adam.v." << e.name;
        EXPECT_LE(rel_err(gr.data() + e.offset, ref.grads() + e.offset, e.numel), kTol)
            << "grad." << e.name;
      }
    }
    EXPECT_EQ(tr.optimizer().state_bytes(),
              2 * sizeof(float) * static_cast<size_t>(tr.optimizer().end() - tr.optimizer().begin()));
    // ZeRO-3: of the full-size parameter and gradient buffers only about one unit (plus pages
    // shared by neighbouring units) is ever resident at once
    const size_t full = 2 * sizeof(float) * static_cast<size_t>(n);
    int64_t biggest = 0;
    for (int u = 0; u < tr.model().num_units(); ++u) {
      const auto [b, e] = tr.model().unit_range(u);
      biggest = std::max(biggest, e - b);
    }
    const size_t bound =
        2 * (sizeof(float) * static_cast<size_t>(biggest) +
             static_cast<size_t>(tr.model().num_units() + 3) * page_bytes());
    if (stage == 3) EXPECT_LE(zero.peak_resident(), bound);
    if (rank() == 0)
      std::printf(
          "  ZeRO-%d dp %d x sp %d%s%s: worst weight error %.2e; optimizer state %zu of %zu "
          "bytes; peak resident params+grads %zu of %zu bytes (one unit: %zu; sampled in the "
          "hooks of stages 2, 3)\n",
          stage, dp, sp, clip > 0 ? ", clipped" : "", recompute ? ", recompute" : "", worst,
          tr.optimizer().state_bytes(), 2 * sizeof(float) * static_cast<size_t>(n),
          zero.peak_resident(), full, 2 * sizeof(float) * static_cast<size_t>(biggest));
  }
};

TEST_F(ZeroMpiTest, Zero1Dp2) { check(1, 2, 1, 0, false); }
TEST_F(ZeroMpiTest, Zero2Dp2Clipped) { check(2, 2, 1, 1e-3, false); }
TEST_F(ZeroMpiTest, Zero3Dp2) { check(3, 2, 1, 0, false); }
TEST_F(ZeroMpiTest, Zero3Dp2ClippedPerVariable) {
  check(3, 2, 1, 1e-3, false, model::Tokenization::PerVariable);
}
TEST_F(ZeroMpiTest, Zero3Sp2) { check(3, 1, 2, 0, false); }
TEST_F(ZeroMpiTest, Zero3Sp2Recompute) { check(3, 1, 2, 1e-3, true); }
TEST_F(ZeroMpiTest, Zero1Dp2Sp2) { check(1, 2, 2, 0, false); }
TEST_F(ZeroMpiTest, Zero2Dp2Sp2) { check(2, 2, 2, 0, true); }
TEST_F(ZeroMpiTest, Zero3Dp2Sp2Clipped) { check(3, 2, 2, 1e-3, false); }
TEST_F(ZeroMpiTest, Zero3Dp4) { check(3, 4, 1, 0, false); }
// 2-D SP: Ulysses 2 inside x ring 2 across; the four ranks of sp_dp shard
TEST_F(ZeroMpiTest, Zero3Sp2dRecompute) {
  check(3, 1, 4, 0, true, model::Tokenization::PerVariable, parallel::SpMode::TwoD);
}

// Recomputation on vs off: the same loss and bitwise the same gradients, with activation
// memory down. Single process on every rank, then (np >= 2) under Ulysses SP over 2 ranks.
TEST_F(ZeroMpiTest, RecomputeIdentical) {
  const model::ModelConfig c = seqvit_test::tiny_config();
  constexpr int64_t B = 2;
  seqvit_test::SyntheticBatch data(c, B);
  const model::BatchView batch = data.batch(1);
  parallel::Comm* sp_comm = nullptr;  // SP bytes sent in forward and in the whole step
  uint64_t fwd_bytes = 0, step_bytes = 0;
  size_t total_bytes = 0;  // activations + workspace of the last run
  auto run = [&](bool recompute, model::SequenceParallelAttention* sp, std::vector<float>& grads,
                 size_t& act) {
    model::ClimaX m(c);
    std::vector<float> params(m.params().total());
    m.init(params.data(), 9);
    m.set_recompute(recompute);
    m.plan(B, model::Precision::F32, sp);
    grads.assign(params.size(), 0.f);
    if (sp_comm) sp_comm->reset_stats();
    const double loss = m.forward(params.data(), batch);
    if (sp_comm) fwd_bytes = sp_comm->stats().total_bytes();
    m.backward(params.data(), grads.data());
    if (sp_comm) step_bytes = sp_comm->stats().total_bytes();
    act = m.activation_bytes();
    total_bytes = m.activation_bytes() + m.workspace_bytes();
    return loss;
  };
  std::vector<float> g0, g1;
  size_t a0 = 0, a1 = 0;
  const double l0 = run(false, nullptr, g0, a0);
  const size_t t0 = total_bytes;
  const double l1 = run(true, nullptr, g1, a1);
  EXPECT_LT(total_bytes, t0);
  EXPECT_EQ(l0, l1);
  EXPECT_EQ(std::memcmp(g0.data(), g1.data(), sizeof(float) * g0.size()), 0)
      << "gradients differ with recomputation";
  EXPECT_LT(a1, a0);
  if (rank() == 0)
    std::printf("  recompute, 1 process: activations %zu -> %zu bytes, with workspace %zu -> "
                "%zu; loss and gradients bitwise equal\n", a0, a1, t0, total_bytes);
  if (size() < 2) return;
  // SP over ranks {0, 1} (the others form their own groups of 2, or sit alone when odd)
  parallel::GridConfig g;
  g.dp = size() / 2;
  g.sp_ulysses = 2;
  if (size() % 2) GTEST_SKIP() << "odd world";
  parallel::RankGrid grid(world, g);
  parallel::SpBlockAttention attn(grid.sp(), parallel::SpMode::Ulysses);
  std::vector<float> s0, s1;
  size_t b0 = 0, b1 = 0;
  sp_comm = &grid.sp();
  const double m0 = run(false, &attn, s0, b0);
  const uint64_t fwd0 = fwd_bytes, step0 = step_bytes;
  const size_t u0 = total_bytes;
  const double m1 = run(true, &attn, s1, b1);
  EXPECT_LT(total_bytes, u0);
  // the recomputed forwards repeat the forward's attention exchanges, nothing else
  EXPECT_EQ(fwd_bytes, fwd0);
  EXPECT_EQ(step_bytes, step0 + fwd0) << "SP bytes of a step with recomputation";
  EXPECT_EQ(m0, m1);
  EXPECT_EQ(std::memcmp(s0.data(), s1.data(), sizeof(float) * s0.size()), 0)
      << "SP gradients differ with recomputation";
  EXPECT_LT(b1, b0);
  if (rank() == 0)
    std::printf("  recompute, SP 2: activations %zu -> %zu bytes, with workspace %zu -> %zu; "
                "loss and gradients bitwise equal; SP bytes per step %llu -> %llu (forward "
                "%llu)\n",
                b0, b1, u0, total_bytes, static_cast<unsigned long long>(step0),
                static_cast<unsigned long long>(step_bytes), static_cast<unsigned long long>(fwd0));
}

}  // namespace
