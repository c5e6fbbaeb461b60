// Writes small NetCDF files with the libnetcdf C API for the reader and CLI tests, in any
// format and convention; values come from a function of the file indices so that tests can
// check every decoded value against its coordinates.
#pragma once

#include <netcdf.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nctest {

inline void ok(int st, const std::string& what) {
  if (st != NC_NOERR) throw std::runtime_error(what + ": " + nc_strerror(st));
}

struct Coord {  // a dimension with its coordinate variable
  std::string name;
  std::vector<double> values;
  std::string units;
  std::string calendar;
  bool unlimited = false;  // a record dimension, as ERA5's classic-format time
  std::string bounds;      // CF "bounds" attribute (the name of a cell-bounds variable)
};

struct Var {
  std::string name;
  nc_type type = NC_FLOAT;
  std::vector<std::string> dims;
  std::string units;
  std::map<std::string, std::vector<double>> atts;         // numeric, written in `type`
  std::map<std::string, std::vector<double>> double_atts;  // written as double (scale/offset)
  std::function<double(const std::vector<size_t>&)> raw;   // raw stored value at file index
  std::map<std::string, std::string> text_atts;            // e.g. coordinates, grid_mapping
};

// cmode: NC_CLOBBER (classic), NC_CLOBBER | NC_64BIT_OFFSET, NC_CLOBBER | NC_NETCDF4.
inline void write(const std::string& path, int cmode, const std::vector<Coord>& coords,
                  const std::vector<Var>& vars) {
  int nc;
  ok(nc_create(path.c_str(), cmode, &nc), "nc_create " + path);
  std::map<std::string, std::pair<int, size_t>> dim;  // name -> (dimid, len)
  std::vector<int> cvar;
  for (const auto& c : coords) {
    int d, v;
    ok(nc_def_dim(nc, c.name.c_str(), c.unlimited ? NC_UNLIMITED : c.values.size(), &d), "def_dim");
    ok(nc_def_var(nc, c.name.c_str(), NC_DOUBLE, 1, &d, &v), "def_var");
    if (!c.units.empty())
      ok(nc_put_att_text(nc, v, "units", c.units.size(), c.units.c_str()), "att");
    if (!c.calendar.empty())
      ok(nc_put_att_text(nc, v, "calendar", c.calendar.size(), c.calendar.c_str()), "att");
    if (!c.bounds.empty())
      ok(nc_put_att_text(nc, v, "bounds", c.bounds.size(), c.bounds.c_str()), "att");
    dim[c.name] = {d, c.values.size()};
    cvar.push_back(v);
  }
  std::vector<int> vid;
  for (const auto& v : vars) {
    std::vector<int> ids;
    for (const auto& d : v.dims) {
      if (!dim.count(d)) {  // a dimension without coordinate variable: length 2
        int id;
        ok(nc_def_dim(nc, d.c_str(), 2, &id), "def_dim");
        dim[d] = {id, 2};
      }
      ids.push_back(dim[d].first);
    }
    int id;
    ok(nc_def_var(nc, v.name.c_str(), v.type, static_cast<int>(ids.size()), ids.data(), &id),
       "def_var " + v.name);
    if (!v.units.empty())
      ok(nc_put_att_text(nc, id, "units", v.units.size(), v.units.c_str()), "att");
    for (const auto& [a, x] : v.atts)
      ok(nc_put_att_double(nc, id, a.c_str(), v.type, x.size(), x.data()), "att " + a);
    for (const auto& [a, x] : v.double_atts)
      ok(nc_put_att_double(nc, id, a.c_str(), NC_DOUBLE, x.size(), x.data()), "att " + a);
    for (const auto& [a, x] : v.text_atts)
      ok(nc_put_att_text(nc, id, a.c_str(), x.size(), x.c_str()), "att " + a);
    vid.push_back(id);
  }
  ok(nc_enddef(nc), "enddef");
  for (size_t i = 0; i < coords.size(); ++i) {
    const size_t start = 0, count = coords[i].values.size();
    ok(nc_put_vara_double(nc, cvar[i], &start, &count, coords[i].values.data()), "put coord");
  }
  for (size_t k = 0; k < vars.size(); ++k) {
    std::vector<size_t> len;
    size_t n = 1;
    for (const auto& d : vars[k].dims) len.push_back(dim[d].second), n *= dim[d].second;
    std::vector<double> data(n);
    std::vector<size_t> idx(len.size(), 0);
    for (size_t e = 0; e < n; ++e) {
      size_t r = e;
      for (size_t a = len.size(); a-- > 0;) idx[a] = r % len[a], r /= len[a];
      data[e] = vars[k].raw(idx);
    }
    const std::vector<size_t> start(len.size(), 0);
    ok(nc_put_vara_double(nc, vid[k], start.data(), len.data(), data.data()),
       "put " + vars[k].name);
  }
  ok(nc_close(nc), "close");
}

inline std::vector<double> range(double first, double step, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = first + step * i;
  return v;
}

inline double wrap360(double lon) { return lon < 0 ? lon + 360 : lon >= 360 ? lon - 360 : lon; }

}  // namespace nctest
