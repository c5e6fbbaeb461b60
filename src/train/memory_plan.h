// The memory plan of every rank, as rank 0 prints it before the first step (issue: "at start
// rank 0 prints the grid and the per-rank memory plan"): what each rank allocates for
// parameters, gradients, optimizer state, activations and workspace, gathered over the world
// and printed once per group of ranks with the same plan.
#pragma once

#include <string>

#include "train/distributed.h"
#include "train/trainer.h"

namespace seqvit::train {

// Collective over the world when `dist` is active (every rank must call it); the text is for
// rank 0 (other ranks get ""). One process: Trainer::memory_report().
std::string rank_memory_plan(Distributed& dist, Trainer& tr);

}  // namespace seqvit::train
