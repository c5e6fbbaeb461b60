// Writes one gridded variable as a CF-1.6 NetCDF file in the ERA5 (CDS) download layout:
// dims (time, [level], latitude, longitude), latitude descending, longitude 0..360, time as int
// "hours since 1900-01-01 00:00:00.0", values packed as shorts with scale_factor / add_offset
// and _FillValue = missing_value = -32767. Records are streamed one time step at a time; the
// file is written under a temporary name and renamed into place by close(), so an interrupted
// run never leaves a complete-looking but truncated file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::data::synth {

struct NcVariableSpec {
  std::string name;           // "t2m", "z", ...
  std::string units;          // "K", "m**2 s**-2", ...
  std::string long_name;
  std::string standard_name;
  double valid_min = 0, valid_max = 1;  // packing range (fixed, so records can be streamed)
  std::vector<int> levels;    // hPa; empty: no level dimension
  bool has_time = true;       // false: a constant field (lsm, orography)
};

class NcPackedWriter {
 public:
  // lat [H] degrees north (descending), lon [W] degrees east; ntime records will follow.
  NcPackedWriter(const std::string& path, const NcVariableSpec& spec,
                 const std::vector<double>& lat, const std::vector<double>& lon, int64_t ntime,
                 const std::string& history);
  ~NcPackedWriter();  // without close(): the temporary file is removed
  NcPackedWriter(const NcPackedWriter&) = delete;
  NcPackedWriter& operator=(const NcPackedWriter&) = delete;

  // Record `t`: hours since 1900-01-01, values [L, H, W] (L = levels or 1). NaN -> fill.
  void write(int64_t t, int64_t hours_since_1900, const std::vector<double>& values);
  void close();  // closes, checks every record was written, renames into place

  double scale_factor() const { return scale_; }
  double add_offset() const { return offset_; }

 private:
  std::string path_, tmp_;
  NcVariableSpec spec_;
  int ncid_ = -1, varid_ = -1, timeid_ = -1;
  int64_t H_, W_, L_, ntime_, written_ = 0;
  double scale_ = 1, offset_ = 0;
  std::vector<int16_t> packed_;  // [L, H, W]
};

// Packing used by the writer: short = round((x - add_offset) / scale_factor), within
// [-32766, 32767] so that -32767 stays free for the fill value.
void packing_for_range(double lo, double hi, double* scale, double* offset);

}  // namespace seqvit::data::synth
