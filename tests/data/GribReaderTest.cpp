// The GRIB reader (data/grib_source.h) and the names table (data/names.h) on files written at
// test time by tests/data/grib_fixtures.py with ecCodes' Python module: every value there is
// f = 100 k + lat + lon / 10 + level (k the 6-hour step from 2000-01-01), packed with 24 bits,
// so each decoded value, the orientation and the times are checked by formula (to 1e-3, the
// packing precision being ~1e-4 here); the reduced Gaussian expansion is checked against numpy.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/check.h"
#include "data/cf_time.h"
#include "data/grib_fixture.h"
#include "data/grib_source.h"
#include "data/names.h"
#include "data/netcdf_reader.h"
#include "nc_test_writer.h"

using namespace seqvit;
using namespace seqvit::data;
namespace fs = std::filesystem;

namespace {

constexpr char kGribDir[] = "seqvit_grib_";
using GribReader = seqvit_test::GribFixtureTest<kGribDir>;

double f(double k, double lat, double lon, double lev = 0) {
  double x = std::fmod(lon, 360.0);
  if (x < 0) x += 360.0;
  return 100.0 * k + lat + x / 10.0 + lev;
}

double hours(const std::string& iso) { return parse_iso_datetime(iso) / 3600.0; }

// Every value of a field (all time steps) against f at the canonical coordinates; k of step t
// is (time - 2000-01-01) / 6 h, and 0 for a constant.
void expect_f(const GridSource& ds, const std::string& name, double lev = 0) {
  const auto ref = ds.resolve(name);
  const auto& v = ds.variable(ref.variable);
  std::vector<float> out(v.T() * v.H() * v.W());
  EXPECT_EQ(ds.read(ref, 0, v.T(), out.data()), 0);
  for (int64_t t = 0; t < v.T(); ++t) {
    const double k = v.has_time ? (v.times[t] - hours("2000-01-01")) / 6.0 : 0.0;
    for (int64_t i = 0; i < v.H(); ++i)
      for (int64_t j = 0; j < v.W(); ++j)
        ASSERT_NEAR(out[(t * v.H() + i) * v.W() + j], f(k, v.lat[i], v.lon[j], lev), 1e-3)
            << name << " t=" << t << " lat=" << v.lat[i] << " lon=" << v.lon[j];
  }
}

std::vector<double> read_f64(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<double> v(fs::file_size(p) / 8);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 8));
  return v;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_HAS(s, needle) EXPECT_NE((s).find(needle), std::string::npos) << (s)

}  // namespace

