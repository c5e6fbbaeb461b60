// seqvit predict: one forecast from a trained checkpoint at a given input time, written as a CF
// NetCDF file on the input's grid and orientation, or on the equiangular grid of the checkpoint's
// --grid when it was trained on regridded data (docs/forecasts.md), with optional maps of
// the forecast, the truth at the valid time and their difference.
#include "eval/predict.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <vector>

#include "cli/commands.h"
#include "cli/grid_flag.h"
#include "cli/parallel_flags.h"
#include "core/check.h"
#include "data/cf_time.h"
#include "data/forecast_writer.h"
#include "eval/metrics.h"
#include "io/map_render.h"
#include "io/png.h"

namespace seqvit::cli {

namespace {
namespace fs = std::filesystem;

struct PredictOptions {
  std::string checkpoint, time, out, png_dir;
  std::vector<std::string> data;
  std::string grid, regrid_method;  // empty: the checkpoint's (given: must equal it)
  double lead_hours = 0;  // 0: the checkpoint's first lead
  int threads = 0;
  std::string device = "cpu";
  std::string command_line;
};

// Fails early (before the model runs) when `file`'s directory is missing or not writable.
void check_writable_dir(const std::string& file, const char* flag) {
  const fs::path dir =
      fs::path(file).parent_path().empty() ? fs::path(".") : fs::path(file).parent_path();
  if (!fs::is_directory(dir))
    fail("{} {}: directory '{}' does not exist", flag, file, dir.string());
  if (::access(dir.c_str(), W_OK) != 0)
    fail("{} {}: directory '{}' is not writable", flag, file, dir.string());
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string lead_str(double h) { return fmt::format("{:g} h", h); }

void write_maps(const std::string& dir, const eval::Prediction& p,
                const data::ForecastDataset& ds) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    fail("--png {}: cannot create the directory: {}", dir, ec.message());
  const int64_t n = p.H * p.W;
  const std::string valid = data::iso8601(p.time + p.lead_hours);
  const std::string sub = fmt::format("valid {}  lead {}", valid, lead_str(p.lead_hours));
  std::vector<float> err(static_cast<size_t>(n));
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    const std::string& name = p.outputs[v];
    const float* f = p.forecast.data() + v * n;
    const float* y = p.truth.data() + v * n;
    const auto& units = ds.source().variable(ds.field_ref(name).variable).units;
    // Forecast and truth share one colour range, so the two maps compare by eye.
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, emax = 0;
    for (int64_t q = 0; q < n; ++q) {
      for (float x : {f[q], y[q]})
        if (std::isfinite(x)) lo = std::min(lo, double(x)), hi = std::max(hi, double(x));
      err[q] = f[q] - y[q];
      if (std::isfinite(err[q])) emax = std::max(emax, std::abs(double(err[q])));
    }
    io::MapStyle s;
    s.subtitle = sub;
    s.units = units;
    s.lo = lo, s.hi = hi;
    s.title = name + " forecast";
    io::write_png(dir + "/" + name + "_forecast.png", io::render_map(f, p.H, p.W, s));
    s.title = name + " truth";
    io::write_png(dir + "/" + name + "_truth.png", io::render_map(y, p.H, p.W, s));
    s.title = name + " error (forecast - truth)";
    s.lo = -emax, s.hi = emax, s.diverging = true;
    io::write_png(dir + "/" + name + "_error.png", io::render_map(err.data(), p.H, p.W, s));
  }
}

void run_predict(const PredictOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const auto dev = open_device(o.device);
  if (o.lead_hours < 0) fail("--lead-hours {} must be positive", o.lead_hours);
  const double time = data::parse_iso_datetime(o.time) / 3600.0;
  check_writable_dir(o.out, "--out");
  const auto t0 = std::chrono::steady_clock::now();

  const auto ckpt = eval::load_forecast_checkpoint(o.checkpoint);
  check_checkpoint_grid(ckpt.data, ckpt.path, o.grid, o.regrid_method);
  if (ckpt.climatology.empty())
    fmt::print(stderr,
               "note: {} holds no climatology (written before checkpoints stored it): it is "
               "computed from the training period [{}, {}) of the data, which the data must "
               "therefore hold (docs/forecasts.md)\n",
               ckpt.path, ckpt.data.train.begin, ckpt.data.train.end);
  const auto ds = eval::prediction_dataset(ckpt, o.data, o.lead_hours);
  const double lead = ds->config().lead_hours.front();
  const auto& trained = ckpt.data.lead_hours;
  if (std::find(trained.begin(), trained.end(), lead) == trained.end())
    fmt::print("note: lead {} is not among the checkpoint's training leads ({} h)\n",
               lead_str(lead), fmt::join(trained, ", "));
  const int64_t sample = eval::find_sample(*ds, time);
  const auto p = eval::predict(ckpt, *ds, sample, *dev);

  // The file.
  const int64_t n = p.H * p.W;
  std::vector<data::ForecastField> fields;
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    const auto& ref = ds->field_ref(p.outputs[v]);
    const auto& var = ds->source().variable(ref.variable);
    data::ForecastField f;
    f.name = p.outputs[v];
    f.units = var.units;
    f.long_name = var.long_name;
    f.standard_name = data::cf_standard_name(ref.variable);
    f.level_hpa = ref.level >= 0 ? var.levels_hpa[ref.level] : -1;
    f.values = p.forecast.data() + v * n;
    fields.push_back(f);
  }
  data::ForecastMetadata meta;
  meta.reference_time = p.time;
  meta.lead_hours = p.lead_hours;
  meta.checkpoint = ckpt.path;
  meta.checkpoint_step = ckpt.step;
  meta.history = now_iso() + ": " + o.command_line;
  data::write_forecast_netcdf(o.out, data::forecast_grid(*ds), fields, meta);
  if (!o.png_dir.empty()) write_maps(o.png_dir, p, *ds);

