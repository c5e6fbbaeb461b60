// Unusual real files (docs/data.md "Unusual files"), NetCDF written here with libnetcdf: extra
// axes of length 1 are dropped (every value checked), a longer one is an error naming it; a time
// axis without an epoch opens with its raw values and takes a time origin; curvilinear and
// rotated grids are refused with one clear error. The same rules on Zarr are in ZarrStoreTest.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/check.h"
#include "data/cf_grid.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "data/netcdf_reader.h"
#include "error_of.h"
#include "nc_test_writer.h"

using namespace seqvit;
using namespace seqvit::data;
namespace fs = std::filesystem;
using nctest::Coord;
using nctest::Var;
using seqvit_test::error_of;

namespace {

class OddFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("seqvit_odd_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& n) const { return (tmp_ / n).string(); }
  fs::path tmp_;
};

double f(double k, double lat, double lon, double lev = 0) {
  return 100.0 * k + lat + lon / 1000.0 + lev;
}

Coord lat4() { return {"lat", {60, 20, -20, -60}, "degrees_north", ""}; }
Coord lon6() { return {"lon", nctest::range(0, 60, 6), "degrees_east", ""}; }
Coord time6h(int n) { return {"time", nctest::range(0, 6, n), "hours since 1979-01-01", ""}; }

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

// Every value of field `name` against f.
void expect_f(const GridSource& ds, const std::string& name, double lev = 0) {
  const auto ref = ds.resolve(name);
  const auto& v = ds.variable(ref.variable);
  std::vector<float> out(v.H() * v.W());
  for (int64_t t = 0; t < v.T(); ++t) {
    EXPECT_EQ(ds.read(ref, t, out.data()), 0);
    for (int64_t i = 0; i < v.H(); ++i)
      for (int64_t j = 0; j < v.W(); ++j)
        ASSERT_EQ(out[i * v.W() + j], static_cast<float>(f(t, v.lat[i], v.lon[j], lev)))
            << name << " t=" << t << " i=" << i << " j=" << j;
  }
}

}  // namespace

TEST_F(OddFiles, ExtraAxesOfLengthOneAreDroppedAnywhere) {
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

TEST_F(OddFiles, AnExtraAxisLongerThanOneIsAnErrorNamingIt) {
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

TEST_F(OddFiles, ATimeAxisWithoutAnEpochKeepsItsRawValues) {
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

TEST_F(OddFiles, TimeWithoutAnEpochErrors) {
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

TEST_F(OddFiles, ForecastingAsksForATimeOrigin) {
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

TEST_F(OddFiles, CurvilinearAndRotatedGridsAreRefused) {
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

TEST_F(OddFiles, OtherUndecodableInputsAreOneClearError) {
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
