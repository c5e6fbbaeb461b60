// seqvit train --data on a small synthetic ERA5-like dataset, through the real binary: TOML
// configuration files, checkpoints (atomic directories, the newest n kept), bit-exact --resume,
// a NaN loss that stops the run and leaves the last checkpoint intact, the JSON-lines log, and
// the errors for bad options.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_seqvit.h"
#include "eval/forecast_fixture.h"
#include "eval/forecast_checkpoint.h"
#include "eval/metrics.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using seqvit_test::run_seqvit;

class TrainDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::ForecastFixture::get().dir;
    tmp_ = fs::temp_directory_path() /
           ("seqvit_train_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // Small model, 16x32 grid (coarsen 2), 16 training samples at lead 6 h: 4 batches of 4.
  std::string base(const std::string& run) const {
    return "train --data " + data_ + " --coarsen 2 --train-range 1979-01-01/1979-01-05 "
           "--val-range 1979-01-05/1979-01-07 --test-range 1979-01-07/1979-01-09 "
           "--lead-hours 6 --batch 4 --embed-dim 32 --heads 2 --depth 1 --decoder-depth 1 "
           "--stats-cache " + (tmp_ / "stats.safetensors").string() +
           " --run-dir " + (tmp_ / run).string() + " --threads 2";
  }
  // step -> loss of every "step" event in a run's log, in order (a resumed step appears twice).
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
  std::vector<int64_t> checkpoint_steps(const std::string& run) const {
    std::vector<int64_t> s;
    for (const auto& [step, dir] : eval::list_checkpoints((tmp_ / run).string()))
      s.push_back(step);
    return s;
  }

  std::string data_;
  fs::path tmp_;
};

TEST_F(TrainDataTest, ResumeReproducesTheUninterruptedRunBitForBit) {
  // 10 steps cross three epoch boundaries (3 batches per epoch); checkpoints every 2 steps.
  const std::string opts = " --steps 10 --checkpoint-every 2 --keep 10 --val-every 5";
  const auto full = run_seqvit(base("full") + opts);
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_EQ(checkpoint_steps("full"), (std::vector<int64_t>{2, 4, 6, 8, 10}));
  const auto ref = losses("full");
  ASSERT_EQ(ref.size(), 10u);

  // Interrupted after step 4, in the middle of epoch 1: drop the later checkpoints, resume.
  fs::copy(tmp_ / "full", tmp_ / "cut", fs::copy_options::recursive);
  for (const char* s : {"step_00000006", "step_00000008", "step_00000010"})
    fs::remove_all(tmp_ / "cut" / "checkpoints" / s);
  const auto res = run_seqvit(base("cut") + opts + " --resume");
  ASSERT_EQ(res.status, 0) << res.output;
  EXPECT_NE(res.output.find("at step 4 (epoch 1, batch 1)"), std::string::npos) << res.output;
  const auto again = losses("cut");
  ASSERT_EQ(again.size(), 16u);  // 10 from the copied log, then steps 5..10
  for (size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(again[10 + k].first, ref[4 + k].first);
    EXPECT_EQ(again[10 + k].second, ref[4 + k].second) << "step " << ref[4 + k].first;
  }
  // The final weights are the same bytes.
  auto bytes = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const auto a = eval::load_forecast_checkpoint((tmp_ / "full").string());
  const auto b = eval::load_forecast_checkpoint((tmp_ / "cut").string());
  EXPECT_EQ(a.step, 10);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(bytes(tmp_ / "full/checkpoints/step_00000010/model.optim.safetensors"),
            bytes(tmp_ / "cut/checkpoints/step_00000010/model.optim.safetensors"));
}

