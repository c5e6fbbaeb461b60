// Zarr v2 stores as a GridSource (docs/data.md "Zarr stores"): the arrays of one or more
// stores (zarr_store.h) read with the same CF rules as the NetCDF reader (cf_grid.h): dims by
// name or coordinate units (time / level / latitude / longitude and their aliases; extra axes of
// length 1 dropped, docs/data.md "Unusual files"), xarray's
// CF time encoding (int64 or float "hours since ..." with a calendar), scale_factor /
// add_offset / _FillValue / missing_value in .zattrs, the array's fill_value treated as
// _FillValue (as xarray reads it: xarray writes _FillValue there), NaN missing, levels in hPa,
// canonical orientation. A variable may be spread over several stores along time (one per
// year); the stores must share its grid and leave no time step out.
//
// Memory: a read decodes one time step of one field: one H x W slice of doubles plus the
// store's one decoded chunk. One ZarrDataset is not for concurrent use; separate objects are
// independent (no library-wide lock, unlike libnetcdf).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/cf_grid.h"
#include "data/grid_source.h"
#include "data/zarr_store.h"

namespace seqvit::data {

// One grid variable over all the stores that hold it.
struct ZarrVariable : GridVariable {
  struct Segment {  // this variable in one store
    int store = 0;
    const ZarrArray* array = nullptr;  // owned by the store
    int64_t t0 = 0, nt = 1;            // global time index of its first step; its steps
    CfDecode decode;
    bool lat_flip = false;         // this store holds latitude south to north
    std::vector<int64_t> lon_src;  // [W] this store's column for canonical column j
    bool lon_first = false;        // this store holds (..., lon, lat): slices are [W, H]
    std::string roles;  // [ndim] 't', 'l', 'y', 'x' or '1' (dropped axis), as NcVariable's
  };
  std::vector<Segment> segments;  // in time order
};

class ZarrDataset : public GridSource {
 public:
  // Opens every store (metadata and coordinates only) and checks that they agree.
  explicit ZarrDataset(const std::vector<std::string>& stores, const SourceOptions& options = {});

  std::string format() const override { return "Zarr"; }
  const std::vector<std::string>& files() const override { return paths_; }
  int64_t num_variables() const override { return static_cast<int64_t>(vars_.size()); }
  const GridVariable& variable_at(int64_t i) const override { return vars_.at(i); }
  std::string not_grid_reason(const std::string& name) const override;
  using GridSource::read;
  int64_t read(const FieldRef& f, int64_t t0, int64_t count, float* out) const override;

  const ZarrVariable& zarr_variable(const std::string& name) const;
  const ZarrStore& store(int i) const { return *stores_.at(i); }

 private:
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<ZarrStore>> stores_;
  std::vector<ZarrVariable> vars_;
  std::map<std::string, std::string> not_grid_;  // other arrays -> why not readable
  mutable std::vector<double> raw_;              // [H*W] one stored slice
};

}  // namespace seqvit::data