TEST_F(GribReader, ManyVariablesLevelsAndTimesAcrossGrib1And2) {
  GribDataset ds({path("multi.grib2"), path("multi.grib1")});
  EXPECT_EQ(ds.format(), "GRIB");
  EXPECT_EQ(ds.variables(), (std::vector<std::string>{"2t", "z", "z_surface", "lsm", "u"}));
  const auto& t2 = ds.variable("2t");
  EXPECT_EQ(t2.units, "K");
  EXPECT_EQ(t2.grib_type_of_level, "heightAboveGround");
  ASSERT_EQ(t2.T(), 3);  // written as steps 2, 0, 1
  EXPECT_EQ(iso8601(t2.times[0]), "2000-01-01T00:00:00Z");
  EXPECT_EQ(iso8601(t2.times[2]), "2000-01-01T12:00:00Z");
  EXPECT_EQ(t2.H(), 5);
  EXPECT_EQ(t2.W(), 8);
  EXPECT_EQ(t2.lat, (std::vector<double>{60, 30, 0, -30, -60}));
  EXPECT_EQ(t2.lon.back(), 315);
  EXPECT_FALSE(t2.lat_ascending_in_file);
  expect_f(ds, "2t");
  const auto& z = ds.variable("z");
  EXPECT_TRUE(z.has_level);
  EXPECT_EQ(z.levels_hpa, (std::vector<double>{500, 850}));  // written 850 first
  expect_f(ds, "z_500", 500);
  expect_f(ds, "z_850", 850);
  EXPECT_EQ(ds.resolve("z_850").level, 1);
  // A single time among variables with three: the constants (surface z and lsm).
  EXPECT_FALSE(ds.variable("z_surface").has_time);
  EXPECT_FALSE(ds.variable("lsm").has_time);
  EXPECT_EQ(ds.variable("z_surface").grib_short_name, "z");
  expect_f(ds, "z_surface");
  expect_f(ds, "lsm");
  // The GRIB 1 file: u on two levels at three times.
  EXPECT_EQ(ds.variable("u").T(), 3);
  expect_f(ds, "u_500", 500);
  expect_f(ds, "u_850", 850);
  // Levels in Pa join those in hPa.
  GribDataset pa({path("pascal.grib2")});
  EXPECT_EQ(pa.variables(), std::vector<std::string>{"z"});
  EXPECT_EQ(pa.variable("z").levels_hpa, (std::vector<double>{50, 500}));
  expect_f(pa, "z_50", 50);
  expect_f(pa, "z_500", 500);
  // The names table: ClimaX names find the GRIB variables.
  EXPECT_EQ(ds.resolve("t2m").variable, "2t");
  EXPECT_EQ(ds.resolve("orography").variable, "z_surface");
  EXPECT_EQ(ds.resolve("geopotential_500").variable, "z");
  EXPECT_EQ(ds.resolve("u_component_of_wind_850").level, 1);
  // A directory of GRIB files, through open_grid_source.
  const fs::path sub = dir_ / "sub";
  fs::create_directories(sub);
  fs::copy_file(path("multi.grib2"), sub / "a.grib2", fs::copy_options::overwrite_existing);
  fs::copy_file(path("multi.grib1"), sub / "b.bin", fs::copy_options::overwrite_existing);
  const auto src = open_grid_source({sub.string()});
  EXPECT_EQ(src->format(), "GRIB");
  EXPECT_EQ(src->files().size(), 2u);  // b.bin by its "GRIB" bytes
  EXPECT_TRUE(src->has("u"));
}

TEST_F(GribReader, ScanningModesAndLongitudesFromMinus180) {
  GribDataset sn({path("south_north.grib2")});
  EXPECT_TRUE(sn.variable("2t").lat_ascending_in_file);
  EXPECT_EQ(sn.variable("2t").lat.front(), 60);
  expect_f(sn, "2t");
  GribDataset ew({path("east_west.grib2")});
  EXPECT_EQ(ew.variable("2t").lon_in_file.front(), 315);
  EXPECT_EQ(ew.variable("2t").lon.front(), 0);
  expect_f(ew, "2t");
  GribDataset w180({path("west180.grib1")});
  const auto& v = w180.variable("2t");
  EXPECT_EQ(v.lon_in_file.front(), -180);
  EXPECT_EQ(v.lon.front(), 0);
  EXPECT_EQ(v.lon.back(), 315);
  expect_f(w180, "2t");
  GribDataset columns({path("columns.grib2")});  // jPointsAreConsecutive: column after column
  EXPECT_EQ(columns.variable("2t").lat.front(), 60);
  expect_f(columns, "2t");
}

TEST_F(GribReader, RegularGaussianKeepsItsLatitudes) {
  GribDataset ds({path("gauss.grib2")});
  const auto& t = ds.variable("t");
  EXPECT_EQ(t.H(), 64);
  EXPECT_EQ(t.W(), 128);
  const auto lat = read_f64(path("gauss_lat.f64"));  // ecCodes' own, north to south
  ASSERT_EQ(lat.size(), 64u);
  for (size_t i = 0; i < lat.size(); ++i) EXPECT_NEAR(t.lat[i], lat[i], 1e-9) << i;
  EXPECT_NEAR(t.lat[0], 87.8638, 1e-4);
  expect_f(ds, "t_500", 500);
}

