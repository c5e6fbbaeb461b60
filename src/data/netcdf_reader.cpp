// CF NetCDF reader; see netcdf_reader.h for the decoding rules and docs/data.md for the why.
#include "data/netcdf_reader.h"

#include <netcdf.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>

#include "core/check.h"
#include "data/cf_time.h"

namespace seqvit::data {

namespace fs = std::filesystem;

namespace {

// Every libnetcdf call goes through here: the error names the file, the variable and the call.
void nc_check(int status, const std::string& file, const std::string& var, const char* what) {
  if (status == NC_NOERR) return;
  if (var.empty()) fail("{}: {}: {}", file, what, nc_strerror(status));
  fail("{}: variable '{}': {}: {}", file, var, what, nc_strerror(status));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool in(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (s == n) return true;
  return false;
}

// Whether an attribute exists (NC_ENOTATT: no); any other failure is an error.
bool has_att(int nc, int varid, const char* name, nc_type* type, size_t* len,
             const std::string& file, const std::string& var) {
  const int st = nc_inq_att(nc, varid, name, type, len);
  if (st == NC_ENOTATT) return false;
  nc_check(st, file, var, name);
  return true;
}

// Whether a variable of this name exists (NC_ENOTVAR: no); any other failure is an error.
bool find_var(int nc, const std::string& name, int* varid, const std::string& file) {
  const int st = nc_inq_varid(nc, name.c_str(), varid);
  if (st == NC_ENOTVAR) return false;
  nc_check(st, file, name, "nc_inq_varid");
  return true;
}

// Text attribute, "" when absent.
std::string att_text(int nc, int varid, const char* name, const std::string& file,
                     const std::string& var) {
  nc_type type;
  size_t len;
  if (!has_att(nc, varid, name, &type, &len, file, var)) return "";
  if (type == NC_STRING) {
    char* s = nullptr;
    nc_check(nc_get_att_string(nc, varid, name, &s), file, var, name);
    std::string r = s ? s : "";
    nc_free_string(1, &s);
    return r;
  }
  if (type != NC_CHAR) return "";
  std::string r(len, '\0');
  nc_check(nc_get_att_text(nc, varid, name, r.data()), file, var, name);
  while (!r.empty() && r.back() == '\0') r.pop_back();
  return r;
}

// Numeric attribute values, empty when absent.
std::vector<double> att_doubles(int nc, int varid, const char* name, const std::string& file,
                                const std::string& var) {
  nc_type type;
  size_t len;
  if (!has_att(nc, varid, name, &type, &len, file, var)) return {};
  if (type == NC_CHAR || type == NC_STRING)
    fail("{}: variable '{}': attribute {} is text; expected a number", file, var, name);
  std::vector<double> v(len);
  nc_check(nc_get_att_double(nc, varid, name, v.data()), file, var, name);
  return v;
}

enum class Axis { Time, Level, Lat, Lon, Other };

// Classifies a dimension by its name and, if it has one, its coordinate variable's units.
Axis axis_of(const std::string& dim, const std::string& units) {
  const std::string d = lower(dim), u = lower(units);
  if (in(d, {"lat", "latitude", "nav_lat", "rlat"}) ||
      in(u, {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn"}))
    return Axis::Lat;
  if (in(d, {"lon", "longitude", "nav_lon", "rlon"}) ||
      in(u, {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese"}))
    return Axis::Lon;
  if (in(d, {"time", "valid_time", "t", "times"}) || u.find(" since ") != std::string::npos)
    return Axis::Time;
  if (in(d, {"level", "levels", "lev", "plev", "isobaricinhpa", "pressure_level", "pressure_levels",
             "pressure", "isobaric", "air_pressure"}) ||
      in(u, {"hpa", "pa", "millibars", "millibar", "mbar", "mb"}))
    return Axis::Level;
  return Axis::Other;
}

struct Coord {
  std::vector<double> values;
  std::string units, calendar;
};

// A 1-D coordinate variable, with its own packing applied. Missing -> error naming the dim.
Coord read_coord(int nc, const std::string& dim, size_t len, const std::string& file,
                 const std::string& for_var) {
  int varid;
  if (!find_var(nc, dim, &varid, file))
    fail(
        "{}: variable '{}': dimension '{}' has no coordinate variable; a CF file stores the "
        "{} values in a variable of that name",
        file, for_var, dim, dim);
  Coord c;
  c.values.resize(len);
  if (len) nc_check(nc_get_var_double(nc, varid, c.values.data()), file, dim, "reading coordinate");
  c.units = att_text(nc, varid, "units", file, dim);
  c.calendar = lower(att_text(nc, varid, "calendar", file, dim));
  const auto sf = att_doubles(nc, varid, "scale_factor", file, dim);
  const auto ao = att_doubles(nc, varid, "add_offset", file, dim);
  for (auto& v : c.values) v = v * (sf.empty() ? 1.0 : sf[0]) + (ao.empty() ? 0.0 : ao[0]);
  return c;
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

// Pressure levels in hPa, by the units, else by magnitude: levels in hPa end at 1000 (1100 at
// most), so a largest level above 2000 must be in Pa.
std::vector<double> levels_in_hpa(const std::vector<double>& values, const std::string& units) {
  const std::string u = lower(units);
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

// The level of a scalar (0-d) pressure-level coordinate of `varid` (named in its `coordinates`
// attribute, or one of the usual level names), in hPa; NaN if there is none.
double scalar_level_hpa(int nc, int varid, const std::string& file, const std::string& var) {
  std::vector<std::string> names{"level", "plev", "isobaricInhPa", "pressure_level", "lev"};
  std::string coords = att_text(nc, varid, "coordinates", file, var);
  for (size_t a = 0; a < coords.size();) {
    const size_t b = std::min(coords.find(' ', a), coords.size());
    if (b > a) names.insert(names.begin(), coords.substr(a, b - a));
    a = b + 1;
  }
  for (const auto& n : names) {
    int id, nd;
    if (!find_var(nc, n, &id, file)) continue;
    nc_check(nc_inq_varndims(nc, id, &nd), file, n, "nc_inq_varndims");
    const std::string units = att_text(nc, id, "units", file, n);
    if (nd != 0 || axis_of(n, units) != Axis::Level) continue;
    double value;
    nc_check(nc_get_var_double(nc, id, &value), file, n, "reading the level");
    return levels_in_hpa({value}, units)[0];
  }
  return NAN;
}

// A variable as found in one file, before concatenation.
struct FileVar {
  NcVariable v;         // with a single segment and the file's own times
  std::string problem;  // non-empty: not a grid variable, and why
};

FileVar scan_variable(int nc, int file_index, const std::string& file, int varid) {
  FileVar fv;
  NcVariable& v = fv.v;
  char name[NC_MAX_NAME + 1];
  int ndims;
  int dimids[NC_MAX_VAR_DIMS];
  nc_type type;
  nc_check(nc_inq_var(nc, varid, name, &type, &ndims, dimids, nullptr), file, "", "nc_inq_var");
  v.name = name;
  std::vector<std::string> dn(ndims);
  std::vector<size_t> dl(ndims);
  std::vector<Axis> ax(ndims);
  std::string dims_text;
  for (int i = 0; i < ndims; ++i) {
    char d[NC_MAX_NAME + 1];
    nc_check(nc_inq_dim(nc, dimids[i], d, &dl[i]), file, v.name, "nc_inq_dim");
    dn[i] = d;
    int cid;
    std::string cu;
    if (find_var(nc, d, &cid, file)) cu = att_text(nc, cid, "units", file, d);
    ax[i] = axis_of(dn[i], cu);
    dims_text += (i ? ", " : "") + dn[i];
  }
  auto reject = [&](const std::string& why) {
    fv.problem = fmt::format("{}: variable '{}' has dims ({}); {}", file, v.name, dims_text, why);
    return fv;
  };
  if (ndims < 2 || ax[ndims - 2] != Axis::Lat || ax[ndims - 1] != Axis::Lon)
    return reject("expected (time, [level], lat, lon) with latitude and longitude last");
  if (ndims > 4) return reject("expected at most (time, level, lat, lon)");
  if (type == NC_STRING || type == NC_CHAR) return reject("it holds text, not numbers");
  int lead = ndims - 2, tdim = -1, ldim = -1;
  if (lead == 2) {
    if (ax[0] != Axis::Time || ax[1] != Axis::Level)
      return reject("expected (time, level, lat, lon)");
    tdim = 0, ldim = 1;
  } else if (lead == 1) {
    if (ax[0] == Axis::Time)
      tdim = 0;
    else if (ax[0] == Axis::Level)
      ldim = 0;
    else
      return reject("the first dim is neither time nor a pressure level");
  }
  v.units = att_text(nc, varid, "units", file, v.name);
  v.long_name = att_text(nc, varid, "long_name", file, v.name);

  // Latitude: strictly monotonic; canonical north to south.
  auto lat = read_coord(nc, dn[ndims - 2], dl[ndims - 2], file, v.name).values;
  if (lat.empty()) return reject("the latitude axis is empty");
  for (size_t i = 1; i < lat.size(); ++i)
    if ((lat[i] - lat[i - 1]) * (lat[1] - lat[0]) <= 0)
      fail("{}: latitude '{}' is not strictly monotonic (values {} and {} at {} and {})", file,
           dn[ndims - 2], lat[i - 1], lat[i], i - 1, i);
  for (double y : lat)
    if (!(y >= -90.0 - 1e-9 && y <= 90.0 + 1e-9))
      fail("{}: latitude '{}' holds {}, outside [-90, 90]", file, dn[ndims - 2], y);
  v.lat_ascending_in_file = lat.size() > 1 && lat[1] > lat[0];
  if (v.lat_ascending_in_file) std::reverse(lat.begin(), lat.end());
  v.lat = lat;

  // Longitude: each value mapped onto [0, 360), columns sorted ascending; a repeated meridian
  // (0 and 360 both present) is an error rather than a silently duplicated column.
  v.lon_in_file = read_coord(nc, dn[ndims - 1], dl[ndims - 1], file, v.name).values;
  const auto& lf = v.lon_in_file;
  if (lf.empty()) return reject("the longitude axis is empty");
  std::vector<double> wrapped(lf.size());
  for (size_t i = 0; i < lf.size(); ++i) {
    if (!std::isfinite(lf[i])) fail("{}: longitude '{}' holds {}", file, dn[ndims - 1], lf[i]);
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
          file, dn[ndims - 1], lf[v.lon_src[j - 1]], lf[v.lon_src[j]]);

  NcVariable::Segment seg;
  seg.file = file_index;
  seg.varid = varid;
  seg.lat_flip = v.lat_ascending_in_file;
  seg.lon_src = v.lon_src;
  if (tdim >= 0) {
    v.has_time = true;
    auto c = read_coord(nc, dn[tdim], dl[tdim], file, v.name);
    if (!c.calendar.empty() && !in(c.calendar, {"standard", "gregorian", "proleptic_gregorian"}))
      fail(
          "{}: time '{}' uses calendar '{}'; supported: standard, gregorian, "
          "proleptic_gregorian",
          file, dn[tdim], c.calendar);
    CfTimeUnits tu;
    try {
      tu = parse_cf_time_units(c.units);
    } catch (const Error& e) {
      fail("{}: time '{}': {}", file, dn[tdim], e.what());
    }
    for (double t : c.values) v.times.push_back(tu.to_hours(t));
    for (size_t i = 1; i < v.times.size(); ++i)
      if (!(v.times[i] > v.times[i - 1]))
        fail("{}: time '{}' is not increasing ({} then {})", file, dn[tdim],
             iso8601(v.times[i - 1]), iso8601(v.times[i]));
    seg.nt = static_cast<int64_t>(v.times.size());
  }
  if (ldim >= 0) {
    v.has_level = true;
    auto c = read_coord(nc, dn[ldim], dl[ldim], file, v.name);
    v.levels_hpa = levels_in_hpa(c.values, c.units);
  } else if (const double hpa = scalar_level_hpa(nc, varid, file, v.name); !std::isnan(hpa)) {
    // WeatherBench stores one level per file (geopotential_500: z (time, lat, lon) with a scalar
    // coordinate level = 500): such a variable is the field z_500 itself.
    v.name = fmt::format("{}_{:g}", v.name, hpa);
  }

  // Packing and missing values; the fill values stay raw (they are compared before unpacking).
  auto& d = seg.decode;
  const auto sf = att_doubles(nc, varid, "scale_factor", file, v.name);
  const auto ao = att_doubles(nc, varid, "add_offset", file, v.name);
  if (!sf.empty()) d.scale = sf[0];
  if (!ao.empty()) d.offset = ao[0];
  for (const char* a : {"_FillValue", "missing_value"})
    for (double x : att_doubles(nc, varid, a, file, v.name)) d.missing.push_back(x);
  // A float variable whose missing_value was written as double (common, though not CF): compare
  // in the variable's own precision, as the data were stored.
  if (type == NC_FLOAT)
    for (auto& m : d.missing) m = static_cast<double>(static_cast<float>(m));
  d.unsigned_bytes =
      type == NC_BYTE && lower(att_text(nc, varid, "_Unsigned", file, v.name)) == "true";
  if (d.unsigned_bytes)
    for (auto& m : d.missing)
      if (m < 0) m += 256;
  v.segments.push_back(seg);
  return fv;
}

// NetCDF-3 (classic, 64-bit offset) reads past the end of a file return zeros rather than an
// error (the format lets record files grow), so a truncated download would decode silently.
// Check that the file holds at least the bytes its variables need (each padded to 4 bytes).
void check_nc3_size(int nc, const std::string& file) {
  int format;
  nc_check(nc_inq_format(nc, &format), file, "", "nc_inq_format");
  if (format != NC_FORMAT_CLASSIC && format != NC_FORMAT_64BIT_OFFSET) return;
  int nvars, unlim;
  nc_check(nc_inq_nvars(nc, &nvars), file, "", "nc_inq_nvars");
  nc_check(nc_inq_unlimdim(nc, &unlim), file, "", "nc_inq_unlimdim");
  uintmax_t need = 0;
  for (int id = 0; id < nvars; ++id) {
    nc_type type;
    int ndims, dims[NC_MAX_VAR_DIMS];
    nc_check(nc_inq_var(nc, id, nullptr, &type, &ndims, dims, nullptr), file, "", "nc_inq_var");
    size_t elem;
    nc_check(nc_inq_type(nc, type, nullptr, &elem), file, "", "nc_inq_type");
    uintmax_t bytes = elem;
    for (int d = 0; d < ndims; ++d) {
      size_t len;
      nc_check(nc_inq_dimlen(nc, dims[d], &len), file, "", "nc_inq_dimlen");
      bytes *= len;
    }
    need += (bytes + 3) / 4 * 4;
  }
  std::error_code ec;
  const auto have = fs::file_size(file, ec);
  if (!ec && have < need)
    fail(
        "{}: the file is truncated: it has {} bytes, but its variables need at least {} "
        "(an interrupted download or copy?)",
        file, have, need);
}

}  // namespace

std::vector<std::string> expand_netcdf_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      // recursive: the ERA5 / WeatherBench layout keeps one sub-directory per variable
      for (const auto& e : fs::recursive_directory_iterator(p, ec))
        if (e.is_regular_file() && e.path().extension() == ".nc")
          in_dir.push_back(e.path().string());
      if (ec) fail("{}: cannot list the directory: {}", p, ec.message());
      if (in_dir.empty()) fail("{}: the directory (and its sub-directories) holds no *.nc files", p);
      std::sort(in_dir.begin(), in_dir.end());
      out.insert(out.end(), in_dir.begin(), in_dir.end());
    } else if (fs::exists(p, ec)) {
      out.push_back(p);
    } else {
      fail("{}: no such file or directory", p);
    }
  }
  if (out.empty()) fail("no NetCDF files given");
  return out;
}

std::recursive_mutex& netcdf_library_mutex() {
  static std::recursive_mutex m;
  return m;
}

NetcdfDataset::NetcdfDataset(const std::vector<std::string>& paths)
    : files_(expand_netcdf_paths(paths)) {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  std::map<std::string, std::vector<NcVariable>> parts;  // variable -> one per file
  std::vector<std::string> order;
  std::map<std::string, std::string> rejected;  // name -> why it is not a grid variable
  for (int fi = 0; fi < static_cast<int>(files_.size()); ++fi) {
    const std::string& file = files_[fi];
    {
      std::ifstream probe(file, std::ios::binary);
      if (!probe) fail("{}: cannot open the file for reading (permissions?)", file);
    }
    int nc;
    nc_check(nc_open(file.c_str(), NC_NOWRITE, &nc), file, "",
             "not a readable NetCDF file (classic, 64-bit offset or NetCDF-4 expected)");
    try {
      check_nc3_size(nc, file);
      int nvars;
      nc_check(nc_inq_nvars(nc, &nvars), file, "", "nc_inq_nvars");
      int grid_vars = 0;
      std::string first_problem;
      for (int id = 0; id < nvars; ++id) {
        char name[NC_MAX_NAME + 1];
        int ndims;
        nc_check(nc_inq_varname(nc, id, name), file, "", "nc_inq_varname");
        nc_check(nc_inq_varndims(nc, id, &ndims), file, name, "nc_inq_varndims");
        // Coordinate variables (1-D, named like their dimension) and scalars are skipped.
        if (ndims == 0) continue;
        if (ndims == 1) {
          int dimid;
          char dname[NC_MAX_NAME + 1];
          nc_check(nc_inq_vardimid(nc, id, &dimid), file, name, "nc_inq_vardimid");
          nc_check(nc_inq_dimname(nc, dimid, dname), file, name, "nc_inq_dimname");
          if (std::string(dname) == name) continue;
        }
        auto fv = scan_variable(nc, fi, file, id);
        if (!fv.problem.empty()) {
          if (first_problem.empty()) first_problem = fv.problem;
          rejected.emplace(fv.v.name, fv.problem);
          continue;
        }
        ++grid_vars;
        if (!parts.count(fv.v.name)) order.push_back(fv.v.name);
        parts[fv.v.name].push_back(std::move(fv.v));
      }
      if (grid_vars == 0) {
        const std::string why = first_problem.empty() ? "" : " (" + first_problem + ")";
        fail("{}: no variable with dims (time, [level], lat, lon){}", file, why);
      }
    } catch (...) {
      nc_close(nc);  // unchecked: already reporting the first error
      throw;
    }
    nc_check(nc_close(nc), file, "", "nc_close");
  }
  for (const auto& [name, why] : rejected)
    if (!parts.count(name)) not_grid_[name] = why;

  for (const auto& name : order) {
    auto& ps = parts[name];
    std::stable_sort(ps.begin(), ps.end(), [](const NcVariable& a, const NcVariable& b) {
      const double ta = a.times.empty() ? 0 : a.times.front();
      const double tb = b.times.empty() ? 0 : b.times.front();
      return ta < tb;
    });
    NcVariable v = ps.front();
    v.segments.clear();
    v.times.clear();
    const std::string& f0 = files_[ps.front().segments[0].file];
    for (const auto& p : ps) {
      const std::string& f = files_[p.segments[0].file];
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
      if (!v.has_time && ps.size() > 1)
        fail(
            "variable '{}' has no time axis but appears in {} and {}; a constant must be in "
            "one file",
            name, f0, files_[ps[1].segments[0].file]);
      auto seg = p.segments[0];  // keeps its own orientation: files may store the grid differently
      seg.t0 = static_cast<int64_t>(v.times.size());
      if (!v.times.empty() && !p.times.empty() && p.times.front() <= v.times.back())
        fail(
            "variable '{}': the times of {} ({} .. {}) overlap those of an earlier file ending "
            "at {}",
            name, f, iso8601(p.times.front()), iso8601(p.times.back()), iso8601(v.times.back()));
      v.times.insert(v.times.end(), p.times.begin(), p.times.end());
      v.segments.push_back(seg);
    }
    // A gap: a spacing over 1.5 times the smallest one (monthly data, 28..31 days, passes).
    if (v.times.size() > 2) {
      double step = INFINITY;
      for (size_t i = 1; i < v.times.size(); ++i)
        step = std::min(step, v.times[i] - v.times[i - 1]);
      for (size_t i = 1; i < v.times.size(); ++i)
        if (v.times[i] - v.times[i - 1] > 1.5 * step) {
          auto file_of = [&](size_t t) {
            for (const auto& s : v.segments)
              if (static_cast<int64_t>(t) >= s.t0 && static_cast<int64_t>(t) < s.t0 + s.nt)
                return files_[s.file];
            return std::string();
          };
          const auto n_missing = std::llround((v.times[i] - v.times[i - 1]) / step) - 1;
          const std::string a = file_of(i - 1), b = file_of(i);
          fail(
              "variable '{}': time step {} is missing{}: the data are every {:g} h, but {} is "
              "followed by {} ({})",
              name, iso8601(v.times[i - 1] + step),
              n_missing > 1 ? fmt::format(" (and {} more)", n_missing - 1) : "", step,
              iso8601(v.times[i - 1]), iso8601(v.times[i]),
              a == b ? "in " + a : "the first in " + a + ", the next in " + b);
        }
    }
    vars_.push_back(std::move(v));
  }
}

NetcdfDataset::~NetcdfDataset() {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  if (open_ncid_ >= 0) nc_close(open_ncid_);  // read-only: nothing to lose; cannot throw here
}

std::string NetcdfDataset::not_grid_reason(const std::string& name) const {
  const auto it = not_grid_.find(name);
  return it == not_grid_.end() ? std::string() : it->second;
}

const NcVariable& NetcdfDataset::nc_variable(const std::string& name) const {
  for (const auto& v : vars_)
    if (v.name == name) return v;
  variable(name);  // throws, naming what there is
  fail("unknown variable '{}'", name);
}

int NetcdfDataset::open_file(int file) const {
  if (open_index_ == file) return open_ncid_;
  if (open_ncid_ >= 0) {
    const int old = open_ncid_, old_index = open_index_;
    open_ncid_ = open_index_ = -1;
    nc_check(nc_close(old), files_[old_index], "", "nc_close");
  }
  int nc;
  nc_check(nc_open(files_[file].c_str(), NC_NOWRITE, &nc), files_[file], "", "nc_open");
  open_ncid_ = nc;
  open_index_ = file;
  return nc;
}

int64_t NetcdfDataset::read(const FieldRef& f, int64_t t0, int64_t count, float* out) const {
  const NcVariable& v = nc_variable(f.variable);
  if (count < 0 || t0 < 0 || t0 + count > v.T())
    fail("variable '{}': time steps {}..{} out of range; it has {} time steps", v.name, t0,
         t0 + count - 1, v.T());
  int64_t missing = 0;
  for (int64_t k = 0; k < count; ++k) missing += read_step(f, t0 + k, out + k * v.H() * v.W());
  return missing;
}

int64_t NetcdfDataset::read_step(const FieldRef& f, int64_t t, float* out) const {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  const NcVariable& v = nc_variable(f.variable);
  if (t < 0 || t >= v.T())
    fail("variable '{}': time index {} out of range; it has {} time steps", v.name, t, v.T());
  if (v.has_level && (f.level < 0 || f.level >= static_cast<int>(v.levels_hpa.size())))
    fail("variable '{}': level index {} out of range; it has {} levels", v.name, f.level,
         v.levels_hpa.size());
  const auto seg =
      std::upper_bound(v.segments.begin(), v.segments.end(), t,
                       [](int64_t x, const NcVariable::Segment& s) { return x < s.t0; }) -
      1;
  const std::string& file = files_[seg->file];
  const int nc = open_file(seg->file);
  const int64_t H = v.H(), W = v.W();
  size_t start[4], count[4];
  int nd = 0;
  if (v.has_time) start[nd] = static_cast<size_t>(t - seg->t0), count[nd++] = 1;
  if (v.has_level) start[nd] = static_cast<size_t>(f.level), count[nd++] = 1;
  start[nd] = 0, count[nd++] = static_cast<size_t>(H);
  start[nd] = 0, count[nd++] = static_cast<size_t>(W);
  raw_.resize(static_cast<size_t>(H * W));  // [H*W] file orientation
  nc_check(nc_get_vara_double(nc, seg->varid, start, count, raw_.data()), file, v.name,
           v.has_time ? fmt::format("reading time {}", iso8601(v.times[t])).c_str()
                      : "reading the field");
  const NcDecode& d = seg->decode;
  int64_t missing = 0;
  for (int64_t i = 0; i < H; ++i) {
    const int64_t src_row = seg->lat_flip ? H - 1 - i : i;
    const double* row = raw_.data() + src_row * W;
    for (int64_t j = 0; j < W; ++j) {
      double r = row[seg->lon_src[j]];
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

}  // namespace seqvit::data
