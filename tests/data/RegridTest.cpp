// Regridding (src/data/regrid.h): conservation of the area integral, identity on identical grids,
// invariance to latitude order and longitude convention, missing cells against a brute-force
// 4-D overlap oracle and a hand-computed case, bilinear exactness on linear functions, grid
// strings, Gaussian latitudes, the weights cache, agreement with CDO's remapcon (run at test
// time on files written here: 0.25-degree 721 x 1440 with poles, and a Gaussian N48 grid), and
// RegriddedSource.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "data/netcdf_reader.h"
#include "data/nc_test_writer.h"
#include "data/regrid.h"
#include "data/regridded_source.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using namespace seqvit::data;
using seqvit::Error;

namespace {

constexpr double kDeg = 3.14159265358979323846 / 180.0;

// Regular grid: H rows from lat0 by dlat, W columns from lon0 by dlon.
LatLonGrid regular(int H, double lat0, double dlat, int W, double lon0, double dlon) {
  return {nctest::range(lat0, dlat, H), nctest::range(lon0, dlon, W)};
}

LatLonGrid quarter_degree() { return regular(721, 90, -0.25, 1440, 0, 0.25); }

LatLonGrid gaussian(int H, int W) {
  LatLonGrid g;
  std::vector<double> w;
  gauss_legendre_latitudes(H, g.lat, w);
  g.lon = nctest::range(0, 360.0 / W, W);
  return g;
}

// A smooth large-scale pattern plus noise, in physical-ish units.
std::vector<float> test_field(const LatLonGrid& g, uint64_t seed, double noise = 5.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-noise, noise);
  std::vector<float> f(static_cast<size_t>(g.H() * g.W()));
  for (int64_t i = 0; i < g.H(); ++i)
    for (int64_t j = 0; j < g.W(); ++j) {
      const double la = g.lat[i] * kDeg, lo = g.lon[j] * kDeg;
      f[i * g.W() + j] = static_cast<float>(
          280 + 30 * std::cos(la) + 8 * std::sin(2 * lo) * std::cos(la) + 4 * std::sin(3 * la) + u(rng));
    }
  return f;
}

// sum over cells of value * area (unit sphere), skipping NaN; and the total area counted.
double area_integral(const LatLonGrid& g, const std::vector<float>& f, double* area = nullptr) {
  const LatBounds lb = latitude_bounds(g.lat);
  const LonBounds wb = longitude_bounds(g.lon);
  double s = 0, a = 0;
  for (int64_t i = 0; i < g.H(); ++i)
    for (int64_t j = 0; j < g.W(); ++j) {
      const double c = (lb.sin_north[i] - lb.sin_south[i]) * (wb.east[j] - wb.west[j]) * kDeg;
      const float v = f[i * g.W() + j];
      if (!std::isnan(v)) s += c * v, a += c;
    }
  if (area) *area = a;
  return s;
}

std::vector<float> regrid(const LatLonGrid& s, const LatLonGrid& t, const std::vector<float>& f,
                          RegridOptions opt = {}, int64_t* missing = nullptr) {
  Regridder r(s, t, opt);
  std::vector<float> out(static_cast<size_t>(t.H() * t.W()));
  const int64_t m = r.apply(f.data(), out.data());
  if (missing) *missing = m;
  return out;
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t p = 0; p < a.size(); ++p) {
    EXPECT_EQ(std::isnan(a[p]), std::isnan(b[p])) << "at " << p;
    if (!std::isnan(a[p])) m = std::max(m, std::abs(double(a[p]) - b[p]) / std::abs(double(b[p])));
  }
  return m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class RegridDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("seqvit_regrid_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& n) const { return (dir_ / n).string(); }
  fs::path dir_;
};

}  // namespace