TEST_F(GribReader, ReducedGaussianIsExpandedLinearlyInLongitudeWithWrap) {
  GribDataset ds({path("reduced.grib2")});
  const auto& t = ds.variable("t");
  ASSERT_EQ(t.H(), 64);
  ASSERT_EQ(t.W(), 128);  // 4 N
  EXPECT_EQ(t.lon[1], 360.0 / 128);
  const auto lat = read_f64(path("gauss_lat.f64"));
  for (size_t i = 0; i < lat.size(); ++i) EXPECT_NEAR(t.lat[i], lat[i], 1e-9) << i;
  const auto ref = read_f64(path("reduced_expected.f64"));  // numpy: np.interp(period=360)
  ASSERT_EQ(ref.size(), 64u * 128u);
  std::vector<float> out(64 * 128);
  EXPECT_EQ(ds.read(ds.resolve("t_850"), 0, out.data()), 0);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(out[i] - ref[i]));
  EXPECT_LT(worst, 1e-3);
  // The wrap: the first row has 20 points (every 18 degrees), so 351.5625 lies between 342 and
  // 0 (= 360): f there is lat + 34.2 and lat + 0, interpolated linearly.
  const double w = (351.5625 - 342.0) / 18.0, lat0 = t.lat[0];
  EXPECT_NEAR(out[125], (1 - w) * (lat0 + 34.2 + 850) + w * (lat0 + 850), 1e-3);
}

TEST_F(GribReader, BitmapPointsAreNaNAndCounted) {
  for (const char* name : {"bitmap.grib2", "bitmap.grib1"}) {
    GribDataset ds({path(name)});
    std::vector<float> out(40);
    int64_t expected = 0;
    for (int i = 0; i < 40; ++i) expected += i % 7 == 3;
    EXPECT_EQ(ds.read(ds.resolve("2t"), 0, out.data()), expected) << name;
    const auto& v = ds.variable("2t");
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 8; ++j) {
        const float x = out[i * 8 + j];
        if ((i * 8 + j) % 7 == 3)
          EXPECT_TRUE(std::isnan(x)) << name << " " << i << "," << j;
        else
          EXPECT_NEAR(x, f(0, v.lat[i], v.lon[j]), 1e-3) << name << " " << i << "," << j;
      }
  }
}

