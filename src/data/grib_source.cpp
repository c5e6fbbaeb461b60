// GRIB reader through ecCodes; see grib_source.h for the rules and docs/data.md for the why.
#include "data/grib_source.h"

#include <eccodes.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <tuple>

#include "core/check.h"
#include "data/cf_time.h"

namespace seqvit::data {

namespace fs = std::filesystem;

namespace {

// Replaces the missing value of bitmap points when decoding: outside float range, so no real
// value stored as float can equal it.
constexpr double kMissing = 1e300;

const char* const kGribExtensions[] = {".grib", ".grib1", ".grib2", ".grb", ".grb1", ".grb2"};

// A header key as text / number; `fallback` when the message has no such key.
std::string get_string(codes_handle* h, const char* key, const std::string& fallback = "") {
  char buf[256];
  size_t len = sizeof(buf);
  if (codes_get_string(h, key, buf, &len) != CODES_SUCCESS) return fallback;
  return buf;
}
long get_long(codes_handle* h, const char* key, long fallback) {
  long v;
  return codes_get_long(h, key, &v) == CODES_SUCCESS ? v : fallback;
}
double get_double(codes_handle* h, const char* key, double fallback) {
  double v;
  return codes_get_double(h, key, &v) == CODES_SUCCESS ? v : fallback;
}

bool is_pressure(const std::string& type_of_level) {
  return type_of_level == "isobaricInhPa" || type_of_level == "isobaricInPa";
}

bool near(double a, double b, double tol) { return std::fabs(a - b) <= tol; }

// Everything the index keeps of one message.
struct Header {
  int64_t message = 0;  // index into messages_
  std::string short_name, type_of_level, name, units;
  double level = 0;  // hPa for pressure levels, else the message's level
  double time = 0;   // valid time, hours since 1970
  int grid = 0;      // index into the distinct grids of the files (a reduced grid's pl array
                     // is long: stored once, not per message)
};

// Valid time in hours since 1970 from validityDate (YYYYMMDD) and validityTime (HHMM).
double valid_time(codes_handle* h, const std::string& where) {
  const long date = get_long(h, "validityDate", -1), hhmm = get_long(h, "validityTime", -1);
  if (date < 0 || hhmm < 0) fail("{}: the message has no validityDate / validityTime", where);
  const int64_t days = days_from_civil(date / 10000, date / 100 % 100, date % 100);
  return static_cast<double>(days) * 24.0 + static_cast<double>(hhmm / 100) +
         static_cast<double>(hhmm % 100) / 60.0;
}

// The 2N Gaussian latitudes of N, north to south.
std::vector<double> gaussian_latitudes(int64_t n, const std::string& where) {
  if (n <= 0 || n > 8000) fail("{}: Gaussian grid with N = {}; expected 1 .. 8000", where, n);
  std::vector<double> lat(static_cast<size_t>(2 * n));
  const int err = codes_get_gaussian_latitudes(n, lat.data());
  if (err) fail("{}: Gaussian latitudes of N = {}: {}", where, n, codes_get_error_message(err));
  return lat;
}

// The latitudes of the grid's rows in scanning order.
std::vector<double> scan_latitudes(const GribGrid& g, const std::string& where) {
  std::vector<double> lat(static_cast<size_t>(g.nj));
  if (g.type == "regular_ll") {
    for (int64_t r = 0; r < g.nj; ++r)
      lat[r] = g.nj == 1 ? g.lat0
                         : g.lat0 + static_cast<double>(r) * (g.lat1 - g.lat0) /
                                        static_cast<double>(g.nj - 1);
    return lat;
  }
  // Gaussian: the grid's own latitudes, from the row nearest the first grid point (the header
  // stores it rounded: to 1e-3 degrees in GRIB 1, 1e-6 in GRIB 2).
  const auto gl = gaussian_latitudes(g.n, where);
  int64_t i0 = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(gl.size()); ++i)
    if (std::fabs(gl[i] - g.lat0) < std::fabs(gl[i0] - g.lat0)) i0 = i;
  const int64_t step = g.j_positive ? -1 : 1, last = i0 + step * (g.nj - 1);
  if (!near(gl[i0], g.lat0, 0.01) || last < 0 || last >= static_cast<int64_t>(gl.size()) ||
      !near(gl[last], g.lat1, 0.01))
    fail(
        "{}: {} rows from latitude {} to {} are not rows of the Gaussian grid N = {} (its "
        "latitudes run {} .. {})",
        where, g.nj, g.lat0, g.lat1, g.n, gl.front(), gl.back());
  for (int64_t r = 0; r < g.nj; ++r) lat[r] = gl[i0 + step * r];
  return lat;
}

// The longitudes of a regular grid's columns in scanning order (as stored: not wrapped).
std::vector<double> scan_longitudes(const GribGrid& g) {
  std::vector<double> lon(static_cast<size_t>(g.ni));
  double span = g.i_negative ? g.lon0 - g.lon1 : g.lon1 - g.lon0;
  if (span < 0) span += 360.0;  // the grid crosses the meridian where the numbers wrap
  const double d = g.ni > 1 ? span / static_cast<double>(g.ni - 1) : 0.0;
  for (int64_t c = 0; c < g.ni; ++c)
    lon[c] = g.lon0 + (g.i_negative ? -d : d) * static_cast<double>(c);
  return lon;
}

}  // namespace

