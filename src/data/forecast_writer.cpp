// CF NetCDF forecast files (see forecast_writer.h and docs/forecasts.md).
#include "data/forecast_writer.h"

#include <fcntl.h>
#include <netcdf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/check.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "data/netcdf_write.h"

namespace seqvit::data {

namespace {

constexpr const char* kTimeUnits = "hours since 1970-01-01 00:00:00";

// Defines the whole file and writes its data; `path` is the temporary file, open as ncid.
void write_contents(int nc, const std::string& path, const ForecastGrid& g,
                    const std::vector<ForecastField>& fields, const ForecastMetadata& m) {
  const int64_t H = static_cast<int64_t>(g.lat.size()), W = static_cast<int64_t>(g.lon.size());
  int dtime, dlat, dlon;
  nc_check(nc_def_dim(nc, "time", 1, &dtime), "nc_def_dim(time)", path);
  nc_check(nc_def_dim(nc, "lat", H, &dlat), "nc_def_dim(lat)", path);
  nc_check(nc_def_dim(nc, "lon", W, &dlon), "nc_def_dim(lon)", path);

  int vtime, vlat, vlon, vref, vlead;
  nc_check(nc_def_var(nc, "time", NC_DOUBLE, 1, &dtime, &vtime), "nc_def_var(time)", path);
  put_text(nc, vtime, "units", kTimeUnits, path);
  put_text(nc, vtime, "calendar", "standard", path);
  put_text(nc, vtime, "standard_name", "time", path);
  put_text(nc, vtime, "long_name", "valid time of the forecast", path);
  put_text(nc, vtime, "axis", "T", path);
  nc_check(nc_def_var(nc, "lat", NC_DOUBLE, 1, &dlat, &vlat), "nc_def_var(lat)", path);
  put_text(nc, vlat, "units", "degrees_north", path);
  put_text(nc, vlat, "standard_name", "latitude", path);
  put_text(nc, vlat, "long_name", "latitude", path);
  put_text(nc, vlat, "axis", "Y", path);
  nc_check(nc_def_var(nc, "lon", NC_DOUBLE, 1, &dlon, &vlon), "nc_def_var(lon)", path);
  put_text(nc, vlon, "units", "degrees_east", path);
  put_text(nc, vlon, "standard_name", "longitude", path);
  put_text(nc, vlon, "long_name", "longitude", path);
  put_text(nc, vlon, "axis", "X", path);
  nc_check(nc_def_var(nc, "forecast_reference_time", NC_DOUBLE, 0, nullptr, &vref),
           "nc_def_var(forecast_reference_time)", path);
  put_text(nc, vref, "units", kTimeUnits, path);
  put_text(nc, vref, "calendar", "standard", path);
  put_text(nc, vref, "standard_name", "forecast_reference_time", path);
  put_text(nc, vref, "long_name", "time of the model input", path);
  nc_check(nc_def_var(nc, "leadtime", NC_DOUBLE, 0, nullptr, &vlead), "nc_def_var(leadtime)", path);
  put_text(nc, vlead, "units", "hours", path);
  put_text(nc, vlead, "standard_name", "forecast_period", path);
  put_text(nc, vlead, "long_name", "lead time (valid time - forecast reference time)", path);

  const float fill = NC_FILL_FLOAT;
  std::vector<int> vids;
  const int dims[3] = {dtime, dlat, dlon};
  for (const auto& f : fields) {
    int v;
    nc_check(nc_def_var(nc, f.name.c_str(), NC_FLOAT, 3, dims, &v), "nc_def_var", path);
    nc_check(nc_def_var_deflate(nc, v, 1, 1, 4), "nc_def_var_deflate", path);
    nc_check(nc_put_att_float(nc, v, "_FillValue", NC_FLOAT, 1, &fill), "nc_put_att_float", path);
    put_text(nc, v, "units", f.units, path);
    put_text(nc, v, "long_name", f.long_name, path);
    put_text(nc, v, "standard_name", f.standard_name, path);
    if (f.level_hpa >= 0) put_double(nc, v, "pressure_level_hPa", f.level_hpa, path);
    put_text(nc, v, "coordinates", "forecast_reference_time leadtime", path);
    vids.push_back(v);
  }

  const double valid = m.reference_time + m.lead_hours;
  put_text(nc, NC_GLOBAL, "Conventions", "CF-1.8", path);
  put_text(nc, NC_GLOBAL, "title", "seqvit ClimaX forecast", path);
  put_text(nc, NC_GLOBAL, "source", "seqvit ClimaX Vision Transformer forecast", path);
  put_text(nc, NC_GLOBAL, "history", m.history, path);
  put_text(nc, NC_GLOBAL, "checkpoint", m.checkpoint, path);
  put_double(nc, NC_GLOBAL, "checkpoint_step", static_cast<double>(m.checkpoint_step), path);
  put_text(nc, NC_GLOBAL, "forecast_reference_time", iso8601(m.reference_time), path);
  put_text(nc, NC_GLOBAL, "valid_time", iso8601(valid), path);
  put_double(nc, NC_GLOBAL, "lead_time_hours", m.lead_hours, path);
  put_double(nc, NC_GLOBAL, "coarsen", g.coarsen, path);
  nc_check(nc_enddef(nc), "nc_enddef", path);

  nc_check(nc_put_var_double(nc, vtime, &valid), "nc_put_var(time)", path);
  nc_check(nc_put_var_double(nc, vref, &m.reference_time), "nc_put_var(forecast_reference_time)",
           path);
  nc_check(nc_put_var_double(nc, vlead, &m.lead_hours), "nc_put_var(leadtime)", path);
  nc_check(nc_put_var_double(nc, vlat, g.lat.data()), "nc_put_var(lat)", path);
  nc_check(nc_put_var_double(nc, vlon, g.lon.data()), "nc_put_var(lon)", path);
  std::vector<float> out(static_cast<size_t>(H * W));  // [H, W] file order
  for (size_t k = 0; k < fields.size(); ++k) {
    const float* src = fields[k].values;
    for (int64_t i = 0; i < H; ++i) {
      const int64_t r = g.flip_lat ? H - 1 - i : i;
      for (int64_t j = 0; j < W; ++j) {
        const float v = src[i * W + j];
        out[r * W + g.lon_dst[j]] = std::isnan(v) ? fill : v;
      }
    }
    nc_check(nc_put_var_float(nc, vids[k], out.data()), "nc_put_var", path);
  }
}

}  // namespace

ForecastGrid forecast_grid(const ForecastDataset& ds) {
  const GridVariable& v = ds.source().variable(ds.field_ref(ds.outputs().front()).variable);
  ForecastGrid g;
  g.coarsen = ds.config().coarsen;
  g.flip_lat = v.lat_ascending_in_file;
  const int c = g.coarsen;
  const int64_t H = v.H() / c, W = v.W() / c;
  for (int64_t i = 0; i < H; ++i) {
    double s = 0;
    for (int a = 0; a < c; ++a) s += v.lat[i * c + a];
    g.lat.push_back(s / c);
  }
  if (g.flip_lat) std::reverse(g.lat.begin(), g.lat.end());
  g.lon_dst.resize(static_cast<size_t>(W));
  if (c == 1) {
    g.lon = v.lon_in_file;
    for (int64_t j = 0; j < W; ++j) g.lon_dst[j] = v.lon_src[j];
  } else {
    // Block means of the canonical longitudes, which ascend within [0, 360): no wrap inside a
    // block. The input's own longitude convention is not kept (a block may straddle its seam).
    for (int64_t j = 0; j < W; ++j) {
      double s = 0;
      for (int a = 0; a < c; ++a) s += v.lon[j * c + a];
      g.lon.push_back(s / c);
      g.lon_dst[j] = j;
    }
  }
  return g;
}

void write_forecast_netcdf(const std::string& path, const ForecastGrid& grid,
                           const std::vector<ForecastField>& fields, const ForecastMetadata& meta) {
  const size_t H = grid.lat.size(), W = grid.lon.size();
  SEQVIT_CHECK(H > 0 && W > 0 && grid.lon_dst.size() == W, "forecast grid {}x{} (lon_dst {})", H, W,
               grid.lon_dst.size());
  if (fields.empty()) fail("forecast file '{}': no fields to write", path);
  for (const auto& f : fields)
    SEQVIT_CHECK(f.values != nullptr, "field '{}' has no values", f.name);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int nc = -1;
  nc_check(nc_create(tmp.c_str(), NC_CLOBBER | NC_NETCDF4, &nc), "nc_create", tmp);
  try {
    write_contents(nc, tmp, grid, fields, meta);
    const int st = nc_close(nc);
    nc = -1;
    nc_check(st, "nc_close", tmp);
    // libnetcdf does not fsync; do it before the rename, so the new name never points at data
    // that a crash could still lose.
    const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      const int err = errno;
      if (fd >= 0) ::close(fd);
      fail("cannot fsync '{}': {}", tmp, std::strerror(err));
    }
    ::close(fd);
  } catch (...) {
    if (nc >= 0) nc_close(nc);
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("cannot rename '{}' to '{}': {}", tmp, path, ec.message());
  }
}

std::string cf_standard_name(const std::string& variable) {
  static const std::map<std::string, std::string> names = {
      {"t2m", "air_temperature"},     {"t", "air_temperature"},
      {"u10", "eastward_wind"},       {"u", "eastward_wind"},
      {"v10", "northward_wind"},      {"v", "northward_wind"},
      {"z", "geopotential"},          {"msl", "air_pressure_at_mean_sea_level"},
      {"sp", "surface_air_pressure"}, {"q", "specific_humidity"},
      {"r", "relative_humidity"},     {"tp", "lwe_thickness_of_precipitation_amount"},
      {"lsm", "land_binary_mask"},
  };
  const auto it = names.find(variable);
  return it == names.end() ? "" : it->second;
}

}  // namespace seqvit::data