// Every entry of the names table resolves, by its own name and by ClimaX's, in each naming
// style: GRIB shortNames, ERA5 NetCDF short names, WeatherBench2 long names.
TEST_F(GribReader, EveryNameOfTheTableResolvesInEachStyle) {
  GribDataset grib({path("names.grib2")});
  // ERA5 NetCDF: single levels (surface geopotential is `z` there) and pressure levels apart.
  nctest::Coord time{"time", {0, 6}, "hours since 2000-01-01 00:00:00", ""};
  nctest::Coord lat{"latitude", {60, 0, -60}, "degrees_north", ""};
  nctest::Coord lon{"longitude", {0, 120, 240}, "degrees_east", ""};
  nctest::Coord level{"level", {500, 850}, "millibars", ""};
  auto var = [](const std::string& n, bool levels) {
    nctest::Var v{n, NC_FLOAT, {}, "1", {}, {}, [](const std::vector<size_t>&) { return 1.0; }};
    v.dims = levels ? std::vector<std::string>{"time", "level", "latitude", "longitude"}
                    : std::vector<std::string>{"time", "latitude", "longitude"};
    return v;
  };
  std::vector<nctest::Var> era5_single, era5_pl, wb2;
  for (const auto& e : names_table()) {
    (e.pressure ? era5_pl : era5_single).push_back(var(e.era5, e.pressure));
    wb2.push_back(var(e.weatherbench2, e.pressure));
  }
  nctest::write(path("era5_single.nc"), NC_CLOBBER, {time, lat, lon}, era5_single);
  nctest::write(path("era5_pl.nc"), NC_CLOBBER, {time, level, lat, lon}, era5_pl);
  nctest::write(path("wb2.nc"), NC_CLOBBER | NC_NETCDF4, {time, level, lat, lon}, wb2);
  NetcdfDataset single({path("era5_single.nc")}), pl({path("era5_pl.nc")}), wb({path("wb2.nc")});
  for (const auto& e : names_table()) {
    const NetcdfDataset& era5 = e.pressure ? pl : single;
    const std::string grib_var = std::string(e.name) == "orography" ? "z_surface" : e.grib;
    for (std::string asked : {std::string(e.name), std::string(e.climax)}) {
      if (e.pressure) asked += "_500";
      SCOPED_TRACE(asked);
      const std::pair<const GridSource*, std::string> cases[] = {
          {&grib, grib_var}, {&era5, e.era5}, {&wb, e.weatherbench2}};
      for (const auto& [src, expected] : cases) {
        FieldRef r;
        ASSERT_NO_THROW(r = src->resolve(asked)) << src->format() << " " << expected;
        EXPECT_EQ(r.variable, expected) << src->format();
        EXPECT_EQ(r.name, asked);
        EXPECT_EQ(r.level, e.pressure ? 0 : -1);
      }
    }
  }
  // The GRIB values come through the table too: 2t at step 1 at (60 N, 0 E).
  std::vector<float> out(40);
  grib.read(grib.resolve("2m_temperature"), 1, out.data());
  EXPECT_NEAR(out[0], f(1, 60, 0), 1e-3);
  grib.read(grib.resolve("temperature_850"), 0, out.data());
  EXPECT_NEAR(out[0], f(0, 60, 0, 850), 1e-3);
  // A level the variable lacks, asked by a table name: the levels it has.
  EXPECT_HAS(error_of([&] { wb.resolve("z_700"); }), "available levels (hPa): 500, 850");
  EXPECT_HAS(error_of([&] { wb.resolve("z_700"); }), "'geopotential'");
  // WeatherBench 1: one level per file, the variable registered as z_500 (NetcdfReaderTest
  // covers the scalar level coordinate behind that); the table finds it by ClimaX's name.
  nctest::write(path("wb1.nc"), NC_CLOBBER, {time, lat, lon}, {var("z_500", false)});
  NetcdfDataset wb1({path("wb1.nc")});
  EXPECT_EQ(wb1.resolve("geopotential_500").variable, "z_500");
  EXPECT_EQ(wb1.resolve("geopotential_500").level, -1);
}

TEST_F(GribReader, ANameThatResolvesTwoWaysIsAnErrorNamingBoth) {
  nctest::Coord time{"time", {0, 6}, "hours since 2000-01-01 00:00:00", ""};
  nctest::Coord lat{"latitude", {60, 0, -60}, "degrees_north", ""};
  nctest::Coord lon{"longitude", {0, 120, 240}, "degrees_east", ""};
  auto var = [](const std::string& n) {
    return nctest::Var{n,
                       NC_FLOAT,
                       {"time", "latitude", "longitude"},
                       "K",
                       {},
                       {},
                       [](const std::vector<size_t>&) { return 1.0; }};
  };
  nctest::write(path("both.nc"), NC_CLOBBER, {time, lat, lon},
                {var("t2m"), var("2m_temperature"), var("lsm")});
  NetcdfDataset ds({path("both.nc")});
  for (const char* asked : {"t2m", "2m_temperature", "2t"}) {
    const auto e = error_of([&] { ds.resolve(asked); });
    EXPECT_HAS(e, "resolves two ways");
    EXPECT_HAS(e, "'t2m'");
    EXPECT_HAS(e, "'2m_temperature'");
  }
  EXPECT_EQ(ds.resolve("land_sea_mask").variable, "lsm");  // one way: fine
}