TEST(RegridTest, EquiangularGridAndGridStrings) {
  const LatLonGrid g = parse_grid("32x64");
  ASSERT_EQ(g.H(), 32);
  ASSERT_EQ(g.W(), 64);
  EXPECT_DOUBLE_EQ(g.lat.front(), 87.1875);  // north to south, centred: 90 - 5.625 / 2
  EXPECT_DOUBLE_EQ(g.lat.back(), -87.1875);
  EXPECT_DOUBLE_EQ(g.lon.front(), 0.0);
  EXPECT_DOUBLE_EQ(g.lon[1], 5.625);
  const LatLonGrid odd = parse_grid(" 45X90 ");  // H odd: a row centred on the equator
  EXPECT_EQ(odd.H(), 45);
  EXPECT_NEAR(odd.lat[22], 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(odd.lat[0], 88.0);
  for (const std::string bad : {"32", "32x", "x64", "-32x64", "32x64x2", "abc", "32.5x64", "",
                                "32 by 64"}) {
    const std::string msg = error_of([&] { parse_grid(bad); });
    EXPECT_NE(msg.find("grid '" + bad + "' is not of the form HxW"), std::string::npos) << msg;
    EXPECT_NE(msg.find("e.g. 32x64"), std::string::npos) << msg;
  }
  for (const std::string bad : {"0x64", "32x0", "0x0"}) {
    const std::string msg = error_of([&] { parse_grid(bad); });
    EXPECT_NE(msg.find("grid '" + bad + "': H and W must be positive"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([] { parse_grid("200000x10"); }).find("at most 100000"), std::string::npos);
  EXPECT_NE(error_of([] { parse_regrid_method("nearest"); })
                .find("unknown regridding method 'nearest'; use conservative or bilinear"),
            std::string::npos);
}

TEST(RegridTest, GaussianLatitudesAndTheirEdges) {
  std::vector<double> lat, w;
  gauss_legendre_latitudes(64, lat, w);
  EXPECT_NEAR(lat[0], 87.8637988392326, 1e-11);  // CDO's n32 (cdo griddes)
  EXPECT_NEAR(lat[31], 1.3953069108195, 1e-11);
  double sw = 0;
  for (double x : w) sw += x;
  EXPECT_NEAR(sw, 2.0, 1e-13);
  const LatBounds b = latitude_bounds(lat);
  EXPECT_TRUE(b.gaussian);
  EXPECT_EQ(b.sin_north[0], 1.0);
  EXPECT_EQ(b.sin_south[63], -1.0);
  for (int k = 0; k < 64; ++k) {
    EXPECT_NEAR(b.sin_north[k] - b.sin_south[k], w[k], 1e-14);
    if (k > 0) EXPECT_EQ(b.sin_north[k], b.sin_south[k - 1]);
  }
  // Stored as float32 (1e-6 degrees off) still Gaussian; 1e-3 degrees off is not.
  std::vector<double> f32(lat.begin(), lat.end()), off(lat.begin(), lat.end());
  for (auto& x : f32) x = static_cast<float>(x);
  off[10] += 1e-3;
  EXPECT_TRUE(latitude_bounds(f32).gaussian);
  EXPECT_FALSE(latitude_bounds(off).gaussian);
  // A regular grid with poles: midway edges, the pole rows half-height.
  const LatBounds q = latitude_bounds(quarter_degree().lat);
  EXPECT_FALSE(q.gaussian);
  EXPECT_EQ(q.sin_north[0], 1.0);
  EXPECT_NEAR(q.sin_south[0], std::sin(89.875 * kDeg), 1e-15);
  EXPECT_NEAR(q.sin_north[360] - q.sin_south[360], 2 * std::sin(0.125 * kDeg), 1e-15);
  // Longitude edges: periodic for global grids in any convention, regional otherwise.
  const LonBounds p = longitude_bounds(nctest::range(-180, 90, 4));
  EXPECT_TRUE(p.periodic);
  for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(p.east[j] - p.west[j], 90.0);
  const LonBounds r = longitude_bounds({-10, -5, 0, 5, 10});  // across 0 E
  EXPECT_FALSE(r.periodic);
  EXPECT_DOUBLE_EQ(r.west[0], 347.5);  // -12.5, unrolled onto [0, 360)
  EXPECT_DOUBLE_EQ(r.east[4], 372.5);
  EXPECT_NE(error_of([] { longitude_bounds({0, 90, 360}); })
                .find("longitudes 0 and 360 (columns 0 and 2) are the same meridian"),
            std::string::npos);
  EXPECT_NE(error_of([] { latitude_bounds({10, 91}); }).find("latitude 91 is outside [-90, 90]"),
            std::string::npos);
  EXPECT_NE(error_of([] { latitude_bounds({10, 20, 10}); }).find("latitude 10 appears twice"),
            std::string::npos);
}

// The area integral of a field without missing values is conserved (to 1e-6 relative; measured
// about 1e-9, the float32 rounding of the outputs), for aligned and non-aligned targets.
TEST(RegridTest, ConservesTheAreaIntegral) {
  const LatLonGrid src = quarter_degree();
  const std::vector<float> f = test_field(src, 1, 50.0);
  double asrc = 0;
  const double is = area_integral(src, f, &asrc);
  EXPECT_NEAR(asrc, 4 * 3.14159265358979323846, 1e-9);
  for (const auto& [H, W] : {std::pair{32, 64}, std::pair{128, 256}, std::pair{45, 90},
                             std::pair{1, 1}, std::pair{17, 33}}) {
    const LatLonGrid t = equiangular_grid(H, W);
    int64_t missing = -1;
    const std::vector<float> out = regrid(src, t, f, {}, &missing);
    EXPECT_EQ(missing, 0);
    const double it = area_integral(t, out);
    std::printf("721x1440 -> %dx%d: relative change of the area integral %.2g\n", H, W,
                std::abs(it - is) / std::abs(is));
    EXPECT_LT(std::abs(it - is) / std::abs(is), 1e-6) << H << "x" << W;
  }
  // A Gaussian source (edges from the quadrature weights) and a mean-free field.
  const LatLonGrid gs = gaussian(96, 192);
  std::vector<float> g = test_field(gs, 2, 50.0);
  for (auto& x : g) x -= 280;
  const double ig = area_integral(gs, g);
  const LatLonGrid t = equiangular_grid(32, 64);
  const double rel = std::abs(area_integral(t, regrid(gs, t, g)) - ig) / std::abs(ig);
  std::printf("Gaussian 96x192 -> 32x64 (mean-free field): relative change %.2g\n", rel);
  EXPECT_LT(rel, 1e-6);
}

TEST(RegridTest, IdenticalGridsGiveTheIdentity) {
  for (const LatLonGrid& g : {quarter_degree(), gaussian(96, 192), equiangular_grid(45, 90)}) {
    std::vector<float> f = test_field(g, 3);
    f[5] = std::nanf("");
    for (auto method : {RegridMethod::conservative, RegridMethod::bilinear}) {
      int64_t missing = -1;
      const std::vector<float> out = regrid(g, g, f, {method}, &missing);
      EXPECT_EQ(missing, 1);
      for (size_t p = 0; p < f.size(); ++p)
        if (p == 5)
          EXPECT_TRUE(std::isnan(out[p]));
        else
          ASSERT_EQ(out[p], f[p]) << p << " " << g.H() << "x" << g.W();
    }
  }
}

// Latitude stored south to north, longitudes -180..180 or in a scrambled order, and a target
// listed in another order: the same values, moved with their coordinates.
TEST(RegridTest, InvariantToLatitudeOrderAndLongitudeConvention) {
  const LatLonGrid a = regular(90, 89, -2, 180, 0, 2);  // north to south, 0..358
  const std::vector<float> fa = test_field(a, 4);
  const LatLonGrid t = equiangular_grid(32, 64);
  for (auto method : {RegridMethod::conservative, RegridMethod::bilinear}) {
    const std::vector<float> ref = regrid(a, t, fa, {method});
    // b: south to north, -180..178; the same physical field.
    const LatLonGrid b = regular(90, -89, 2, 180, -180, 2);
    std::vector<float> fb(fa.size());
    for (int i = 0; i < 90; ++i)
      for (int j = 0; j < 180; ++j) fb[i * 180 + j] = fa[(89 - i) * 180 + (j + 90) % 180];
    EXPECT_LT(max_rel_diff(regrid(b, t, fb, {method}), ref), 1e-6);
    // c: columns scrambled; target listed south to north with longitudes -180..174.375.
    LatLonGrid c = a;
    std::vector<int> perm(180);
    for (int j = 0; j < 180; ++j) perm[j] = (j * 7) % 180;  // 7 is coprime with 180
    std::vector<float> fc(fa.size());
    for (int j = 0; j < 180; ++j) {
      c.lon[j] = a.lon[perm[j]];
      for (int i = 0; i < 90; ++i) fc[i * 180 + j] = fa[i * 180 + perm[j]];
    }
    LatLonGrid t2 = t;
    std::reverse(t2.lat.begin(), t2.lat.end());
    for (int j = 0; j < 64; ++j) t2.lon[j] = -180 + 5.625 * j;
    const std::vector<float> out = regrid(c, t2, fc, {method});
    std::vector<float> back(out.size());
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < 64; ++j) back[(31 - i) * 64 + (j + 32) % 64] = out[i * 64 + j];
    EXPECT_LT(max_rel_diff(back, ref), 1e-6);
  }
}

// Brute force over every (target cell, source cell) pair: overlap area from the cell bounds,
// the value the valid-area-weighted mean, NaN below the threshold. Independent of the separable
// sparse code.
std::vector<float> oracle(const LatLonGrid& s, const LatLonGrid& t, const std::vector<float>& f,
                          double thr) {
  const LatBounds sl = latitude_bounds(s.lat), tl = latitude_bounds(t.lat);
  const LonBounds sw = longitude_bounds(s.lon), tw = longitude_bounds(t.lon);
  std::vector<float> out(static_cast<size_t>(t.H() * t.W()));
  for (int64_t i = 0; i < t.H(); ++i)
    for (int64_t j = 0; j < t.W(); ++j) {
      double num = 0, den = 0;
      for (int64_t k = 0; k < s.H(); ++k) {
        const double a = std::min(tl.sin_north[i], sl.sin_north[k]) -
                         std::max(tl.sin_south[i], sl.sin_south[k]);
        if (a <= 0) continue;
        for (int64_t l = 0; l < s.W(); ++l) {
          double b = 0;
          for (int n = -1; n <= 1; ++n)
            b += std::max(0.0, std::min(tw.east[j], sw.east[l] + 360 * n) -
                                   std::max(tw.west[j], sw.west[l] + 360 * n));
          const float v = f[k * s.W() + l];
          if (b > 0 && !std::isnan(v)) num += a * b * v, den += a * b;
        }
      }
      const double area = (tl.sin_north[i] - tl.sin_south[i]) * (tw.east[j] - tw.west[j]);
      out[i * t.W() + j] = den > 0 && den / area >= thr - 1e-9 ? float(num / den) : std::nanf("");
    }
  return out;
}

TEST(RegridTest, MissingCellsExcludedWithTheirArea) {
  // Hand-computed: source 2x4 (lat +-45, lon 0/90/180/270), target 1x2 (cells lon -90..90 and
  // 90..270). Target 0 covers column 0 fully and half of columns 90 and 270, both rows equally.
  const LatLonGrid s = equiangular_grid(2, 4), t = equiangular_grid(1, 2);
  std::vector<float> f = {1, 2, 8, 4,   // north
                          1, 2, 8, 4};  // south
  EXPECT_FLOAT_EQ(regrid(s, t, f)[0], 2.0f);  // (90*1 + 45*2 + 45*4) / 180
  f[0] = std::nanf("");                       // valid fraction 0.75 of target 0
  for (double thr : {0.0, 0.5, 0.75}) {
    int64_t missing = -1;
    const auto out = regrid(s, t, f, {RegridMethod::conservative, thr}, &missing);
    EXPECT_FLOAT_EQ(out[0], 630.0f / 270.0f) << thr;  // (270 + 360) / (90 + 180)
    EXPECT_EQ(missing, 0);
  }
  int64_t missing = -1;
  auto out = regrid(s, t, f, {RegridMethod::conservative, 0.8}, &missing);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_FLOAT_EQ(out[1], 5.5f);  // (45*2 + 90*8 + 45*4) / 180, untouched
  EXPECT_EQ(missing, 1);
  // Everything missing in a target cell: NaN even with threshold 0.
  for (int p : {0, 1, 3, 4, 5, 7}) f[p] = std::nanf("");
  out = regrid(s, t, f, {RegridMethod::conservative, 0.0}, &missing);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_FLOAT_EQ(out[1], 8.0f);
  EXPECT_EQ(missing, 1);

  // Random: 30% missing on a 20x40 grid onto non-aligned 7x13 and 9x11 targets, against the
  // brute-force oracle, for several thresholds.
  const LatLonGrid s2 = equiangular_grid(20, 40);
  std::vector<float> g = test_field(s2, 5);
  std::mt19937 rng(6);
  for (auto& x : g)
    if (rng() % 10 < 3) x = std::nanf("");
  for (const LatLonGrid& t2 : {equiangular_grid(7, 13), regular(9, -80, 20, 11, -170, 30),
                               regular(3, 30, -20, 4, 10, 15)})  // the last: regional
    for (double thr : {0.0, 0.5, 0.9}) {
      const auto got = regrid(s2, t2, g, {RegridMethod::conservative, thr}, &missing);
      const auto want = oracle(s2, t2, g, thr);
      EXPECT_LT(max_rel_diff(got, want), 1e-6);
      int64_t nan = 0;
      for (float x : want) nan += std::isnan(x);
      EXPECT_EQ(missing, nan);
      if (thr == 0.9) EXPECT_GT(nan, 0);
    }
  // A regional source across 0 E (lon -20..20, lat 10..-10) onto 10-degree cells: cells outside
  // it are missing, cells on its border are valid by the share they cover.
  const LatLonGrid reg = regular(5, 10, -5, 9, -20, 5);
  const std::vector<float> fr = test_field(reg, 11);
  for (double thr : {0.0, 0.5, 1.0}) {
    const LatLonGrid t3 = equiangular_grid(18, 36);
    const auto got = regrid(reg, t3, fr, {RegridMethod::conservative, thr}, &missing);
    EXPECT_LT(max_rel_diff(got, oracle(reg, t3, fr, thr)), 1e-6);
    int64_t valid = 0;
    for (float x : got) valid += !std::isnan(x);
    // The source spans 12.5..-12.5 N and -22.5..22.5 E: it touches 4 target rows (20..-20) and
    // 5 columns (-25..25); it covers 2 rows (10..-10) and 3 columns (-15..15) fully.
    EXPECT_EQ(valid, thr == 0.0 ? 4 * 5 : thr == 1.0 ? 2 * 3 : valid) << thr;
  }
  EXPECT_NE(error_of([&] { (void)Regridder(s, t, {RegridMethod::conservative, 1.5}); })
                .find("min_valid_fraction 1.5 must lie in [0, 1]"),
            std::string::npos);
}

TEST(RegridTest, BilinearIsExactOnLinearFunctions) {
  for (const LatLonGrid& s : {regular(90, 89, -2, 180, 0, 2), gaussian(48, 96)}) {
    std::vector<float> f(static_cast<size_t>(s.H() * s.W()));
    auto lin = [](double la, double lo) { return 3 + 0.5 * la + 0.25 * lo + 0.01 * la * lo; };
    for (int64_t i = 0; i < s.H(); ++i)
      for (int64_t j = 0; j < s.W(); ++j) f[i * s.W() + j] = float(lin(s.lat[i], s.lon[j]));
    const LatLonGrid t = equiangular_grid(45, 90);
    const auto out = regrid(s, t, f, {RegridMethod::bilinear});
    int checked = 0;
    for (int64_t i = 0; i < t.H(); ++i)
      for (int64_t j = 0; j < t.W(); ++j) {
        // inside the source's centres (not across the 0 E wrap, where lon jumps by 360)
        const bool inside = t.lat[i] <= s.lat.front() && t.lat[i] >= s.lat.back() &&
                            t.lon[j] <= s.lon.back();
        if (!inside) continue;
        EXPECT_NEAR(out[i * t.W() + j], lin(t.lat[i], t.lon[j]), 2e-4) << i << "," << j;
        ++checked;
      }
    EXPECT_GT(checked, 3000);
  }
  // Across the wrap and beyond the outermost rows of a periodic global source: a periodic
  // function is interpolated between 358 and 0 E, and the nearest row is used toward the poles.
  const LatLonGrid s = regular(4, 67.5, -45, 4, 0, 90);
  std::vector<float> f = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4};
  const auto out = regrid(s, LatLonGrid{{80, 0}, {315, 45}}, f, {RegridMethod::bilinear});
  EXPECT_FLOAT_EQ(out[0], 2.5f);  // halfway between 270 (4) and 360 = 0 (1)
  EXPECT_FLOAT_EQ(out[1], 1.5f);
  EXPECT_FLOAT_EQ(out[2], 2.5f);
  // A regional source: outside its cells the target is missing.
  const LatLonGrid reg = regular(3, 10, -10, 3, 10, 10);  // lat 10..-10, lon 10..30
  int64_t missing = -1;
  const auto r = regrid(reg, LatLonGrid{{0, 5}, {12, 34, 36}}, std::vector<float>(9, 7.0f),
                        {RegridMethod::bilinear}, &missing);
  EXPECT_FLOAT_EQ(r[0], 7.0f);
  EXPECT_FLOAT_EQ(r[1], 7.0f);  // within the last column's half cell: nearest
  EXPECT_TRUE(std::isnan(r[2]));
  EXPECT_TRUE(std::isnan(r[5]));
  EXPECT_EQ(missing, 2);
}

TEST_F(RegridDirTest, WeightsCache) {
  const LatLonGrid s = equiangular_grid(90, 180), t = equiangular_grid(32, 64);
  const std::string path = file("w.safetensors");
  const std::vector<float> f = test_field(s, 7);
  std::vector<float> o1(32 * 64), o2(32 * 64);
  {
    Regridder r(s, t, {RegridMethod::conservative, 0.5, path});
    EXPECT_TRUE(r.weights_computed());
    r.apply(f.data(), o1.data());
  }
  ASSERT_TRUE(fs::exists(path));
  {
    seqvit::io::SafetensorsReader rd(path);
    EXPECT_EQ(rd.metadata().at("fingerprint"), regrid_fingerprint(s, t, RegridMethod::conservative));
    EXPECT_EQ(rd.metadata().at("target"), "32x64");
    EXPECT_LT(fs::file_size(path), 200000u);  // small: per-axis weights only
    Regridder r(s, t, {RegridMethod::conservative, 0.5, path});
    EXPECT_FALSE(r.weights_computed());
    r.apply(f.data(), o2.data());
    EXPECT_EQ(o1, o2);
  }
  // Another method or target: recomputed and overwritten.
  EXPECT_TRUE(Regridder(s, t, {RegridMethod::bilinear, 0.5, path}).weights_computed());
  EXPECT_FALSE(Regridder(s, t, {RegridMethod::bilinear, 0.5, path}).weights_computed());
  EXPECT_TRUE(Regridder(s, t, {RegridMethod::conservative, 0.5, path}).weights_computed());
  // A file that is not safetensors: an error naming it.
  { std::ofstream(path, std::ios::trunc) << "garbage"; }
  std::string msg = error_of([&] { (void)Regridder(s, t, {RegridMethod::conservative, 0.5, path}); });
  EXPECT_NE(msg.find("regrid weights cache '" + path + "' cannot be read"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("delete it to recompute"), std::string::npos) << msg;
  // Matching fingerprint but inconsistent weights: an error too.
  {
    Regridder good(s, t, {RegridMethod::conservative});
    seqvit::io::SafetensorsWriter w;
    w.set_metadata("fingerprint", good.fingerprint());
    w.add_f64("src_lat", {90}, s.lat.data());
    w.add_f64("src_lon", {180}, s.lon.data());
    w.add_f64("dst_lat", {32}, t.lat.data());
    w.add_f64("dst_lon", {64}, t.lon.data());
    for (const char* ax : {"lat", "lon"}) {
      const AxisWeights& a = std::string(ax) == "lat" ? good.lat_weights() : good.lon_weights();
      std::vector<int64_t> src = a.src;
      if (std::string(ax) == "lon") src[3] = 999;
      w.add_i64(std::string(ax) + "_start", {int64_t(a.start.size())}, a.start.data());
      w.add_i64(std::string(ax) + "_src", {int64_t(src.size())}, src.data());
      w.add_f64(std::string(ax) + "_w", {int64_t(a.w.size())}, a.w.data());
      w.add_f64(std::string(ax) + "_measure", {int64_t(a.measure.size())}, a.measure.data());
    }
    w.write(path);
  }
  msg = error_of([&] { (void)Regridder(s, t, {RegridMethod::conservative, 0.5, path}); });
  EXPECT_NE(msg.find("regrid weights cache '" + path +
                     "' is corrupt (longitude weights: entry 3 (source 999"),
            std::string::npos)
      << msg;
  // An unwritable place: an error naming it.
  const std::string bad = file("no/such/dir/w.safetensors");
  msg = error_of([&] { (void)Regridder(s, t, {RegridMethod::conservative, 0.5, bad}); });
  EXPECT_NE(msg.find("cannot write the weights cache"), std::string::npos) << msg;
  EXPECT_NE(msg.find(bad), std::string::npos) << msg;
}

// ---- Agreement with CDO -------------------------------------------------------------------------

namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = ::pclose(p);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  return out;
}

// f (lat, lon) with the grid's own coordinates, NaN -> _FillValue; with `bounds`, CF cell
// bounds (lat_bnds, lon_bnds) from latitude_bounds / longitude_bounds.
void write_field(const std::string& path, const LatLonGrid& g, const std::vector<float>& f,
                 bool bounds = false) {
  nctest::Var v{"f", NC_FLOAT, {"lat", "lon"}, "K"};
  v.atts["_FillValue"] = {-9999.0};
  v.raw = [&](const std::vector<size_t>& i) {
    const float x = f[i[0] * g.W() + i[1]];
    return std::isnan(x) ? -9999.0 : double(x);
  };
  std::vector<nctest::Var> vars{v};
  nctest::Coord lat{"lat", g.lat, "degrees_north"}, lon{"lon", g.lon, "degrees_east"};
  const LatBounds lb = latitude_bounds(g.lat);
  const LonBounds wb = longitude_bounds(g.lon);
  if (bounds) {
    lat.bounds = "lat_bnds", lon.bounds = "lon_bnds";
    nctest::Var b{"lat_bnds", NC_DOUBLE, {"lat", "bnds"}, ""};
    b.raw = [&](const std::vector<size_t>& i) {
      return std::asin(i[1] == 0 ? lb.sin_south[i[0]] : lb.sin_north[i[0]]) / kDeg;
    };
    vars.push_back(b);
    b = {"lon_bnds", NC_DOUBLE, {"lon", "bnds"}, ""};
    b.raw = [&](const std::vector<size_t>& i) {
      return i[1] == 0 ? wb.west[i[0]] : wb.east[i[0]];
    };
    vars.push_back(b);
  }
  nctest::write(path, NC_CLOBBER | NC_NETCDF4, {lat, lon}, vars);
}

std::vector<float> read_field(const std::string& path, int64_t H, int64_t W) {
  NetcdfDataset ds({path});
  const auto& v = ds.variable("f");
  EXPECT_EQ(v.H(), H);
  EXPECT_EQ(v.W(), W);
  std::vector<float> out(static_cast<size_t>(v.H() * v.W()));
  ds.read(ds.resolve("f"), 0, out.data());
  return out;
}

}  // namespace

