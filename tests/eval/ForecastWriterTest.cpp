// Forecast NetCDF files: read back (with seqvit's reader and with libnetcdf directly) they hold
// the in-process forecast with CF metadata, on the input's grid in the input's orientation —
// checked on the fixture (latitude descending, 0..360) and on the same data rewritten with
// latitude ascending and longitude -180..180, with and without coarsening.
#include <gtest/gtest.h>
#include <netcdf.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/check.h"
#include "data/cf_time.h"
#include "data/forecast_writer.h"
#include "data/netcdf_reader.h"
#include "eval/forecast_fixture.h"
#include "eval/predict.h"
#include "data/nc_test_writer.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using testing::ForecastFixture;

const std::string kTime = "1979-01-07T00:00:00Z";
double hours(const std::string& iso) { return data::parse_iso_datetime(iso) / 3600.0; }

fs::path temp_dir(const std::string& name) {
  const auto d =
      fs::temp_directory_path() / ("seqvit_fwriter_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<data::ForecastField> fields_of(const eval::Prediction& p,
                                           const data::ForecastDataset& ds) {
  std::vector<data::ForecastField> r;
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    const auto& ref = ds.field_ref(p.outputs[v]);
    const auto& var = ds.source().variable(ref.variable);
    r.push_back({p.outputs[v], var.units, var.long_name, data::cf_standard_name(ref.variable),
                 ref.level >= 0 ? var.levels_hpa[ref.level] : -1,
                 p.forecast.data() + v * p.H * p.W});
  }
  return r;
}

std::string text_att(int nc, int var, const char* name) {
  size_t len = 0;
  if (nc_inq_attlen(nc, var, name, &len) != NC_NOERR) return "<absent>";
  std::string s(len, '\0');
  nctest::ok(nc_get_att_text(nc, var, name, s.data()), name);
  return s;
}

double scalar(int nc, const char* name) {
  int v;
  nctest::ok(nc_inq_varid(nc, name, &v), name);
  double x = NAN;
  nctest::ok(nc_get_var_double(nc, v, &x), name);
  return x;
}

std::vector<double> coord(int nc, const char* name, size_t n) {
  int v;
  nctest::ok(nc_inq_varid(nc, name, &v), name);
  std::vector<double> x(n);
  nctest::ok(nc_get_var_double(nc, v, x.data()), name);
  return x;
}

// The forecast written to `path` read back through seqvit's reader (canonical orientation).
void expect_file_holds(const std::string& path, const eval::Prediction& p) {
  data::NetcdfDataset back({path});
  const int64_t n = p.H * p.W;
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    const auto ref = back.resolve(p.outputs[v]);
    ASSERT_EQ(back.variable(ref.variable).H(), p.H);
    ASSERT_EQ(back.variable(ref.variable).W(), p.W);
    ASSERT_EQ(back.variable(ref.variable).times.size(), 1u);
    EXPECT_DOUBLE_EQ(back.variable(ref.variable).times[0], p.time + p.lead_hours);
    std::vector<float> got(n);
    EXPECT_EQ(back.read(ref, 0, got.data()), 0);
    for (int64_t q = 0; q < n; ++q)
      ASSERT_NEAR(got[q], p.forecast[v * n + q], 1e-5 * std::max(1.0f, std::abs(got[q])))
          << p.outputs[v] << " pixel " << q;
  }
}

