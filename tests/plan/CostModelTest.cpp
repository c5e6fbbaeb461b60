// The planner's cost model against the engine itself: parameter counts equal the model's
// table, and the predicted activation + workspace bytes of a single process match what
// ClimaX::plan really allocates (both tokenizations, fp32 and bf16, several sequence lengths);
// presets, machine files and layout validity.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/check.h"
#include "parallel/sp_attention_2d.h"
#include "model/climax.h"
#include "plan/cost_model.h"
#include "plan/planner.h"

using namespace seqvit;

namespace {

model::ModelConfig engine_config(model::Tokenization tok, int64_t img_h, int64_t D) {
  model::ModelConfig c;
  c.img_h = img_h;
  c.img_w = 2 * img_h;
  c.patch_size = 2;
  c.embed_dim = D;
  c.num_heads = 4;
  c.depth = 3;
  c.decoder_depth = 2;
  c.tokenization = tok;
  return c;  // five variables, all of them outputs
}

plan::PlanModel plan_model(const model::ModelConfig& c) {
  plan::PlanModel m;
  m.name = "test";
  m.embed_dim = c.embed_dim;
  m.depth = c.depth;
  m.heads = c.num_heads;
  m.decoder_depth = c.decoder_depth;
  m.variables = c.V();
  m.patch = c.patch_size;
  m.tokenization = c.tokenization;
  m.tokens = c.N();
  return m;
}

TEST(CostModelTest, ParameterCountsAreTheModelTables) {
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable}) {
    const auto c = engine_config(tok, 16, 64);
    model::ClimaX m(c);
    EXPECT_EQ(plan_model(c).params(), m.params().count()) << model::to_string(tok);
  }
}

TEST(CostModelTest, PredictedActivationsAndWorkspaceMatchTheEnginesPlan) {
  parallel::GridConfig single;
  const auto mach = plan::machine_preset("local");
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable})
    for (auto prec : {model::Precision::F32, model::Precision::BF16})
      for (int64_t img_h : {16, 32}) {
        const auto c = engine_config(tok, img_h, 64);
        constexpr int64_t B = 2;
        model::ClimaX m(c);
        m.plan(B, prec);
        const double planned = double(m.activation_bytes() + m.workspace_bytes());
        plan::Workload w{plan_model(c),
                         prec == model::Precision::BF16 ? plan::Precision::BF16
                                                        : plan::Precision::F32,
                         B, omp_get_max_threads()};
        const auto e = plan::estimate(w, single, mach);
        const double predicted = e.memory.activations + e.memory.workspace + e.memory.bf16_weights;
        const double rel = std::fabs(predicted - planned) / planned;
        std::printf("  %s %s N=%lld: planned %.0f bytes, predicted %.0f (%.2f%%)\n",
                    model::to_string(tok).c_str(), prec == model::Precision::BF16 ? "bf16" : "fp32",
                    static_cast<long long>(c.N()), planned, predicted, 100 * rel);
        EXPECT_LE(rel, 0.005) << model::to_string(tok) << " N=" << c.N();
      }
}

