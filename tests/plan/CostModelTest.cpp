// The planner's cost model against the engine itself: parameter counts equal the model's
// table, and the predicted activation + workspace bytes of a single process match what
// ClimaX::plan really allocates (both tokenizations, fp32 and bf16, several sequence lengths);
// presets, machine files and layout validity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/check.h"
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
  dist::GridConfig single;
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
                         B};
        const auto e = plan::estimate(w, single, mach);
        const double predicted = e.memory.activations + e.memory.workspace + e.memory.bf16_weights;
        const double rel = std::fabs(predicted - planned) / planned;
        std::printf("  %s %s N=%lld: planned %.0f bytes, predicted %.0f (%.2f%%)\n",
                    model::to_string(tok).c_str(), prec == model::Precision::BF16 ? "bf16" : "fp32",
                    static_cast<long long>(c.N()), planned, predicted, 100 * rel);
        EXPECT_LE(rel, 0.05) << model::to_string(tok) << " N=" << c.N();
      }
}

TEST(CostModelTest, InvalidLayoutsNameTheBreakingNumber) {
  plan::Workload w{plan::model_preset("vit-base"), plan::Precision::BF16, 1};
  w.model.tokens = 4096;
  dist::GridConfig g;
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
  r.sp_mode = dist::SpMode::Ulysses;
  r.zero = 3;
  const auto res = plan::plan(r);
  ASSERT_FALSE(res.fitting.empty());
  for (const auto& e : res.fitting) {
    EXPECT_EQ(e.layout.tp, 2);
    EXPECT_EQ(e.layout.zero, 3);
    if (e.layout.sp() > 1) EXPECT_EQ(e.layout.sp_mode, dist::SpMode::Ulysses);
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