TEST(ForecastWriterTest, FileHoldsTheForecastWithCfMetadata) {
  const auto& f = ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  const auto ds = eval::prediction_dataset(ck, {}, 0);
  EXPECT_EQ(ds->config().lead_hours, std::vector<double>{6});  // the checkpoint's first lead
  const auto p = eval::predict(ck, *ds, eval::find_sample(*ds, hours(kTime)));
  EXPECT_EQ(p.time, hours(kTime));
  EXPECT_EQ(p.lead_hours, 6);

  // The same forecast computed directly: the test split's sample at kTime, through the model.
  data::ForecastConfig dc = f.data;
  dc.lead_hours = {6};
  dc.normalisation = ck.norm;
  dc.prefetch = false;
  data::ForecastDataset test(dc, data::Split::test);
  int64_t s = 0;
  while (test.sample_time(s) != hours(kTime)) ++s;
  model::ClimaX m(f.model);
  m.plan(1, model::Precision::F32);
  const auto b = test.load({s});
  std::vector<float> pred(b.y.size());
  m.forward(ck.params.data(), b.view(), pred.data());
  test.denormalise_y(pred.data(), 1);
  ASSERT_EQ(pred.size(), p.forecast.size());
  for (size_t q = 0; q < pred.size(); ++q) ASSERT_EQ(pred[q], p.forecast[q]) << q;

  const auto dir = temp_dir("meta");
  const std::string path = (dir / "forecast.nc").string();
  data::ForecastMetadata meta{p.time, p.lead_hours, ck.path, 42, "test history"};
  const auto grid = data::forecast_grid(*ds);
  EXPECT_FALSE(grid.flip_lat);  // the synthetic data are stored north to south
  EXPECT_EQ(grid.coarsen, 2);
  data::write_forecast_netcdf(path, grid, fields_of(p, *ds), meta);
  expect_file_holds(path, p);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "forecast.nc") << "left behind: " << e.path();

  int nc;
  nctest::ok(nc_open(path.c_str(), NC_NOWRITE, &nc), "open");
  int fmt_ = 0;
  nc_inq_format(nc, &fmt_);
  EXPECT_EQ(fmt_, NC_FORMAT_NETCDF4);
  EXPECT_EQ(scalar(nc, "time"), hours("1979-01-07T06:00:00Z"));
  EXPECT_EQ(scalar(nc, "forecast_reference_time"), hours(kTime));
  EXPECT_EQ(scalar(nc, "leadtime"), 6);
  int tv, latv, lonv, zv;
  nc_inq_varid(nc, "time", &tv);
  nc_inq_varid(nc, "lat", &latv);
  nc_inq_varid(nc, "lon", &lonv);
  nctest::ok(nc_inq_varid(nc, "z_500", &zv), "z_500");
  EXPECT_EQ(text_att(nc, tv, "units"), "hours since 1970-01-01 00:00:00");
  EXPECT_EQ(text_att(nc, tv, "calendar"), "standard");
  EXPECT_EQ(text_att(nc, latv, "units"), "degrees_north");
  EXPECT_EQ(text_att(nc, latv, "axis"), "Y");
  EXPECT_EQ(text_att(nc, lonv, "units"), "degrees_east");
  EXPECT_EQ(text_att(nc, lonv, "axis"), "X");
  EXPECT_EQ(text_att(nc, zv, "units"), ds->source().variable("z").units);
  EXPECT_EQ(text_att(nc, zv, "standard_name"), "geopotential");
  EXPECT_NE(text_att(nc, zv, "long_name"), "<absent>");
  nc_type type;
  nc_inq_vartype(nc, zv, &type);
  EXPECT_EQ(type, NC_FLOAT);
  float fill = 0;
  nctest::ok(nc_get_att_float(nc, zv, "_FillValue", &fill), "_FillValue");
  EXPECT_EQ(fill, NC_FILL_FLOAT);
  double level = 0;
  nctest::ok(nc_get_att_double(nc, zv, "pressure_level_hPa", &level), "level");
  EXPECT_EQ(level, 500);
  EXPECT_EQ(text_att(nc, NC_GLOBAL, "Conventions"), "CF-1.8");
  EXPECT_EQ(text_att(nc, NC_GLOBAL, "checkpoint"), ck.path);
  EXPECT_EQ(text_att(nc, NC_GLOBAL, "history"), "test history");
  EXPECT_EQ(text_att(nc, NC_GLOBAL, "forecast_reference_time"), kTime);
  EXPECT_EQ(text_att(nc, NC_GLOBAL, "valid_time"), "1979-01-07T06:00:00Z");
  double step = 0;
  nc_get_att_double(nc, NC_GLOBAL, "checkpoint_step", &step);
  EXPECT_EQ(step, 42);
  const auto lat = coord(nc, "lat", p.H);
  for (int64_t i = 0; i < p.H; ++i) EXPECT_NEAR(lat[i], ds->lat()[i], 1e-5);
  nc_close(nc);
  fs::remove_all(dir);
}