std::mutex& grib_library_mutex() {
  static std::mutex m;
  return m;
}

int64_t GribGrid::points() const {
  if (type == "reduced_gg") return std::accumulate(pl.begin(), pl.end(), int64_t{0});
  return ni * nj;
}

bool GribGrid::operator==(const GribGrid& o) const {
  auto same = [](double a, double b) { return near(a, b, 1e-6); };
  return type == o.type && ni == o.ni && nj == o.nj && n == o.n && same(lat0, o.lat0) &&
         same(lat1, o.lat1) && same(lon0, o.lon0) && same(lon1, o.lon1) &&
         i_negative == o.i_negative && j_positive == o.j_positive &&
         j_consecutive == o.j_consecutive && pl == o.pl;
}

std::string GribGrid::describe() const {
  const std::string size =
      type == "reduced_gg" ? fmt::format("N{} ({} rows)", n, nj) : fmt::format("{}x{}", ni, nj);
  return fmt::format("{} {}, lat {:g}..{:g}, lon {:g}..{:g}", type, size, lat0, lat1, lon0, lon1);
}

bool is_grib_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  const std::string ext = fs::path(path).extension().string();
  for (const char* e : kGribExtensions)
    if (ext == e) return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GRIB", 4) == 0;
}

std::vector<std::string> expand_grib_paths(const std::vector<std::string>& paths) {
  return expand_paths(paths, is_grib_file, "GRIB");
}

std::string GribDataset::where(int64_t message) const {
  const Message& m = messages_.at(message);
  return fmt::format("{}, message at byte {}", files_[m.file], m.offset);
}

