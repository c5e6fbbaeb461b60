// Small checked helpers for the NetCDF writers (synthetic data, forecasts): a failed libnetcdf
// call becomes seqvit::Error naming the call and the file.
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

}  // namespace seqvit::data
