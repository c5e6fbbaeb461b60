// CF NetCDF-4 writer of gridded float32 fields (grid_writer.h).
#include "data/grid_writer.h"

#include <netcdf.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "core/check.h"
#include "data/netcdf_reader.h"
#include "data/netcdf_write.h"

namespace seqvit::data {

GridFileWriter::GridFileWriter(const std::string& path, const std::vector<double>& lat,
                               const std::vector<double>& lon, const std::vector<double>& times,
                               const std::vector<GridFileVariable>& vars,
                               const std::string& history)
    : path_(path),
      tmp_(path + ".tmp." + std::to_string(::getpid())),
      H_(static_cast<int64_t>(lat.size())),
      W_(static_cast<int64_t>(lon.size())),
      T_(static_cast<int64_t>(times.size())),
      vars_(vars) {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());  // libnetcdf is not thread-safe
  SEQVIT_CHECK(H_ > 0 && W_ > 0, "grid file '{}': empty grid {}x{}", path, H_, W_);
  if (vars.empty()) fail("grid file '{}': no variables to write", path);
  buf_.resize(static_cast<size_t>(H_ * W_));
  written_.assign(vars.size(), 0);
  nc_check(nc_create(tmp_.c_str(), NC_CLOBBER | NC_NETCDF4, &ncid_), "nc_create", tmp_);
  try {
    const NcLatLon ll = def_lat_lon(ncid_, H_, W_, tmp_);
    int dtime = -1, vtime = -1;
    bool any_time = false;
    for (const auto& v : vars) any_time = any_time || v.has_time;
    if (any_time) {
      nc_check(nc_def_dim(ncid_, "time", static_cast<size_t>(T_), &dtime), "nc_def_dim(time)",
               tmp_);
      nc_check(nc_def_var(ncid_, "time", NC_DOUBLE, 1, &dtime, &vtime), "nc_def_var(time)", tmp_);
      put_text(ncid_, vtime, "units", "hours since 1970-01-01 00:00:00", tmp_);
      put_text(ncid_, vtime, "calendar", "standard", tmp_);
      put_text(ncid_, vtime, "standard_name", "time", tmp_);
      put_text(ncid_, vtime, "axis", "T", tmp_);
    }
    std::vector<std::vector<double>> level_sets;
    std::vector<int> level_dims, level_vars;
    const float fill = NC_FILL_FLOAT;
    for (const auto& v : vars) {
      std::vector<int> dims;
      std::vector<size_t> chunk;
      if (v.has_time) dims.push_back(dtime), chunk.push_back(1);
      if (!v.levels_hpa.empty()) {
        size_t k = 0;
        while (k < level_sets.size() && level_sets[k] != v.levels_hpa) ++k;
        if (k == level_sets.size()) {
          const std::string name = k == 0 ? "level" : "level_" + std::to_string(k);
          int d, lv;
          nc_check(nc_def_dim(ncid_, name.c_str(), v.levels_hpa.size(), &d), "nc_def_dim(level)",
                   tmp_);
          nc_check(nc_def_var(ncid_, name.c_str(), NC_DOUBLE, 1, &d, &lv), "nc_def_var(level)",
                   tmp_);
          put_text(ncid_, lv, "units", "hPa", tmp_);
          put_text(ncid_, lv, "long_name", "pressure level", tmp_);
          put_text(ncid_, lv, "positive", "down", tmp_);
          put_text(ncid_, lv, "axis", "Z", tmp_);
          level_sets.push_back(v.levels_hpa), level_dims.push_back(d), level_vars.push_back(lv);
        }
        dims.push_back(level_dims[k]), chunk.push_back(1);
      }
      dims.push_back(ll.dim_lat), dims.push_back(ll.dim_lon);
      chunk.push_back(static_cast<size_t>(H_)), chunk.push_back(static_cast<size_t>(W_));
      int id;
      nc_check(nc_def_var(ncid_, v.name.c_str(), NC_FLOAT, static_cast<int>(dims.size()),
                          dims.data(), &id),
               "nc_def_var", tmp_);
      nc_check(nc_def_var_chunking(ncid_, id, NC_CHUNKED, chunk.data()), "nc_def_var_chunking",
               tmp_);
      nc_check(nc_def_var_deflate(ncid_, id, 1, 1, 1), "nc_def_var_deflate", tmp_);
      nc_check(nc_put_att_float(ncid_, id, "_FillValue", NC_FLOAT, 1, &fill), "nc_put_att_float",
               tmp_);
      put_text(ncid_, id, "units", v.units, tmp_);
      put_text(ncid_, id, "long_name", v.long_name, tmp_);
      put_text(ncid_, id, "standard_name", v.standard_name, tmp_);
      varids_.push_back(id);
    }
    put_text(ncid_, NC_GLOBAL, "Conventions", "CF-1.8", tmp_);
    put_text(ncid_, NC_GLOBAL, "history", history, tmp_);
    nc_check(nc_enddef(ncid_), "nc_enddef", tmp_);
    nc_check(nc_put_var_double(ncid_, ll.var_lat, lat.data()), "nc_put_var(lat)", tmp_);
    nc_check(nc_put_var_double(ncid_, ll.var_lon, lon.data()), "nc_put_var(lon)", tmp_);
    if (vtime >= 0 && T_ > 0)
      nc_check(nc_put_var_double(ncid_, vtime, times.data()), "nc_put_var(time)", tmp_);
    for (size_t k = 0; k < level_sets.size(); ++k)
      nc_check(nc_put_var_double(ncid_, level_vars[k], level_sets[k].data()),
               "nc_put_var(level)", tmp_);
  } catch (...) {
    nc_close(ncid_);
    ncid_ = -1;
    std::remove(tmp_.c_str());
    throw;
  }
}

