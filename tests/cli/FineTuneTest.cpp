// Fine-tuning and dropout through the real binary (docs/training.md "Fine-tuning" and
// "Dropout"): --init-from takes a model file's or a forecast checkpoint's weights with a fresh
// optimizer, and refuses other variables or shapes naming them; --dropout / --drop-path change
// the training steps only, and a run cut in the middle and resumed reproduces the uninterrupted
// one bit for bit (the masks are a function of the seed and the optimizer step).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_seqvit.h"
#include "eval/checkpoint.h"
#include "eval/forecast_checkpoint.h"
#include "eval/forecast_fixture.h"
#include "io/safetensors.h"
#include "model/climax.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using seqvit_test::run_seqvit;

class FineTuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("seqvit_finetune_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // The synthetic mode, a tiny model: 16x32 grid, D = 32, 2 blocks.
  std::string synth(const std::string& out, int steps) const {
    return "train --steps " + std::to_string(steps) +
           " --batch 2 --img 16x32 --embed-dim 32 --heads 2 --depth 2 --decoder-depth 1 "
           "--threads 2 --out " + (tmp_ / out).string();
  }
  // The data mode on the forecast fixture (as tests/cli/TrainDataTest.cpp), depth 2 so that
  // the last block has the full drop-path rate.
  std::string data(const std::string& run) const {
    return "train --data " + testing::ForecastFixture::get().dir +
           " --coarsen 2 --train-range 1979-01-01/1979-01-05 "
           "--val-range 1979-01-05/1979-01-07 --lead-hours 6 --batch 4 --embed-dim 32 "
           "--heads 2 --depth 2 --decoder-depth 1 --stats-cache " +
           (tmp_ / "stats.safetensors").string() + " --run-dir " + (tmp_ / run).string() +
           " --threads 2";
  }
  std::vector<std::pair<int64_t, double>> losses(const std::string& run) const {
    std::ifstream f(tmp_ / run / "log.jsonl");
    std::vector<std::pair<int64_t, double>> out;
    std::string line;
    while (std::getline(f, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j.at("event") == "step") out.emplace_back(j.at("step"), j.at("loss"));
    }
    return out;
  }
  std::vector<float> weights(const std::string& file) const {
    const auto path = (tmp_ / file).string();
    const model::ClimaX m(eval::read_model_config(path));
    std::vector<float> p(static_cast<size_t>(m.params().total()));
    eval::load_parameters(path, m.params(), p.data());
    return p;
  }
  void fails_with(const std::string& args, const std::string& needle) const {
    const auto r = run_seqvit(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  }

  fs::path tmp_;
};

TEST_F(FineTuneTest, InitFromTakesTheWeightsWithAFreshOptimizer) {
  ASSERT_EQ(run_seqvit(synth("a.safetensors", 10)).status, 0);
  // One step from a's weights: the first learning rate is the warm-up start (1e-8), so the
  // weights move by about 1e-8 from a's, far from a fresh initialisation.
  const auto r = run_seqvit(synth("b.safetensors", 1) + " --init-from " +
                            (tmp_ / "a.safetensors").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("fine-tuning: weights from " + (tmp_ / "a.safetensors").string() +
                          "; a new optimizer from step 0"),
            std::string::npos)
      << r.output;
  ASSERT_EQ(run_seqvit(synth("c.safetensors", 1)).status, 0);  // the same step, fresh weights
  const auto a = weights("a.safetensors"), b = weights("b.safetensors"),
             c = weights("c.safetensors");
  double to_a = 0, to_fresh = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    to_a = std::max(to_a, static_cast<double>(std::fabs(b[i] - a[i])));
    to_fresh = std::max(to_fresh, static_cast<double>(std::fabs(b[i] - c[i])));
  }
  EXPECT_LT(to_a, 1e-6);
  EXPECT_GT(to_fresh, 1e-3);  // 10 steps of warm-up move a ~3e-3 from it
  // a fresh optimizer: step 1, not a's 6
  const io::SafetensorsReader opt((tmp_ / "b.optim.safetensors").string());
  EXPECT_EQ(nlohmann::json::parse(opt.metadata().at("seqvit.optim")).at("step"), 1);
}

