// "From a download to a forecast" (docs/data.md): the same small data set as the archives
// deliver it (tests/data/data_path_fixtures.py: ERA5 NetCDF from the CDS with both poles, 33x64,
// latitude descending, `valid_time`; the same as GRIB 2; a WeatherBench2-style Zarr store, 32x64
// ascending, long names), each trained on directly with `seqvit train --grid 16x32`, then scored
// with `evaluate` and forecast with `predict` from the checkpoint. Also: the refusal without
// --grid that --grid lifts, the grid stored in the checkpoint and the statistics fingerprint,
// `data stats --grid`, and every bad --grid / --regrid-method.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "data/grid_source.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using nlohmann::json;
using seqvit_test::expect_error;
using seqvit_test::json_lines;
using seqvit_test::run_seqvit;

namespace {

class DataPath : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("seqvit_data_path_" + std::to_string(::getpid()));
    const std::string cmd = std::string("/usr/bin/python3 ") + SEQVIT_SOURCE_DIR +
                            "/tests/data/data_path_fixtures.py " + (dir_ / "data").string() +
                            " > " + (dir_ / "fixtures.log").string() + " 2>&1";
    fs::create_directories(dir_);
    fixtures_ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
    ASSERT_TRUE(fixtures_ok_) << "tests/data/data_path_fixtures.py failed; see "
                              << (dir_ / "fixtures.log").string();
  }
  static std::string data(const std::string& p) { return (dir_ / "data" / p).string(); }
  static std::string path(const std::string& p) { return (dir_ / p).string(); }

  // A few steps of a small model on t2m, z_500 and t_850 (4 days, 6-hourly: train on 2 days).
  static std::string train(const std::string& src, const std::string& run,
                           const std::string& extra = " --grid 16x32") {
    return "train --data " + data(src) + extra +
           " --variables t2m,z_500,t_850 --lead-hours 6 --train-range 1979-01-01/1979-01-03 "
           "--val-range 1979-01-03/1979-01-04 --test-range 1979-01-03/1979-01-05 --steps 4 "
           "--batch 2 --patch 4 --embed-dim 32 --depth 1 --decoder-depth 1 --heads 2 "
           "--val-every 2 --checkpoint-every 4 --threads 2 --run-dir " +
           path(run);
  }
  // (step, loss) of the run's log.jsonl.
  static std::vector<double> losses(const std::string& run) {
    std::ifstream f(path(run) + "/log.jsonl");
    std::vector<double> out;
    for (std::string line; std::getline(f, line);) {
      const json j = json::parse(line);
      if (j.at("event") == "step") out.push_back(j.at("loss").get<double>());
    }
    return out;
  }

  static fs::path dir_;
  static bool fixtures_ok_;
};
fs::path DataPath::dir_;
bool DataPath::fixtures_ok_ = false;

}  // namespace