// The fixture's data (block-mean coarsened by c: 1 keeps 32x64, 2 gives the model's 16x32)
// rewritten as one NetCDF-4 file stored south to north with longitudes -180..180.
struct Flipped {
  std::vector<double> lat, lon;  // as stored
};
Flipped write_flipped(const std::string& path, int c) {
  const auto& f = ForecastFixture::get();
  data::NetcdfDataset src({f.dir});
  const auto& t2m = src.variable("t2m");
  const int64_t H = t2m.H() / c, W = t2m.W() / c, T = t2m.T();
  Flipped r;
  for (int64_t a = 0; a < H; ++a) {  // ascending: canonical row H-1-a
    double s = 0;
    for (int k = 0; k < c; ++k) s += t2m.lat[(H - 1 - a) * c + k];
    r.lat.push_back(s / c);
  }
  for (int64_t b = 0; b < W; ++b) {  // from -180: canonical column (b + W/2) % W
    double s = 0;
    for (int k = 0; k < c; ++k) s += t2m.lon[((b + W / 2) % W) * c + k];
    r.lon.push_back(s / c >= 180 ? s / c - 360 : s / c);
  }
  // Every field, canonical orientation, coarsened as the dataset does (double sum, then float).
  auto read = [&](const std::string& name, int64_t steps) {
    const auto ref = src.resolve(name);
    std::vector<float> fine(t2m.H() * t2m.W()), out(steps * H * W);
    for (int64_t t = 0; t < steps; ++t) {
      src.read(ref, t, fine.data());
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          double s = 0;
          for (int a = 0; a < c; ++a)
            for (int b = 0; b < c; ++b) s += fine[(i * c + a) * t2m.W() + j * c + b];
          out[(t * H + i) * W + j] = c == 1 ? fine[i * W + j] : static_cast<float>(s / (c * c));
        }
    }
    return out;
  };
  std::map<std::string, std::vector<float>> v;
  for (const char* n : {"t2m", "u10", "v10", "z_500", "z_850", "t_500", "t_850"}) v[n] = read(n, T);
  for (const char* n : {"lsm", "orography"}) v[n] = read(n, 1);
  auto at = [&, H, W](const std::vector<float>& x, size_t t, size_t a, size_t b) {
    return static_cast<double>(x[(t * H + (H - 1 - a)) * W + (b + W / 2) % W]);
  };
  std::vector<nctest::Var> vars;
  for (const char* n : {"t2m", "u10", "v10"}) {
    nctest::Var var{n, NC_FLOAT, {"time", "lat", "lon"}, src.variable(n).units, {}, {}, nullptr};
    var.raw = [&, n](const std::vector<size_t>& i) { return at(v.at(n), i[0], i[1], i[2]); };
    vars.push_back(var);
  }
  for (const char* n : {"z", "t"}) {
    nctest::Var var{n,  NC_FLOAT, {"time", "level", "lat", "lon"}, src.variable(n).units, {},
                    {}, nullptr};
    var.raw = [&, n](const std::vector<size_t>& i) {
      return at(v.at(std::string(n) + (i[1] == 0 ? "_500" : "_850")), i[0], i[2], i[3]);
    };
    vars.push_back(var);
  }
  for (const char* n : {"lsm", "orography"}) {
    nctest::Var var{n, NC_FLOAT, {"lat", "lon"}, src.variable(n).units, {}, {}, nullptr};
    var.raw = [&, n](const std::vector<size_t>& i) { return at(v.at(n), 0, i[0], i[1]); };
    vars.push_back(var);
  }
  nctest::write(path, NC_CLOBBER | NC_NETCDF4,
                {{"time", t2m.times, "hours since 1970-01-01 00:00:00", "standard"},
                 {"level", {500, 850}, "hPa", ""},
                 {"lat", r.lat, "degrees_north", ""},
                 {"lon", r.lon, "degrees_east", ""}},
                vars);
  return r;
}

