// Parsing of "HxW" grid flags (--img, --grid), shared by the subcommands that take one.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "data/forecast_dataset.h"

namespace seqvit::cli {

// "32x64" -> {32, 64}. Throws seqvit::Error naming the flag and showing `examples` otherwise.
std::pair<int64_t, int64_t> parse_grid_flag(const std::string& value, const std::string& flag,
                                            const std::string& examples);

// --grid and --regrid-method of `evaluate` and `predict` against the dataset settings `data` of
// checkpoint `checkpoint`: both default to the checkpoint's (empty flags), and a flag given must
// equal it (the model was trained on that grid); otherwise an error naming both.
void check_checkpoint_grid(const data::ForecastConfig& data, const std::string& checkpoint,
                           const std::string& grid, const std::string& regrid_method);

// Declares those two flags on `evaluate` or `predict`, checked by check_checkpoint_grid.
void add_checkpoint_grid_flags(CLI::App* command, std::string* grid, std::string* regrid_method);

}  // namespace seqvit::cli
