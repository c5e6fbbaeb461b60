// seqvit data regrid: reads fields through a RegriddedSource (conservative or bilinear, onto an
// equiangular HxW grid; docs/data.md "Regridding") and writes them as CF NetCDF-4, one time
// step of one level at a time (bounded memory), with progress on stderr.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "cli/commands.h"
#include "core/check.h"
#include "data/forecast_writer.h"
#include "data/grid_source.h"
#include "data/grid_writer.h"
#include "data/regridded_source.h"

namespace seqvit::cli {

namespace {

struct RegridOptions {
  std::vector<std::string> paths, vars;
  std::string grid, method = "conservative", out, weights_dir;
  double min_valid_fraction = 0.5;
};

// One output variable: a whole variable (all its levels) or one field (t2m, z_500).
struct Output {
  std::string name;               // as given to --var and written
  std::vector<data::FieldRef> refs;  // [L] (one without a level axis)
  const data::GridVariable* var = nullptr;
};

void run_regrid(const RegridOptions& o) {
  const data::LatLonGrid target = data::parse_grid(o.grid);  // validate flags before reading
  data::RegridOptions ro;
  ro.method = data::parse_regrid_method(o.method);
  ro.min_valid_fraction = o.min_valid_fraction;
  if (!(o.min_valid_fraction >= 0 && o.min_valid_fraction <= 1))
    fail("--min-valid-fraction {} must lie in [0, 1]", o.min_valid_fraction);
  std::set<std::string> seen;
  for (const auto& n : o.vars)
    if (!seen.insert(n).second) fail("--var '{}' is given twice", n);

  auto inner = data::open_grid_source(o.paths);
  const std::string cache_dir =
      o.weights_dir.empty() ? data::cache_dir_beside(o.paths, *inner) : o.weights_dir;
  // Resolve the names on the source first: errors list what there is.
  for (const auto& n : o.vars)
    if (!(inner->has(n) && inner->variable(n).has_level)) inner->resolve(n);
  const auto t0 = std::chrono::steady_clock::now();
  data::RegriddedSource src(std::move(inner), target, ro, cache_dir);

  std::vector<Output> outs;
  for (const auto& n : o.vars) {
    Output out{n, {}, nullptr};
    if (src.has(n) && src.variable(n).has_level) {
      out.var = &src.variable(n);
      for (size_t l = 0; l < out.var->levels_hpa.size(); ++l)
        out.refs.push_back({fmt::format("{}_{:g}", n, out.var->levels_hpa[l]), n, static_cast<int>(l)});
    } else {
      out.refs.push_back(src.resolve(n));
      out.var = &src.variable(out.refs.front().variable);
    }
    outs.push_back(std::move(out));
  }
  // The file must read back unambiguously: no field (z_500) given twice, e.g. by --var z and
  // --var z_500.
  std::map<std::string, std::string> field_of;  // field name -> the --var that gives it
  for (const auto& out : outs)
    for (const auto& r : out.refs) {
      const std::string f = out.refs.size() > 1 ? r.name : out.name;
      const auto [it, fresh] = field_of.emplace(f, out.name);
      if (!fresh)
        fail("--var '{}' and --var '{}' both give the field {}; write only one of them", it->second,
             out.name, f);
    }
  // One time axis for the file: every time-dependent output must have the same times.
  const data::GridVariable* timed = nullptr;
  for (const auto& out : outs) {
    if (!out.var->has_time) continue;
    if (!out.var->time_has_epoch)
      fail("--var '{}': the time axis '{}' has units '{}' without an epoch (not 'UNITS since "
           "DATE'); the output file needs real times: give the axis an epoch first, e.g. "
           "`ncatted -a units,{},o,c,'{} since 1979-01-01' in.nc`",
           out.name, out.var->time_axis, out.var->time_units, out.var->time_axis,
           out.var->time_units);
    if (!timed) {
      timed = out.var;
    } else if (out.var->times != timed->times) {
      fail("--var '{}' and '{}' have different times ({} and {} steps); write them to separate "
           "files",
           timed->name, out.var->name, timed->times.size(), out.var->times.size());
    }
  }
  std::vector<data::GridFileVariable> specs;
  for (const auto& out : outs) {
    data::GridFileVariable s;
    s.name = out.name;
    s.units = out.var->units;
    s.long_name = out.var->long_name;
    s.standard_name = data::cf_standard_name(out.var->name);
    if (out.refs.size() > 1 || (out.refs.front().level >= 0 && out.name == out.var->name))
      s.levels_hpa = out.var->levels_hpa;
    s.has_time = out.var->has_time;
    specs.push_back(s);
  }
  std::string history = "seqvit data regrid";
  for (const auto& p : o.paths) history += " " + p;
  history += fmt::format(" --grid {} --method {} --min-valid-fraction {:g}", o.grid, o.method,
                         o.min_valid_fraction);
  for (const auto& n : o.vars) history += " --var " + n;
  history += " --out " + o.out;
  const std::vector<double> no_times;
  data::GridFileWriter w(o.out, target.lat, target.lon, timed ? timed->times : no_times, specs,
                         history);

  int64_t total = 0, done = 0, missing = 0;
  for (const auto& out : outs) total += out.var->T() * static_cast<int64_t>(out.refs.size());
  std::vector<float> buf(static_cast<size_t>(target.H() * target.W()));  // [H*W]
  const bool tty = isatty(fileno(stderr));
  auto last = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& name, bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last < std::chrono::seconds(tty ? 1 : 10)) return;
    last = now;
    const double s = std::chrono::duration<double>(now - t0).count();
    const std::string line = fmt::format("data regrid: {} {}/{} fields ({:.0f}%) | {:.1f} s", name,
                                         done, total, 100.0 * done / std::max<int64_t>(total, 1), s);
    if (tty)
      fmt::print(stderr, "\r{}\033[K{}", line, force ? "\n" : "");
    else
      fmt::print(stderr, "{}\n", line);
  };
  for (size_t k = 0; k < outs.size(); ++k) {
    const Output& out = outs[k];
    for (int64_t t = 0; t < out.var->T(); ++t)
      for (size_t l = 0; l < out.refs.size(); ++l) {
        missing += src.read(out.refs[l], t, buf.data());
        w.write(k, t, static_cast<int64_t>(l), buf.data());
        ++done;
        progress(out.name, false);
      }
  }
  w.close();
  progress("done:", true);
  fmt::print("wrote {}: {} variable(s) on {}x{} ({}, min valid fraction {:g}), {} time step(s), "
             "{} fields, {} missing target cells; weights {} in {}\n",
             o.out, outs.size(), target.H(), target.W(), o.method, o.min_valid_fraction,
             timed ? timed->times.size() : 0, total, missing,
             src.weights_computed() > 0 ? "computed and cached" : "read from the cache",
             cache_dir);
}

}  // namespace

