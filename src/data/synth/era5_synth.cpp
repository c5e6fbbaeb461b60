// Synthetic ERA5-like dataset (see era5_synth.h; equations in docs/synthetic_data.md).
#include "data/synth/era5_synth.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>

#include "core/check.h"
#include "core/rng.h"
#include "data/cf_time.h"
#include "data/synth/netcdf_writer.h"
#include "data/synth/shallow_water.h"

namespace seqvit::data {

namespace {
namespace fs = std::filesystem;
using synth::NcPackedWriter;
using synth::NcVariableSpec;

constexpr double kPi = 3.14159265358979323846;
constexpr double kG = 9.80665;      // m s-2
constexpr double kRd = 287.05;      // J kg-1 K-1
constexpr double kLapse = 6.5e-3;   // K m-1
constexpr double kObliquity = 23.44 * kPi / 180.0;

int days_in_year(int y) { return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 366 : 365; }

// Smooth isotropic noise on the unit sphere: a sum of plane waves cos(k . x + theta) with
// random directions and |k| in [kmin, kmax], evaluated at the cell centres; zero mean, unit
// variance over the grid (area weighted).
std::vector<double> sphere_noise(Rng& rng, int H, int W, double kmin, double kmax, int waves,
                                 const std::vector<double>& lat, const std::vector<double>& lon) {
  std::vector<double> out(static_cast<size_t>(H) * W, 0.0);
  for (int w = 0; w < waves; ++w) {
    double kx = rng.normal(), ky = rng.normal(), kz = rng.normal();
    const double norm = std::sqrt(kx * kx + ky * ky + kz * kz) + 1e-12;
    const double kk = kmin + (kmax - kmin) * rng.uniform();
    kx *= kk / norm, ky *= kk / norm, kz *= kk / norm;
    const double theta = 2 * kPi * rng.uniform(), amp = std::pow(kk / kmin, -1.0);
    for (int j = 0; j < H; ++j) {
      const double phi = lat[j] * kPi / 180, cp = std::cos(phi), sp = std::sin(phi);
      for (int i = 0; i < W; ++i) {
        const double lam = lon[i] * kPi / 180;
        out[static_cast<size_t>(j) * W + i] +=
            amp * std::cos(kx * cp * std::cos(lam) + ky * cp * std::sin(lam) + kz * sp + theta);
      }
    }
  }
  double sw = 0, s1 = 0, s2 = 0;
  for (int j = 0; j < H; ++j)
    for (int i = 0; i < W; ++i) {
      const double c = std::cos(lat[j] * kPi / 180), x = out[static_cast<size_t>(j) * W + i];
      sw += c, s1 += c * x, s2 += c * x * x;
    }
  const double mean = s1 / sw, sd = std::sqrt(std::max(s2 / sw - mean * mean, 1e-30));
  for (auto& x : out) x = (x - mean) / sd;
  return out;
}

// Land-sea mask (fraction, about 30% land, smooth coasts) and surface geopotential.
void make_constants(uint64_t seed, int H, int W, const std::vector<double>& lat,
                    const std::vector<double>& lon, std::vector<double>& lsm,
                    std::vector<double>& orog) {
  Rng rng(seed * 0x9e3779b97f4a7c15ull + 0x1a2d);
  const auto continents = sphere_noise(rng, H, W, 2.5, 8.0, 32, lat, lon);
  const auto ridges = sphere_noise(rng, H, W, 4.0, 16.0, 48, lat, lon);
  // Threshold at the area-weighted 70th percentile so that ~30% of the surface is land.
  std::vector<std::pair<double, double>> v;  // (value, area weight)
  for (int j = 0; j < H; ++j)
    for (int i = 0; i < W; ++i)
      v.emplace_back(continents[static_cast<size_t>(j) * W + i], std::cos(lat[j] * kPi / 180));
  std::sort(v.begin(), v.end());
  double total = 0, acc = 0, thr = v.back().first;
  for (auto& [x, w] : v) total += w;
  for (auto& [x, w] : v) {
    acc += w;
    if (acc >= 0.7 * total) {
      thr = x;
      break;
    }
  }
  lsm.resize(continents.size());
  orog.resize(continents.size());
  for (size_t k = 0; k < continents.size(); ++k) {
    lsm[k] = std::clamp(0.5 + (continents[k] - thr) / 0.3, 0.0, 1.0);
    // Heights rise inland (distance above the coast threshold) with ridges on top, up to ~4 km.
    const double inland = std::clamp((continents[k] - thr) / 1.0, 0.0, 1.0);
    const double ridge = std::max(0.0, ridges[k]);
    const double height = lsm[k] * (50.0 + 600.0 * inland + 1800.0 * inland * std::pow(ridge, 1.5));
    orog[k] = kG * std::min(height, 5500.0);
  }
}

void make_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("synth: cannot create output directory '{}': {}", dir.string(), ec.message());
}

fs::path file_path(const std::string& dir, const std::string& folder, const std::string& stem,
                   const std::string& res) {
  return fs::path(dir) / folder / (stem + "_" + res + "deg.nc");
}

void validate(const SynthSpec& s) {
  if (s.out_dir.empty()) fail("synth: the output directory is empty; pass --out DIR");
  const bool grid_ok = s.H >= 8 && s.W == 2 * s.H && (s.W & (s.W - 1)) == 0;
  if (!grid_ok)
    fail("synth: grid {}x{} is not supported; use H x 2H with W a power of two, e.g. 32x64 "
         "(5.625 deg), 64x128 (2.8125 deg) or 128x256 (1.40625 deg)",
         s.H, s.W);
  if (s.years < 1 || s.years > 200) fail("synth: years must be 1..200, got {}", s.years);
  if (s.start_year < 1900 || s.start_year + s.years > 2200)
    fail("synth: start year {} (+{} years) must lie in 1900..2200", s.start_year, s.years);
  if (s.days < 0 || s.days > 366) fail("synth: days must be 0 (whole years) or 1..366, got {}", s.days);
  if (s.days > 0 && s.years != 1) fail("synth: days = {} needs years = 1, got {}", s.days, s.years);
  if (s.spinup_days < 0 || s.spinup_days > 3650)
    fail("synth: spin-up must be 0..3650 days, got {}", s.spinup_days);
}
}  // namespace

