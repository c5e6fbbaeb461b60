// The names table; docs/data.md "Names" is the same table for readers.
#include "data/names.h"

namespace seqvit::data {

const std::vector<NameEntry>& names_table() {
  // name, ClimaX, ERA5 NetCDF, WeatherBench2, GRIB shortName, pressure levels, note
  static const std::vector<NameEntry> table{
      {"lsm", "land_sea_mask", "lsm", "land_sea_mask", "lsm", false, ""},
      {"orography", "orography", "z", "geopotential_at_surface", "z", false,
       "surface geopotential (m**2 s**-2), not a height in m; ERA5 NetCDF 'z' and GRIB 'z' "
       "count only without a level axis"},
      {"t2m", "2m_temperature", "t2m", "2m_temperature", "2t", false, ""},
      {"u10", "10m_u_component_of_wind", "u10", "10m_u_component_of_wind", "10u", false, ""},
      {"v10", "10m_v_component_of_wind", "v10", "10m_v_component_of_wind", "10v", false, ""},
      {"tisr", "toa_incident_solar_radiation", "tisr", "toa_incident_solar_radiation", "tisr",
       false, ""},
      {"tp", "total_precipitation", "tp", "total_precipitation", "tp", false, ""},
      {"z", "geopotential", "z", "geopotential", "z", true, ""},
      {"u", "u_component_of_wind", "u", "u_component_of_wind", "u", true, ""},
      {"v", "v_component_of_wind", "v", "v_component_of_wind", "v", true, ""},
      {"t", "temperature", "t", "temperature", "t", true, ""},
      {"r", "relative_humidity", "r", "relative_humidity", "r", true, ""},
      {"q", "specific_humidity", "q", "specific_humidity", "q", true, ""},
  };
  return table;
}

std::vector<const NameEntry*> entries_named(const std::string& name, bool pressure) {
  std::vector<const NameEntry*> r;
  for (const auto& e : names_table()) {
    if (e.pressure != pressure) continue;
    for (const char* n : {e.name, e.climax, e.era5, e.weatherbench2, e.grib})
      if (name == n) {
        r.push_back(&e);
        break;
      }
  }
  return r;
}

}  // namespace seqvit::data