TEST_F(TrainDataTest, KeepsTheNewestCheckpointsAndLogsJsonLines) {
  const auto r = run_seqvit(base("run") + " --steps 6 --checkpoint-every 1 --keep 2 --val-every 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(checkpoint_steps("run"), (std::vector<int64_t>{5, 6}));
  for (const auto& e : fs::directory_iterator(tmp_ / "run" / "checkpoints"))
    EXPECT_EQ(e.path().extension(), "") << "left behind: " << e.path();
  EXPECT_TRUE(fs::exists(tmp_ / "run/checkpoints/step_00000006/model.optim.safetensors"));
  // The checkpoint holds the training-period climatology of every output (docs/checkpoints.md).
  const auto ck = eval::load_forecast_checkpoint((tmp_ / "run").string());
  EXPECT_EQ(ck.climatology.outputs, ck.model.out_variables);
  EXPECT_EQ(ck.climatology.H, 16);
  EXPECT_EQ(ck.climatology.period.begin, "1979-01-01");
  EXPECT_EQ(ck.climatology.period.end, "1979-01-05");
  EXPECT_EQ(ck.climatology.steps, 16);
  EXPECT_EQ(ck.norm.size(), 7u);
  std::map<std::string, int> events;
  std::ifstream f(tmp_ / "run" / "log.jsonl");
  std::string line;
  nlohmann::json val;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    ++events[j.at("event")];
    if (j.at("event") == "validation") val = j;
  }
  EXPECT_EQ(events["start"], 1);
  EXPECT_EQ(events["step"], 6);
  EXPECT_EQ(events["checkpoint"], 6);
  EXPECT_EQ(events["validation"], 2);  // steps 3 and 6
  EXPECT_EQ(events["end"], 1);
  // Validation scores: every output at the lead, with the baselines beside the model.
  ASSERT_EQ(val.at("scores").size(), 5u);
  for (const auto& s : val.at("scores")) {
    for (const auto& k : eval::score_keys())
      if (k.rfind("rmse", 0) == 0) EXPECT_GT(s.at(k).get<double>(), 0.0) << k;
  }
  EXPECT_NE(r.output.find("validation at step 3"), std::string::npos) << r.output;
}

TEST_F(TrainDataTest, ConfigFileKeysAreFlagsAndTheCommandLineWins) {
  const fs::path cfg = tmp_ / "run.toml";
  std::ofstream(cfg) << "# a run\nsteps = 3\nmlp_ratio = 2  # underscores work too\n"
                        "checkpoint-every = 1\nkeep = 1\n[train]\nval-every = 0\n";
  const auto r = run_seqvit(base("cfg") + " --config " + cfg.string() + " --steps 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(eval::load_forecast_checkpoint((tmp_ / "cfg").string()).model.mlp_ratio, 2.0);
  EXPECT_EQ(checkpoint_steps("cfg"), (std::vector<int64_t>{2}));         // --steps 2 won
  std::ofstream(cfg) << "steps = 3\nlearning-rate = 0.1\n";
  const auto bad = run_seqvit(base("cfg2") + " --config " + cfg.string());
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("unknown key 'learning-rate'"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find(cfg.string()), std::string::npos);
  EXPECT_NE(bad.output.find("lr"), std::string::npos);  // the valid keys are listed
  std::ofstream(cfg) << "bf16 = maybe\n";
  const auto sw = run_seqvit(base("cfg3") + " --config " + cfg.string());
  EXPECT_EQ(sw.status, 1);
  EXPECT_NE(sw.output.find("'bf16' is a switch"), std::string::npos) << sw.output;
  const auto missing = run_seqvit(base("cfg4") + " --config " + (tmp_ / "nope.toml").string());
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("nope.toml"), std::string::npos) << missing.output;
}

TEST_F(TrainDataTest, NanLossStopsNamingTheStepAndKeepsTheCheckpoint) {
  // An absurd learning rate without clipping: step 1 is fine, step 2 overflows.
  const auto r = run_seqvit(base("nan") +
                            " --steps 10 --lr 1e3 --warmup 0 --grad-clip 0 --checkpoint-every 1 "
                            "--val-every 0");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("at step 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step_00000001"), std::string::npos) << r.output;
  EXPECT_EQ(checkpoint_steps("nan"), (std::vector<int64_t>{1}));
  const auto ck = eval::load_forecast_checkpoint((tmp_ / "nan").string());  // still loads
  EXPECT_EQ(ck.step, 1);
  for (float v : ck.params) ASSERT_TRUE(std::isfinite(v));
}