TEST_F(DataPath, FromADownloadToAForecast) {
  const std::vector<std::string> vars{"t2m", "z_500", "t_850"};
  for (const std::string src : {"netcdf", "grib", "wb2.zarr"}) {
    SCOPED_TRACE(src);
    const std::string run = src + "_run";
    const auto t = run_seqvit(train(src, run));
    ASSERT_EQ(t.status, 0) << t.output;
    EXPECT_NE(t.output.find("16x32 grid (regridded, --grid 16x32, conservative)"),
              std::string::npos)
        << t.output;
    const auto l = losses(run);
    ASSERT_EQ(l.size(), 4u);
    for (double x : l) EXPECT_TRUE(std::isfinite(x) && x > 0 && x < 10) << x;

    // The checkpoint stores the grid: the model's and the dataset settings'.
    const std::string model = path(run) + "/checkpoints/step_00000004/model.safetensors";
    const seqvit::io::SafetensorsReader ck(model);
    const json d = json::parse(ck.metadata().at("seqvit.data"));
    EXPECT_EQ(d.at("grid"), "16x32");
    EXPECT_EQ(d.at("regrid_method"), "conservative");
    EXPECT_EQ(d.at("coarsen"), 1);

    // evaluate: scores for every output, finite, the model beside persistence and climatology.
    const auto e = run_seqvit("evaluate --checkpoint " + path(run) + " --threads 2 --json " +
                              path(run + ".json"));
    ASSERT_EQ(e.status, 0) << e.output;
    EXPECT_NE(e.output.find("regridded onto 16x32 (conservative)"), std::string::npos)
        << e.output;
    json scores;
    std::ifstream(path(run + ".json")) >> scores;
    ASSERT_EQ(scores.at("scores").size(), vars.size());
    for (size_t v = 0; v < vars.size(); ++v) {
      const json& s = scores["scores"][v];
      EXPECT_EQ(s.at("variable"), vars[v]);
      EXPECT_EQ(s.at("forecasts"), 7);  // initial times 1979-01-03T00 .. 01-04T12
      for (const char* k : {"rmse_wb2", "rmse_wb2_persistence", "rmse_wb2_climatology", "acc"})
        EXPECT_TRUE(s.at(k).is_number() && std::isfinite(s.at(k).get<double>())) << k;
      EXPECT_GT(s.at("rmse_wb2").get<double>(), 0);
    }

    // predict: a NetCDF forecast on the 16x32 equiangular grid, in the fields' units.
    const std::string fc = path(run + ".nc");
    const auto p = run_seqvit("predict --checkpoint " + path(run) +
                              " --time 1979-01-03T06:00:00Z --threads 2 --out " + fc);
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_NE(p.output.find("grid 16x32"), std::string::npos) << p.output;
    const auto out = seqvit::data::open_grid_source({fc});
    for (const auto& name : vars) {
      const auto ref = out->resolve(name);
      const auto& v = out->variable(ref.variable);
      ASSERT_EQ(v.H(), 16);
      ASSERT_EQ(v.W(), 32);
      EXPECT_DOUBLE_EQ(v.lat.front(), 84.375);
      EXPECT_DOUBLE_EQ(v.lat.back(), -84.375);
      EXPECT_DOUBLE_EQ(v.lon.front(), 0.0);
      EXPECT_DOUBLE_EQ(v.lon.back(), 348.75);
      std::vector<float> f(16 * 32);
      EXPECT_EQ(out->read(ref, 0, f.data()), 0);
      const double lo = name == "z_500" ? 5e4 : 200, hi = name == "z_500" ? 6e4 : 330;
      for (float x : f) ASSERT_TRUE(x > lo && x < hi) << name << " " << x;  // physical units
    }
  }
  // The weights are cached beside the data; the NetCDF and GRIB copies of the same fields give
  // the same training run (24-bit GRIB packing aside).
  EXPECT_TRUE(fs::exists(data("netcdf/seqvit_regrid_conservative_33x64_to_16x32.safetensors")));
  EXPECT_TRUE(fs::exists(data("grib/seqvit_regrid_conservative_33x64_to_16x32.safetensors")));
  EXPECT_TRUE(fs::exists(data("wb2.zarr/seqvit_regrid_conservative_32x64_to_16x32.safetensors")));
  const auto a = losses("netcdf_run"), b = losses("grib_run");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4 * a[i]) << i;
}