int64_t hours_since_1900(int year) {
  return (days_from_civil(year, 1, 1) - days_from_civil(1900, 1, 1)) * 24;
}

std::vector<std::string> synthesize(const SynthSpec& spec, const SynthProgressFn& progress) {
  validate(spec);
  const auto wall0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  };
  const int H = spec.H, W = spec.W;
  const size_t n = static_cast<size_t>(H) * W;
  std::vector<double> lat(H), lon(W);
  for (int j = 0; j < H; ++j) lat[j] = 90.0 - 180.0 * (j + 0.5) / H;  // descending, as ERA5
  for (int i = 0; i < W; ++i) lon[i] = 360.0 * i / W;
  const std::string res = fmt::format("{}", 180.0 / H);
  const std::string history =
      fmt::format("seqvit data synth: forced shallow-water model, grid {}x{}, seed {}, start "
                  "year {}, spin-up {} days",
                  H, W, spec.seed, spec.start_year, spec.spinup_days);
  std::vector<std::string> written;

  // Constants.
  std::vector<double> lsm, orog;
  make_constants(spec.seed, H, W, lat, lon, lsm, orog);
  make_dir(fs::path(spec.out_dir) / "constants");
  {
    NcVariableSpec s{"lsm", "(0 - 1)", "Land-sea mask", "land_binary_mask", 0.0, 1.0, {}, false};
    const auto path = file_path(spec.out_dir, "constants", "land_sea_mask", res).string();
    NcPackedWriter w(path, s, lat, lon, 1, history);
    w.write(0, 0, lsm);
    w.close();
    written.push_back(path);
  }
  {
    NcVariableSpec s{"orography", "m**2 s**-2", "Geopotential of the surface (orography)",
                     "surface_geopotential", -1000.0, 60000.0, {}, false};
    const auto path = file_path(spec.out_dir, "constants", "orography", res).string();
    NcPackedWriter w(path, s, lat, lon, 1, history);
    w.write(0, 0, orog);
    w.close();
    written.push_back(path);
  }

  synth::ShallowWaterParams params;
  params.H = H, params.W = W;
  synth::ShallowWater model(params, lsm, orog, spec.seed);
  const double day_s = 86400.0;
  const int64_t spin_steps = std::llround(spec.spinup_days * day_s / model.dt());
  model.init(-static_cast<double>(spin_steps) * model.dt());
  const int steps_per_day = static_cast<int>(std::lround(day_s / model.dt()));
  for (int64_t s = 0; s < spin_steps; ++s) {
    model.step();
    if (progress && ((s + 1) % steps_per_day == 0 || s + 1 == spin_steps))
      progress({"spin-up", (s + 1) / steps_per_day, spin_steps / steps_per_day, elapsed()});
  }

  const int steps_per_record = steps_per_day / 4;
  std::vector<double> t2m(n), u10(n), v10(n), z(2 * n), t(2 * n);  // [H,W]; [level=2, H, W]
  const std::vector<double>& surface_height = orog;  // divided by g below
  for (int y = 0; y < spec.years; ++y) {
    const int year = spec.start_year + y;
    const int days = spec.days > 0 ? spec.days : days_in_year(year);
    const int64_t nrec = static_cast<int64_t>(days) * 4;
    struct Out {
      const char* folder;
      NcVariableSpec spec;
      const std::vector<double>* data;
    };
    const Out outs[] = {
        {"2m_temperature",
         {"t2m", "K", "2 metre temperature", "air_temperature", 170.0, 340.0, {}, true}, &t2m},
        {"10m_u_component_of_wind",
         {"u10", "m s**-1", "10 metre U wind component", "eastward_wind", -80.0, 80.0, {}, true},
         &u10},
        {"10m_v_component_of_wind",
         {"v10", "m s**-1", "10 metre V wind component", "northward_wind", -80.0, 80.0, {}, true},
         &v10},
        {"geopotential",
         {"z", "m**2 s**-2", "Geopotential", "geopotential", 0.0, 70000.0, {500, 850}, true}, &z},
        {"temperature",
         {"t", "K", "Temperature", "air_temperature", 170.0, 330.0, {500, 850}, true}, &t},
    };
    std::vector<std::unique_ptr<NcPackedWriter>> writers;
    std::vector<std::string> paths;
    for (const auto& o : outs) {
      make_dir(fs::path(spec.out_dir) / o.folder);
      paths.push_back(
          file_path(spec.out_dir, o.folder, fmt::format("{}_{}", o.folder, year), res).string());
      writers.push_back(std::make_unique<NcPackedWriter>(paths.back(), o.spec, lat, lon, nrec,
                                                         history));
    }
    const int64_t hour0 = hours_since_1900(year);
    for (int64_t r = 0; r < nrec; ++r) {
      if (r > 0)
        for (int s = 0; s < steps_per_record; ++s) model.step();
      // Diagnostics at model time tm (seconds since 1 Jan of the start year).
      const double tm = model.time();
      const double decl = kObliquity * std::sin(2 * kPi * (tm / day_s - 80.0) / 365.2422);
      const double utc = 2 * kPi * std::fmod(tm, day_s) / day_s;
      const auto &U = model.u(), &V = model.v(), &P = model.phi(), &T = model.T();
      for (int j = 0; j < H; ++j) {
        const double la = lat[j] * kPi / 180;
        // Surface wind: reduced and turned 20 degrees towards low pressure (Ekman layer).
        const double th = (la >= 0 ? 1.0 : -1.0) * 20.0 * kPi / 180;
        const double ct = std::cos(th), st = std::sin(th);
        for (int i = 0; i < W; ++i) {
          const size_t k = static_cast<size_t>(j) * W + i;
          const double land = lsm[k];
          const double hour_angle = utc + lon[i] * kPi / 180 - kPi;
          const double skin = 4.0 * land * std::cos(la) * std::cos(decl) * std::cos(hour_angle - 0.5);
          t2m[k] = T[k] - kLapse * surface_height[k] / kG + skin;
          const double a = 0.8 - 0.3 * land;
          u10[k] = a * (ct * U[k] - st * V[k]);
          v10[k] = a * (st * U[k] + ct * V[k]);
          // Upper air: z500 from the layer's free surface; t850 blends the surface tracer (less
          // the standard lapse over ~1.45 km) with the hypsometric temperature of the
          // 1000-500 hPa layer (dz = Rd T ln 2); t500 and z850 follow hydrostatically.
          const double surface = P[k] + params.topo_factor * orog[k] - params.phi0;
          const double z500 = 55500.0 + surface;
          const double t850 = 0.5 * (T[k] - 9.4) + 0.5 * (279.0 + surface / (kRd * std::log(2.0)));
          const double t500 = t850 - 25.0;
          const double z850 = z500 - kRd * 0.5 * (t500 + t850) * std::log(850.0 / 500.0);
          z[k] = z500, z[n + k] = z850;
          t[k] = t500, t[n + k] = t850;
        }
      }
      for (size_t o = 0; o < writers.size(); ++o)
        writers[o]->write(r, hour0 + 6 * r, *outs[o].data);
      if (progress && ((r + 1) % 4 == 0 || r + 1 == nrec))
        progress({fmt::format("year {}", year), (r + 1) / 4, days, elapsed()});
    }
    for (size_t o = 0; o < writers.size(); ++o) {
      writers[o]->close();
      written.push_back(paths[o]);
    }
    // The next year's 1 January 00 UTC is one record step after the last record.
    for (int s = 0; s < steps_per_record; ++s) model.step();
  }
  return written;
}

}  // namespace seqvit::data
