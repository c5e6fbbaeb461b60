// `seqvit evaluate` run as a user would, on the synthetic forecast fixture
// (tests/eval/forecast_fixture.h): the JSON and CSV files hold every output x lead, the JSON
// equals eval::evaluate run in this process on the same data, and each bad input exits 1 with a
// message that names the culprit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
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

const char* const kScoreKeys[] = {"rmse",
                                  "acc",
                                  "rmse_persistence",
                                  "acc_persistence",
                                  "rmse_climatology",
                                  "acc_climatology"};

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
    cfg.normalisation = ck.norm;
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
        "lead 12 h: 6 forecasts", "rmse_persist", "z_500"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  EXPECT_FALSE(fs::exists(json + ".tmp")) << "temporary file left behind";

  const auto j = nlohmann::json::parse(slurp(json));
  EXPECT_EQ(j.at("split"), "test");
  EXPECT_EQ(j.at("leads").size(), 2u);
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
    const double expect[] = {e.rmse, e.acc, e.rmse_persistence, e.acc_persistence,
                             e.rmse_climatology, e.acc_climatology};
    for (int q = 0; q < 6; ++q) {
      ASSERT_TRUE(s.at(kScoreKeys[q]).is_number()) << what << " " << kScoreKeys[q];
      const double v = s.at(kScoreKeys[q]).get<double>();
      EXPECT_TRUE(std::isfinite(v)) << what << " " << kScoreKeys[q];
      EXPECT_NEAR(v, expect[q], 1e-6 * std::max(1.0, std::abs(expect[q])))
          << what << " " << kScoreKeys[q];
    }
  }

  std::istringstream lines(slurp(csv));
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line,
            "variable,units,lead_hours,forecasts,rmse,acc,rmse_persistence,acc_persistence,"
            "rmse_climatology,acc_climatology");
  for (size_t k = 0; k < ref.size(); ++k) {
    ASSERT_TRUE(std::getline(lines, line)) << "row " << k;
    std::vector<std::string> f;
    std::stringstream ls(line);
    for (std::string x; std::getline(ls, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 10u) << line;
    EXPECT_EQ(f[0], ref[k].variable);
    EXPECT_EQ(std::stod(f[2]), ref[k].lead_hours);
    EXPECT_EQ(std::stoll(f[3]), ref[k].forecasts);
    EXPECT_NEAR(std::stod(f[4]), ref[k].rmse, 1e-6 * ref[k].rmse) << line;
  }
  EXPECT_FALSE(std::getline(lines, line)) << "extra row: " << line;
}

TEST_F(EvaluateTest, LeadSplitAndMaxBatchesAreHonoured) {
  const std::string json = scratch("lead") + "/val.json", cache = scratch("lead") + "/stats.st";
  const auto r = run_seqvit("evaluate --checkpoint " + quote(fx().checkpoint) +
                            " --split val --lead-hours 18 --batch 2 --max-batches 1 --json " +
                            quote(json) + " --stats-cache " + quote(cache));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(cache));
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
    eval::save_forecast_model(later, c.model, c.data, c.norm, m.params(), c.params.data());
  }
  expect_error("evaluate --checkpoint " + later, {"1980-01-01", "empty"});

  // Data paths stored in the checkpoint that are not there any more: the message says --data.
  const std::string moved = dir + "/moved_data.safetensors";
  {
    auto c = eval::load_forecast_checkpoint(fx().checkpoint);
    c.data.paths = {dir + "/gone"};
    model::ClimaX m(c.model);
    eval::save_forecast_model(moved, c.model, c.data, c.norm, m.params(), c.params.data());
  }
  expect_error("evaluate --checkpoint " + moved, {dir + "/gone", "--data"});

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

}  // namespace
}  // namespace seqvit
