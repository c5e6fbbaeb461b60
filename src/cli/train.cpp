// seqvit train: trains ClimaX on the built-in synthetic travelling-wave fields (the NetCDF mode
// is train_data.cpp), showing progress on one line and writing a checkpoint at the end. With
// --dp D --sp P --tp T under `mpirun -np D*T*P` each step's global batch is split over D
// data-parallel replicas, each sample's tokens over P sequence-parallel ranks and the weights of
// attention and MLP over T tensor-parallel ranks (train_dist.h).
#include <fmt/core.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#include "cli/commands.h"
#include "cli/grid_flag.h"
#include "cli/memory_plan.h"
#include "cli/run_report.h"
#include "cli/train_dist.h"
#include "cli/train_options.h"
#include "core/latitude.h"
#include "core/check.h"
#include "core/process_memory.h"
#include "data/synthetic.h"
#include "parallel/mpi_comm.h"
#include "train/zero.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace seqvit::cli {

namespace {
void train_synthetic(const TrainOptions& o, const model::ModelConfig& mc, TrainDist& dist);
}  // namespace

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

void check_step_options(TrainOptions& o) {
  if (o.steps < 1) fail("--steps must be >= 1, got {}", o.steps);
  if (o.batch < 1) fail("--batch must be >= 1, got {}", o.batch);
  if (o.log_every < 1) fail("--log-every must be >= 1, got {}", o.log_every);
  o.opt.total_steps = o.steps;
  o.opt.validate();
}

void run_train_synthetic(TrainOptions o) {
  if (o.img.empty()) o.img = "32x64";
  if (o.variables.empty()) o.variables = "t2m,u10,v10,z_500,t_850";
  if (o.out.empty()) o.out = "seqvit_model.safetensors";
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const auto [h, w] = parse_grid_flag(o.img, "--img", "e.g. 32x64");
  const auto vars = split_list(o.variables);
  const model::ModelConfig mc =
      model_config(o, h, w, vars, o.out_variables.empty() ? vars : split_list(o.out_variables));
  check_step_options(o);
  // Data / sequence parallelism: MPI (only with --dp or --sp > 1) and the whole configuration
  // checked on every rank alike before anything is allocated.
  TrainDist dist(o.dp, o.sp, o.sp_mode, o.bf16, mc, o.batch, o.sp_ulysses, o.sp_outer, o.zero,
                 PipelineOptions{o.pp, o.micro_batches, o.pp_schedule}, o.tp, o.order);
  try {
    train_synthetic(o, mc, dist);
  } catch (const std::exception& e) {
    if (!dist.active()) throw;
    // the ranks communicate from here on: an error on one rank ends them all (no hang)
    std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", dist.grid().rank(), e.what());
    parallel::abort_all(1);
  }
}

