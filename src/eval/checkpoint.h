// Model and optimizer checkpoints in safetensors (docs/checkpoints.md), read and written here,
// below train/ (which writes them) and beside the evaluation and prediction that read them. A model file holds every
// parameter under its ClimaX name plus the configuration JSON in __metadata__["seqvit.config"];
// the optimizer state lives beside it in "<stem>.optim.safetensors".
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor_table.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace seqvit::eval {

// The configuration of a model file. The reader overloads let a caller that needs both the
// configuration and the weights read the file once.
model::ModelConfig read_model_config(const std::string& path);
model::ModelConfig read_model_config(const io::SafetensorsReader& model_file);

// Tensors of a model file that are data, not parameters: a forecast checkpoint's climatology
// (`climatology.<output>`, eval/forecast_checkpoint.h). load_parameters skips them.
inline constexpr const char* kClimatologyPrefix = "climatology.";

// Loads every parameter of `table` from `path` into params (table layout). Throws naming the
// file and tensor on a missing tensor, an extra tensor (other than kClimatologyPrefix ones), or a
// shape mismatch.
void load_parameters(const std::string& path, const TensorTable& table, float* params);
void load_parameters(const io::SafetensorsReader& model_file, const TensorTable& table,
                     float* params);

// Writes the model file atomically; `metadata` adds __metadata__ entries (e.g. seqvit.train).
void save_model(const std::string& path, const model::ModelConfig& cfg, const TensorTable& table,
                const float* params, const std::map<std::string, std::string>& metadata = {});

// Optimizer state: adam.m.<name>, adam.v.<name>, metadata seqvit.optim (step + hyper-params,
// `optim_json` being train::OptimConfig::to_json()). From / into plain host buffers in the table
// layout; train/checkpoint.h reads and writes an AdamW through these.
std::string optimizer_path(const std::string& model_path);
void save_optimizer(const std::string& path, const TensorTable& table, const float* m,
                    const float* v, int64_t steps_done, const std::string& optim_json);
// m, v [table.total()] <- the file's moments; returns the optimizer steps done.
int64_t read_optimizer_into(const std::string& path, const TensorTable& table, float* m, float* v);
struct OptimizerState {
  std::vector<float> m, v;  // [table.total()]
  int64_t steps_done = 0;
};
OptimizerState read_optimizer(const std::string& path, const TensorTable& table);

}  // namespace seqvit::eval
