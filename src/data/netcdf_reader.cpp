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
#include "data/cf_grid.h"
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

struct Coord {
  std::vector<double> values;
  std::string units, calendar;
};

// A 1-D coordinate variable, with its own packing applied. Missing -> error naming the dim.
Coord read_coord(int nc, const std::string& dim, size_t len, const std::string& file,
                 const std::string& for_var) {
  int varid, nd;
  if (!find_var(nc, dim, &varid, file))
    fail(
        "{}: variable '{}': dimension '{}' has no coordinate variable; a CF file stores the "
        "{} values in a variable of that name",
        file, for_var, dim, dim);
  nc_check(nc_inq_varndims(nc, varid, &nd), file, dim, "nc_inq_varndims");
  nc_type type;
  nc_check(nc_inq_vartype(nc, varid, &type), file, dim, "nc_inq_vartype");
  if (type == NC_CHAR || type == NC_STRING || type > NC_MAX_ATOMIC_TYPE)
    fail("{}: variable '{}': the coordinate variable '{}' holds {}; expected numbers", file,
         for_var, dim, type > NC_MAX_ATOMIC_TYPE ? "a user-defined type" : "text");
  if (nd != 1)
    fail("{}: variable '{}': the coordinate variable '{}' has {} dims; expected 1 (the values "
         "along dimension '{}')",
         file, for_var, dim, nd, dim);
  Coord c;
  c.values.resize(len);
  if (len) nc_check(nc_get_var_double(nc, varid, c.values.data()), file, dim, "reading coordinate");
  c.units = att_text(nc, varid, "units", file, dim);
  c.calendar = cf_lower(att_text(nc, varid, "calendar", file, dim));
  const auto sf = att_doubles(nc, varid, "scale_factor", file, dim);
  const auto ao = att_doubles(nc, varid, "add_offset", file, dim);
  for (auto& v : c.values) v = v * (sf.empty() ? 1.0 : sf[0]) + (ao.empty() ? 0.0 : ao[0]);
  return c;
}

// The level of a scalar (0-d) pressure-level coordinate of `varid` (named in its `coordinates`
// attribute, or one of the usual level names), in hPa; NaN if there is none.
double scalar_level_hpa(int nc, int varid, const std::string& file, const std::string& var) {
  for (const auto& n : scalar_level_names(att_text(nc, varid, "coordinates", file, var))) {
    int id, nd;
    if (!find_var(nc, n, &id, file)) continue;
    nc_check(nc_inq_varndims(nc, id, &nd), file, n, "nc_inq_varndims");
    const std::string units = att_text(nc, id, "units", file, n);
    if (nd != 0 || cf_axis_of(n, units) != CfAxis::Level) continue;
    double value;
    nc_check(nc_get_var_double(nc, id, &value), file, n, "reading the level");
    return levels_in_hpa({value}, units)[0];
  }
  return NAN;
}

// Why `varid` is on a grid seqvit cannot read although its dims may look regular (cf_grid.h
// cf_grid_refusal): 2-D latitude / longitude coordinates (named in its `coordinates`
// attribute, or the usual names), or a grid_mapping other than latitude_longitude. "" if none.
std::string grid_refusal(int nc, int varid, const std::string& file, const std::string& var) {
  std::vector<std::string> two_d;
  for (const auto& n : latlon_coordinate_names(att_text(nc, varid, "coordinates", file, var))) {
    int id, nd, dims[NC_MAX_VAR_DIMS];
    if (!find_var(nc, n, &id, file)) continue;
    nc_check(nc_inq_varndims(nc, id, &nd), file, n, "nc_inq_varndims");
    if (nd != 2) continue;
    const CfAxis a = cf_axis_of(n, att_text(nc, id, "units", file, n));
    if (a != CfAxis::Lat && a != CfAxis::Lon) continue;
    nc_check(nc_inq_vardimid(nc, id, dims), file, n, "nc_inq_vardimid");
    char d0[NC_MAX_NAME + 1], d1[NC_MAX_NAME + 1];
    nc_check(nc_inq_dimname(nc, dims[0], d0), file, n, "nc_inq_dimname");
    nc_check(nc_inq_dimname(nc, dims[1], d1), file, n, "nc_inq_dimname");
    two_d.push_back(fmt::format("{} ({}, {})", n, d0, d1));
  }
  std::string mapping;
  if (const std::string gm = att_text(nc, varid, "grid_mapping", file, var); !gm.empty()) {
    int id;
    mapping = gm;  // a grid_mapping attribute naming no variable: report its text
    if (find_var(nc, gm, &id, file))
      if (const std::string n = att_text(nc, id, "grid_mapping_name", file, gm); !n.empty())
        mapping = n;
  }
  return cf_grid_refusal(two_d, mapping);
}

// A variable as found in one file, before concatenation.
struct FileVar {
  NcVariable v;         // with a single segment and the file's own times
  std::string problem;  // non-empty: not a grid variable, and why
};

