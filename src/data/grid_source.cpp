#include "data/grid_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/check.h"
#include "data/grib_source.h"
#include "data/names.h"
#include "data/netcdf_reader.h"
#include "data/zarr_source.h"
#include "data/zarr_store.h"

namespace seqvit::data {

namespace {

std::string join(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + fmt::format("{:g}", x);
  return s;
}

}  // namespace

std::vector<std::string> GridSource::variables() const {
  std::vector<std::string> r;
  for (int64_t i = 0; i < num_variables(); ++i) r.push_back(variable_at(i).name);
  return r;
}

bool GridSource::has(const std::string& name) const {
  for (int64_t i = 0; i < num_variables(); ++i)
    if (variable_at(i).name == name) return true;
  return false;
}

std::string GridSource::describe() const {
  const auto& f = files();
  if (f.empty()) return format();
  return fmt::format("{} ({}{})", format(), f.front(),
                     f.size() > 1 ? fmt::format(" and {} more", f.size() - 1) : "");
}

const GridVariable& GridSource::variable(const std::string& name) const {
  for (int64_t i = 0; i < num_variables(); ++i)
    if (variable_at(i).name == name) return variable_at(i);
  if (const std::string why = not_grid_reason(name); !why.empty()) fail("{}", why);
  std::string all;
  for (const auto& n : variables()) all += (all.empty() ? "" : ", ") + n;
  fail("unknown variable '{}'; the {} hold{}: {}", name, describe(),
       files().size() == 1 ? "s" : "", all);
}

const GridVariable& GridSource::checked_read(const FieldRef& f, int64_t t0, int64_t count) const {
  const GridVariable& v = variable(f.variable);
  if (count < 0 || t0 < 0 || t0 + count > v.T())
    fail("variable '{}': time steps {}..{} out of range; it has {} time steps", v.name, t0,
         t0 + count - 1, v.T());
  if (v.has_level && (f.level < 0 || f.level >= static_cast<int>(v.levels_hpa.size())))
    fail("variable '{}': level index {} out of range; it has {} levels", v.name, f.level,
         v.levels_hpa.size());
  return v;
}

namespace {

// "z_500" -> {"z", 500}: the name before the last '_' and a number after it; false otherwise.
bool split_level(const std::string& name, std::string* base, double* hpa) {
  const size_t us = name.rfind('_');
  if (us == std::string::npos || us + 1 >= name.size()) return false;
  const std::string lev = name.substr(us + 1);
  char* end = nullptr;
  *hpa = std::strtod(lev.c_str(), &end);
  if (!end || *end != '\0') return false;
  *base = name.substr(0, us);
  return true;
}

// The level index of `hpa` in `var`, or -1.
int level_index(const GridVariable& var, double hpa) {
  for (size_t i = 0; i < var.levels_hpa.size(); ++i)
    if (std::fabs(var.levels_hpa[i] - hpa) < 1e-3) return static_cast<int>(i);
  return -1;
}

bool named(const std::string& v, const NameEntry& e) {
  for (const char* n : {e.name, e.climax, e.era5, e.weatherbench2})
    if (v == n) return true;
  return false;
}

// The variable of exactly this name (or NAME_LEVEL of a variable with levels): the behaviour
// before the names table; false when the source has no variable of that name or base name.
bool resolve_exact(const GridSource& src, const std::string& name, FieldRef* out) {
  if (src.has(name)) {
    const auto& var = src.variable(name);
    if (var.has_level)
      fail("variable '{}' has pressure levels ({} hPa); name one level, e.g. '{}_{:g}'", name,
           join(var.levels_hpa), name, var.levels_hpa.front());
    *out = {name, name, -1};
    return true;
  }
  std::string base;
  double hpa;
  if (split_level(name, &base, &hpa) && src.has(base)) {
    const auto& var = src.variable(base);
    if (!var.has_level) fail("'{}': variable '{}' has no level axis; use '{}'", name, base, base);
    const int i = level_index(var, hpa);
    if (i < 0)
      fail("'{}': variable '{}' has no level {:g} hPa; available levels (hPa): {}", name, base,
           hpa, join(var.levels_hpa));
    *out = {name, base, i};
    return true;
  }
  return false;
}

}  // namespace

FieldRef GridSource::resolve(const std::string& name) const {
  if (!not_grid_reason(name).empty()) variable(name);  // throws: says why it is not a grid
  std::vector<FieldRef> found;  // distinct variables that match, the exact name first
  FieldRef exact;
  if (resolve_exact(*this, name, &exact)) found.push_back(exact);
  auto add = [&](const FieldRef& f) {
    for (const auto& g : found)
      if (g.variable == f.variable) return;
    found.push_back(f);
  };
  // The names table: single-level entries by the whole name, pressure entries by NAME_LEVEL.
  std::string level_problem;
  for (const NameEntry* e : entries_named(name, false))
    for (int64_t k = 0; k < num_variables(); ++k) {
      const GridVariable& v = variable_at(k);
      if (!v.has_level && (named(v.name, *e) || v.grib_short_name == e->grib))
        add({name, v.name, -1});
    }
  std::string base;
  double hpa;
  if (split_level(name, &base, &hpa))
    for (const NameEntry* e : entries_named(base, true))
      for (int64_t k = 0; k < num_variables(); ++k) {
        const GridVariable& v = variable_at(k);
        if (v.has_level && (named(v.name, *e) || v.grib_short_name == e->grib)) {
          const int i = level_index(v, hpa);
          if (i >= 0)
            add({name, v.name, i});
          else
            level_problem = fmt::format(
                "'{}': variable '{}' (the names table's name for '{}') has no level {:g} hPa; "
                "available levels (hPa): {}",
                name, v.name, base, hpa, join(v.levels_hpa));
        } else if (!v.has_level) {
          // WeatherBench: one level per file, registered as NAME_LEVEL (z_500)
          for (const char* n : {e->name, e->climax, e->era5, e->weatherbench2})
            if (v.name == fmt::format("{}_{:g}", n, hpa)) add({name, v.name, -1});
        }
      }
  if (found.size() > 1) {
    auto say = [&](const FieldRef& f) {
      return f.level < 0 ? fmt::format("'{}'", f.variable)
                         : fmt::format("'{}' at {:g} hPa", f.variable,
                                       variable(f.variable).levels_hpa[f.level]);
    };
    fail(
        "'{}' resolves two ways in the {}: variable {} and variable {} (same quantity under "
        "two names, see the names table in docs/data.md); keep only one of them in the data",
        name, describe(), say(found[0]), say(found[1]));
  }
  if (found.size() == 1) return found[0];
  if (!level_problem.empty()) fail("{}", level_problem);
  variable(name);  // throws: unknown variable, listing the known ones
  fail("unknown variable '{}'", name);
}

std::vector<FieldRef> GridSource::fields() const {
  std::vector<FieldRef> r;
  for (int64_t k = 0; k < num_variables(); ++k) {
    const GridVariable& v = variable_at(k);
    if (!v.has_level) {
      r.push_back({v.name, v.name, -1});
      continue;
    }
    for (size_t i = 0; i < v.levels_hpa.size(); ++i)
      r.push_back({fmt::format("{}_{:g}", v.name, v.levels_hpa[i]), v.name, static_cast<int>(i)});
  }
  return r;
}

std::vector<std::string> expand_paths(const std::vector<std::string>& paths,
                                      bool (*accept)(const std::string& file),
                                      const std::string& kind) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::recursive_directory_iterator(p, ec))
        if (e.is_regular_file() && accept(e.path().string())) in_dir.push_back(e.path().string());
      if (ec) fail("{}: cannot list the directory: {}", p, ec.message());
      if (in_dir.empty())
        fail("{}: the directory (and its sub-directories) holds no {} files", p, kind);
      std::sort(in_dir.begin(), in_dir.end());
      out.insert(out.end(), in_dir.begin(), in_dir.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      fail("{}: no such file or directory", p);
    }
  }
  if (out.empty()) fail("no {} files given", kind);
  return out;
}