  fmt::print("forecast from {} at lead {} (valid {}), checkpoint {} (step {}), grid {}x{}\n",
             data::iso8601(p.time), lead_str(p.lead_hours), data::iso8601(p.time + p.lead_hours),
             ckpt.path, ckpt.step, p.H, p.W);
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    eval::MetricAccumulator a(ds->lat().data(), p.H, p.W);
    a.add(p.forecast.data() + v * n, p.truth.data() + v * n, ds->climatology(p.outputs[v]).data());
    // One forecast: both RMSE definitions (docs/evaluation.md) are the same number.
    fmt::print("  {:<8} RMSE {:.5g}  ACC {:.3f} (against the data at the valid time)\n",
               p.outputs[v], a.rmse_wb2(), a.acc());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(
      "wrote {}{} in {:.2f} s\n", o.out,
      o.png_dir.empty() ? "" : fmt::format(" and {} maps to {}/", 3 * p.outputs.size(), o.png_dir),
      secs);
}
}  // namespace

void add_predict(CLI::App& app) {
  auto o = std::make_shared<PredictOptions>();
  auto* c = app.add_subcommand(
      "predict", "One forecast from a trained checkpoint, as CF NetCDF (and PNG maps)");
  c->add_option("--checkpoint", o->checkpoint,
                "model file, step directory or run directory (its latest checkpoint)")
      ->required();
  c->add_option("--data", o->data,
                "NetCDF or GRIB files or directories, or Zarr stores (default: the training data)");
  add_checkpoint_grid_flags(c, &o->grid, &o->regrid_method);
  c->add_option("--time", o->time, "input time, ISO 8601 (e.g. 1979-01-07T00:00:00Z)")->required();
  c->add_option("--out", o->out, "output NetCDF file")->required();
  c->add_option("--png", o->png_dir,
                "directory for <var>_forecast.png, <var>_truth.png and <var>_error.png");
  c->add_option("--lead-hours", o->lead_hours, "lead time (default: the checkpoint's first)");
  c->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all)");
  add_device_flag(c, o->device);
  c->callback([o, c] {
    o->command_line = "seqvit predict";
    for (const auto* opt : c->get_options())
      if (opt->count() > 0 && opt->get_name() != "--help")
        for (const auto& r : opt->results()) o->command_line += " " + opt->get_name() + " " + r;
    run_predict(*o);
  });
}

}  // namespace seqvit::cli
