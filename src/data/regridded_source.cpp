// RegriddedSource (regridded_source.h): a GridSource read through Regridders.
#include "data/regridded_source.h"

#include <fmt/core.h>

#include <filesystem>

#include "core/check.h"

namespace seqvit::data {

RegriddedSource::RegriddedSource(std::unique_ptr<GridSource> source, const LatLonGrid& target,
                                 RegridOptions options, const std::string& cache_dir)
    : src_(std::move(source)), target_(target) {
  SEQVIT_CHECK(src_ != nullptr, "RegriddedSource needs a source");
  const int64_t H = target_.H(), W = target_.W();
  if (H < 1 || W < 1) fail("regridded source: the target grid is empty ({}x{})", H, W);
  for (int64_t i = 0; i + 1 < H; ++i)
    if (!(target_.lat[i] > target_.lat[i + 1]))
      fail("regridded source: target latitudes must run north to south (canonical), got {} "
           "then {}",
           target_.lat[i], target_.lat[i + 1]);
  for (int64_t j = 0; j < W; ++j)
    if (!(target_.lon[j] >= 0 && target_.lon[j] < 360) || (j > 0 && !(target_.lon[j] > target_.lon[j - 1])))
      fail("regridded source: target longitudes must ascend within [0, 360) (canonical), got {} "
           "at column {}",
           target_.lon[j], j);
  size_t biggest = 0;
  for (int64_t k = 0; k < src_->num_variables(); ++k) {
    const GridVariable& v = src_->variable_at(k);
    size_t r = 0;
    while (r < rg_.size() && !(rg_[r]->source().lat == v.lat && rg_[r]->source().lon == v.lon)) ++r;
    if (r == rg_.size()) {
      RegridOptions o = options;
      if (!cache_dir.empty())
        o.cache_path = (std::filesystem::path(cache_dir) /
                        fmt::format("seqvit_regrid_{}_{}x{}_to_{}x{}.safetensors",
                                    regrid_method_name(o.method), v.H(), v.W(), H, W))
                           .string();
      else
        o.cache_path.clear();
      rg_.push_back(std::make_unique<Regridder>(LatLonGrid{v.lat, v.lon}, target_, o));
      computed_ += rg_.back()->weights_computed() ? 1 : 0;
      biggest = std::max(biggest, static_cast<size_t>(v.H() * v.W()));
    }
    var_rg_[v.name] = r;
    GridVariable g = v;
    g.lat = target_.lat;
    g.lon = target_.lon;
    g.lat_ascending_in_file = false;  // written back as regridded: canonical
    g.lon_in_file = target_.lon;
    g.lon_src.resize(static_cast<size_t>(W));
    for (int64_t j = 0; j < W; ++j) g.lon_src[j] = j;
    vars_.push_back(std::move(g));
  }
  buf_.resize(biggest);
}

std::string RegriddedSource::format() const {
  const RegridOptions& o = rg_.empty() ? RegridOptions{} : rg_.front()->options();
  return fmt::format("{} regridded to {}x{} ({})", src_->format(), target_.H(), target_.W(),
                     regrid_method_name(o.method));
}

const Regridder& RegriddedSource::regridder(const std::string& variable) const {
  this->variable(variable);  // an unknown name: the error listing the variables
  return *rg_.at(var_rg_.at(variable));
}

int64_t RegriddedSource::read(const FieldRef& f, int64_t t0, int64_t count, float* out) const {
  Regridder& r = *rg_.at(var_rg_.at(variable(f.variable).name));
  const int64_t n = target_.H() * target_.W();
  int64_t missing = 0;
  for (int64_t c = 0; c < count; ++c) {
    src_->read(f, t0 + c, 1, buf_.data());
    missing += r.apply(buf_.data(), out + c * n);
  }
  return missing;
}

std::string cache_dir_beside(const std::vector<std::string>& paths, const GridSource& source) {
  if (!paths.empty() && std::filesystem::is_directory(paths.front())) return paths.front();
  if (source.files().empty()) return ".";
  const std::filesystem::path dir = std::filesystem::path(source.files().front()).parent_path();
  return dir.empty() ? "." : dir.string();
}

}  // namespace seqvit::data
