// Packed-short CF NetCDF writer in the ERA5 layout (see netcdf_writer.h).
#include "data/synth/netcdf_writer.h"

#include <netcdf.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "data/netcdf_write.h"

namespace seqvit::data::synth {

namespace {
constexpr int16_t kFill = -32767;

}  // namespace

void packing_for_range(double lo, double hi, double* scale, double* offset) {
  SEQVIT_CHECK(hi > lo, "packing range must be non-empty, got [{}, {}]", lo, hi);
  *scale = (hi - lo) / 65532.0;
  *offset = 0.5 * (hi + lo);
}

NcPackedWriter::NcPackedWriter(const std::string& path, const NcVariableSpec& spec,
                               const std::vector<double>& lat, const std::vector<double>& lon,
                               int64_t ntime, const std::string& history)
    : path_(path),
      tmp_(path + ".tmp." + std::to_string(::getpid())),
      spec_(spec),
      H_(static_cast<int64_t>(lat.size())),
      W_(static_cast<int64_t>(lon.size())),
      L_(spec.levels.empty() ? 1 : static_cast<int64_t>(spec.levels.size())),
      ntime_(spec.has_time ? ntime : 1) {
  packing_for_range(spec.valid_min, spec.valid_max, &scale_, &offset_);
  packed_.resize(static_cast<size_t>(L_ * H_ * W_));
  // CDF-2 (64-bit offset), the format of classic CDS ERA5 downloads.
  nc_check(nc_create(tmp_.c_str(), NC_CLOBBER | NC_64BIT_OFFSET, &ncid_), "nc_create", tmp_);
  try {
    int dim_time = -1, dim_level = -1, dim_lat, dim_lon;
    if (spec.has_time)
      nc_check(nc_def_dim(ncid_, "time", NC_UNLIMITED, &dim_time), "nc_def_dim(time)", tmp_);
    if (!spec.levels.empty())
      nc_check(nc_def_dim(ncid_, "level", spec.levels.size(), &dim_level), "nc_def_dim", tmp_);
    nc_check(nc_def_dim(ncid_, "latitude", H_, &dim_lat), "nc_def_dim(latitude)", tmp_);
    nc_check(nc_def_dim(ncid_, "longitude", W_, &dim_lon), "nc_def_dim(longitude)", tmp_);

    int lonid, latid, levelid = -1;
    nc_check(nc_def_var(ncid_, "longitude", NC_FLOAT, 1, &dim_lon, &lonid), "nc_def_var", tmp_);
    put_text(ncid_, lonid, "units", "degrees_east", tmp_);
    put_text(ncid_, lonid, "long_name", "longitude", tmp_);
    put_text(ncid_, lonid, "standard_name", "longitude", tmp_);
    nc_check(nc_def_var(ncid_, "latitude", NC_FLOAT, 1, &dim_lat, &latid), "nc_def_var", tmp_);
    put_text(ncid_, latid, "units", "degrees_north", tmp_);
    put_text(ncid_, latid, "long_name", "latitude", tmp_);
    put_text(ncid_, latid, "standard_name", "latitude", tmp_);
    if (dim_level >= 0) {
      nc_check(nc_def_var(ncid_, "level", NC_INT, 1, &dim_level, &levelid), "nc_def_var", tmp_);
      put_text(ncid_, levelid, "units", "millibars", tmp_);
      put_text(ncid_, levelid, "long_name", "pressure_level", tmp_);
    }
    if (dim_time >= 0) {
      nc_check(nc_def_var(ncid_, "time", NC_INT, 1, &dim_time, &timeid_), "nc_def_var", tmp_);
      put_text(ncid_, timeid_, "units", "hours since 1900-01-01 00:00:00.0", tmp_);
      put_text(ncid_, timeid_, "long_name", "time", tmp_);
      put_text(ncid_, timeid_, "calendar", "gregorian", tmp_);
    }
    std::vector<int> dims;
    if (dim_time >= 0) dims.push_back(dim_time);
    if (dim_level >= 0) dims.push_back(dim_level);
    dims.push_back(dim_lat);
    dims.push_back(dim_lon);
    nc_check(nc_def_var(ncid_, spec.name.c_str(), NC_SHORT, static_cast<int>(dims.size()),
                        dims.data(), &varid_),
             "nc_def_var", tmp_);
    nc_check(nc_put_att_double(ncid_, varid_, "scale_factor", NC_DOUBLE, 1, &scale_),
             "nc_put_att_double", tmp_);
    nc_check(nc_put_att_double(ncid_, varid_, "add_offset", NC_DOUBLE, 1, &offset_),
             "nc_put_att_double", tmp_);
    nc_check(nc_put_att_short(ncid_, varid_, "_FillValue", NC_SHORT, 1, &kFill), "nc_put_att",
             tmp_);
    nc_check(nc_put_att_short(ncid_, varid_, "missing_value", NC_SHORT, 1, &kFill),
             "nc_put_att", tmp_);
    put_text(ncid_, varid_, "units", spec.units, tmp_);
    put_text(ncid_, varid_, "long_name", spec.long_name, tmp_);
    put_text(ncid_, varid_, "standard_name", spec.standard_name, tmp_);
    put_text(ncid_, NC_GLOBAL, "Conventions", "CF-1.6", tmp_);
    put_text(ncid_, NC_GLOBAL, "history", history, tmp_);
    put_text(ncid_, NC_GLOBAL, "source",
             "seqvit synthetic ERA5-like data: forced shallow-water model on the sphere", tmp_);
    nc_check(nc_enddef(ncid_), "nc_enddef", tmp_);

    std::vector<float> flat(lat.begin(), lat.end()), flon(lon.begin(), lon.end());
    nc_check(nc_put_var_float(ncid_, latid, flat.data()), "nc_put_var(latitude)", tmp_);
    nc_check(nc_put_var_float(ncid_, lonid, flon.data()), "nc_put_var(longitude)", tmp_);
    if (levelid >= 0)
      nc_check(nc_put_var_int(ncid_, levelid, spec.levels.data()), "nc_put_var(level)", tmp_);
  } catch (...) {
    nc_close(ncid_);
    std::remove(tmp_.c_str());
    throw;
  }
}

NcPackedWriter::~NcPackedWriter() {
  if (ncid_ >= 0) {
    nc_close(ncid_);
    std::remove(tmp_.c_str());
  }
}

void NcPackedWriter::write(int64_t t, int64_t hours_since_1900, const std::vector<double>& values) {
  SEQVIT_CHECK(t == written_ && t < ntime_, "record {} of '{}' written out of order (next is {} of {})",
               t, path_, written_, ntime_);
  SEQVIT_CHECK(values.size() == packed_.size(), "record for '{}' has {} values, expected {}",
               path_, values.size(), packed_.size());
  for (size_t k = 0; k < values.size(); ++k) {
    const double x = values[k];
    if (std::isnan(x)) {
      packed_[k] = kFill;
      continue;
    }
    if (x < spec_.valid_min || x > spec_.valid_max)
      fail("{} = {} at record {} is outside its packing range [{}, {}] (the model went unstable?)",
           spec_.name, x, t, spec_.valid_min, spec_.valid_max);
    packed_[k] = static_cast<int16_t>(std::lround((x - offset_) / scale_));
  }
  if (spec_.has_time) {
    const size_t start[4] = {static_cast<size_t>(t), 0, 0, 0};
    const size_t count_l[4] = {1, static_cast<size_t>(L_), static_cast<size_t>(H_),
                               static_cast<size_t>(W_)};
    const size_t count_n[3] = {1, static_cast<size_t>(H_), static_cast<size_t>(W_)};
    nc_check(nc_put_vara_short(ncid_, varid_, start, spec_.levels.empty() ? count_n : count_l,
                               packed_.data()),
             "nc_put_vara_short", tmp_);
    const int hours = static_cast<int>(hours_since_1900);
    const size_t ts = static_cast<size_t>(t), one = 1;
    nc_check(nc_put_vara_int(ncid_, timeid_, &ts, &one, &hours), "nc_put_vara_int(time)", tmp_);
  } else {
    nc_check(nc_put_var_short(ncid_, varid_, packed_.data()), "nc_put_var_short", tmp_);
  }
  ++written_;
}

void NcPackedWriter::close() {
  SEQVIT_CHECK(written_ == ntime_, "'{}' closed after {} of {} records", path_, written_, ntime_);
  const int id = ncid_;
  ncid_ = -1;
  nc_check(nc_close(id), "nc_close", tmp_);
  commit_file(tmp_, path_);
}

}  // namespace seqvit::data::synth