FileVar scan_variable(int nc, int file_index, const std::string& file, int varid,
                      const SourceOptions& options) {
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
  std::vector<CfAxis> ax(ndims);
  std::string dims_text;
  for (int i = 0; i < ndims; ++i) {
    char d[NC_MAX_NAME + 1];
    nc_check(nc_inq_dim(nc, dimids[i], d, &dl[i]), file, v.name, "nc_inq_dim");
    dn[i] = d;
    int cid;
    std::string cu;
    if (find_var(nc, d, &cid, file)) cu = att_text(nc, cid, "units", file, d);
    ax[i] = cf_axis_of(dn[i], cu);
    dims_text += (i ? ", " : "") + dn[i];
  }
  auto reject = [&](const std::string& why) {
    fv.problem = fmt::format("{}: variable '{}' has dims ({}); {}", file, v.name, dims_text, why);
    return fv;
  };
  if (const std::string why = grid_refusal(nc, varid, file, v.name); !why.empty())
    return reject(why);
  CfLayout lay;
  const std::vector<int64_t> len(dl.begin(), dl.end());
  if (const std::string why = cf_grid_layout(ax, len, dn, &lay); !why.empty()) return reject(why);
  const int tdim = lay.tdim, ldim = lay.ldim, ydim = lay.ydim, xdim = lay.xdim;
  if (type == NC_STRING || type == NC_CHAR) return reject("it holds text, not numbers");
  if (type > NC_MAX_ATOMIC_TYPE)
    return reject("it holds a user-defined type (compound, vlen, enum or opaque), not numbers");
  if (tdim >= 0 && dl[tdim] == 0)
    return reject(fmt::format("its time axis '{}' is empty (no time steps)", dn[tdim]));
  if (ldim >= 0 && dl[ldim] == 0)
    return reject(fmt::format("its level axis '{}' is empty", dn[ldim]));
  v.units = att_text(nc, varid, "units", file, v.name);
  v.long_name = att_text(nc, varid, "long_name", file, v.name);

  // Canonical grid (cf_grid.h): latitude north to south, longitude [0, 360) ascending.
  auto lat = read_coord(nc, dn[ydim], dl[ydim], file, v.name).values;
  if (lat.empty()) return reject("the latitude axis is empty");
  set_canonical_lat(v, std::move(lat), file, dn[ydim]);
  auto lon = read_coord(nc, dn[xdim], dl[xdim], file, v.name).values;
  if (lon.empty()) return reject("the longitude axis is empty");
  set_canonical_lon(v, std::move(lon), file, dn[xdim]);

  NcVariable::Segment seg;
  seg.file = file_index;
  seg.varid = varid;
  seg.lat_flip = v.lat_ascending_in_file;
  seg.lon_src = v.lon_src;
  v.lon_first_in_file = seg.lon_first = lay.lon_first;
  seg.roles.assign(static_cast<size_t>(ndims), '1');
  for (const auto& [d, r] : {std::pair{tdim, 't'}, {ldim, 'l'}, {ydim, 'y'}, {xdim, 'x'}})
    if (d >= 0) seg.roles[static_cast<size_t>(d)] = r;
  for (int d : lay.dropped) v.dropped_axes.push_back(dn[d]);
  if (tdim >= 0) {
    v.has_time = true;
    auto c = read_coord(nc, dn[tdim], dl[tdim], file, v.name);
    v.time_axis = dn[tdim];
    v.time_units = c.units;
    v.times = cf_times(c.values, c.units, c.calendar, file, dn[tdim], options.time_origin,
                       &v.time_has_epoch);
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
      type == NC_BYTE && cf_lower(att_text(nc, varid, "_Unsigned", file, v.name)) == "true";
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
  return expand_paths(
      paths, [](const std::string& f) { return fs::path(f).extension() == ".nc"; }, "*.nc");
}

std::recursive_mutex& netcdf_library_mutex() {
  static std::recursive_mutex m;
  return m;
}

NetcdfDataset::NetcdfDataset(const std::vector<std::string>& paths, const SourceOptions& options)
    : files_(expand_netcdf_paths(paths)) {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  CfVariableSet<NcVariable> found;  // every piece of every variable
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
        // 2-D latitudes and longitudes are coordinates too (of a curvilinear grid, which the
        // variables on it report).
        if (ndims == 2) {
          const CfAxis a = cf_axis_of(name, att_text(nc, id, "units", file, name));
          if (a == CfAxis::Lat || a == CfAxis::Lon) continue;
        }
        auto fv = scan_variable(nc, fi, file, id, options);
        if (!fv.problem.empty()) {
          if (first_problem.empty()) first_problem = fv.problem;
          found.reject(fv.v.name, fv.problem);
          continue;
        }
        ++grid_vars;
        found.add(std::move(fv.v), file);
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
  not_grid_ = found.not_grid();
  vars_ = found.join();
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
  const GridVariable& v = checked_read(f, t0, count);
  int64_t missing = 0;
  for (int64_t k = 0; k < count; ++k) missing += read_step(f, t0 + k, out + k * v.H() * v.W());
  return missing;
}

int64_t NetcdfDataset::read_step(const FieldRef& f, int64_t t, float* out) const {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  const NcVariable& v = nc_variable(f.variable);  // checked by read()
  const auto seg =
      std::upper_bound(v.segments.begin(), v.segments.end(), t,
                       [](int64_t x, const NcVariable::Segment& s) { return x < s.t0; }) -
      1;
  const std::string& file = files_[seg->file];
  const int nc = open_file(seg->file);
  const int64_t H = v.H(), W = v.W();
  std::vector<size_t> start, count;  // [ndims] of this file's variable
  for (const char r : seg->roles) {
    start.push_back(r == 't' ? static_cast<size_t>(t - seg->t0)
                    : r == 'l' ? static_cast<size_t>(f.level)
                               : 0);
    count.push_back(r == 'y' ? static_cast<size_t>(H) : r == 'x' ? static_cast<size_t>(W) : 1);
  }
  raw_.resize(static_cast<size_t>(H * W));  // [H*W] file orientation
  nc_check(nc_get_vara_double(nc, seg->varid, start.data(), count.data(), raw_.data()), file,
           v.name,
           v.has_time ? fmt::format("reading time {}", cf_time_text(v, v.times[t])).c_str()
                      : "reading the field");
  return decode_to_canonical(raw_.data(), H, W, seg->decode, seg->lat_flip, seg->lon_src,
                             seg->lon_first, out);
}

}  // namespace seqvit::data