TEST_F(DataPath, GridLiftsThePatchRefusalAndKeysTheStatistics) {
  // 33 rows (both poles) do not divide into patches; the error points at --grid.
  const auto r = run_seqvit(train("netcdf", "native", ""));
  expect_error(r, "the data grid 33x64 (after --coarsen 1) is not divisible by --patch 4");
  EXPECT_NE(r.output.find("--grid HxW (e.g. --grid 32x64"), std::string::npos) << r.output;

  // The statistics cache is keyed by the grid and the method: the same grid reads it back,
  // another method (or grid) computes its own.
  const auto a = run_seqvit(train("netcdf", "g8", " --grid 8x16"));
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_NE(a.output.find("8x16 grid"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("statistics computed"), std::string::npos) << a.output;
  const auto b = run_seqvit(train("netcdf", "g8b", " --grid 8x16"));
  ASSERT_EQ(b.status, 0) << b.output;
  EXPECT_NE(b.output.find("statistics from the cache"), std::string::npos) << b.output;
  const auto c = run_seqvit(train("netcdf", "g8c", " --grid 8x16 --regrid-method bilinear"));
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("statistics computed"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("--grid 8x16, bilinear"), std::string::npos) << c.output;
  EXPECT_TRUE(fs::exists(data("netcdf/seqvit_regrid_bilinear_33x64_to_8x16.safetensors")));
}

TEST_F(DataPath, DataStatsOnTheTargetGrid) {
  const auto r = run_seqvit("data stats " + data("netcdf") + " --grid 16x32 --json", false);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto g = run_seqvit("data stats " + data("grib") + " --grid 16x32 --json", false);
  ASSERT_EQ(g.status, 0) << g.output;
  const auto src = run_seqvit("data stats " + data("netcdf") + " --json", false);
  ASSERT_EQ(src.status, 0) << src.output;
  const auto lr = json_lines(r.output), lg = json_lines(g.output), ls = json_lines(src.output);
  ASSERT_EQ(lr.size(), 5u);  // z_850, z_500, t_850, t_500, t2m
  ASSERT_EQ(ls.size(), 5u);
  for (size_t i = 0; i < lr.size(); ++i) {
    SCOPED_TRACE(lr[i].at("name").get<std::string>());
    EXPECT_EQ(lr[i].at("shape"), json({16, 16, 32}));
    EXPECT_EQ(lr[i].at("lat_first"), 84.375);
    EXPECT_EQ(lr[i].at("lon_last"), 348.75);
    EXPECT_EQ(lr[i].at("missing"), 0);
    // Conservative: area means of the source cells, so within the source's range.
    EXPECT_EQ(lr[i].at("name"), ls[i].at("name"));
    EXPECT_GE(lr[i].at("min").get<double>(), ls[i].at("min").get<double>());
    EXPECT_LE(lr[i].at("max").get<double>(), ls[i].at("max").get<double>());
    EXPECT_LT(lr[i].at("max").get<double>() - lr[i].at("min").get<double>(),
              ls[i].at("max").get<double>() - ls[i].at("min").get<double>());
  }
  // GRIB (its names and field order) regridded gives the NetCDF's statistics.
  for (const auto& x : lr) {
    std::string n = x.at("name");
    if (n == "t2m") n = "2t";
    bool found = false;
    for (const auto& y : lg)
      if (y.at("name") == n) {
        found = true;
        EXPECT_NEAR(y.at("mean").get<double>(), x.at("mean").get<double>(),
                    1e-5 * std::abs(x.at("mean").get<double>()))
            << n;
      }
    EXPECT_TRUE(found) << n;
  }
  const auto t = run_seqvit("data stats " + data("wb2.zarr") + " --grid 8x16 --var temperature");
  ASSERT_EQ(t.status, 0) << t.output;
  EXPECT_NE(t.output.find("1 Zarr store(s) regridded onto 8x16 (conservative)"),
            std::string::npos)
      << t.output;
}

TEST_F(DataPath, BadGridFlags) {
  const std::string nc = data("netcdf");
  expect_error(run_seqvit(train("netcdf", "bad", " --grid 16by32")),
               "grid '16by32' is not of the form HxW");
  expect_error(run_seqvit(train("netcdf", "bad", " --grid 0x32")), "grid '0x32'");
  expect_error(run_seqvit(train("netcdf", "bad", " --grid 16x32 --coarsen 2")),
               "--grid 16x32 and --coarsen 2 cannot be combined");
  expect_error(run_seqvit(train("netcdf", "bad", " --grid 16x32 --regrid-method nearest")),
               "nearest");
  expect_error(run_seqvit(train("netcdf", "bad", " --regrid-method bilinear")),
               "--regrid-method bilinear needs --grid HxW");
  expect_error(run_seqvit("data stats " + nc + " --grid 16x"), "grid '16x' is not of the form HxW");
  expect_error(run_seqvit("data stats " + nc + " --regrid-method bilinear"),
               "--regrid-method bilinear needs --grid HxW");

  // evaluate / predict: the checkpoint's grid by default; a different one is refused.
  const auto t = run_seqvit(train("netcdf", "ck", " --grid 8x16"));
  ASSERT_EQ(t.status, 0) << t.output;
  const std::string ck = " --checkpoint " + path("ck");
  expect_error(run_seqvit("evaluate" + ck + " --grid 16x32"),
               "--grid 16x32 differs from the grid 8x16 that the model in");
  expect_error(run_seqvit("evaluate" + ck + " --grid 8by16"), "grid '8by16' is not of the form");
  expect_error(run_seqvit("evaluate" + ck + " --regrid-method bilinear"),
               "--regrid-method bilinear differs from the method 'conservative'");
  expect_error(run_seqvit("predict" + ck + " --time 1979-01-03T06:00:00Z --out " +
                          path("x.nc") + " --grid 32x64"),
               "--grid 32x64 differs from the grid 8x16");
  const auto same = run_seqvit("evaluate" + ck + " --grid 8x16 --regrid-method conservative "
                               "--max-batches 1 --threads 2");
  EXPECT_EQ(same.status, 0) << same.output;
  EXPECT_FALSE(fs::exists(path("x.nc")));

  // A model trained on the data's own grid takes no --grid.
  const auto w = run_seqvit(train("wb2.zarr", "native", ""));
  ASSERT_EQ(w.status, 0) << w.output;
  expect_error(run_seqvit("evaluate --checkpoint " + path("native") + " --grid 32x64"),
               "was trained on the data's own grid (without --grid)");
}
