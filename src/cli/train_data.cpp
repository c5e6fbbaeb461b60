// seqvit train --data: ClimaX forecasting from NetCDF data (docs/training.md). Validation with
// the forecast scores every k steps, atomic checkpoint directories every k steps (the newest n
// kept), --resume that reproduces an uninterrupted run bit for bit (weights, AdamW state and
// step, schedule, seed and data position are all saved), a NaN/Inf loss that stops the run
// with the step named and the checkpoints untouched, SIGINT/SIGTERM that checkpoint and stop,
// and a JSON-lines log beside the checkpoints. Under `mpirun -np D*P` with --dp D --sp P
// (train_dist.h) each data-parallel replica reads its share of every global batch, validation is
// sharded over the replicas, rank 0 alone writes the statistics cache, the log and the (logical)
// checkpoints, and every stop is agreed by all ranks (docs/training.md "Data and sequence
// parallelism"). --tp, --pp and --micro-batches shard the model as in the synthetic mode: the
// step runs through TrainDist's pipeline, validation through the stages (staged_forward), and
// the checkpoints are gathered into the logical files by cli::ShardedState (docs/training.md
// "Tensor and pipeline parallelism"). --zero 1|2|3 shards the optimizer state (and gradients,
// and weights) over the replicas as in the synthetic mode; its checkpoints are gathered by
// cli::ZeroState, and under ZeRO-3 validation gathers the weights unit by unit like the
// training forward (docs/training.md "ZeRO").
#include <fmt/core.h>
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>

#include "cli/grid_flag.h"
#include "cli/train_checkpoint_dist.h"
#include "cli/memory_plan.h"
#include "cli/train_dist.h"
#include "cli/train_options.h"
#include "core/check.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "parallel/mpi_comm.h"
#include "train/pipeline.h"
#include "eval/metrics.h"
#include "train/checkpoint.h"
#include "eval/forecast_checkpoint.h"
#include "train/trainer.h"

namespace seqvit::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

data::TimeRange parse_range_flag(const std::string& s, const char* flag) {
  const auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size())
    fail("{} must be BEGIN/END with ISO dates, e.g. 1979-01-01/1980-01-01; got '{}'", flag, s);
  data::TimeRange r{s.substr(0, slash), s.substr(slash + 1)};
  for (const auto* d : {&r.begin, &r.end}) {
    try {
      data::parse_iso_datetime(*d);
    } catch (const Error& e) {
      fail("{} '{}': {}", flag, s, e.what());
    }
  }
  if (!(data::parse_iso_datetime(r.begin) < data::parse_iso_datetime(r.end)))
    fail("{} '{}': BEGIN must be before END", flag, s);
  return r;
}

// One JSON object per line, flushed at once so that a crash loses nothing already logged.
class JsonLog {
 public:
  explicit JsonLog(const std::string& path) : path_(path), f_(path, std::ios::app) {
    if (!f_) fail("cannot open the log file '{}' for appending", path);
  }
  void write(json j) {
    j["time"] = data::iso8601(static_cast<double>(std::time(nullptr)) / 3600.0);
    f_ << j.dump() << '\n';
    f_.flush();
    if (!f_) fail("cannot write the log file '{}' (disk full?)", path_);
  }

 private:
  std::string path_;
  std::ofstream f_;
};

struct RunState {
  int64_t step = 0, epoch = 0, batch_in_epoch = 0;
  double loss_ema = 0, elapsed_s = 0;
  json to_json(uint64_t seed) const {
    return {{"step", step},         {"epoch", epoch},   {"batch_in_epoch", batch_in_epoch},
            {"loss_ema", loss_ema}, {"seed", seed},     {"elapsed_s", elapsed_s}};
  }
};

std::string scores_line(const std::vector<eval::Scores>& sc) {
  std::string s;
  for (const auto& x : sc)
    s += fmt::format("{}{}@{:g}h rmse {:.4g} {} (persist {:.4g}, clim {:.4g}) acc {:.3f}",
                     s.empty() ? "" : " | ", x.variable, x.lead_hours, x.rmse, x.units,
                     x.rmse_persistence, x.rmse_climatology, x.acc);
  return s;
}

