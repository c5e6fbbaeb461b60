// The training loop of `seqvit train` (docs/training.md): one loop for the built-in synthetic
// fields and for NetCDF forecast data, for one process and every parallel layout
// (train/distributed.h). The command line (cli/train.cpp) only parses flags into TrainOptions and
// calls run_training.
//
// What the loop does, whatever the data: set up the layout and the trainer on the device, print
// the run's header (model, layout, memory plan, data), then step: the next batch from the
// BatchSource, Trainer::step, the progress line (in place on a terminal, every --log-every steps
// otherwise), the logs, the validation and checkpoint cadence, and the stops every rank agrees on
// (SIGINT/SIGTERM, which checkpoint first; a NaN/Inf loss, which leaves the last checkpoint
// intact). What differs between the two kinds of data is what a BatchSource provides and how
// the run is recorded:
//   synthetic (no --data): an endless stream of travelling waves; the held-out loss before and
//     after training beside the persistence forecast; --loss-log, --report-json, --benchmark;
//     one checkpoint file, --out, at the end (or at a signal);
//   forecast data (--data): epochs of a ForecastDataset; validation scores every --val-every
//     steps; a run directory with atomic checkpoint directories every --checkpoint-every steps
//     (the newest --keep kept), a JSON-lines log, and --resume, which reproduces an uninterrupted
//     run bit for bit.
// Checkpoints are logical (the single-process files) under every layout:
// train/checkpoint_sharding.h gathers and scatters them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/device.h"
#include "model/climax.h"
#include "train/options.h"

namespace seqvit::train {

class Distributed;

// Where a run is: optimizer steps done, and the epoch and batch within it of the data stream (an
// endless stream stays in epoch 0).
struct Position {
  int64_t step = 0, epoch = 0, batch_in_epoch = 0;
};

// The training data of a run, on every rank: serves this rank's samples of every global batch
// (its data-parallel replica's share; the ranks of one SP group get the same samples).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The model the data call for (grid and variables, with the options' architecture); known
  // before the rank grid exists.
  virtual const model::ModelConfig& model() const = 0;
  // Collective, once the layout exists: this rank's share of the data, and whatever rank 0
  // must do first (the statistics cache of a dataset).
  virtual void open(Distributed& dist) = 0;
  virtual std::string describe() const = 0;  // rank 0's "data: ..." header line
  virtual bool has_epochs() const = 0;        // a finite dataset (shown in the progress line)
  // Continue the stream at `pos` (a resumed run).
  virtual void seek(const Position& pos) = 0;
  // This rank's samples of the next global batch, HOST memory valid until the next call;
  // advances pos.epoch and pos.batch_in_epoch (not pos.step).
  virtual model::BatchView next(Position& pos) = 0;
};

// The two sources (train/loop.cpp): the synthetic travelling waves (data/synthetic.h) and a
// forecast dataset over NetCDF files (data/forecast_dataset.h) as the options describe them.
// Both validate their options and build the model configuration on construction.
std::unique_ptr<BatchSource> make_batch_source(TrainOptions& o);

// `seqvit train`: one process or (under mpirun) any layout of o.par; everything on `device`.
// Errors before the ranks communicate are thrown (seqvit::Error); once they do, an error on one
// rank ends all ranks (MPI abort), and an agreed stop (signal, NaN loss) exits every rank with
// status 1 after rank 0 reported it.
void run_training(TrainOptions o, backend::Device& device);

}  // namespace seqvit::train
