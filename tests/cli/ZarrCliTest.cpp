// Zarr stores through the real binary, wherever NetCDF files are accepted: `seqvit data stats
// STORE` (JSON lines and the table, statistics against what xarray decodes from the store),
// errors for an incomplete store and for Zarr mixed with NetCDF, and a short `seqvit train
// --data STORE` run on the WeatherBench2-like store of tests/data/zarr_fixtures.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../data/zarr_fixture.h"
#include "cli/run_seqvit.h"

namespace fs = std::filesystem;
using seqvit_test::run_seqvit;

namespace {

class ZarrCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = zarr_test::fixture_dir(); }
  void SetUp() override {
    ASSERT_FALSE(dir_.empty()) << "tests/data/zarr_fixtures.py failed; see " << SEQVIT_BINARY_DIR
                               << "/zarr_fixtures.log";
    tmp_ = fs::temp_directory_path() /
           ("seqvit_zarr_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  static std::string store(const std::string& name) { return dir_ + "/" + name; }
  static std::string dir_;
  fs::path tmp_;
};
std::string ZarrCli::dir_;

using seqvit_test::json_lines;

// Statistics of the values xarray decoded (expected.json's file for one field), as float.
struct Ref {
  double min = INFINITY, max = -INFINITY, sum = 0, sum2 = 0;
  int64_t n = 0, missing = 0;
};
Ref reference(const std::string& dir, const std::string& store, const std::string& field) {
  nlohmann::json expected;
  std::ifstream(dir + "/expected.json") >> expected;
  Ref r;
  for (const auto& e : expected) {
    if (e["store"] != store || e["field"] != field) continue;
    int64_t n = 1;
    for (int64_t s : e["shape"].get<std::vector<int64_t>>()) n *= s;
    std::vector<double> v(static_cast<size_t>(n));
    std::ifstream(dir + "/" + e["file"].get<std::string>(), std::ios::binary)
        .read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 8));
    for (double x : v) {
      if (std::isnan(x)) {
        ++r.missing;
        continue;
      }
      const double f = static_cast<float>(x);
      r.min = std::min(r.min, f), r.max = std::max(r.max, f), r.sum += f, r.sum2 += f * f, ++r.n;
    }
  }
  return r;
}

void expect_stats(const nlohmann::json& j, const Ref& r) {
  ASSERT_GT(r.n, 0);
  const double mean = r.sum / r.n, sd = std::sqrt(r.sum2 / r.n - mean * mean);
  EXPECT_EQ(j["min"].get<double>(), r.min);
  EXPECT_EQ(j["max"].get<double>(), r.max);
  EXPECT_NEAR(j["mean"].get<double>(), mean, 1e-9 * std::fabs(mean));
  EXPECT_NEAR(j["std"].get<double>(), sd, 1e-5 * sd);
  EXPECT_EQ(j["count"].get<int64_t>(), r.n);
  EXPECT_EQ(j["missing"].get<int64_t>(), r.missing);
}

}  // namespace

TEST_F(ZarrCli, DataStatsJsonOnAWeatherBench2Store) {
  const auto r = run_seqvit("data stats " + store("wb2.zarr") + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 4u) << r.output;  // 2m_temperature, geopotential at 50, 500, 850
  const auto& t = lines[0];
  EXPECT_EQ(t["name"], "2m_temperature");
  EXPECT_EQ(t["units"], "K");
  EXPECT_EQ(t["shape"], nlohmann::json({12, 16, 32}));
  EXPECT_EQ(t["lat_first"], 84.375);  // north to south, though the store is ascending
  EXPECT_EQ(t["lat_in_file"], "ascending");
  EXPECT_EQ(t["lon_last"], 348.75);
  EXPECT_EQ(t["time_first"], "1979-01-01T00:00:00Z");
  EXPECT_EQ(t["time_last"], "1979-01-03T18:00:00Z");
  expect_stats(t, reference(dir_, "wb2.zarr", "2m_temperature"));
  EXPECT_EQ(lines[2]["name"], "geopotential_500");
  EXPECT_EQ(lines[2]["level_hpa"], 500.0);
  expect_stats(lines[2], reference(dir_, "wb2.zarr", "geopotential_500"));
}

// WeatherBench2 as published stores (time, [level], longitude, latitude): the same statistics
// as the values xarray decodes, and `horizontal_in_file` says how it was stored.
TEST_F(ZarrCli, DataStatsOnAStoreWithLongitudeBeforeLatitude) {
  const auto r = run_seqvit("data stats " + store("wb2_lonlat.zarr") + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 4u) << r.output;
  EXPECT_EQ(lines[0]["name"], "2m_temperature");
  EXPECT_EQ(lines[0]["shape"], nlohmann::json({12, 16, 32}));
  EXPECT_EQ(lines[0]["horizontal_in_file"], "lon, lat");
  EXPECT_EQ(lines[0]["lat_first"], 84.375);
  expect_stats(lines[0], reference(dir_, "wb2_lonlat.zarr", "2m_temperature"));
  EXPECT_EQ(lines[3]["name"], "geopotential_850");
  expect_stats(lines[3], reference(dir_, "wb2_lonlat.zarr", "geopotential_850"));
  const auto w = run_seqvit("data stats " + store("wb2.zarr") + " --var 2m_temperature --json");
  ASSERT_EQ(w.status, 0) << w.output;
  EXPECT_EQ(json_lines(w.output).at(0)["horizontal_in_file"], "lat, lon");
}

