// Writes a forecast as a CF-1.8 NetCDF-4 file on the grid and in the orientation of the input
// data (docs/forecasts.md): one float32 variable per output, named by its ClimaX name (t2m,
// z_500), dims (time, lat, lon) with a time axis of length 1 holding the VALID time, plus the
// forecast reference time, the lead and the checkpoint as scalar variables and attributes.
//
// Orientation: the dataset hands out every field north to south with longitudes in [0, 360);
// the file gets the latitude order and the longitude values/order of the input file back:
//   file row r    = canonical row r, or H-1-r when the input stored latitude south to north;
//   file column c = canonical column j where lon_src[j] == c (the reader's roll, undone).
// With coarsening (c > 1) the grid is the coarse one: latitudes are block means in the input's
// latitude order, longitudes block means of the canonical (0..360 ascending) longitudes.
// The file is written under a temporary name and renamed into place, so a failed write never
// leaves a partial file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::data {

class ForecastDataset;

// The grid of a forecast file and its mapping from the dataset's canonical grid.
struct ForecastGrid {
  std::vector<double> lat;       // [H] degrees north, in file order
  std::vector<double> lon;       // [W] degrees east, in file order (values as the input stores)
  bool flip_lat = false;         // file row r holds canonical row H-1-r
  std::vector<int64_t> lon_dst;  // [W] canonical column j goes to file column lon_dst[j]
  int coarsen = 1;
};

// The grid of the dataset's outputs (taken from the first output's variable).
ForecastGrid forecast_grid(const ForecastDataset& ds);

struct ForecastField {
  std::string name;  // ClimaX name: "t2m", "z_500"
  std::string units, long_name, standard_name;
  double level_hpa = -1;          // pressure level; < 0 for none
  const float* values = nullptr;  // [H*W] canonical orientation, physical units; NaN = missing
};

struct ForecastMetadata {
  double reference_time = 0;  // the input time, hours since 1970-01-01
  double lead_hours = 0;      // valid time = reference_time + lead_hours
  std::string checkpoint;     // the model file
  int64_t checkpoint_step = 0;
  std::string history;  // e.g. the command line
};

// Writes `fields` (all on `grid`) to `path` atomically. Throws seqvit::Error naming the path.
void write_forecast_netcdf(const std::string& path, const ForecastGrid& grid,
                           const std::vector<ForecastField>& fields, const ForecastMetadata& meta);

// CF standard_name of an ERA5 / ClimaX variable ("t" -> "air_temperature"); "" when unknown.
std::string cf_standard_name(const std::string& variable);

}  // namespace seqvit::data