std::unique_ptr<GridSource> open_grid_source(const std::vector<std::string>& paths,
                                             const SourceOptions& options) {
  // A directory holding .zmetadata or .zgroup is a Zarr store; the rest GRIB or NetCDF files.
  std::string zarr, other;  // the first path of each kind
  for (const auto& p : paths) {
    std::string& first = is_zarr_store(p) ? zarr : other;
    if (first.empty()) first = p;
  }
  if (!zarr.empty() && !other.empty())
    fail("the data mix a Zarr store ({}) and NetCDF or GRIB input ({}); give one kind of source",
         zarr, other);
  if (!zarr.empty()) return std::make_unique<ZarrDataset>(paths, options);
  // GRIB by extension or the "GRIB" magic (a directory by the files below it), else NetCDF;
  // one source is one format.
  std::string grib, netcdf;  // the first path of each format
  for (const auto& p : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec)) {
        if (!e.is_regular_file()) continue;
        const std::string f = e.path().string();
        if (e.path().extension() == ".nc") {
          if (netcdf.empty()) netcdf = f;
        } else if (grib.empty() && is_grib_file(f)) {
          grib = f;
        }
      }
    } else if (is_grib_file(p)) {
      if (grib.empty()) grib = p;
    } else if (netcdf.empty()) {
      netcdf = p;
    }
  }
  if (!grib.empty() && !netcdf.empty())
    fail(
        "the data mix formats: {} is GRIB but {} is not (NetCDF?); give one format per source "
        "(convert with e.g. cdo -f nc copy)",
        grib, netcdf);
  if (!grib.empty()) return std::make_unique<GribDataset>(paths);
  return std::make_unique<NetcdfDataset>(paths, options);
}

}  // namespace seqvit::data