namespace {
void train_synthetic(const TrainOptions& o, const model::ModelConfig& mc, TrainDist& dist) {
  const auto [h, w] = std::pair{mc.img_h, mc.img_w};
  const bool root = dist.root();
  data::SyntheticSpec spec;
  spec.H = h;
  spec.W = w;
  spec.variables = mc.variables;
  spec.out_variables = mc.out_variables;
  spec.seed = o.seed;
  spec.lead_hours = parse_lead_hours(o.lead_hours);
  data::SyntheticFields fields(spec);

  const auto prec = o.bf16 ? model::Precision::BF16 : model::Precision::F32;
  // DP rank d trains on samples [d*Bl, (d+1)*Bl) of each global batch of B; the ranks of one
  // SP group share them and each computes its token shard.
  const int64_t B = o.batch, Bl = dist.local_batch(), V = mc.V(), Vo = mc.Vo(), HW = h * w;
  train::TrainerParallel par = dist.trainer_parallel();
  par.recompute = o.recompute;
  train::Trainer tr(mc, o.opt, Bl, prec, o.seed, par);
  dist.attach(tr);  // gradient reducer; pipeline schedule (--pp, --micro-batches)
  const std::string memory_plan = rank_memory_plan(dist, tr);  // collective
  if (root) {
    fmt::print("seqvit train: ClimaX {} tokenization, {}x{} grid, patch {}, {} tokens/sample, "
               "D={}, {} heads, depth {}, {} variables -> {}, batch {}, {}, {} threads\n",
               o.tokenization, h, w, o.patch, mc.N(), mc.embed_dim, mc.num_heads, mc.depth, V,
               Vo, B, o.bf16 ? "bf16 mixed precision" : "fp32", omp_get_max_threads());
    if (dist.active())
      fmt::print("parallel: dp {} x sp {} ({}) x tp {}, {} samples, {} of {} tokens and {} of {} "
                 "heads per rank\n{}",
                 o.dp, o.sp, o.sp_mode, o.tp, Bl, tr.model().local_tokens(), mc.N(),
                 mc.num_heads / o.tp, mc.num_heads, dist.grid().describe());
    if (dist.pipelined())
      fmt::print("pipeline: {} stage{} of {} blocks, {} micro-batches of {} per step, {} "
                 "schedule (ideal bubble {:.2f})\n",
                 o.pp, o.pp == 1 ? "" : "s", mc.depth / o.pp, o.micro_batches,
                 Bl / o.micro_batches, o.pp_schedule, train::ideal_bubble(o.pp, o.micro_batches));
    if (dist.zero())
      fmt::print("ZeRO-{} over the {} ranks of sp x dp: per rank {} of {} parameter values' "
                 "optimizer state{}{}\n",
                 o.zero, o.dp * o.sp, tr.optimizer().end() - tr.optimizer().begin(),
                 tr.model().params().total(), o.zero >= 2 ? ", gradients" : "",
                 o.zero == 3 ? " and parameters (plus the unit in use)" : "");
    if (o.recompute) fmt::print("activation recomputation: only block inputs are kept\n");
    if (mc.attention == model::AttentionKernel::Dense)
      fmt::print("attention: dense (keeps the B*H*N*N probabilities of every block)\n");
    fmt::print("{}\n", memory_plan);
    fmt::print("data: synthetic travelling waves, lead {} h (built in; no files needed)\n",
               o.lead_hours);
    std::fflush(stdout);
  }
  std::unique_ptr<FILE, int (*)(FILE*)> loss_log(nullptr, &std::fclose);  // rank 0 only
  if (root && !o.loss_log.empty()) {
    loss_log.reset(std::fopen(o.loss_log.c_str(), "w"));
    if (!loss_log) fail("--loss-log: cannot write {}", o.loss_log);
  }

  // all batch memory up front; the loop below allocates nothing
  std::vector<float> xb(Bl * V * HW), yb(Bl * Vo * HW), lt(Bl);
  // this rank's samples of the global batch whose first sample is `first`
  auto fill = [&](uint64_t first) {
    first += static_cast<uint64_t>(dist.dp_rank() * Bl);
    for (int64_t s = 0; s < Bl; ++s)
      fields.sample(first + s, xb.data() + s * V * HW, yb.data() + s * Vo * HW, lt.data() + s);
  };
  const model::BatchView view{Bl, xb.data(), yb.data(), lt.data(), fields.lat().data()};
  // held-out loss on samples the training stream never draws
  const uint64_t held_out = uint64_t{1} << 40;
  auto eval = [&]() {
    double acc = 0;
    for (int k = 0; k < 4; ++k) {
      fill(held_out + k * B);
      acc += dist.forward_loss(tr, view);  // this rank's part of the global loss
    }
    return dist.sum_over_sp_dp(acc) / 4;
  };
  // the persistence forecast (y_hat = x) on the same held-out samples: the baseline to beat
  auto persistence = [&]() {
    const auto wl = latitude_weights(fields.lat().data(), h);
    const auto oi = mc.out_index();
    double acc = 0;
    for (int k = 0; k < 4; ++k) {
      fill(held_out + k * B);
      for (int64_t s = 0; s < Bl; ++s)
        for (int64_t o = 0; o < Vo; ++o)
          for (int64_t i = 0; i < HW; ++i) {
            const double e = xb[(s * V + oi[o]) * HW + i] - yb[(s * Vo + o) * HW + i];
            acc += wl[i / w] * e * e;
          }
    }
    return dist.sum_over_dp(acc) / (4.0 * B * Vo * HW);  // SP ranks hold the same samples
  };
  const double eval0 = o.benchmark ? 0.0 : eval();
  const bool tty = isatty(fileno(stderr));
  const double flops_step = 3.0 * tr.model().forward_flops(B);
  const auto t0 = std::chrono::steady_clock::now();
  double first_loss = 0, ema = 0;
  if (dist.active()) dist.grid().reset_stats();
  reset_peak_rss();  // VmHWM from here: the training steps, not the set-up
  RunRecord record;  // --report-json
  for (int64_t s = 0; s < o.steps; ++s) {
    fill(static_cast<uint64_t>(s) * B);
    const auto ts = std::chrono::steady_clock::now();
    const auto r = tr.step(view);
    record.step_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count());
    if (s == 0 && dist.active()) record.first_step = dist.grid().stats();
    if (loss_log) fmt::print(loss_log.get(), "{:.17g} {:.17g}\n", r.loss, r.grad_norm);
    if (s == 0 && root && dist.active())
      fmt::print("communication per step (rank 0): {}\n", dist.grid().stats().report());
    if (s + 1 == o.steps && root && dist.pipeline() && o.pp > 1)
      fmt::print(stderr, "pipeline, last step (rank 0): {:.3f} s, {:.3f} s waiting for messages "
                 "(measured bubble {:.2f}), {} sent\n",
                 dist.pipeline()->last_stats().seconds, dist.pipeline()->last_stats().idle,
                 dist.pipeline()->last_stats().bubble(),
                 train::human_bytes(static_cast<double>(dist.pipeline()->last_stats().bytes_sent)));
    if (!root) continue;
    if (s == 0) first_loss = ema = r.loss;
    ema = 0.9 * ema + 0.1 * r.loss;
    const double el =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per = el / static_cast<double>(s + 1);
    if (tty || (s + 1) % o.log_every == 0 || s + 1 == o.steps) {
      const std::string line = fmt::format(
          "step {:>5}/{} | loss {:.4f} (avg {:.4f}) | lr {:.2e} | {:.0f} tok/s | {:.1f} GFLOP/s "
          "| ETA {}",
          s + 1, o.steps, r.loss, ema, r.lr, static_cast<double>(B * mc.N()) / per,
          flops_step / per / 1e9, format_eta(per * static_cast<double>(o.steps - s - 1)));
      if (tty)
        fmt::print(stderr, "\r{}\033[K", line);
      else
        fmt::print(stderr, "{}\n", line);
    }
  }
  if (tty && root) fmt::print(stderr, "\n");
  loss_log.reset();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t peak_rss = seqvit::peak_rss();
  record.peak_rss = peak_rss;
  if (!o.report_json.empty()) write_run_report(o.report_json, o, mc, dist, tr, record);
  if (o.benchmark) {  // the steps only: no evaluation, no replica check, no checkpoint
    if (root)
      fmt::print("benchmark: {} steps in {:.2f} s; peak resident memory of rank 0 while "
                 "training (VmHWM) {}; no evaluation or checkpoint (--benchmark)\n",
                 o.steps, secs, train::human_bytes(static_cast<double>(peak_rss)));
    std::fflush(stdout);
    if (dist.active()) dist.barrier();
    return;
  }
  const double eval1 = eval();
  const double pers = persistence();
  if (dist.zero()) dist.zero()->gather_all_parameters();  // ZeRO-3: the whole model again
  const uint64_t hash = dist.check_replicated(tr.params(), tr.model().params());
  // tensor or pipeline parallel: the logical checkpoint, assembled on rank 0 (collective)
  const bool sharded = o.tp > 1 || o.pp > 1;
  if (sharded) dist.save_checkpoint(o.out, mc, tr);
  // ZeRO: the logical AdamW moments, assembled on rank 0 from every rank's range
  std::optional<train::AdamW> full_opt;
  if (dist.zero() && !sharded) {  // (with tp / pp, save_checkpoint gathered them)
    if (root) full_opt.emplace(tr.model().params(), tr.optimizer().config());
    dist.gather_optimizer(tr.optimizer(), full_opt ? &*full_opt : nullptr,
                          tr.model().params().total());
  }
  if (!root) {
    dist.barrier();  // rank 0 writes the checkpoint (the replicas are identical)
    return;
  }
  if (dist.active()) {
    std::string what;
    if (o.pp > 1) what += fmt::format(" ({} pipeline stages", o.pp);
    if (o.tp > 1)
      what += fmt::format("{}the tensors replicated over tensor parallelism",
                          what.empty() ? " (" : "; ");
    if (!what.empty() && o.dp * o.sp > 1)
      what += fmt::format("; each shard on its {} replicas", o.dp * o.sp);
    if (!what.empty()) what += ")";
    fmt::print("weights identical on all {} ranks{} (hash {:016x})\n", o.dp * o.sp * o.tp * o.pp,
               what, hash);
  }
  if (peak_rss > 0)
    fmt::print("peak resident memory of rank 0 while training (VmHWM): {}\n",
               train::human_bytes(static_cast<double>(peak_rss)));
  fmt::print("trained {} steps in {:.1f} s; training loss {:.4f} -> {:.4f}; held-out loss "
             "{:.4f} -> {:.4f} (persistence forecast: {:.4f})\n",
             o.steps, secs, first_loss, ema, eval0, eval1, pers);
  if (!sharded) {
    eval::save_model(o.out, mc, tr.model().params(), tr.params());
    train::save_optimizer(eval::optimizer_path(o.out), tr.model().params(),
                          full_opt ? *full_opt : tr.optimizer());
  }
  fmt::print("wrote {} and {}\n", o.out, eval::optimizer_path(o.out));
  std::fflush(stdout);
  dist.barrier();
}
}  // namespace

