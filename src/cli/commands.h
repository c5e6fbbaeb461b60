// Subcommands of the seqvit binary; one file each.
#pragma once

#include <CLI/CLI.hpp>

namespace seqvit::cli {

void add_train(CLI::App& app);
void add_grad(CLI::App& app);

}  // namespace seqvit::cli
