// A source of gridded fields (docs/data.md "Sources"): variables on a latitude-longitude grid,
// over time and pressure levels, read one field at a time in one canonical orientation
// (latitude north to south, longitude [0, 360) ascending). NetCDF files (netcdf_reader.h) are
// one implementation; every layer above reads data through this interface, so a Zarr store, a
// GRIB file or a regridded view of any of them serves training, statistics and scoring alike.
//
// Names. resolve() turns a ClimaX-style field name into a variable of the source and a level:
// "t2m" -> t2m, "z_500" -> z at 500 hPa; a name the source does not use is looked up in the
// names table (data/names.h): "t2m" -> 2m_temperature in WeatherBench2, 2t in GRIB.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace seqvit::data {

// One grid variable of a source, over all its files / chunks / messages.
struct GridVariable {
  std::string name, units, long_name;
  bool has_time = false, has_level = false;
  std::vector<double> levels_hpa;  // [L] in source order; empty without a level axis
  std::vector<double> lat;         // [H] canonical: north to south
  std::vector<double> lon;         // [W] canonical: [0, 360) ascending
  // As stored (for writing results back the way the data came).
  bool lat_ascending_in_file = false;  // the source stores south to north (rows are flipped)
  std::vector<double> lon_in_file;     // [W] as stored
  std::vector<int64_t> lon_src;        // [W] canonical column j is stored column lon_src[j]
  // The source stores (..., lon, lat), as WeatherBench2 does: each slice is transposed when
  // read. Writers (forecast_writer.h, `data regrid`) still write (..., lat, lon).
  bool lon_first_in_file = false;
  std::vector<double> times;           // [T] hours since 1970-01-01; empty without time
  // A time axis whose units name no epoch ("days", "hours": no "since DATE", docs/data.md
  // "Unusual files"): time_has_epoch is false and `times` holds the values as stored, in
  // time_units. Only `data stats` reads such a variable; training asks for --time-origin.
  bool time_has_epoch = true;
  std::string time_axis, time_units;  // the time dimension's name and units as stored
  // Extra axes of length 1 that were dropped (read at index 0): "zlev", "number", ...
  std::vector<std::string> dropped_axes;
  // GRIB only (empty elsewhere): the messages' shortName and typeOfLevel, by which the names
  // table (data/names.h) finds e.g. the surface "z" that the source calls z_surface.
  std::string grib_short_name, grib_type_of_level;
  int64_t H() const { return static_cast<int64_t>(lat.size()); }
  int64_t W() const { return static_cast<int64_t>(lon.size()); }
  int64_t T() const { return has_time ? static_cast<int64_t>(times.size()) : 1; }
};

// A ClimaX-style name resolved against a source: "z_500" -> variable z, level 500 hPa.
struct FieldRef {
  std::string name;      // the ClimaX name ("z_500", "t2m")
  std::string variable;  // the variable in the source ("z")
  int level = -1;        // index into levels_hpa; -1 without a level axis
};

class GridSource {
 public:
  virtual ~GridSource() = default;

  // "NetCDF", ... (for messages and `data stats`).
  virtual std::string format() const = 0;
  // The files (or store directories) underneath, in the order they were opened.
  virtual const std::vector<std::string>& files() const = 0;
  virtual int64_t num_variables() const = 0;
  virtual const GridVariable& variable_at(int64_t i) const = 0;
  // Why an entry of the source that is not a grid variable cannot be read ("has dims (time,
  // nv) ..."), or empty if `name` is no such entry.
  virtual std::string not_grid_reason(const std::string& name) const { return {}; }

  // Time steps t0 .. t0+count-1 (0 for constants) of a field, decoded and in canonical
  // orientation, into out[count*H*W] (row-major, north to south, lon ascending from 0).
  // Missing values become NaN; returns how many there were.
  virtual int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const = 0;
  int64_t read(const FieldRef& f, int64_t t, float* out) const { return read(f, t, 1, out); }

  // Names of the grid variables, in source order.
  std::vector<std::string> variables() const;
  bool has(const std::string& variable) const;
  // The variable; an unknown name is an error listing the variables there are.
  const GridVariable& variable(const std::string& variable) const;
  // "t2m" -> t2m; "z_500" -> z at 500 hPa; errors list the variables or levels available.
  // The variable of exactly that name comes first, then the names table's other names for it
  // (2m_temperature, 2t, ...); two different variables that both match are an error naming both.
  FieldRef resolve(const std::string& climax_name) const;
  // Every field: one per variable, and one per level for variables with a level axis.
  std::vector<FieldRef> fields() const;

 protected:
  // "the files (a.nc and 3 more)": how errors name the source.
  std::string describe() const;
  // The variable of `f`, after checking f.level and the time steps t0 .. t0+count-1 against it
  // (what every read() checks first).
  const GridVariable& checked_read(const FieldRef& f, int64_t t0, int64_t count) const;
};

// How a source decodes what its files leave open (docs/data.md "Unusual files").
struct SourceOptions {
  // ISO date: a time axis whose units have no epoch ("days") is read as "days since
  // time_origin". Empty: such an axis keeps its raw values (time_has_epoch false).
  std::string time_origin;
};

// The files `paths` names: files as given, directories expanded to the files below them
// (recursively: the ERA5 / WeatherBench layout keeps one sub-directory per variable) that
// `accept` takes, sorted. A missing path, a directory without such files or no file at all is an
// error naming it and `kind` ("*.nc", "GRIB").
std::vector<std::string> expand_paths(const std::vector<std::string>& paths,
                                      bool (*accept)(const std::string& file),
                                      const std::string& kind);

// Opens the source `paths` name (files or directories, see docs/data.md "Sources").
std::unique_ptr<GridSource> open_grid_source(const std::vector<std::string>& paths,
                                             const SourceOptions& options = {});

}  // namespace seqvit::data
