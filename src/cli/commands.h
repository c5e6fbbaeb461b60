// Subcommands of the seqvit binary; one file each.
#pragma once

#include <CLI/CLI.hpp>

namespace seqvit::cli {

void add_train(CLI::App& app);
void add_grad(CLI::App& app);
void add_evaluate(CLI::App& app);  // evaluate.cpp
void add_predict(CLI::App& app);  // predict.cpp
void add_plan(CLI::App& app);     // plan.cpp
// `seqvit data ...`: the group and its subcommands, one add_data_* each (data.cpp).
void add_data(CLI::App& app);
void add_data_stats(CLI::App& data);
void add_data_synth(CLI::App& data);  // data_synth.cpp
void add_data_regrid(CLI::App& data);  // data_regrid.cpp

}  // namespace seqvit::cli
