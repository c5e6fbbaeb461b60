// The one table of variable names (docs/data.md "Names"): each ClimaX-style field name this
// repository uses (t2m, u10, z for z_500, lsm, orography, ...) with ClimaX's own long name and
// the names the same quantity has in ERA5 NetCDF files, in WeatherBench2 stores and in GRIB
// (shortName on a single level or on pressure levels). GridSource::resolve() looks a requested
// name up here when the source has no variable of that exact name.
#pragma once

#include <string>
#include <vector>

namespace seqvit::data {

struct NameEntry {
  const char* name;           // this repository's name: "t2m"; pressure variables "z" (-> z_500)
  const char* climax;         // ClimaX's name: "2m_temperature", "geopotential" (-> _500)
  const char* era5;           // ERA5 NetCDF short name: "t2m", "z"
  const char* weatherbench2;  // WeatherBench2 long name: "2m_temperature", "geopotential"
  const char* grib;           // GRIB shortName: "2t", "z"
  bool pressure;              // on pressure levels (asked for as NAME_LEVEL: z_500)
  const char* note;           // what the table's reader should know ("" if nothing)
};

// Every entry, in the order of the documentation table.
const std::vector<NameEntry>& names_table();

// The entries a requested name refers to: a pressure entry when `name` is one of its names and
// `pressure`, a single-level entry when `name` is one of its names and not `pressure`.
std::vector<const NameEntry*> entries_named(const std::string& name, bool pressure);

}  // namespace seqvit::data
