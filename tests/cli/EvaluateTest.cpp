// `seqvit evaluate` run as a user would, on the synthetic forecast fixture
// (tests/eval/forecast_fixture.h): the JSON and CSV files hold every output x lead, the JSON
// equals eval::evaluate run in this process on the same data, and each bad input exits 1 with a
// message that names the culprit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "data/synth/era5_synth.h"
#include "eval/forecast_fixture.h"
#include "eval/metrics.h"
#include "train/checkpoint.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using seqvit_test::run_seqvit;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class EvaluateTest : public ::testing::Test {
 protected:
  static const testing::ForecastFixture& fx() { return testing::ForecastFixture::get(); }
  // A scratch directory of this test program, outside the fixture's data directory (which is
  // the checkpoint's data path: NetCDF files written below it would join the data).
  static fs::path scratch_root() {
    return fs::temp_directory_path() / ("seqvit_evaluate_test_" + std::to_string(::getpid()));
  }
  static std::string scratch(const std::string& name) {
    const fs::path p = scratch_root() / name;
    fs::create_directories(p);
    return p.string();
  }
  static void TearDownTestSuite() { fs::remove_all(scratch_root()); }
  static std::string quote(const std::string& s) { return "'" + s + "'"; }
};

// What `seqvit evaluate` computes, in this process: one dataset per lead, the checkpoint's
// normalisation, time order.
std::vector<eval::Scores> in_process(const std::string& checkpoint,
                                     const std::vector<double>& leads, int batch) {
  const auto ck = eval::load_forecast_checkpoint(checkpoint);
  model::ClimaX m(ck.model);
  m.plan(batch, model::Precision::F32);
  m.sync_weights(ck.params.data());
  std::vector<std::vector<eval::Scores>> per_lead;  // [lead][output]
  for (double lead : leads) {
    data::ForecastConfig cfg = ck.data;
    cfg.lead_hours = {lead};
    eval::use_checkpoint_statistics(ck, cfg);
    cfg.batch_size = batch;
    cfg.shuffle = false;
    data::ForecastDataset ds(cfg, data::Split::test);
    per_lead.push_back(eval::evaluate(m, ck.params.data(), ds));
  }
  std::vector<eval::Scores> all;  // output-major, as the command writes them
  for (size_t o = 0; o < ck.model.out_variables.size(); ++o)
    for (const auto& scores : per_lead) all.push_back(scores.at(o));
  return all;
}

