// A trained forecaster as `seqvit train --data` saves it (docs/checkpoints.md, "Forecast
// checkpoints"): the model file carries, besides its weights and seqvit.config,
//   seqvit.data         the dataset configuration (data::forecast_config_to_json),
//   seqvit.norm         {"name": [mean, std], ...} — the normalisation the model was trained with,
//   seqvit.climatology  what the climatology tensors are: outputs, grid, period (JSON), and
//   climatology.<output> [H, W] F32 tensors — the per-pixel training-period mean of each output,
// so that `seqvit evaluate` and `seqvit predict` feed the model data normalised the same way and
// score it against the training climatology without the training period's data. Files written
// before the climatology was stored lack the last two (ForecastCheckpoint::climatology empty).
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

// The per-pixel climatology of every output, as the training dataset computed it.
struct Climatology {
  std::vector<std::string> outputs;  // in the model's output order
  int64_t H = 0, W = 0;              // the (coarsened) grid the model sees
  std::vector<double> lat;           // [H] degrees north, north to south (the dataset's lat())
  std::vector<double> lon;           // [W] degrees east, [0, 360) ascending (the dataset's lon())
  data::TimeRange period;            // the training range it is the mean over, [begin, end)
  std::string first_time, last_time;  // ISO 8601: the first and last time step of the data in it
  int64_t steps = 0;                  // time steps in it (a pixel's mean skips its missing values)
  std::map<std::string, std::vector<float>> fields;  // output -> [H*W] physical units
  bool empty() const { return fields.empty(); }
};

struct ForecastCheckpoint {
  std::string path;  // the model file read
  model::ModelConfig model;
  data::ForecastConfig data;  // paths as at training time
  Normalisation norm;
  Climatology climatology;  // empty: a file written before it was stored
  std::vector<float> params;  // layout of model::ClimaX(model).params()
  int64_t step = 0;           // optimizer steps done (0 when the file has no seqvit.train)
};

// `path` is a model file, a step directory (holding model.safetensors) or a run directory (its
// latest complete checkpoint). Throws naming the path when it is none of these or when the
// file lacks the forecast metadata.
std::string resolve_checkpoint(const std::string& path);
ForecastCheckpoint load_forecast_checkpoint(const std::string& path);

// Writes a forecast model file atomically (train_state_json, if not empty, as seqvit.train;
// `extra` adds __metadata__ entries, e.g. seqvit.layout). An empty `clim` writes a file without
// climatology (as older versions did; tests of that path).
void save_forecast_model(const std::string& path, const model::ModelConfig& mcfg,
                         const data::ForecastConfig& dcfg, const Normalisation& norm,
                         const Climatology& clim, const TensorTable& table, const float* params,
                         const std::string& train_state_json = "",
                         const std::map<std::string, std::string>& extra = {});
// The (mean, std) of every input and output of a dataset.
Normalisation normalisation_of(const data::ForecastDataset& ds);
// The climatology of every output of a dataset, with its grid and period (the training range of
// its configuration).
Climatology climatology_of(const data::ForecastDataset& ds);

// `cfg` (a copy of ck.data, maybe with other paths) set up to normalise with the checkpoint's
// statistics and to score against its climatology; without a stored climatology only the
// normalisation (the dataset then computes the climatology over the training range).
void use_checkpoint_statistics(const ForecastCheckpoint& ck, data::ForecastConfig& cfg);
// Checks that a dataset built with use_checkpoint_statistics is on the grid the checkpoint's
// climatology was computed on (latitudes and longitudes within 1e-3 degrees); throws naming the
// data, the checkpoint and the first differing coordinate. No-op without a stored climatology.
void check_climatology_grid(const ForecastCheckpoint& ck, const data::ForecastDataset& ds);

std::string normalisation_to_json(const Normalisation& n);
Normalisation normalisation_from_json(const std::string& json, const std::string& where);

// Step directories of a run, oldest first: (step, directory path). Ignores "*.tmp".
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);
std::string step_dir_name(int64_t step);  // "step_00000100"

}  // namespace seqvit::eval
