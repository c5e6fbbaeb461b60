// `--config FILE` for subcommands: a TOML file whose keys are the subcommand's long flags
// (`embed-dim = 128`, or `embed_dim`; arrays for repeatable or comma-separated options;
// `bf16 = true` for switches; optionally under a `[train]` table named after the subcommand).
// The file's settings are turned into flags placed before the command line's own, so flags
// given on the command line override the file. An unknown key is an error naming the file and
// the key and listing the valid keys.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace seqvit::cli {

// args: the whole command line (args[0] the program). Finds the subcommand (args[1]) among
// app's subcommands and, if args holds `--config FILE` or `--config=FILE` after it, returns the
// command line with the file's keys inserted and the --config option removed; else args.
std::vector<std::string> expand_config_file(const std::vector<std::string>& args,
                                            const CLI::App& app);

}  // namespace seqvit::cli
