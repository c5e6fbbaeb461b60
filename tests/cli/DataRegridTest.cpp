// `seqvit data regrid` run as a user would: the file it writes (names, time axis, levels,
// constants, missing cells) read back and compared with the Regridder applied directly, the
// weights cache beside the data, progress on stderr, and errors for every bad flag.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "../data/nc_test_writer.h"
#include "cli/run_seqvit.h"
#include "data/netcdf_reader.h"
#include "data/regrid.h"

namespace fs = std::filesystem;
using namespace seqvit::data;

namespace {

seqvit_test::Result run(const std::string& args) { return seqvit_test::run_seqvit(args); }

class DataRegrid : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_regrid_cli_" + std::to_string(::getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_ / "data");
    // z (time, level, lat, lon) and t2m (time, lat, lon) with missing cells, south to north,
    // -180..180; lsm constant.
    lat_ = nctest::range(-88.5, 3, 60);
    lon_ = nctest::range(-180, 3, 120);
    nctest::Var z{"z", NC_FLOAT, {"time", "level", "lat", "lon"}, "m**2 s**-2"};
    z.raw = [&](const std::vector<size_t>& i) {
      return 5e4 + 300 * std::sin(lat_[i[2]] * 0.05) * std::cos(lon_[i[3]] * 0.03) + i[0] +
             50 * i[1] + (i[2] * 7 + i[3] * 13) % 5;
    };
    nctest::Var t2m{"t2m", NC_FLOAT, {"time", "lat", "lon"}, "K"};
    t2m.atts["_FillValue"] = {-9999};
    t2m.raw = [&](const std::vector<size_t>& i) {
      if (i[1] >= 20 && i[1] < 26 && i[2] >= 30 && i[2] < 50) return -9999.0;  // a hole
      return 280 + 20 * std::cos(lat_[i[1]] * 0.0174) + i[0] + (i[1] * 3 + i[2]) % 4;
    };
    nctest::Var lsm{"lsm", NC_FLOAT, {"lat", "lon"}, "1"};
    lsm.raw = [&](const std::vector<size_t>& i) { return (i[0] / 4 + i[1] / 4) % 2; };
    nctest::write((tmp_ / "data/era5.nc").string(), NC_CLOBBER | NC_NETCDF4,
                  {{"time", {0, 6, 12}, "hours since 2010-01-01"},
                   {"level", {500, 850}, "hPa"},
                   {"lat", lat_, "degrees_north"},
                   {"lon", lon_, "degrees_east"}},
                  {z, t2m, lsm});
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& p) const { return (tmp_ / p).string(); }
  fs::path tmp_;
  std::vector<double> lat_, lon_;
};

}  // namespace

