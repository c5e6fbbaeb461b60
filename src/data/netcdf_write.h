// Small checked helpers for the NetCDF writers (synthetic data, forecasts, regridded grids): a
// failed libnetcdf call becomes seqvit::Error naming the call and the file.
#pragma once

#include <netcdf.h>

#include <string>

#include "core/check.h"

namespace seqvit::data {

inline void nc_check(int status, const char* call, const std::string& path) {
  if (status != NC_NOERR) fail("NetCDF {} failed for '{}': {}", call, path, nc_strerror(status));
}

// A text attribute; nothing is written for an empty value.
inline void put_text(int ncid, int varid, const char* name, const std::string& value,
                     const std::string& path) {
  if (value.empty()) return;
  nc_check(nc_put_att_text(ncid, varid, name, value.size(), value.c_str()), "nc_put_att_text",
           path);
}

inline void put_double(int ncid, int varid, const char* name, double value,
                       const std::string& path) {
  nc_check(nc_put_att_double(ncid, varid, name, NC_DOUBLE, 1, &value), "nc_put_att_double", path);
}

// The CF latitude / longitude axes: dims "lat" [H] and "lon" [W] with double coordinate
// variables of the same names (units, standard_name, long_name, axis). Values are written later.
struct NcLatLon {
  int dim_lat = -1, dim_lon = -1, var_lat = -1, var_lon = -1;
};
NcLatLon def_lat_lon(int ncid, int64_t H, int64_t W, const std::string& path);

// The last step of an atomic write: fsyncs the closed temporary file `tmp` and renames it to
// `path`; on failure removes `tmp` and throws naming both.
void commit_file(const std::string& tmp, const std::string& path);

}  // namespace seqvit::data
