// Synthetic ERA5-like data: files read back with the libnetcdf C API (not through our reader)
// and checked for layout, CF attributes, packing, determinism and physical sanity; the
// shallow-water core checked for mass conservation.
#include <gtest/gtest.h>
#include <netcdf.h>
#include <unistd.h>

#include <cmath>
#include <complex>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "data/synth/era5_synth.h"
#include "data/synth/netcdf_writer.h"
#include "data/synth/shallow_water.h"

namespace fs = std::filesystem;
using namespace seqvit;

namespace {

void nc_ok(int status, const std::string& what) {
  ASSERT_EQ(status, NC_NOERR) << what << ": " << nc_strerror(status);
}

struct NcFile {
  int id = -1;
  explicit NcFile(const fs::path& p) {
    const int s = nc_open(p.c_str(), NC_NOWRITE, &id);
    EXPECT_EQ(s, NC_NOERR) << p << ": " << nc_strerror(s);
  }
  ~NcFile() {
    if (id >= 0) nc_close(id);
  }
  int var(const char* name) const {
    int v = -1;
    EXPECT_EQ(nc_inq_varid(id, name, &v), NC_NOERR) << "no variable " << name;
    return v;
  }
  size_t dim(const char* name) const {
    int d = -1;
    size_t len = 0;
    EXPECT_EQ(nc_inq_dimid(id, name, &d), NC_NOERR) << "no dimension " << name;
    nc_inq_dimlen(id, d, &len);
    return len;
  }
  std::string text(int varid, const char* att) const {
    size_t len = 0;
    if (nc_inq_attlen(id, varid, att, &len) != NC_NOERR) return "<missing>";
    std::string s(len, '\0');
    nc_get_att_text(id, varid, att, s.data());
    return s;
  }
  double att_double(int varid, const char* att) const {
    double x = std::numeric_limits<double>::quiet_NaN();
    nc_get_att_double(id, varid, att, &x);
    return x;
  }
  // Decoded values of a packed variable (fill -> NaN), all of it.
  std::vector<double> unpacked(const char* name) const {
    const int v = var(name);
    int ndims = 0;
    nc_inq_varndims(id, v, &ndims);
    std::vector<int> dims(ndims);
    nc_inq_vardimid(id, v, dims.data());
    size_t n = 1;
    for (int d : dims) {
      size_t len = 0;
      nc_inq_dimlen(id, d, &len);
      n *= len;
    }
    std::vector<short> raw(n);
    EXPECT_EQ(nc_get_var_short(id, v, raw.data()), NC_NOERR);
    short fill = 0;
    nc_get_att_short(id, v, "_FillValue", &fill);
    const double sf = att_double(v, "scale_factor"), off = att_double(v, "add_offset");
    std::vector<double> out(n);
    for (size_t k = 0; k < n; ++k)
      out[k] = raw[k] == fill ? std::numeric_limits<double>::quiet_NaN() : raw[k] * sf + off;
    return out;
  }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

fs::path fresh_dir(const std::string& tag) {
  std::random_device rd;
  auto d = fs::temp_directory_path() / fmt::format("seqvit_synth_{}_{}_{}", tag, ::getpid(), rd());
  fs::create_directories(d);
  return d;
}

constexpr int kDays = 10;

class SynthTest : public ::testing::Test {
 protected:
  // One 10-day run shared by the tests of this suite (ctest runs each test in its own process,
  // so the suite set-up is kept to one run; the determinism test makes its own two more).
  static std::vector<std::string> generate(const std::string& name, uint64_t seed,
                                           int* calls = nullptr) {
    data::SynthSpec s;
    s.out_dir = (*root_ / name).string();
    s.seed = seed;
    s.days = kDays;
    s.spinup_days = 30;
    return data::synthesize(s, [calls](const data::SynthProgress&) {
      if (calls) ++*calls;
    });
  }
  static void SetUpTestSuite() {
    root_ = new fs::path(fresh_dir("suite"));
    int calls = 0;
    files_ = new std::vector<std::string>(generate("a", 7, &calls));
    progress_calls_ = calls;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*root_, ec);
    delete root_;
    delete files_;
  }
  static fs::path a(const std::string& rel) { return *root_ / "a" / rel; }
  static inline fs::path* root_ = nullptr;
  static inline std::vector<std::string>* files_ = nullptr;
  static inline int progress_calls_ = 0;
};

const char* kT2m = "2m_temperature/2m_temperature_1979_5.625deg.nc";
const char* kZ = "geopotential/geopotential_1979_5.625deg.nc";
const char* kT = "temperature/temperature_1979_5.625deg.nc";
const char* kU10 = "10m_u_component_of_wind/10m_u_component_of_wind_1979_5.625deg.nc";
const char* kV10 = "10m_v_component_of_wind/10m_v_component_of_wind_1979_5.625deg.nc";
const char* kLsm = "constants/land_sea_mask_5.625deg.nc";
const char* kOrog = "constants/orography_5.625deg.nc";

TEST_F(SynthTest, WritesTheEra5LayoutAndNoTemporaries) {
  EXPECT_EQ(files_->size(), 7u);
  EXPECT_GT(progress_calls_, kDays);
  for (const char* rel : {kT2m, kZ, kT, kU10, kV10, kLsm, kOrog})
    EXPECT_TRUE(fs::exists(a(rel))) << rel;
  for (auto& e : fs::recursive_directory_iterator(*root_ / "a"))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(SynthTest, CoordinatesAndCfAttributes) {
  NcFile f(a(kZ));
  int format = 0;
  nc_inq_format(f.id, &format);
  EXPECT_EQ(format, NC_FORMAT_64BIT_OFFSET);
  EXPECT_EQ(f.text(NC_GLOBAL, "Conventions"), "CF-1.6");
  EXPECT_NE(f.text(NC_GLOBAL, "history").find("seqvit"), std::string::npos);
  ASSERT_EQ(f.dim("latitude"), 32u);
  ASSERT_EQ(f.dim("longitude"), 64u);
  ASSERT_EQ(f.dim("level"), 2u);
  ASSERT_EQ(f.dim("time"), static_cast<size_t>(4 * kDays));

  std::vector<float> lat(32), lon(64);
  nc_ok(nc_get_var_float(f.id, f.var("latitude"), lat.data()), "latitude");
  nc_ok(nc_get_var_float(f.id, f.var("longitude"), lon.data()), "longitude");
  EXPECT_FLOAT_EQ(lat.front(), 87.1875f);
  EXPECT_FLOAT_EQ(lat.back(), -87.1875f);
  for (int j = 1; j < 32; ++j) EXPECT_FLOAT_EQ(lat[j - 1] - lat[j], 5.625f);  // descending
  EXPECT_FLOAT_EQ(lon.front(), 0.0f);
  for (int i = 1; i < 64; ++i) EXPECT_FLOAT_EQ(lon[i] - lon[i - 1], 5.625f);
  EXPECT_EQ(f.text(f.var("latitude"), "units"), "degrees_north");
  EXPECT_EQ(f.text(f.var("longitude"), "units"), "degrees_east");

  int levels[2];
  nc_ok(nc_get_var_int(f.id, f.var("level"), levels), "level");
  EXPECT_EQ(levels[0], 500);
  EXPECT_EQ(levels[1], 850);
  EXPECT_EQ(f.text(f.var("level"), "units"), "millibars");

  const int tv = f.var("time");
  nc_type tt;
  nc_inq_vartype(f.id, tv, &tt);
  EXPECT_EQ(tt, NC_INT);
  EXPECT_EQ(f.text(tv, "units"), "hours since 1900-01-01 00:00:00.0");
  std::vector<int> hours(4 * kDays);
  nc_ok(nc_get_var_int(f.id, tv, hours.data()), "time");
  EXPECT_EQ(hours[0], 692496);  // 1979-01-01 00:00, as in ERA5 files
  EXPECT_EQ(data::hours_since_1900(1979), 692496);
  for (size_t k = 1; k < hours.size(); ++k) EXPECT_EQ(hours[k] - hours[k - 1], 6);

  const int zv = f.var("z");
  nc_type zt;
  nc_inq_vartype(f.id, zv, &zt);
  EXPECT_EQ(zt, NC_SHORT);
  int dims[4];
  nc_inq_vardimid(f.id, zv, dims);
  char dn[NC_MAX_NAME + 1];
  const char* expect[] = {"time", "level", "latitude", "longitude"};
  for (int d = 0; d < 4; ++d) {
    nc_inq_dimname(f.id, dims[d], dn);
    EXPECT_STREQ(dn, expect[d]);
  }
  EXPECT_EQ(f.text(zv, "units"), "m**2 s**-2");
  EXPECT_EQ(f.text(zv, "standard_name"), "geopotential");
  EXPECT_EQ(f.text(zv, "long_name"), "Geopotential");
  short fill = 0, missing = 0;
  nc_ok(nc_get_att_short(f.id, zv, "_FillValue", &fill), "_FillValue");
  nc_ok(nc_get_att_short(f.id, zv, "missing_value", &missing), "missing_value");
  EXPECT_EQ(fill, -32767);
  EXPECT_EQ(missing, -32767);
  EXPECT_GT(f.att_double(zv, "scale_factor"), 0.0);

  for (const char* rel : {kT2m, kT, kU10, kV10}) {
    NcFile g(a(rel));
    int nvars = 0;
    nc_inq_nvars(g.id, &nvars);
    EXPECT_GE(nvars, 4);
    EXPECT_EQ(g.text(NC_GLOBAL, "Conventions"), "CF-1.6");
  }
  NcFile t2m(a(kT2m));
  EXPECT_EQ(t2m.text(t2m.var("t2m"), "units"), "K");
  EXPECT_EQ(t2m.text(t2m.var("t2m"), "standard_name"), "air_temperature");
  NcFile u10(a(kU10));
  EXPECT_EQ(u10.text(u10.var("u10"), "units"), "m s**-1");

  // Constants: no time dimension.
  NcFile c(a(kOrog));
  int unused;
  EXPECT_NE(nc_inq_dimid(c.id, "time", &unused), NC_NOERR);
  EXPECT_EQ(c.text(c.var("orography"), "units"), "m**2 s**-2");
  NcFile l(a(kLsm));
  const auto lsm = l.unpacked("lsm");
  double land = 0;
  for (double x : lsm) {
    EXPECT_GE(x, -1e-4);
    EXPECT_LE(x, 1 + 1e-4);
    land += x;
  }
  land /= lsm.size();
  EXPECT_GT(land, 0.1);  // grid-point fraction (area fraction is ~0.3)
  EXPECT_LT(land, 0.6);
  const auto orog = c.unpacked("orography");
  double top = 0;
  for (size_t k = 0; k < orog.size(); ++k) {
    top = std::max(top, orog[k]);
    if (lsm[k] < 1e-3) EXPECT_NEAR(orog[k], 0.0, 1.0);  // sea at sea level
  }
  EXPECT_GT(top, 9.8 * 500);    // some mountains
  EXPECT_LT(top, 9.81 * 6000);
}

TEST_F(SynthTest, PhysicallySensible) {
  NcFile ft(a(kT2m)), fz(a(kZ)), fu(a(kU10)), fv(a(kV10)), ftt(a(kT));
  const auto t2m = ft.unpacked("t2m"), z = fz.unpacked("z"), u = fu.unpacked("u10"),
             v = fv.unpacked("v10"), t = ftt.unpacked("t");
  const int H = 32, W = 64, R = 4 * kDays;
  const size_t n = H * W;
  std::vector<double> w(H);
  double wsum = 0;
  for (int j = 0; j < H; ++j) w[j] = std::cos((87.1875 - 5.625 * j) * M_PI / 180), wsum += w[j] * W;
  auto wmean = [&](const std::vector<double>& x, size_t off) {
    double s = 0;
    for (int j = 0; j < H; ++j)
      for (int i = 0; i < W; ++i) s += w[j] * x[off + j * W + i];
    return s / wsum;
  };
  for (int r = 0; r < R; ++r) {
    const double tm = wmean(t2m, r * n), z500 = wmean(z, 2 * r * n), t850 = wmean(t, (2 * r + 1) * n);
    EXPECT_GT(tm, 270.0) << "record " << r;
    EXPECT_LT(tm, 300.0) << "record " << r;
    EXPECT_GT(z500, 5.0e4);
    EXPECT_LT(z500, 5.9e4);
    EXPECT_GT(t850, 255.0);
    EXPECT_LT(t850, 290.0);
  }
  double umax = 0, urms = 0;
  for (size_t k = 0; k < u.size(); ++k) {
    ASSERT_FALSE(std::isnan(t2m[k]) || std::isnan(u[k]) || std::isnan(v[k])) << k;
    umax = std::max({umax, std::abs(u[k]), std::abs(v[k])});
    urms += u[k] * u[k] + v[k] * v[k];
  }
  for (double x : z) ASSERT_FALSE(std::isnan(x));
  urms = std::sqrt(urms / u.size());
  EXPECT_LT(umax, 100.0);
  EXPECT_GT(urms, 1.0);  // there is wind
  EXPECT_LT(urms, 25.0);
  for (size_t k = 0; k < n; ++k) {  // z500 everywhere in a plausible range
    EXPECT_GT(z[k], 4.4e4);
    EXPECT_LT(z[k], 6.2e4);
  }
  // Equator warmer than poles.
  EXPECT_GT(t2m[16 * W] + t2m[15 * W], t2m[0] + t2m[31 * W] + 40.0);

  // The fields evolve: z500 anomalies change over the 10 days; 6-hourly changes are smaller
  // than 10-day changes (weather, not noise).
  auto rms_diff = [&](const std::vector<double>& x, size_t stride, int r0, int r1) {
    double s = 0;
    for (size_t k = 0; k < n; ++k) {
      const double d = x[r1 * stride + k] - x[r0 * stride + k];
      s += d * d;
    }
    return std::sqrt(s / n);
  };
  const double dz6 = rms_diff(z, 2 * n, 0, 1), dz10d = rms_diff(z, 2 * n, 0, R - 1);
  EXPECT_GT(dz10d, 50.0);
  EXPECT_GT(dz10d, 1.5 * dz6);
  EXPECT_GT(rms_diff(t2m, n, 0, R - 1), 0.3);

  // Structure at many scales: zonal spectrum of z500 and t2m (rows between 60S and 60N) has a
  // non-negligible share (> 0.5%; about 4% in a year) of its eddy variance at wave numbers >= 8.
  auto small_scale_share = [&](const std::vector<double>& x, size_t stride) {
    double small = 0, total = 0;
    for (int r = 0; r < R; ++r)
      for (int j = 5; j < H - 5; ++j) {
        const double* row = &x[r * stride + j * W];
        for (int m = 1; m <= W / 2; ++m) {
          std::complex<double> c = 0;
          for (int i = 0; i < W; ++i) c += row[i] * std::polar(1.0, -2 * M_PI * m * i / W);
          const double p = std::norm(c);
          total += p;
          if (m >= 8) small += p;
        }
      }
    return small / total;
  };
  const double sz = small_scale_share(z, 2 * n), st = small_scale_share(t2m, n);
  EXPECT_GT(sz, 5e-3) << "z500 small-scale share";
  EXPECT_GT(st, 5e-3) << "t2m small-scale share";
  EXPECT_LT(sz, 0.5);
}

TEST_F(SynthTest, DeterministicFromTheSeed) {
  generate("b", 7);
  generate("c", 8);
  for (const char* rel : {kT2m, kZ, kT, kU10, kV10, kLsm, kOrog}) {
    const auto x = slurp(*root_ / "a" / rel), y = slurp(*root_ / "b" / rel),
               z = slurp(*root_ / "c" / rel);
    EXPECT_FALSE(x.empty()) << rel;
    EXPECT_EQ(x, y) << rel << ": same seed, different bytes";
    EXPECT_NE(x, z) << rel << ": different seeds, same bytes";
  }
}

// Several years on a coarse 8x16 grid (cheap): one file per variable per year, a leap year
// with 1464 records, and a time axis that continues across the year boundary.
TEST(SynthYearsTest, ConsecutiveYearsAndLeapYears) {
  const auto dir = fresh_dir("years");
  data::SynthSpec s;
  s.out_dir = dir.string();
  s.H = 8, s.W = 16, s.years = 2, s.start_year = 1979, s.seed = 3, s.spinup_days = 5;
  const auto files = data::synthesize(s);
  EXPECT_EQ(files.size(), 2u + 2u * 5u);
  int last_1979 = 0;
  for (int year : {1979, 1980}) {
    NcFile f(dir / fmt::format("2m_temperature/2m_temperature_{}_22.5deg.nc", year));
    const size_t nt = f.dim("time");
    EXPECT_EQ(nt, year == 1980 ? 1464u : 1460u);
    std::vector<int> hours(nt);
    nc_ok(nc_get_var_int(f.id, f.var("time"), hours.data()), "time");
    EXPECT_EQ(hours.front(), data::hours_since_1900(year));
    if (year == 1980) EXPECT_EQ(hours.front() - last_1979, 6);
    last_1979 = hours.back();
    const auto t2m = f.unpacked("t2m");
    for (double x : t2m) {
      ASSERT_GT(x, 200.0);
      ASSERT_LT(x, 330.0);
    }
  }
  EXPECT_EQ(data::hours_since_1900(1980) - data::hours_since_1900(1979), 365 * 24);
  EXPECT_EQ(data::hours_since_1900(1981) - data::hours_since_1900(1980), 366 * 24);
  fs::remove_all(dir);
}

TEST(SynthWriterTest, PackingRoundTripAndFill) {
  const auto dir = fresh_dir("writer");
  const std::vector<double> lat{60, 0, -60}, lon{0, 90, 180, 270};
  data::synth::NcVariableSpec spec{"x", "K", "test", "air_temperature", 200.0, 320.0, {850}, true};
  const auto path = (dir / "x.nc").string();
  std::mt19937_64 gen(3);
  std::uniform_real_distribution<double> dist(200.0, 320.0);
  std::vector<std::vector<double>> recs(3, std::vector<double>(12));
  for (auto& r : recs)
    for (auto& x : r) x = dist(gen);
  recs[1][5] = std::numeric_limits<double>::quiet_NaN();
  recs[2][0] = 200.0, recs[2][1] = 320.0;  // the ends of the range
  double scale = 0;
  {
    data::synth::NcPackedWriter w(path, spec, lat, lon, 3, "test");
    scale = w.scale_factor();
    for (int r = 0; r < 3; ++r) w.write(r, 100 + 6 * r, recs[r]);
    EXPECT_FALSE(fs::exists(path));  // not in place before close()
    w.close();
  }
  NcFile f(path);
  const auto back = f.unpacked("x");
  ASSERT_EQ(back.size(), 36u);
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 12; ++k) {
      const double want = recs[r][k], got = back[r * 12 + k];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got));
        continue;
      }
      EXPECT_LE(std::abs(got - want), scale / 2 * (1 + 1e-9)) << r << "," << k;
    }
  // Out-of-range values are an error, not silently clipped.
  data::synth::NcPackedWriter w2((dir / "y.nc").string(), spec, lat, lon, 1, "test");
  std::vector<double> bad(12, 250.0);
  bad[3] = 400.0;
  EXPECT_THROW(w2.write(0, 0, bad), Error);
  fs::remove_all(dir);
}