GridFileWriter::~GridFileWriter() {
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  if (ncid_ >= 0) {
    nc_close(ncid_);
    std::remove(tmp_.c_str());
  }
}

void GridFileWriter::write(size_t var, int64_t t, int64_t level, const float* values) {
  SEQVIT_CHECK(ncid_ >= 0, "grid file '{}' written after close", path_);
  SEQVIT_CHECK(var < vars_.size(), "grid file '{}': variable {} of {}", path_, var, vars_.size());
  const GridFileVariable& v = vars_[var];
  const int64_t T = v.has_time ? T_ : 1;
  const int64_t L = v.levels_hpa.empty() ? 1 : static_cast<int64_t>(v.levels_hpa.size());
  SEQVIT_CHECK(t >= 0 && t < T && level >= 0 && level < L,
               "grid file '{}': slice (t {}, level {}) of '{}' outside {} x {}", path_, t, level,
               v.name, T, L);
  for (int64_t p = 0; p < H_ * W_; ++p) buf_[p] = std::isnan(values[p]) ? NC_FILL_FLOAT : values[p];
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  std::vector<size_t> start, count;
  if (v.has_time) start.push_back(static_cast<size_t>(t)), count.push_back(1);
  if (!v.levels_hpa.empty()) start.push_back(static_cast<size_t>(level)), count.push_back(1);
  start.push_back(0), start.push_back(0);
  count.push_back(static_cast<size_t>(H_)), count.push_back(static_cast<size_t>(W_));
  nc_check(nc_put_vara_float(ncid_, varids_[var], start.data(), count.data(), buf_.data()),
           "nc_put_vara_float", tmp_);
  ++written_[var];
}

void GridFileWriter::close() {
  for (size_t k = 0; k < vars_.size(); ++k) {
    const GridFileVariable& v = vars_[k];
    const int64_t n = (v.has_time ? T_ : 1) *
                      (v.levels_hpa.empty() ? 1 : static_cast<int64_t>(v.levels_hpa.size()));
    SEQVIT_CHECK(written_[k] == n, "grid file '{}': '{}' closed after {} of {} slices", path_,
                 v.name, written_[k], n);
  }
  std::lock_guard<std::recursive_mutex> lock(netcdf_library_mutex());
  const int id = ncid_;
  ncid_ = -1;
  const int st = nc_close(id);
  if (st != NC_NOERR) std::remove(tmp_.c_str());
  nc_check(st, "nc_close", tmp_);
  commit_file(tmp_, path_);
}

}  // namespace seqvit::data
