// The training loop (see loop.h). Under `mpirun -np D*T*S*P` each data-parallel replica reads
// its share of every global batch, validation is sharded over the replicas, rank 0 alone writes
// the statistics cache, the logs and the (logical) checkpoints, and every stop is agreed by all
// ranks (docs/training.md "Data and sequence parallelism"). --tp, --pp and --micro-batches shard
// the model: the step runs through Distributed's pipeline, validation through the stages
// (staged_forward). --zero 1|2|3 shards the optimizer state (and gradients, and weights) over
// the replicas; under ZeRO-3 validation gathers the weights unit by unit like the training
// forward (docs/training.md "ZeRO").
#include "train/loop.h"

#include <fmt/core.h>
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <sstream>

#include "core/check.h"
#include "core/latitude.h"
#include "core/process_memory.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "data/synthetic.h"
#include "eval/checkpoint.h"
#include "eval/forecast_checkpoint.h"
#include "eval/metrics.h"
#include "io/safetensors.h"
#include "model/device_batch.h"
#include "parallel/mpi_comm.h"
#include "train/checkpoint.h"
#include "train/checkpoint_sharding.h"
#include "train/distributed.h"
#include "train/memory_plan.h"
#include "train/pipeline.h"
#include "train/run_report.h"
#include "train/trainer.h"

namespace seqvit::train {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// ------------------------------------------------------------------ the synthetic source

// The built-in travelling waves: global batch s holds samples [s B, (s + 1) B) of the stream,
// replica d its samples [d Bl, (d + 1) Bl). Held-out batches come from far beyond any training
// step (samples the stream never draws).
class SyntheticSource final : public BatchSource {
 public:
  explicit SyntheticSource(TrainOptions& o) : B_(o.batch) {
    if (o.img.empty()) o.img = "32x64";
    if (o.variables.empty()) o.variables = "t2m,u10,v10,z_500,t_850";
    if (o.out.empty()) o.out = "seqvit_model.safetensors";
    const auto [h, w] = parse_grid(o.img);
    const auto vars = split_list(o.variables);
    mc_ = model_config(o, h, w, vars, o.out_variables.empty() ? vars : split_list(o.out_variables));
    data::SyntheticSpec spec;
    spec.H = h;
    spec.W = w;
    spec.variables = mc_.variables;
    spec.out_variables = mc_.out_variables;
    spec.seed = o.seed;
    spec.lead_hours = parse_lead_hours(o.lead_hours);
    fields_.emplace(spec);
    lead_hours_ = o.lead_hours;
  }
  const model::ModelConfig& model() const override { return mc_; }
  void open(Distributed& dist) override {
    Bl_ = dist.local_batch();
    first_ = static_cast<uint64_t>(dist.dp_rank() * Bl_);
    const int64_t HW = mc_.img_h * mc_.img_w;
    xb_.assign(static_cast<size_t>(Bl_ * mc_.V() * HW), 0.f);  // all batch memory up front
    yb_.assign(static_cast<size_t>(Bl_ * mc_.Vo() * HW), 0.f);
    lt_.assign(static_cast<size_t>(Bl_), 0.f);
  }
  std::string describe() const override {
    return fmt::format("data: synthetic travelling waves, lead {} h (built in; no files needed)",
                       lead_hours_);
  }
  bool has_epochs() const override { return false; }
  void seek(const Position&) override {}
  model::BatchView next(Position& pos) override {
    return fill(static_cast<uint64_t>(pos.step) * static_cast<uint64_t>(B_));
  }
  // Held-out batch k (of 4 that the loss before and after training averages).
  model::BatchView held_out(int k) { return fill((uint64_t{1} << 40) + k * B_); }
  // The persistence forecast (y_hat = x) on the held-out batches: the baseline to beat.
  double persistence(Distributed& dist) {
    const int64_t h = mc_.img_h, w = mc_.img_w, HW = h * w, V = mc_.V(), Vo = mc_.Vo();
    const auto wl = latitude_weights(fields_->lat().data(), h);
    const auto oi = mc_.out_index();
    double acc = 0;
    for (int k = 0; k < 4; ++k) {
      held_out(k);
      for (int64_t s = 0; s < Bl_; ++s)
        for (int64_t o = 0; o < Vo; ++o)
          for (int64_t i = 0; i < HW; ++i) {
            const double e = xb_[(s * V + oi[o]) * HW + i] - yb_[(s * Vo + o) * HW + i];
            acc += wl[i / w] * e * e;
          }
    }
    return dist.sum_over_dp(acc) / (4.0 * B_ * Vo * HW);  // SP ranks hold the same samples
  }

 private:
  static std::pair<int64_t, int64_t> parse_grid(const std::string& v) {
    int64_t h = 0, w = 0;
    char x = 0;
    std::stringstream ss(v);
    if (!(ss >> h >> x >> w) || x != 'x' || !ss.eof())
      fail("--img must look like HxW (e.g. 32x64), got '{}'", v);
    return {h, w};
  }
  model::BatchView fill(uint64_t first) {
    first += first_;
    const int64_t HW = mc_.img_h * mc_.img_w, V = mc_.V(), Vo = mc_.Vo();
    for (int64_t s = 0; s < Bl_; ++s)
      fields_->sample(first + s, xb_.data() + s * V * HW, yb_.data() + s * Vo * HW,
                      lt_.data() + s);
    return {Bl_, xb_.data(), yb_.data(), lt_.data(), fields_->lat().data()};
  }

