// seqvit evaluate: scores a forecast checkpoint on a split of NetCDF data (docs/evaluation.md):
// latitude-weighted RMSE (WeatherBench2's and the mean per forecast) and ACC per output variable
// and lead time, the model beside the persistence and climatology forecasts. Each lead is
// evaluated on its own dataset (lead_hours = {L}), so every initial time of the split counts for
// every lead. The data are normalised with the checkpoint's statistics, as the model saw them in
// training, and scored against the checkpoint's climatology: only the evaluated split's data
// are read. A checkpoint written before the climatology was stored gets it computed from the
// training period of the data (a note on stderr says so).
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "cli/commands.h"
#include "cli/grid_flag.h"
#include "cli/parallel_flags.h"
#include "train/options.h"
#include "core/check.h"
#include "data/cf_time.h"
#include "data/forecast_dataset.h"
#include "data/grid_source.h"
#include "eval/metrics.h"
#include "io/safetensors.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit::cli {

namespace {

struct EvaluateOptions {
  std::string checkpoint;
  std::vector<std::string> data;  // empty: the checkpoint's paths
  std::string split = "test";
  std::string lead_hours;  // empty: the checkpoint's leads
  int64_t batch = 8, max_batches = 0;
  std::string json, csv;
  std::string stats_cache;  // empty: beside the data (docs/data.md)
  std::string grid, regrid_method;  // empty: the checkpoint's (given: must equal it)
  int threads = 0;
  std::string device = "cpu";
};

data::Split parse_split(const std::string& s) {
  if (s == "test") return data::Split::test;
  if (s == "val") return data::Split::val;
  if (s == "train") return data::Split::train;
  fail("--split '{}' is not valid: use test, val or train", s);
}

const data::TimeRange& split_range(const data::ForecastConfig& c, data::Split s) {
  return s == data::Split::train ? c.train : s == data::Split::val ? c.val : c.test;
}

// Checks, from the files' headers only, that the data hold every variable the model needs on the
// model's grid, and that each lead is a whole number of data time steps. Errors name the data,
// the variable or lead, and what would be valid.
void check_data(const eval::ForecastCheckpoint& ck, const data::ForecastConfig& cfg,
                const std::vector<double>& leads, bool paths_from_checkpoint) {
  const std::string where = fmt::format("{}", fmt::join(cfg.paths, ", "));
  std::unique_ptr<data::GridSource> opened;
  try {
    opened = data::open_forecast_source(cfg);  // through the regridding of --grid
  } catch (const Error& e) {
    if (!paths_from_checkpoint) throw;
    fail("{} (the data paths stored in {}; give --data to read the data from elsewhere)",
         e.what(), ck.path);
  }
  const data::GridSource& nc = *opened;
  std::vector<std::string> names = ck.model.variables;
  for (const auto& n : ck.model.out_variables)
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  double step = 0;
  for (const auto& name : names) {
    data::FieldRef ref;
    try {
      ref = nc.resolve(name);
    } catch (const Error& e) {
      fail("data {} lack variable '{}' that the model in {} needs: {}", where, name, ck.path,
           e.what());
    }
    const auto& v = nc.variable(ref.variable);
    const int c = cfg.coarsen;
    if (v.H() != ck.model.img_h * c || v.W() != ck.model.img_w * c)
      fail("data {}: '{}' is on a {}x{} grid{}, but the model in {} is for {}x{}{}", where, name,
           v.H(), v.W(),
           c > 1 ? fmt::format(" ({}x{} after coarsening by {})", v.H() / c, v.W() / c, c) : "",
           ck.path, ck.model.img_h, ck.model.img_w,
           c > 1 ? fmt::format(" (data of {}x{} coarsened by {})", ck.model.img_h * c,
                               ck.model.img_w * c, c)
                 : "");
    for (size_t t = 1; t < v.times.size(); ++t) {
      const double d = v.times[t] - v.times[t - 1];
      if (d > 0 && (step == 0 || d < step)) step = d;
    }
  }
  if (step > 0)
    for (double l : leads) {
      const double k = l / step;
      if (std::abs(k - std::round(k)) > 1e-6)
        fail("--lead-hours: {} h is not a multiple of the data's time step of {} h", l, step);
    }
}

// Progress on stderr, for evaluations that take more than a second: one updating line on a
// terminal, a line every 10 s otherwise.
class ProgressLine {
 public:
  void update(double lead, int64_t done, int64_t total) {
    const double t = std::chrono::duration<double>(Clock::now() - start_).count();
    if (done < total && (t < 1.0 || t - last_ < (tty_ ? 0.2 : 10.0))) return;
    if (done == total && !shown_) return;
    last_ = t;
    shown_ = true;
    fmt::print(stderr, "{}evaluate: lead {} h: batch {}/{}, {:.1f} s{}", tty_ ? "\r" : "", lead,
               done, total, t, tty_ ? "" : "\n");
    if (tty_ && done == total) fmt::print(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_ = Clock::now();
  double last_ = -1e9;
  bool tty_ = ::isatty(2) != 0, shown_ = false;
};

struct LeadInfo {
  double lead = 0;
  int64_t forecasts = 0, skipped = 0, filled = 0;
  double first_time = 0, last_time = 0;  // initial times evaluated, hours since 1970
};

void run_evaluate(const EvaluateOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const auto dev = open_device(o.device);
  const data::Split split = parse_split(o.split);
  if (o.batch < 1) fail("--batch must be >= 1, got {}", o.batch);
  if (o.max_batches < 0) fail("--max-batches must be >= 0 (0: all), got {}", o.max_batches);
  // Output files are written at the end: find an impossible place before a long evaluation.
  for (const auto& [flag, path] : {std::pair{"--json", o.json}, std::pair{"--csv", o.csv}}) {
    if (path.empty()) continue;
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      fail("{} {}: directory '{}' does not exist", flag, path, parent.string());
  }
  const eval::ForecastCheckpoint ck = eval::load_forecast_checkpoint(o.checkpoint);
  check_checkpoint_grid(ck.data, ck.path, o.grid, o.regrid_method);
  const std::vector<double> leads =
      o.lead_hours.empty() ? ck.data.lead_hours : train::parse_lead_hours(o.lead_hours);

  data::ForecastConfig cfg = ck.data;
  if (!o.data.empty()) cfg.paths = o.data;
  if (cfg.paths.empty()) fail("{}: the checkpoint names no data paths; give --data", ck.path);
  eval::use_checkpoint_statistics(ck, cfg);
  cfg.batch_size = static_cast<int>(o.batch);
  cfg.shuffle = false;  // time order: --max-batches takes the first initial times of the split
  if (!o.stats_cache.empty()) cfg.cache_path = o.stats_cache;
  check_data(ck, cfg, leads, o.data.empty());

  const auto& range = split_range(cfg, split);
  fmt::print("checkpoint: {} (step {})\n", ck.path, ck.step);
  fmt::print("model: {} tokenization, {}x{} grid, patch {}, D={}, depth {}; {} -> {}\n",
             model::to_string(ck.model.tokenization), ck.model.img_h, ck.model.img_w,
             ck.model.patch_size, ck.model.embed_dim, ck.model.depth,
             fmt::join(ck.model.variables, ","), fmt::join(ck.model.out_variables, ","));
  fmt::print("data: {}{}{}\n", fmt::join(cfg.paths, ", "),
             o.data.empty() ? " (from the checkpoint)" : "",
             cfg.grid.empty() ? ""
                              : fmt::format(", regridded onto {} ({})", cfg.grid,
                                            data::regrid_method_name(cfg.regrid_method)));
  fmt::print("split: {} [{}, {}), lead(s) {} h, batch {}{}, {} threads\n", o.split, range.begin,
             range.end, fmt::join(leads, ", "), o.batch,
             o.max_batches > 0 ? fmt::format(", at most {} batches per lead", o.max_batches) : "",
             omp_get_max_threads());
  const auto& clim = ck.climatology;
  if (!clim.empty()) {
    fmt::print("climatology: from the checkpoint, the mean over [{}, {}) ({} time steps, {} to "
               "{})\n",
               clim.period.begin, clim.period.end, clim.steps, clim.first_time, clim.last_time);
  } else {
    fmt::print("climatology: computed from the data over the training period [{}, {})\n",
               cfg.train.begin, cfg.train.end);
    fmt::print(stderr,
               "note: {} holds no climatology (written before checkpoints stored it): it is "
               "computed from the training period [{}, {}) of the data, which the data must "
               "therefore hold (docs/evaluation.md)\n",
               ck.path, cfg.train.begin, cfg.train.end);
  }
  for (double l : leads)
    if (std::find(ck.data.lead_hours.begin(), ck.data.lead_hours.end(), l) ==
        ck.data.lead_hours.end())
      fmt::print("note: the model was trained for lead(s) {} h; {} h is not one of them\n",
                 fmt::join(ck.data.lead_hours, ", "), l);
  std::fflush(stdout);

  model::ClimaX m(ck.model, model::ModelShard{}, *dev);
  m.plan(o.batch, model::Precision::F32);
  backend::Allocation params(*dev, ck.params.size() * sizeof(float));  // the weights, on the device
  dev->copy_to_device(params.get(), ck.params.data(), params.bytes());
  m.sync_weights(params.as<float>());
  std::vector<eval::Scores> scores;
  std::vector<LeadInfo> info;
  ProgressLine progress;
  for (double lead : leads) {
    cfg.lead_hours = {lead};
    std::optional<data::ForecastDataset> opened;
    try {
      opened.emplace(cfg, split);
    } catch (const Error& e) {
      if (!clim.empty()) throw;
      fail("{} (note: {} holds no climatology, so the data must also hold its training period "
           "[{}, {}) to compute it from)",
           e.what(), ck.path, cfg.train.begin, cfg.train.end);
    }
    data::ForecastDataset& ds = *opened;
    eval::check_climatology_grid(ck, ds);
    LeadInfo li;
    li.lead = lead;
    li.forecasts = o.max_batches > 0 ? std::min(ds.size(), o.max_batches * o.batch) : ds.size();
    li.first_time = ds.sample_time(0);
    li.last_time = ds.sample_time(li.forecasts - 1);
    li.skipped = ds.skipped_samples();
    const auto s = eval::evaluate(m, params.as<float>(), ds, o.max_batches,
                                  [&](int64_t done, int64_t total) {
                                    progress.update(lead, done, total);
                                  });
    li.filled = ds.filled_values();
    scores.insert(scores.end(), s.begin(), s.end());
    info.push_back(li);
    fmt::print("lead {} h: {} forecasts from {} to {} (initial times){}{}\n", lead, li.forecasts,
               data::iso8601(li.first_time), data::iso8601(li.last_time),
               li.skipped ? fmt::format("; {} skipped for missing values", li.skipped) : "",
               li.filled ? fmt::format("; {} missing values filled with the training mean",
                                       li.filled)
                         : "");
    std::fflush(stdout);
  }
  // Variable order of the model, then lead.
  auto var_index = [&](const std::string& v) {
    return std::find(ck.model.out_variables.begin(), ck.model.out_variables.end(), v) -
           ck.model.out_variables.begin();
  };
  std::stable_sort(scores.begin(), scores.end(), [&](const auto& a, const auto& b) {
    const auto ia = var_index(a.variable), ib = var_index(b.variable);
    return ia != ib ? ia < ib : a.lead_hours < b.lead_hours;
  });
  fmt::print("\n{}", eval::format_scores_table(scores));
  fmt::print(
      "rmse_wb2: sqrt of the mean over forecasts of the latitude-weighted MSE (WeatherBench2)\n"
      "rmse_mean_per_forecast: mean over forecasts of the latitude-weighted RMSE (ClimaX)\n"
      "both in each variable's units; acc: centred anomaly correlation against the "
      "training-period climatology (docs/evaluation.md)\n");

  if (!o.json.empty()) {
    nlohmann::json j;
    j["checkpoint"] = ck.path;
    j["step"] = ck.step;
    j["data"] = cfg.paths;
    j["split"] = o.split;
    j["split_range"] = {range.begin, range.end};
    j["max_batches"] = o.max_batches;
    if (!clim.empty())
      j["climatology"] = {{"source", "checkpoint"},
                          {"period", {clim.period.begin, clim.period.end}},
                          {"steps", clim.steps},
                          {"first_time", clim.first_time},
                          {"last_time", clim.last_time}};
    else
      j["climatology"] = {{"source", "data"}, {"period", {cfg.train.begin, cfg.train.end}}};
    j["leads"] = nlohmann::json::array();
    for (const auto& li : info)
      j["leads"].push_back({{"lead_hours", li.lead},
                            {"forecasts", li.forecasts},
                            {"first_time", data::iso8601(li.first_time)},
                            {"last_time", data::iso8601(li.last_time)},
                            {"skipped", li.skipped},
                            {"filled", li.filled}});
    j["scores"] = nlohmann::json::parse(eval::scores_to_json(scores));
    io::write_file_atomic(o.json, j.dump(2) + "\n");
    fmt::print("wrote {}\n", o.json);
  }
  if (!o.csv.empty()) {
    io::write_file_atomic(o.csv, eval::scores_to_csv(scores));
    fmt::print("wrote {}\n", o.csv);
  }
}

}  // namespace

void add_evaluate(CLI::App& app) {
  auto o = std::make_shared<EvaluateOptions>();
  auto* c = app.add_subcommand(
      "evaluate", "Score a forecast checkpoint on gridded data: RMSE and ACC per variable and "
                  "lead, beside persistence and climatology");
  c->add_option("--checkpoint", o->checkpoint,
                "model file, checkpoint step directory or run directory (its latest checkpoint)")
      ->required();
  c->add_option("--data", o->data,
                "NetCDF or GRIB files or directories, or Zarr stores (default: the checkpoint's)");
  add_checkpoint_grid_flags(c, &o->grid, &o->regrid_method);
  c->add_option("--split", o->split, "test, val or train (ranges from the checkpoint)")
      ->capture_default_str();
  c->add_option("--lead-hours", o->lead_hours,
                "lead times in hours, comma separated (default: the checkpoint's)");
  c->add_option("--batch", o->batch, "forecasts per forward pass")->capture_default_str();
  c->add_option("--max-batches", o->max_batches,
                "evaluate at most this many batches per lead, from the start of the split "
                "(0: all)");
  c->add_option("--json", o->json, "write the scores as JSON to this file");
  c->add_option("--csv", o->csv, "write the scores as CSV to this file");
  c->add_option("--stats-cache", o->stats_cache,
                "statistics cache file (default: seqvit_stats.safetensors beside the data; "
                "give one for read-only data)");
  c->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all)");
  add_device_flag(c, o->device);
  c->callback([o] { run_evaluate(*o); });
}

}  // namespace seqvit::cli
