// Conservative and bilinear regridding with separable per-axis weights (regrid.h; docs/data.md,
// "Regridding"). Per axis the cells are sorted and the sources overlapping a target found by
// binary search on the edges: O((H + Hs) log Hs) to build, milliseconds for 0.25-degree grids.
#include "data/regrid.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <regex>

#include "core/check.h"
#include "io/safetensors.h"

namespace seqvit::data {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;
constexpr double kGaussTolDeg = 1e-4;   // latitudes within this of the Gauss nodes: Gaussian
constexpr double kSliverSin = 1e-13;    // overlaps below these are rounding, not area
constexpr double kSliverDeg = 1e-10;
constexpr double kFractionSlack = 1e-9; // valid fraction >= threshold - slack counts as valid
constexpr int kCacheVersion = 1;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

double sin_deg(double d) {  // exact at the poles, so polar edges are exactly -1 / 1
  if (d >= 90.0) return 1.0;
  if (d <= -90.0) return -1.0;
  return std::sin(d * kDeg);
}

// Node i (0 = nearest 1) of the Gauss-Legendre quadrature of order n and P_n'(x) there: Newton
// on P_n from the classic initial guess, O(n) per iteration.
void gauss_legendre_node(int64_t n, int64_t i, double* x_out, double* dp_out) {
  const double dn = static_cast<double>(n);
  double x = std::cos(kPi * (static_cast<double>(i) + 0.75) / (dn + 0.5)), dp = 1;
  for (int it = 0; it < 100; ++it) {
    double p0 = 1, p1 = x;
    for (int64_t j = 2; j <= n; ++j) {
      const double dj = static_cast<double>(j);
      const double p2 = ((2 * dj - 1) * x * p1 - (dj - 1) * p0) / dj;
      p0 = p1, p1 = p2;
    }
    dp = dn * (x * p1 - p0) / (x * x - 1);
    const double dx = p1 / dp;
    x -= dx;
    if (std::abs(dx) < 1e-16) break;
  }
  *x_out = x, *dp_out = dp;
}

// Latitudes sorted south to north with their cell edges in sin latitude.
struct LatAxis {
  std::vector<double> a;       // [H] ascending degrees
  std::vector<int64_t> idx;    // [H] given index of a[k]
  std::vector<double> e;       // [H+1] sin of the edges, ascending; cell k = [e[k], e[k+1]]
  bool gaussian = false;
};

LatAxis lat_axis(const std::vector<double>& lat) {
  const int64_t H = static_cast<int64_t>(lat.size());
  if (H == 0) fail("regrid: a grid needs at least one latitude");
  for (double v : lat)
    if (!std::isfinite(v) || v < -90.0 || v > 90.0)
      fail("regrid: latitude {} is outside [-90, 90]", v);
  LatAxis ax;
  ax.idx.resize(static_cast<size_t>(H));
  std::iota(ax.idx.begin(), ax.idx.end(), 0);
  std::sort(ax.idx.begin(), ax.idx.end(), [&](int64_t x, int64_t y) { return lat[x] < lat[y]; });
  for (int64_t k = 0; k < H; ++k) ax.a.push_back(lat[ax.idx[k]]);
  for (int64_t k = 0; k + 1 < H; ++k)
    if (!(ax.a[k + 1] > ax.a[k]))
      fail("regrid: latitude {} appears twice (rows {} and {}); latitudes must be distinct",
           ax.a[k], ax.idx[k], ax.idx[k + 1]);
  ax.e.resize(static_cast<size_t>(H + 1));
  // Gaussian? The northernmost node first (O(H)), all of them (O(H^2)) only if it matches.
  std::vector<double> glat, gw;
  double x0 = 0, dp0 = 0;
  gauss_legendre_node(H, 0, &x0, &dp0);
  ax.gaussian = std::abs(ax.a[H - 1] - (90.0 - std::acos(x0) / kDeg)) <= kGaussTolDeg;
  if (ax.gaussian) {
    gauss_legendre_latitudes(H, glat, gw);  // north to south
    for (int64_t k = 0; k < H; ++k)
      if (std::abs(ax.a[k] - glat[H - 1 - k]) > kGaussTolDeg) ax.gaussian = false;
  }
  if (ax.gaussian) {  // sin of the edges = -1 + cumulative Gauss weights (south to north)
    ax.e[0] = -1.0;
    for (int64_t k = 0; k < H; ++k) ax.e[k + 1] = std::min(1.0, ax.e[k] + gw[H - 1 - k]);
    ax.e[H] = 1.0;
  } else if (H == 1) {
    ax.e[0] = -1.0, ax.e[1] = 1.0;
  } else {  // midway between centres; the outermost half a spacing out, clipped at the poles
    ax.e[0] = sin_deg(std::max(-90.0, ax.a[0] - 0.5 * (ax.a[1] - ax.a[0])));
    for (int64_t k = 1; k < H; ++k) ax.e[k] = sin_deg(0.5 * (ax.a[k - 1] + ax.a[k]));
    ax.e[H] = sin_deg(std::min(90.0, ax.a[H - 1] + 0.5 * (ax.a[H - 1] - ax.a[H - 2])));
  }
  return ax;
}

// Longitudes mapped onto [0, 360), sorted, and unrolled to start after the largest gap, with
// their edges in degrees (unrolled: e[0] may be < 0, e[W] > 360).
struct LonAxis {
  std::vector<double> u;     // [W] ascending, u[W-1] - u[0] < 360
  std::vector<int64_t> idx;  // [W] given index of u[k]
  std::vector<double> e;     // [W+1]; cell k = [e[k], e[k+1]]
  bool periodic = false;
};

LonAxis lon_axis(const std::vector<double>& lon) {
  const int64_t W = static_cast<int64_t>(lon.size());
  if (W == 0) fail("regrid: a grid needs at least one longitude");
  std::vector<double> c(static_cast<size_t>(W));
  for (int64_t j = 0; j < W; ++j) {
    if (!std::isfinite(lon[j])) fail("regrid: longitude {} is not finite", lon[j]);
    double x = std::fmod(lon[j], 360.0);
    if (x < 0) x += 360.0;
    if (x >= 360.0) x -= 360.0;
    c[j] = x;
  }
  std::vector<int64_t> order(static_cast<size_t>(W));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return c[x] < c[y]; });
  for (int64_t k = 0; k + 1 < W; ++k)
    if (!(c[order[k + 1]] - c[order[k]] > kSliverDeg))
      fail("regrid: longitudes {} and {} (columns {} and {}) are the same meridian; longitudes "
           "must be distinct modulo 360",
           lon[order[k]], lon[order[k + 1]], order[k], order[k + 1]);
  if (W > 1 && !(c[order[0]] + 360.0 - c[order[W - 1]] > kSliverDeg))
    fail("regrid: longitudes {} and {} (columns {} and {}) are the same meridian; longitudes "
         "must be distinct modulo 360",
         lon[order[0]], lon[order[W - 1]], order[0], order[W - 1]);
  LonAxis ax;
  ax.e.resize(static_cast<size_t>(W + 1));
  if (W == 1) {
    ax.u = {c[0]}, ax.idx = {0}, ax.periodic = true;
    ax.e[0] = c[0] - 180.0, ax.e[1] = c[0] + 180.0;
    return ax;
  }
  // Start after the largest gap (the wrap gap counts too), so a regional grid across 0 E stays
  // contiguous.
  int64_t m = W - 1;
  double gmax = c[order[0]] + 360.0 - c[order[W - 1]];
  for (int64_t k = 0; k + 1 < W; ++k)
    if (c[order[k + 1]] - c[order[k]] > gmax) gmax = c[order[k + 1]] - c[order[k]], m = k;
  for (int64_t k = 0; k < W; ++k) {
    const int64_t s = (m + 1 + k) % W;
    ax.idx.push_back(order[s]);
    ax.u.push_back(c[order[s]] + (m + 1 + k >= W && m + 1 < W ? 360.0 : 0.0));
  }
  double inner = 0;
  for (int64_t k = 0; k + 1 < W; ++k) inner = std::max(inner, ax.u[k + 1] - ax.u[k]);
  const double wrap = ax.u[0] + 360.0 - ax.u[W - 1];
  ax.periodic = wrap <= 1.5 * inner + kSliverDeg;  // no gap larger than 1.5 spacings: global
  for (int64_t k = 1; k < W; ++k) ax.e[k] = 0.5 * (ax.u[k - 1] + ax.u[k]);
  if (ax.periodic) {
    ax.e[0] = 0.5 * (ax.u[W - 1] - 360.0 + ax.u[0]);
    ax.e[W] = ax.e[0] + 360.0;
  } else {
    ax.e[0] = ax.u[0] - 0.5 * (ax.u[1] - ax.u[0]);
    ax.e[W] = ax.u[W - 1] + 0.5 * (ax.u[W - 1] - ax.u[W - 2]);
  }
  return ax;
}

