// Flags shared by several subcommands, declared once: the parallel layout of `train` and `grad`
// (train::ParallelOptions) and --device of every command that runs the model.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "backend/device.h"
#include "train/options.h"

namespace seqvit::cli {

// --dp --sp --sp-mode --sp-ulysses --sp-outer --tp --pp --micro-batches --pp-schedule --zero
// --order --recompute, into p (its defaults shown in the help).
void add_parallel_flags(CLI::App* c, train::ParallelOptions& p);
// Whether any of --dp --sp --tp --pp was given (grad starts MPI then, even at degree 1).
bool parallel_degrees_given(const CLI::App* c);
// --device NAME (default "cpu"): the backend the command runs the model on.
void add_device_flag(CLI::App* c, std::string& device);
// The device by name; an unknown name is a seqvit::Error listing the devices of this build.
std::unique_ptr<backend::Device> open_device(const std::string& name);

}  // namespace seqvit::cli