// Our conservative weights against `cdo remapcon` (CDO's rWxH: W columns from 0 E, H rows
// centred, as equiangular_grid, for even H; for odd H CDO puts rows on the poles, so the target
// is given as a CDO grid description of our grid). CDO's output runs south to north; the reader
// turns it north to south. Measured max relative differences (CDO 2.1.1, Debian 12): 0 (every
// value the same float) for the 0.25-degree grid, and for the Gaussian grid when the file holds
// our Gauss-weight cell bounds; see docs/data.md.
TEST_F(RegridDirTest, AgreesWithCdoRemapcon) {
  const std::string in = file("q.nc"), gin = file("g.nc"), gbin = file("gb.nc"), out = file("o.nc");
  const LatLonGrid q = quarter_degree();
  const std::vector<float> fq = test_field(q, 8);
  write_field(in, q, fq);
  const LatLonGrid g = gaussian(96, 192);
  const std::vector<float> fg = test_field(g, 9);
  write_field(gin, g, fg);
  write_field(gbin, g, fg, /*bounds=*/true);
  EXPECT_NE(run("cdo -s griddes " + gin).find("gridtype  = gaussian"), std::string::npos)
      << "CDO must see the Gaussian grid as Gaussian";
  struct Case {
    std::string src;
    const LatLonGrid* grid;
    const std::vector<float>* f;
    int H, W;
    double bound;
  };
  // (721 x 1440 -> 64x128 and 121x240 measured 0 too; left out: CDO takes ~8 s for each.)
  for (const Case& c : {Case{in, &q, &fq, 32, 64, 3e-7}, Case{in, &q, &fq, 45, 90, 3e-7},
                        Case{gbin, &g, &fg, 32, 64, 3e-7}, Case{gbin, &g, &fg, 128, 256, 3e-7},
                        Case{gbin, &g, &fg, 45, 90, 3e-7}}) {
    std::string target = fmt::format("r{}x{}", c.W, c.H);
    if (c.H % 2 == 1) {  // CDO's odd rWxH has rows on the poles: describe our grid instead
      target = file("grid.txt");
      std::ofstream(target) << fmt::format(
          "gridtype = lonlat\nxsize = {}\nysize = {}\nxfirst = 0\nxinc = {:.17g}\n"
          "yfirst = {:.17g}\nyinc = {:.17g}\n",
          c.W, c.H, 360.0 / c.W, -90 + 90.0 / c.H, 180.0 / c.H);
    }
    run(fmt::format("cdo -s -O remapcon,{} {} {}", target, c.src, out));
    const auto cdo = read_field(out, c.H, c.W);
    const auto ours = regrid(*c.grid, equiangular_grid(c.H, c.W), *c.f);
    const double d = max_rel_diff(ours, cdo);
    std::printf("remapcon %s -> %dx%d: max relative difference %.3g\n",
                c.grid == &q ? "721x1440" : "Gaussian 96x192 with bounds", c.H, c.W, d);
    EXPECT_LT(d, c.bound) << c.src << " -> " << c.H << "x" << c.W;
  }
  // Without bounds in the file CDO 2.1.1 puts a Gaussian grid's edges midway between the
  // latitudes (not at the Gauss-weight edges): differences up to ~3e-4 near the poles.
  run(fmt::format("cdo -s -O remapcon,r64x32 {} {}", gin, out));
  const double d = max_rel_diff(regrid(g, equiangular_grid(32, 64), fg), read_field(out, 32, 64));
  std::printf("remapcon Gaussian 96x192 without bounds -> 32x64: max relative difference %.3g\n",
              d);
  EXPECT_LT(d, 5e-4);
}