TEST_F(ZarrCli, DataStatsCountsMissingValuesOfPackedData) {
  const auto r = run_seqvit("data stats " + store("packed.zarr") + " --var t2m --var sst --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u) << r.output;
  const Ref t2m = reference(dir_, "packed.zarr", "t2m");
  EXPECT_EQ(lines[0]["missing"].get<int64_t>(), t2m.missing);
  EXPECT_EQ(t2m.missing, 11);  // one value and one row of 10 were NaN when packed
  EXPECT_NEAR(lines[0]["mean"].get<double>(), t2m.sum / t2m.n, 1e-6 * t2m.sum / t2m.n);
  expect_stats(lines[1], reference(dir_, "packed.zarr", "sst"));
  EXPECT_EQ(lines[1]["lon_first"], 0.0);  // -180..144 rolled onto [0, 360)
}

TEST_F(ZarrCli, DataStatsTable) {
  const auto r = run_seqvit("data stats " + store("wb2.zarr") + " --var geopotential");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("geopotential_850"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("12x16x32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("84.375..-84.375"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1979-01-01T00:00:00Z .. 1979-01-03T18:00:00Z"), std::string::npos);
}

TEST_F(ZarrCli, IncompleteStoresAndMixedSourcesAreErrors) {
  auto r = run_seqvit("data stats " + store("bad_missing.zarr"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("chunk '1.2.0' is missing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("seqvit refuses incomplete stores"), std::string::npos) << r.output;
  std::ofstream(tmp_ / "a.nc") << "x";
  r = run_seqvit("data stats " + store("wb2.zarr") + " " + (tmp_ / "a.nc").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("mix a Zarr store"), std::string::npos) << r.output;
  r = run_seqvit("data stats " + store("bad_codec.zarr"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("unknown codec 'lzma'"), std::string::npos) << r.output;
}

// 12 six-hourly steps: a day each for training (3 samples at lead 6 h), validation and test.
std::string train_args(const std::string& data, int steps) {
  return "train --data " + data +
         " --variables 2m_temperature,geopotential_500 --train-range 1979-01-01/1979-01-02 "
         "--val-range 1979-01-02/1979-01-03 --test-range 1979-01-03/1979-01-04 --lead-hours 6 "
         "--batch 2 --embed-dim 32 --heads 2 --depth 1 --decoder-depth 1 --patch 4 --threads 2 "
         "--steps " +
         std::to_string(steps) + " --val-every " + std::to_string(steps);
}

TEST_F(ZarrCli, TrainsOnAStore) {
  const auto r =
      run_seqvit(train_args(store("wb2.zarr"), 3) + " --stats-cache " +
                 (tmp_ / "stats.safetensors").string() + " --run-dir " + (tmp_ / "run").string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream log(tmp_ / "run" / "log.jsonl");
  int steps = 0, validations = 0;
  for (std::string line; std::getline(log, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.at("event") == "step") {
      ++steps;
      EXPECT_TRUE(std::isfinite(j.at("loss").get<double>())) << line;
    }
    validations += j.at("event") == "validation";
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(validations, 1);
  EXPECT_TRUE(fs::exists(tmp_ / "stats.safetensors"));
  EXPECT_FALSE(fs::exists(store("wb2.zarr") + "/seqvit_stats.safetensors"));
}

// The same training on the (time, longitude, latitude) copy of the store: the reader hands out
// the same fields, so the losses are those of the (latitude, longitude) store.
TEST_F(ZarrCli, TrainsOnAStoreWithLongitudeBeforeLatitude) {
  auto losses = [&](const std::string& name) {
    const auto run = tmp_ / name;
    fs::create_directories(run);
    const auto r = run_seqvit(train_args(store(name), 3) + " --stats-cache " +
                              (run / "stats.safetensors").string() + " --run-dir " +
                              (run / "run").string());
    EXPECT_EQ(r.status, 0) << r.output;
    std::vector<double> l;
    std::ifstream log(run / "run" / "log.jsonl");
    for (std::string line; std::getline(log, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.at("event") == "step") l.push_back(j.at("loss").get<double>());
    }
    return l;
  };
  const auto lonlat = losses("wb2_lonlat.zarr"), latlon = losses("wb2.zarr");
  ASSERT_EQ(lonlat.size(), 3u);
  ASSERT_EQ(latlon.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(std::isfinite(lonlat[k]));
    EXPECT_NEAR(lonlat[k], latlon[k], 1e-6 * std::fabs(latlon[k])) << "step " << k;
  }
}

// Without --stats-cache the statistics go into the store directory (the first path given);
// writing them changes the directory's mtime, so the fingerprint uses the store's .zmetadata
// and a second run finds the cache valid.
TEST_F(ZarrCli, TheStatisticsCacheInAStoreIsReused) {
  fs::copy(store("wb2.zarr"), tmp_ / "wb2.zarr", fs::copy_options::recursive);
  const std::string data = (tmp_ / "wb2.zarr").string();
  auto r = run_seqvit(train_args(data, 1) + " --run-dir " + (tmp_ / "a").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("statistics computed (" + data + "/seqvit_stats.safetensors)"),
            std::string::npos)
      << r.output;
  r = run_seqvit(train_args(data, 1) + " --run-dir " + (tmp_ / "b").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("statistics from the cache"), std::string::npos) << r.output;
}
