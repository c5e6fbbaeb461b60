// The options of a training run (`seqvit train`'s flags and --config keys, docs/training.md):
// the model, the optimizer, the parallel layout, and the data — the built-in synthetic
// travelling waves (no data paths) or forecasting from NetCDF files. The command line lives in
// cli/; what the options mean lives here, beside the loop that runs them (train/loop.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/optimizer.h"

namespace seqvit::train {

// The parallel layout of `seqvit train` and `seqvit grad` (docs/parallelism.md): one set of
// flags, declared once (cli/parallel_flags.h). The degrees are >= 1; MPI starts when the
// product of dp, sp, tp and pp exceeds 1 (`grad` also when one of them is given at all).
struct ParallelOptions {
  int dp = 1, sp = 1, tp = 1, pp = 1;
  std::string sp_mode = "ulysses";
  int sp_ulysses = 0;             // --sp-mode 2d: Ulysses degree (0: not given)
  std::string sp_outer = "ring";  // --sp-mode 2d: ring or lss across the Ulysses groups
  int micro_batches = 1;          // per step and dp replica (pipeline; accumulation without pp)
  std::string pp_schedule = "1f1b";
  int zero = 0;                   // ZeRO stage over the dp x sp ranks
  bool recompute = false;         // activation recomputation per block
  std::string order = "dp,pp,tp,sp";  // rank grid axes, outermost first (parallel/grid.h)
  int world() const { return dp * sp * tp * pp; }
};

// Checks what can be checked without MPI or a model (degrees >= 1, the ZeRO stage and its
// combination with bf16 and the replicas, the schedule, the SP mode and the grid order); the
// messages name the flags. `command`: "train" or "grad" (the ZeRO-1 note differs).
void validate_parallel_options(const ParallelOptions& p, bool bf16, const std::string& command);

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
  std::string report_json;  // synthetic mode: the run record for benchmarks (train/run_report.h)
  ParallelOptions par;
  std::string attention = "flash";  // block attention kernel: flash | dense
  OptimConfig opt;
  // Dropout and drop-path rates as ClimaX has them (model::Dropout; ClimaX trains with 0.1
  // each), the masks drawn from --seed and the optimizer step.
  double dropout = 0, drop_path = 0;
  // Fine-tuning: the weights of this model file or forecast checkpoint (file, step directory or
  // run directory) replace the initialisation; the optimizer starts fresh at step 0.
  std::string init_from;

  // Data mode.
  std::vector<std::string> data;
  std::string train_range, val_range, test_range;  // "BEGIN/END", ISO dates, end exclusive
  int coarsen = 1;
  std::string grid;                           // "HxW": regrid the data onto it (empty: as stored)
  std::string regrid_method = "conservative";  // with grid: conservative | bilinear
  std::string missing = "skip";
  std::string stats_cache;
  std::string time_origin;  // ISO date for time axes without an epoch (docs/data.md)
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
// The model the options describe on an h x w grid with these variables (validated).
model::ModelConfig model_config(const TrainOptions& o, int64_t h, int64_t w,
                                std::vector<std::string> variables,
                                std::vector<std::string> out_variables);
// The weights of --init-from for a run of model `mc`, in the layout of `table` (the logical
// parameter table of mc): the file's variables must be the run's, and every tensor must be
// present with the run's shape (an error names the tensor and both shapes). Returns the file read.
std::string load_init_weights(const std::string& init_from, const model::ModelConfig& mc,
                              const TensorTable& table, float* params);
// Checks --steps, --batch and --log-every and validates the optimizer for --steps steps.
void check_step_options(TrainOptions& o);
// The number of ranks this process was launched among by mpirun (Open MPI, MPICH/PMI), or 1.
int launched_ranks();

}  // namespace seqvit::train
