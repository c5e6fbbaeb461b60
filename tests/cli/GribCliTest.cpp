// GRIB input through the binary: `seqvit data stats FILE.grib2` (statistics of the decoded
// values, constants, GRIB and ClimaX names) and a short `seqvit train --data FILE.grib2` run
// whose variables are asked for by ClimaX names (t2m, z_500, lsm, orography) that the names
// table maps onto the GRIB shortNames. Fixtures: tests/data/grib_fixtures.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/run_seqvit.h"
#include "data/grib_fixture.h"

namespace fs = std::filesystem;
using seqvit_test::run_seqvit;

namespace {

constexpr char kGribCliDir[] = "seqvit_grib_cli_";
using GribCli = seqvit_test::GribFixtureTest<kGribCliDir>;
using seqvit_test::json_lines;

}  // namespace

TEST_F(GribCli, DataStatsOfAGribFile) {
  const auto r = run_seqvit("data stats " + path("multi.grib2") + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 5u) << r.output;  // 2t, z_500, z_850, z_surface, lsm
  // 2t: f = 100 k + lat + lon / 10 over k = 0..2, lat 60..-60 by 30, lon 0..315 by 45.
  double sum = 0, sum2 = 0;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 8; ++j) {
        const double x = 100.0 * k + 60.0 - 30.0 * i + 4.5 * j;
        sum += x, sum2 += x * x;
      }
  const double mean = sum / 120, sd = std::sqrt(sum2 / 120 - mean * mean);
  const auto& t = lines[0];
  EXPECT_EQ(t["name"], "2t");
  EXPECT_EQ(t["units"], "K");
  EXPECT_EQ(t["shape"], nlohmann::json({3, 5, 8}));
  EXPECT_NEAR(t["min"].get<double>(), -60.0, 1e-3);
  EXPECT_NEAR(t["max"].get<double>(), 200 + 60 + 31.5, 1e-3);
  EXPECT_NEAR(t["mean"].get<double>(), mean, 1e-3);
  EXPECT_NEAR(t["std"].get<double>(), sd, 1e-3);
  EXPECT_EQ(t["missing"], 0);
  EXPECT_EQ(t["time_first"], "2000-01-01T00:00:00Z");
  EXPECT_EQ(t["time_last"], "2000-01-01T12:00:00Z");
  EXPECT_EQ(lines[1]["name"], "z_500");
  EXPECT_NEAR(lines[1]["min"].get<double>(), 500 - 60.0, 1e-3);
  EXPECT_EQ(lines[3]["name"], "z_surface");
  EXPECT_EQ(lines[3]["shape"], nlohmann::json({5, 8}));
  EXPECT_TRUE(lines[3]["time_first"].is_null());
  // ClimaX names through the names table; a bitmap's missing points are counted.
  auto sel = run_seqvit("data stats " + path("multi.grib2") + " --var t2m --var orography --json");
  ASSERT_EQ(sel.status, 0) << sel.output;
  const auto two = json_lines(sel.output);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0]["variable"], "2t");
  EXPECT_EQ(two[1]["variable"], "z_surface");
  const auto bm = run_seqvit("data stats " + path("bitmap.grib1") + " --json");
  ASSERT_EQ(bm.status, 0) << bm.output;
  EXPECT_EQ(json_lines(bm.output)[0]["missing"], 6);  // every 7th of 40 points from the 4th
  const auto bad = run_seqvit("data stats " + path("multi.grib2") + " --var q_500");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("unknown variable 'q_500'"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("2t, z, z_surface, lsm"), std::string::npos) << bad.output;
}

TEST_F(GribCli, TrainsOnAGribFileByClimaXNames) {
  const fs::path run = dir_ / "run";
  const auto r = run_seqvit(
      "train --data " + path("train.grib2") +
      " --variables t2m,z_500,z_850,lsm,orography --out-variables t2m,z_500"
      " --train-range 2000-01-01/2000-01-03 --val-range 2000-01-03/2000-01-04"
      " --test-range 2000-01-04/2000-01-05 --lead-hours 6 --batch 2 --patch 4 --embed-dim 16"
      " --heads 2 --depth 1 --decoder-depth 1 --steps 3 --val-every 3 --threads 2"
      " --stats-cache " +
      (dir_ / "stats.safetensors").string() + " --run-dir " + run.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream log(run / "log.jsonl");
  int steps = 0;
  nlohmann::json val;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("event") == "step") {
      ++steps;
      EXPECT_TRUE(std::isfinite(j.at("loss").get<double>()));
    }
    if (j.at("event") == "validation") val = j;
  }
  EXPECT_EQ(steps, 3);
  ASSERT_EQ(val.at("scores").size(), 2u) << val.dump();
  for (const auto& s : val.at("scores")) EXPECT_GT(s.at("rmse_wb2_persistence").get<double>(), 0.0);
}