void finish(AxisWeights& aw) {
  const size_t n = aw.measure.size();
  aw.row_sum.assign(n, 0.0);
  for (size_t t = 0; t < n; ++t)
    for (int64_t p = aw.start[t]; p < aw.start[t + 1]; ++p) aw.row_sum[t] += aw.w[p];
}

using Rows = std::vector<std::vector<std::pair<int64_t, double>>>;  // per target: (source, w)

AxisWeights to_csr(const Rows& rows, std::vector<double> measure) {
  AxisWeights aw;
  aw.start.push_back(0);
  for (const auto& r : rows) {
    for (const auto& [k, w] : r) aw.src.push_back(k), aw.w.push_back(w);
    aw.start.push_back(static_cast<int64_t>(aw.src.size()));
  }
  aw.measure = std::move(measure);
  finish(aw);
  return aw;
}

// Sources overlapping a target are contiguous in sorted order: found by binary search on the
// edges, so building the weights costs O((H + Hs) log Hs), not O(H Hs).
AxisWeights conservative_lat(const LatAxis& s, const LatAxis& t) {
  const int64_t Hs = static_cast<int64_t>(s.a.size()), H = static_cast<int64_t>(t.a.size());
  std::vector<double> measure(static_cast<size_t>(H));
  Rows rows(static_cast<size_t>(H));
  for (int64_t i = 0; i < H; ++i) {
    const double lo = t.e[i], hi = t.e[i + 1];
    measure[t.idx[i]] = hi - lo;
    // first source cell whose north edge lies above lo
    int64_t k = std::upper_bound(s.e.begin() + 1, s.e.end(), lo) - (s.e.begin() + 1);
    for (; k < Hs && s.e[k] < hi; ++k) {
      const double ov = std::min(hi, s.e[k + 1]) - std::max(lo, s.e[k]);
      if (ov > kSliverSin) rows[t.idx[i]].push_back({s.idx[k], ov});
    }
  }
  return to_csr(rows, std::move(measure));
}