// Missing values: CDO's remapcon (fracarea normalisation) leaves a target cell missing only when
// it has no valid overlap: our threshold 0.
TEST_F(RegridDirTest, AgreesWithCdoRemapconOnMissingValues) {
  const std::string in = file("m.nc"), out = file("o.nc");
  const LatLonGrid s = regular(181, 90, -1, 360, -180, 1);  // 1 degree, -180..179, with poles
  std::vector<float> f = test_field(s, 10);
  for (int64_t i = 0; i < s.H(); ++i)
    for (int64_t j = 0; j < s.W(); ++j)
      if ((s.lat[i] > 10 && s.lat[i] < 40 && s.lon[j] > -60 && s.lon[j] < 20) ||
          (i * 7 + j * 3) % 11 == 0)
        f[i * s.W() + j] = std::nanf("");
  write_field(in, s, f);
  run(fmt::format("cdo -s -O remapcon,r64x32 {} {}", in, out));
  const auto cdo = read_field(out, 32, 64);
  const auto ours = regrid(s, equiangular_grid(32, 64), f, {RegridMethod::conservative, 0.0});
  const double d = max_rel_diff(ours, cdo);
  std::printf("remapcon 181x360 with missing -> r64x32: max relative difference %.3g\n", d);
  EXPECT_LT(d, 3e-7);
}

