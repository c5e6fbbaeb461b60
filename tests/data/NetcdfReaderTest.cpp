// The CF NetCDF reader on files written here in every convention real ERA5/WeatherBench files
// use. Each value encodes its coordinates, f = 100 k + lat + lon/1000 (+ level), with k the time
// step, so every decoded value, the north-to-south flip and the longitude roll are checked
// exactly; bad input must give one clear seqvit::Error naming the file/variable.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "error_of.h"
#include "data/cf_grid.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "data/netcdf_reader.h"
#include "nc_test_writer.h"

using namespace seqvit;
using namespace seqvit::data;
namespace fs = std::filesystem;
using nctest::Coord;
using nctest::Var;

namespace {

class NetcdfReader : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("seqvit_nc_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& n) const { return (tmp_ / n).string(); }
  fs::path tmp_;
};

double f(double k, double lat, double lon, double lev = 0) {
  return 100.0 * k + lat + nctest::wrap360(lon) / 1000.0 + lev;
}

// A (time, lat, lon) float variable with f values; times are k * 6 hours after `t0` in `units`.
Var field(const std::string& name, const Coord& lat, const Coord& lon, double k0 = 0) {
  Var v{name, NC_FLOAT, {"time", lat.name, lon.name}, "K", {}, {}, nullptr};
  v.raw = [lat, lon, k0](const std::vector<size_t>& i) {
    return static_cast<double>(
        static_cast<float>(f(k0 + i[0], lat.values[i[1]], lon.values[i[2]])));
  };
  return v;
}

Coord lat32() { return {"latitude", nctest::range(87.1875, -5.625, 32), "degrees_north", ""}; }
Coord lon64() { return {"longitude", nctest::range(0, 5.625, 64), "degrees_east", ""}; }
Coord time6h(int n, double first = 0) {
  return {"time", nctest::range(first, 6, n), "hours since 1979-01-01 00:00:00", "gregorian"};
}

// Checks every decoded value of a (time, lat, lon) f-field against the canonical coordinates.
void expect_f(const NetcdfDataset& ds, const std::string& name, double lev = 0,
              const std::string& var = "") {
  const auto ref = ds.resolve(name);
  const auto& v = ds.variable(ref.variable);
  std::vector<float> out(v.H() * v.W());
  for (int64_t t = 0; t < v.T(); ++t) {
    EXPECT_EQ(ds.read(ref, t, out.data()), 0);
    for (int64_t i = 0; i < v.H(); ++i)
      for (int64_t j = 0; j < v.W(); ++j)
        ASSERT_EQ(out[i * v.W() + j], static_cast<float>(f(t, v.lat[i], v.lon[j], lev)))
            << name << " t=" << t << " lat=" << v.lat[i] << " lon=" << v.lon[j];
  }
}

using seqvit_test::error_of;

}  // namespace

TEST(CfTime, ParsesUnitsAndEpochs) {
  EXPECT_DOUBLE_EQ(parse_cf_time_units("hours since 1970-01-01 00:00:00").to_hours(6), 6);
  const double h1979 = parse_cf_time_units("days since 1979-1-1").to_hours(0);
  EXPECT_DOUBLE_EQ(h1979, 3287 * 24.0);  // 9 years with 2 leap days
  EXPECT_DOUBLE_EQ(parse_cf_time_units("hours since 1900-01-01 00:00:00.0").to_hours(692496),
                   h1979);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("minutes since 2000-01-01T00:00:00Z").to_hours(90),
                   parse_iso_datetime("2000-01-01 01:30") / 3600.0);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("seconds since 1970-01-01 00:00:00 UTC").to_hours(7200), 2);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("nanoseconds since 1970-01-01").to_hours(5.4e12), 1.5);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("milliseconds since 1970-01-01").to_hours(3.6e6), 1);
  EXPECT_EQ(iso8601(h1979 + 18), "1979-01-01T18:00:00Z");
  EXPECT_EQ(iso8601(parse_iso_datetime("2000-02-29T23:59:59Z") / 3600.0), "2000-02-29T23:59:59Z");
  EXPECT_EQ(iso8601(parse_iso_datetime("1850-03-01") / 3600.0), "1850-03-01T00:00:00Z");
  EXPECT_EQ(iso8601(parse_iso_datetime("2000-01-01T02:00:00+02:00") / 3600.0),
            "2000-01-01T00:00:00Z");
  EXPECT_HAS(error_of([] { parse_cf_time_units("fortnights since 2000-01-01"); }), "fortnights");
  EXPECT_HAS(error_of([] { parse_cf_time_units("hours"); }), "UNITS since DATE");
  EXPECT_HAS(error_of([] { parse_cf_time_units("hours since 2000-13-01"); }), "2000-13-01");
}

TEST_F(NetcdfReader, EveryFileFormatDecodesTheSameValues) {
  const std::pair<const char*, int> formats[] = {{"classic.nc", NC_CLOBBER},
                                                 {"offset64.nc", NC_CLOBBER | NC_64BIT_OFFSET},
                                                 {"netcdf4.nc", NC_CLOBBER | NC_NETCDF4}};
  for (const auto& [name, mode] : formats) {
    Coord time = time6h(3);
    time.unlimited = true;  // ERA5's time is a record dimension
    nctest::write(path(name), mode, {time, lat32(), lon64()}, {field("t2m", lat32(), lon64())});
    NetcdfDataset ds({path(name)});
    ASSERT_EQ(ds.variables(), std::vector<std::string>{"t2m"});
    const auto& v = ds.variable("t2m");
    EXPECT_EQ(v.units, "K");
    EXPECT_EQ(v.T(), 3);
    EXPECT_EQ(v.H(), 32);
    EXPECT_EQ(v.W(), 64);
    EXPECT_FALSE(v.lat_ascending_in_file);
    EXPECT_DOUBLE_EQ(v.lat.front(), 87.1875);
    EXPECT_EQ(iso8601(v.times[0]), "1979-01-01T00:00:00Z");
    EXPECT_EQ(iso8601(v.times[2]), "1979-01-01T12:00:00Z");
    expect_f(ds, "t2m");
  }
}

