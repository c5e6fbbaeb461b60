// A trained forecaster as `seqvit train --data` saves it (docs/checkpoints.md, "Forecast
// checkpoints"): the model file carries, besides its weights and seqvit.config,
//   seqvit.data  the dataset configuration (data::forecast_config_to_json), and
//   seqvit.norm  {"name": [mean, std], ...} — the normalisation the model was trained with,
// so that `seqvit evaluate` and `seqvit predict` feed it data normalised the same way.
//
// Run directory layout (train --run-dir R):
//   R/checkpoints/step_00000100/model.safetensors        weights + metadata above + seqvit.train
//   R/checkpoints/step_00000100/model.optim.safetensors  AdamW state
//   R/log.jsonl                                          one JSON object per logged event
// A step directory is written as "<name>.tmp" and renamed when complete, so a checkpoint
// directory either exists whole or not at all.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "data/forecast_dataset.h"
#include "core/tensor_table.h"
#include "model/config.h"

namespace seqvit::eval {

using Normalisation = std::map<std::string, std::pair<double, double>>;  // name -> (mean, std)

struct ForecastCheckpoint {
  std::string path;  // the model file read
  model::ModelConfig model;
  data::ForecastConfig data;  // paths as at training time
  Normalisation norm;
  std::vector<float> params;  // layout of model::ClimaX(model).params()
  int64_t step = 0;           // optimizer steps done (0 when the file has no seqvit.train)
};

// `path` is a model file, a step directory (holding model.safetensors) or a run directory (its
// latest complete checkpoint). Throws naming the path when it is none of these or when the
// file lacks the forecast metadata.
std::string resolve_checkpoint(const std::string& path);
ForecastCheckpoint load_forecast_checkpoint(const std::string& path);

// Writes a forecast model file atomically (train_state_json, if not empty, as seqvit.train;
// `extra` adds __metadata__ entries, e.g. seqvit.layout).
void save_forecast_model(const std::string& path, const model::ModelConfig& mcfg,
                         const data::ForecastConfig& dcfg, const Normalisation& norm,
                         const TensorTable& table, const float* params,
                         const std::string& train_state_json = "",
                         const std::map<std::string, std::string>& extra = {});
// The (mean, std) of every input and output of a dataset.
Normalisation normalisation_of(const data::ForecastDataset& ds);

std::string normalisation_to_json(const Normalisation& n);
Normalisation normalisation_from_json(const std::string& json, const std::string& where);

// Step directories of a run, oldest first: (step, directory path). Ignores "*.tmp".
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);
std::string step_dir_name(int64_t step);  // "step_00000100"

}  // namespace seqvit::eval
