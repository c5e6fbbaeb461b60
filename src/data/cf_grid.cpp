// The CF interpretation shared by the readers; see cf_grid.h and docs/data.md.
#include "data/cf_grid.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>

#include <fmt/ranges.h>

#include "core/check.h"
#include "data/cf_time.h"

namespace seqvit::data {

namespace {

bool in(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (s == n) return true;
  return false;
}

bool same_values(const std::vector<double>& a, const std::vector<double>& b, size_t* where) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i] - b[i]) > 1e-6 * std::max(1.0, std::fabs(a[i]))) {
      *where = i;
      return false;
    }
  return true;
}

}  // namespace

std::string cf_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

CfAxis cf_axis_of(const std::string& dim, const std::string& units) {
  const std::string d = cf_lower(dim), u = cf_lower(units);
  if (in(d, {"lat", "latitude", "nav_lat", "rlat"}) ||
      in(u, {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn"}))
    return CfAxis::Lat;
  if (in(d, {"lon", "longitude", "nav_lon", "rlon"}) ||
      in(u, {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese"}))
    return CfAxis::Lon;
  if (in(d, {"time", "valid_time", "t", "times"}) || u.find(" since ") != std::string::npos)
    return CfAxis::Time;
  if (in(d, {"level", "levels", "lev", "plev", "isobaricinhpa", "pressure_level", "pressure_levels",
             "pressure", "isobaric", "air_pressure"}) ||
      in(u, {"hpa", "pa", "millibars", "millibar", "mbar", "mb"}))
    return CfAxis::Level;
  return CfAxis::Other;
}

std::string cf_grid_layout(const std::vector<CfAxis>& ax, const std::vector<int64_t>& len,
                           const std::vector<std::string>& names, CfLayout* out) {
  *out = {};
  const int n = static_cast<int>(ax.size());
  std::vector<int> kept;  // the dims that are not extra axes of length 1
  for (int i = 0; i < n; ++i) {
    int* slot = ax[i] == CfAxis::Time    ? &out->tdim
                : ax[i] == CfAxis::Level ? &out->ldim
                : ax[i] == CfAxis::Lat   ? &out->ydim
                : ax[i] == CfAxis::Lon   ? &out->xdim
                                         : nullptr;
    if (!slot) continue;
    if (*slot >= 0)
      return fmt::format("'{}' and '{}' are both {} axes; expected one", names[*slot], names[i],
                         ax[i] == CfAxis::Time    ? "time"
                         : ax[i] == CfAxis::Level ? "pressure-level"
                         : ax[i] == CfAxis::Lat   ? "latitude"
                                                  : "longitude");
    *slot = i;
    kept.push_back(i);
  }
  if (out->ydim < 0 || out->xdim < 0)
    return "expected (time, [level], lat, lon) with latitude and longitude last (in either "
           "order)";
  // The kept dims in the order time, level, then lat and lon in the order stored.
  out->lon_first = out->xdim < out->ydim;
  std::vector<int> want;
  for (int d : {out->tdim, out->ldim, std::min(out->ydim, out->xdim),
                std::max(out->ydim, out->xdim)})
    if (d >= 0) want.push_back(d);
  if (kept != want)
    return "expected the order (time, [level], lat, lon) or (time, [level], lon, lat)";
  for (int i = 0; i < n; ++i) {
    if (ax[i] != CfAxis::Other) continue;
    if (len[i] != 1)
      return fmt::format(
          "its axis '{}' has length {}; expected (time, [level], lat, lon) and extra axes of "
          "length 1 only (those are dropped): select one '{}' first, e.g. `ncks -d {},0 in.nc "
          "out.nc`, `cdo sellevidx,1` for a vertical axis, or xarray's .isel({}=0)",
          names[i], len[i], names[i], names[i], names[i]);
    out->dropped.push_back(i);
  }
  return "";
}

std::vector<double> levels_in_hpa(const std::vector<double>& values, const std::string& units) {
  const std::string u = cf_lower(units);
  bool pascal;
  if (in(u, {"pa", "pascal", "pascals"}))
    pascal = true;
  else if (in(u, {"hpa", "millibars", "millibar", "mbar", "mb"}))
    pascal = false;
  else
    pascal = !values.empty() && *std::max_element(values.begin(), values.end()) > 2000.0;
  std::vector<double> r;
  for (double p : values) r.push_back(pascal ? p / 100.0 : p);
  return r;
}

namespace {

// The names of a `coordinates` attribute ("lat lon level") first, then `usual` (once each).
std::vector<std::string> coordinate_names(const std::string& coords,
                                          std::vector<std::string> usual) {
  std::vector<std::string> names;
  for (size_t a = 0; a < coords.size();) {
    const size_t b = std::min(coords.find(' ', a), coords.size());
    if (b > a) names.push_back(coords.substr(a, b - a));
    a = b + 1;
  }
  for (auto& n : usual)
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(std::move(n));
  return names;
}

}  // namespace

std::vector<std::string> scalar_level_names(const std::string& coords) {
  return coordinate_names(coords, {"level", "plev", "isobaricInhPa", "pressure_level", "lev"});
}

std::vector<std::string> latlon_coordinate_names(const std::string& coords) {
  return coordinate_names(coords, {"lat", "latitude", "nav_lat", "lon", "longitude", "nav_lon"});
}

void set_canonical_lat(GridVariable& v, std::vector<double> lat, const std::string& where,
                       const std::string& dim) {
  for (size_t i = 1; i < lat.size(); ++i)
    if ((lat[i] - lat[i - 1]) * (lat[1] - lat[0]) <= 0)
      fail("{}: latitude '{}' is not strictly monotonic (values {} and {} at {} and {})", where,
           dim, lat[i - 1], lat[i], i - 1, i);
  for (double y : lat)
    if (!(y >= -90.0 - 1e-9 && y <= 90.0 + 1e-9))
      fail("{}: latitude '{}' holds {}, outside [-90, 90]", where, dim, y);
  v.lat_ascending_in_file = lat.size() > 1 && lat[1] > lat[0];
  if (v.lat_ascending_in_file) std::reverse(lat.begin(), lat.end());
  v.lat = std::move(lat);
}

void set_canonical_lon(GridVariable& v, std::vector<double> lon, const std::string& where,
                       const std::string& dim) {
  v.lon_in_file = std::move(lon);
  const auto& lf = v.lon_in_file;
  std::vector<double> wrapped(lf.size());
  for (size_t i = 0; i < lf.size(); ++i) {
    if (!std::isfinite(lf[i])) fail("{}: longitude '{}' holds {}", where, dim, lf[i]);
    double x = std::fmod(lf[i], 360.0);
    if (x < 0) x += 360.0;
    if (x >= 360.0) x -= 360.0;
    wrapped[i] = x;
  }
  v.lon_src.resize(lf.size());
  std::iota(v.lon_src.begin(), v.lon_src.end(), 0);
  std::stable_sort(v.lon_src.begin(), v.lon_src.end(),
                   [&](int64_t a, int64_t b) { return wrapped[a] < wrapped[b]; });
  v.lon.resize(lf.size());
  for (size_t j = 0; j < lf.size(); ++j) v.lon[j] = wrapped[v.lon_src[j]];
  for (size_t j = 1; j < v.lon.size(); ++j)
    if (v.lon[j] - v.lon[j - 1] < 1e-9)
      fail(
          "{}: longitude '{}' holds the same meridian twice ({} and {}); expected each "
          "longitude once",
          where, dim, lf[v.lon_src[j - 1]], lf[v.lon_src[j]]);
}

std::vector<double> cf_times(const std::vector<double>& values, const std::string& units,
                             const std::string& calendar_in, const std::string& where,
                             const std::string& dim, const std::string& time_origin,
                             bool* has_epoch) {
  const std::string calendar = cf_lower(calendar_in);
  const std::string u = cf_lower(units);
  // Units without an epoch: one word ("days", "Month") or none. Anything else without
  // " since " is a malformed CF time and an error below.
  const bool no_epoch = u.find(" since ") == std::string::npos &&
                        u.find_first_of(" \t") == std::string::npos;
  *has_epoch = !no_epoch || !time_origin.empty();
  if (!*has_epoch) {  // as stored, for `data stats`; training asks for --time-origin
    for (size_t i = 1; i < values.size(); ++i)
      if (!(values[i] > values[i - 1]))
        fail("{}: time '{}' is not increasing ({:g} then {:g} {})", where, dim, values[i - 1],
             values[i], units);
    return values;
  }
  if (!calendar.empty() && !in(calendar, {"standard", "gregorian", "proleptic_gregorian"}))
    fail("{}: time '{}' uses calendar '{}'; supported: standard, gregorian, proleptic_gregorian",
         where, dim, calendar);
  std::string full = units;
  if (no_epoch) {
    if (in(u, {"months", "month", "mon", "years", "year", "yr", "common_years"}))
      fail(
          "{}: time '{}' has units '{}': months and years have no fixed length, so seqvit "
          "cannot place them on a timeline even with --time-origin; give the file an axis in "
          "days or hours, e.g. `cdo settaxis,1979-01-01,00:00:00,1mon in.nc out.nc`",
          where, dim, units);
    try {
      parse_iso_datetime(time_origin);
    } catch (const Error& e) {
      fail("--time-origin '{}': {}", time_origin, e.what());
    }
    full = units + " since " + time_origin;
  }
  CfTimeUnits tu;
  try {
    tu = parse_cf_time_units(full);
  } catch (const Error& e) {
    fail("{}: time '{}': {}", where, dim, e.what());
  }
  std::vector<double> times;
  for (double t : values) times.push_back(tu.to_hours(t));
  for (size_t i = 1; i < times.size(); ++i)
    if (!(times[i] > times[i - 1]))
      fail("{}: time '{}' is not increasing ({} then {})", where, dim, iso8601(times[i - 1]),
           iso8601(times[i]));
  return times;
}

std::string cf_time_text(const GridVariable& v, double t) {
  if (v.time_has_epoch) return iso8601(t);
  return fmt::format("{:g} {} (no epoch)", t, v.time_units.empty() ? "(no units)" : v.time_units);
}

std::string cf_grid_refusal(const std::vector<std::string>& coordinates_2d,
                            const std::string& grid_mapping) {
  if (!coordinates_2d.empty())
    return fmt::format(
        "its latitudes and longitudes are 2-D ({}): a curvilinear grid; seqvit reads regular "
        "latitude-longitude grids only: regrid it first, e.g. `cdo remapbil,r64x32 in.nc "
        "out.nc`",
        fmt::join(coordinates_2d, ", "));
  if (!grid_mapping.empty() && cf_lower(grid_mapping) != "latitude_longitude")
    return fmt::format(
        "its grid_mapping is '{}', not a regular latitude-longitude grid; seqvit reads "
        "regular latitude-longitude grids only: regrid it first, e.g. `cdo remapbil,r64x32 "
        "in.nc out.nc`",
        grid_mapping);
  return "";
}

int64_t decode_to_canonical(const double* raw, int64_t H, int64_t W, const CfDecode& d,
                            bool lat_flip, const std::vector<int64_t>& lon_src, bool lon_first,
                            float* out) {
  // Stored element (row y, column x): raw[y * W + x], or raw[x * H + y] when lon_first.
  const int64_t row_stride = lon_first ? 1 : W, col_stride = lon_first ? H : 1;
  int64_t missing = 0;
  for (int64_t i = 0; i < H; ++i) {
    const int64_t src_row = lat_flip ? H - 1 - i : i;
    const double* row = raw + src_row * row_stride;
    for (int64_t j = 0; j < W; ++j) {
      double r = row[lon_src[j] * col_stride];
      if (d.unsigned_bytes && r < 0) r += 256;
      bool miss = std::isnan(r);
      for (double m : d.missing) miss |= (r == m);
      if (miss) {
        ++missing;
        out[i * W + j] = NAN;
      } else {
        out[i * W + j] = static_cast<float>(r * d.scale + d.offset);
      }
    }
  }
  return missing;
}

CfConcatenation concatenate_in_time(const std::string& name,
                                    const std::vector<const GridVariable*>& ps,
                                    const std::vector<std::string>& sources) {
  CfConcatenation c;
  c.order.resize(ps.size());
  std::iota(c.order.begin(), c.order.end(), size_t{0});
  std::stable_sort(c.order.begin(), c.order.end(), [&](size_t a, size_t b) {
    const double ta = ps[a]->times.empty() ? 0 : ps[a]->times.front();
    const double tb = ps[b]->times.empty() ? 0 : ps[b]->times.front();
    return ta < tb;
  });
  const GridVariable& v = *ps[c.order.front()];
  const std::string& f0 = sources[c.order.front()];
  for (size_t k : c.order) {
    const GridVariable& p = *ps[k];
    const std::string& f = sources[k];
    size_t at = 0;
    auto differ = [&](const char* what, const std::vector<double>& a,
                      const std::vector<double>& b) {
      if (a.size() != b.size())
        fail(
            "variable '{}': {} has {} {} values but {} has {}; files of one variable must "
            "share one grid",
            name, f, b.size(), what, f0, a.size());
      fail(
          "variable '{}': {} value {} is {:g} in {} but {:g} in {}; files of one variable "
          "must share one grid",
          name, what, at, a[at], f0, b[at], f);
    };
    if (!same_values(v.lat, p.lat, &at)) differ("latitude", v.lat, p.lat);
    if (!same_values(v.lon, p.lon, &at)) differ("longitude", v.lon, p.lon);
    if (!same_values(v.levels_hpa, p.levels_hpa, &at))
      differ("level (hPa)", v.levels_hpa, p.levels_hpa);
    if (p.has_time != v.has_time)
      fail("variable '{}' has a time axis in {} but not in {}", name, v.has_time ? f0 : f,
           v.has_time ? f : f0);
    if (p.has_time && (p.time_has_epoch != v.time_has_epoch || p.time_units != v.time_units) &&
        (!p.time_has_epoch || !v.time_has_epoch))
      fail(
          "variable '{}': time units '{}' in {} but '{}' in {}; files of one variable need "
          "one time axis (give --time-origin for units without an epoch)",
          name, v.time_units, f0, p.time_units, f);
    if (!v.has_time && ps.size() > 1)
      fail(
          "variable '{}' has no time axis but appears in {} and {}; a constant must be in "
          "one file",
          name, f0, sources[c.order[1]]);
    if (!c.times.empty() && !p.times.empty() && p.times.front() <= c.times.back())
      fail(
          "variable '{}': the times of {} ({} .. {}) overlap those of an earlier file ending "
          "at {}",
          name, f, cf_time_text(v, p.times.front()), cf_time_text(v, p.times.back()),
          cf_time_text(v, c.times.back()));
    c.t0.push_back(static_cast<int64_t>(c.times.size()));
    c.times.insert(c.times.end(), p.times.begin(), p.times.end());
  }
  // A gap: a spacing over 1.5 times the smallest one (monthly data, 28..31 days, passes).
  const auto& times = c.times;
  if (times.size() > 2) {
    double step = INFINITY;
    for (size_t i = 1; i < times.size(); ++i) step = std::min(step, times[i] - times[i - 1]);
    for (size_t i = 1; i < times.size(); ++i)
      if (times[i] - times[i - 1] > 1.5 * step) {
        auto source_of = [&](size_t t) {
          for (size_t k = 0; k < c.order.size(); ++k) {
            const auto n = static_cast<int64_t>(ps[c.order[k]]->times.size());
            if (static_cast<int64_t>(t) >= c.t0[k] && static_cast<int64_t>(t) < c.t0[k] + n)
              return sources[c.order[k]];
          }
          return std::string();
        };
        const auto n_missing = std::llround((times[i] - times[i - 1]) / step) - 1;
        const std::string a = source_of(i - 1), b = source_of(i);
        fail(
            "variable '{}': time step {} is missing{}: the data are every {:g} {}, but {} is "
            "followed by {} ({})",
            name, cf_time_text(v, times[i - 1] + step),
            n_missing > 1 ? fmt::format(" (and {} more)", n_missing - 1) : "", step,
            v.time_has_epoch ? "h" : v.time_units, cf_time_text(v, times[i - 1]),
            cf_time_text(v, times[i]),
            a == b ? "in " + a : "the first in " + a + ", the next in " + b);
      }
  }
  return c;
}

}  // namespace seqvit::data
