// seqvit grad: one forward and backward of the loss for a model and a batch file, written as
// pred, loss and grad.<parameter> — the hook for checking seqvit against another framework.
//
// With --sp P (under `mpirun -np P`) the token sequence is split over P ranks (docs/
// parallelism.md "The model under sequence parallelism"): every rank reads the same files,
// computes its shard, the loss and gradients are summed over the group, pred is gathered, and
// rank 0 writes the same file a single process would. With --pp S (x --sp P, under
// `mpirun -np S*P`) the blocks are split into S pipeline stages and the batch into
// --micro-batches m that run through the --pp-schedule (1f1b or gpipe); rank 0 assembles the
// logical gradient file from the stages (docs/parallelism.md "Pipeline parallelism");
// --micro-batches alone accumulates the gradient in one process. With --tp T each rank also
// holds only its tensor-parallel slice of the weights ("Tensor parallelism"). The world is
// --tp x --pp x --sp ranks; rank 0 assembles the logical gradients. With --dp D the batch's
// samples are split over D replicas (the world is then D times larger) and the loss and
// gradients summed over them; with --zero Z the gradients (Z >= 2) and parameters (Z = 3) are
// sharded over the --dp x --sp replicas of each shard as in training (train/zero.h), and the
// logical gradient is assembled from the ZeRO shards. The file is the one a single process
// writes. MPI is initialised only with --sp, --tp, --pp or --dp; without them the command never
// touches MPI, and launching it as several ranks is refused (they would all write the same
// file).
#include <fmt/core.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <algorithm>
#include <set>
#include <vector>

#include "cli/commands.h"
#include "cli/parallel_flags.h"
#include "model/device_batch.h"
#include "train/options.h"
#include "core/check.h"
#include "parallel/mpi_comm.h"
#include "parallel/grid.h"
#include "parallel/logical.h"
#include "train/pipeline.h"
#include "parallel/sp_model.h"
#include "parallel/tp_model.h"
#include "train/zero.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"