// A stop that every rank reaches at the same step with the same message (a NaN loss, which
// is identical on all ranks after the all-reduce; a signal, combined over the ranks): rank 0
// reports it and every rank exits with status 1 after MPI_Finalize, no MPI_Abort.
class AgreedStop : public Error {
 public:
  using Error::Error;
};

// The model grid (after --coarsen) from the files' metadata: the model, and so the rank grid,
// is known before the datasets (whose statistics rank 0 computes first) are built.
std::pair<int64_t, int64_t> data_grid(const data::NetcdfDataset& nc,
                                      const data::ForecastConfig& dc) {
  data::FieldRef ref;
  try {
    ref = nc.resolve(dc.inputs.front());
  } catch (const Error& e) {
    fail("forecast dataset: unknown variable '{}': {}", dc.inputs.front(), e.what());
  }
  const auto& v = nc.variable(ref.variable);
  if (dc.coarsen < 1) fail("--coarsen must be >= 1, got {}", dc.coarsen);
  if (v.H() % dc.coarsen || v.W() % dc.coarsen)
    fail("forecast dataset: grid {}x{} is not divisible by the coarsening factor {}", v.H(),
         v.W(), dc.coarsen);
  return {v.H() / dc.coarsen, v.W() / dc.coarsen};
}

void train_data(const TrainOptions& o, const data::ForecastConfig& dc,
                const model::ModelConfig& mc, TrainDist& dist);

}  // namespace

void run_train_data(TrainOptions o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  // Before the data is opened (TrainDist repeats it with the model).
  if (o.zero > 0 && o.dp * o.sp == 1)
    fail("--zero {} shards over the data- and sequence-parallel ranks, but --dp 1 --sp 1 is a "
         "single rank; add --dp D (and/or --sp P) under mpirun -np D*P, or drop --zero",
         o.zero);
  check_step_options(o);
  if (!o.report_json.empty() || !o.loss_log.empty() || o.benchmark)
    fail("--report-json, --loss-log and --benchmark are for the synthetic mode; with --data the "
         "run directory's log.jsonl records every step");
  if (o.val_every < 0) fail("--val-every must be >= 0, got {}", o.val_every);
  if (o.val_batches < 0) fail("--val-batches must be >= 0, got {}", o.val_batches);
  if (o.checkpoint_every < 1) fail("--checkpoint-every must be >= 1, got {}", o.checkpoint_every);
  if (o.keep < 1) fail("--keep must be >= 1, got {}", o.keep);
  if (o.train_range.empty())
    fail("--train-range BEGIN/END is required with --data (e.g. 1979-01-01/1980-01-01)");

  // The dataset settings and the model on the data's grid.
  data::ForecastConfig dc;
  dc.paths = o.data;
  dc.inputs = split_list(o.variables.empty() ? "t2m,u10,v10,z_500,t_850,lsm,orography"
                                             : o.variables);
  const data::NetcdfDataset nc(dc.paths);
  if (!o.out_variables.empty()) {
    dc.outputs = split_list(o.out_variables);
  } else {  // every time-dependent input
    for (const auto& n : dc.inputs) {
      const auto ref = nc.resolve(n);
      if (nc.variable(ref.variable).has_time) dc.outputs.push_back(n);
    }
  }
  dc.lead_hours = parse_lead_hours(o.lead_hours);
  dc.train = parse_range_flag(o.train_range, "--train-range");
  if (!o.val_range.empty()) dc.val = parse_range_flag(o.val_range, "--val-range");
  if (!o.test_range.empty()) dc.test = parse_range_flag(o.test_range, "--test-range");
  dc.coarsen = o.coarsen;
  dc.missing = data::parse_missing_policy(o.missing);
  dc.cache_path = o.stats_cache;
  dc.batch_size = static_cast<int>(o.batch);
  dc.seed = o.seed;
  if (dc.inputs.empty()) fail("--variables is empty");
  const auto [gh, gw] = data_grid(nc, dc);
  if (!o.img.empty()) {
    const auto [h, w] = parse_grid_flag(o.img, "--img", "e.g. 32x64");
    if (h != gh || w != gw)
      fail("--img {} does not match the data grid {}x{} (after --coarsen {}); leave --img out "
           "with --data",
           o.img, gh, gw, o.coarsen);
  }
  if (gh % o.patch || gw % o.patch)
    fail("the data grid {}x{} (after --coarsen {}) is not divisible by --patch {}; valid patch "
         "sizes divide both {} and {}",
         gh, gw, o.coarsen, o.patch, gh, gw);
  const model::ModelConfig mc = model_config(o, gh, gw, dc.inputs, dc.outputs);

  // MPI and the rank grid (only with --dp/--sp > 1; refuses a multi-rank launch without them).
  std::optional<TrainDist> dist;
  dist.emplace(o.dp, o.sp, o.sp_mode, o.bf16, mc, o.batch, o.sp_ulysses, o.sp_outer, o.zero,
               PipelineOptions{o.pp, o.micro_batches, o.pp_schedule}, o.tp);
  if (!dist->active()) return train_data(o, dc, mc, *dist);
  try {
    train_data(o, dc, mc, *dist);
  } catch (const AgreedStop& e) {
    // Every rank is here at the same step, rank 0's checkpoint (if any) is written: rank 0
    // reports, then all ranks finalise MPI and exit with status 1 together.
    if (dist->root()) {
      std::fflush(stdout);
      std::fprintf(stderr, "\nseqvit: error: %s\n", e.what());
      std::fflush(stderr);
    }
    dist->barrier();
    dist.reset();
    std::exit(1);
  } catch (const std::exception& e) {
    // an error on one rank ends them all (no hang in a collective)
    std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", dist->grid().rank(), e.what());
    parallel::abort_all(1);
  }
}

