// Training options and their helpers (see options.h).
#include "train/options.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/check.h"
#include "eval/checkpoint.h"
#include "eval/forecast_checkpoint.h"
#include "io/safetensors.h"
#include "parallel/grid.h"
#include "train/pipeline.h"

namespace seqvit::train {

void validate_parallel_options(const ParallelOptions& p, bool bf16, const std::string& command) {
  if (p.dp < 1) fail("--dp must be >= 1, got {}", p.dp);
  if (p.sp < 1) fail("--sp must be >= 1, got {}", p.sp);
  if (p.tp < 1) fail("--tp must be >= 1, got {}", p.tp);
  if (p.pp < 1) fail("--pp must be >= 1, got {}", p.pp);
  if (p.micro_batches < 1) fail("--micro-batches must be >= 1, got {}", p.micro_batches);
  parse_pipe_schedule(p.pp_schedule);
  {
    parallel::GridConfig probe;  // the order string is checked even for one process
    probe.order = p.order;
    parallel::GridLayout check(probe);
  }
  if (p.zero < 0 || p.zero > 3)
    fail("--zero {} is out of range: valid stages are 0 (off), 1 (optimizer state{}), 2 (and "
         "gradients) and 3 (and parameters)",
         p.zero, command == "grad" ? ": for grad the same as 0" : "");
  parallel::parse_sp_mode(p.sp_mode);
  parallel::parse_sp_outer(p.sp_outer);
  if (p.zero > 0 && p.dp * p.sp == 1)
    fail("--zero {} shards over the data- and sequence-parallel ranks, but --dp 1 --sp 1 is a "
         "single rank; add --dp D (and/or --sp P) under mpirun -np D*P, or drop --zero",
         p.zero);
  if (p.zero == 3 && bf16)
    fail("--zero 3 runs in fp32 only (the bf16 weight copy would be the whole model); use "
         "--zero 1 or 2 with --bf16");
}

int launched_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<double> parse_lead_hours(const std::string& s) {
  std::vector<double> out;
  for (const auto& item : split_list(s)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (*end != '\0' || !(v > 0) || !std::isfinite(v))
      fail("--lead-hours: '{}' is not a lead time; give positive hours, comma separated (e.g. "
           "6,24)",
           item);
    if (std::find(out.begin(), out.end(), v) != out.end())
      fail("--lead-hours: {} h is given twice", v);
    out.push_back(v);
  }
  if (out.empty()) fail("--lead-hours is empty; give lead times in hours, e.g. 6,24");
  return out;
}

std::function<void(int64_t, int64_t)> stats_progress_printer() {
  const bool tty = isatty(fileno(stderr));
  const auto t0 = std::chrono::steady_clock::now();
  return [tty, t0, last = int64_t{-1}](int64_t done, int64_t total) mutable {
    const int64_t pct = total > 0 ? done * 100 / total : 100;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (last < 0 && el < 1.0) return;  // quiet for a pass that takes less than a second
    if (!tty && pct / 10 == last / 10 && done != total) return;
    last = pct;
    const std::string line =
        fmt::format("statistics of the training period: {:>3}% ({}/{} field steps read, {:.1f} s, "
                    "ETA {})",
                    pct, done, total, el,
                    format_eta(done > 0 ? el * static_cast<double>(total - done) / done : -1));
    if (tty)
      fmt::print(stderr, "\r{}\033[K{}", line, done == total ? "\n" : "");
    else
      fmt::print(stderr, "{}\n", line);
  };
}

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60)
                   : fmt::format("{}m{:02}s", s / 60, s % 60);
}

model::ModelConfig model_config(const TrainOptions& o, int64_t h, int64_t w,
                                std::vector<std::string> variables,
                                std::vector<std::string> out_variables) {
  model::ModelConfig mc;
  mc.img_h = h;
  mc.img_w = w;
  mc.patch_size = o.patch;
  mc.embed_dim = o.embed_dim;
  mc.depth = o.depth;
  mc.decoder_depth = o.decoder_depth;
  mc.num_heads = o.heads;
  mc.mlp_ratio = o.mlp_ratio;
  mc.variables = std::move(variables);
  mc.out_variables = std::move(out_variables);
  mc.tokenization = model::parse_tokenization(o.tokenization);
  mc.attention = model::parse_attention_kernel(o.attention);
  mc.validate();
  return mc;
}

std::string load_init_weights(const std::string& init_from, const model::ModelConfig& mc,
                              const TensorTable& table, float* params) {
  const std::string file = eval::resolve_checkpoint(init_from);
  const io::SafetensorsReader r(file);
  const model::ModelConfig fc = eval::read_model_config(r);
  auto list = [](const std::vector<std::string>& v) { return fmt::format("{}", fmt::join(v, ",")); };
  if (fc.variables != mc.variables)
    fail("--init-from {}: the model there has the input variables {}, but this run has {}; "
         "give --variables {} (the order matters: token embeddings are per variable), or convert "
         "a ClimaX checkpoint for these variables (scripts/climax_checkpoint.py import)",
         file, list(fc.variables), list(mc.variables), list(fc.variables));
  if (fc.tokenization != mc.tokenization)
    fail("--init-from {}: the model there has {} tokenization, this run {}", file,
         model::to_string(fc.tokenization), model::to_string(mc.tokenization));
  try {
    eval::load_parameters(r, table, params);
  } catch (const Error& e) {
    fail("--init-from: {} (the run's model: {})", e.what(), mc.to_json());
  }
  return file;
}

void check_step_options(TrainOptions& o) {
  if (o.steps < 1) fail("--steps must be >= 1, got {}", o.steps);
  if (!(o.dropout >= 0 && o.dropout < 1))
    fail("--dropout must be in [0, 1), got {} (ClimaX trains with 0.1)", o.dropout);
  if (!(o.drop_path >= 0 && o.drop_path < 1))
    fail("--drop-path must be in [0, 1), got {} (ClimaX trains with 0.1)", o.drop_path);
  if (!o.init_from.empty() && o.resume)
    fail("--init-from and --resume exclude each other: --resume continues the run directory's "
         "own checkpoint (weights and optimizer); --init-from starts a new run from other weights");
  if (o.batch < 1) fail("--batch must be >= 1, got {}", o.batch);
  if (o.log_every < 1) fail("--log-every must be >= 1, got {}", o.log_every);
  o.opt.total_steps = o.steps;
  o.opt.validate();
}

}  // namespace seqvit::train
