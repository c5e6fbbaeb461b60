// Regridding of lat-lon fields onto another lat-lon grid (docs/data.md, "Regridding"), above
// all onto the equiangular grids ClimaX and WeatherBench2 use: H rows centred at
// -90 + D/2 ... 90 - D/2 (D = 180/H), W columns from 0 (0, 360/W, ...).
//
//  - conservative (first order): the target value is the area-weighted mean of the source cells
//    it overlaps. Lat-lon cells intersect in lat-lon cells and a cell's area on the unit sphere is
//    (sin lat_n - sin lat_s) (lon_e - lon_w), so the overlap weight is a product of a latitude
//    weight (overlap in sin lat) and a longitude weight (overlap in radians): two small sparse
//    per-axis matrices instead of one [H*W, Hs*Ws] matrix.
//  - bilinear: linear in degrees between the neighbouring centres along each axis (the same
//    separable form, weights summing to one per axis).
//  - cell edges: midway between centres, the outermost clipped at the poles; a Gaussian grid
//    (latitudes equal to the Gauss-Legendre nodes to 1e-4 degrees) gets edges from the
//    quadrature weights instead (sin of the edges = -1 + cumulative sums of the weights), as CDO
//    and ESMF do. Longitudes in any convention (-180..180, 0..360), global (periodic) or regional.
//  - missing source cells (NaN) are left out and their area tracked: the target value is the mean
//    over the valid overlap (CDO's "fracarea"); a target cell whose valid fraction (valid overlap
//    area / cell area, or the valid bilinear weight) is below `min_valid_fraction` is NaN.
// Grids may list their centres in any order; a field is [H, W] row-major in that order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::data {

// A rectilinear grid: cell centres in degrees, in any order (each distinct).
struct LatLonGrid {
  std::vector<double> lat;  // [H] degrees north, within [-90, 90]
  std::vector<double> lon;  // [W] degrees east, any convention; distinct modulo 360
  int64_t H() const { return static_cast<int64_t>(lat.size()); }
  int64_t W() const { return static_cast<int64_t>(lon.size()); }
};

// The equiangular H x W grid in the reader's canonical orientation: latitudes north to south
// (90 - D/2 ... -90 + D/2, D = 180/H), longitudes 0, 360/W, ... ascending. H and W >= 1.
LatLonGrid equiangular_grid(int64_t H, int64_t W);
// "HxW" (e.g. "32x64", "721x1440"; H odd allowed) -> equiangular_grid(H, W). Anything else,
// zero or negative sizes: an error naming the text and the expected form.
LatLonGrid parse_grid(const std::string& text);

// Gauss-Legendre quadrature of order n: nodes in latitude degrees, north to south, and their
// weights (summing to 2).
void gauss_legendre_latitudes(int64_t n, std::vector<double>& lat_deg, std::vector<double>& w);

// Cell bounds of one axis, per centre in the given order.
struct LatBounds {
  std::vector<double> sin_south, sin_north;  // [H] sin of the edge latitudes
  bool gaussian = false;                     // edges from the Gauss weights
};
LatBounds latitude_bounds(const std::vector<double>& lat);
struct LonBounds {
  std::vector<double> west, east;  // [W] degrees, east - west = the width (unrolled, may be < 0)
  bool periodic = false;           // the cells go round the globe
};
LonBounds longitude_bounds(const std::vector<double>& lon);

enum class RegridMethod { conservative, bilinear };
RegridMethod parse_regrid_method(const std::string& s);  // "conservative" | "bilinear"
const char* regrid_method_name(RegridMethod m);

// Sparse weights of one axis (CSR): target t takes w[p] of source src[p], p in [start[t],
// start[t+1]). `measure` is the target cell's extent along the axis (sin lat_n - sin lat_s, or
// the width in radians; 1 for bilinear), the denominator of the valid fraction.
struct AxisWeights {
  std::vector<int64_t> start;    // [n_target + 1]
  std::vector<int64_t> src;      // [nnz] source index, in the source grid's order
  std::vector<double> w;         // [nnz]
  std::vector<double> measure;   // [n_target]
  std::vector<double> row_sum;   // [n_target] sum of w over the row (derived, not cached)
};

struct RegridOptions {
  RegridMethod method = RegridMethod::conservative;
  double min_valid_fraction = 0.5;  // in [0, 1]; below it a target cell is missing
  // Weights cache (safetensors, docs/data.md "Regridding"); empty: no cache.
  std::string cache_path;
};

// Built once per (source grid, target grid, method); apply() maps one field. Holds its work
// buffers (2 x Hs x W doubles + 2 x W), so apply allocates nothing; not for concurrent use.
class Regridder {
 public:
  // Validates both grids, then reads the weights from options.cache_path when it holds this
  // (source, target, method) (same fingerprint and grids), else computes them and writes the
  // cache. A cache file that cannot be read is an error naming it.
  Regridder(const LatLonGrid& src, const LatLonGrid& dst, const RegridOptions& options = {});

  // in[Hs*Ws] -> out[H*W], row-major in the grids' orders; NaN = missing. Returns the number of
  // missing (NaN) target cells.
  int64_t apply(const float* in, float* out);

  const LatLonGrid& source() const { return src_; }
  const LatLonGrid& target() const { return dst_; }
  const RegridOptions& options() const { return opt_; }
  const AxisWeights& lat_weights() const { return lat_; }
  const AxisWeights& lon_weights() const { return lon_; }
  const std::string& fingerprint() const { return fingerprint_; }
  bool weights_computed() const { return computed_; }  // false: read from the cache

 private:
  bool load_cache();
  void save_cache() const;

  LatLonGrid src_, dst_;
  RegridOptions opt_;
  AxisWeights lat_, lon_;
  std::string fingerprint_;
  bool computed_ = false;
  std::vector<uint8_t> row_used_;          // [Hs] source row referenced by a latitude weight
  std::vector<double> tmp_num_, tmp_den_;  // [Hs, W] longitude-reduced source rows
  std::vector<double> row_num_, row_den_;  // [W] one target row
};

// The fingerprint that keys the cache: FNV-1a of the method and every coordinate of both grids.
std::string regrid_fingerprint(const LatLonGrid& src, const LatLonGrid& dst, RegridMethod m);

}  // namespace seqvit::data