namespace {

// The forecast of b on every rank of the pipeline (validation with --pp / --micro-batches): the
// model is planned for micro-batches of B / m, so b (a whole validation batch, possibly a partial
// last one) runs in chunks of at most max_batch samples, each through the stages in turn
// (receive the residual stream from the previous stage, forward, send it to the next); the last
// stage's forecast, zeros elsewhere, is summed over the pipeline ranks, so that every rank holds
// it (and scores it like the other ranks of its DP replica). Forward only: no activation slot of
// a training step is live between steps.
constexpr int kTagEval = 7301;  // staged_forward's residual stream between stages

// Samples [i, i + n) of b: a view, no copy.
model::BatchView sample_range(const model::BatchView& b, const model::ModelConfig& c, int64_t i,
                              int64_t n) {
  const int64_t HW = c.img_h * c.img_w;
  model::BatchView v = b;
  v.B = n;
  v.x = b.x ? b.x + i * c.V() * HW : nullptr;
  v.y = b.y ? b.y + i * c.Vo() * HW : nullptr;
  v.lead_times = b.lead_times ? b.lead_times + i : nullptr;
  return v;
}

void staged_forward(train::Trainer& tr, TrainDist& dist, const model::BatchView& b, float* pred) {
  model::ClimaX& m = tr.model();
  const auto& c = m.config();
  const int S = dist.pp(), s = dist.stage();
  const int64_t chunk = m.max_batch(), per = c.Vo() * c.img_h * c.img_w;
  m.select_slot(0);
  for (int64_t i = 0; i < b.B; i += chunk) {
    const int64_t n = std::min(chunk, b.B - i);
    const model::BatchView cb = sample_range(b, c, i, n);
    const auto elems = static_cast<size_t>(m.stage_elems(n));
    if (s > 0)
      dist.grid().pp().irecv(std::span<float>(m.stage_input(), elems), s - 1, kTagEval).wait();
    m.forward(tr.params(), cb, s == S - 1 ? pred + i * per : nullptr);
    if (s < S - 1)
      dist.grid()
          .pp()
          .isend(std::span<const float>(m.stage_output(), elems), s + 1, kTagEval)
          .wait();
  }
  if (S > 1)
    dist.grid().pp().all_reduce(std::span<float>(pred, static_cast<size_t>(b.B * per)));
}

void train_data(const TrainOptions& o, const data::ForecastConfig& dc,
                const model::ModelConfig& mc, TrainDist& dist) {
  const bool root = dist.root();
  const int D = dist.dp();
  // The datasets. Rank 0 computes (or reads) the statistics cache; the others wait and then
  // read it (never computing nor writing it: no concurrent writes to one file).
  std::optional<data::ForecastDataset> train_ds, val_ds;
  auto build = [&] {
    data::ForecastConfig c = dc;
    if (root) c.stats_progress = stats_progress_printer();
    c.require_stats_cache = !root;
    train_ds.emplace(c, data::Split::train);
    if (!o.val_range.empty()) {
      c.shuffle = false;
      val_ds.emplace(c, data::Split::val);
    }
  };
  if (root) build();
  dist.barrier();
  if (!root) build();
  // Data parallelism: replica d reads samples [d B/D, (d+1) B/D) of every global batch (the
  // epoch order is a function of the seed and the epoch, the same on every rank); the ranks of
  // one SP group read the same samples.
  train_ds->set_shard(dist.dp_rank(), D);
  if (val_ds) val_ds->set_shard(dist.dp_rank(), D);
  const int64_t batches_per_epoch = train_ds->size() / o.batch;  // the last partial one dropped
  if (batches_per_epoch < 1)
    fail("the training period {}/{} has {} samples, fewer than --batch {}", dc.train.begin,
         dc.train.end, train_ds->size(), o.batch);
  if (train_ds->H() != mc.img_h || train_ds->W() != mc.img_w)
    fail("internal error: the dataset grid {}x{} differs from the files' {}x{}", train_ds->H(),
         train_ds->W(), mc.img_h, mc.img_w);
  const auto norm = eval::normalisation_of(*train_ds);

  // The run directory: fresh, or resumed from its newest checkpoint. Every rank reads it; only
  // rank 0 writes.
  const fs::path run = o.run_dir;
  if (root) fs::create_directories(run / "checkpoints");
  const auto existing = eval::list_checkpoints(run.string());
  if (!o.resume && !existing.empty())
    fail("run directory '{}' already has checkpoints (newest: step {}); pass --resume to "
         "continue it, or choose another --run-dir",
         run.string(), existing.back().first);
  if (o.resume && existing.empty())
    fail("--resume: run directory '{}' has no checkpoint (checkpoints/step_*/) to resume from",
         run.string());

  const auto prec = o.bf16 ? model::Precision::BF16 : model::Precision::F32;
  train::TrainerParallel tpar = dist.trainer_parallel();
  tpar.recompute = o.recompute;
  train::Trainer tr(mc, o.opt, dist.local_batch(), prec, o.seed, tpar);
  dist.attach(tr);  // gradient reducer; pipeline schedule (--pp, --micro-batches)
  const model::ClimaX logical(mc);  // the parameter table of the files
  const auto sharding = make_checkpoint_sharding(dist, o);
  RunState st;
  std::string written_by;
  if (o.resume) {
    // Every rank reads the logical files and takes its part (any layout may have written them).
    const std::string file = (fs::path(existing.back().second) / "model.safetensors").string();
    const auto ck = eval::load_forecast_checkpoint(file);
    if (ck.model.to_json() != mc.to_json())
      fail("--resume: the model in {} differs from the one these options describe:\n  "
           "checkpoint: {}\n  options:    {}",
           file, ck.model.to_json(), mc.to_json());
    data::ForecastConfig ckd = ck.data;
    if (data::forecast_config_to_json(ckd) != data::forecast_config_to_json(dc))
      fail("--resume: the dataset settings in {} differ from these options:\n  checkpoint: {}\n"
           "  options:    {}",
           file, data::forecast_config_to_json(ckd), data::forecast_config_to_json(dc));
    if (ck.norm != norm)
      fail("--resume: the training statistics of the data changed since {} was written (were "
           "files replaced?)",
           file);
    const io::SafetensorsReader r(file);
    try {
      const auto j = json::parse(r.metadata().at("seqvit.train"));
      st.step = j.at("step").get<int64_t>();
      st.epoch = j.at("epoch").get<int64_t>();
      st.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
      st.loss_ema = j.at("loss_ema").get<double>();
      st.elapsed_s = j.value("elapsed_s", 0.0);
      if (j.at("seed").get<uint64_t>() != o.seed)
        fail("--resume: {} was trained with --seed {}, not {}", file,
             j.at("seed").get<uint64_t>(), o.seed);
    } catch (const std::exception& e) {
      fail("--resume: {} has no usable training state (seqvit.train): {}", file, e.what());
    }
    const auto lay = r.metadata().find("seqvit.layout");  // information only
    written_by = describe_layout(lay == r.metadata().end() ? "" : lay->second);
    const auto os = eval::read_optimizer(eval::optimizer_path(file), logical.params());
    if (os.steps_done != st.step)
      fail("--resume: {} is at step {} but its optimizer file at step {}", file, st.step,
           os.steps_done);
    if (st.step >= o.steps)
      fail("--resume: the checkpoint is at step {}, already at --steps {}; raise --steps to "
           "train further (the cosine schedule then changes)",
           st.step, o.steps);
    LogicalState ls;
    ls.params = ck.params.data();
    ls.m = os.m.data();
    ls.v = os.v.data();
    ls.steps_done = os.steps_done;
    sharding->scatter(ls, tr);
  }
  std::optional<JsonLog> log;  // rank 0 only
  const std::string memory_plan = rank_memory_plan(dist, tr);  // collective
  if (root) log.emplace((run / "log.jsonl").string());
  auto log_write = [&](json j) {
    if (log) log->write(std::move(j));
  };

  const int64_t B = o.batch, N = mc.N();
  if (root) {
    fmt::print("seqvit train: ClimaX {} tokenization, {}x{} grid (coarsen {}), patch {}, {} "
               "tokens/sample, D={}, {} heads, depth {}, {} variables -> {}, batch {}, {}, {} "
               "threads\n",
               o.tokenization, mc.img_h, mc.img_w, o.coarsen, o.patch, N, mc.embed_dim,
               mc.num_heads, mc.depth, mc.V(), mc.Vo(), B,
               o.bf16 ? "bf16 mixed precision" : "fp32", omp_get_max_threads());
    if (dist.active())
      fmt::print("parallel: dp {} x sp {} ({}){}{}, {} samples and {} of {} tokens per rank; each "
                 "data-parallel replica reads its {} samples of every batch, the {} rank(s) of "
                 "an SP group{} the same ones\n{}",
                 o.dp, o.sp, o.sp_mode, o.tp > 1 ? fmt::format(" x tp {}", o.tp) : "",
                 o.pp > 1 ? fmt::format(" x pp {}", o.pp) : "", dist.local_batch(),
                 tr.model().local_tokens(), N, dist.local_batch(), o.sp,
                 o.tp * o.pp > 1 ? " (and its tp x pp shards)" : "", dist.grid().describe());
    if (dist.pipelined())
      fmt::print("pipeline: {} stage{} of {} blocks, {} micro-batches of {} per step, {} "
                 "schedule (ideal bubble {:.2f})\n",
                 o.pp, o.pp == 1 ? "" : "s", mc.depth / o.pp, o.micro_batches,
                 dist.local_batch() / o.micro_batches, o.pp_schedule,
                 train::ideal_bubble(o.pp, o.micro_batches));
    fmt::print("{}\n", memory_plan);
    fmt::print("data: {} file(s); train {}/{}: {} samples ({} batches per epoch, {} skipped for "
               "missing values); validation: {}; leads {} h; statistics {} ({})\n",
               train_ds->netcdf().files().size(), dc.train.begin, dc.train.end, train_ds->size(),
               batches_per_epoch, train_ds->skipped_samples(),
               val_ds ? fmt::format("{}/{}: {} samples", dc.val.begin, dc.val.end, val_ds->size())
                      : std::string("none (no --val-range)"),
               o.lead_hours, train_ds->stats_computed() ? "computed" : "from the cache",
               train_ds->cache_path());
    if (o.resume)
      fmt::print("resuming {} at step {} (epoch {}, batch {}); checkpoint written by {}\n",
                 run.string(), st.step, st.epoch, st.batch_in_epoch, written_by);
    std::fflush(stdout);
  }
  log_write({{"event", o.resume ? "resume" : "start"},
             {"step", st.step},
             {"model", json::parse(mc.to_json())},
             {"data", json::parse(data::forecast_config_to_json(dc))},
             {"optim", json::parse(o.opt.to_json())},
             {"batch", B},
             {"bf16", o.bf16},
             {"layout", json::parse(sharding->layout_json())},
             {"threads", omp_get_max_threads()}});

  std::string last_checkpoint = o.resume ? existing.back().second : "";
  // Collective: the sharding gathers the logical state on rank 0, which writes it.
  auto save_checkpoint = [&]() {
    const fs::path dir = run / "checkpoints" / eval::step_dir_name(st.step);
    const LogicalState s = sharding->gather(tr);
    last_checkpoint = dir.string();
    if (!root) return;
    const fs::path tmp = dir.string() + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    eval::save_forecast_model((tmp / "model.safetensors").string(), mc, dc, norm,
                               logical.params(), s.params, st.to_json(o.seed).dump(),
                               {{"seqvit.layout", sharding->layout_json()}});
    train::save_optimizer((tmp / "model.optim.safetensors").string(), logical.params(), s.m, s.v,
                          s.steps_done, tr.optimizer().config());
    fs::remove_all(dir);  // a checkpoint of this step from an abandoned run
    fs::rename(tmp, dir);
    auto all = eval::list_checkpoints(run.string());
    for (size_t i = 0; i + static_cast<size_t>(o.keep) < all.size(); ++i)
      fs::remove_all(all[i].second);
    log_write({{"event", "checkpoint"}, {"step", st.step}, {"path", dir.string()},
               {"state_hash", fmt::format("{:016x}", s.hash)}});
  };
  // Validation sharded like training: each replica scores its samples of every batch, the ranks
  // of an SP group complete each other's forecasts, the score sums are added over the replicas.
  eval::EvalParallel par;
  if (dist.pipelined())
    par.forward = [&](const model::BatchView& b, float* pred) {
      staged_forward(tr, dist, b, pred);
    };
  if (dist.active()) {
    if (o.sp > 1)
      par.complete_pred = [&dist](float* p, int64_t n) {
        dist.grid().sp().all_reduce(std::span<float>(p, static_cast<size_t>(n)));
      };
    par.sum_over_shards = [&dist](double* p, int64_t n) {
      dist.grid().dp().all_reduce(std::span<double>(p, static_cast<size_t>(n)));
    };
  }
  auto validate = [&]() {
    if (!val_ds) return;
    if (val_ds->size() == 0) fail("the validation period {}/{} has no samples", dc.val.begin, dc.val.end);
    const auto t = std::chrono::steady_clock::now();
    // ZeRO-3: the forwards gather each unit's weights through the model's parameter hooks (a
    // collective over the replicas), so every replica must run the same forwards. A last batch
    // of fewer samples than replicas leaves some replica without a forward, and through the
    // pipeline (chunks of the micro-batch) a partial last batch may give the replicas different
    // chunk counts: then the weights are gathered whole for the validation (hooks off) and
    // released after.
    train::ZeroOptimizer* z3 = dist.zero() && dist.zero()->stage() == 3 ? dist.zero() : nullptr;
    bool whole = false;
    if (z3) {
      const int64_t nb = val_ds->num_batches();
      const bool last_evaluated = o.val_batches <= 0 || o.val_batches >= nb;
      const int64_t last_n = val_ds->size() - (nb - 1) * o.batch;
      whole = last_evaluated && nb > 0 &&
              (last_n < D || (dist.pipelined() && last_n != o.batch));
      if (whole) {
        z3->gather_all_parameters();
        tr.model().set_parameter_hooks(nullptr);
      }
    }
    const auto sc = eval::evaluate(tr.model(), tr.params(), *val_ds, o.val_batches, {},
                                   dist.active() || dist.pipelined() ? &par : nullptr);
    if (whole) {
      tr.model().set_parameter_hooks(z3);
      z3->release_all_parameters();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    if (!root) return;
    fmt::print("validation at step {} ({:.1f} s): {}\n", st.step, secs, scores_line(sc));
    std::fflush(stdout);
    log_write({{"event", "validation"}, {"step", st.step}, {"seconds", secs},
               {"scores", json::parse(eval::scores_to_json(sc))}});
  };

  g_signal.store(0);
  auto* old_int = std::signal(SIGINT, on_signal);
  auto* old_term = std::signal(SIGTERM, on_signal);
  struct RestoreSignals {
    void (*i)(int), (*t)(int);
    ~RestoreSignals() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
    }
  } restore{old_int, old_term};

  const bool tty = root && isatty(fileno(stderr));
  const double flops_step = 3.0 * tr.model().forward_flops(B);
  const auto t0 = std::chrono::steady_clock::now();
  const double elapsed0 = st.elapsed_s;
  const int64_t first_step = st.step;
  train_ds->start_epoch(st.epoch, st.batch_in_epoch);
  data::Batch b;
  while (st.step < o.steps) {
    if (st.batch_in_epoch >= batches_per_epoch || !train_ds->next(b)) {
      ++st.epoch;
      st.batch_in_epoch = 0;
      train_ds->start_epoch(st.epoch);
      continue;
    }
    train::StepResult r;
    try {
      r = tr.step(b.view());
    } catch (const Error& e) {
      // Trainer::step refuses a non-finite loss after the all-reduce: every rank alike. Any
      // other error (e.g. a failed collective) is this rank's own.
      if (std::string_view(e.what()).rfind("loss is ", 0) != 0) throw;
      log_write({{"event", "non_finite_loss"}, {"step", st.step + 1}, {"message", e.what()}});
      throw AgreedStop(fmt::format(
          "{}\nthe run stopped at step {} of {}; {}", e.what(), st.step + 1, o.steps,
          last_checkpoint.empty()
              ? std::string("no checkpoint had been written yet")
              : fmt::format("the last good checkpoint, {}, is intact (continue from it with "
                            "--resume, e.g. after lowering --lr)",
                            last_checkpoint)));
    }
    ++st.step;
    ++st.batch_in_epoch;
    st.loss_ema = st.step == 1 ? r.loss : 0.9 * st.loss_ema + 0.1 * r.loss;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.elapsed_s = elapsed0 + el;
    const double per = el / static_cast<double>(st.step - first_step);
    log_write({{"event", "step"}, {"step", st.step}, {"epoch", st.epoch}, {"loss", r.loss},
               {"grad_norm", r.grad_norm}, {"lr", r.lr},
               {"tokens_per_s", static_cast<double>(B * N) / per}});
    if (root && (tty || st.step % o.log_every == 0 || st.step == o.steps)) {
      const std::string line = fmt::format(
          "step {:>6}/{} | epoch {} | loss {:.4f} (avg {:.4f}) | lr {:.2e} | {:.0f} tok/s | {:.1f} "
          "GFLOP/s | ETA {}",
          st.step, o.steps, st.epoch, r.loss, st.loss_ema, r.lr, static_cast<double>(B * N) / per,
          flops_step / per / 1e9, format_eta(per * static_cast<double>(o.steps - st.step)));
      if (tty)
        fmt::print(stderr, "\r{}\033[K", line);
      else
        fmt::print(stderr, "{}\n", line);
    }
    const bool last = st.step == o.steps;
    // A signal may have reached some ranks only: stop when any rank saw one (every rank then
    // checkpoints and stops at this same step).
    const int sig = static_cast<int>(dist.max_over_world(g_signal.load()));
    if ((o.val_every > 0 && st.step % o.val_every == 0) || last) {
      if (tty) fmt::print(stderr, "\n");
      validate();
    }
    if (st.step % o.checkpoint_every == 0 || last || sig != 0) save_checkpoint();
    if (sig != 0) {
      if (tty) fmt::print(stderr, "\n");
      log_write({{"event", "interrupted"}, {"step", st.step}, {"signal", sig}});
      throw AgreedStop(fmt::format(
          "interrupted by signal {} at step {}; checkpoint {} written (continue with --resume)",
          sig, st.step, last_checkpoint));
    }
  }
  if (tty) fmt::print(stderr, "\n");
  log_write({{"event", "end"}, {"step", st.step}, {"loss_ema", st.loss_ema},
             {"elapsed_s", st.elapsed_s}});
  if (root)
    fmt::print("trained to step {} in {:.1f} s (this run: {} steps); final checkpoint {} "
               "(evaluate it with: seqvit evaluate --checkpoint {})\n",
               st.step, st.elapsed_s, st.step - first_step, last_checkpoint, run.string());
}

}  // namespace

}  // namespace seqvit::cli