TEST_F(DataRegrid, WritesEveryVariableRegridded) {
  const std::string out = path("out.nc");
  const auto r = run("data regrid --var z,t2m --var lsm " + path("data") +
                     " --grid 32x64 --out " + out);  // PATH after --var is a path
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("wrote " + out + ": 3 variable(s) on 32x64 (conservative, min valid "
                          "fraction 0.5), 3 time step(s), 10 fields"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("data regrid: done: 10/10 fields (100%)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("weights computed and cached in " + path("data")), std::string::npos);
  EXPECT_TRUE(fs::exists(path("data/seqvit_regrid_conservative_60x120_to_32x64.safetensors")));

  // One level alone is written without a level axis, under the name given.
  const std::string out500 = path("out500.nc");
  const auto r500 = run("data regrid " + path("data") + " --grid 32x64 --var z_500 --out " + out500);
  ASSERT_EQ(r500.status, 0) << r500.output;
  NetcdfDataset in({path("data/era5.nc")}), res({out}), res500({out500});
  EXPECT_EQ(res.variables(), (std::vector<std::string>{"z", "t2m", "lsm"}));
  EXPECT_EQ(res500.variables(), (std::vector<std::string>{"z_500"}));
  const LatLonGrid t = equiangular_grid(32, 64);
  EXPECT_EQ(res.variable("z").lat, t.lat);
  EXPECT_EQ(res.variable("z").lon, t.lon);
  EXPECT_EQ(res.variable("z").levels_hpa, (std::vector<double>{500, 850}));
  EXPECT_EQ(res.variable("z").times, in.variable("z").times);
  EXPECT_FALSE(res500.variable("z_500").has_level);
  EXPECT_FALSE(res.variable("lsm").has_time);
  EXPECT_EQ(res.variable("t2m").units, "K");
  Regridder rg(LatLonGrid{in.variable("z").lat, in.variable("z").lon}, t);
  std::vector<float> src(60 * 120), want(32 * 64), got(32 * 64);
  int64_t missing_t2m = 0;
  for (const auto& [in_name, out_name] :
       std::vector<std::pair<std::string, std::string>>{{"z_850", "z_850"}, {"z_500", "z_500"},
                                                        {"t2m", "t2m"}, {"lsm", "lsm"}})
    for (int64_t step = 0; step < (in_name == "lsm" ? 1 : 3); ++step) {
      in.read(in.resolve(in_name), step, src.data());
      const int64_t m = rg.apply(src.data(), want.data());
      const NetcdfDataset& file = in_name == "z_500" ? res500 : res;
      EXPECT_EQ(file.read(file.resolve(out_name), step, got.data()), m);
      for (size_t p = 0; p < got.size(); ++p)
        if (std::isnan(want[p]))
          EXPECT_TRUE(std::isnan(got[p]));
        else
          ASSERT_EQ(got[p], want[p]) << in_name << " step " << step << " cell " << p;
      if (in_name == "t2m") missing_t2m += m;
    }
  EXPECT_GT(missing_t2m, 0);  // the hole is larger than a target cell
  // The cache is read on the next run; bilinear has its own.
  const auto again = run("data regrid " + path("data") + " --grid 32x64 --var t2m --out " + out);
  EXPECT_NE(again.output.find("weights read from the cache"), std::string::npos) << again.output;
  const auto bil = run("data regrid " + path("data/era5.nc") +
                       " --grid 45x90 --var t2m --method bilinear --min-valid-fraction 0 --out " +
                       out + " --weights-cache " + path(""));
  ASSERT_EQ(bil.status, 0) << bil.output;
  EXPECT_TRUE(fs::exists(path("seqvit_regrid_bilinear_60x120_to_45x90.safetensors")));
  NetcdfDataset b({out});
  EXPECT_EQ(b.variable("t2m").H(), 45);
}

TEST_F(DataRegrid, BadFlagsAreNamed) {
  const std::string d = path("data"), o = " --out " + path("o.nc");
  auto err = [&](const std::string& args, const std::string& want) {
    const auto r = run("data regrid " + args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.output.find(want), std::string::npos) << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(path("o.nc"))) << args;
  };
  err(d + " --grid 32by64 --var z" + o, "grid '32by64' is not of the form HxW");
  err(d + " --grid 0x64 --var z" + o, "grid '0x64': H and W must be positive");
  err(d + " --grid 32x64 --var q" + o, "unknown variable 'q'");
  err(d + " --grid 32x64 --var z_300" + o, "variable 'z' has no level 300 hPa");
  err(d + " --grid 32x64 --var z,z" + o, "--var 'z' is given twice");
  err(d + " --grid 32x64 --var z,z_500" + o,
      "--var 'z' and --var 'z_500' both give the field z_500; write only one of them");
  err(d + " --grid 32x64 --var z --method nearest" + o,
      "unknown regridding method 'nearest'; use conservative or bilinear");
  err(d + " --grid 32x64 --var z --min-valid-fraction 2" + o,
      "--min-valid-fraction 2 must lie in [0, 1]");
  err(d + " --grid 32x64 --var z", "--out is required");
  err(d + " --var z" + o, "--grid is required");
}

// A time axis without an epoch (docs/data.md "Unusual files") cannot be written as real times.
TEST_F(DataRegrid, ATimeAxisWithoutAnEpochIsRefused) {
  nctest::Coord time{"time", {0, 1}, "days", ""};
  nctest::Coord lat{"lat", {45, -45}, "degrees_north", ""};
  nctest::Coord lon{"lon", {0, 180}, "degrees_east", ""};
  nctest::Var tp{"tp", NC_FLOAT, {"time", "lat", "lon"}, "m", {}, {}, [](auto&) { return 1.0; }};
  fs::create_directories(tmp_ / "days");
  nctest::write(path("days/tp.nc"), NC_CLOBBER, {time, lat, lon}, {tp});
  const auto r = run("data regrid " + path("days") + " --grid 2x2 --var tp --out " + path("o.nc"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--var 'tp': the time axis 'time' has units 'days' without an epoch"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("`ncatted -a units,time,o,c,'days since 1979-01-01' in.nc`"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(path("o.nc")));
}