AxisWeights conservative_lon(const LonAxis& s, const LonAxis& t) {
  const int64_t Ws = static_cast<int64_t>(s.u.size()), W = static_cast<int64_t>(t.u.size());
  std::vector<double> measure(static_cast<size_t>(W));
  Rows rows(static_cast<size_t>(W));
  std::vector<double> acc(static_cast<size_t>(Ws), 0.0);  // [Ws] overlap with target j
  std::vector<int64_t> touched;
  for (int64_t j = 0; j < W; ++j) {
    measure[t.idx[j]] = (t.e[j + 1] - t.e[j]) * kDeg;
    // The target interval shifted by whole turns against the source cells (which span at most
    // one turn from s.e[0]); a source may overlap under two shifts (a target of 360 degrees).
    for (int n = -2; n <= 2; ++n) {
      const double lo = t.e[j] + 360.0 * n, hi = t.e[j + 1] + 360.0 * n;
      if (hi <= s.e[0] || lo >= s.e[Ws]) continue;
      int64_t l = std::upper_bound(s.e.begin() + 1, s.e.end(), lo) - (s.e.begin() + 1);
      for (; l < Ws && s.e[l] < hi; ++l) {
        const double ov = std::min(hi, s.e[l + 1]) - std::max(lo, s.e[l]);
        if (ov <= 0) continue;
        if (acc[l] == 0) touched.push_back(l);
        acc[l] += ov;
      }
    }
    std::sort(touched.begin(), touched.end());
    for (int64_t l : touched) {
      if (acc[l] > kSliverDeg) rows[t.idx[j]].push_back({s.idx[l], acc[l] * kDeg});
      acc[l] = 0;
    }
    touched.clear();
  }
  return to_csr(rows, std::move(measure));
}