TEST_F(EvaluateTest, JsonAndCsvHoldEveryScoreAndMatchInProcessEvaluation) {
  const std::string dir = scratch("outputs");
  const std::string json = dir + "/scores.json", csv = dir + "/scores.csv";
  const auto r = run_seqvit("evaluate --checkpoint " + quote(fx().checkpoint) +
                            " --batch 4 --json " + quote(json) + " --csv " + quote(csv));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* want :
       {"checkpoint: ", "split: test [1979-01-07, 1979-01-09)",
        "lead 6 h: 7 forecasts from 1979-01-07T00:00:00Z to 1979-01-08T12:00:00Z",
        "lead 12 h: 6 forecasts", "rmse_wb2", "rmse_mean_per_forecast", "z_500",
        "climatology: from the checkpoint, the mean over [1979-01-01, 1979-01-05) (16 time steps, "
        "1979-01-01T00:00:00Z to 1979-01-04T18:00:00Z)"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  EXPECT_FALSE(fs::exists(json + ".tmp")) << "temporary file left behind";

  const auto j = nlohmann::json::parse(slurp(json));
  EXPECT_EQ(j.at("split"), "test");
  EXPECT_EQ(j.at("leads").size(), 2u);
  EXPECT_EQ(j.at("climatology").at("source"), "checkpoint");
  EXPECT_EQ(j.at("climatology").at("steps"), 16);
  const auto& scores = j.at("scores");
  const auto& outs = fx().data.outputs;
  const auto& leads = fx().data.lead_hours;
  ASSERT_EQ(scores.size(), outs.size() * leads.size());
  const auto ref = in_process(fx().checkpoint, leads, 4);
  ASSERT_EQ(ref.size(), scores.size());
  for (size_t k = 0; k < scores.size(); ++k) {
    const auto& s = scores[k];
    const auto& e = ref[k];
    const std::string what = e.variable + " lead " + std::to_string(e.lead_hours);
    EXPECT_EQ(s.at("variable"), outs[k / leads.size()]) << what;
    EXPECT_EQ(s.at("lead_hours").get<double>(), leads[k % leads.size()]) << what;
    EXPECT_EQ(s.at("variable"), e.variable);
    EXPECT_EQ(s.at("lead_hours").get<double>(), e.lead_hours);
    EXPECT_EQ(s.at("forecasts").get<int64_t>(), e.forecasts) << what;
    EXPECT_EQ(s.at("units"), e.units) << what;
    const double expect[] = {e.rmse_wb2,
                             e.rmse_mean_per_forecast,
                             e.acc,
                             e.rmse_wb2_persistence,
                             e.rmse_mean_per_forecast_persistence,
                             e.acc_persistence,
                             e.rmse_wb2_climatology,
                             e.rmse_mean_per_forecast_climatology,
                             e.acc_climatology};
    const auto& keys = eval::score_keys();
    ASSERT_EQ(keys.size(), std::size(expect));
    EXPECT_EQ(s.size(), 4 + keys.size()) << what;
    for (size_t q = 0; q < keys.size(); ++q) {
      ASSERT_TRUE(s.at(keys[q]).is_number()) << what << " " << keys[q];
      const double v = s.at(keys[q]).get<double>();
      EXPECT_TRUE(std::isfinite(v)) << what << " " << keys[q];
      EXPECT_NEAR(v, expect[q], 1e-6 * std::max(1.0, std::abs(expect[q]))) << what << " " << keys[q];
    }
    // Several forecasts with different errors: the two RMSEs differ (sqrt of a mean >= mean of
    // sqrts).
    EXPECT_GT(s.at("rmse_wb2").get<double>(), s.at("rmse_mean_per_forecast").get<double>()) << what;
  }

  std::istringstream lines(slurp(csv));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line,
            "variable,units,lead_hours,forecasts,rmse_wb2,rmse_mean_per_forecast,acc,"
            "rmse_wb2_persistence,rmse_mean_per_forecast_persistence,acc_persistence,"
            "rmse_wb2_climatology,rmse_mean_per_forecast_climatology,acc_climatology");
  for (size_t k = 0; k < ref.size(); ++k) {
    ASSERT_TRUE(std::getline(lines, line)) << "row " << k;
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 13u) << line;
    EXPECT_EQ(f[0], ref[k].variable);
    EXPECT_EQ(std::stod(f[2]), ref[k].lead_hours);
    EXPECT_EQ(std::stoll(f[3]), ref[k].forecasts);
    EXPECT_NEAR(std::stod(f[4]), ref[k].rmse_wb2, 1e-6 * ref[k].rmse_wb2) << line;
    EXPECT_NEAR(std::stod(f[5]), ref[k].rmse_mean_per_forecast,
                1e-6 * ref[k].rmse_mean_per_forecast)
        << line;
  }
  EXPECT_FALSE(std::getline(lines, line)) << "extra row: " << line;
}

TEST_F(EvaluateTest, LeadSplitAndMaxBatchesAreHonoured) {
  const std::string json = scratch("lead") + "/val.json", cache = scratch("lead") + "/stats.st";
  const auto r = run_seqvit("evaluate --checkpoint " + quote(fx().checkpoint) +
                            " --split val --lead-hours 18 --batch 2 --max-batches 1 --json " +
                            quote(json) + " --stats-cache " + quote(cache));
  ASSERT_EQ(r.status, 0) << r.output;
  // The statistics come from the checkpoint: a cache is read if it matches, never written.
  EXPECT_FALSE(fs::exists(cache));
  const auto j = nlohmann::json::parse(slurp(json));
  ASSERT_EQ(j.at("leads").size(), 1u);
  EXPECT_EQ(j.at("leads")[0].at("forecasts"), 2);
  EXPECT_EQ(j.at("leads")[0].at("first_time"), "1979-01-05T00:00:00Z");
  EXPECT_EQ(j.at("leads")[0].at("last_time"), "1979-01-05T06:00:00Z");
  ASSERT_EQ(j.at("scores").size(), fx().data.outputs.size());
  for (const auto& s : j.at("scores")) {
    EXPECT_EQ(s.at("lead_hours"), 18.0);
    EXPECT_EQ(s.at("forecasts"), 2);
  }
}