void add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  o->opt.lr = 3e-3;
  o->opt.warmup_steps = 20;
  o->opt.min_lr = 1e-5;
  o->opt.weight_decay = 1e-5;
  o->opt.grad_clip = 1.0;
  auto* c = app.add_subcommand(
      "train", "Train ClimaX: on NetCDF data with --data, else on built-in synthetic waves");
  // a repeated flag takes its last value (a command line may override a script's flags)
  c->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  c->add_option("--config", "TOML file whose keys are these flags (flags given here win)");
  c->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  c->add_option("--batch", o->batch, "samples per step")->capture_default_str();
  c->add_option("--img", o->img, "grid HxW (synthetic mode; default 32x64; with --data the data's)");
  c->add_option("--patch", o->patch, "patch size p")->capture_default_str();
  c->add_option("--embed-dim", o->embed_dim, "embedding D")->capture_default_str();
  c->add_option("--depth", o->depth, "transformer blocks")->capture_default_str();
  c->add_option("--decoder-depth", o->decoder_depth, "head hidden layers")->capture_default_str();
  c->add_option("--heads", o->heads, "attention heads")->capture_default_str();
  c->add_option("--mlp-ratio", o->mlp_ratio, "MLP hidden width / D")->capture_default_str();
  c->add_option("--variables", o->variables,
                "input variables, comma separated (default t2m,u10,v10,z_500,t_850, and with "
                "--data also lsm,orography)");
  c->add_option("--out-variables", o->out_variables,
                "output variables (default: the time-dependent inputs)");
  c->add_option("--tokenization", o->tokenization, "aggregate | per_variable")
      ->capture_default_str();
  c->add_option("--lead-hours", o->lead_hours, "lead times in hours, comma separated")
      ->capture_default_str();
  c->add_flag("--bf16", o->bf16, "mixed precision: bf16 matrix inputs, fp32 accumulation");
  c->add_option("--seed", o->seed, "random seed (weights and data order)")->capture_default_str();
  c->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all)");
  c->add_option("--out", o->out,
                "synthetic mode: checkpoint to write (default seqvit_model.safetensors)");
  c->add_option("--loss-log", o->loss_log,
                "synthetic mode: each step's loss and gradient norm (before clipping) at full "
                "precision, one step per line");
  c->add_option("--dp", o->dp,
                "data-parallel degree: split each batch over D replicas (mpirun -np D*P)")
      ->capture_default_str();
  c->add_option("--sp", o->sp,
                "sequence-parallel degree: split the tokens over P ranks (fp32)")
      ->capture_default_str();
  c->add_option("--sp-mode", o->sp_mode,
                "sequence-parallel attention: ulysses, lss, ring or 2d (Ulysses inside groups "
                "of --sp-ulysses ranks, --sp-outer across them)")
      ->capture_default_str();
  c->add_option("--sp-ulysses", o->sp_ulysses,
                "--sp-mode 2d: Ulysses degree U, dividing --sp P and at most the heads");
  c->add_option("--sp-outer", o->sp_outer,
                "--sp-mode 2d: ring or lss across the P / U Ulysses groups")
      ->capture_default_str();
  c->add_option("--pp", o->pp,
                "pipeline stages: split the blocks over S ranks (synthetic mode; mpirun -np "
                "D*S*P)")
      ->capture_default_str();
  c->add_option("--micro-batches", o->micro_batches,
                "micro-batches per step and dp replica (pipeline; gradient accumulation "
                "without --pp)")
      ->capture_default_str();
  c->add_option("--pp-schedule", o->pp_schedule, "pipeline schedule: 1f1b or gpipe")
      ->capture_default_str();
  c->add_option("--zero", o->zero,
                "ZeRO stage over the dp x sp ranks: 0 off, 1 optimizer state, 2 and gradients, "
                "3 and parameters (FSDP)")
      ->capture_default_str();
  c->add_flag("--recompute", o->recompute,
              "activation recomputation: keep only block inputs, recompute blocks in backward");
  c->add_option("--attention", o->attention,
                "block attention kernel: flash (O(N) memory) or dense (standard attention that "
                "keeps the B*H*N*N probabilities; for comparison, not with --sp)")
      ->capture_default_str();
  c->add_option("--order", o->order,
                "rank grid: the axes dp, pp, tp, sp, outermost first (the innermost axis's groups "
                "are runs of neighbouring ranks, on one node)")
      ->capture_default_str();
  c->add_option("--tp", o->tp,
                "tensor-parallel degree: split heads and MLP units over T ranks "
                "(mpirun -np D*T*P)")
      ->capture_default_str();
  c->add_flag("--benchmark", o->benchmark,
              "synthetic mode: time the training steps only (no held-out evaluation, no replica "
              "check, no checkpoint written)");
  c->add_option("--report-json", o->report_json,
                "synthetic mode: write a JSON record of the run (model, layout, time per step; "
                "per rank: planned bytes, peak resident memory, bytes sent in the first step)");
  c->add_option("--log-every", o->log_every, "progress line every k steps when not a terminal")
      ->capture_default_str();
  c->add_option("--lr", o->opt.lr, "peak learning rate")->capture_default_str();
  c->add_option("--warmup", o->opt.warmup_steps, "linear warm-up steps")->capture_default_str();
  c->add_option("--min-lr", o->opt.min_lr, "learning rate at the end of the cosine")
      ->capture_default_str();
  c->add_option("--weight-decay", o->opt.weight_decay, "AdamW weight decay")
      ->capture_default_str();
  c->add_option("--grad-clip", o->opt.grad_clip, "max gradient norm (0 = off)")
      ->capture_default_str();
  // data mode
  c->add_option("--data", o->data, "NetCDF files or directories (every *.nc below)");
  c->add_option("--train-range", o->train_range, "training period BEGIN/END (ISO, END excluded)");
  c->add_option("--val-range", o->val_range, "validation period BEGIN/END");
  c->add_option("--test-range", o->test_range, "test period BEGIN/END (kept for evaluate)");
  c->add_option("--coarsen", o->coarsen, "area-mean c x c cells onto a coarser grid")
      ->capture_default_str();
  c->add_option("--missing", o->missing, "missing values: skip (the sample) | fill (mean)")
      ->capture_default_str();
  c->add_option("--stats-cache", o->stats_cache,
                "statistics cache file (default: seqvit_stats.safetensors beside the data)");
  c->add_option("--run-dir", o->run_dir, "checkpoints and log.jsonl go here")
      ->capture_default_str();
  c->add_option("--val-every", o->val_every, "validate every k steps (0: only at the end)")
      ->capture_default_str();
  c->add_option("--val-batches", o->val_batches, "batches per validation (0: all)")
      ->capture_default_str();
  c->add_option("--checkpoint-every", o->checkpoint_every, "checkpoint every k steps")
      ->capture_default_str();
  c->add_option("--keep", o->keep, "checkpoints kept (the newest)")->capture_default_str();
  c->add_flag("--resume", o->resume, "continue from the run directory's latest checkpoint");
  c->callback([o] {
    if (o->data.empty())
      run_train_synthetic(*o);
    else
      run_train_data(*o);
  });
}

}  // namespace seqvit::cli
