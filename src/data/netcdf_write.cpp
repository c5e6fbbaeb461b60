// Shared pieces of the NetCDF writers (netcdf_write.h).
#include "data/netcdf_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace seqvit::data {

NcLatLon def_lat_lon(int nc, int64_t H, int64_t W, const std::string& path) {
  NcLatLon a;
  nc_check(nc_def_dim(nc, "lat", static_cast<size_t>(H), &a.dim_lat), "nc_def_dim(lat)", path);
  nc_check(nc_def_dim(nc, "lon", static_cast<size_t>(W), &a.dim_lon), "nc_def_dim(lon)", path);
  nc_check(nc_def_var(nc, "lat", NC_DOUBLE, 1, &a.dim_lat, &a.var_lat), "nc_def_var(lat)", path);
  put_text(nc, a.var_lat, "units", "degrees_north", path);
  put_text(nc, a.var_lat, "standard_name", "latitude", path);
  put_text(nc, a.var_lat, "long_name", "latitude", path);
  put_text(nc, a.var_lat, "axis", "Y", path);
  nc_check(nc_def_var(nc, "lon", NC_DOUBLE, 1, &a.dim_lon, &a.var_lon), "nc_def_var(lon)", path);
  put_text(nc, a.var_lon, "units", "degrees_east", path);
  put_text(nc, a.var_lon, "standard_name", "longitude", path);
  put_text(nc, a.var_lon, "long_name", "longitude", path);
  put_text(nc, a.var_lon, "axis", "X", path);
  return a;
}

void commit_file(const std::string& tmp, const std::string& path) {
  // libnetcdf does not fsync; do it before the rename, so the new name never points at data
  // that a crash could still lose.
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    std::remove(tmp.c_str());
    fail("cannot fsync '{}': {}", tmp, std::strerror(err));
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("cannot rename '{}' to '{}': {}", tmp, path, ec.message());
  }
}

}  // namespace seqvit::data