GribDataset::GribDataset(const std::vector<std::string>& paths) : files_(expand_grib_paths(paths)) {
  std::lock_guard<std::mutex> lock(grib_library_mutex());
  std::vector<Header> headers;
  std::vector<GribGrid> grids;  // distinct grids
  for (int fi = 0; fi < static_cast<int>(files_.size()); ++fi) {
    const std::string& file = files_[fi];
    std::FILE* fp = std::fopen(file.c_str(), "rb");
    if (!fp) fail("{}: cannot open the file for reading: {}", file, std::strerror(errno));
    int64_t in_file = 0;
    try {
      for (;;) {
        const int64_t at = ftello(fp);
        int err = 0;
        codes_handle* h = codes_handle_new_from_file(nullptr, fp, PRODUCT_GRIB, &err);
        if (!h) {
          if (err == CODES_SUCCESS) break;  // end of file
          fail(
              "{}: the GRIB message after byte {} cannot be read: {} (a truncated or corrupt "
              "file?)",
              file, at, codes_get_error_message(err));
        }
        Header hd;
        Message m;
        m.file = fi;
        m.offset = get_long(h, "offset", at);
        const void* msg = nullptr;
        size_t len = 0;
        codes_get_message(h, &msg, &len);
        m.length = static_cast<int64_t>(len);
        hd.message = static_cast<int64_t>(messages_.size());
        messages_.push_back(m);
        const std::string w = where(hd.message);
        try {
          hd.short_name = get_string(h, "shortName", "unknown");
          hd.type_of_level = get_string(h, "typeOfLevel", "unknown");
          hd.name = get_string(h, "name");
          hd.units = get_string(h, "units");
          hd.level = get_double(h, "level", 0);
          if (hd.type_of_level == "isobaricInPa") hd.level /= 100.0;
          hd.time = valid_time(h, w);
          GribGrid g;
          g.type = get_string(h, "gridType", "unknown");
          if (g.type == "regular_ll" || g.type == "regular_gg" || g.type == "reduced_gg") {
            if (get_long(h, "alternativeRowScanning", 0))
              fail("{}: alternative row scanning (boustrophedonic rows) is not supported", w);
            g.nj = get_long(h, "Nj", 0);
            g.lat0 = get_double(h, "latitudeOfFirstGridPointInDegrees", 0);
            g.lat1 = get_double(h, "latitudeOfLastGridPointInDegrees", 0);
            g.lon0 = get_double(h, "longitudeOfFirstGridPointInDegrees", 0);
            g.lon1 = get_double(h, "longitudeOfLastGridPointInDegrees", 0);
            g.i_negative = get_long(h, "iScansNegatively", 0) != 0;
            g.j_positive = get_long(h, "jScansPositively", 0) != 0;
            g.j_consecutive = get_long(h, "jPointsAreConsecutive", 0) != 0;
            if (g.type != "regular_ll") g.n = get_long(h, "N", 0);
            if (g.type == "reduced_gg") {
              size_t npl = 0;
              if (codes_get_size(h, "pl", &npl) != CODES_SUCCESS || npl == 0)
                fail("{}: a reduced Gaussian grid without its pl array", w);
              std::vector<long> pl(npl);
              codes_get_long_array(h, "pl", pl.data(), &npl);
              g.pl.assign(pl.begin(), pl.end());
            } else {
              g.ni = get_long(h, "Ni", 0);
            }
            if (g.nj <= 0 || (g.type != "reduced_gg" && g.ni <= 0))
              fail("{}: grid {} has no points", w, g.describe());
          }
          long nvalues = 0;
          if (g.type == "regular_ll" || g.type == "regular_gg" || g.type == "reduced_gg") {
            nvalues = get_long(h, "numberOfDataPoints", -1);
            if (nvalues != g.points())
              fail("{}: {} points in grid {} but {} data points in the message", w, g.points(),
                   g.describe(), nvalues);
          }
          hd.grid = static_cast<int>(std::find(grids.begin(), grids.end(), g) - grids.begin());
          if (hd.grid == static_cast<int>(grids.size())) grids.push_back(std::move(g));
        } catch (...) {
          codes_handle_delete(h);
          throw;
        }
        codes_handle_delete(h);
        headers.push_back(std::move(hd));
        ++in_file;
      }
    } catch (...) {
      std::fclose(fp);
      throw;
    }
    std::fclose(fp);
    if (in_file == 0) fail("{}: the file holds no GRIB message", file);
  }

  // Variables: (shortName, pressure) or (shortName, typeOfLevel, level).
  struct Key {
    std::string short_name, type_of_level;
    double level;  // ignored for pressure levels
    bool operator<(const Key& o) const {
      return std::tie(short_name, type_of_level, level) <
             std::tie(o.short_name, o.type_of_level, o.level);
    }
  };
  std::map<Key, std::vector<const Header*>> groups;
  std::vector<Key> order;
  for (const auto& hd : headers) {
    const bool p = is_pressure(hd.type_of_level);
    const Key k{hd.short_name, p ? "isobaricInhPa" : hd.type_of_level, p ? 0.0 : hd.level};
    if (!groups.count(k)) order.push_back(k);
    groups[k].push_back(&hd);
  }
  // Names: the shortName, unless another variable uses it too.
  std::map<std::string, int> uses, uses_type;
  for (const auto& k : order) {
    ++uses[k.short_name];
    if (k.type_of_level != "isobaricInhPa") ++uses_type[k.short_name + "/" + k.type_of_level];
  }
  auto name_of = [&](const Key& k) {
    if (uses[k.short_name] == 1 || k.type_of_level == "isobaricInhPa") return k.short_name;
    if (uses_type[k.short_name + "/" + k.type_of_level] == 1)
      return k.short_name + "_" + k.type_of_level;
    return fmt::format("{}_{}{:g}", k.short_name, k.type_of_level, k.level);
  };
  size_t most_times = 0;
  for (const auto& k : order) {
    std::set<double> ts;
    for (const Header* h : groups[k]) ts.insert(h->time);
    most_times = std::max(most_times, ts.size());
  }

  for (const auto& k : order) {
    const auto& msgs = groups[k];
    const Header& first = *msgs.front();
    GribVariable v;
    v.name = name_of(k);
    v.units = first.units;
    v.long_name = first.name;
    v.grib_short_name = k.short_name;
    v.grib_type_of_level = k.type_of_level;
    v.grid = grids[first.grid];
    const GribGrid& g = v.grid;
    if (g.type != "regular_ll" && g.type != "regular_gg" && g.type != "reduced_gg") {
      not_grid_[v.name] = fmt::format(
          "{}: variable '{}' is on a grid of gridType '{}', which is not supported; supported: "
          "regular_ll, regular_gg, reduced_gg (regrid it first, e.g. cdo remapbil)",
          where(first.message), v.name, g.type);
      continue;
    }
    for (const Header* h : msgs)
      if (h->grid != first.grid)
        fail(
            "variable '{}': {} is on grid {}, but {} is on grid {}; the messages of one variable "
            "must share one grid",
            v.name, where(h->message), grids[h->grid].describe(), where(first.message),
            g.describe());

    // Canonical grid.
    const std::string w = where(first.message);
    const auto lat = scan_latitudes(g, w);
    for (size_t r = 1; r < lat.size(); ++r)
      if ((lat[r] - lat[r - 1]) * (lat[1] - lat[0]) <= 0)
        fail("{}: latitudes are not strictly monotonic ({} then {})", w, lat[r - 1], lat[r]);
    for (double y : lat)
      if (!(y >= -90.0 - 1e-9 && y <= 90.0 + 1e-9)) fail("{}: latitude {} outside [-90, 90]", w, y);
    v.lat_ascending_in_file = lat.size() > 1 && lat[1] > lat[0];
    v.j_flip = v.lat_ascending_in_file;
    v.lat = lat;
    if (v.j_flip) std::reverse(v.lat.begin(), v.lat.end());
    if (g.type == "reduced_gg") {
      // Global rows only: each row starts at 0 and runs round the whole circle.
      const int64_t most = *std::max_element(g.pl.begin(), g.pl.end());
      if (g.i_negative)
        fail("{}: a reduced Gaussian grid scanning east to west is not supported", w);
      if (!near(g.lon0, 0.0, 1e-3) || !near(g.lon1, 360.0 - 360.0 / most, 2e-3))
        fail(
            "{}: reduced Gaussian grid {} is not global in longitude (expected rows from 0 to "
            "{:g}); sub-areas of reduced grids are not supported",
            w, g.describe(), 360.0 - 360.0 / most);
      for (int64_t n : g.pl)
        if (n <= 0) fail("{}: a reduced Gaussian row without points (pl holds {})", w, n);
      const int64_t W = 4 * g.n;  // the regular Gaussian grid of N
      for (int64_t j = 0; j < W; ++j)
        v.lon.push_back(360.0 * static_cast<double>(j) / static_cast<double>(W));
      v.lon_in_file = v.lon;
      v.lon_src.resize(W);
      std::iota(v.lon_src.begin(), v.lon_src.end(), 0);
    } else {
      v.lon_in_file = scan_longitudes(g);
      const auto& lf = v.lon_in_file;
      std::vector<double> wrapped(lf.size());
      for (size_t i = 0; i < lf.size(); ++i) {
        double x = std::fmod(lf[i], 360.0);
        if (x < 0) x += 360.0;
        if (x >= 360.0 - 1e-9) x = 0.0;
        wrapped[i] = x;
      }
      v.lon_src.resize(lf.size());
      std::iota(v.lon_src.begin(), v.lon_src.end(), 0);
      std::stable_sort(v.lon_src.begin(), v.lon_src.end(),
                       [&](int64_t a, int64_t b) { return wrapped[a] < wrapped[b]; });
      for (size_t j = 0; j < lf.size(); ++j) v.lon.push_back(wrapped[v.lon_src[j]]);
      for (size_t j = 1; j < v.lon.size(); ++j)
        if (v.lon[j] - v.lon[j - 1] < 1e-9)
          fail("{}: grid {} holds the same meridian twice ({} and {})", w, g.describe(),
               lf[v.lon_src[j - 1]], lf[v.lon_src[j]]);
    }

    // Times and levels: every (time, level) in exactly one message.
    std::map<double, std::map<double, const Header*>> at;  // time -> level -> message
    std::set<double> levels;
    for (const Header* h : msgs) {
      const double lev = k.type_of_level == "isobaricInhPa" ? h->level : 0.0;
      auto [it, fresh] = at[h->time].emplace(lev, h);
      if (!fresh)
        fail(
            "variable '{}'{}: {} and {} both hold the time {}; each time{} must be in one "
            "message",
            v.name, k.type_of_level == "isobaricInhPa" ? fmt::format(" at {:g} hPa", lev) : "",
            where(it->second->message), where(h->message), iso8601(h->time),
            k.type_of_level == "isobaricInhPa" ? " and level" : "");
      levels.insert(lev);
    }
    if (k.type_of_level == "isobaricInhPa") {
      v.has_level = true;
      v.levels_hpa.assign(levels.begin(), levels.end());
    }
    v.has_time = !(at.size() == 1 && most_times > 1);
    for (const auto& [t, by_level] : at) {
      if (v.has_time) v.times.push_back(t);
      for (double lev : levels) {
        const auto it = by_level.find(lev);
        if (it == by_level.end()) {
          std::string present;
          for (const auto& [l, h] : by_level)
            present += (present.empty() ? "" : ", ") + fmt::format("{:g}", l);
          fail(
              "variable '{}' has no message for {:g} hPa at {} (the messages at that time hold "
              "levels {} hPa; other times hold {:g} hPa)",
              v.name, lev, iso8601(t), present, lev);
        }
        v.messages.push_back(it->second->message);
      }
    }
    // A gap: a spacing over 1.5 times the smallest one, as the NetCDF reader judges it.
    if (v.times.size() > 2) {
      double step = INFINITY;
      for (size_t i = 1; i < v.times.size(); ++i)
        step = std::min(step, v.times[i] - v.times[i - 1]);
      for (size_t i = 1; i < v.times.size(); ++i)
        if (v.times[i] - v.times[i - 1] > 1.5 * step) {
          const auto n_missing = std::llround((v.times[i] - v.times[i - 1]) / step) - 1;
          const size_t L = v.has_level ? v.levels_hpa.size() : 1;
          fail(
              "variable '{}': time step {} is missing{}: the data are every {:g} h, but {} ({}) "
              "is followed by {} ({})",
              v.name, iso8601(v.times[i - 1] + step),
              n_missing > 1 ? fmt::format(" (and {} more)", n_missing - 1) : "", step,
              iso8601(v.times[i - 1]), where(v.messages[(i - 1) * L]), iso8601(v.times[i]),
              where(v.messages[i * L]));
        }
    }
    vars_.push_back(std::move(v));
  }
  if (vars_.empty()) {
    std::string why;
    for (const auto& [n, w] : not_grid_) why += (why.empty() ? "" : "; ") + w;
    fail("the {} hold{} no readable grid variable: {}", describe(), files_.size() == 1 ? "s" : "",
         why);
  }
}

