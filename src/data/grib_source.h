// GRIB 1 and GRIB 2 input (a GridSource, data/grid_source.h) through ecCodes; docs/data.md
// "GRIB files" has the rules in full.
//
//  - A dataset is a list of GRIB files (or directories: every GRIB file below them, sorted),
//    editions mixed. Opening reads every message's header once (shortName, typeOfLevel, level,
//    valid time, grid, file offset); values are decoded only when read, one message at a time.
//  - Variables: messages with the same shortName on pressure levels (isobaricInhPa, or
//    isobaricInPa converted to hPa) form one variable with a level axis; any other typeOfLevel
//    (surface, heightAboveGround 2, ...) gives one variable per (shortName, typeOfLevel, level)
//    without levels. A variable is named by its shortName; when a shortName is used by several
//    variables, the pressure-level one keeps the shortName and the others are shortName_typeOfLevel
//    ("z" and "z_surface"), or shortName_typeOfLevelLEVEL when that is still ambiguous.
//  - Times: each message's valid time (validityDate / validityTime); a variable's times sorted,
//    each (time, level) in exactly one message, no gaps (as the NetCDF reader). A variable with a
//    single time in a source where others have several is a constant (lsm, surface z).
//  - Grids: regular_ll; regular_gg (Gaussian latitudes as the grid defines them); reduced_gg,
//    global, expanded to the regular Gaussian grid of 4N longitudes by linear interpolation in
//    longitude with wrap around (as CDO's setgridtype,regular). Other grid types are listed but
//    not readable. Canonical orientation as every source: north to south, longitude [0, 360)
//    ascending, whatever the scanning mode.
//  - Missing values (bitmap) become NaN and are counted.
// ecCodes is called under grib_library_mutex(); one GribDataset object is not for concurrent use.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "data/grid_source.h"

namespace seqvit::data {

std::mutex& grib_library_mutex();

// A GRIB file by its name (.grib, .grib1, .grib2, .grb, .grb1, .grb2) or its first four bytes
// ("GRIB"). False for what is not a readable regular file.
bool is_grib_file(const std::string& path);

// Files named by `paths`: files as given, directories expanded to the GRIB files below them
// (recursively), sorted.
std::vector<std::string> expand_grib_paths(const std::vector<std::string>& paths);

// The grid of a message as stored.
struct GribGrid {
  std::string type;                               // regular_ll, regular_gg, reduced_gg
  int64_t ni = 0, nj = 0, n = 0;                  // points per row (regular), rows, Gaussian N
  double lat0 = 0, lat1 = 0, lon0 = 0, lon1 = 0;  // first and last grid point, degrees
  bool i_negative = false, j_positive = false, j_consecutive = false;
  std::vector<int64_t> pl;  // reduced_gg: points in each row, in scanning order
  int64_t points() const;   // values in a message
  bool operator==(const GribGrid& o) const;
  std::string describe() const;  // "regular_ll 8x5, lat 60..-60, lon 0..315"
};

struct GribVariable : GridVariable {
  GribGrid grid;
  bool j_flip = false;            // scan rows run south to north: canonical row i is scan row H-1-i
  std::vector<int64_t> messages;  // [T x L] (L = 1 without levels): index into messages_
};

class GribDataset : public GridSource {
 public:
  explicit GribDataset(const std::vector<std::string>& paths);
  ~GribDataset() override;
  GribDataset(const GribDataset&) = delete;
  GribDataset& operator=(const GribDataset&) = delete;

  std::string format() const override { return "GRIB"; }
  const std::vector<std::string>& files() const override { return files_; }
  int64_t num_variables() const override { return static_cast<int64_t>(vars_.size()); }
  const GridVariable& variable_at(int64_t i) const override { return vars_.at(i); }
  std::string not_grid_reason(const std::string& name) const override;
  using GridSource::read;
  int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const override;

  const GribVariable& grib_variable(const std::string& name) const;

  // Where a message is: "FILE, message at byte N".
  std::string where(int64_t message) const;

 private:
  struct Message {
    int file = 0;
    int64_t offset = 0, length = 0;
  };
  int64_t read_message(const GribVariable& v, int64_t message, float* out) const;
  std::vector<std::string> files_;
  std::vector<Message> messages_;
  std::vector<GribVariable> vars_;
  std::map<std::string, std::string> not_grid_;  // unreadable variables -> why
  mutable std::FILE* open_ = nullptr;
  mutable int open_index_ = -1;
  mutable std::vector<unsigned char> bytes_;  // one message
  mutable std::vector<double> values_;        // its values, scanning order
};

}  // namespace seqvit::data