// Dense attention: the probabilities [B, H, N, N] of every block (or of the one being recomputed)
// and the dense scratch, predicted as the engine plans them; and refused with sequence
// parallelism.
TEST(CostModelTest, DenseAttentionMatchesTheEnginesPlan) {
  parallel::GridConfig single;
  const auto mach = plan::machine_preset("local");
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable})
    for (auto prec : {model::Precision::F32, model::Precision::BF16})
      for (bool rc : {false, true}) {
        auto c = engine_config(tok, 16, 64);
        c.attention = model::AttentionKernel::Dense;
        constexpr int64_t B = 2;
        model::ClimaX m(c);
        m.set_recompute(rc);
        m.plan(B, prec);
        const double planned = double(m.activation_bytes() + m.workspace_bytes());
        plan::Workload w{plan_model(c),
                         prec == model::Precision::BF16 ? plan::Precision::BF16
                                                        : plan::Precision::F32,
                         B, omp_get_max_threads()};
        w.attention = model::AttentionKernel::Dense;
        parallel::GridConfig g = single;
        g.recompute = rc;
        const auto e = plan::estimate(w, g, mach);
        const double predicted = e.memory.activations + e.memory.workspace + e.memory.bf16_weights;
        const double rel = std::fabs(predicted - planned) / planned;
        std::printf("  dense %s %s%s N=%lld: planned %.0f bytes, predicted %.0f (%.4f%%)\n",
                    model::to_string(tok).c_str(), prec == model::Precision::BF16 ? "bf16" : "fp32",
                    rc ? " recompute" : "", static_cast<long long>(c.N()), planned, predicted,
                    100 * rel);
        EXPECT_LE(rel, 1e-4) << model::to_string(tok) << " recompute " << rc;
      }
  plan::Workload w{plan_model(engine_config(model::Tokenization::PerVariable, 16, 64)),
                   plan::Precision::F32, 1, 1};
  w.attention = model::AttentionKernel::Dense;
  parallel::GridConfig sp2;
  sp2.sp_ulysses = 2;
  EXPECT_NE(plan::layout_error(w, sp2).find("dense attention needs sp = 1"), std::string::npos)
      << plan::layout_error(w, sp2);
}

// Planning-only stand-ins for a rank of an SP group and of a TP group: ClimaX::plan asks them for
// sizes only, so a layout's per-rank plan can be computed in one process.
class PlanOnlySp final : public model::SequenceParallelAttention {
 public:
  PlanOnlySp(const parallel::GridConfig& g, int rank) : g_(g), rank_(rank) {}
  int size() const override { return g_.sp(); }
  int rank() const override { return rank_; }
  size_t saved_bytes(int64_t b, int64_t n, int64_t h, int64_t d) const override {
    const parallel::SpAttentionShape s{b, n, h, d};
    return g_.sp_mode == parallel::SpMode::TwoD
               ? parallel::sp2d_saved_bytes(s, g_.sp_ulysses, g_.sp_ring, g_.sp_outer)
               : parallel::sp_scheme(g_.sp_mode).saved_bytes(s, size());
  }
  size_t workspace_bytes(int64_t b, int64_t n, int64_t h, int64_t d, int threads) const override {
    const parallel::SpAttentionShape s{b, n, h, d};
    return g_.sp_mode == parallel::SpMode::TwoD
               ? parallel::sp2d_workspace_bytes(s, g_.sp_ulysses, g_.sp_ring, g_.sp_outer, threads)
               : parallel::sp_scheme(g_.sp_mode).workspace_bytes(s, size(), threads);
  }
  void forward(const AttentionArgs&, void*, size_t) override { std::abort(); }
  void backward(const AttentionArgs&, void*, size_t) override { std::abort(); }

 private:
  parallel::GridConfig g_;
  int rank_;
};

class PlanOnlyTp final : public model::TensorParallel {
 public:
  PlanOnlyTp(int size, int rank) : size_(size), rank_(rank) {}
  int size() const override { return size_; }
  int rank() const override { return rank_; }
  void all_reduce_sum(float*, int64_t) override { std::abort(); }
  double all_reduce_sum(double) override { std::abort(); }

 private:
  int size_, rank_;
};