TEST(SynthWriterTest, InterruptedWriteLeavesNoFile) {
  const auto dir = fresh_dir("interrupt");
  const std::vector<double> lat{45, -45}, lon{0, 180};
  data::synth::NcVariableSpec spec{"x", "K", "test", "", 0.0, 1.0, {}, true};
  {
    data::synth::NcPackedWriter w((dir / "x.nc").string(), spec, lat, lon, 4, "test");
    w.write(0, 0, std::vector<double>(4, 0.5));
    EXPECT_THROW(w.close(), Error);  // 1 of 4 records
  }
  {
    data::synth::NcPackedWriter w((dir / "y.nc").string(), spec, lat, lon, 4, "test");
    w.write(0, 0, std::vector<double>(4, 0.5));
  }  // destroyed without close, as by an exception unwinding
  EXPECT_TRUE(fs::is_empty(dir)) << "no final and no temporary file";
  fs::remove_all(dir);
}

TEST(SynthSpecTest, BadSpecsNameTheValue) {
  data::SynthSpec s;
  s.out_dir = "/nonexistent-unused";
  s.H = 30, s.W = 64;
  try {
    data::synthesize(s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("30x64"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("32x64"), std::string::npos) << e.what();
  }
  s.H = 32;
  s.years = 0;
  EXPECT_THROW(data::synthesize(s), Error);
  s.years = 2, s.days = 5;
  EXPECT_THROW(data::synthesize(s), Error);
  // An output directory that cannot be created (its parent is a regular file).
  const auto dir = fresh_dir("badout");
  std::ofstream(dir / "file") << "x";
  s.years = 1, s.days = 1, s.spinup_days = 0;
  s.out_dir = (dir / "file" / "out").string();
  try {
    data::synthesize(s);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create output directory"), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

// Mass (the area integral of phi) is conserved to round-off by the unforced dynamics, including
// the polar filter and the hyperdiffusion; the forced model stays bounded.
TEST(ShallowWaterTest, ConservesMassWithoutForcing) {
  const int H = 32, W = 64;
  std::vector<double> lsm(H * W, 0.0), orog(H * W, 0.0);
  for (int k = 0; k < H * W; ++k) {
    lsm[k] = (k * 7919 % 13) < 4 ? 1.0 : 0.0;
    orog[k] = lsm[k] * 9.8 * 1000.0 * ((k % 5) / 4.0);
  }
  data::synth::ShallowWaterParams p;
  p.forcing = false;
  data::synth::ShallowWater m(p, lsm, orog, 1);
  m.init(100 * 86400.0);  // start out of balance (rest + seasonal gradient)
  const double m0 = m.mass();
  for (int s = 0; s < 400; ++s) m.step();
  EXPECT_NEAR(m.mass() / m0, 1.0, 1e-12);
  double vmax = 0;
  for (size_t k = 0; k < m.u().size(); ++k) vmax = std::max(vmax, std::abs(m.v()[k]));
  EXPECT_GT(vmax, 0.1);  // it moved
  EXPECT_LT(vmax, 150.0);
}

}  // namespace