TEST_F(NetcdfReader, PackedShortsCompareTheFillOnTheRawValue) {
  const double scale = 0.01, offset = 250.0;
  const short fill = -32767;
  Var v{"t2m",
        NC_SHORT,
        {"time", "latitude", "longitude"},
        "K",
        {{"_FillValue", {double(fill)}}, {"missing_value", {double(fill)}}},
        {{"scale_factor", {scale}}, {"add_offset", {offset}}},
        nullptr};
  // raw = k*1000 + i*10 + j, with every 7th value the fill.
  v.raw = [&](const std::vector<size_t>& i) {
    const size_t e = (i[0] * 32 + i[1]) * 64 + i[2];
    return e % 7 == 3 ? double(fill) : double(i[0] * 1000 + i[1] * 10 + i[2]) - 3000;
  };
  nctest::write(path("packed.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()}, {v});
  NetcdfDataset ds({path("packed.nc")});
  std::vector<float> out(32 * 64);
  for (int t = 0; t < 2; ++t) {
    int64_t expected_missing = 0;
    for (size_t e = t * 2048; e < (t + 1) * 2048u; ++e) expected_missing += e % 7 == 3;
    EXPECT_EQ(ds.read(ds.resolve("t2m"), t, out.data()), expected_missing);
    for (size_t i = 0; i < 32; ++i)
      for (size_t j = 0; j < 64; ++j) {
        const double raw = v.raw({size_t(t), i, j});
        const float got = out[i * 64 + j];
        if (raw == fill)
          EXPECT_TRUE(std::isnan(got));
        else
          ASSERT_EQ(got, static_cast<float>(raw * scale + offset));
      }
  }
}

TEST_F(NetcdfReader, PackedBytesAndInts) {
  // Signed bytes with a fill, NetCDF-3 unsigned bytes (_Unsigned = "true") and packed ints.
  Var b{"tcc",
        NC_BYTE,
        {"time", "latitude", "longitude"},
        "1",
        {{"_FillValue", {-128}}},
        {{"scale_factor", {1.0 / 100}}, {"add_offset", {0.5}}},
        nullptr};
  b.raw = [](const std::vector<size_t>& i) {
    return i[2] == 0 ? -128.0 : double(int(i[1] + i[2]) - 50);
  };
  Var u{"lsm_u8",
        NC_BYTE,
        {"time", "latitude", "longitude"},
        "1",
        {{"_FillValue", {-1}}},
        {{"scale_factor", {1.0 / 254}}},
        nullptr};  // fill 255 as an unsigned byte
  u.raw = [](const std::vector<size_t>& i) {
    return i[2] == 1 ? -1.0 : double(int(i[1] * 2 + i[2]) - 128);
  };
  Var n{"tp",
        NC_INT,
        {"time", "latitude", "longitude"},
        "m",
        {{"missing_value", {-2147483647}}},
        {{"scale_factor", {1e-7}}, {"add_offset", {0.01}}},
        nullptr};
  n.raw = [](const std::vector<size_t>& i) {
    return i[2] == 2 ? -2147483647.0 : double(i[0] * 1000000 + i[1] * 1000 + i[2]);
  };
  nctest::write(path("bytes.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()}, {b, u, n});
  // _Unsigned is text; add it after the fact.
  int nc, id;
  nctest::ok(nc_open(path("bytes.nc").c_str(), NC_WRITE, &nc), "open");
  nctest::ok(nc_redef(nc), "redef");
  nctest::ok(nc_inq_varid(nc, "lsm_u8", &id), "varid");
  nctest::ok(nc_put_att_text(nc, id, "_Unsigned", 4, "true"), "att");
  nctest::ok(nc_close(nc), "close");
  NetcdfDataset ds({path("bytes.nc")});
  std::vector<float> out(32 * 64);
  for (const auto& [var, miss_col] : {std::pair{&b, 0}, {&u, 1}, {&n, 2}}) {
    const bool is_u = var == &u;
    EXPECT_EQ(ds.read(ds.resolve(var->name), 1, out.data()), 32) << var->name;
    for (size_t i = 0; i < 32; ++i)
      for (size_t j = 0; j < 64; ++j) {
        double raw = var->raw({1, i, j});
        if (is_u && raw < 0) raw += 256;
        const double scale = var->double_atts.at("scale_factor")[0];
        const double off =
            var->double_atts.count("add_offset") ? var->double_atts.at("add_offset")[0] : 0.0;
        if (int(j) == miss_col)
          ASSERT_TRUE(std::isnan(out[i * 64 + j])) << var->name;
        else
          ASSERT_EQ(out[i * 64 + j], static_cast<float>(raw * scale + off))
              << var->name << i << "," << j;
      }
  }
}

TEST_F(NetcdfReader, FillValueAndMissingValueFloatsBecomeNaN) {
  Var v = field("sst", lat32(), lon64());
  v.atts = {{"_FillValue", {-9999.0}}};
  v.double_atts = {{"missing_value", {1e20}}};  // a double attribute on float data
  auto base = v.raw;
  v.raw = [base](const std::vector<size_t>& i) {
    if (i[1] == 0 && i[2] < 5) return -9999.0;               // 5 fills
    if (i[1] == 31 && i[2] < 3) return double(float(1e20));  // 3 missing
    return base(i);
  };
  nctest::write(path("miss.nc"), NC_CLOBBER | NC_NETCDF4, {time6h(2), lat32(), lon64()}, {v});
  NetcdfDataset ds({path("miss.nc")});
  std::vector<float> out(32 * 64);
  EXPECT_EQ(ds.read(ds.resolve("sst"), 1, out.data()), 8);
  EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[4]) && std::isnan(out[31 * 64 + 2]));
  EXPECT_EQ(out[5], static_cast<float>(f(1, 87.1875, 5 * 5.625)));
}

TEST_F(NetcdfReader, AscendingLatitudeIsFlippedNorthToSouth) {
  Coord lat{"lat", nctest::range(-87.1875, 5.625, 32), "degrees_north", ""};
  Coord lon{"lon", lon64().values, "degrees_east", ""};
  nctest::write(path("asc.nc"), NC_CLOBBER, {time6h(2), lat, lon}, {field("t2m", lat, lon)});
  NetcdfDataset ds({path("asc.nc")});
  const auto& v = ds.variable("t2m");
  EXPECT_TRUE(v.lat_ascending_in_file);
  EXPECT_DOUBLE_EQ(v.lat.front(), 87.1875);
  EXPECT_DOUBLE_EQ(v.lat.back(), -87.1875);
  expect_f(ds, "t2m");
}

TEST_F(NetcdfReader, LongitudeIsRolledOntoZeroTo360) {
  for (double first : {-180.0, 22.5, -5.625}) {  // -180..174, 22.5..376.9, -5.6..348.8
    Coord lon{"longitude", nctest::range(first, 5.625, 64), "degrees_east", ""};
    nctest::write(path("lon.nc"), NC_CLOBBER, {time6h(2), lat32(), lon},
                  {field("u10", lat32(), lon)});
    NetcdfDataset ds({path("lon.nc")});
    const auto& v = ds.variable("u10");
    ASSERT_EQ(v.W(), 64);
    for (int j = 0; j < 64; ++j) ASSERT_DOUBLE_EQ(v.lon[j], 5.625 * j) << first;
    EXPECT_DOUBLE_EQ(v.lon_in_file.front(), first);
    expect_f(ds, "u10");
  }
}

TEST_F(NetcdfReader, GaussianLatitudesAreKeptAsGiven) {
  const std::vector<double> g{80.2688, 52.5657, 24.8056, -2.9502, -30.7, -58.4, -86.1};
  Coord lat{"lat", g, "degrees_north", ""};
  Coord lon{"lon", nctest::range(0, 30, 12), "degrees_east", ""};
  nctest::write(path("gauss.nc"), NC_CLOBBER, {time6h(2), lat, lon}, {field("t", lat, lon)});
  NetcdfDataset ds({path("gauss.nc")});
  EXPECT_EQ(ds.variable("t").lat, g);
  expect_f(ds, "t");
}

TEST_F(NetcdfReader, TimeUnitsAndEpochsGiveOneTimeline) {
  const std::pair<const char*, Coord> variants[] = {
      {"min.nc", {"time", {0, 360}, "minutes since 2000-01-01T00:00:00Z", ""}},
      {"days.nc", {"valid_time", {7670, 7670.25}, "days since 1979-1-1", "proleptic_gregorian"}},
      {"hours.nc", {"time", {876576, 876582}, "hours since 1900-01-01 00:00:00", "standard"}},
  };
  for (const auto& [name, t] : variants) {
    Var v = field("t2m", lat32(), lon64());
    v.dims[0] = t.name;
    nctest::write(path(name), NC_CLOBBER | NC_NETCDF4, {t, lat32(), lon64()}, {v});
    NetcdfDataset ds({path(name)});
    EXPECT_EQ(iso8601(ds.variable("t2m").times[0]), "2000-01-01T00:00:00Z") << name;
    EXPECT_EQ(iso8601(ds.variable("t2m").times[1]), "2000-01-01T06:00:00Z") << name;
  }
}

TEST_F(NetcdfReader, LevelsInHpaOrPaAreSelectedInHpa) {
  for (const auto& [name, lev] :
       {std::pair<std::string, Coord>{"hpa.nc", {"level", {250, 500, 850}, "millibars", ""}},
        {"pa.nc", {"plev", {25000, 50000, 85000}, "Pa", ""}},
        {"nounits.nc", {"isobaricInhPa", {25000, 50000, 85000}, "", ""}}}) {
    Var z{"z", NC_FLOAT, {"time", lev.name, "latitude", "longitude"}, "m**2 s**-2", {},
          {},  nullptr};
    const auto la = lat32(), lo = lon64();
    z.raw = [&](const std::vector<size_t>& i) {
      const double hpa = std::vector<double>{250, 500, 850}[i[1]];
      return double(float(f(i[0], la.values[i[2]], lo.values[i[3]], hpa)));
    };
    nctest::write(path(name), NC_CLOBBER, {time6h(2), lev, la, lo}, {z});
    NetcdfDataset ds({path(name)});
    EXPECT_EQ(ds.variable("z").levels_hpa, (std::vector<double>{250, 500, 850})) << name;
    EXPECT_EQ(ds.resolve("z_500").level, 1);
    expect_f(ds, "z_500", 500);
    expect_f(ds, "z_850", 850);
    EXPECT_EQ(ds.fields().size(), 3u);
    EXPECT_EQ(ds.fields()[2].name, "z_850");
    const auto e = error_of([&] { ds.resolve("z_700"); });
    EXPECT_HAS(e, "no level 700 hPa");
    EXPECT_HAS(e, "250, 500, 850");
    EXPECT_HAS(error_of([&] { ds.resolve("z"); }), "z_250");
  }
}

TEST_F(NetcdfReader, OneLevelPerFileWithAScalarLevelCoordinate) {
  // WeatherBench: geopotential_500_*.nc holds z (time, lat, lon) and a scalar level = 500.
  for (const auto& [hpa, units] : {std::pair{500.0, "hPa"}, {85000.0, "Pa"}}) {
    const std::string name = fmt::format("z{}.nc", hpa);
    nctest::write(path(name), NC_CLOBBER, {time6h(2), lat32(), lon64()},
                  {field("z", lat32(), lon64())});
    int nc, id;
    nctest::ok(nc_open(path(name).c_str(), NC_WRITE, &nc), "open");
    nctest::ok(nc_redef(nc), "redef");
    nctest::ok(nc_def_var(nc, "level", NC_DOUBLE, 0, nullptr, &id), "def");
    nctest::ok(nc_put_att_text(nc, id, "units", std::string(units).size(), units), "att");
    nctest::ok(nc_enddef(nc), "enddef");
    nctest::ok(nc_put_var_double(nc, id, &hpa), "put");
    nctest::ok(nc_close(nc), "close");
  }
  NetcdfDataset ds({path("z500.nc"), path("z85000.nc")});
  EXPECT_EQ(ds.variables(), (std::vector<std::string>{"z_500", "z_850"}));
  expect_f(ds, "z_500");
  expect_f(ds, "z_850");
}

TEST_F(NetcdfReader, SeveralVariablesAndAConstantInOneFile) {
  Var lsm{"lsm", NC_BYTE, {"latitude", "longitude"}, "1", {}, {}, nullptr};
  lsm.raw = [](const std::vector<size_t>& i) { return double((i[0] + i[1]) % 2); };
  nctest::write(path("multi.nc"), NC_CLOBBER | NC_64BIT_OFFSET, {time6h(2), lat32(), lon64()},
                {field("t2m", lat32(), lon64()), field("u10", lat32(), lon64()), lsm});
  NetcdfDataset ds({path("multi.nc")});
  EXPECT_EQ(ds.variables(), (std::vector<std::string>{"t2m", "u10", "lsm"}));
  expect_f(ds, "t2m");
  expect_f(ds, "u10");
  const auto& c = ds.variable("lsm");
  EXPECT_FALSE(c.has_time);
  EXPECT_EQ(c.T(), 1);
  std::vector<float> out(32 * 64);
  EXPECT_EQ(ds.read(ds.resolve("lsm"), 0, out.data()), 0);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[65], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
}

TEST_F(NetcdfReader, ADatasetOverThreeYearlyFilesIsConcatenatedInTimeOrder) {
  // One file per year, 6-hourly: the end of 1979, all of 1980 (1464 steps) and the start of
  // 1981, each with its own epoch, time unit and file format, named so that a directory listing
  // sorts them but given in reverse order too. Small grid: 4 x 8.
  Coord lat{"latitude", {67.5, 22.5, -22.5, -67.5}, "degrees_north", ""};
  Coord lon{"longitude", nctest::range(-180, 45, 8), "degrees_east", ""};
  const double h1980 = 365 * 24;  // hours from 1979-01-01 to 1980-01-01
  Coord t79{"time", {h1980 / 24 - 0.5, h1980 / 24 - 0.25}, "days since 1979-01-01", ""};
  Coord t80{"time", nctest::range(0, 360, 1464), "minutes since 1980-01-01T00:00:00Z", ""};
  Coord t81{"valid_time", {0, 6}, "hours since 1981-1-1 00:00:00", "gregorian"};
  Var v81 = field("t2m", lat, lon, 2 + 1464);
  v81.dims[0] = "valid_time";
  nctest::write(path("t2m_1981.nc"), NC_CLOBBER, {t81, lat, lon}, {v81});
  nctest::write(path("t2m_1979.nc"), NC_CLOBBER | NC_64BIT_OFFSET, {t79, lat, lon},
                {field("t2m", lat, lon)});
  nctest::write(path("t2m_1980.nc"), NC_CLOBBER | NC_NETCDF4, {t80, lat, lon},
                {field("t2m", lat, lon, 2)});
  NetcdfDataset ds({tmp_.string()});  // a directory: its *.nc files, sorted
  EXPECT_EQ(ds.files().size(), 3u);
  const auto& v = ds.nc_variable("t2m");
  ASSERT_EQ(v.T(), 1468);
  ASSERT_EQ(v.segments.size(), 3u);
  EXPECT_EQ(v.segments[1].t0, 2);
  EXPECT_EQ(v.segments[2].t0, 1466);
  EXPECT_EQ(iso8601(v.times.front()), "1979-12-31T12:00:00Z");
  EXPECT_EQ(iso8601(v.times[2]), "1980-01-01T00:00:00Z");
  EXPECT_EQ(iso8601(v.times.back()), "1981-01-01T06:00:00Z");
  for (size_t t = 1; t < v.times.size(); ++t) ASSERT_DOUBLE_EQ(v.times[t] - v.times[t - 1], 6.0);
  expect_f(ds, "t2m");
  NetcdfDataset rev({path("t2m_1981.nc"), path("t2m_1980.nc"), path("t2m_1979.nc")});
  expect_f(rev, "t2m");
  // A range across both file boundaries equals the steps read one by one.
  std::vector<float> range(1468 * 32), one(32);
  const auto ref = rev.resolve("t2m");
  EXPECT_EQ(rev.read(ref, 0, 1468, range.data()), 0);
  for (int64_t t : {0, 1, 2, 1465, 1466, 1467}) {
    rev.read(ref, t, one.data());
    for (int k = 0; k < 32; ++k) ASSERT_EQ(range[t * 32 + k], one[k]);
  }
  EXPECT_HAS(error_of([&] { rev.read(ref, 1460, 10, range.data()); }), "out of range");
}

TEST_F(NetcdfReader, FilesOfOneVariableMayStoreTheGridDifferently) {
  Coord lat_asc{"lat", nctest::range(-87.1875, 5.625, 32), "degrees_north", ""};
  Coord lon_pm{"lon", nctest::range(-180, 5.625, 64), "degrees_east", ""};
  nctest::write(path("a.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  nctest::write(path("b.nc"), NC_CLOBBER | NC_NETCDF4, {time6h(2, 12), lat_asc, lon_pm},
                {field("t2m", lat_asc, lon_pm, 2)});
  NetcdfDataset ds({path("b.nc"), path("a.nc")});
  EXPECT_EQ(ds.variable("t2m").T(), 4);
  expect_f(ds, "t2m");
}

// ---- bad input: one clear error each -----------------------------------------------------

TEST_F(NetcdfReader, NonexistentFile) {
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("nope.nc")}); }), "nope.nc: no such file");
}

