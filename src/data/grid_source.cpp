#include "data/grid_source.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "data/netcdf_reader.h"

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

FieldRef GridSource::resolve(const std::string& name) const {
  if (!not_grid_reason(name).empty()) variable(name);  // throws: says why it is not a grid
  if (has(name)) {
    const auto& var = variable(name);
    if (var.has_level)
      fail("variable '{}' has pressure levels ({} hPa); name one level, e.g. '{}_{:g}'", name,
           join(var.levels_hpa), name, var.levels_hpa.front());
    return {name, name, -1};
  }
  const size_t us = name.rfind('_');
  if (us != std::string::npos && us + 1 < name.size()) {
    const std::string base = name.substr(0, us), lev = name.substr(us + 1);
    char* end = nullptr;
    const double hpa = std::strtod(lev.c_str(), &end);
    if (end && *end == '\0' && has(base)) {
      const auto& var = variable(base);
      if (!var.has_level) fail("'{}': variable '{}' has no level axis; use '{}'", name, base, base);
      for (size_t i = 0; i < var.levels_hpa.size(); ++i)
        if (std::fabs(var.levels_hpa[i] - hpa) < 1e-3) return {name, base, static_cast<int>(i)};
      fail("'{}': variable '{}' has no level {:g} hPa; available levels (hPa): {}", name, base, hpa,
           join(var.levels_hpa));
    }
  }
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

std::unique_ptr<GridSource> open_grid_source(const std::vector<std::string>& paths) {
  return std::make_unique<NetcdfDataset>(paths);
}

}  // namespace seqvit::data
