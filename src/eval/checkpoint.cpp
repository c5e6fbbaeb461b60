// Checkpoint files (see checkpoint.h).
#include "eval/checkpoint.h"

#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace seqvit::eval {

model::ModelConfig read_model_config(const std::string& path) {
  return read_model_config(io::SafetensorsReader(path));
}

model::ModelConfig read_model_config(const io::SafetensorsReader& r) {
  const std::string& path = r.path();
  auto it = r.metadata().find("seqvit.config");
  if (it == r.metadata().end())
    fail("{}: no model configuration (__metadata__ key 'seqvit.config') in this file", path);
  return model::ModelConfig::from_json(it->second, path);
}

void load_parameters(const std::string& path, const TensorTable& table, float* params) {
  load_parameters(io::SafetensorsReader(path), table, params);
}

void load_parameters(const io::SafetensorsReader& r, const TensorTable& table, float* params) {
  const std::string& path = r.path();
  std::set<std::string> expected;
  for (const auto& e : table.entries()) {
    expected.insert(e.name);
    if (!r.has(e.name))
      fail("{}: missing tensor '{}' (shape {}) required by the model configuration", path,
           e.name, shape_str(e.shape));
  }
  for (const auto& n : r.names())
    if (!expected.count(n) && n.rfind(kClimatologyPrefix, 0) != 0)
      fail("{}: unexpected tensor '{}' that the model configuration does not use", path, n);
  for (const auto& e : table.entries()) r.read_f32(e.name, e.shape, params + e.offset);
}

void save_model(const std::string& path, const model::ModelConfig& cfg, const TensorTable& table,
                const float* params, const std::map<std::string, std::string>& metadata) {
  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", cfg.to_json());
  w.set_metadata("format", "pt");
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  for (const auto& e : table.entries()) w.add_f32(e.name, e.shape, params + e.offset);
  w.write(path);
}

std::string optimizer_path(const std::string& model_path) {
  const std::string ext = ".safetensors";
  std::string stem = model_path;
  if (stem.size() > ext.size() && stem.compare(stem.size() - ext.size(), ext.size(), ext) == 0)
    stem.resize(stem.size() - ext.size());
  return stem + ".optim.safetensors";
}

void save_optimizer(const std::string& path, const TensorTable& table, const float* m,
                    const float* v, int64_t steps_done, const std::string& optim_json) {
  io::SafetensorsWriter w;
  nlohmann::json meta{{"step", steps_done}, {"config", nlohmann::json::parse(optim_json)}};
  w.set_metadata("seqvit.optim", meta.dump());
  for (const auto& e : table.entries()) {
    w.add_f32("adam.m." + e.name, e.shape, m + e.offset);
    w.add_f32("adam.v." + e.name, e.shape, v + e.offset);
  }
  w.write(path);
}

int64_t read_optimizer_into(const std::string& path, const TensorTable& table, float* m,
                            float* v) {
  io::SafetensorsReader r(path);
  auto it = r.metadata().find("seqvit.optim");
  if (it == r.metadata().end()) fail("{}: not an optimizer state file (no 'seqvit.optim')", path);
  int64_t step = 0;
  try {
    step = nlohmann::json::parse(it->second).at("step").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad 'seqvit.optim' metadata: {}", path, e.what());
  }
  for (const auto& e : table.entries()) {
    r.read_f32("adam.m." + e.name, e.shape, m + e.offset);
    r.read_f32("adam.v." + e.name, e.shape, v + e.offset);
  }
  return step;
}

OptimizerState read_optimizer(const std::string& path, const TensorTable& table) {
  OptimizerState s;
  s.m.resize(static_cast<size_t>(table.total()));
  s.v.resize(static_cast<size_t>(table.total()));
  s.steps_done = read_optimizer_into(path, table, s.m.data(), s.v.data());
  return s;
}

}  // namespace seqvit::eval
