// Forecast checkpoints: the dataset configuration and normalisation travel with the weights.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/check.h"
#include "eval/forecast_fixture.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;

TEST(ForecastCheckpointTest, RoundTripOfConfigNormalisationAndWeights) {
  const auto& f = testing::ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  EXPECT_EQ(ck.model.to_json(), f.model.to_json());
  EXPECT_EQ(data::forecast_config_to_json(ck.data), data::forecast_config_to_json(f.data));
  ASSERT_EQ(ck.norm.size(), 7u);  // inputs and outputs, each once
  EXPECT_GT(ck.norm.at("t2m").first, 200.0);  // kelvin
  EXPECT_GT(ck.norm.at("t2m").second, 0.0);
  model::ClimaX m(f.model);
  std::vector<float> p(m.params().total());
  m.init(p.data(), 7);
  EXPECT_EQ(ck.params, p);
  EXPECT_EQ(ck.step, 0);
}

TEST(ForecastCheckpointTest, ResolvesStepAndRunDirectories) {
  const auto& f = testing::ForecastFixture::get();
  const fs::path run = fs::path(f.dir) / "run_resolve";
  fs::create_directories(run / "checkpoints" / eval::step_dir_name(10));
  fs::create_directories(run / "checkpoints" / eval::step_dir_name(20));
  fs::create_directories(run / "checkpoints" / (eval::step_dir_name(30) + ".tmp"));
  for (int s : {10, 20})
    fs::copy_file(f.checkpoint, run / "checkpoints" / eval::step_dir_name(s) / "model.safetensors");
  const auto latest = (run / "checkpoints" / "step_00000020" / "model.safetensors").string();
  EXPECT_EQ(eval::resolve_checkpoint(run.string()), latest);
  EXPECT_EQ(eval::resolve_checkpoint((run / "checkpoints" / "step_00000020").string()), latest);
  EXPECT_EQ(eval::list_checkpoints(run.string()).size(), 2u);
  try {
    eval::resolve_checkpoint((run / "nope").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
}

TEST(ForecastCheckpointTest, DataConfigRejectsUnknownKeys) {
  try {
    data::forecast_config_from_json(R"({"inputs":["t2m"],"outputs":["t2m"],"lead_hours":[6],"leed":1})",
                                    "x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'leed'"), std::string::npos);
  }
}

}  // namespace
}  // namespace seqvit