// Linear interpolation weights at x between sorted centres c (not periodic): inside [c0, cn-1]
// the two neighbours; between the outermost centre and its cell edge [lo_edge, hi_edge] the
// nearest centre; beyond the edges nothing.
void linear_weights(const std::vector<double>& c, const std::vector<int64_t>& idx, double lo_edge,
                    double hi_edge, double x, std::vector<std::pair<int64_t, double>>& out) {
  const int64_t n = static_cast<int64_t>(c.size());
  if (x < c[0]) {
    if (x >= lo_edge - kSliverDeg) out.push_back({idx[0], 1.0});
    return;
  }
  if (x >= c[n - 1]) {
    if (x <= hi_edge + kSliverDeg) out.push_back({idx[n - 1], 1.0});
    return;
  }
  const int64_t k = std::upper_bound(c.begin(), c.end(), x) - c.begin() - 1;  // c[k] <= x < c[k+1]
  const double f = (x - c[k]) / (c[k + 1] - c[k]);
  if (f < 1.0) out.push_back({idx[k], 1.0 - f});
  if (f > 0.0) out.push_back({idx[k + 1], f});
}

AxisWeights bilinear_lat(const LatAxis& s, const std::vector<double>& lat) {
  const int64_t Hs = static_cast<int64_t>(s.a.size());
  const double lo = std::asin(s.e[0]) / kDeg, hi = std::asin(s.e[Hs]) / kDeg;
  Rows rows(lat.size());
  for (size_t i = 0; i < lat.size(); ++i) linear_weights(s.a, s.idx, lo, hi, lat[i], rows[i]);
  return to_csr(rows, std::vector<double>(lat.size(), 1.0));
}

AxisWeights bilinear_lon(const LonAxis& s, const std::vector<double>& lon) {
  const int64_t Ws = static_cast<int64_t>(s.u.size());
  Rows rows(lon.size());
  // Periodic: the centres extended by one on each side across the wrap.
  std::vector<double> c = s.u;
  std::vector<int64_t> idx = s.idx;
  if (s.periodic) {
    c.insert(c.begin(), s.u[Ws - 1] - 360.0);
    idx.insert(idx.begin(), s.idx[Ws - 1]);
    c.push_back(s.u[0] + 360.0);
    idx.push_back(s.idx[0]);
  }
  for (size_t j = 0; j < lon.size(); ++j) {
    double x = std::fmod(lon[j] - s.e[0], 360.0);  // into [e0, e0 + 360)
    if (x < 0) x += 360.0;
    x += s.e[0];
    if (s.periodic && Ws == 1) {
      rows[j].push_back({s.idx[0], 1.0});
      continue;
    }
    linear_weights(c, idx, s.e[0], s.e[Ws], x, rows[j]);
    // merge a source that appears twice (a periodic grid of two columns)
    auto& r = rows[j];
    if (r.size() == 2 && r[0].first == r[1].first) r = {{r[0].first, 1.0}};
  }
  return to_csr(rows, std::vector<double>(lon.size(), 1.0));
}

void check_grid(const LatLonGrid& g, const char* which) {
  if (g.lat.empty() || g.lon.empty())
    fail("regrid: the {} grid is empty ({} latitudes x {} longitudes)", which, g.lat.size(),
         g.lon.size());
}

