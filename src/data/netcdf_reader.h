// CF-convention NetCDF reader (a GridSource, data/grid_source.h) for ERA5 / WeatherBench files (NetCDF-3 classic, 64-bit offset,
// NetCDF-4/HDF5), on the libnetcdf C API. A dataset is a list of files (or directories:
// every *.nc below them, recursively, sorted); each variable may live in one file or be spread
// over many files along time (one per year or month), and a file may hold several variables.
//
// Decoding rules (docs/data.md has the full list):
//  - a grid variable has dims (time, [level], lat, lon), time and level optional (constants
//    such as lsm have (lat, lon)), plus any extra axes of length 1 (dropped); other variables
//    (time_bnds ...) are listed but not readable;
//  - packed integers: raw == _FillValue or raw in missing_value (compared on the RAW packed
//    value) -> NaN, else raw * scale_factor + add_offset (in double, then stored as float);
//    NaN raw values are missing too; every missing value is counted;
//  - canonical grid: latitude north to south (like ERA5), longitude rolled onto [0, 360)
//    ascending; unequal (Gaussian) latitude spacing is kept as given;
//  - time: hours since 1970-01-01 UTC (double), from "UNITS since DATE" in any epoch; units
//    without an epoch keep their raw values unless SourceOptions::time_origin gives one;
//  - levels: hPa, whether the file stores hPa or Pa (units attribute, else magnitude > 2000);
//  - files of one variable are concatenated in time order; their grids and levels must agree,
//    times must not overlap and no time step may be missing (judged by the smallest spacing).
// Memory stays bounded: a read returns one time step of one variable (one level) at a time, and
// at most one file is open at once. libnetcdf is not thread-safe, not even across files: every
// NetcdfDataset holds netcdf_library_mutex() while it calls the library (as must any writer
// that may run beside a reader), so datasets may be used from different threads (e.g. a training and a
// validation prefetch thread). One NetcdfDataset object is still not for concurrent use.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "data/cf_grid.h"
#include "data/grid_source.h"

namespace seqvit::data {

std::recursive_mutex& netcdf_library_mutex();

// Files named by `paths`: files as given, directories expanded to their *.nc files, sorted.
std::vector<std::string> expand_netcdf_paths(const std::vector<std::string>& paths);

// How one variable is decoded in one file (packing may differ between files of a variable).
using NcDecode = CfDecode;

// One grid variable, concatenated over all files that hold it: the source-neutral description
// (GridVariable) and where each time range lives.
struct NcVariable : GridVariable {
  struct Segment {  // this variable in one file
    int file = 0;
    int varid = 0;
    int64_t t0 = 0, nt = 1;  // global time index of its first step; its number of steps
    NcDecode decode;
    bool lat_flip = false;         // this file stores latitude south to north
    std::vector<int64_t> lon_src;  // [W] this file's column for canonical column j
    bool lon_first = false;        // this file stores (..., lon, lat): slices are [W, H]
    // [ndims] the role of each dim in this file: 't'ime, 'l'evel, 'y' (lat), 'x' (lon) or
    // '1', an extra axis of length 1 (read at index 0).
    std::string roles;
  };
  std::vector<Segment> segments;  // in time order
};

class NetcdfDataset : public GridSource {
 public:
  // Opens every file (headers and coordinates only) and checks that they agree.
  explicit NetcdfDataset(const std::vector<std::string>& paths,
                         const SourceOptions& options = {});
  ~NetcdfDataset() override;
  NetcdfDataset(const NetcdfDataset&) = delete;
  NetcdfDataset& operator=(const NetcdfDataset&) = delete;

  std::string format() const override { return "NetCDF"; }
  const std::vector<std::string>& files() const override { return files_; }
  int64_t num_variables() const override { return static_cast<int64_t>(vars_.size()); }
  const GridVariable& variable_at(int64_t i) const override { return vars_.at(i); }
  std::string not_grid_reason(const std::string& name) const override;
  using GridSource::read;
  int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const override;

  // The variable with its file segments (an unknown name is an error, as variable()).
  const NcVariable& nc_variable(const std::string& name) const;

 private:
  int64_t read_step(const FieldRef& f, int64_t t, float* out) const;
  int open_file(int file) const;  // the ncid of file `file`, closing any other open file
  std::vector<std::string> files_;
  std::vector<NcVariable> vars_;                 // grid variables
  std::map<std::string, std::string> not_grid_;  // other variables -> why not readable
  mutable int open_index_ = -1, open_ncid_ = -1;
  mutable std::vector<double> raw_;  // [H*W] read buffer
};

}  // namespace seqvit::data
