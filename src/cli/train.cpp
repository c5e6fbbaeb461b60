// seqvit train: the flags of a training run, parsed into train::TrainOptions and handed to the
// training loop (train/loop.h), which runs the built-in synthetic travelling-wave fields (no
// --data) or NetCDF forecast data (--data), in one process or under `mpirun` in any parallel
// layout (the flags shared with `grad`: cli/parallel_flags.h), on the backend --device names.
#include <memory>

#include "cli/commands.h"
#include "cli/parallel_flags.h"
#include "train/loop.h"
#include "train/options.h"

namespace seqvit::cli {

void add_train(CLI::App& app) {
  auto o = std::make_shared<train::TrainOptions>();
  auto device = std::make_shared<std::string>("cpu");
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
  add_parallel_flags(c, o->par);
  add_device_flag(c, *device);
  c->add_option("--attention", o->attention,
                "block attention kernel: flash (O(N) memory) or dense (standard attention that "
                "keeps the B*H*N*N probabilities; for comparison, not with --sp)")
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
  c->add_option("--dropout", o->dropout,
                "dropout rate as ClimaX (after the embeddings, the attention projection and in "
                "the MLP; ClimaX trains with 0.1); training steps only")
      ->capture_default_str();
  c->add_option("--drop-path", o->drop_path,
                "stochastic depth of the last block, 0 for the first, linear between (ClimaX: "
                "0.1); training steps only")
      ->capture_default_str();
  c->add_option("--init-from", o->init_from,
                "fine-tune: start from the weights of this model file or forecast checkpoint "
                "(same variables and shapes; a new optimizer, step 0)");
  // data mode
  c->add_option("--data", o->data,
                "NetCDF or GRIB files or directories (every *.nc or GRIB file below), or Zarr "
                "stores");
  c->add_option("--train-range", o->train_range, "training period BEGIN/END (ISO, END excluded)");
  c->add_option("--val-range", o->val_range, "validation period BEGIN/END");
  c->add_option("--test-range", o->test_range, "test period BEGIN/END (kept for evaluate)");
  c->add_option("--coarsen", o->coarsen, "area-mean c x c cells onto a coarser grid")
      ->capture_default_str();
  c->add_option("--grid", o->grid,
                "HxW: read the data through conservative (or bilinear) regridding onto the "
                "equiangular HxW grid, e.g. 32x64 or 128x256 from 0.25-degree 721x1440 "
                "(docs/data.md \"Regridding\"; not with --coarsen)");
  c->add_option("--regrid-method", o->regrid_method,
                "with --grid: conservative (area-weighted) or bilinear")
      ->capture_default_str();
  c->add_option("--missing", o->missing, "missing values: skip (the sample) | fill (mean)")
      ->capture_default_str();
  c->add_option("--stats-cache", o->stats_cache,
                "statistics cache file (default: seqvit_stats.safetensors beside the data)");
  c->add_option("--time-origin", o->time_origin,
                "ISO date that a time axis without an epoch ('days', 'hours') counts from");
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
  c->callback([o, device] {
    const auto dev = open_device(*device);  // before MPI: an unknown name fails on every rank
    train::run_training(*o, *dev);
  });
}

}  // namespace seqvit::cli
