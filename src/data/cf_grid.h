// The CF interpretation every reader of gridded files shares (NetCDF, netcdf_reader.h; Zarr,
// zarr_source.h): which dimension is which axis, levels in hPa, the canonical orientation
// (latitude north to south, longitude [0, 360) ascending), the time axis, the decoding of packed
// values with fill values, and the concatenation of one variable's pieces (files, stores) along
// time. docs/data.md states the rules; each reader only finds the numbers and attributes.
// `where` in the functions below is how errors name the file or store (and array).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/grid_source.h"

namespace seqvit::data {

std::string cf_lower(std::string s);

enum class CfAxis { Time, Level, Lat, Lon, Other };

// Classifies a dimension by its name and, if it has one, its coordinate variable's units
// (docs/data.md "Grid variables").
CfAxis cf_axis_of(const std::string& dim, const std::string& units);

// The roles of a variable's dims (docs/data.md "Grid variables", "Unusual files"): a grid
// variable has (time, [level], lat, lon) or (time, [level], lon, lat) in that order, time and
// level optional (the two horizontal axes last, in either order: WeatherBench2 stores lon
// first), plus any number of extra axes of length 1 anywhere (a depth `zlev`, an ensemble
// `number`, `expver`), which are dropped (read at index 0).
struct CfLayout {
  int tdim = -1, ldim = -1, ydim = -1, xdim = -1;  // -1: absent
  bool lon_first = false;                           // stored (..., lon, lat)
  std::vector<int> dropped;                         // the extra axes of length 1
};
// Fills *out from the dims' axes, lengths and names and returns "", or why the dims are not
// those of a grid variable (an extra axis longer than 1 is named with its length).
std::string cf_grid_layout(const std::vector<CfAxis>& ax, const std::vector<int64_t>& len,
                           const std::vector<std::string>& names, CfLayout* out);

// Pressure levels in hPa, by the units, else by magnitude: levels in hPa end at 1000 (1100 at
// most), so a largest level above 2000 must be in Pa.
std::vector<double> levels_in_hpa(const std::vector<double>& values, const std::string& units);

// Names under which a scalar (0-d) pressure-level coordinate of a variable may be stored: those
// of its `coordinates` attribute first, then the usual level names.
std::vector<std::string> scalar_level_names(const std::string& coordinates_attribute);

// Names under which a variable's latitude and longitude coordinates may be stored (to find 2-D
// ones, cf_grid_refusal): those of its `coordinates` attribute, then the usual names.
std::vector<std::string> latlon_coordinate_names(const std::string& coordinates_attribute);

// Sets v.lat and v.lat_ascending_in_file from the latitudes as stored (strictly monotonic,
// within [-90, 90]; flipped to north to south).
void set_canonical_lat(GridVariable& v, std::vector<double> lat, const std::string& where,
                       const std::string& dim);
// Sets v.lon_in_file, v.lon_src and v.lon: each longitude mapped onto [0, 360), columns sorted
// ascending; a meridian present twice is an error.
void set_canonical_lon(GridVariable& v, std::vector<double> lon, const std::string& where,
                       const std::string& dim);

// Hours since 1970-01-01 of stored time values with CF `units` ("hours since ...") and
// `calendar` (standard, gregorian, proleptic_gregorian or empty); strictly increasing. Units
// without an epoch ("days") are read as "units since time_origin" when time_origin (an ISO date)
// is given (days, hours, minutes, seconds; months and years are refused), else the values are
// returned as stored and *has_epoch is set to false (docs/data.md "Unusual files").
std::vector<double> cf_times(const std::vector<double>& values, const std::string& units,
                             const std::string& calendar, const std::string& where,
                             const std::string& dim, const std::string& time_origin,
                             bool* has_epoch);

// A time value for messages: ISO 8601, or the raw value with its units for a time axis without
// an epoch ("12 days (no epoch)").
std::string cf_time_text(const GridVariable& v, double t);

// Checks the attributes a reader finds beside a variable's dims that say its grid is not a
// regular latitude-longitude one: `coordinates_2d` lists its 2-D coordinate variables that are
// latitudes or longitudes (name and dims, "lat (y, x)"), `grid_mapping` the grid_mapping_name of
// its grid_mapping variable (empty if none). Returns "" or why the variable cannot be read.
std::string cf_grid_refusal(const std::vector<std::string>& coordinates_2d,
                            const std::string& grid_mapping);

// How a variable's stored (raw) values become physical values (docs/data.md "Decoding rules").
struct CfDecode {
  double scale = 1.0, offset = 0.0;
  std::vector<double> missing;  // raw (packed) _FillValue and missing_value values
  bool unsigned_bytes = false;  // NetCDF-3 "_Unsigned = true" byte data
};

// One stored slice, raw[H*W] in the stored orientation: [H, W] row-major, or [W, H] when
// lon_first (a variable stored (..., lon, lat)), decoded into out[H*W] in the canonical one
// ([H, W]; rows flipped when lat_flip; canonical column j is stored column lon_src[j]).
// Missing values become NaN; returns how many there were.
int64_t decode_to_canonical(const double* raw, int64_t H, int64_t W, const CfDecode& d,
                            bool lat_flip, const std::vector<int64_t>& lon_src, bool lon_first,
                            float* out);

// One variable found in several pieces (files, stores), each described by its GridVariable with
// its own times, and where it lives (`sources[k]`, for messages). Checks that the pieces share
// one grid and levels (to 1e-6), have a time axis in all or none (a constant in one piece only),
// do not overlap in time and leave no time step out (a spacing over 1.5 times the smallest is a
// gap). Returns the pieces in time order with each one's first global time index.
struct CfConcatenation {
  std::vector<size_t> order;  // piece indices, by first time
  std::vector<int64_t> t0;    // [pieces] in `order`: first global time index
  std::vector<double> times;  // [T] all times, concatenated
};
CfConcatenation concatenate_in_time(const std::string& name,
                                    const std::vector<const GridVariable*>& pieces,
                                    const std::vector<std::string>& sources);

// Collects the pieces of grid variables as the files or stores are scanned, then joins each
// variable's pieces in time. Var is a GridVariable with `segments` (each with a `t0`); each piece
// holds one segment, its own grid orientation and times.
template <typename Var>
class CfVariableSet {
 public:
  void add(Var piece, const std::string& source) {
    auto& p = parts_[piece.name];
    if (p.empty()) order_.push_back(piece.name);
    sources_[piece.name].push_back(source);
    p.push_back(std::move(piece));
  }
  // An entry that is not a grid variable, and why (for GridSource::not_grid_reason).
  void reject(const std::string& name, const std::string& why) { rejected_.emplace(name, why); }
  // The rejected entries that are no grid variable in any piece.
  std::map<std::string, std::string> not_grid() const {
    std::map<std::string, std::string> r;
    for (const auto& [name, why] : rejected_)
      if (!parts_.count(name)) r[name] = why;
    return r;
  }
  // Each variable (in the order first seen) with one segment per piece, in time order, each
  // keeping its own orientation (files or stores may store the grid differently).
  std::vector<Var> join() const {
    std::vector<Var> vars;
    for (const auto& name : order_) {
      const auto& ps = parts_.at(name);
      std::vector<const GridVariable*> pieces;
      for (const auto& p : ps) pieces.push_back(&p);
      const CfConcatenation cat = concatenate_in_time(name, pieces, sources_.at(name));
      Var v = ps[cat.order.front()];
      v.segments.clear();
      v.times = cat.times;
      for (size_t k = 0; k < cat.order.size(); ++k) {
        auto seg = ps[cat.order[k]].segments.at(0);
        seg.t0 = cat.t0[k];
        v.segments.push_back(seg);
      }
      vars.push_back(std::move(v));
    }
    return vars;
  }

 private:
  std::map<std::string, std::vector<Var>> parts_;            // variable -> one per piece
  std::map<std::string, std::vector<std::string>> sources_;  // variable -> file of each piece
  std::vector<std::string> order_;
  std::map<std::string, std::string> rejected_;  // name -> why it is not a grid variable
};

}  // namespace seqvit::data