void add_data_regrid(CLI::App& data) {
  auto o = std::make_shared<RegridOptions>();
  auto* c = data.add_subcommand(
      "regrid", "Regrid fields onto an equiangular HxW grid and write CF NetCDF");
  c->add_option("paths", o->paths,
                "NetCDF or GRIB files or directories (every *.nc or GRIB file below them, sorted)")
      ->required();
  c->add_option("--grid", o->grid,
                "HxW equiangular target: H rows centred at -90+D/2..90-D/2 (D=180/H), W "
                "columns from 0 E (e.g. 32x64, 128x256)")
      ->required();
  c->add_option("--var", o->vars,
                "fields to write, under these names: a variable ('t2m', 'z' = all its levels) "
                "or a level 'z_500'; comma-separated or repeated")
      ->required()
      ->delimiter(',')
      ->allow_extra_args(false);  // `--var z PATH` must not take PATH as a name
  c->add_option("--method", o->method, "conservative (area-weighted) or bilinear")
      ->capture_default_str();
  c->add_option("--min-valid-fraction", o->min_valid_fraction,
                "a target cell with less valid (non-missing) area than this fraction is missing")
      ->capture_default_str();
  c->add_option("--weights-cache", o->weights_dir,
                "directory of the weights cache (default: beside the data)");
  c->add_option("--out", o->out, "output NetCDF file")->required();
  c->callback([o] { run_regrid(*o); });
}

}  // namespace seqvit::cli