void check_weights(const AxisWeights& aw, int64_t n_target, int64_t n_source, const char* axis,
                   const std::string& path) {
  auto bad = [&](const std::string& why) {
    fail("regrid weights cache '{}' is corrupt ({} weights: {}); delete it to recompute the "
         "weights",
         path, axis, why);
  };
  if (static_cast<int64_t>(aw.start.size()) != n_target + 1) bad("wrong number of rows");
  if (static_cast<int64_t>(aw.measure.size()) != n_target) bad("wrong number of measures");
  if (aw.src.size() != aw.w.size()) bad("index and weight counts differ");
  if (aw.start[0] != 0 || aw.start[n_target] != static_cast<int64_t>(aw.src.size()))
    bad("row offsets do not cover the weights");
  for (int64_t t = 0; t < n_target; ++t)
    if (aw.start[t + 1] < aw.start[t]) bad("row offsets decrease");
  for (size_t p = 0; p < aw.src.size(); ++p)
    if (aw.src[p] < 0 || aw.src[p] >= n_source || !std::isfinite(aw.w[p]) || aw.w[p] < 0)
      bad(fmt::format("entry {} (source {}, weight {}) is out of range", p, aw.src[p], aw.w[p]));
  for (double m : aw.measure)
    if (!std::isfinite(m) || m <= 0) bad(fmt::format("cell measure {} is not positive", m));
}

}  // namespace

LatLonGrid equiangular_grid(int64_t H, int64_t W) {
  if (H < 1 || W < 1) fail("regrid: an equiangular grid needs H, W >= 1, got {}x{}", H, W);
  LatLonGrid g;
  const double D = 180.0 / static_cast<double>(H);
  for (int64_t i = 0; i < H; ++i) g.lat.push_back(90.0 - D * (static_cast<double>(i) + 0.5));
  for (int64_t j = 0; j < W; ++j) g.lon.push_back(360.0 * static_cast<double>(j) / static_cast<double>(W));
  return g;
}