TEST_F(GribReader, BadInputsAreOneClearError) {
  // The asked variable is not there: what the file holds.
  GribDataset multi({path("multi.grib2")});
  auto e = error_of([&] { multi.resolve("q_500"); });
  EXPECT_HAS(e, "unknown variable 'q_500'");
  EXPECT_HAS(e, "2t, z, z_surface, lsm");
  EXPECT_HAS(e, "multi.grib2");
  // Unsupported grids name their gridType, alone or beside readable variables.
  e = error_of([&] { GribDataset({path("polar_stereographic_sfc_grib2.grib2")}); });
  EXPECT_HAS(e, "gridType 'polar_stereographic'");
  EXPECT_HAS(e, "supported: regular_ll, regular_gg, reduced_gg");
  e = error_of([&] { GribDataset({path("sh_sfc_grib2.grib2")}); });
  EXPECT_HAS(e, "gridType 'sh'");
  GribDataset mixed({path("multi.grib2"), path("sh_sfc_grib2.grib2")});
  e = error_of([&] { mixed.resolve("t"); });
  EXPECT_HAS(e, "gridType 'sh'");
  EXPECT_HAS(e, "sh_sfc_grib2.grib2");
  // A truncated file: the file and where its last message starts.
  fs::copy_file(path("multi.grib2"), path("cut.grib2"), fs::copy_options::overwrite_existing);
  fs::resize_file(path("cut.grib2"), 700);  // messages are 299 bytes: the third is cut
  e = error_of([&] { GribDataset({path("cut.grib2")}); });
  EXPECT_HAS(e, "cut.grib2: the GRIB message after byte 598 cannot be read");
  // A corrupt message (its end marker overwritten): the file and where the message starts.
  {
    std::ifstream in(path("multi.grib2"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(bytes.substr(295, 4), "7777");
    bytes.replace(295, 4, "XXXX");
    std::ofstream(path("corrupt.grib2"), std::ios::binary) << bytes;
  }
  e = error_of([&] { GribDataset({path("corrupt.grib2")}); });
  EXPECT_HAS(e,
             "corrupt.grib2: the GRIB message after byte 0 cannot be read: Wrong message length");
  // Messages of one variable on two grids: both named.
  e = error_of([&] { GribDataset({path("inconsistent.grib2")}); });
  EXPECT_HAS(e, "must share one grid");
  EXPECT_HAS(e, "inconsistent.grib2, message at byte 0");
  EXPECT_HAS(e, "inconsistent.grib2, message at byte 299");
  EXPECT_HAS(e, "regular_ll 8x3");
  // The same time twice: both messages.
  e = error_of([&] { GribDataset({path("duplicate.grib2")}); });
  EXPECT_HAS(e, "both hold the time 2000-01-01T06:00:00Z");
  EXPECT_HAS(e, "message at byte 299");
  EXPECT_HAS(e, "message at byte 598");
  // A gap in time, as the NetCDF reader reports it.
  e = error_of([&] { GribDataset({path("gap.grib2")}); });
  EXPECT_HAS(e, "time step 2000-01-01T12:00:00Z is missing");
  // A level missing at one time.
  e = error_of([&] { GribDataset({path("levels_missing.grib2")}); });
  EXPECT_HAS(e, "no message for 850 hPa at 2000-01-01T06:00:00Z");
  // Not GRIB at all, though named so; and GRIB mixed with NetCDF.
  std::ofstream(path("text.grib")) << "no messages in here\n";
  e = error_of([&] { GribDataset({path("text.grib")}); });
  EXPECT_HAS(e, "text.grib: the file holds no GRIB message");
  nctest::write(
      path("one.nc"), NC_CLOBBER,
      {{"latitude", {0}, "degrees_north", ""}, {"longitude", {0}, "degrees_east", ""}},
      {{"lsm", NC_FLOAT, {"latitude", "longitude"}, "1", {}, {}, [](const std::vector<size_t>&) {
          return 1.0;
        }}});
  e = error_of([&] { open_grid_source({path("multi.grib2"), path("one.nc")}); });
  EXPECT_HAS(e, "mix formats");
  EXPECT_HAS(e, "multi.grib2 is GRIB");
  EXPECT_HAS(e, "one.nc");
  EXPECT_EQ(open_grid_source({path("one.nc")})->format(), "NetCDF");
  e = error_of([&] { GribDataset({path("absent.grib2")}); });
  EXPECT_HAS(e, "absent.grib2: no such file");
}
