// The options of `seqvit train` (flags and --config keys) and its two modes: the built-in
// synthetic travelling waves (no --data) and forecasting from NetCDF data (--data).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/optimizer.h"

namespace seqvit::cli {

struct TrainOptions {
  int64_t steps = 600, batch = 8, log_every = 10;
  std::string img;  // synthetic: default 32x64; data: must match the data grid if given
  int64_t patch = 4, embed_dim = 128, depth = 4, decoder_depth = 2, heads = 8;
  double mlp_ratio = 4.0;
  std::string variables, out_variables;  // defaults depend on the mode
  std::string tokenization = "aggregate", lead_hours = "24";
  bool bf16 = false;
  uint64_t seed = 0;
  int threads = 0;
  std::string out;  // synthetic mode: the checkpoint to write
  std::string loss_log;  // synthetic mode: each step's loss at full precision, one per line
  bool benchmark = false;    // synthetic mode: steps only, no evaluation or checkpoint
  std::string report_json;  // synthetic mode: the run record for benchmarks (cli/run_report.h)
  // Data, sequence and tensor parallelism (under mpirun -np dp*sp*tp; MPI only if one is > 1).
  int dp = 1, sp = 1, tp = 1;
  std::string order = "dp,pp,tp,sp";  // rank grid axes, outermost first (parallel/grid.h)
  std::string sp_mode = "ulysses";
  int sp_ulysses = 0;             // --sp-mode 2d: Ulysses degree (0: not given)
  std::string sp_outer = "ring";  // --sp-mode 2d: ring or lss across the Ulysses groups
  int zero = 0;            // ZeRO stage over the dp x sp ranks (synthetic mode)
  bool recompute = false;  // activation recomputation per block
  std::string attention = "flash";  // block attention kernel: flash | dense
  // Pipeline parallelism (MPI if pp > 1) and micro-batches (gradient accumulation without pp).
  int pp = 1, micro_batches = 1;
  std::string pp_schedule = "1f1b";
  train::OptimConfig opt;

  // Data mode.
  std::vector<std::string> data;
  std::string train_range, val_range, test_range;  // "BEGIN/END", ISO dates, end exclusive
  int coarsen = 1;
  std::string missing = "skip";
  std::string stats_cache;
  std::string run_dir = "seqvit_run";
  int64_t val_every = 100, val_batches = 0, checkpoint_every = 100, keep = 3;
  bool resume = false;
};

std::vector<std::string> split_list(const std::string& s);  // "a,b" -> {a, b}
std::vector<double> parse_lead_hours(const std::string& s);
std::string format_eta(double seconds);
// Progress of the statistics pass of a forecast dataset on stderr (in place on a terminal,
// every 10% otherwise), for data::ForecastConfig::stats_progress.
std::function<void(int64_t, int64_t)> stats_progress_printer();
// The model the flags describe on an h x w grid with these variables (validated).
model::ModelConfig model_config(const TrainOptions& o, int64_t h, int64_t w,
                                std::vector<std::string> variables,
                                std::vector<std::string> out_variables);
// Checks --steps, --batch and --log-every and validates the optimizer for --steps steps.
void check_step_options(TrainOptions& o);
void run_train_synthetic(TrainOptions o);
void run_train_data(TrainOptions o);  // train_data.cpp

}  // namespace seqvit::cli