TEST_F(NetcdfReader, NotANetcdfFile) {
  std::ofstream(path("text.nc")) << "this is not NetCDF\n";
  const auto e = error_of([&] { NetcdfDataset ds({path("text.nc")}); });
  EXPECT_HAS(e, "text.nc");
  EXPECT_HAS(e, "not a readable NetCDF file");
}

TEST_F(NetcdfReader, TruncatedFiles) {
  for (int mode : {NC_CLOBBER, NC_CLOBBER | NC_NETCDF4}) {
    Coord time = time6h(4);
    time.unlimited = true;
    nctest::write(path("full.nc"), mode, {time, lat32(), lon64()},
                  {field("t2m", lat32(), lon64())});
    const auto size = fs::file_size(path("full.nc"));
    fs::copy_file(path("full.nc"), path("cut.nc"), fs::copy_options::overwrite_existing);
    fs::resize_file(path("cut.nc"), size / 2);
    const auto e = error_of([&] {
      NetcdfDataset ds({path("cut.nc")});
      std::vector<float> out(32 * 64);
      for (int64_t t = 0; t < ds.variable("t2m").T(); ++t)
        ds.read(ds.resolve("t2m"), t, out.data());
    });
    EXPECT_HAS(e, "cut.nc");
    EXPECT_HAS(e, mode == NC_CLOBBER ? "truncated" : "NetCDF");
  }
}