// Sharded layouts: the planner's activations + workspace of the worst stage against what the
// engine plans for that rank (TP slice, SP shard, pipeline stage with its 1F1B slots).
TEST(CostModelTest, PredictedShardedPlansMatchTheEngine) {
  const auto mach = plan::machine_preset("local");
  constexpr int64_t B = 4;
  struct Case {
    const char* what;
    int tp, pp, micro, U, R;
    parallel::SpMode mode;
  };
  const Case cases[] = {{"tp2", 2, 1, 1, 1, 1, parallel::SpMode::Ulysses},
                        {"sp2 ulysses", 1, 1, 1, 2, 1, parallel::SpMode::Ulysses},
                        {"sp4 lss", 1, 1, 1, 1, 4, parallel::SpMode::Lss},
                        {"sp4 ring", 1, 1, 1, 1, 4, parallel::SpMode::Ring},
                        {"sp 2x2 ulysses-ring", 1, 1, 1, 2, 2, parallel::SpMode::TwoD},
                        {"tp2 sp2 ring", 2, 1, 1, 1, 2, parallel::SpMode::Ring},
                        {"pp2 m2 (1f1b)", 1, 2, 2, 1, 1, parallel::SpMode::Ulysses}};
  for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable})
    for (const auto& k : cases) {
      const auto c = engine_config(tok, 16, 64);
      parallel::GridConfig g;
      g.tp = k.tp;
      g.pp = k.pp;
      g.micro_batches = k.micro;
      g.sp_mode = k.mode;
      g.sp_ulysses = k.U;
      g.sp_ring = k.R;
      // the engine: stage 0 (first blocks and the embedding; 2 of 3 blocks at pp 2), tp rank 0,
      // sp rank 0, with min(m, pp) activation slots
      model::ModelShard shard{k.tp, 0, 0, k.pp == 1 ? -1 : 2};
      model::ClimaX m(c, shard);
      PlanOnlyTp tp(k.tp, 0);
      PlanOnlySp sp(g, 0);
      if (k.tp > 1) m.set_tensor_parallel(&tp);
      m.plan(B / k.micro, model::Precision::F32, g.sp() > 1 ? &sp : nullptr, B,
             k.pp > 1 ? std::min(k.micro, k.pp) : 1);
      const double planned = double(m.activation_bytes() + m.workspace_bytes());
      plan::Workload w{plan_model(c), plan::Precision::F32, B / k.micro, omp_get_max_threads()};
      const auto e = plan::estimate(w, g, mach);
      const double predicted = e.memory.activations + e.memory.workspace;
      const double rel = std::fabs(predicted - planned) / planned;
      std::printf("  %s %s: planned %.0f bytes, predicted %.0f (%.2f%%)\n", k.what,
                  model::to_string(tok).c_str(), planned, predicted, 100 * rel);
      EXPECT_LE(rel, 0.005) << k.what << " " << model::to_string(tok);
      // the rank's parameter table, padding included, exactly
      EXPECT_DOUBLE_EQ(e.memory.params, 4.0 * double(m.params().total()))
          << k.what << " " << model::to_string(tok);
    }
}

TEST(CostModelTest, InvalidLayoutsNameTheBreakingNumber) {
  plan::Workload w{plan::model_preset("vit-base"), plan::Precision::BF16, 1};
  w.model.tokens = 4096;
  parallel::GridConfig g;
  g.tp = 5;
  EXPECT_NE(plan::layout_error(w, g).find("tp 5 does not divide the 12 heads"), std::string::npos);
  g.tp = 1;
  g.sp_ulysses = 16;
  EXPECT_NE(plan::layout_error(w, g).find("Ulysses degree 16 exceeds the 12 heads"),
            std::string::npos);
  g.sp_ulysses = 1;
  g.pp = 13;
  EXPECT_NE(plan::layout_error(w, g).find("13 pipeline stages exceed the depth 12"),
            std::string::npos);
}

TEST(CostModelTest, PlannerRefusesA10BModelOnOneDeviceAndFitsItOnMany) {
  plan::PlanRequest r;
  r.model = plan::model_preset("10b");
  r.model.tokens = 1 << 20;
  r.machine = plan::machine_preset("frontier");
  r.devices = 1;
  auto res = plan::plan(r);
  EXPECT_TRUE(res.fitting.empty());
  ASSERT_FALSE(res.too_big.empty());
  EXPECT_NE(res.too_big[0].limit.find("needs"), std::string::npos) << res.too_big[0].limit;
  r.devices = 512;
  res = plan::plan(r);
  ASSERT_FALSE(res.fitting.empty());
  for (const auto& e : res.fitting) {
    EXPECT_EQ(e.layout.world_size(), 512);
    EXPECT_LE(e.memory.total(), r.machine.usable_bytes());
  }
  for (size_t i = 1; i < res.fitting.size(); ++i)  // fastest first, ties within 0.5%
    EXPECT_GE(res.fitting[i - 1].tokens_per_s, res.fitting[i].tokens_per_s / 1.0051);
}

