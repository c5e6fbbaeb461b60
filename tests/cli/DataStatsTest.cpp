// `seqvit data stats` run as a user would: statistics after decoding (packing, fill values,
// orientation), one JSON object per field, a readable table, and clear errors on bad input.
#include <gtest/gtest.h>

#include "cli/run_seqvit.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "../data/nc_test_writer.h"

namespace fs = std::filesystem;
using nctest::Coord;
using nctest::Var;

namespace {


using seqvit_test::Result;
Result run(const std::string& args) { return seqvit_test::run_seqvit(args); }

using seqvit_test::json_lines;

// Reference statistics over decoded float values, NaN = missing.
struct Ref {
  double min = INFINITY, max = -INFINITY, sum = 0, sum2 = 0;
  int64_t n = 0, missing = 0;
  void add(double x) {
    if (std::isnan(x)) return void(++missing);
    const double v = static_cast<float>(x);
    min = std::min(min, v), max = std::max(max, v), sum += v, sum2 += v * v, ++n;
  }
  double mean() const { return sum / n; }
  double std() const { return std::sqrt(sum2 / n - mean() * mean()); }
};

class DataStats : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_stats_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
    // t2m: packed shorts with a fill; z: levels in Pa; latitude ascending, longitude -180..180.
    Coord time{"time", {0, 6, 12}, "hours since 2000-01-01 00:00:00", ""};
    Coord lev{"plev", {50000, 85000}, "Pa", ""};
    Coord lat{"lat", nctest::range(-60, 30, 5), "degrees_north", ""};
    Coord lon{"lon", nctest::range(-180, 45, 8), "degrees_east", ""};
    Var t2m{"t2m",
            NC_SHORT,
            {"time", "lat", "lon"},
            "K",
            {{"_FillValue", {-32767}}},
            {{"scale_factor", {0.5}}, {"add_offset", {270}}},
            nullptr};
    t2m.raw = [](const std::vector<size_t>& i) {
      return i[1] == 2 && i[2] == 3 ? -32767.0 : double(i[0] * 40 + i[1] * 8 + i[2]);
    };
    Var z{"z", NC_FLOAT, {"time", "plev", "lat", "lon"}, "m**2 s**-2", {}, {}, nullptr};
    z.raw = [](const std::vector<size_t>& i) {
      return 50000.0 + 1000.0 * i[1] + 10.0 * i[0] + i[2] * 0.5 + i[3] * 0.25;
    };
    nctest::write((tmp_ / "era5.nc").string(), NC_CLOBBER | NC_NETCDF4, {time, lev, lat, lon},
                  {t2m, z});
    for (size_t t = 0; t < 3; ++t)
      for (size_t i = 0; i < 5; ++i)
        for (size_t j = 0; j < 8; ++j) {
          const double raw = t2m.raw({t, i, j});
          t2m_.add(raw == -32767 ? NAN : raw * 0.5 + 270);
          z500_.add(z.raw({t, 0, i, j}));
        }
  }
  void TearDown() override { fs::remove_all(tmp_); }
  fs::path tmp_;
  Ref t2m_, z500_;
};

void expect_stats(const nlohmann::json& j, const Ref& r) {
  EXPECT_EQ(j["min"].get<double>(), r.min);
  EXPECT_EQ(j["max"].get<double>(), r.max);
  EXPECT_NEAR(j["mean"].get<double>(), r.mean(), 1e-9 * std::fabs(r.mean()));
  EXPECT_NEAR(j["std"].get<double>(), r.std(), 1e-6 * r.std());
  EXPECT_EQ(j["missing"].get<int64_t>(), r.missing);
}

}  // namespace

TEST_F(DataStats, JsonLinesPerVariableAndLevel) {
  const auto r = run("data stats " + tmp_.string() + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 3u) << r.output;  // t2m, z_500, z_850
  const auto& t = lines[0];
  EXPECT_EQ(t["name"], "t2m");
  EXPECT_EQ(t["units"], "K");
  EXPECT_EQ(t["shape"], nlohmann::json({3, 5, 8}));
  expect_stats(t, t2m_);
  EXPECT_EQ(t["missing"], 3);
  EXPECT_EQ(t["lat_first"], 60.0);  // north to south, though the file is ascending
  EXPECT_EQ(t["lat_last"], -60.0);
  EXPECT_EQ(t["lat_in_file"], "ascending");
  EXPECT_EQ(t["lon_first"], 0.0);  // rolled from -180..135 onto [0, 360)
  EXPECT_EQ(t["lon_last"], 315.0);
  EXPECT_EQ(t["time_first"], "2000-01-01T00:00:00Z");
  EXPECT_EQ(t["time_last"], "2000-01-01T12:00:00Z");
  EXPECT_EQ(lines[1]["name"], "z_500");
  EXPECT_EQ(lines[1]["level_hpa"], 500.0);
  expect_stats(lines[1], z500_);
  EXPECT_EQ(lines[2]["name"], "z_850");
  EXPECT_EQ(lines[2]["min"], 51000.0);
}