TEST_F(NetcdfReader, UnknownVariableListsTheKnownOnes) {
  nctest::write(path("a.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()},
                {field("t2m", lat32(), lon64()), field("u10", lat32(), lon64())});
  NetcdfDataset ds({path("a.nc")});
  const auto e = error_of([&] { ds.resolve("v10"); });
  EXPECT_HAS(e, "unknown variable 'v10'");
  EXPECT_HAS(e, "t2m, u10");
  EXPECT_HAS(error_of([&] { ds.resolve("t2m_500"); }), "no level axis");
}

TEST_F(NetcdfReader, GridsThatDifferBetweenFiles) {
  Coord lat2{"latitude", nctest::range(87, -5.625, 32), "degrees_north", ""};
  nctest::write(path("a.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  nctest::write(path("b.nc"), NC_CLOBBER, {time6h(2, 12), lat2, lon64()},
                {field("t2m", lat2, lon64())});
  auto e = error_of([&] { NetcdfDataset ds({path("a.nc"), path("b.nc")}); });
  EXPECT_HAS(e, "variable 't2m'");
  EXPECT_HAS(e, "latitude value 0 is 87.1875 in");
  EXPECT_HAS(e, "b.nc");
  Coord lon2{"longitude", nctest::range(0, 11.25, 32), "degrees_east", ""};
  nctest::write(path("b.nc"), NC_CLOBBER, {time6h(2, 12), lat32(), lon2},
                {field("t2m", lat32(), lon2)});
  e = error_of([&] { NetcdfDataset ds({path("a.nc"), path("b.nc")}); });
  EXPECT_HAS(e, "has 32 longitude values but");
}

TEST_F(NetcdfReader, AMissingTimeStepIsReportedByItsTime) {
  nctest::write(path("a.nc"), NC_CLOBBER, {time6h(3), lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  nctest::write(path("b.nc"), NC_CLOBBER, {time6h(3, 36), lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  const auto e = error_of([&] { NetcdfDataset ds({path("a.nc"), path("b.nc")}); });
  EXPECT_HAS(e, "time step 1979-01-01T18:00:00Z is missing");
  EXPECT_HAS(e, "missing (and 2 more)");
  EXPECT_HAS(e, "1979-01-01T12:00:00Z is followed by 1979-01-02T12:00:00Z (the first in");
  nctest::write(path("b.nc"), NC_CLOBBER, {time6h(3, 6), lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("a.nc"), path("b.nc")}); }), "overlap");
}

TEST_F(NetcdfReader, AVariableWithoutLatLonDims) {
  Var bnds{"time_bnds", NC_DOUBLE, {"time", "nv"}, "", {}, {}, [](auto&) { return 0.0; }};
  nctest::write(path("bnds.nc"), NC_CLOBBER, {time6h(2), lat32(), lon64()},
                {field("t2m", lat32(), lon64()), bnds});
  NetcdfDataset ds({path("bnds.nc")});
  EXPECT_EQ(ds.variables(), std::vector<std::string>{"t2m"});
  const auto e = error_of([&] { ds.resolve("time_bnds"); });
  EXPECT_HAS(e, "bnds.nc: variable 'time_bnds' has dims (time, nv)");
  EXPECT_HAS(e, "expected (time, [level], lat, lon)");
  nctest::write(path("only.nc"), NC_CLOBBER, {time6h(2)}, {bnds});
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("only.nc")}); }),
             "only.nc: no variable with dims (time, [level], lat, lon)");
}

