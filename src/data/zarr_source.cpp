// Zarr stores as a GridSource; see zarr_source.h and docs/data.md "Zarr stores".
#include "data/zarr_source.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace seqvit::data {

namespace {

// A store's array as "store/name", for messages.
std::string where(const ZarrStore& s, const ZarrArray& a) { return s.path() + "/" + a.name; }

struct Coord {
  std::vector<double> values;
  std::string units, calendar;
};

// The coordinate array of dimension `dim` (its own packing applied).
Coord read_coord(const ZarrStore& s, const std::string& dim, int64_t len, const ZarrArray& of) {
  const ZarrArray* c = s.find(dim);
  if (!c)
    fail(
        "{}: array '{}': dimension '{}' has no coordinate array; an xarray store keeps the {} "
        "values in an array of that name",
        s.path(), of.name, dim, dim);
  if (c->ndim() != 1 || c->shape[0] != len)
    fail("{}: coordinate '{}' has shape ({}); expected ({}) for the dimension of '{}'", s.path(),
         dim, fmt::join(c->shape, ", "), len, of.name);
  Coord r;
  r.values = s.read_all(*c);
  r.units = c->text_attr("units");
  r.calendar = c->text_attr("calendar");
  const auto sf = c->num_attrs.find("scale_factor"), ao = c->num_attrs.find("add_offset");
  for (auto& v : r.values)
    v = v * (sf == c->num_attrs.end() ? 1.0 : sf->second[0]) +
        (ao == c->num_attrs.end() ? 0.0 : ao->second[0]);
  return r;
}

// The level of a scalar (0-d) pressure-level coordinate of `a` in hPa; NaN if there is none.
double scalar_level_hpa(const ZarrStore& s, const ZarrArray& a) {
  for (const auto& n : scalar_level_names(a.text_attr("coordinates"))) {
    const ZarrArray* c = s.find(n);
    if (!c || c->ndim() != 0 || cf_axis_of(n, c->text_attr("units")) != CfAxis::Level) continue;
    return levels_in_hpa(s.read_all(*c), c->text_attr("units"))[0];
  }
  return NAN;
}

// One array of one store as a grid variable (a single segment), or why it is not one.
struct StoreVar {
  ZarrVariable v;
  std::string problem;
};

// Why `a` is on a grid seqvit cannot read (cf_grid.h cf_grid_refusal): 2-D latitude or
// longitude coordinates, or a grid_mapping other than latitude_longitude; "" if none.
std::string grid_refusal(const ZarrStore& s, const ZarrArray& a) {
  std::vector<std::string> two_d;
  for (const auto& n : latlon_coordinate_names(a.text_attr("coordinates"))) {
    const ZarrArray* c = s.find(n);
    if (!c || c->ndim() != 2) continue;
    const CfAxis ax = cf_axis_of(n, c->text_attr("units"));
    if (ax != CfAxis::Lat && ax != CfAxis::Lon) continue;
    two_d.push_back(c->dims.size() == 2 ? fmt::format("{} ({}, {})", n, c->dims[0], c->dims[1])
                                        : n);
  }
  std::string mapping = a.text_attr("grid_mapping");
  if (const ZarrArray* m = mapping.empty() ? nullptr : s.find(mapping))
    if (const std::string gm = m->text_attr("grid_mapping_name"); !gm.empty()) mapping = gm;
  return cf_grid_refusal(two_d, mapping);
}

StoreVar scan_array(const ZarrStore& s, int store_index, const ZarrArray& a,
                    const SourceOptions& options) {
  StoreVar sv;
  ZarrVariable& v = sv.v;
  v.name = a.name;
  const std::string at = where(s, a);
  std::string dims_text;
  for (size_t i = 0; i < a.dims.size(); ++i) dims_text += (i ? ", " : "") + a.dims[i];
  auto reject = [&](const std::string& why) {
    sv.problem =
        fmt::format("{}: variable '{}' has dims ({}); {}", s.path(), a.name, dims_text, why);
    return sv;
  };
  if (a.dims.empty() && a.ndim() > 0)
    return reject("it has no _ARRAY_DIMENSIONS attribute (xarray names the dims there)");
  std::vector<CfAxis> ax;
  for (const auto& d : a.dims) {
    const ZarrArray* c = s.find(d);
    ax.push_back(cf_axis_of(d, c ? c->text_attr("units") : ""));
  }
  if (const std::string why = grid_refusal(s, a); !why.empty()) return reject(why);
  CfLayout lay;
  if (const std::string why = cf_grid_layout(ax, a.shape, a.dims, &lay); !why.empty())
    return reject(why);
  const int tdim = lay.tdim, ldim = lay.ldim, ydim = lay.ydim, xdim = lay.xdim;
  if (tdim >= 0 && a.shape[tdim] == 0)
    return reject(fmt::format("its time axis '{}' is empty (no time steps)", a.dims[tdim]));
  if (ldim >= 0 && a.shape[ldim] == 0)
    return reject(fmt::format("its level axis '{}' is empty", a.dims[ldim]));
  if (!a.unsupported.empty()) fail("{}", a.unsupported);  // a grid variable seqvit cannot decode
  v.units = a.text_attr("units");
  v.long_name = a.text_attr("long_name");

  auto lat = read_coord(s, a.dims[ydim], a.shape[ydim], a).values;
  if (lat.empty()) return reject("the latitude axis is empty");
  set_canonical_lat(v, std::move(lat), at, a.dims[ydim]);
  auto lon = read_coord(s, a.dims[xdim], a.shape[xdim], a).values;
  if (lon.empty()) return reject("the longitude axis is empty");
  set_canonical_lon(v, std::move(lon), at, a.dims[xdim]);

  ZarrVariable::Segment seg;
  seg.store = store_index;
  seg.array = &a;
  seg.lat_flip = v.lat_ascending_in_file;
  seg.lon_src = v.lon_src;
  v.lon_first_in_file = seg.lon_first = lay.lon_first;
  seg.roles.assign(a.dims.size(), '1');
  for (const auto& [d, r] : {std::pair{tdim, 't'}, {ldim, 'l'}, {ydim, 'y'}, {xdim, 'x'}})
    if (d >= 0) seg.roles[static_cast<size_t>(d)] = r;
  for (int d : lay.dropped) v.dropped_axes.push_back(a.dims[d]);
  if (tdim >= 0) {
    v.has_time = true;
    const auto c = read_coord(s, a.dims[tdim], a.shape[tdim], a);
    v.time_axis = a.dims[tdim];
    v.time_units = c.units;
    v.times = cf_times(c.values, c.units, c.calendar, s.path(), a.dims[tdim],
                       options.time_origin, &v.time_has_epoch);
    seg.nt = static_cast<int64_t>(v.times.size());
  }
  if (ldim >= 0) {
    v.has_level = true;
    const auto c = read_coord(s, a.dims[ldim], a.shape[ldim], a);
    v.levels_hpa = levels_in_hpa(c.values, c.units);
  } else if (const double hpa = scalar_level_hpa(s, a); !std::isnan(hpa)) {
    v.name = fmt::format("{}_{:g}", v.name, hpa);  // one level per array, as WeatherBench 1
  }

  // Packing and missing values, compared on the raw value. xarray stores _FillValue as the
  // array's fill_value (and reads it back as _FillValue), so that is a missing value too.
  auto& d = seg.decode;
  if (auto it = a.num_attrs.find("scale_factor"); it != a.num_attrs.end()) d.scale = it->second[0];
  if (auto it = a.num_attrs.find("add_offset"); it != a.num_attrs.end()) d.offset = it->second[0];
  for (const char* key : {"_FillValue", "missing_value"})
    if (auto it = a.num_attrs.find(key); it != a.num_attrs.end())
      d.missing.insert(d.missing.end(), it->second.begin(), it->second.end());
  if (a.has_fill && !std::isnan(a.fill)) d.missing.push_back(a.fill);
  if (a.kind == 'f' && a.itemsize == 4)  // compare in the array's own precision
    for (auto& m : d.missing) m = static_cast<double>(static_cast<float>(m));
  v.segments.push_back(seg);
  return sv;
}

}  // namespace

