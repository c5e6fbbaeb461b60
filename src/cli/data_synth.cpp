// seqvit data synth: writes a synthetic ERA5-like dataset (forced shallow water on the sphere,
// docs/synthetic_data.md) as CF NetCDF in the ERA5 / WeatherBench layout, with progress.
#include <fmt/core.h>
#include <unistd.h>

#include <cmath>

#include "cli/commands.h"
#include "cli/grid_flag.h"
#include "core/check.h"
#include "data/synth/era5_synth.h"

namespace seqvit::cli {

namespace {

struct SynthOptions {
  std::string out, grid = "32x64";
  int years = 1, start_year = 1979, days = 0;
  uint64_t seed = 0;
};

void run_synth(const SynthOptions& o) {
  data::SynthSpec spec;
  spec.out_dir = o.out;
  const auto [h, w] = parse_grid_flag(o.grid, "--grid", "32x64, 64x128 or 128x256");
  spec.H = static_cast<int>(h);
  spec.W = static_cast<int>(w);
  spec.years = o.years;
  spec.start_year = o.start_year;
  spec.seed = o.seed;
  spec.days = o.days;
  const bool tty = isatty(fileno(stderr));
  std::string last_stage;
  auto progress = [&](const data::SynthProgress& p) {
    const bool done = p.done == p.total;
    if (!tty && !done && p.done % 30 != 0) return;  // a line a month when logging to a file
    const double eta = p.done > 0 ? p.elapsed_s / p.done * (p.total - p.done) : NAN;
    const std::string line =
        fmt::format("synth {:>10}: day {:>4}/{} | {:.1f} s elapsed{}", p.stage, p.done, p.total,
                    p.elapsed_s, std::isfinite(eta) ? fmt::format(" | stage ETA {:.0f} s", eta) : "");
    if (tty)
      fmt::print(stderr, "\r{}\033[K{}", line, done ? "\n" : "");
    else
      fmt::print(stderr, "{}\n", line);
  };
  const auto files = data::synthesize(spec, progress);
  fmt::print("wrote {} files under {} ({}x{} grid, {} year(s) from {}, seed {})\n", files.size(),
             o.out, h, w, o.years, o.start_year, o.seed);
}

}  // namespace

void add_data_synth(CLI::App& data) {
  auto o = std::make_shared<SynthOptions>();
  auto* c = data.add_subcommand(
      "synth", "Generate a synthetic ERA5-like dataset (CF NetCDF, packed shorts, 6-hourly)");
  c->add_option("--out", o->out, "output directory")->required();
  c->add_option("--grid", o->grid, "HxW: 32x64 (5.625 deg), 64x128 or 128x256")
      ->capture_default_str();
  c->add_option("--years", o->years, "years of data")->capture_default_str();
  c->add_option("--start-year", o->start_year, "first year")->capture_default_str();
  c->add_option("--days", o->days, "stop after this many days (previews; needs --years 1)");
  c->add_option("--seed", o->seed, "random seed")->capture_default_str();
  c->callback([o] { run_synth(*o); });
}

}  // namespace seqvit::cli
