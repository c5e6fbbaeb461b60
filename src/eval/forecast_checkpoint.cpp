// Forecast checkpoints (see forecast_checkpoint.h).
#include "eval/forecast_checkpoint.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "data/cf_time.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "eval/checkpoint.h"

namespace seqvit::eval {

namespace fs = std::filesystem;

std::string step_dir_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step_", 0) != 0 || name.size() != 13) continue;
    if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (!fs::exists(e.path() / "model.safetensors")) continue;
    out.emplace_back(std::stoll(name.substr(5)), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("checkpoint '{}' does not exist", path);
  if (fs::is_regular_file(path, ec)) return path;
  if (fs::exists(fs::path(path) / "model.safetensors"))
    return (fs::path(path) / "model.safetensors").string();
  const auto cks = list_checkpoints(path);
  if (cks.empty())
    fail("'{}' is neither a model file, a checkpoint directory (with model.safetensors) nor a "
         "run directory with checkpoints/step_*/",
         path);
  return (fs::path(cks.back().second) / "model.safetensors").string();
}

std::string normalisation_to_json(const Normalisation& n) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, ms] : n) j[name] = {ms.first, ms.second};
  return j.dump();
}

Normalisation normalisation_from_json(const std::string& text, const std::string& where) {
  Normalisation n;
  try {
    const auto j = nlohmann::json::parse(text);
    for (const auto& [name, v] : j.items()) {
      if (!v.is_array() || v.size() != 2) fail("{}: seqvit.norm['{}'] is not [mean, std]", where, name);
      n[name] = {v[0].get<double>(), v[1].get<double>()};
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad seqvit.norm metadata: {}", where, e.what());
  }
  return n;
}

namespace {

const char* const kClimatologyKey = "seqvit.climatology";

std::string climatology_to_json(const Climatology& c) {
  const nlohmann::json j{{"outputs", c.outputs},
                         {"grid", {{"H", c.H}, {"W", c.W}, {"lat", c.lat}, {"lon", c.lon}}},
                         {"period", {c.period.begin, c.period.end}},
                         {"first_time", c.first_time},
                         {"last_time", c.last_time},
                         {"steps", c.steps}};
  return j.dump();
}

// The climatology of a model file: metadata seqvit.climatology and the tensors it names.
// Empty when the file has neither (written before the climatology was stored).
Climatology read_climatology(const io::SafetensorsReader& r) {
  Climatology c;
  const auto it = r.metadata().find(kClimatologyKey);
  if (it == r.metadata().end()) {
    for (const auto& n : r.names())
      if (n.rfind(kClimatologyPrefix, 0) == 0)
        fail("{}: tensor '{}' without the {} metadata that describes it", r.path(), n,
             kClimatologyKey);
    return c;
  }
  try {
    const auto j = nlohmann::json::parse(it->second);
    c.outputs = j.at("outputs").get<std::vector<std::string>>();
    const auto& g = j.at("grid");
    c.H = g.at("H").get<int64_t>();
    c.W = g.at("W").get<int64_t>();
    c.lat = g.at("lat").get<std::vector<double>>();
    c.lon = g.at("lon").get<std::vector<double>>();
    const auto p = j.at("period").get<std::vector<std::string>>();
    if (p.size() != 2) fail("{}: {} 'period' must be [begin, end]", r.path(), kClimatologyKey);
    c.period = {p[0], p[1]};
    c.first_time = j.at("first_time").get<std::string>();
    c.last_time = j.at("last_time").get<std::string>();
    c.steps = j.at("steps").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad {} metadata: {}", r.path(), kClimatologyKey, e.what());
  }
  if (c.H < 1 || c.W < 1 || static_cast<int64_t>(c.lat.size()) != c.H ||
      static_cast<int64_t>(c.lon.size()) != c.W)
    fail("{}: {} grid {}x{} with {} latitudes and {} longitudes", r.path(), kClimatologyKey, c.H,
         c.W, c.lat.size(), c.lon.size());
  if (c.outputs.empty()) fail("{}: {} names no output", r.path(), kClimatologyKey);
  for (const auto& o : c.outputs) {
    const std::string name = kClimatologyPrefix + o;
    if (!r.has(name))
      fail("{}: tensor '{}' missing ({} lists output '{}')", r.path(), name, kClimatologyKey, o);
    std::vector<float> f(static_cast<size_t>(c.H * c.W));
    r.read_f32(name, {c.H, c.W}, f.data());  // throws naming the tensor on another shape
    c.fields[o] = std::move(f);
  }
  for (const auto& n : r.names())
    if (n.rfind(kClimatologyPrefix, 0) == 0 &&
        !c.fields.count(n.substr(std::char_traits<char>::length(kClimatologyPrefix))))
      fail("{}: tensor '{}' is not among the outputs {} lists ({})", r.path(), n,
           kClimatologyKey, fmt::join(c.outputs, ", "));
  return c;
}

}  // namespace

void save_forecast_model(const std::string& path, const model::ModelConfig& mcfg,
                         const data::ForecastConfig& dcfg, const Normalisation& norm,
                         const Climatology& clim, const TensorTable& table, const float* params,
                         const std::string& train_state_json,
                         const std::map<std::string, std::string>& extra) {
  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", mcfg.to_json());
  w.set_metadata("format", "pt");
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.set_metadata("seqvit.data", data::forecast_config_to_json(dcfg));
  w.set_metadata("seqvit.norm", normalisation_to_json(norm));
  if (!train_state_json.empty()) w.set_metadata("seqvit.train", train_state_json);
  for (const auto& e : table.entries()) w.add_f32(e.name, e.shape, params + e.offset);
  if (!clim.empty()) {
    for (const auto& o : clim.outputs) {
      const auto it = clim.fields.find(o);
      SEQVIT_CHECK(it != clim.fields.end() &&
                       static_cast<int64_t>(it->second.size()) == clim.H * clim.W,
                   "climatology of '{}': missing or not {}x{}", o, clim.H, clim.W);
      w.add_f32(kClimatologyPrefix + o, {clim.H, clim.W}, it->second.data());
    }
    w.set_metadata(kClimatologyKey, climatology_to_json(clim));
  }
  w.write(path);
}

Climatology climatology_of(const data::ForecastDataset& ds) {
  Climatology c;
  c.outputs = ds.outputs();
  c.H = ds.H();
  c.W = ds.W();
  c.lat.assign(ds.lat().begin(), ds.lat().end());
  c.lon = ds.lon();
  c.period = ds.config().train;
  const double b = data::parse_iso_datetime(c.period.begin) / 3600.0,
               e = data::parse_iso_datetime(c.period.end) / 3600.0;
  double first = 0, last = 0;
  for (double t : ds.times())
    if (t >= b && t < e) {
      if (c.steps++ == 0) first = t;
      last = t;
    }
  if (c.steps == 0)
    fail("climatology: the training range [{}, {}) holds no time step of the data", c.period.begin,
         c.period.end);
  c.first_time = data::iso8601(first);
  c.last_time = data::iso8601(last);
  for (const auto& o : c.outputs) c.fields[o] = ds.climatology(o);
  return c;
}

void use_checkpoint_statistics(const ForecastCheckpoint& ck, data::ForecastConfig& cfg) {
  cfg.normalisation = ck.norm;
  cfg.climatology = ck.climatology.fields;
}

void check_climatology_grid(const ForecastCheckpoint& ck, const data::ForecastDataset& ds) {
  const Climatology& c = ck.climatology;
  if (c.empty()) return;
  const std::string data = fmt::format("{}", fmt::join(ds.config().paths, ", "));
  if (c.H != ds.H() || c.W != ds.W())
    fail("data {}: grid {}x{}, but the climatology in {} is on {}x{}", data, ds.H(), ds.W(),
         ck.path, c.H, c.W);
  constexpr double tol = 1e-3;  // degrees
  for (int64_t i = 0; i < c.H; ++i)
    if (std::abs(ds.lat()[i] - c.lat[i]) > tol)
      fail("data {}: latitude {} of row {} differs from the {} of the grid the climatology in {} "
           "was computed on (rows north to south)",
           data, ds.lat()[i], i, c.lat[i], ck.path);
  for (int64_t j = 0; j < c.W; ++j)
    if (std::abs(ds.lon()[j] - c.lon[j]) > tol)
      fail("data {}: longitude {} of column {} differs from the {} of the grid the climatology in "
           "{} was computed on (columns from 0 E eastwards)",
           data, ds.lon()[j], j, c.lon[j], ck.path);
}

Normalisation normalisation_of(const data::ForecastDataset& ds) {
  Normalisation n;
  for (const auto* names : {&ds.inputs(), &ds.outputs()})
    for (const auto& name : *names) {
      const auto& s = ds.stats(name);
      n[name] = {s.mean, s.std};
    }
  return n;
}

ForecastCheckpoint load_forecast_checkpoint(const std::string& path) {
  ForecastCheckpoint ck;
  ck.path = resolve_checkpoint(path);
  const io::SafetensorsReader r(ck.path);
  ck.model = read_model_config(r);
  const auto& md = r.metadata();
  const auto d = md.find("seqvit.data"), n = md.find("seqvit.norm");
  if (d == md.end() || n == md.end())
    fail("{}: not a forecast checkpoint (no seqvit.data / seqvit.norm metadata); models trained "
         "with `seqvit train --data` have them",
         ck.path);
  ck.data = data::forecast_config_from_json(d->second, ck.path);
  ck.norm = normalisation_from_json(n->second, ck.path);
  ck.climatology = read_climatology(r);
  if (!ck.climatology.empty() && ck.climatology.outputs != ck.model.out_variables)
    fail("{}: the climatology is of {}, but the model's outputs are {}", ck.path,
         fmt::join(ck.climatology.outputs, ","), fmt::join(ck.model.out_variables, ","));
  if (const auto t = md.find("seqvit.train"); t != md.end()) {
    try {
      ck.step = nlohmann::json::parse(t->second).value("step", int64_t{0});
    } catch (const nlohmann::json::exception& e) {
      fail("{}: bad seqvit.train metadata: {}", ck.path, e.what());
    }
  }
  model::ClimaX m(ck.model);
  ck.params.resize(m.params().total());
  load_parameters(r, m.params(), ck.params.data());
  return ck;
}

}  // namespace seqvit::eval
