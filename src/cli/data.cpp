// seqvit data: commands on NetCDF datasets and Zarr stores. `data stats` decodes every field one
// time step at a time (bounded memory) and prints min/max/mean/std/missing with the grid and time range.
// Each subcommand is one add_data_* function registered on the `data` group, so `data synth`
// can be added beside `stats` without touching this file's other parts.
#include <fmt/core.h>
#include <unistd.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "data/cf_grid.h"
#include "data/cf_time.h"
#include "data/grid_source.h"
#include "data/regridded_source.h"

namespace seqvit::cli {

namespace {

struct StatsOptions {
  std::vector<std::string> paths;
  std::vector<std::string> vars;
  bool json = false;
  std::string grid, regrid_method;  // --grid HxW: the fields regridded onto it (docs/data.md)
};

// Running statistics over non-missing values in double; each time step is reduced on its own
// (two-pass mean and M2), then merged with Chan's formula, so the std stays accurate over long
// series with a large mean (geopotential ~ 5e4).
struct Moments {
  int64_t n = 0, missing = 0;
  double mean = 0, m2 = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();

  void add_step(const float* x, int64_t count) {
    int64_t k = 0;
    double s = 0;
    for (int64_t i = 0; i < count; ++i)
      if (!std::isnan(x[i])) {
        ++k, s += x[i];
        min = std::min(min, static_cast<double>(x[i]));
        max = std::max(max, static_cast<double>(x[i]));
      }
    if (k == 0) return;
    const double mk = s / static_cast<double>(k);
    double m2k = 0;
    for (int64_t i = 0; i < count; ++i)
      if (!std::isnan(x[i])) m2k += (x[i] - mk) * (x[i] - mk);
    const double delta = mk - mean, nt = static_cast<double>(n + k);
    mean += delta * static_cast<double>(k) / nt;
    m2 += m2k + delta * delta * static_cast<double>(n) * static_cast<double>(k) / nt;
    n += k;
  }
  double std() const { return n > 0 ? std::sqrt(m2 / static_cast<double>(n)) : NAN; }
};

nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }

void run_stats(const StatsOptions& o) {
  std::unique_ptr<data::GridSource> source;
  if (o.grid.empty()) {
    if (!o.regrid_method.empty())
      fail("--regrid-method {} needs --grid HxW (the grid to regrid onto)", o.regrid_method);
    source = data::open_grid_source(o.paths);
  } else {  // the fields as `train --grid` reads them
    const data::LatLonGrid target = data::parse_grid(o.grid);  // flags before reading
    data::RegridOptions ro;
    ro.method = data::parse_regrid_method(o.regrid_method.empty() ? "conservative"
                                                                  : o.regrid_method);
    auto inner = data::open_grid_source(o.paths);
    std::string dir = data::cache_dir_beside(o.paths, *inner);
    if (::access(dir.c_str(), W_OK) != 0) dir.clear();  // read-only data: no weights cache
    source = std::make_unique<data::RegriddedSource>(std::move(inner), target, ro, dir);
  }
  const data::GridSource& ds = *source;
  const auto* regridded = dynamic_cast<const data::RegriddedSource*>(&ds);
  const data::GridSource& inner = regridded ? regridded->source() : ds;
  const int64_t target_h = regridded ? regridded->target().H() : 0;
  const int64_t target_w = regridded ? regridded->target().W() : 0;
  std::vector<data::FieldRef> fields;
  if (o.vars.empty()) {
    fields = ds.fields();
  } else {
    for (const auto& n : o.vars) {
      if (ds.has(n) && ds.variable(n).has_level) {  // a variable with levels: every level
        for (const auto& f : ds.fields())
          if (f.variable == n) fields.push_back(f);
      } else {
        fields.push_back(ds.resolve(n));
      }
    }
  }
  // Variables read in an unusual way (docs/data.md "Unusual files"): said once per variable.
  std::vector<std::string> dropped_notes;
  for (int64_t i = 0; i < ds.num_variables(); ++i) {
    const auto& v = ds.variable_at(i);
    if (std::none_of(fields.begin(), fields.end(),
                     [&](const data::FieldRef& f) { return f.variable == v.name; }))
      continue;
    if (v.has_time && !v.time_has_epoch)
      fmt::print(stderr,
                 "seqvit: warning: variable '{}': the time axis '{}' has units '{}' without an "
                 "epoch (not 'UNITS since DATE'); its times are shown as stored; training needs "
                 "--time-origin DATE\n",
                 v.name, v.time_axis, v.time_units);
    if (!v.dropped_axes.empty())
      dropped_notes.push_back(fmt::format("{} ({})", v.name, fmt::join(v.dropped_axes, ", ")));
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& f : fields) {
    const auto& v = ds.variable(f.variable);
    const int64_t H = v.H(), W = v.W(), T = v.T();
    std::vector<float> buf(static_cast<size_t>(H * W));  // [H*W] one time step
    Moments m;
    for (int64_t t = 0; t < T; ++t) {
      m.missing += ds.read(f, t, buf.data());
      m.add_step(buf.data(), H * W);
    }
    const std::string t0 = v.has_time ? data::cf_time_text(v, v.times.front()) : "";
    const std::string t1 = v.has_time ? data::cf_time_text(v, v.times.back()) : "";
    if (o.json) {
      nlohmann::json j;
      j["name"] = f.name;
      j["variable"] = f.variable;
      if (f.level >= 0) j["level_hpa"] = v.levels_hpa[f.level];
      j["units"] = v.units;
      j["shape"] = v.has_time ? std::vector<int64_t>{T, H, W} : std::vector<int64_t>{H, W};
      j["min"] = num(m.min), j["max"] = num(m.max), j["mean"] = num(m.n ? m.mean : NAN);
      j["std"] = num(m.std());
      j["count"] = m.n;
      j["missing"] = m.missing;
      j["lat_first"] = v.lat.front(), j["lat_last"] = v.lat.back();
      j["lat_in_file"] = v.lat_ascending_in_file ? "ascending" : "descending";
      j["horizontal_in_file"] = v.lon_first_in_file ? "lon, lat" : "lat, lon";
      j["lon_first"] = v.lon.front(), j["lon_last"] = v.lon.back();
      if (v.has_time && !v.time_has_epoch) {  // the stored values, in time_units
        j["time_first"] = v.times.front(), j["time_last"] = v.times.back();
        j["time_units"] = v.time_units;
      } else {
        j["time_first"] = v.has_time ? nlohmann::json(t0) : nlohmann::json();
        j["time_last"] = v.has_time ? nlohmann::json(t1) : nlohmann::json();
      }
      if (v.has_time) j["time_has_epoch"] = v.time_has_epoch;
      j["dropped_axes"] = v.dropped_axes;
      fmt::print("{}\n", j.dump());
    } else {
      auto g = [](double x) { return std::isfinite(x) ? fmt::format("{:.6g}", x) : "-"; };
      rows.push_back({f.name, v.units.empty() ? "-" : v.units,
                      v.has_time ? fmt::format("{}x{}x{}", T, H, W) : fmt::format("{}x{}", H, W),
                      g(m.min), g(m.max), g(m.n ? m.mean : NAN), g(m.std()),
                      std::to_string(m.missing),
                      fmt::format("{:g}..{:g}", v.lat.front(), v.lat.back()),
                      fmt::format("{:g}..{:g}", v.lon.front(), v.lon.back()),
                      v.has_time ? t0 + " .. " + t1 : "(constant)"});
    }
  }
  if (o.json) return;
  std::vector<std::string> head{"name", "units",   "shape", "min", "max", "mean",
                                "std",  "missing", "lat",   "lon", "time"};
  std::vector<size_t> w(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    w[c] = head[c].size();
    for (const auto& r : rows) w[c] = std::max(w[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t c = 0; c < r.size(); ++c) {
      const bool right = c >= 3 && c <= 7;  // numbers right-aligned
      s += right ? fmt::format("{:>{}}", r[c], w[c]) : fmt::format("{:<{}}", r[c], w[c]);
      s += c + 1 < r.size() ? "  " : "";
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    fmt::print("{}\n", s);
  };
  line(head);
  for (const auto& r : rows) line(r);
  fmt::print(
      "{} {} {}{}; latitude north to south, longitude in [0, 360); statistics over "
      "non-missing values after decoding\n",
      ds.files().size(), inner.format(),
      inner.format() == "Zarr" ? "store(s)" : "file(s)",
      o.grid.empty() ? "" : fmt::format(" regridded onto {}x{} ({})", target_h, target_w,
                                        o.regrid_method.empty() ? "conservative"
                                                                : o.regrid_method));
  if (!dropped_notes.empty())
    fmt::print("extra axes of length 1 dropped (read at index 0): {}\n",
               fmt::join(dropped_notes, "; "));
}

}  // namespace

void add_data_stats(CLI::App& data) {
  auto opts = std::make_shared<StatsOptions>();
  auto* c = data.add_subcommand(
      "stats", "Decode gridded fields and print min/max/mean/std/missing, grid and time range");
  c->add_option("paths", opts->paths,
                "NetCDF or GRIB files or directories (every *.nc or GRIB file below them, "
                "sorted), or Zarr stores")
      ->required();
  c->add_option("--var", opts->vars,
                "only these fields: a variable ('t2m', 'z' = all its levels) or a level 'z_500'")
      ->allow_extra_args(false);  // one name per --var; repeat it for more
  c->add_flag("--json", opts->json, "one JSON object per line per field");
  c->add_option("--grid", opts->grid,
                "HxW: the fields regridded onto the equiangular HxW grid, as `train --grid` "
                "reads them (weights cached beside the data when it is writable)");
  c->add_option("--regrid-method", opts->regrid_method,
                "with --grid: conservative (default) or bilinear");
  c->callback([opts] { run_stats(*opts); });
}

void add_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Inspect and generate NetCDF datasets");
  data->require_subcommand(1);
  add_data_stats(*data);
  add_data_synth(*data);
  add_data_regrid(*data);
}

}  // namespace seqvit::cli
