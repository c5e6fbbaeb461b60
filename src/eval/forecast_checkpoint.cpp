// Forecast checkpoints (see forecast_checkpoint.h).
#include "eval/forecast_checkpoint.h"

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
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

void save_forecast_model(const std::string& path, const model::ModelConfig& mcfg,
                         const data::ForecastConfig& dcfg, const Normalisation& norm,
                         const TensorTable& table, const float* params,
                         const std::string& train_state_json,
                         const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> md = extra;
  md["seqvit.data"] = data::forecast_config_to_json(dcfg);
  md["seqvit.norm"] = normalisation_to_json(norm);
  if (!train_state_json.empty()) md["seqvit.train"] = train_state_json;
  save_model(path, mcfg, table, params, md);
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