TEST_F(NetcdfReader, BadCoordinatesAreNamed) {
  Coord zigzag{"latitude", {10, 0, 5, -10}, "degrees_north", ""};
  nctest::write(path("zig.nc"), NC_CLOBBER, {time6h(2), zigzag, lon64()},
                {field("t2m", zigzag, lon64())});
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("zig.nc")}); }),
             "latitude 'latitude' is not strictly monotonic");
  Coord over{"latitude", {95, 0}, "degrees_north", ""};
  nctest::write(path("over.nc"), NC_CLOBBER, {time6h(2), over, lon64()},
                {field("t2m", over, lon64())});
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("over.nc")}); }), "outside [-90, 90]");
  Coord twice{"longitude", nctest::range(0, 90, 5), "degrees_east", ""};  // 0 and 360
  nctest::write(path("twice.nc"), NC_CLOBBER, {time6h(2), lat32(), twice},
                {field("t2m", lat32(), twice)});
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("twice.nc")}); }), "same meridian twice");
  Coord noleap{"time", {0, 6}, "hours since 2000-01-01", "noleap"};
  nctest::write(path("noleap.nc"), NC_CLOBBER, {noleap, lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  EXPECT_HAS(error_of([&] { NetcdfDataset ds({path("noleap.nc")}); }), "calendar 'noleap'");
  Coord badunits{"time", {0, 6}, "hours after 2000-01-01", ""};
  nctest::write(path("units.nc"), NC_CLOBBER, {badunits, lat32(), lon64()},
                {field("t2m", lat32(), lon64())});
  const auto e = error_of([&] { NetcdfDataset ds({path("units.nc")}); });
  EXPECT_HAS(e, "units.nc: time 'time'");
  EXPECT_HAS(e, "UNITS since DATE");
}

// ---- Unusual files (docs/data.md "Unusual files"): extra axes of length 1 are dropped (every
// value checked), a longer one is an error naming it; a time axis without an epoch opens with
// its raw values and takes a time origin; curvilinear and rotated grids and other undecodable
// inputs are one clear error. The same rules on Zarr: ZarrStoreTest.

namespace {

Coord lat4() { return {"lat", {60, 20, -20, -60}, "degrees_north", ""}; }
Coord lon6() { return {"lon", nctest::range(0, 60, 6), "degrees_east", ""}; }

// A float variable over `dims`, f of the time index (dim "time"), lat, lon and level ("plev").
Var fvar(const std::string& name, const std::vector<std::string>& dims) {
  Var v{name, NC_FLOAT, dims, "K", {}, {}, nullptr};
  const Coord la = lat4(), lo = lon6();
  const std::vector<double> levels{500, 850};
  v.raw = [=](const std::vector<size_t>& i) {
    double k = 0, y = 0, x = 0, lev = 0;
    for (size_t d = 0; d < dims.size(); ++d) {
      if (dims[d] == "time") k = static_cast<double>(i[d]);
      if (dims[d] == "lat") y = la.values[i[d]];
      if (dims[d] == "lon") x = lo.values[i[d]];
      if (dims[d] == "plev") lev = levels[i[d]];
    }
    return static_cast<double>(static_cast<float>(f(k, y, x, lev)));
  };
  return v;
}

}  // namespace

TEST_F(NetcdfReader, ExtraAxesOfLengthOneAreDroppedAnywhere) {
  const Coord zlev{"zlev", {10}, "m", ""}, number{"number", {0}, "", ""};
  const Coord expver{"expver", {1}, "", ""}, plev{"plev", {500, 850}, "hPa", ""};
  for (int cmode : {NC_CLOBBER, NC_CLOBBER | NC_NETCDF4}) {
    nctest::write(path("odd.nc"), cmode, {time6h(3), zlev, number, expver, plev, lat4(), lon6()},
                  {fvar("t2m", {"time", "zlev", "lat", "lon"}),
                   fvar("z", {"number", "time", "plev", "expver", "lat", "lon"}),
                   fvar("sst", {"time", "lat", "lon", "zlev"}),
                   fvar("lsm", {"number", "lat", "lon"})});
    NetcdfDataset ds({path("odd.nc")});
    EXPECT_EQ(ds.variables(), (std::vector<std::string>{"t2m", "z", "sst", "lsm"}));
    EXPECT_EQ(ds.variable("t2m").dropped_axes, std::vector<std::string>{"zlev"});
    EXPECT_EQ(ds.variable("z").dropped_axes, (std::vector<std::string>{"number", "expver"}));
    EXPECT_EQ(ds.variable("sst").dropped_axes, std::vector<std::string>{"zlev"});
    EXPECT_EQ(ds.variable("z").levels_hpa, (std::vector<double>{500, 850}));
    EXPECT_EQ(ds.variable("t2m").T(), 3);
    EXPECT_FALSE(ds.variable("lsm").has_time);
    expect_f(ds, "t2m");
    expect_f(ds, "z_500", 500);
    expect_f(ds, "z_850", 850);
    expect_f(ds, "sst");
    expect_f(ds, "lsm");
  }
}

TEST_F(NetcdfReader, AnExtraAxisLongerThanOneIsAnErrorNamingIt) {
  const Coord number{"number", {0, 1, 2}, "", ""};
  nctest::write(path("ens.nc"), NC_CLOBBER, {number, time6h(2), lat4(), lon6()},
                {fvar("t2m", {"number", "time", "lat", "lon"}), fvar("u10", {"time", "lat", "lon"})});
  NetcdfDataset ds({path("ens.nc")});
  EXPECT_EQ(ds.variables(), std::vector<std::string>{"u10"});
  const std::string e = error_of([&] { ds.resolve("t2m"); });
  EXPECT_HAS(e, "ens.nc: variable 't2m' has dims (number, time, lat, lon)");
  EXPECT_HAS(e, "its axis 'number' has length 3");
  EXPECT_HAS(e, "extra axes of length 1 only");
  EXPECT_HAS(e, "`ncks -d number,0 in.nc out.nc`");
  // A file with nothing else: opening it is the error.
  nctest::write(path("only.nc"), NC_CLOBBER, {number, time6h(2), lat4(), lon6()},
                {fvar("t2m", {"number", "time", "lat", "lon"})});
  const std::string e2 = error_of([&] { NetcdfDataset d({path("only.nc")}); });
  EXPECT_HAS(e2, "only.nc: no variable with dims (time, [level], lat, lon)");
  EXPECT_HAS(e2, "its axis 'number' has length 3");
  // Two time axes, and kept axes out of order.
  const Coord vt{"valid_time", {0, 6}, "hours since 1979-01-01", ""};
  nctest::write(path("two.nc"), NC_CLOBBER, {time6h(2), vt, lat4(), lon6()},
                {fvar("a", {"time", "valid_time", "lat", "lon"}), fvar("b", {"lat", "time", "lon"}),
                 fvar("c", {"time", "lat", "lon"})});
  NetcdfDataset two({path("two.nc")});
  EXPECT_HAS(error_of([&] { two.resolve("a"); }),
             "'time' and 'valid_time' are both time axes; expected one");
  EXPECT_HAS(error_of([&] { two.resolve("b"); }), "expected the order (time, [level], lat, lon)");
}

// WeatherBench2 stores (time, lon, lat): the slice is transposed into the canonical [H, W].
// Here with latitude ascending and longitude -180..120 as well, so the transpose, the row flip
// and the column roll all act at once; every value is checked, for NetCDF-3 and NetCDF-4.
TEST_F(NetcdfReader, LongitudeBeforeLatitudeIsTransposed) {
  const Coord lat{"lat", {-60, -20, 20, 60}, "degrees_north", ""};
  const Coord lon{"lon", nctest::range(-180, 60, 6), "degrees_east", ""};
  const Coord plev{"plev", {500, 850}, "hPa", ""}, zlev{"zlev", {10}, "m", ""};
  // f of the time index, lat, lon and level, whatever the order of the dims.
  auto var = [&](const std::string& name, const std::vector<std::string>& dims) {
    Var v{name, NC_FLOAT, dims, "K", {}, {}, nullptr};
    v.raw = [=](const std::vector<size_t>& i) {
      double k = 0, y = 0, x = 0, lev = 0;
      for (size_t d = 0; d < dims.size(); ++d) {
        if (dims[d] == "time") k = static_cast<double>(i[d]);
        if (dims[d] == "lat") y = lat.values[i[d]];
        if (dims[d] == "lon") x = lon.values[i[d]];
        if (dims[d] == "plev") lev = plev.values[i[d]];
      }
      return static_cast<double>(static_cast<float>(f(k, y, x, lev)));
    };
    return v;
  };
  for (int cmode : {NC_CLOBBER, NC_CLOBBER | NC_NETCDF4}) {
    nctest::write(path("lonlat.nc"), cmode, {time6h(3), plev, zlev, lat, lon},
                  {var("t2m", {"time", "lon", "lat"}), var("z", {"time", "plev", "lon", "lat"}),
                   var("sst", {"time", "lon", "zlev", "lat"}), var("lsm", {"lon", "lat"}),
                   var("u10", {"time", "lat", "lon"})});
    NetcdfDataset ds({path("lonlat.nc")});
    const auto& t2m = ds.variable("t2m");
    EXPECT_TRUE(t2m.lon_first_in_file);
    EXPECT_TRUE(t2m.lat_ascending_in_file);
    EXPECT_EQ(t2m.lat, (std::vector<double>{60, 20, -20, -60}));
    EXPECT_EQ(t2m.lon, (std::vector<double>{0, 60, 120, 180, 240, 300}));
    EXPECT_EQ(t2m.lon_in_file, lon.values);
    EXPECT_TRUE(ds.variable("z").lon_first_in_file);
    EXPECT_EQ(ds.variable("sst").dropped_axes, std::vector<std::string>{"zlev"});
    EXPECT_FALSE(ds.variable("u10").lon_first_in_file);
    expect_f(ds, "t2m");
    expect_f(ds, "z_500", 500);
    expect_f(ds, "z_850", 850);
    expect_f(ds, "sst");
    expect_f(ds, "lsm");
    expect_f(ds, "u10");
    // One value by hand: canonical row 0 (60N), column 1 (60E) of time 2.
    std::vector<float> out(4 * 6);
    ds.read(ds.resolve("t2m"), 2, out.data());
    EXPECT_EQ(out[0 * 6 + 1], static_cast<float>(f(2, 60, 60)));
  }
  // The horizontal axes must still be the last two kept dims.
  nctest::write(path("lonmid.nc"), NC_CLOBBER, {time6h(2), lat, lon},
                {var("a", {"lon", "time", "lat"}), var("b", {"time", "lat", "lon"})});
  NetcdfDataset mid({path("lonmid.nc")});
  EXPECT_HAS(error_of([&] { mid.resolve("a"); }),
             "has dims (lon, time, lat); expected the order (time, [level], lat, lon) or (time, "
             "[level], lon, lat)");
}

TEST_F(NetcdfReader, ATimeAxisWithoutAnEpochKeepsItsRawValues) {
  const Coord days{"time", {0, 1, 2}, "days", ""};
  nctest::write(path("days.nc"), NC_CLOBBER, {days, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  NetcdfDataset raw({path("days.nc")});
  const auto& v = raw.variable("t2m");
  EXPECT_FALSE(v.time_has_epoch);
  EXPECT_EQ(v.time_axis, "time");
  EXPECT_EQ(v.time_units, "days");
  EXPECT_EQ(v.times, (std::vector<double>{0, 1, 2}));
  EXPECT_EQ(cf_time_text(v, v.times[2]), "2 days (no epoch)");
  expect_f(raw, "t2m");  // the values read as usual

  // With a time origin: "days since 1979-01-01".
  NetcdfDataset dated({path("days.nc")}, SourceOptions{"1979-01-01"});
  const auto& w = dated.variable("t2m");
  EXPECT_TRUE(w.time_has_epoch);
  ASSERT_EQ(w.times.size(), 3u);
  EXPECT_EQ(iso8601(w.times[0]), "1979-01-01T00:00:00Z");
  EXPECT_EQ(iso8601(w.times[2]), "1979-01-03T00:00:00Z");
  EXPECT_DOUBLE_EQ(w.times[1] - w.times[0], 24.0);

  // "hours", "minutes", "seconds" alike; an axis with an epoch ignores the origin.
  const Coord hours{"time", {0, 6, 12}, "hours", ""};
  nctest::write(path("hours.nc"), NC_CLOBBER, {hours, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  NetcdfDataset h({path("hours.nc")}, SourceOptions{"2000-02-28T18:00:00"});
  EXPECT_EQ(iso8601(h.variable("t2m").times[2]), "2000-02-29T06:00:00Z");
  nctest::write(path("epoch.nc"), NC_CLOBBER, {time6h(2), lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  NetcdfDataset e({path("epoch.nc")}, SourceOptions{"2000-01-01"});
  EXPECT_EQ(iso8601(e.variable("t2m").times[1]), "1979-01-01T06:00:00Z");
}

TEST_F(NetcdfReader, TimeWithoutAnEpochErrors) {
  // Months: opens with raw values, but no origin can place them.
  const Coord months{"time", {0, 1, 2}, "Month", ""};
  nctest::write(path("mon.nc"), NC_CLOBBER, {months, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  NetcdfDataset raw({path("mon.nc")});
  EXPECT_EQ(raw.variable("t2m").time_units, "Month");
  EXPECT_FALSE(raw.variable("t2m").time_has_epoch);
  const std::string e = error_of([&] { NetcdfDataset d({path("mon.nc")}, {"1979-01-01"}); });
  EXPECT_HAS(e, "mon.nc: time 'time' has units 'Month'");
  EXPECT_HAS(e, "months and years have no fixed length");
  EXPECT_HAS(e, "cdo settaxis");
  // A bad origin, and a unit that is none.
  const Coord days{"time", {0, 1}, "days", ""};
  nctest::write(path("days.nc"), NC_CLOBBER, {days, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("days.nc")}, {"1979-13-01"}); }),
             "--time-origin '1979-13-01': cannot parse the date '1979-13-01'");
  const Coord weeks{"time", {0, 1}, "fortnights", ""};
  nctest::write(path("fn.nc"), NC_CLOBBER, {weeks, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("fn.nc")}, {"1979-01-01"}); }),
             "unknown unit 'fortnights'");
  // Raw values must still increase.
  const Coord back{"time", {3, 1}, "days", ""};
  nctest::write(path("back.nc"), NC_CLOBBER, {back, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("back.nc")}); }),
             "back.nc: time 'time' is not increasing (3 then 1 days)");
  // Files of one variable: one with an epoch, one without.
  nctest::write(path("epoch.nc"), NC_CLOBBER, {time6h(2), lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  const std::string mix =
      error_of([&] { NetcdfDataset d({path("epoch.nc"), path("days.nc")}); });
  EXPECT_HAS(mix, "variable 't2m': time units");
  EXPECT_HAS(mix, "files of one variable need one time axis");
}

TEST_F(NetcdfReader, ForecastingAsksForATimeOrigin) {
  const Coord hours{"time", nctest::range(0, 6, 8), "hours", ""};
  nctest::write(path("hours.nc"), NC_CLOBBER, {hours, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"})});
  ForecastConfig c;
  c.paths = {path("hours.nc")};
  c.inputs = c.outputs = {"t2m"};
  c.train = {"1979-01-01", "1979-01-03"};
  c.cache_path = path("stats.safetensors");
  c.prefetch = false;
  const std::string e = error_of([&] { ForecastDataset d(c, Split::train); });
  EXPECT_HAS(e, "field 't2m': the time axis 'time' has units 'hours' without an epoch");
  EXPECT_HAS(e, "--time-origin DATE");
  c.time_origin = "1979-01-01";
  ForecastDataset d(c, Split::train);
  ASSERT_EQ(d.times().size(), 8u);
  EXPECT_EQ(iso8601(d.times()[7]), "1979-01-02T18:00:00Z");
  EXPECT_EQ(d.size(), 7);  // t -> t + 6 h inside [1979-01-01, 1979-01-03)
  // The origin is part of the dataset settings a checkpoint keeps.
  const std::string j = forecast_config_to_json(c);
  EXPECT_HAS(j, "\"time_origin\":\"1979-01-01\"");
  EXPECT_EQ(forecast_config_from_json(j, "test").time_origin, "1979-01-01");
  EXPECT_EQ(forecast_config_from_json(forecast_config_to_json(ForecastConfig{}), "t").time_origin,
            "");
  c.time_origin = "yesterday";
  EXPECT_HAS(error_of([&] { ForecastDataset x(c, Split::train); }),
             "time origin: cannot parse the date 'yesterday'");
}

TEST_F(NetcdfReader, CurvilinearAndRotatedGridsAreRefused) {
  // 2-D latitude and longitude over (y, x): a curvilinear grid.
  Var tas{"tas", NC_FLOAT, {"time", "y", "x"}, "K", {}, {}, [](auto&) { return 280.0; }};
  tas.text_atts["coordinates"] = "lat lon";
  Var lat2{"lat", NC_DOUBLE, {"y", "x"}, "degrees_north", {}, {}, [](auto&) { return 10.0; }};
  Var lon2{"lon", NC_DOUBLE, {"y", "x"}, "degrees_east", {}, {}, [](auto&) { return 20.0; }};
  nctest::write(path("curv.nc"), NC_CLOBBER, {time6h(2)}, {tas, lat2, lon2});
  const std::string e = error_of([&] { NetcdfDataset d({path("curv.nc")}); });
  EXPECT_HAS(e, "curv.nc: no variable with dims (time, [level], lat, lon)");
  EXPECT_HAS(e, "variable 'tas' has dims (time, y, x)");
  EXPECT_HAS(e, "its latitudes and longitudes are 2-D (lat (y, x), lon (y, x)): a curvilinear grid");
  EXPECT_HAS(e, "cdo remapbil,r64x32");
  // Rotated pole: rlat / rlon look regular, the grid_mapping says otherwise.
  const Coord rlat{"rlat", {10, 0, -10}, "degrees", ""}, rlon{"rlon", {0, 10}, "degrees", ""};
  Var pr{"pr", NC_FLOAT, {"time", "rlat", "rlon"}, "kg m-2 s-1", {}, {}, [](auto&) { return 1.0; }};
  pr.text_atts["grid_mapping"] = "rotated_pole";
  Var pole{"rotated_pole", NC_INT, {}, "", {}, {}, [](auto&) { return 0.0; }};
  pole.text_atts["grid_mapping_name"] = "rotated_latitude_longitude";
  Var ok = fvar("t2m", {"time", "lat", "lon"});
  nctest::write(path("rot.nc"), NC_CLOBBER, {time6h(2), rlat, rlon, lat4(), lon6()},
                {pr, pole, ok});
  NetcdfDataset rot({path("rot.nc")});
  EXPECT_EQ(rot.variables(), std::vector<std::string>{"t2m"});
  const std::string r = error_of([&] { rot.resolve("pr"); });
  EXPECT_HAS(r, "variable 'pr' has dims (time, rlat, rlon)");
  EXPECT_HAS(r, "its grid_mapping is 'rotated_latitude_longitude'");
}

TEST_F(NetcdfReader, OtherUndecodableInputsAreOneClearError) {
  // An empty (unlimited, no records) time axis.
  const Coord none{"time", {}, "hours since 1979-01-01", "", true};
  nctest::write(path("empty.nc"), NC_CLOBBER, {none, lat4(), lon6()},
                {fvar("t2m", {"time", "lat", "lon"}), fvar("lsm", {"lat", "lon"})});
  NetcdfDataset empty({path("empty.nc")});
  EXPECT_EQ(empty.variables(), std::vector<std::string>{"lsm"});
  EXPECT_HAS(error_of([&] { empty.resolve("t2m"); }),
             "variable 't2m' has dims (time, lat, lon); its time axis 'time' is empty (no time "
             "steps)");
  // A coordinate variable with two dims.
  Var time2{"time", NC_DOUBLE, {"time", "nv"}, "hours since 1979-01-01", {}, {},
            [](const std::vector<size_t>& i) { return 6.0 * i[0] + i[1]; }};
  nctest::write(path("time2.nc"), NC_CLOBBER, {lat4(), lon6()},
                {time2, fvar("t2m", {"time", "lat", "lon"})});
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("time2.nc")}); }),
             "time2.nc: variable 't2m': the coordinate variable 'time' has 2 dims; expected 1");
  // A coordinate variable of text.
  {
    int nc, dt, dy, dx, vt, vy, vx, vv;
    const std::string p = path("text.nc");
    ASSERT_EQ(nc_create(p.c_str(), NC_CLOBBER, &nc), NC_NOERR);
    nc_def_dim(nc, "time", 2, &dt);
    nc_def_dim(nc, "lat", 1, &dy);
    nc_def_dim(nc, "lon", 1, &dx);
    nc_def_var(nc, "time", NC_CHAR, 1, &dt, &vt);
    nc_def_var(nc, "lat", NC_DOUBLE, 1, &dy, &vy);
    nc_def_var(nc, "lon", NC_DOUBLE, 1, &dx, &vx);
    const int dims[3] = {dt, dy, dx};
    nc_def_var(nc, "t2m", NC_FLOAT, 3, dims, &vv);
    nc_enddef(nc);
    const double zero = 0;
    const float v[2] = {1, 2};
    nc_put_var_text(nc, vt, "ab");
    nc_put_var_double(nc, vy, &zero);
    nc_put_var_double(nc, vx, &zero);
    nc_put_var_float(nc, vv, v);
    ASSERT_EQ(nc_close(nc), NC_NOERR);
  }
  EXPECT_HAS(error_of([&] { NetcdfDataset d({path("text.nc")}); }),
             "text.nc: variable 't2m': the coordinate variable 'time' holds text; expected "
             "numbers");
}