TEST(CostModelTest, FixedLayoutPartsAreHonoured) {
  plan::PlanRequest r;
  r.model = plan::model_preset("vit-base");
  r.model.tokens = 8192;
  r.machine = plan::machine_preset("frontier");
  r.devices = 16;
  r.tp = 2;
  r.sp_mode = parallel::SpMode::Ulysses;
  r.zero = 3;
  const auto res = plan::plan(r);
  ASSERT_FALSE(res.fitting.empty());
  for (const auto& e : res.fitting) {
    EXPECT_EQ(e.layout.tp, 2);
    EXPECT_EQ(e.layout.zero, 3);
    if (e.layout.sp() > 1) EXPECT_EQ(e.layout.sp_mode, parallel::SpMode::Ulysses);
  }
}

TEST(CostModelTest, MachineFilesAreCheckedKeyByKey) {
  const std::string path = testing::TempDir() + "/seqvit_machine.json";
  auto write = [&](const std::string& text) {
    std::ofstream(path) << text;
  };
  const std::string good = R"({"name": "mini", "devices_per_package": 1, "devices_per_node": 4,
    "memory_gib": 16, "peak_tflops_fp32": 10, "peak_tflops_bf16": 20,
    "memory_gbytes_per_s": 500, "links": {"package": {"gbytes_per_s": 100},
    "node": {"gbytes_per_s": 50}, "network": {"gbytes_per_s": 10, "latency_us": 5}}})";
  write(good);
  const auto m = plan::machine_from_file(path);
  EXPECT_EQ(m.name, "mini");
  EXPECT_EQ(m.devices_per_node, 4);
  EXPECT_DOUBLE_EQ(m.network.latency_us, 5);
  write(R"({"name": "x", "memory_gb": 16})");
  try {
    plan::machine_from_file(path);
    ADD_FAILURE() << "unknown key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'memory_gb'"), std::string::npos) << e.what();
  }
  std::string bad = good;
  bad.replace(bad.find("\"memory_gib\": 16"), 16, "\"memory_gib\": -1");
  write(bad);
  try {
    plan::machine_from_file(path);
    ADD_FAILURE() << "negative memory accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("memory_gib must be > 0, got -1"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(plan::machine_from_arg("no-such-machine"), Error);
}

}  // namespace

// The H100 presets (efficiencies assumed until the CUDA backend is measured: docs/planner.md):
// they validate, a DGX node is 8 GPUs, and the ClimaX model at the reference paper's 188,416
// tokens is planned onto one node with every fitting layout inside 80 GB.
TEST(CostModelTest, H100PresetsPlanClimaXOnOneNode) {
  for (const std::string name : {"h100", "dgx-h100"}) {
    const auto m = plan::machine_preset(name);
    EXPECT_NO_THROW(m.validate()) << name;
    EXPECT_DOUBLE_EQ(m.peak_tflops_bf16, 989) << name;
  }
  EXPECT_EQ(plan::machine_preset("dgx-h100").devices_per_node, 8);
  plan::PlanRequest r;
  r.model = plan::model_preset("climax");
  r.model.tokens = 188416;
  r.machine = plan::machine_preset("dgx-h100");
  r.devices = 8;
  const auto res = plan::plan(r);
  ASSERT_FALSE(res.fitting.empty());
  for (const auto& e : res.fitting) EXPECT_LE(e.memory.total(), r.machine.usable_bytes());
}
