// `seqvit train --report-json FILE`: a machine-readable record of one run for the benchmark
// suite (bench/suite.py) and for anyone comparing runs: the model, the layout, rank 0's time per
// step, and for EVERY rank its coordinates in the grid, its planned bytes (parameters,
// gradients, optimizer state, activations, workspace), its peak resident memory while training
// (VmHWM) and the bytes it sent in the first step, per communicator and operation (the
// communication layer's counters, docs/parallelism.md "Communication volume").
#pragma once

#include <string>
#include <vector>

#include "train/distributed.h"
#include "train/options.h"
#include "parallel/comm.h"
#include "train/trainer.h"

namespace seqvit::train {

struct RunRecord {
  std::vector<double> step_seconds;  // rank 0's wall time of each step
  parallel::CommStats first_step;        // this rank's counters over the first step
  size_t peak_rss = 0;               // this rank's VmHWM while training (bytes)
};

// Collective over the world when `dist` is active: every rank passes its own record, rank 0
// writes the file (atomically: a temporary, then rename). Throws seqvit::Error when the file
// cannot be written.
void write_run_report(const std::string& path, const TrainOptions& o,
                      const model::ModelConfig& mc, Distributed& dist, Trainer& tr,
                      const RunRecord& mine);

}  // namespace seqvit::train