ZarrDataset::ZarrDataset(const std::vector<std::string>& stores, const SourceOptions& options)
    : paths_(stores) {
  if (paths_.empty()) fail("no Zarr stores given");
  CfVariableSet<ZarrVariable> found;  // every piece of every variable
  for (int si = 0; si < static_cast<int>(paths_.size()); ++si) {
    if (!is_zarr_store(paths_[si]))
      fail("{}: not a Zarr v2 store (a directory with .zmetadata or .zgroup)", paths_[si]);
    stores_.push_back(std::make_unique<ZarrStore>(paths_[si]));
    const ZarrStore& s = *stores_.back();
    int grid_vars = 0;
    std::string first_problem;
    for (const auto& a : s.arrays()) {
      // Coordinates (1-D, named like their dimension) and scalars are not grid variables.
      if (a.ndim() == 0 || (a.ndim() == 1 && a.dims.size() == 1 && a.dims[0] == a.name)) continue;
      // 2-D latitudes and longitudes are coordinates too (of a curvilinear grid, which the
      // arrays on it report).
      const CfAxis axis = cf_axis_of(a.name, a.text_attr("units"));
      if (a.ndim() == 2 && (axis == CfAxis::Lat || axis == CfAxis::Lon)) continue;
      auto sv = scan_array(s, si, a, options);
      if (!sv.problem.empty()) {
        if (first_problem.empty()) first_problem = sv.problem;
        found.reject(sv.v.name, sv.problem);
        continue;
      }
      ++grid_vars;
      found.add(std::move(sv.v), s.path());
    }
    if (grid_vars == 0)
      fail("{}: no array with dims (time, [level], lat, lon){}", s.path(),
           first_problem.empty() ? "" : " (" + first_problem + ")");
  }
  not_grid_ = found.not_grid();
  vars_ = found.join();
}

