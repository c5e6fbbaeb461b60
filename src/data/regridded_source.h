// A GridSource seen on another grid (docs/data.md "Regridding"): the same variables, levels and
// times as the source it wraps, on a target grid in the canonical orientation (north to south,
// longitudes [0, 360) ascending; e.g. equiangular_grid(32, 64)), every read going through a
// Regridder. One Regridder per distinct source grid; its weights are cached in
// `cache_dir`/seqvit_regrid_<method>_<Hs>x<Ws>_to_<H>x<W>.safetensors. Like NetcdfDataset, one
// object is not for concurrent use (reads share its buffers and Regridders).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/grid_source.h"
#include "data/regrid.h"

namespace seqvit::data {

class RegriddedSource : public GridSource {
 public:
  // `target` must be canonical (latitudes strictly descending, longitudes ascending in
  // [0, 360)). `options.cache_path` is ignored: the cache files go to `cache_dir` (empty: no
  // cache). The weights are built (or read) here, for every source grid.
  RegriddedSource(std::unique_ptr<GridSource> source, const LatLonGrid& target,
                  RegridOptions options, const std::string& cache_dir);

  std::string format() const override;
  const std::vector<std::string>& files() const override { return src_->files(); }
  int64_t num_variables() const override { return static_cast<int64_t>(vars_.size()); }
  const GridVariable& variable_at(int64_t i) const override { return vars_.at(i); }
  std::string not_grid_reason(const std::string& name) const override {
    return src_->not_grid_reason(name);
  }
  // Reads each step from the source and regrids it; returns the missing target cells.
  int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const override;
  using GridSource::read;

  const GridSource& source() const { return *src_; }
  const LatLonGrid& target() const { return target_; }
  // The regridder of a variable (shared by the variables on the same source grid).
  const Regridder& regridder(const std::string& variable) const;
  // Cache files written (weights computed) rather than read, over all source grids.
  int weights_computed() const { return computed_; }

 private:
  std::unique_ptr<GridSource> src_;
  LatLonGrid target_;
  std::vector<GridVariable> vars_;                      // the source's, on the target grid
  mutable std::vector<std::unique_ptr<Regridder>> rg_;  // one per source grid
  std::map<std::string, size_t> var_rg_;                // variable -> index into rg_
  mutable std::vector<float> buf_;                      // [Hs*Ws] one source field
  int computed_ = 0;
};

// The cache directory beside the data, as for the statistics cache: `paths[0]` when it is a
// directory, else the directory of the source's first file.
std::string cache_dir_beside(const std::vector<std::string>& paths, const GridSource& source);

}  // namespace seqvit::data