TEST_F(TrainDataTest, CorruptDataStopsNamingTheFileAndLeavesTheCheckpointIntact) {
  const fs::path data = tmp_ / "data";
  fs::copy(data_, data, fs::copy_options::recursive);
  std::string args = base("run");
  args.replace(args.find(data_), data_.size(), data.string());
  ASSERT_EQ(run_seqvit(args + " --steps 2 --val-every 0").status, 0);
  const fs::path model = tmp_ / "run/checkpoints/step_00000002/model.safetensors";
  const auto before = eval::load_forecast_checkpoint(model.string()).params;
  // A file of the dataset is cut short (a failed copy): resuming names it and changes nothing.
  fs::path victim;
  for (const auto& e : fs::recursive_directory_iterator(data))
    if (e.path().filename().string().rfind("2m_temperature", 0) == 0 &&
        e.path().extension() == ".nc")
      victim = e.path();
  ASSERT_FALSE(victim.empty());
  fs::resize_file(victim, fs::file_size(victim) / 2);
  const auto r = run_seqvit(args + " --steps 4 --val-every 0 --resume");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(victim.filename().string()), std::string::npos) << r.output;
  EXPECT_EQ(checkpoint_steps("run"), (std::vector<int64_t>{2}));
  EXPECT_EQ(eval::load_forecast_checkpoint(model.string()).params, before);
}

TEST_F(TrainDataTest, SigtermWritesACheckpointAndResumeContinues) {
  // Start a long run, stop it with SIGTERM once it has logged a step, then resume it.
  const fs::path log = tmp_ / "sig" / "log.jsonl";
  const std::string cmd =
      std::string(SEQVIT_BINARY_DIR) + "/seqvit " + base("sig") +
      " --steps 100000 --checkpoint-every 100000 --val-every 0 > " + (tmp_ / "out.txt").string() +
      " 2>&1 & pid=$!; for i in $(seq 600); do grep -q '\"event\":\"step\"' " +
      log.string() + " 2>/dev/null && break; sleep 0.05; done; kill -TERM $pid; wait $pid; " +
      "echo $? > " + (tmp_ / "status.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream st(tmp_ / "status.txt"), out(tmp_ / "out.txt");
  int status = -1;
  st >> status;
  const std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(status, 1) << text;
  EXPECT_NE(text.find("interrupted by signal"), std::string::npos) << text;
  const auto steps = checkpoint_steps("sig");
  ASSERT_EQ(steps.size(), 1u) << text;
  EXPECT_GE(steps[0], 1);
  const auto r = run_seqvit(base("sig") + " --steps " + std::to_string(steps[0] + 2) +
                            " --checkpoint-every 100000 --val-every 0 --resume");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(checkpoint_steps("sig").back(), steps[0] + 2);
}

TEST_F(TrainDataTest, ClearErrorsForBadOptions) {
  auto fails_with = [&](const std::string& args, const std::string& needle) {
    const auto r = run_seqvit(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  };
  fails_with(base("e1") + " --patch 5", "16x32 (after --coarsen 2) is not divisible by --patch 5");
  fails_with(base("e2") + " --img 32x64", "--img 32x64 does not match the data grid 16x32");
  fails_with(base("e3") + " --variables t2m,q_700", "q_700");
  fails_with(base("e4") + " --resume", "has no checkpoint");
  fails_with(base("e5") + " --missing sometimes", "'sometimes'");
  fails_with(base("e6") + " --train-range 1979-01-05", "BEGIN/END");
  fails_with(base("e7") + " --train-range 1979-02-01/1979-03-01", "1979-02-01");
  fails_with("train --data " + (tmp_ / "absent").string() +
                 " --train-range 1979-01-01/1979-01-05",
             "absent");
  // A finished run is not overwritten, and resuming with another model is refused.
  ASSERT_EQ(run_seqvit(base("e8") + " --steps 2").status, 0);
  fails_with(base("e8") + " --steps 4", "already has checkpoints");
  fails_with(base("e8") + " --steps 4 --resume --embed-dim 64", "differs");
}

}  // namespace
}  // namespace seqvit