std::string ZarrDataset::not_grid_reason(const std::string& name) const {
  const auto it = not_grid_.find(name);
  return it == not_grid_.end() ? std::string() : it->second;
}

const ZarrVariable& ZarrDataset::zarr_variable(const std::string& name) const {
  for (const auto& v : vars_)
    if (v.name == name) return v;
  variable(name);  // throws, naming what there is
  fail("unknown variable '{}'", name);
}

int64_t ZarrDataset::read(const FieldRef& f, int64_t t0, int64_t count, float* out) const {
  checked_read(f, t0, count);
  const ZarrVariable& v = zarr_variable(f.variable);
  const int64_t H = v.H(), W = v.W();
  raw_.resize(static_cast<size_t>(H * W));  // [H*W] stored orientation
  int64_t missing = 0;
  for (int64_t t = t0; t < t0 + count; ++t) {
    const auto seg =
        std::upper_bound(v.segments.begin(), v.segments.end(), t,
                         [](int64_t x, const ZarrVariable::Segment& s) { return x < s.t0; }) -
        1;
    std::vector<int64_t> start, cnt;  // [ndim] of this store's array
    for (const char r : seg->roles) {
      start.push_back(r == 't' ? t - seg->t0 : r == 'l' ? f.level : 0);
      cnt.push_back(r == 'y' ? H : r == 'x' ? W : 1);
    }
    stores_[seg->store]->read(*seg->array, start, cnt, raw_.data());
    missing += decode_to_canonical(raw_.data(), H, W, seg->decode, seg->lat_flip, seg->lon_src,
                                   seg->lon_first, out + (t - t0) * H * W);
  }
  return missing;
}

}  // namespace seqvit::data
