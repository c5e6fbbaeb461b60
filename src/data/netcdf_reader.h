// CF-convention NetCDF reader for ERA5 / WeatherBench files (NetCDF-3 classic, 64-bit offset,
// NetCDF-4/HDF5), on the libnetcdf C API. A dataset is a list of files (or directories:
// every *.nc below them, recursively, sorted); each variable may live in one file or be spread
// over many files along time (one per year or month), and a file may hold several variables.
//
// Decoding rules (docs/data.md has the full list):
//  - a grid variable has dims (time, [level], lat, lon), time and level optional (constants
//    such as lsm have (lat, lon)); other variables (time_bnds ...) are listed but not readable;
//  - packed integers: raw == _FillValue or raw in missing_value (compared on the RAW packed
//    value) -> NaN, else raw * scale_factor + add_offset (in double, then stored as float);
//    NaN raw values are missing too; every missing value is counted;
//  - canonical grid: latitude north to south (like ERA5), longitude rolled onto [0, 360)
//    ascending; unequal (Gaussian) latitude spacing is kept as given;
//  - time: hours since 1970-01-01 UTC (double), from "UNITS since DATE" in any epoch;
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

namespace seqvit::data {

std::recursive_mutex& netcdf_library_mutex();

// Files named by `paths`: files as given, directories expanded to their *.nc files, sorted.
std::vector<std::string> expand_netcdf_paths(const std::vector<std::string>& paths);

// How one variable is decoded in one file (packing may differ between files of a variable).
struct NcDecode {
  double scale = 1.0, offset = 0.0;
  std::vector<double> missing;  // raw (packed) _FillValue and missing_value values
  bool unsigned_bytes = false;  // NetCDF-3 "_Unsigned = true" byte data
};

// One grid variable, concatenated over all files that hold it.
struct NcVariable {
  std::string name, units, long_name;
  bool has_time = false, has_level = false;
  std::vector<double> levels_hpa;  // [L] in file order; empty without a level axis
  std::vector<double> lat;         // [H] canonical: north to south
  std::vector<double> lon;         // [W] canonical: [0, 360) ascending
  // As stored in the first file (in time order); each file keeps its own in its Segment.
  bool lat_ascending_in_file = false;  // the file stored south to north (rows are flipped)
  std::vector<double> lon_in_file;     // [W] as stored
  std::vector<int64_t> lon_src;        // [W] canonical column j comes from file column lon_src[j]
  std::vector<double> times;           // [T] hours since 1970-01-01; empty without time
  int64_t H() const { return static_cast<int64_t>(lat.size()); }
  int64_t W() const { return static_cast<int64_t>(lon.size()); }
  int64_t T() const { return has_time ? static_cast<int64_t>(times.size()) : 1; }

  struct Segment {  // this variable in one file
    int file = 0;
    int varid = 0;
    int64_t t0 = 0, nt = 1;  // global time index of its first step; its number of steps
    NcDecode decode;
    bool lat_flip = false;         // this file stores latitude south to north
    std::vector<int64_t> lon_src;  // [W] this file's column for canonical column j
  };
  std::vector<Segment> segments;  // in time order
};

// A ClimaX-style name resolved against the dataset: "z_500" -> variable z, level 500 hPa.
struct FieldRef {
  std::string name;      // the ClimaX name ("z_500", "t2m")
  std::string variable;  // the variable in the files ("z")
  int level = -1;        // index into levels_hpa; -1 without a level axis
};

class NetcdfDataset {
 public:
  // Opens every file (headers and coordinates only) and checks that they agree.
  explicit NetcdfDataset(const std::vector<std::string>& paths);
  ~NetcdfDataset();
  NetcdfDataset(const NetcdfDataset&) = delete;
  NetcdfDataset& operator=(const NetcdfDataset&) = delete;

  const std::vector<std::string>& files() const { return files_; }
  // Names of the grid variables, in order of first appearance.
  std::vector<std::string> variables() const;
  bool has(const std::string& variable) const;
  const NcVariable& variable(const std::string& variable) const;

  // "t2m" -> t2m; "z_500" -> z at 500 hPa; errors list the variables or levels available.
  FieldRef resolve(const std::string& climax_name) const;
  // Every field: one per variable, and one per level for variables with a level axis.
  std::vector<FieldRef> fields() const;

  // Reads time step t (global index; 0 for constants) of a field, decoded and in canonical
  // orientation, into out[H*W] (row-major, north to south, lon ascending from 0). Missing values
  // become NaN; returns how many there were.
  int64_t read(const FieldRef& f, int64_t t, float* out) const;
  // Time steps t0 .. t0+count-1 into out[count*H*W] (crossing file boundaries as needed).
  int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const;

 private:
  int open_file(int file) const;  // the ncid of file `file`, closing any other open file
  std::vector<std::string> files_;
  std::vector<NcVariable> vars_;                 // grid variables
  std::map<std::string, std::string> not_grid_;  // other variables -> why not readable
  mutable int open_index_ = -1, open_ncid_ = -1;
  mutable std::vector<double> raw_;  // [H*W] read buffer
};

}  // namespace seqvit::data