namespace seqvit::cli {

namespace {
struct GradOptions {
  std::string model, batch, out;
  bool bf16 = false;
  std::string attention = "flash";  // block attention kernel: flash | dense
  train::ParallelOptions par;       // the flags shared with train (cli/parallel_flags.h)
  bool distributed = false;         // --dp/--sp/--tp/--pp given: MPI, even at degree 1
  bool dp_given = false, sp_given = false, tp_given = false, pp_given = false;
  std::string device = "cpu";
};

void run_grad(const GradOptions& o) {
  const auto dev = open_device(o.device);
  backend::Device& device = *dev;
  std::optional<parallel::SpMode> mode;
  std::optional<train::PipeSchedule> schedule;
  parallel::GridConfig g;  // with --sp / --tp / --pp: the degrees, checked before MPI starts
  const bool distributed = o.distributed;  // MPI (--micro-batches alone accumulates in-process)
  train::validate_parallel_options(o.par, o.bf16, "grad");
  schedule = train::parse_pipe_schedule(o.par.pp_schedule);
  mode = parallel::parse_sp_mode(o.par.sp_mode);
  if (!distributed) {
    if (train::launched_ranks() > 1)
      fail("seqvit grad was launched as {} ranks without --sp, --tp, --pp or --dp; to split the "
           "sequence pass --sp {} --sp-mode ulysses|lss|ring|2d (or the weights, --tp {}, the "
           "blocks, --pp S, or the samples, --dp D), or run it as one process",
           train::launched_ranks(), train::launched_ranks(), train::launched_ranks());
  } else {
    parallel::set_sp_degrees(g, o.par.sp, *mode, o.par.sp_ulysses,
                             parallel::parse_sp_outer(o.par.sp_outer));
  }
  const int sp = o.par.sp, pp = o.par.pp, tp = o.par.tp, dp = o.par.dp;
  const int micro_batches = o.par.micro_batches;
  g.tp = tp;
  g.order = o.par.order;
  parallel::GridLayout check_order(g);  // a bad order is refused before MPI starts
  g.dp = dp;
  g.zero = o.par.zero;
  // Declared first so that it is destroyed last (MPI_Finalize after every communicator).
  std::optional<parallel::MpiRuntime> mpi;
  if (distributed) mpi.emplace(nullptr, nullptr);

  const io::SafetensorsReader model_file(o.model);  // read once: configuration and weights
  auto cfg = eval::read_model_config(model_file);
  cfg.attention = model::parse_attention_kernel(o.attention);
  const model::ClimaX whole(cfg);  // the single-process table: the file's layout

  io::SafetensorsReader br(o.batch);
  for (const char* need : {"x", "y", "lead_times", "lat"})
    if (!br.has(need))
      fail("{}: missing tensor '{}'; a batch file holds x [B,V,H,W], y [B,Vo,H,W], "
           "lead_times [B] (hours) and lat [H] (degrees)",
           o.batch, need);
  for (const auto& n : br.names())
    if (n != "x" && n != "y" && n != "lead_times" && n != "lat")
      fail("{}: unexpected tensor '{}'; a batch file holds only x, y, lead_times and lat",
           o.batch, n);
  const auto& xs = br.info("x").shape;
  if (xs.size() != 4) fail("{}: x must be [B, V, H, W], got {}", o.batch, shape_str(xs));
  const int64_t B = xs[0];
  if (B < 1) fail("{}: x has an empty batch", o.batch);

  // Sequence, tensor and pipeline parallelism: the configuration is checked (world size vs
  // --tp x --pp x --sp, tokens vs P, heads and MLP width vs T, heads / T vs P for Ulysses, depth
  // vs stages, batch vs micro-batches) on every rank alike before anything else is allocated,
  // so a bad one ends every rank with the same message.
  std::optional<parallel::Comm> world;
  std::optional<parallel::RankGrid> grid;
  std::optional<parallel::SpBlockAttention> attn;
  std::optional<parallel::TpModel> tpm;
  std::optional<train::ZeroOptimizer> zero;
  model::ModelShard shard;
  int slots = train::pipeline_slots(*schedule, 1, 0, micro_batches);
  if (!distributed && B % micro_batches != 0)
    fail("the batch of {} cannot be split into --micro-batches {}", B, micro_batches);
  if (distributed) {
    world.emplace(parallel::mpi_world());
    world->set_device(device);  // before the grid splits it
    if (world->size() != tp * sp * pp * dp) {
      std::string flags;
      if (o.dp_given) flags += fmt::format(" --dp {}", dp);
      if (o.tp_given) flags += fmt::format(" --tp {}", tp);
      if (o.pp_given) flags += fmt::format(" --pp {}", pp);
      if (o.sp_given || o.pp_given) flags += fmt::format(" --sp {}", sp);
      fail("{} needs {} ranks (mpirun -np {}), but this job has {}", flags.substr(1),
           tp * sp * pp * dp, tp * sp * pp * dp, world->size());
    }
    g.pp = pp;
    g.micro_batches = micro_batches;
    parallel::validate(g, world->size(), cfg, B);
    grid.emplace(*world, g);
    if (sp > 1) attn.emplace(*grid);
    if (o.par.zero > 0) zero.emplace(grid->sp_dp(), o.par.zero);
    if (tp > 1) {
      tpm.emplace(grid->tp());
      shard.tp_size = tp;
      shard.tp_rank = grid->coords().tp;
    }
    const int stage = grid->coords().pp;
    shard.first_block = stage * (cfg.depth / pp);
    shard.last_block = (stage + 1) * (cfg.depth / pp);
    slots = train::pipeline_slots(*schedule, pp, stage, micro_batches);
  }
  const bool root = !grid || grid->rank() == 0;
  model::ClimaX m(cfg, shard, device);

  // every rank reads the whole (logical) model file and keeps its share (stage, TP slice);
  // parameter stores, whose pages ZeRO-2/3 release
  auto params = m.device().parameter_store(m.params().total());
  auto grads = m.device().parameter_store(m.params().total());
  {
    Buffer<float> all(whole.params().total());
    eval::load_parameters(model_file, whole.params(), all.data());
    std::vector<float> mine(static_cast<size_t>(m.params().total()));
    m.slice_logical(all.data(), mine.data());
    device.copy_to_device(params->data(), mine.data(), mine.size() * sizeof(float));
  }
  const int64_t V = cfg.V(), Vo = cfg.Vo(), H = cfg.img_h, W = cfg.img_w;
  std::vector<float> x(B * V * H * W), y(B * Vo * H * W), lt(B), lat(H);
  br.read_f32("x", {B, V, H, W}, x.data());
  br.read_f32("y", {B, Vo, H, W}, y.data());
  br.read_f32("lead_times", {B}, lt.data());
  br.read_f32("lat", {H}, lat.data());

  m.set_recompute(o.par.recompute);
  if (tpm) m.set_tensor_parallel(&*tpm);
  const int64_t Bl = B / dp;  // the samples of this rank's dp replica (validate: dp divides B)
  m.plan(Bl / micro_batches, o.bf16 ? model::Precision::BF16 : model::Precision::F32,
         attn ? &*attn : nullptr, B, slots);
  m.sync_weights(params->data());
  if (zero) zero->attach(m, *params, *grads);  // ZeRO-3: keeps only its range
  std::vector<float> pred(B * Vo * H * W);
  double loss = 0;
  const model::BatchView host_batch{B, x.data(), y.data(), lt.data(), lat.data()};
  // the batch and the forecast in device memory
  model::DeviceBatch dbatch(device, cfg, B);
  const model::BatchView batch = dbatch.upload(host_batch);
  backend::Allocation dpred(device, pred.size() * sizeof(float));
  std::vector<float> logical_grads(root ? whole.params().total() : 0);
  if (!distributed && micro_batches == 1) {
    loss = m.forward(params->data(), batch, dpred.as<float>());
    m.backward(params->data(), grads->data());
  } else if (!distributed) {  // gradient accumulation over the micro-batches
    loss = train::Pipeline(m, *schedule, micro_batches)
               .run(params->data(), grads->data(), batch, dpred.as<float>());
  } else {
    // From here on the ranks communicate: an error on one rank ends them all (no hang).
    try {
      train::Pipeline pipe(grid->pp(), m, *schedule, micro_batches);
      // this rank's pixels, zeros elsewhere (device memory is zero-filled when allocated)
      float* shard_pred = dpred.as<float>();
      // dp replica d: samples [d Bl, (d + 1) Bl)
      const int64_t s0 = grid->coords().dp * Bl;
      const model::BatchView local{Bl, batch.x + s0 * V * H * W, batch.y + s0 * Vo * H * W,
                                   batch.lead_times + s0, batch.lat};
      if (zero) zero->zero_grads(grads->data());
      const double part =
          pipe.run(params->data(), grads->data(), local, shard_pred + s0 * Vo * H * W);
      // the replicas of this rank's shard: sp, and dp with --dp
      parallel::Comm& replicas = dp > 1 ? grid->sp_dp() : grid->sp();
      std::vector<model::LogicalRun> runs = m.logical_runs();
      const float* gsrc = grads->data();
      int64_t gcount = m.params().total();
      if (zero) {  // loss and gradients summed over sp_dp (ZeRO-2/3: into each rank's range)
        loss = zero->reduce(part, grads->data());
        if (zero->stage() >= 2) {
          runs = zero->moment_runs();
          gsrc = zero->grad_shard();
          const auto [b, e] = zero->own_range(m.params().total());
          gcount = e - b;
        }
      } else {
        loss = parallel::sp_reduce_loss(replicas, part);
        parallel::sp_reduce_gradients(replicas, grads->data(), m.params().total());
      }
      // every pixel has one owner among the last stage's SP ranks (TP ranks hold copies: only
      // tp rank 0 contributes), so the sum is the prediction
      std::vector<float> host_pred(pred.size(), 0.f);
      if (grid->coords().tp == 0)
        device.copy_to_host(host_pred.data(), shard_pred, pred.size() * sizeof(float));
      world->reduce(std::span<const float>(host_pred),
                    std::span<float>(root ? pred.data() : nullptr, root ? pred.size() : 0), 0);
      // gather_logical works on host buffers
      std::vector<float> host_grads(static_cast<size_t>(gcount));
      device.copy_to_host(host_grads.data(), gsrc, host_grads.size() * sizeof(float));
      parallel::gather_logical(*world, runs, host_grads.data(), logical_grads.data(),
                               whole.params().total(), 0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", grid->rank(), e.what());
      parallel::abort_all(1);
    }
  }
  if (!root) return;
  if (!distributed) {  // the whole table on this process: copied out of device memory
    logical_grads.resize(static_cast<size_t>(m.params().total()));
    device.copy_to_host(logical_grads.data(), grads->data(), logical_grads.size() * sizeof(float));
    device.copy_to_host(pred.data(), dpred.get(), pred.size() * sizeof(float));
  }
  const float* gl = logical_grads.data();

  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", cfg.to_json());
  w.set_metadata("seqvit.precision", o.bf16 ? "bf16" : "fp32");
  w.add_f32("pred", {B, Vo, H, W}, pred.data());
  const float lf = static_cast<float>(loss);
  w.add_f32("loss", {1}, &lf);
  for (const auto& e : whole.params().entries())
    w.add_f32("grad." + e.name, e.shape, gl + e.offset);
  w.write(o.out);
  if (o.sp_given)
    fmt::print("sequence parallel: {} rank{}, {}, {} of {} tokens per rank\n", sp,
               sp == 1 ? "" : "s",
               *mode == parallel::SpMode::TwoD
                   ? fmt::format("2d (ulysses {} x {} {})", grid->sp_ulysses().size(),
                                 o.par.sp_outer, grid->sp_ring().size())
                   : o.par.sp_mode,
               m.local_tokens(), cfg.N());
  if (o.tp_given)
    fmt::print("tensor parallel: {} rank{}, {} of {} heads and {} of {} MLP units per rank\n",
               tp, tp == 1 ? "" : "s", cfg.num_heads / tp, cfg.num_heads, cfg.hidden() / tp,
               cfg.hidden());
  if (o.dp_given)
    fmt::print("data parallel: {} replica{}, {} of {} samples each\n", dp, dp == 1 ? "" : "s",
               Bl, B);
  if (zero)
    fmt::print("ZeRO-{} over the {} ranks of sp x dp: per rank {} of {} gradient values{}\n",
               o.par.zero, dp * sp, zero->own_range(m.params().total()).second -
                                    zero->own_range(m.params().total()).first,
               m.params().total(), o.par.zero == 3 ? " and parameters (plus the unit in use)" : "");
  if (o.pp_given || micro_batches > 1)
    fmt::print("pipeline: {} stage{} of {} blocks, {} micro-batch{} of {} ({})\n", pp,
               pp == 1 ? "" : "s", cfg.depth / pp, micro_batches,
               micro_batches == 1 ? "" : "es", B / micro_batches, o.par.pp_schedule);
  fmt::print("loss {:.9g}; wrote pred, loss and {} gradients to {}\n", loss,
             whole.params().entries().size(), o.out);
}
}  // namespace

void add_grad(CLI::App& app) {
  auto opts = std::make_shared<GradOptions>();
  auto* c = app.add_subcommand(
      "grad", "One forward and backward of the loss; writes pred, loss and every gradient");
  c->add_option("--model", opts->model, "model checkpoint (.safetensors)")->required();
  c->add_option("--batch", opts->batch,
                "batch file (.safetensors): x [B,V,H,W], y [B,Vo,H,W], lead_times [B], lat [H]")
      ->required();
  c->add_option("--out", opts->out, "output file (.safetensors)")->required();
  c->add_flag("--bf16", opts->bf16, "mixed precision: bf16 matrix inputs, fp32 accumulation");
  c->add_option("--attention", opts->attention,
                "block attention kernel: flash or dense (standard attention keeping the "
                "probabilities; not with --sp)")
      ->capture_default_str();
  add_parallel_flags(c, opts->par);
  add_device_flag(c, opts->device);
  c->callback([opts, c] {
    opts->distributed = parallel_degrees_given(c);
    opts->dp_given = c->count("--dp") > 0;
    opts->sp_given = c->count("--sp") > 0;
    opts->tp_given = c->count("--tp") > 0;
    opts->pp_given = c->count("--pp") > 0;
    run_grad(*opts);
  });
}

}  // namespace seqvit::cli
