// `seqvit train --data` on an unusual file (docs/data.md "Unusual files"): a time axis in plain
// "hours" (no epoch) and a depth axis of length 1. Training refuses it without --time-origin,
// naming the axis and its units; with --time-origin it trains, the checkpoint keeps the origin
// with its dataset settings, and `seqvit evaluate` reads the data the same way from it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "../data/nc_test_writer.h"
#include "cli/run_seqvit.h"
#include "eval/forecast_checkpoint.h"

namespace fs = std::filesystem;
using nctest::Coord;
using nctest::Var;
using seqvit_test::run_seqvit;

namespace {

class TrainTimeOrigin : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_time_origin_" + std::to_string(::getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_ / "data");
    // 3 days of 6-hourly steps, stored as "hours" without an epoch; t2m (time, zlev, lat, lon).
    Coord time{"time", nctest::range(0, 6, 12), "hours", ""};
    Coord zlev{"zlev", {2}, "m", ""};
    Coord lat{"lat", nctest::range(84.375, -11.25, 16), "degrees_north", ""};
    Coord lon{"lon", nctest::range(0, 11.25, 32), "degrees_east", ""};
    Var t2m{"t2m", NC_FLOAT, {"time", "zlev", "lat", "lon"}, "K", {}, {}, nullptr};
    t2m.raw = [](const std::vector<size_t>& i) {
      return 280.0 + 10.0 * std::sin(0.4 * i[2] + 0.2 * i[3] + 0.5 * i[0]);
    };
    nctest::write((tmp_ / "data" / "t2m.nc").string(), NC_CLOBBER | NC_NETCDF4,
                  {time, zlev, lat, lon}, {t2m});
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string train(const std::string& extra) const {
    return "train --data " + (tmp_ / "data").string() +
           " --variables t2m --train-range 1979-01-01/1979-01-02 --val-range "
           "1979-01-02/1979-01-03 --test-range 1979-01-02/1979-01-04 --lead-hours 6 --batch 2 "
           "--embed-dim 16 --heads 2 --depth 1 --decoder-depth 1 --steps 2 --val-every 0 "
           "--threads 2 --stats-cache " + (tmp_ / "stats.safetensors").string() +
           " --run-dir " + (tmp_ / "run").string() + extra;
  }
  fs::path tmp_;
};

}  // namespace

TEST_F(TrainTimeOrigin, AsksForTheOriginThenKeepsItInTheCheckpoint) {
  auto r = run_seqvit(train(""));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("field 't2m': the time axis 'time' has units 'hours' without an epoch "
                          "(not 'UNITS since DATE'); give the date its values count from with "
                          "--time-origin DATE"),
            std::string::npos)
      << r.output;
  r = run_seqvit(train(" --time-origin 1979-13-01"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--time-origin: cannot parse the date '1979-13-01'"), std::string::npos)
      << r.output;

  r = run_seqvit(train(" --time-origin 1979-01-01"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto ck = seqvit::eval::load_forecast_checkpoint((tmp_ / "run").string());
  EXPECT_EQ(ck.data.time_origin, "1979-01-01");
  EXPECT_EQ(ck.climatology.steps, 4);  // 1979-01-01T00 .. T18: the origin placed the hours
  // evaluate takes the origin from the checkpoint: the test split's forecasts by date.
  r = run_seqvit("evaluate --checkpoint " + (tmp_ / "run").string() + " --batch 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("lead 6 h: 7 forecasts from 1979-01-02T00:00:00Z to 1979-01-03T12:00:00Z"),
            std::string::npos)
      << r.output;
}