// ---- RegriddedSource ----------------------------------------------------------------------------

TEST_F(RegridDirTest, RegriddedSourceReadsThroughTheRegridder) {
  // z (time, level, lat, lon) stored south to north with -180..180 longitudes; lsm constant.
  const std::string data = file("data");
  fs::create_directories(data);
  const std::vector<double> lat = nctest::range(-89, 2, 90), lon = nctest::range(-180, 2, 180);
  auto value = [](double la, double lo, double t, double l) {
    return 5e4 + 100 * std::cos(la * kDeg) * std::sin(lo * kDeg) + t + 10 * l;
  };
  nctest::Var z{"z", NC_FLOAT, {"time", "level", "lat", "lon"}, "m**2 s**-2"};
  z.raw = [&](const std::vector<size_t>& i) { return value(lat[i[2]], lon[i[3]], i[0], i[1]); };
  nctest::Var lsm{"lsm", NC_FLOAT, {"lat", "lon"}, "1"};
  lsm.raw = [&](const std::vector<size_t>& i) { return (i[0] + i[1]) % 2; };
  nctest::write(data + "/a.nc", NC_CLOBBER | NC_NETCDF4,
                {{"time", {0, 6}, "hours since 2000-01-01"},
                 {"level", {500, 850}, "hPa"},
                 {"lat", lat, "degrees_north"},
                 {"lon", lon, "degrees_east"}},
                {z, lsm});
  const LatLonGrid t = equiangular_grid(32, 64);
  auto open = [&] {
    auto inner = open_grid_source({data});
    const std::string dir = cache_dir_beside({data}, *inner);
    return std::make_unique<RegriddedSource>(std::move(inner), t, RegridOptions{}, dir);
  };
  auto rs = open();
  EXPECT_EQ(rs->weights_computed(), 1);  // one source grid for both variables
  EXPECT_TRUE(fs::exists(data + "/seqvit_regrid_conservative_90x180_to_32x64.safetensors"));
  EXPECT_EQ(rs->format(), "NetCDF regridded to 32x64 (conservative)");
  EXPECT_EQ(rs->variables(), (std::vector<std::string>{"z", "lsm"}));
  const GridVariable& v = rs->variable("z");
  EXPECT_EQ(v.lat, t.lat);
  EXPECT_EQ(v.lon, t.lon);
  EXPECT_FALSE(v.lat_ascending_in_file);
  EXPECT_EQ(v.levels_hpa, (std::vector<double>{500, 850}));
  EXPECT_EQ(v.T(), 2);
  // Reading z_850 at t = 1 equals regridding the canonical source field.
  std::vector<float> got(2 * 32 * 64), src(90 * 180), want(32 * 64);
  EXPECT_EQ(rs->read(rs->resolve("z_850"), 0, 2, got.data()), 0);
  rs->source().read(rs->source().resolve("z_850"), 1, src.data());
  Regridder r(LatLonGrid{rs->source().variable("z").lat, rs->source().variable("z").lon}, t);
  r.apply(src.data(), want.data());
  EXPECT_EQ(std::vector<float>(got.begin() + 32 * 64, got.end()), want);
  // and agrees with the regridded analytic field to the cell-mean error of the pattern
  EXPECT_NEAR(want[5 * 64 + 16], value(t.lat[5], t.lon[16], 1, 1), 2.0);
  EXPECT_EQ(&rs->regridder("z"), &rs->regridder("lsm"));
  // A second opening reads the cached weights.
  EXPECT_EQ(open()->weights_computed(), 0);
  // A target not in canonical orientation is refused.
  LatLonGrid south_up = t;
  std::reverse(south_up.lat.begin(), south_up.lat.end());
  EXPECT_NE(error_of([&] {
              RegriddedSource(open_grid_source({data}), south_up, RegridOptions{}, "");
            }).find("target latitudes must run north to south"),
            std::string::npos);
}