TEST_F(EvaluateTest, BadInputsExitOneNamingTheCulprit) {
  const std::string ck = quote(fx().checkpoint);
  auto expect_error = [](const std::string& args, const std::vector<std::string>& wants) {
    const auto r = run_seqvit(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("seqvit: error: "), std::string::npos) << args << "\n" << r.output;
    for (const auto& w : wants)
      EXPECT_NE(r.output.find(w), std::string::npos) << "'" << w << "' missing for: " << args
                                                     << "\n" << r.output;
  };
  const std::string dir = scratch("bad");

  // A checkpoint that does not exist; a model file without the forecast metadata.
  expect_error("evaluate --checkpoint " + dir + "/nope.safetensors",
               {dir + "/nope.safetensors", "does not exist"});
  const std::string plain = dir + "/plain_model.safetensors";
  {
    model::ClimaX m(fx().model);
    std::vector<float> p(m.params().total());
    m.init(p.data(), 1);
    eval::save_model(plain, fx().model, m.params(), p.data());
  }
  expect_error("evaluate --checkpoint " + plain, {plain, "not a forecast checkpoint"});

  // Data without z_500 (the geopotential files left out).
  const std::string no_z = dir + "/no_z";
  fs::create_directories(no_z);
  for (const char* sub : {"2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind",
                          "temperature", "constants"})
    fs::copy(fs::path(fx().dir) / sub, fs::path(no_z) / sub,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  expect_error("evaluate --checkpoint " + ck + " --data " + no_z, {"'z_500'", no_z});

  // Data on another grid: 16x32, which coarsens to 8x16, but the model is for 16x32.
  const std::string small = dir + "/grid16";
  {
    data::SynthSpec s;
    s.out_dir = small;
    s.H = 16, s.W = 32;
    s.days = 1;
    s.spinup_days = 0;
    data::synthesize(s);
  }
  expect_error("evaluate --checkpoint " + ck + " --data " + small, {"16x32", "8x16", small});

  // A split with no data: the checkpoint's test range moved past the end of the data.
  const std::string later = dir + "/later_test.safetensors";
  {
    auto c = eval::load_forecast_checkpoint(fx().checkpoint);
    c.data.test = {"1980-01-01", "1980-02-01"};
    model::ClimaX m(c.model);
    eval::save_forecast_model(later, c.model, c.data, c.norm, c.climatology, m.params(),
                              c.params.data());
  }
  expect_error("evaluate --checkpoint " + later, {"1980-01-01", "empty"});

  // Data paths stored in the checkpoint that are not there any more: the message says --data.
  const std::string moved = dir + "/moved_data.safetensors";
  {
    auto c = eval::load_forecast_checkpoint(fx().checkpoint);
    c.data.paths = {dir + "/gone"};
    model::ClimaX m(c.model);
    eval::save_forecast_model(moved, c.model, c.data, c.norm, c.climatology, m.params(),
                              c.params.data());
  }
  expect_error("evaluate --checkpoint " + moved, {dir + "/gone", "--data"});

  // A climatology stored for another grid than the data's (its latitudes shifted by 1 degree).
  const std::string shifted = dir + "/shifted_clim.safetensors";
  {
    auto c = eval::load_forecast_checkpoint(fx().checkpoint);
    for (double& l : c.climatology.lat) l += 1.0;
    model::ClimaX m(c.model);
    eval::save_forecast_model(shifted, c.model, c.data, c.norm, c.climatology, m.params(),
                              c.params.data());
  }
  expect_error("evaluate --checkpoint " + shifted, {"latitude", "row 0", shifted});

  // An output file in a directory that does not exist: refused before evaluating.
  expect_error("evaluate --checkpoint " + ck + " --json " + dir + "/no_dir/s.json",
               {dir + "/no_dir", "--json"});

  // A bad split name; bad leads.
  expect_error("evaluate --checkpoint " + ck + " --split testing", {"'testing'", "test, val"});
  expect_error("evaluate --checkpoint " + ck + " --lead-hours 6,abc", {"'abc'"});
  expect_error("evaluate --checkpoint " + ck + " --lead-hours=-6", {"'-6'"});
  expect_error("evaluate --checkpoint " + ck + " --lead-hours 7", {"7 h", "6 h"});
  expect_error("evaluate --checkpoint " + ck + " --lead-hours 48", {"48 h", "test split"});
}

// The checkpoint carries the normalisation and the climatology: evaluating needs the test
// period's files only. A tiny model is trained on two years of data (one file per year and
// variable; its training period in 1979, its test period in 1980), then evaluated on all files
// and on the 1980 files alone (the training year removed): the scores are the same numbers. A checkpoint without the climatology (as written
// before it was stored) still evaluates on all files, by the old path with a note, to the same
// scores, and fails on the 1980 files naming the training period it lacks.
TEST_F(EvaluateTest, CheckpointStatisticsNeedOnlyTheTestPeriod) {
  const fs::path root = scratch("test_period_only");
  const fs::path full = root / "full", test_only = root / "test_only";
  {
    data::SynthSpec s;  // 1979 and 1980, 6-hourly, 16x32
    s.H = 16, s.W = 32;
    s.years = 2;
    s.spinup_days = 1;
    s.out_dir = full.string();
    data::synthesize(s);
  }
  // The test-only directory: the 1980 files and the constants.
  int copied = 0;
  for (const auto& e : fs::recursive_directory_iterator(full)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.find("_1979_") != std::string::npos) continue;
    const fs::path to = test_only / fs::relative(e.path(), full);
    fs::create_directories(to.parent_path());
    fs::copy_file(e.path(), to);
    copied += name.find("_1980_") != std::string::npos;
  }
  ASSERT_EQ(copied, 5) << "t2m, u10, v10, z, t of 1980";

  const fs::path run = root / "run";
  const auto tr = run_seqvit(
      "train --data " + quote(full.string()) +
      " --train-range 1979-01-01/1979-01-08 --test-range 1980-01-01/1980-01-04 --lead-hours 6 "
      "--batch 2 --patch 4 --embed-dim 16 --heads 2 --depth 1 --decoder-depth 1 --steps 2 "
      "--checkpoint-every 2 --val-every 0 --threads 2 --stats-cache " +
      quote((root / "train_stats.safetensors").string()) + " --run-dir " + quote(run.string()));
  ASSERT_EQ(tr.status, 0) << tr.output;
  const auto ck = eval::load_forecast_checkpoint(run.string());
  ASSERT_FALSE(ck.climatology.empty());
  EXPECT_EQ(ck.climatology.period.begin, "1979-01-01");
  EXPECT_EQ(ck.climatology.steps, 28);
  EXPECT_EQ(ck.climatology.last_time, "1979-01-07T18:00:00Z");

  auto evaluate = [&](const std::string& ckpt, const fs::path& data, const std::string& name) {
    const std::string json = (root / (name + ".json")).string();
    const auto r = run_seqvit("evaluate --checkpoint " + quote(ckpt) + " --data " +
                              quote(data.string()) + " --batch 3 --threads 2 --json " +
                              quote(json));
    return std::make_pair(r, r.status == 0 ? nlohmann::json::parse(slurp(json))
                                           : nlohmann::json());
  };
  const auto [rf, jf] = evaluate(run.string(), full, "full");
  ASSERT_EQ(rf.status, 0) << rf.output;
  const auto [rt, jt] = evaluate(run.string(), test_only, "test_only");
  ASSERT_EQ(rt.status, 0) << rt.output;
  EXPECT_EQ(jt.at("climatology").at("source"), "checkpoint");
  EXPECT_EQ(jt.at("leads"), jf.at("leads"));
  ASSERT_EQ(jt.at("scores").size(), 5u);  // t2m, u10, v10, z_500, t_850 at 6 h
  EXPECT_EQ(jt.at("scores"), jf.at("scores")) << "test-only:\n" << rt.output << "\nfull:\n"
                                              << rf.output;
  EXPECT_EQ(jt.at("scores")[0].at("forecasts"), 11);  // 12 steps of 1980, the last has no target
  // Nothing was written into the data directories (no statistics cache: none is needed).
  EXPECT_FALSE(fs::exists(test_only / "seqvit_stats.safetensors"));
  EXPECT_FALSE(fs::exists(full / "seqvit_stats.safetensors"));

  // predict on the test period alone: the same forecast and scores as on all files.
  auto predict = [&](const fs::path& data, const std::string& name) {
    const auto r = run_seqvit("predict --checkpoint " + quote(run.string()) + " --data " +
                              quote(data.string()) + " --time 1980-01-02T06:00:00Z --threads 2 "
                              "--out " + quote((root / (name + ".nc")).string()));
    std::string scores;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);)
      if (line.find(" RMSE ") != std::string::npos) scores += line + "\n";
    return std::make_pair(r.status, r.status == 0 ? scores : r.output);
  };
  const auto pf = predict(full, "full"), pt = predict(test_only, "test_only");
  ASSERT_EQ(pf.first, 0) << pf.second;
  ASSERT_EQ(pt.first, 0) << pt.second;
  EXPECT_EQ(std::count(pt.second.begin(), pt.second.end(), '\n'), 5) << pt.second;
  EXPECT_EQ(pt.second, pf.second);

  // The same checkpoint without its climatology (as older versions wrote it).
  const std::string old_ck = (root / "old_model.safetensors").string();
  {
    model::ClimaX m(ck.model);
    eval::save_forecast_model(old_ck, ck.model, ck.data, ck.norm, eval::Climatology{},
                              m.params(), ck.params.data());
    ASSERT_TRUE(eval::load_forecast_checkpoint(old_ck).climatology.empty());
  }
  const auto [ro, jo] = evaluate(old_ck, full, "old_full");
  ASSERT_EQ(ro.status, 0) << ro.output;
  EXPECT_NE(ro.output.find("note: " + old_ck + " holds no climatology"), std::string::npos)
      << ro.output;
  EXPECT_EQ(jo.at("climatology").at("source"), "data");
  EXPECT_EQ(jo.at("scores"), jf.at("scores"));  // the same training-period mean, recomputed
  const auto [rot, jot] = evaluate(old_ck, test_only, "old_test_only");
  EXPECT_EQ(rot.status, 1) << rot.output;
  for (const char* want :
       {"train split [1979-01-01, 1979-01-08)", "holds no climatology", "1980-01-01"})
    EXPECT_NE(rot.output.find(want), std::string::npos) << want << "\n" << rot.output;
}

}  // namespace
}  // namespace seqvit