TEST_F(DataStats, SelectedFieldAndTable) {
  auto r = run("data stats " + (tmp_ / "era5.nc").string() + " --var z_500 --json");
  ASSERT_EQ(r.status, 0) << r.output;
  auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 1u);
  expect_stats(lines[0], z500_);
  r = run("data stats --var z " + (tmp_ / "era5.nc").string() + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(json_lines(r.output).size(), 2u);
  r = run("data stats " + (tmp_ / "era5.nc").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("name"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("units"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("m**2 s**-2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3x5x8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2000-01-01T00:00:00Z .. 2000-01-01T12:00:00Z"), std::string::npos);
}

TEST_F(DataStats, ConstantsAndFieldsWithoutValidValues) {
  Coord lat{"latitude", {45, -45}, "degrees_north", ""};
  Coord lon{"longitude", {0, 120, 240}, "degrees_east", ""};
  Var lsm{"lsm", NC_FLOAT, {"latitude", "longitude"}, "1", {}, {}, nullptr};
  lsm.raw = [](const std::vector<size_t>& i) { return double(i[0] * 3 + i[1]); };
  Var gone{"sst",
           NC_FLOAT,
           {"time", "latitude", "longitude"},
           "K",
           {{"_FillValue", {-1}}},
           {},
           [](const std::vector<size_t>&) { return -1.0; }};
  nctest::write((tmp_ / "const.nc").string(), NC_CLOBBER,
                {{"time", {0, 24}, "days since 1979-01-01", ""}, lat, lon}, {lsm, gone});
  const auto r = run("data stats " + (tmp_ / "const.nc").string() + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["name"], "lsm");
  EXPECT_EQ(lines[0]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(lines[0]["mean"], 2.5);
  EXPECT_TRUE(lines[0]["time_first"].is_null());
  EXPECT_EQ(lines[1]["name"], "sst");
  EXPECT_EQ(lines[1]["missing"], 12);
  EXPECT_TRUE(lines[1]["mean"].is_null());
  EXPECT_TRUE(lines[1]["min"].is_null());
  EXPECT_EQ(lines[1]["time_last"], "1979-01-25T00:00:00Z");
}

TEST_F(DataStats, BadInputIsOneClearError) {
  auto expect_error = [](const Result& r, const std::string& needle) {
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n"
                                                        << r.output;
  };
  const std::string f = (tmp_ / "era5.nc").string();
  expect_error(run("data stats " + (tmp_ / "missing.nc").string()), "missing.nc: no such file");
  expect_error(run("data stats " + f + " --var q"), "unknown variable 'q'");
  expect_error(run("data stats " + f + " --var z_700"), "available levels (hPa): 500, 850");
  fs::create_directories(tmp_ / "empty");
  expect_error(run("data stats " + (tmp_ / "empty").string()), "holds no *.nc files");
}

// docs/data.md "Unusual files": dropped axes are named; a time axis without an epoch is shown
// as stored, with a warning; a longer extra axis is one clear error.
TEST_F(DataStats, UnusualFiles) {
  Coord time{"time", {0, 1, 2}, "days", ""};
  Coord zlev{"zlev", {2}, "m", ""};
  Coord lat{"lat", {30, -30}, "degrees_north", ""};
  Coord lon{"lon", {0, 90, 180, 270}, "degrees_east", ""};
  Var sst{"sst", NC_FLOAT, {"time", "zlev", "lat", "lon"}, "K", {}, {}, nullptr};
  sst.raw = [](const std::vector<size_t>& i) { return 270.0 + i[0] * 8 + i[2] * 4 + i[3]; };
  const std::string f = (tmp_ / "odd.nc").string();
  nctest::write(f, NC_CLOBBER, {time, zlev, lat, lon}, {sst});
  auto r = seqvit_test::run_seqvit("data stats " + f + " --json", false);  // stdout only
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  const auto& j = lines[0];
  EXPECT_EQ(j["name"], "sst");
  EXPECT_EQ(j["shape"], nlohmann::json({3, 2, 4}));
  EXPECT_EQ(j["min"], 270.0);
  EXPECT_EQ(j["max"], 270.0 + 2 * 8 + 4 + 3);
  EXPECT_EQ(j["mean"], 270.0 + 8 + 2 + 1.5);
  EXPECT_EQ(j["time_first"], 0.0);  // raw values, in time_units
  EXPECT_EQ(j["time_last"], 2.0);
  EXPECT_EQ(j["time_units"], "days");
  EXPECT_EQ(j["time_has_epoch"], false);
  EXPECT_EQ(j["dropped_axes"], nlohmann::json({"zlev"}));
  r = run("data stats " + f);  // the table, with stderr
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("seqvit: warning: variable 'sst': the time axis 'time' has units 'days' "
                          "without an epoch (not 'UNITS since DATE'); its times are shown as "
                          "stored; training needs --time-origin DATE"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("0 days (no epoch) .. 2 days (no epoch)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("extra axes of length 1 dropped (read at index 0): sst (zlev)"),
            std::string::npos)
      << r.output;
  // An ensemble of three members: the error names the axis, its length and what to do.
  Coord number{"number", {0, 1, 2}, "", ""};
  Var ens{"t2m", NC_FLOAT, {"number", "lat", "lon"}, "K", {}, {}, [](auto&) { return 1.0; }};
  nctest::write((tmp_ / "ens.nc").string(), NC_CLOBBER, {number, lat, lon}, {ens});
  r = run("data stats " + (tmp_ / "ens.nc").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("its axis 'number' has length 3; expected (time, [level], lat, lon) "
                          "and extra axes of length 1 only"),
            std::string::npos)
      << r.output;
}