TEST(ForecastWriterTest, KeepsAscendingLatitudeAndSignedLongitudeOfTheInput) {
  const auto& f = ForecastFixture::get();
  auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  const auto ref_ds = eval::prediction_dataset(ck, {}, 0);
  const auto ref = eval::predict(ck, *ref_ds, eval::find_sample(*ref_ds, hours(kTime)));

  // The same data already on the model's 16x32 grid: no coarsening, so the file must keep the
  // input's latitude order and its longitude values and order.
  const auto dir = temp_dir("flip");
  fs::create_directories(dir / "data");
  const Flipped in = write_flipped((dir / "data" / "flipped.nc").string(), 2);
  ck.data.coarsen = 1;
  const auto ds = eval::prediction_dataset(ck, {(dir / "data").string()}, 0);
  const auto& var = ds->source().variable("t2m");
  ASSERT_TRUE(var.lat_ascending_in_file);
  ASSERT_EQ(var.lon_in_file, in.lon);
  const auto p = eval::predict(ck, *ds, eval::find_sample(*ds, hours(kTime)));
  ASSERT_EQ(p.forecast.size(), ref.forecast.size());
  for (size_t q = 0; q < p.forecast.size(); ++q)  // same inputs in canonical order
    ASSERT_NEAR(p.forecast[q], ref.forecast[q], 1e-5 * std::abs(ref.forecast[q])) << q;

  const std::string path = (dir / "forecast.nc").string();
  const auto grid = data::forecast_grid(*ds);
  EXPECT_TRUE(grid.flip_lat);
  data::write_forecast_netcdf(path, grid, fields_of(p, *ds), {p.time, p.lead_hours, "ck", 0, ""});
  expect_file_holds(path, p);
  int nc;
  nctest::ok(nc_open(path.c_str(), NC_NOWRITE, &nc), "open");
  EXPECT_EQ(coord(nc, "lat", p.H), in.lat);  // ascending, as stored
  EXPECT_EQ(coord(nc, "lon", p.W), in.lon);  // -180 .. 168.75, as stored
  EXPECT_LT(in.lat.front(), in.lat.back());
  EXPECT_LT(in.lon.front(), 0);
  int v;
  nctest::ok(nc_inq_varid(nc, "t_850", &v), "t_850");
  std::vector<float> raw(p.H * p.W);
  nctest::ok(nc_get_var_float(nc, v, raw.data()), "get");
  const int64_t H = p.H, W = p.W, n = H * W;
  for (int64_t a = 0; a < H; ++a)
    for (int64_t b = 0; b < W; ++b)
      ASSERT_EQ(raw[a * W + b], p.forecast[2 * n + (H - 1 - a) * W + (b + W / 2) % W])
          << "file row " << a << " column " << b;
  nc_close(nc);

  // Coarsened (the fine 32x64 flipped data with the checkpoint's coarsen 2): latitude stays in
  // the input's (ascending) order, longitude is the canonical 0..360 block mean.
  fs::create_directories(dir / "fine");
  write_flipped((dir / "fine" / "flipped.nc").string(), 1);
  ck.data.coarsen = 2;
  const auto ds2 = eval::prediction_dataset(ck, {(dir / "fine").string()}, 0);
  const auto p2 = eval::predict(ck, *ds2, eval::find_sample(*ds2, hours(kTime)));
  for (size_t q = 0; q < p2.forecast.size(); ++q)
    ASSERT_NEAR(p2.forecast[q], ref.forecast[q], 1e-5 * std::abs(ref.forecast[q])) << q;
  const auto g2 = data::forecast_grid(*ds2);
  EXPECT_TRUE(g2.flip_lat);
  EXPECT_LT(g2.lat.front(), g2.lat.back());
  for (size_t i = 0; i < g2.lat.size(); ++i) EXPECT_NEAR(g2.lat[i], in.lat[i], 1e-9);
  for (int64_t j = 0; j < W; ++j)
    EXPECT_NEAR(g2.lon[j], ref_ds->source().variable("t2m").lon[2 * j] + 2.8125, 1e-9);
  const std::string path2 = (dir / "forecast_coarse.nc").string();
  data::write_forecast_netcdf(path2, g2, fields_of(p2, *ds2), {p2.time, p2.lead_hours, "", 0, ""});
  expect_file_holds(path2, p2);
  fs::remove_all(dir);
}

TEST(ForecastWriterTest, MissingValuesBecomeFillAndFailedWritesLeaveNoFile) {
  const auto dir = temp_dir("fill");
  data::ForecastGrid g{{10, -10}, {0, 120, 240}, false, {0, 1, 2}, 1};
  std::vector<float> x = {1, NAN, 3, 4, 5, 6};
  const std::string path = (dir / "f.nc").string();
  data::write_forecast_netcdf(
      path, g, {{"t2m", "K", "2 metre temperature", "air_temperature", -1, x.data()}},
      {0, 6, "", 0, ""});
  data::NetcdfDataset back({path});
  std::vector<float> got(6);
  EXPECT_EQ(back.read(back.resolve("t2m"), 0, got.data()), 1);
  EXPECT_TRUE(std::isnan(got[1]));
  EXPECT_EQ(got[5], 6);

  const std::string bad = (dir / "no_such_dir" / "f.nc").string();
  EXPECT_THROW(data::write_forecast_netcdf(bad, g, {{"t2m", "K", "", "", -1, x.data()}}, {}),
               Error);
  // A target that cannot be replaced (a directory): the temporary file is removed.
  fs::create_directories(dir / "occupied.nc");
  EXPECT_THROW(data::write_forecast_netcdf((dir / "occupied.nc").string(), g,
                                           {{"t2m", "K", "", "", -1, x.data()}}, {}),
               Error);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) ++entries, (void)e;
  EXPECT_EQ(entries, 2);  // f.nc and occupied.nc only
  fs::remove_all(dir);
}

}  // namespace
}  // namespace seqvit