GribDataset::~GribDataset() {
  if (open_) std::fclose(open_);  // read-only: nothing to lose
}

std::string GribDataset::not_grid_reason(const std::string& name) const {
  const auto it = not_grid_.find(name);
  return it == not_grid_.end() ? std::string() : it->second;
}

const GribVariable& GribDataset::grib_variable(const std::string& name) const {
  for (const auto& v : vars_)
    if (v.name == name) return v;
  variable(name);  // throws, naming what there is
  fail("unknown variable '{}'", name);
}

int64_t GribDataset::read(const FieldRef& f, int64_t t0, int64_t count, float* out) const {
  const GribVariable& v = grib_variable(f.variable);
  if (count < 0 || t0 < 0 || t0 + count > v.T())
    fail("variable '{}': time steps {}..{} out of range; it has {} time steps", v.name, t0,
         t0 + count - 1, v.T());
  const int64_t L = v.has_level ? static_cast<int64_t>(v.levels_hpa.size()) : 1;
  if (v.has_level && (f.level < 0 || f.level >= L))
    fail("variable '{}': level index {} out of range; it has {} levels", v.name, f.level, L);
  int64_t missing = 0;
  for (int64_t k = 0; k < count; ++k)
    missing += read_message(v, v.messages[(t0 + k) * L + (v.has_level ? f.level : 0)],
                            out + k * v.H() * v.W());
  return missing;
}