TEST_F(FineTuneTest, InitFromRefusesOtherVariablesShapesAndResume) {
  ASSERT_EQ(run_seqvit(synth("a.safetensors", 1)).status, 0);
  const std::string from = " --init-from " + (tmp_ / "a.safetensors").string();
  fails_with(synth("b.safetensors", 1) + from + " --embed-dim 64",
             "tensor 'token_embeds.0.proj.weight' has shape [32, 1, 4, 4], expected [64, 1, 4, 4]");
  fails_with(synth("b.safetensors", 1) + from + " --variables t2m,u10",
             "the model there has the input variables t2m,u10,v10,z_500,t_850, but this run has "
             "t2m,u10");
  fails_with(synth("b.safetensors", 1) + from + " --tokenization per_variable",
             "the model there has aggregate tokenization, this run per_variable");
  fails_with(synth("b.safetensors", 1) + " --init-from " + (tmp_ / "absent").string(),
             "checkpoint '" + (tmp_ / "absent").string() + "' does not exist");
  fails_with(data("r") + " --resume" + from, "--init-from and --resume exclude each other");
  fails_with(synth("b.safetensors", 1) + " --dropout 1", "--dropout must be in [0, 1), got 1");
  fails_with(synth("b.safetensors", 1) + " --drop-path -0.5",
             "--drop-path must be in [0, 1), got -0.5");
}

TEST_F(FineTuneTest, DropoutIsDeterministicAndResumesBitForBit) {
  const std::string drop = " --dropout 0.1 --drop-path 0.2";
  const std::string opts = " --steps 6 --checkpoint-every 2 --keep 10 --val-every 3";
  const auto full = run_seqvit(data("full") + opts + drop);
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_NE(full.output.find("dropout 0.1 and drop-path 0.2"), std::string::npos) << full.output;
  const auto ref = losses("full");
  ASSERT_EQ(ref.size(), 6u);
  // without dropout the losses differ (it is on), from the first step
  ASSERT_EQ(run_seqvit(data("plain") + opts).status, 0);
  EXPECT_NE(losses("plain")[0].second, ref[0].second);
  // cut after step 2 and resumed: the same losses and final files
  fs::copy(tmp_ / "full", tmp_ / "cut", fs::copy_options::recursive);
  for (const char* s : {"step_00000004", "step_00000006"})
    fs::remove_all(tmp_ / "cut" / "checkpoints" / s);
  const auto res = run_seqvit(data("cut") + opts + drop + " --resume");
  ASSERT_EQ(res.status, 0) << res.output;
  const auto again = losses("cut");
  ASSERT_EQ(again.size(), 10u);  // 6 from the copied log, then steps 3..6
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(again[6 + k].first, ref[2 + k].first);
    EXPECT_EQ(again[6 + k].second, ref[2 + k].second) << "step " << ref[2 + k].first;
  }
  const auto a = eval::load_forecast_checkpoint((tmp_ / "full").string());
  const auto b = eval::load_forecast_checkpoint((tmp_ / "cut").string());
  EXPECT_EQ(a.step, 6);
  EXPECT_EQ(a.params, b.params);
  // resuming with other rates is refused
  fs::remove_all(tmp_ / "cut" / "checkpoints" / "step_00000006");
  fs::remove_all(tmp_ / "cut" / "checkpoints" / "step_00000004");
  const auto other = run_seqvit(data("cut") + opts + " --dropout 0.2 --resume");
  EXPECT_EQ(other.status, 1) << other.output;
  EXPECT_NE(other.output.find("seqvit: error: --resume: " +
                              (tmp_ / "cut/checkpoints/step_00000002/model.safetensors").string() +
                              " was trained with --dropout 0.1 --drop-path 0.2, not --dropout 0.2 "
                              "--drop-path 0 (the masks of the continued steps would differ)"),
            std::string::npos)
      << other.output;
  // a forecast checkpoint (its run directory) initialises a new run
  const auto ft = run_seqvit(data("ft") + " --steps 1 --val-every 0 --init-from " +
                             (tmp_ / "full").string());
  ASSERT_EQ(ft.status, 0) << ft.output;
  EXPECT_NE(ft.output.find("fine-tuning: weights from " +
                           (tmp_ / "full/checkpoints/step_00000006/model.safetensors").string()),
            std::string::npos)
      << ft.output;
}

}  // namespace
}  // namespace seqvit
