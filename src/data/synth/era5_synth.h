// Synthetic ERA5-like dataset: runs the forced shallow-water model (shallow_water.h), derives
// ERA5 variables from its state every 6 hours and writes them as CF NetCDF in the ERA5 /
// WeatherBench layout (netcdf_writer.h). This is what `seqvit data synth` calls.
//
// Files under out_dir (R = 180/H, e.g. 5.625 for 32 rows; YYYY = each year):
//   2m_temperature/2m_temperature_YYYY_Rdeg.nc                    t2m [time, lat, lon]  K
//   10m_u_component_of_wind/10m_u_component_of_wind_YYYY_Rdeg.nc  u10                   m s**-1
//   10m_v_component_of_wind/10m_v_component_of_wind_YYYY_Rdeg.nc  v10                   m s**-1
//   geopotential/geopotential_YYYY_Rdeg.nc    z [time, level = 500, 850, lat, lon]      m**2 s**-2
//   temperature/temperature_YYYY_Rdeg.nc      t [time, level = 500, 850, lat, lon]      K
//   constants/land_sea_mask_Rdeg.nc           lsm [lat, lon]                            (0 - 1)
//   constants/orography_Rdeg.nc               orography [lat, lon]                      m**2 s**-2
// Deterministic from the seed: the same spec gives bitwise identical files on one machine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace seqvit::data {

struct SynthSpec {
  std::string out_dir;
  int H = 32, W = 64;        // 32x64 (5.625 deg), 64x128 (2.8125), 128x256 (1.40625)
  int years = 1;
  int start_year = 1979;
  uint64_t seed = 0;
  int days = 0;              // > 0: stop after this many days (needs years == 1; tests, previews)
  double spinup_days = 90;   // model time run before the first record (reaches a steady state)
};

struct SynthProgress {
  std::string stage;         // "spin-up" or "year YYYY"
  int64_t done = 0, total = 0;  // model days done / to do in this stage
  double elapsed_s = 0;      // wall time since synthesize() started
};
using SynthProgressFn = std::function<void(const SynthProgress&)>;

// Validates the spec, generates the data and returns the paths of the files written.
// Throws seqvit::Error (naming the value and what is valid) on a bad spec or I/O failure.
std::vector<std::string> synthesize(const SynthSpec& spec, const SynthProgressFn& progress = {});

// Hours between 1900-01-01 00:00 and 00:00 on 1 January of `year` (Gregorian calendar).
int64_t hours_since_1900(int year);

}  // namespace seqvit::data
