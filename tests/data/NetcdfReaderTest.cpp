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
#include "data/cf_time.h"
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

TEST(CfTime, ParsesUnitsAndEpochs) {
  EXPECT_DOUBLE_EQ(parse_cf_time_units("hours since 1970-01-01 00:00:00").to_hours(6), 6);
  const double h1979 = parse_cf_time_units("days since 1979-1-1").to_hours(0);
  EXPECT_DOUBLE_EQ(h1979, 3287 * 24.0);  // 9 years with 2 leap days
  EXPECT_DOUBLE_EQ(parse_cf_time_units("hours since 1900-01-01 00:00:00.0").to_hours(692496),
                   h1979);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("minutes since 2000-01-01T00:00:00Z").to_hours(90),
                   parse_iso_datetime("2000-01-01 01:30") / 3600.0);
  EXPECT_DOUBLE_EQ(parse_cf_time_units("seconds since 1970-01-01 00:00:00 UTC").to_hours(7200), 2);
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
