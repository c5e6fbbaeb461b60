// Streams gridded fields into a CF-1.8 NetCDF-4 file (docs/data.md "Regridding"): float32
// variables with dims ([time], [level], lat, lon), written one [H, W] slice at a time in the
// canonical orientation (latitude north to south, longitude ascending), NaN as _FillValue. Used
// by `seqvit data regrid`. The file is written under a temporary name and renamed into place by
// close(), so an interrupted run never leaves a complete-looking file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::data {

struct GridFileVariable {
  std::string name;  // as written
  std::string units, long_name, standard_name;
  std::vector<double> levels_hpa;  // [L]; empty: no level axis
  bool has_time = true;            // false: a constant (lat, lon)
};

class GridFileWriter {
 public:
  // lat [H], lon [W] in degrees; times [T] in hours since 1970-01-01 (for the variables with
  // has_time). Variables with levels share a level axis when their levels agree ("level",
  // "level_1", ... otherwise).
  GridFileWriter(const std::string& path, const std::vector<double>& lat,
                 const std::vector<double>& lon, const std::vector<double>& times,
                 const std::vector<GridFileVariable>& vars, const std::string& history);
  ~GridFileWriter();  // without close(): the temporary file is removed
  GridFileWriter(const GridFileWriter&) = delete;
  GridFileWriter& operator=(const GridFileWriter&) = delete;

  // Slice (t, level) of variable `var` (t = 0 and level = 0 where there is no such axis).
  void write(size_t var, int64_t t, int64_t level, const float* values);  // values [H*W]
  // Checks every slice was written, closes and renames into place.
  void close();

 private:
  std::string path_, tmp_;
  int ncid_ = -1;
  int64_t H_, W_, T_;
  std::vector<GridFileVariable> vars_;
  std::vector<int> varids_;
  std::vector<int64_t> written_;  // [vars] slices written
  std::vector<float> buf_;        // [H*W] with NaN replaced by the fill value
};

}  // namespace seqvit::data