int64_t GribDataset::read_message(const GribVariable& v, int64_t message, float* out) const {
  const Message& m = messages_[message];
  const std::string& file = files_[m.file];
  if (open_index_ != m.file) {
    if (open_) std::fclose(open_);
    open_index_ = -1;
    open_ = std::fopen(file.c_str(), "rb");
    if (!open_) fail("{}: cannot open the file for reading: {}", file, std::strerror(errno));
    open_index_ = m.file;
  }
  bytes_.resize(static_cast<size_t>(m.length));
  if (fseeko(open_, m.offset, SEEK_SET) != 0 ||
      std::fread(bytes_.data(), 1, bytes_.size(), open_) != bytes_.size())
    fail("{}: cannot read its {} bytes (was the file changed or cut short after opening?)",
         where(message), m.length);
  const GribGrid& g = v.grid;
  {
    std::lock_guard<std::mutex> lock(grib_library_mutex());
    codes_handle* h = codes_handle_new_from_message(nullptr, bytes_.data(), bytes_.size());
    if (!h) fail("{}: ecCodes cannot decode the message (corrupt?)", where(message));
    size_t n = 0;
    int err = codes_set_double(h, "missingValue", kMissing);
    if (!err) err = codes_get_size(h, "values", &n);
    if (!err && static_cast<int64_t>(n) != g.points()) {
      codes_handle_delete(h);
      fail("{}: {} values, but grid {} has {} points", where(message), n, g.describe(), g.points());
    }
    values_.resize(n);
    if (!err) err = codes_get_double_array(h, "values", values_.data(), &n);
    codes_handle_delete(h);
    if (err)
      fail("{}: decoding the values: {} (corrupt?)", where(message), codes_get_error_message(err));
  }
  for (double& x : values_)
    if (x == kMissing) x = NAN;

  const int64_t H = v.H(), W = v.W();
  int64_t missing = 0;
  if (g.type == "reduced_gg") {
    // Row by row: target longitude 360 j / W sits at position p = j W_r / W between the row's
    // points k = floor(p) and k + 1 (mod W_r, the wrap round 360); linear in between. A target
    // next to a missing point (with non-zero weight) is missing.
    int64_t start = 0;
    for (int64_t r = 0; r < H; ++r) {
      const int64_t n = g.pl[r];
      const double* row = values_.data() + start;
      float* dst = out + (v.j_flip ? H - 1 - r : r) * W;
      for (int64_t j = 0; j < W; ++j) {
        const double p = static_cast<double>(j) * static_cast<double>(n) / static_cast<double>(W);
        const int64_t k = static_cast<int64_t>(std::floor(p));
        const double w = p - static_cast<double>(k);
        const double a = row[k % n], b = row[(k + 1) % n];
        const double x = w == 0.0 ? a : (1.0 - w) * a + w * b;
        dst[j] = static_cast<float>(x);
        missing += std::isnan(x);
      }
      start += n;
    }
    return missing;
  }
  const int64_t ni = g.ni, nj = g.nj;
  for (int64_t i = 0; i < H; ++i) {
    const int64_t r = v.j_flip ? H - 1 - i : i;  // scan row
    for (int64_t j = 0; j < W; ++j) {
      const int64_t c = v.lon_src[j];  // scan column
      const double x = values_[g.j_consecutive ? c * nj + r : r * ni + c];
      missing += std::isnan(x);
      out[i * W + j] = static_cast<float>(x);
    }
  }
  return missing;
}

}  // namespace seqvit::data