  int64_t B_, Bl_ = 0;
  uint64_t first_ = 0;
  model::ModelConfig mc_;
  std::optional<data::SyntheticFields> fields_;
  std::string lead_hours_;
  std::vector<float> xb_, yb_, lt_;
};

// ------------------------------------------------------------------ the dataset source

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

// The model grid (after --coarsen, or --grid: `nc` is then the regridded source) from the files'
// metadata: the model, and so the rank grid,
// is known before the datasets (whose statistics rank 0 computes first) are built.
std::pair<int64_t, int64_t> data_grid(const data::GridSource& nc,
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

// Epochs of a ForecastDataset over NetCDF files (--data), and its validation split.
class DatasetSource final : public BatchSource {
 public:
  explicit DatasetSource(const TrainOptions& o) : o_(o) {
    if (!o.report_json.empty() || !o.loss_log.empty() || o.benchmark)
      fail("--report-json, --loss-log and --benchmark are for the synthetic mode; with --data the "
           "run directory's log.jsonl records every step");
    if (o.val_every < 0) fail("--val-every must be >= 0, got {}", o.val_every);
    if (o.val_batches < 0) fail("--val-batches must be >= 0, got {}", o.val_batches);
    if (o.checkpoint_every < 1)
      fail("--checkpoint-every must be >= 1, got {}", o.checkpoint_every);
    if (o.keep < 1) fail("--keep must be >= 1, got {}", o.keep);
    if (o.train_range.empty())
      fail("--train-range BEGIN/END is required with --data (e.g. 1979-01-01/1980-01-01)");
    // The dataset settings and the model on the data's grid.
    dc_.paths = o.data;
    dc_.inputs = split_list(o.variables.empty() ? "t2m,u10,v10,z_500,t_850,lsm,orography"
                                                : o.variables);
    dc_.coarsen = o.coarsen;
    dc_.cache_path = o.stats_cache;
    if (!o.grid.empty()) {  // canonical "HxW" in the checkpoint; a bad text: the error naming it
      const data::LatLonGrid g = data::parse_grid(o.grid);
      dc_.grid = fmt::format("{}x{}", g.H(), g.W());
      dc_.regrid_method = data::parse_regrid_method(o.regrid_method);
    } else if (o.regrid_method != "conservative") {
      fail("--regrid-method {} needs --grid HxW (the grid to regrid onto)", o.regrid_method);
    }
    if (o.coarsen < 1) fail("--coarsen must be >= 1, got {}", o.coarsen);
    if (!o.time_origin.empty()) {
      try {
        data::parse_iso_datetime(o.time_origin);
      } catch (const Error& e) {
        fail("--time-origin: {}", e.what());
      }
    }
    dc_.time_origin = o.time_origin;
    const std::unique_ptr<data::GridSource> source = data::open_forecast_source(dc_);
    const data::GridSource& nc = *source;
    if (!o.out_variables.empty()) {
      dc_.outputs = split_list(o.out_variables);
    } else {  // every time-dependent input
      for (const auto& n : dc_.inputs) {
        const auto ref = nc.resolve(n);
        if (nc.variable(ref.variable).has_time) dc_.outputs.push_back(n);
      }
    }
    dc_.lead_hours = parse_lead_hours(o.lead_hours);
    dc_.train = parse_range_flag(o.train_range, "--train-range");
    if (!o.val_range.empty()) dc_.val = parse_range_flag(o.val_range, "--val-range");
    if (!o.test_range.empty()) dc_.test = parse_range_flag(o.test_range, "--test-range");
    dc_.missing = data::parse_missing_policy(o.missing);
    dc_.batch_size = static_cast<int>(o.batch);
    dc_.seed = o.seed;
    if (dc_.inputs.empty()) fail("--variables is empty");
    const auto [gh, gw] = data_grid(nc, dc_);
    if (!o.img.empty()) {
      int64_t h = 0, w = 0;
      char x = 0;
      std::stringstream ss(o.img);
      if (!(ss >> h >> x >> w) || x != 'x' || !ss.eof())
        fail("--img must look like HxW (e.g. 32x64), got '{}'", o.img);
      if (h != gh || w != gw)
        fail("--img {} does not match the data grid {}x{} ({}); leave --img out with --data",
             o.img, gh, gw, grid_origin());
    }
    if (gh % o.patch || gw % o.patch)
      fail("the data grid {}x{} ({}) is not divisible by --patch {}; valid patch sizes divide "
           "both {} and {}{}",
           gh, gw, grid_origin(), o.patch, gh, gw,
           dc_.grid.empty() ? ", or read the data onto such a grid with --grid HxW (e.g. --grid "
                              "32x64, the 5.625-degree grid, or 128x256; docs/data.md "
                              "\"Regridding\")"
                            : "");
    mc_ = model_config(o, gh, gw, dc_.inputs, dc_.outputs);
  }
  const model::ModelConfig& model() const override { return mc_; }
  void open(Distributed& dist) override {
    const bool root = dist.root();
    // Rank 0 computes (or reads) the statistics cache; the others wait and then read it (never
    // computing nor writing it: no concurrent writes to one file).
    auto build = [&] {
      data::ForecastConfig c = dc_;
      if (root) c.stats_progress = stats_progress_printer();
      c.require_stats_cache = !root;
      train_.emplace(c, data::Split::train);
      if (!o_.val_range.empty()) {
        c.shuffle = false;
        val_.emplace(c, data::Split::val);
      }
    };
    if (root) build();
    dist.barrier();
    if (!root) build();
    // Data parallelism: replica d reads samples [d B/D, (d+1) B/D) of every global batch (the
    // epoch order is a function of the seed and the epoch, the same on every rank); the ranks of
    // one SP group read the same samples.
    train_->set_shard(dist.dp_rank(), dist.dp());
    if (val_) val_->set_shard(dist.dp_rank(), dist.dp());
    batches_per_epoch_ = train_->size() / o_.batch;  // the last partial one dropped
    if (batches_per_epoch_ < 1)
      fail("the training period {}/{} has {} samples, fewer than --batch {}", dc_.train.begin,
           dc_.train.end, train_->size(), o_.batch);
    if (train_->H() != mc_.img_h || train_->W() != mc_.img_w)
      fail("internal error: the dataset grid {}x{} differs from the files' {}x{}", train_->H(),
           train_->W(), mc_.img_h, mc_.img_w);
    norm_ = eval::normalisation_of(*train_);
    clim_ = eval::climatology_of(*train_);
  }
  std::string describe() const override {
    return fmt::format(
        "data: {} file(s); train {}/{}: {} samples ({} batches per epoch, {} skipped for missing "
        "values); validation: {}; leads {} h; statistics {} ({})",
        train_->source().files().size(), dc_.train.begin, dc_.train.end, train_->size(),
        batches_per_epoch_, train_->skipped_samples(),
        val_ ? fmt::format("{}/{}: {} samples", dc_.val.begin, dc_.val.end, val_->size())
             : std::string("none (no --val-range)"),
        o_.lead_hours, train_->stats_computed() ? "computed" : "from the cache",
        train_->cache_path());
  }
  bool has_epochs() const override { return true; }
  void seek(const Position& pos) override { train_->start_epoch(pos.epoch, pos.batch_in_epoch); }
  model::BatchView next(Position& pos) override {
    while (pos.batch_in_epoch >= batches_per_epoch_ || !train_->next(b_)) {
      ++pos.epoch;
      pos.batch_in_epoch = 0;
      train_->start_epoch(pos.epoch);
    }
    ++pos.batch_in_epoch;
    return b_.view();
  }
  const data::ForecastConfig& config() const { return dc_; }
  // How the model grid came about, for messages: "after --coarsen 2", "--grid 32x64 ...".
  std::string grid_origin() const {
    return dc_.grid.empty()
               ? fmt::format("after --coarsen {}", dc_.coarsen)
               : fmt::format("--grid {}, {}", dc_.grid, data::regrid_method_name(dc_.regrid_method));
  }
  const eval::Normalisation& norm() const { return norm_; }
  // The training period's climatology, stored in every checkpoint (docs/checkpoints.md).
  const eval::Climatology& climatology() const { return clim_; }
  data::ForecastDataset* validation() { return val_ ? &*val_ : nullptr; }

 private:
  const TrainOptions& o_;
  data::ForecastConfig dc_;
  model::ModelConfig mc_;
  std::optional<data::ForecastDataset> train_, val_;
  int64_t batches_per_epoch_ = 0;
  eval::Normalisation norm_;
  eval::Climatology clim_;
  data::Batch b_;
};

// ------------------------------------------------------------------ the loop's pieces

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

json state_json(const Position& p, double loss_ema, double elapsed_s, const TrainOptions& o) {
  return {{"step", p.step},         {"epoch", p.epoch},     {"batch_in_epoch", p.batch_in_epoch},
          {"loss_ema", loss_ema},   {"seed", o.seed},       {"elapsed_s", elapsed_s},
          {"dropout", o.dropout},   {"drop_path", o.drop_path}};
}

std::string scores_line(const std::vector<eval::Scores>& sc) {
  std::string s;
  for (const auto& x : sc)
    s += fmt::format("{}{}@{:g}h rmse_wb2 {:.4g} {} (persist {:.4g}, clim {:.4g}) acc {:.3f}",
                     s.empty() ? "" : " | ", x.variable, x.lead_hours, x.rmse_wb2, x.units,
                     x.rmse_wb2_persistence, x.rmse_wb2_climatology, x.acc);
  return s;
}

// A stop that every rank reaches at the same step with the same message (a NaN loss, which
// is identical on all ranks after the all-reduce; a signal, combined over the ranks): rank 0
// reports it and every rank exits with status 1 after MPI_Finalize, no MPI_Abort.
class AgreedStop : public Error {
 public:
  using Error::Error;
};

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

// The forecast of the HOST batch b on every rank of the pipeline (validation with --pp /
// --micro-batches), into the HOST pred: the model is planned for micro-batches of B / m, so b (a
// whole validation batch, possibly a partial last one) runs in chunks of at most max_batch
// samples, each through the stages in turn (receive the residual stream from the previous stage,
// forward, send it to the next); the last stage's forecast, zeros elsewhere, is summed over the
// pipeline ranks, so that every rank holds it (and scores it like the other ranks of its DP
// replica). Forward only: no activation slot of a training step is live between steps.
constexpr int kTagEval = 7301;  // staged_forward's residual stream between stages

struct StagedForward {
  StagedForward(Trainer& t, Distributed& d)
      : tr(t),
        dist(d),
        batch(t.device(), t.model().config(), t.model().max_batch()),
        pred(t.device(), static_cast<size_t>(t.model().max_batch() * t.model().config().Vo() *
                                             t.model().config().img_h *
                                             t.model().config().img_w) *
                             sizeof(float)) {}
  Trainer& tr;
  Distributed& dist;
  model::DeviceBatch batch;   // one chunk
  backend::Allocation pred;   // one chunk's forecast [chunk, Vo, H, W]
  void operator()(const model::BatchView& b, float* host_pred) {
    model::ClimaX& m = tr.model();
    const auto& c = m.config();
    const int S = dist.pp(), s = dist.stage();
    const int64_t chunk = m.max_batch(), per = c.Vo() * c.img_h * c.img_w;
    m.select_slot(0);
    for (int64_t i = 0; i < b.B; i += chunk) {
      const int64_t n = std::min(chunk, b.B - i);
      const model::BatchView cb = batch.upload(sample_range(b, c, i, n));
      const auto elems = static_cast<size_t>(m.stage_elems(n));
      if (s > 0)
        dist.grid().pp().irecv(std::span<float>(m.stage_input(), elems), s - 1, kTagEval).wait();
      m.forward(tr.params(), cb, s == S - 1 ? pred.as<float>() : nullptr);
      if (s == S - 1)
        tr.device().copy_to_host(host_pred + i * per, pred.get(),
                                 static_cast<size_t>(n * per) * sizeof(float));
      if (s < S - 1)
        dist.grid()
            .pp()
            .isend(std::span<const float>(m.stage_output(), elems), s + 1, kTagEval)
            .wait();
    }
    if (S > 1)
      dist.grid().pp().all_reduce(std::span<float>(host_pred, static_cast<size_t>(b.B * per)));
  }
};

// ------------------------------------------------------------------ the loop

void train_loop(const TrainOptions& o, BatchSource& src, Distributed& dist,
                backend::Device& dev) {
  auto* synth = dynamic_cast<SyntheticSource*>(&src);
  auto* data = dynamic_cast<DatasetSource*>(&src);
  const model::ModelConfig& mc = src.model();
  const bool root = dist.root();
  src.open(dist);

  // The run directory (data): fresh, or resumed from its newest checkpoint. Every rank reads
  // it; only rank 0 writes.
  const fs::path run = o.run_dir;
  std::vector<std::pair<int64_t, std::string>> existing;
  if (data) {
    if (root) fs::create_directories(run / "checkpoints");
    existing = eval::list_checkpoints(run.string());
    if (!o.resume && !existing.empty())
      fail("run directory '{}' already has checkpoints (newest: step {}); pass --resume to "
           "continue it, or choose another --run-dir",
           run.string(), existing.back().first);
    if (o.resume && existing.empty())
      fail("--resume: run directory '{}' has no checkpoint (checkpoints/step_*/) to resume from",
           run.string());
  }

  const auto prec = o.bf16 ? model::Precision::BF16 : model::Precision::F32;
  TrainerParallel tpar = dist.trainer_parallel();
  tpar.recompute = o.par.recompute;
  Trainer tr(mc, o.opt, dist.local_batch(), prec, o.seed, tpar, dev);
  tr.set_dropout({o.dropout, o.drop_path, o.seed});  // training steps only
  dist.attach(tr);  // gradient reducer; pipeline schedule (--pp, --micro-batches)
  const model::ClimaX logical(mc);  // the parameter table of the files
  const auto sharding = make_checkpoint_sharding(dist, o);
  std::string init_file;
  if (!o.init_from.empty()) {
    // Fine-tuning: every rank reads the logical weights and keeps its part; the optimizer is
    // fresh (zero moments, step 0), as is the data position.
    std::vector<float> w(static_cast<size_t>(logical.params().total()), 0.f);
    init_file = load_init_weights(o.init_from, mc, logical.params(), w.data());
    const std::vector<float> zeros(w.size(), 0.f);
    LogicalState ls;
    ls.params = w.data();
    ls.m = zeros.data();
    ls.v = zeros.data();
    ls.steps_done = 0;
    sharding->scatter(ls, tr);
  }
  Position pos;
  double loss_ema = 0, elapsed0 = 0, elapsed = 0;  // elapsed: of the whole run, resumed ones too
  std::string written_by;
  if (data && o.resume) {
    // Every rank reads the logical files and takes its part (any layout may have written them).
    const std::string file = (fs::path(existing.back().second) / "model.safetensors").string();
    const auto ck = eval::load_forecast_checkpoint(file);
    if (ck.model.to_json() != mc.to_json())
      fail("--resume: the model in {} differs from the one these options describe:\n  "
           "checkpoint: {}\n  options:    {}",
           file, ck.model.to_json(), mc.to_json());
    data::ForecastConfig ckd = ck.data;
    if (data::forecast_config_to_json(ckd) != data::forecast_config_to_json(data->config()))
      fail("--resume: the dataset settings in {} differ from these options:\n  checkpoint: {}\n"
           "  options:    {}",
           file, data::forecast_config_to_json(ckd),
           data::forecast_config_to_json(data->config()));
    if (ck.norm != data->norm())
      fail("--resume: the training statistics of the data changed since {} was written (were "
           "files replaced?)",
           file);
    const io::SafetensorsReader r(file);
    uint64_t ck_seed = 0;
    double ck_drop = 0, ck_path = 0;  // files from before dropout existed: 0
    try {
      const auto j = json::parse(r.metadata().at("seqvit.train"));
      pos.step = j.at("step").get<int64_t>();
      pos.epoch = j.at("epoch").get<int64_t>();
      pos.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
      loss_ema = j.at("loss_ema").get<double>();
      elapsed0 = j.value("elapsed_s", 0.0);
      ck_seed = j.at("seed").get<uint64_t>();
      ck_drop = j.value("dropout", 0.0);
      ck_path = j.value("drop_path", 0.0);
    } catch (const std::exception& e) {
      fail("--resume: {} has no usable training state (seqvit.train): {}", file, e.what());
    }
    if (ck_seed != o.seed)
      fail("--resume: {} was trained with --seed {}, not {}", file, ck_seed, o.seed);
    if (ck_drop != o.dropout || ck_path != o.drop_path)
      fail("--resume: {} was trained with --dropout {} --drop-path {}, not --dropout {} "
           "--drop-path {} (the masks of the continued steps would differ)",
           file, ck_drop, ck_path, o.dropout, o.drop_path);
    const auto lay = r.metadata().find("seqvit.layout");  // information only
    written_by = describe_layout(lay == r.metadata().end() ? "" : lay->second);
    const auto os = eval::read_optimizer(eval::optimizer_path(file), logical.params());
    if (os.steps_done != pos.step)
      fail("--resume: {} is at step {} but its optimizer file at step {}", file, pos.step,
           os.steps_done);
    if (pos.step >= o.steps)
      fail("--resume: the checkpoint is at step {}, already at --steps {}; raise --steps to "
           "train further (the cosine schedule then changes)",
           pos.step, o.steps);
    LogicalState ls;
    ls.params = ck.params.data();
    ls.m = os.m.data();
    ls.v = os.v.data();
    ls.steps_done = os.steps_done;
    sharding->scatter(ls, tr);
  }
  std::optional<JsonLog> log;  // rank 0 only (data)
  const std::string memory_plan = rank_memory_plan(dist, tr);  // collective
  if (root && data) log.emplace((run / "log.jsonl").string());
  auto log_write = [&](json j) {
    if (log) log->write(std::move(j));
  };

  // The header (rank 0).
  const ParallelOptions& p = o.par;
  const int64_t B = o.batch, Bl = dist.local_batch(), N = mc.N();
  if (root) {
    fmt::print("seqvit train: ClimaX {} tokenization, {}x{} grid{}, patch {}, {} tokens/sample, "
               "D={}, {} heads, depth {}, {} variables -> {}, batch {}, {}, {} threads{}\n",
               o.tokenization, mc.img_h, mc.img_w,
               !data ? ""
               : data->config().grid.empty()
                   ? fmt::format(" (coarsen {})", o.coarsen)
                   : fmt::format(" (regridded, {})", data->grid_origin()),
               o.patch, N, mc.embed_dim,
               mc.num_heads, mc.depth, mc.V(), mc.Vo(), B,
               o.bf16 ? "bf16 mixed precision" : "fp32", omp_get_max_threads(),
               dev.name() == "cpu" ? "" : fmt::format(", device {}", dev.name()));
    if (dist.active())
      fmt::print("parallel: dp {} x sp {} ({}){}{}, {} samples, {} of {} tokens and {} of {} heads "
                 "per rank{}\n{}",
                 p.dp, p.sp, p.sp_mode, p.tp > 1 ? fmt::format(" x tp {}", p.tp) : "",
                 p.pp > 1 ? fmt::format(" x pp {}", p.pp) : "", Bl, tr.model().local_tokens(), N,
                 mc.num_heads / p.tp, mc.num_heads,
                 data ? fmt::format("; each data-parallel replica reads its {} samples of every "
                                    "batch, the {} rank(s) of an SP group{} the same ones",
                                    Bl, p.sp, p.tp * p.pp > 1 ? " (and its tp x pp shards)" : "")
                      : "",
                 dist.grid().describe());
    if (dist.pipelined())
      fmt::print("pipeline: {} stage{} of {} blocks, {} micro-batches of {} per step, {} "
                 "schedule (ideal bubble {:.2f})\n",
                 p.pp, p.pp == 1 ? "" : "s", mc.depth / p.pp, p.micro_batches,
                 Bl / p.micro_batches, p.pp_schedule, ideal_bubble(p.pp, p.micro_batches));
    if (dist.zero())
      fmt::print("ZeRO-{} over the {} ranks of sp x dp: per rank {} of {} parameter values' "
                 "optimizer state{}{}\n",
                 p.zero, p.dp * p.sp, tr.optimizer().end() - tr.optimizer().begin(),
                 tr.model().params().total(), p.zero >= 2 ? ", gradients" : "",
                 p.zero == 3 ? " and parameters (plus the unit in use)" : "");
    if (p.recompute) fmt::print("activation recomputation: only block inputs are kept\n");
    if (o.dropout > 0 || o.drop_path > 0)
      fmt::print("dropout {} and drop-path {} (block i: {} i / {}) in the training steps, masks "
                 "from --seed {} and the step\n",
                 o.dropout, o.drop_path, o.drop_path, std::max<int64_t>(mc.depth - 1, 1), o.seed);
    if (!init_file.empty())
      fmt::print("fine-tuning: weights from {}; a new optimizer from step 0\n", init_file);
    if (mc.attention == model::AttentionKernel::Dense)
      fmt::print("attention: dense (keeps the B*H*N*N probabilities of every block)\n");
    fmt::print("{}\n", memory_plan);
    fmt::print("{}\n", src.describe());
    if (data && o.resume)
      fmt::print("resuming {} at step {} (epoch {}, batch {}); checkpoint written by {}\n",
                 run.string(), pos.step, pos.epoch, pos.batch_in_epoch, written_by);
    std::fflush(stdout);
  }
  if (data)
    log_write({{"event", o.resume ? "resume" : "start"},
               {"step", pos.step},
               {"model", json::parse(mc.to_json())},
               {"data", json::parse(data::forecast_config_to_json(data->config()))},
               {"optim", json::parse(o.opt.to_json())},
               {"batch", B},
               {"bf16", o.bf16},
               {"dropout", o.dropout},
               {"drop_path", o.drop_path},
               {"init_from", init_file},
               {"layout", json::parse(sharding->layout_json())},
               {"threads", omp_get_max_threads()}});
  std::unique_ptr<FILE, int (*)(FILE*)> loss_log(nullptr, &std::fclose);  // rank 0 only
  if (root && !o.loss_log.empty()) {
    loss_log.reset(std::fopen(o.loss_log.c_str(), "w"));
    if (!loss_log) fail("--loss-log: cannot write {}", o.loss_log);
  }

  // Evaluation on the device: the batches of the held-out loss (synthetic) and the staged
  // validation forwards (pipeline).
  model::DeviceBatch eval_batch(dev, mc, Bl);
  // The held-out loss (synthetic): samples the training stream never draws, averaged over 4
  // global batches.
  auto held_out_loss = [&]() {
    double acc = 0;
    for (int k = 0; k < 4; ++k)
      acc += dist.forward_loss(tr, eval_batch.upload(synth->held_out(k)));  // this rank's part
    return dist.sum_over_sp_dp(acc) / 4;
  };
  const double eval0 = synth && !o.benchmark ? held_out_loss() : 0.0;

  // Checkpoints. Collective: the sharding gathers the logical state on rank 0, which writes it.
  std::string last_checkpoint = data && o.resume ? existing.back().second : "";
  auto save_run_checkpoint = [&]() {  // data: a step directory of the run directory
    const fs::path dir = run / "checkpoints" / eval::step_dir_name(pos.step);
    const LogicalState s = sharding->gather(tr);
    last_checkpoint = dir.string();
    if (!root) return;
    const fs::path tmp = dir.string() + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    eval::save_forecast_model((tmp / "model.safetensors").string(), mc, data->config(),
                              data->norm(), data->climatology(), logical.params(), s.params,
                              state_json(pos, loss_ema, elapsed, o).dump(),
                              {{"seqvit.layout", sharding->layout_json()}});
    save_optimizer((tmp / "model.optim.safetensors").string(), logical.params(), s.m, s.v,
                   s.steps_done, tr.optimizer().config());
    fs::remove_all(dir);  // a checkpoint of this step from an abandoned run
    fs::rename(tmp, dir);
    auto all = eval::list_checkpoints(run.string());
    for (size_t i = 0; i + static_cast<size_t>(o.keep) < all.size(); ++i)
      fs::remove_all(all[i].second);
    log_write({{"event", "checkpoint"}, {"step", pos.step}, {"path", dir.string()},
               {"state_hash", fmt::format("{:016x}", s.hash)}});
  };
  auto save_model_file = [&]() {  // synthetic: --out and its optimizer file
    const LogicalState s = sharding->gather(tr);
    last_checkpoint = o.out;
    if (!root) return;
    eval::save_model(o.out, mc, logical.params(), s.params);
    save_optimizer(eval::optimizer_path(o.out), logical.params(), s.m, s.v, s.steps_done,
                   tr.optimizer().config());
  };

  // Validation (data) sharded like training: each replica scores its samples of every batch,
  // the ranks of an SP group complete each other's forecasts, the score sums are added over the
  // replicas.
  std::optional<StagedForward> staged;
  eval::EvalParallel epar;
  if (data && data->validation() && dist.pipelined()) {
    staged.emplace(tr, dist);
    epar.forward = [&](const model::BatchView& b, float* pred) { (*staged)(b, pred); };
  }
  if (dist.active()) {
    if (p.sp > 1)
      epar.complete_pred = [&dist](float* pr, int64_t n) {
        dist.grid().sp().all_reduce(std::span<float>(pr, static_cast<size_t>(n)));
      };
    epar.sum_over_shards = [&dist](double* pr, int64_t n) {
      dist.grid().dp().all_reduce(std::span<double>(pr, static_cast<size_t>(n)));
    };
  }
  auto validate = [&]() {
    data::ForecastDataset* val = data ? data->validation() : nullptr;
    if (!val) return;
    if (val->size() == 0)
      fail("the validation period {}/{} has no samples", data->config().val.begin,
           data->config().val.end);
    const auto t = Clock::now();
    // ZeRO-3: the forwards gather each unit's weights through the model's parameter hooks (a
    // collective over the replicas), so every replica must run the same forwards. A last batch
    // of fewer samples than replicas leaves some replica without a forward, and through the
    // pipeline (chunks of the micro-batch) a partial last batch may give the replicas different
    // chunk counts: then the weights are gathered whole for the validation (hooks off) and
    // released after.
    ZeroOptimizer* z3 = dist.zero() && dist.zero()->stage() == 3 ? dist.zero() : nullptr;
    bool whole = false;
    if (z3) {
      const int64_t nb = val->num_batches();
      const bool last_evaluated = o.val_batches <= 0 || o.val_batches >= nb;
      const int64_t last_n = val->size() - (nb - 1) * o.batch;
      whole = last_evaluated && nb > 0 &&
              (last_n < dist.dp() || (dist.pipelined() && last_n != o.batch));
      if (whole) {
        z3->gather_all_parameters();
        tr.model().set_parameter_hooks(nullptr);
      }
    }
    const auto sc = eval::evaluate(tr.model(), tr.params(), *val, o.val_batches, {},
                                   dist.active() || dist.pipelined() ? &epar : nullptr);
    if (whole) {
      tr.model().set_parameter_hooks(z3);
      z3->release_all_parameters();
    }
    const double secs = seconds_since(t);
    if (!root) return;
    fmt::print("validation at step {} ({:.1f} s): {}\n", pos.step, secs, scores_line(sc));
    std::fflush(stdout);
    log_write({{"event", "validation"}, {"step", pos.step}, {"seconds", secs},
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
  const auto t0 = Clock::now();
  const int64_t first_step = pos.step;
  double first_loss = 0;
  elapsed = elapsed0;
  src.seek(pos);
  if (dist.active()) dist.grid().reset_stats();
  reset_peak_rss();  // VmHWM from here: the training steps, not the set-up
  RunRecord record;  // --report-json
  while (pos.step < o.steps) {
    const model::BatchView b = src.next(pos);
    const auto ts = Clock::now();
    StepResult r;
    try {
      r = tr.step(b);
    } catch (const Error& e) {
      // Trainer::step refuses a non-finite loss after the all-reduce: every rank alike. Any
      // other error (e.g. a failed collective) is this rank's own.
      if (std::string_view(e.what()).rfind("loss is ", 0) != 0) throw;
      log_write({{"event", "non_finite_loss"}, {"step", pos.step + 1}, {"message", e.what()}});
      throw AgreedStop(fmt::format(
          "{}\nthe run stopped at step {} of {}; {}", e.what(), pos.step + 1, o.steps,
          last_checkpoint.empty()
              ? std::string("no checkpoint had been written yet")
              : fmt::format("the last good checkpoint, {}, is intact (continue from it with "
                            "--resume, e.g. after lowering --lr)",
                            last_checkpoint)));
    }
    record.step_seconds.push_back(seconds_since(ts));
    ++pos.step;
    const bool first = pos.step == first_step + 1, last = pos.step == o.steps;
    if (first && dist.active()) {
      record.first_step = dist.grid().stats();
      if (root)
        fmt::print("communication per step (rank 0): {}\n", dist.grid().stats().report());
    }
    if (first) first_loss = r.loss;
    loss_ema = pos.step == 1 ? r.loss : 0.9 * loss_ema + 0.1 * r.loss;
    const double el = seconds_since(t0);
    elapsed = elapsed0 + el;
    const double per = el / static_cast<double>(pos.step - first_step);
    if (loss_log) fmt::print(loss_log.get(), "{:.17g} {:.17g}\n", r.loss, r.grad_norm);
    if (last && root && dist.pipeline() && p.pp > 1)
      fmt::print(stderr, "pipeline, last step (rank 0): {:.3f} s, {:.3f} s waiting for messages "
                 "(measured bubble {:.2f}), {} sent\n",
                 dist.pipeline()->last_stats().seconds, dist.pipeline()->last_stats().idle,
                 dist.pipeline()->last_stats().bubble(),
                 human_bytes(static_cast<double>(dist.pipeline()->last_stats().bytes_sent)));
    log_write({{"event", "step"}, {"step", pos.step}, {"epoch", pos.epoch}, {"loss", r.loss},
               {"grad_norm", r.grad_norm}, {"lr", r.lr},
               {"tokens_per_s", static_cast<double>(B * N) / per}});
    if (root && (tty || pos.step % o.log_every == 0 || last)) {
      const std::string head =
          src.has_epochs() ? fmt::format("step {:>6}/{} | epoch {}", pos.step, o.steps, pos.epoch)
                           : fmt::format("step {:>5}/{}", pos.step, o.steps);
      const std::string line = fmt::format(
          "{} | loss {:.4f} (avg {:.4f}) | lr {:.2e} | {:.0f} tok/s | {:.1f} GFLOP/s | ETA {}",
          head, r.loss, loss_ema, r.lr, static_cast<double>(B * N) / per, flops_step / per / 1e9,
          format_eta(per * static_cast<double>(o.steps - pos.step)));
      if (tty)
        fmt::print(stderr, "\r{}\033[K", line);
      else
        fmt::print(stderr, "{}\n", line);
    }
    // A signal may have reached some ranks only: stop when any rank saw one (every rank then
    // checkpoints and stops at this same step).
    const int sig = static_cast<int>(dist.max_over_world(g_signal.load()));
    if (data) {
      if ((o.val_every > 0 && pos.step % o.val_every == 0) || last) {
        if (tty) fmt::print(stderr, "\n");
        validate();
      }
      if (pos.step % o.checkpoint_every == 0 || last || sig != 0) save_run_checkpoint();
    } else if (sig != 0 && !o.benchmark) {
      save_model_file();
    }
    if (sig != 0) {
      if (tty) fmt::print(stderr, "\n");
      log_write({{"event", "interrupted"}, {"step", pos.step}, {"signal", sig}});
      throw AgreedStop(
          last_checkpoint.empty() || (!data && o.benchmark)
              ? fmt::format("interrupted by signal {} at step {}; no checkpoint written", sig,
                            pos.step)
              : fmt::format("interrupted by signal {} at step {}; checkpoint {} written{}", sig,
                            pos.step, last_checkpoint,
                            data ? " (continue with --resume)" : ""));
    }
  }
  if (tty) fmt::print(stderr, "\n");
  loss_log.reset();
  const double secs = seconds_since(t0);

  if (data) {
    log_write({{"event", "end"}, {"step", pos.step}, {"loss_ema", loss_ema},
               {"elapsed_s", elapsed}});
    if (root)
      fmt::print("trained to step {} in {:.1f} s (this run: {} steps); final checkpoint {} "
                 "(evaluate it with: seqvit evaluate --checkpoint {})\n",
                 pos.step, elapsed, pos.step - first_step, last_checkpoint, run.string());
    return;
  }

  // Synthetic: the run record, the held-out loss, the replica check and the model file.
  const size_t peak_rss = seqvit::peak_rss();
  record.peak_rss = peak_rss;
  if (!o.report_json.empty()) write_run_report(o.report_json, o, mc, dist, tr, record);
  if (o.benchmark) {  // the steps only: no evaluation, no replica check, no checkpoint
    if (root)
      fmt::print("benchmark: {} steps in {:.2f} s; peak resident memory of rank 0 while "
                 "training (VmHWM) {}; no evaluation or checkpoint (--benchmark)\n",
                 o.steps, secs, human_bytes(static_cast<double>(peak_rss)));
    std::fflush(stdout);
    dist.barrier();
    return;
  }
  const double eval1 = held_out_loss();
  const double pers = synth->persistence(dist);
  if (dist.zero()) dist.zero()->gather_all_parameters();  // ZeRO-3: the whole model again
  std::vector<float> host_params(static_cast<size_t>(tr.model().params().total()));
  tr.read_params(host_params.data());
  const uint64_t hash = dist.check_replicated(host_params.data(), tr.model().params());
  save_model_file();  // collective: the logical state gathered on rank 0, which writes it
  if (!root) {
    dist.barrier();
    return;
  }
  if (dist.active()) {
    std::string what;
    if (p.pp > 1) what += fmt::format(" ({} pipeline stages", p.pp);
    if (p.tp > 1)
      what += fmt::format("{}the tensors replicated over tensor parallelism",
                          what.empty() ? " (" : "; ");
    if (!what.empty() && p.dp * p.sp > 1)
      what += fmt::format("; each shard on its {} replicas", p.dp * p.sp);
    if (!what.empty()) what += ")";
    fmt::print("weights identical on all {} ranks{} (hash {:016x})\n", p.world(), what, hash);
  }
  if (peak_rss > 0)
    fmt::print("peak resident memory of rank 0 while training (VmHWM): {}\n",
               human_bytes(static_cast<double>(peak_rss)));
  fmt::print("trained {} steps in {:.1f} s; training loss {:.4f} -> {:.4f}; held-out loss "
             "{:.4f} -> {:.4f} (persistence forecast: {:.4f})\n",
             o.steps, secs, first_loss, loss_ema, eval0, eval1, pers);
  fmt::print("wrote {} and {}\n", o.out, eval::optimizer_path(o.out));
  std::fflush(stdout);
  dist.barrier();
}

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(TrainOptions& o) {
  if (o.data.empty()) return std::make_unique<SyntheticSource>(o);
  return std::make_unique<DatasetSource>(o);
}

void run_training(TrainOptions o, backend::Device& device) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  // Before the data is opened (Distributed repeats it with the model).
  validate_parallel_options(o.par, o.bf16, "train");
  check_step_options(o);
  const auto src = make_batch_source(o);
  // MPI and the rank grid (only with a degree > 1; refuses a multi-rank launch without them),
  // the whole configuration checked on every rank alike before anything is allocated.
  std::optional<Distributed> dist;
  dist.emplace(o.par, o.bf16, src->model(), o.batch, device);
  if (!dist->active()) return train_loop(o, *src, *dist, device);
  try {
    train_loop(o, *src, *dist, device);
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
    // the ranks communicate from here on: an error on one rank ends them all (no hang)
    std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", dist->grid().rank(), e.what());
    parallel::abort_all(1);
  }
}

}  // namespace seqvit::train