LatLonGrid parse_grid(const std::string& text) {
  static const std::regex re(R"(^\s*(\d{1,9})\s*[xX]\s*(\d{1,9})\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    fail("grid '{}' is not of the form HxW (rows x columns of the equiangular grid, e.g. 32x64 "
         "or 721x1440)",
         text);
  const int64_t H = std::stoll(m[1].str()), W = std::stoll(m[2].str());
  if (H < 1 || W < 1)
    fail("grid '{}': H and W must be positive (e.g. 32x64 or 721x1440)", text);
  constexpr int64_t kMax = 100000;
  if (H > kMax || W > kMax)
    fail("grid '{}': at most {} rows and columns (0.0018 degrees)", text, kMax);
  return equiangular_grid(H, W);
}

void gauss_legendre_latitudes(int64_t n, std::vector<double>& lat_deg, std::vector<double>& w) {
  if (n < 1) fail("regrid: Gauss-Legendre order must be >= 1, got {}", n);
  lat_deg.assign(static_cast<size_t>(n), 0.0);
  w.assign(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < (n + 1) / 2; ++i) {  // the nodes are symmetric: the northern half
    double x = 0, dp = 0;
    gauss_legendre_node(n, i, &x, &dp);
    const double lat = 90.0 - std::acos(x) / kDeg, wi = 2.0 / ((1 - x * x) * dp * dp);
    lat_deg[i] = lat, lat_deg[n - 1 - i] = -lat;
    w[i] = w[n - 1 - i] = wi;
  }
  if (n % 2 == 1) lat_deg[n / 2] = 0.0;
}

LatBounds latitude_bounds(const std::vector<double>& lat) {
  const LatAxis ax = lat_axis(lat);
  LatBounds b;
  b.gaussian = ax.gaussian;
  b.sin_south.resize(lat.size()), b.sin_north.resize(lat.size());
  for (size_t k = 0; k < lat.size(); ++k)
    b.sin_south[ax.idx[k]] = ax.e[k], b.sin_north[ax.idx[k]] = ax.e[k + 1];
  return b;
}

LonBounds longitude_bounds(const std::vector<double>& lon) {
  const LonAxis ax = lon_axis(lon);
  LonBounds b;
  b.periodic = ax.periodic;
  b.west.resize(lon.size()), b.east.resize(lon.size());
  for (size_t k = 0; k < lon.size(); ++k)
    b.west[ax.idx[k]] = ax.e[k], b.east[ax.idx[k]] = ax.e[k + 1];
  return b;
}

RegridMethod parse_regrid_method(const std::string& s) {
  if (s == "conservative") return RegridMethod::conservative;
  if (s == "bilinear") return RegridMethod::bilinear;
  fail("unknown regridding method '{}'; use conservative or bilinear", s);
}

const char* regrid_method_name(RegridMethod m) {
  return m == RegridMethod::conservative ? "conservative" : "bilinear";
}

std::string regrid_fingerprint(const LatLonGrid& src, const LatLonGrid& dst, RegridMethod m) {
  std::string s = fmt::format("seqvit.regrid.v{}|{}", kCacheVersion, regrid_method_name(m));
  for (const auto* g : {&src, &dst}) {
    s += fmt::format("|{}x{}|", g->H(), g->W());
    for (double v : g->lat) s += fmt::format("{:.17g},", v);
    s += "|";
    for (double v : g->lon) s += fmt::format("{:.17g},", v);
  }
  return fmt::format("{:016x}", fnv1a(s));
}

Regridder::Regridder(const LatLonGrid& src, const LatLonGrid& dst, const RegridOptions& options)
    : src_(src), dst_(dst), opt_(options) {
  check_grid(src_, "source");
  check_grid(dst_, "target");
  if (!(opt_.min_valid_fraction >= 0.0 && opt_.min_valid_fraction <= 1.0))
    fail("regrid: min_valid_fraction {} must lie in [0, 1]", opt_.min_valid_fraction);
  const LatAxis slat = lat_axis(src_.lat), tlat = lat_axis(dst_.lat);
  const LonAxis slon = lon_axis(src_.lon), tlon = lon_axis(dst_.lon);
  fingerprint_ = regrid_fingerprint(src_, dst_, opt_.method);
  if (opt_.cache_path.empty() || !load_cache()) {
    if (opt_.method == RegridMethod::conservative) {
      lat_ = conservative_lat(slat, tlat);
      lon_ = conservative_lon(slon, tlon);
    } else {
      lat_ = bilinear_lat(slat, dst_.lat);
      lon_ = bilinear_lon(slon, dst_.lon);
    }
    computed_ = true;
    if (!opt_.cache_path.empty()) save_cache();
  }
  row_used_.assign(static_cast<size_t>(src_.H()), 0);
  for (int64_t k : lat_.src) row_used_[k] = 1;
  tmp_num_.assign(static_cast<size_t>(src_.H() * dst_.W()), 0.0);
  tmp_den_.assign(static_cast<size_t>(src_.H() * dst_.W()), 0.0);
  row_num_.assign(static_cast<size_t>(dst_.W()), 0.0);
  row_den_.assign(static_cast<size_t>(dst_.W()), 0.0);
}

int64_t Regridder::apply(const float* in, float* out) {
  const int64_t Hs = src_.H(), Ws = src_.W(), H = dst_.H(), W = dst_.W();
  bool any_nan = false;
  for (int64_t p = 0; p < Hs * Ws && !any_nan; ++p) any_nan = std::isnan(in[p]);
  // Stage 1: every source row reduced along longitude onto the target columns.
  // tmp_num[k, j] = sum_l w_lon(j, l) f(k, l) over valid f; tmp_den the same over valid weights.
  for (int64_t k = 0; k < Hs; ++k) {
    if (!row_used_[k]) continue;  // outside a regional target
    const float* row = in + k * Ws;
    double* tn = tmp_num_.data() + k * W;
    double* td = tmp_den_.data() + k * W;
    for (int64_t j = 0; j < W; ++j) {
      double s = 0, d = 0;
      for (int64_t p = lon_.start[j]; p < lon_.start[j + 1]; ++p) {
        const float v = row[lon_.src[p]];
        if (!any_nan) {
          s += lon_.w[p] * v;
        } else if (!std::isnan(v)) {
          s += lon_.w[p] * v;
          d += lon_.w[p];
        }
      }
      tn[j] = s, td[j] = d;
    }
  }
  // Stage 2: along latitude, one target row at a time; then value = numerator / valid measure.
  int64_t missing = 0;
  const double thr = opt_.min_valid_fraction - kFractionSlack;
  for (int64_t i = 0; i < H; ++i) {
    std::fill(row_num_.begin(), row_num_.end(), 0.0);
    std::fill(row_den_.begin(), row_den_.end(), 0.0);
    for (int64_t p = lat_.start[i]; p < lat_.start[i + 1]; ++p) {
      const double w = lat_.w[p];
      const double* tn = tmp_num_.data() + lat_.src[p] * W;
      const double* td = tmp_den_.data() + lat_.src[p] * W;
      for (int64_t j = 0; j < W; ++j) row_num_[j] += w * tn[j];
      if (any_nan)
        for (int64_t j = 0; j < W; ++j) row_den_[j] += w * td[j];
    }
    float* o = out + i * W;
    for (int64_t j = 0; j < W; ++j) {
      const double den = any_nan ? row_den_[j] : lat_.row_sum[i] * lon_.row_sum[j];
      const double frac = den / (lat_.measure[i] * lon_.measure[j]);
      if (den > 0 && frac >= thr) {
        o[j] = static_cast<float>(row_num_[j] / den);
      } else {
        o[j] = std::nanf("");
        ++missing;
      }
    }
  }
  return missing;
}

bool Regridder::load_cache() {
  const std::string& path = opt_.cache_path;
  if (!std::filesystem::exists(path)) return false;
  std::unique_ptr<io::SafetensorsReader> r;
  try {
    r = std::make_unique<io::SafetensorsReader>(path);
  } catch (const Error& e) {
    fail("regrid weights cache '{}' cannot be read ({}); delete it to recompute the weights",
         path, e.what());
  }
  const auto& md = r->metadata();
  const auto fp = md.find("fingerprint");
  if (fp == md.end() || fp->second != fingerprint_) return false;  // other grids: recompute
  AxisWeights lat, lon;
  try {
    // The grids themselves, so that a fingerprint collision cannot hand out wrong weights.
    if (r->read_f64("src_lat") != src_.lat || r->read_f64("src_lon") != src_.lon ||
        r->read_f64("dst_lat") != dst_.lat || r->read_f64("dst_lon") != dst_.lon)
      return false;
    lat.start = r->read_i64("lat_start"), lat.src = r->read_i64("lat_src");
    lat.w = r->read_f64("lat_w"), lat.measure = r->read_f64("lat_measure");
    lon.start = r->read_i64("lon_start"), lon.src = r->read_i64("lon_src");
    lon.w = r->read_f64("lon_w"), lon.measure = r->read_f64("lon_measure");
  } catch (const Error& e) {
    fail("regrid weights cache '{}' is corrupt ({}); delete it to recompute the weights", path,
         e.what());
  }
  check_weights(lat, dst_.H(), src_.H(), "latitude", path);
  check_weights(lon, dst_.W(), src_.W(), "longitude", path);
  finish(lat);
  finish(lon);
  lat_ = std::move(lat), lon_ = std::move(lon);
  return true;
}

void Regridder::save_cache() const {
  io::SafetensorsWriter w;
  w.set_metadata("format", fmt::format("seqvit.regrid.v{}", kCacheVersion));
  w.set_metadata("fingerprint", fingerprint_);
  w.set_metadata("method", regrid_method_name(opt_.method));
  w.set_metadata("source", fmt::format("{}x{}", src_.H(), src_.W()));
  w.set_metadata("target", fmt::format("{}x{}", dst_.H(), dst_.W()));
  auto n = [](const auto& v) { return std::vector<int64_t>{static_cast<int64_t>(v.size())}; };
  w.add_f64("src_lat", n(src_.lat), src_.lat.data());
  w.add_f64("src_lon", n(src_.lon), src_.lon.data());
  w.add_f64("dst_lat", n(dst_.lat), dst_.lat.data());
  w.add_f64("dst_lon", n(dst_.lon), dst_.lon.data());
  for (const auto& [name, aw] : {std::pair{"lat", &lat_}, std::pair{"lon", &lon_}}) {
    const std::string p = name;
    w.add_i64(p + "_start", n(aw->start), aw->start.data());
    w.add_i64(p + "_src", n(aw->src), aw->src.data());
    w.add_f64(p + "_w", n(aw->w), aw->w.data());
    w.add_f64(p + "_measure", n(aw->measure), aw->measure.data());
  }
  try {
    w.write(opt_.cache_path);
  } catch (const Error& e) {
    fail("regrid: cannot write the weights cache (choose a writable place): {}", e.what());
  }
}

}  // namespace seqvit::data
