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
  bool recompute = false;
  std::string attention = "flash";  // block attention kernel: flash | dense
  int sp = 0;  // 0 (with tp and pp 0): no MPI at all
  int tp = 0;
  std::string order = "dp,pp,tp,sp";  // rank grid axes, outermost first
  std::string sp_mode = "ulysses";
  int sp_ulysses = 0;            // --sp-mode 2d: the Ulysses degree U (P / U ring or LSS groups)
  std::string sp_outer = "ring";  // --sp-mode 2d: ring or lss across the Ulysses groups
  int pp = 0, micro_batches = 1;
  std::string pp_schedule = "1f1b";
  int dp = 0;    // data-parallel replicas (samples split over them)
  int zero = 0;  // ZeRO stage over the dp x sp replicas
};

// The number of ranks this process was launched among by mpirun (Open MPI, MPICH/PMI), or 1.
int launched_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

void run_grad(const GradOptions& o) {
  std::optional<parallel::SpMode> mode;
  std::optional<train::PipeSchedule> schedule;
  parallel::GridConfig g;  // with --sp / --tp / --pp: the degrees, checked before MPI starts
  const bool distributed =
      o.sp != 0 || o.pp != 0 || o.tp != 0 || o.dp != 0;  // MPI (--micro-batches alone
                                                          // accumulates in-process)
  if (o.micro_batches < 1) fail("--micro-batches must be >= 1, got {}", o.micro_batches);
  if (o.zero < 0 || o.zero > 3)
    fail("--zero {} is out of range: valid stages are 0 (off), 1 (optimizer state: for grad the "
         "same as 0), 2 (and gradients) and 3 (and parameters)",
         o.zero);
  if (o.zero > 0 && std::max(o.dp, 1) * std::max(o.sp, 1) == 1)
    fail("--zero {} shards over the data- and sequence-parallel ranks, but --dp 1 --sp 1 is a "
         "single rank; add --dp D (and/or --sp P) under mpirun, or drop --zero",
         o.zero);
  if (o.zero == 3 && o.bf16)
    fail("--zero 3 runs in fp32 only (the bf16 weight copy would be the whole model); use "
         "--zero 1 or 2 with --bf16");
  schedule = train::parse_pipe_schedule(o.pp_schedule);
  if (!distributed) {
    if (launched_ranks() > 1)
      fail("seqvit grad was launched as {} ranks without --sp, --tp, --pp or --dp; to split the "
           "sequence pass --sp {} --sp-mode ulysses|lss|ring|2d (or the weights, --tp {}, the "
           "blocks, --pp S, or the samples, --dp D), or run it as one process",
           launched_ranks(), launched_ranks(), launched_ranks());
  } else {
    if (o.sp < 0) fail("--sp must be >= 1, got {}", o.sp);
    if (o.pp < 0) fail("--pp must be >= 1, got {}", o.pp);
    if (o.tp < 0) fail("--tp must be >= 1, got {}", o.tp);
    if (o.dp < 0) fail("--dp must be >= 1, got {}", o.dp);
    mode = parallel::parse_sp_mode(o.sp_mode);
    parallel::set_sp_degrees(g, std::max(o.sp, 1), *mode, o.sp_ulysses,
                         parallel::parse_sp_outer(o.sp_outer));
  }
  const int sp = std::max(o.sp, 1), pp = std::max(o.pp, 1), tp = std::max(o.tp, 1),
            dp = std::max(o.dp, 1);
  g.tp = tp;
  g.order = o.order;
  parallel::GridLayout check_order(g);  // a bad order is refused before MPI starts
  g.dp = dp;
  g.zero = o.zero;
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
  int slots = train::pipeline_slots(*schedule, 1, 0, o.micro_batches);
  if (!distributed && B % o.micro_batches != 0)
    fail("the batch of {} cannot be split into --micro-batches {}", B, o.micro_batches);
  if (distributed) {
    world.emplace(parallel::mpi_world());
    if (world->size() != tp * sp * pp * dp) {
      std::string flags;
      if (o.dp > 0) flags += fmt::format(" --dp {}", dp);
      if (o.tp > 0) flags += fmt::format(" --tp {}", tp);
      if (o.pp > 0) flags += fmt::format(" --pp {}", pp);
      if (o.sp > 0 || o.pp > 0) flags += fmt::format(" --sp {}", sp);
      fail("{} needs {} ranks (mpirun -np {}), but this job has {}", flags.substr(1),
           tp * sp * pp * dp, tp * sp * pp * dp, world->size());
    }
    g.pp = pp;
    g.micro_batches = o.micro_batches;
    parallel::validate(g, world->size(), cfg, B);
    grid.emplace(*world, g);
    if (sp > 1) attn.emplace(*grid);
    if (o.zero > 0) zero.emplace(grid->sp_dp(), o.zero);
    if (tp > 1) {
      tpm.emplace(grid->tp());
      shard.tp_size = tp;
      shard.tp_rank = grid->coords().tp;
    }
    const int stage = grid->coords().pp;
    shard.first_block = stage * (cfg.depth / pp);
    shard.last_block = (stage + 1) * (cfg.depth / pp);
    slots = train::pipeline_slots(*schedule, pp, stage, o.micro_batches);
  }
  const bool root = !grid || grid->rank() == 0;
  model::ClimaX m(cfg, shard);

  // every rank reads the whole (logical) model file and keeps its share (stage, TP slice);
  // parameter stores, whose pages ZeRO-2/3 release
  auto params = m.device().parameter_store(m.params().total());
  auto grads = m.device().parameter_store(m.params().total());
  {
    Buffer<float> all(whole.params().total());
    eval::load_parameters(model_file, whole.params(), all.data());
    m.slice_logical(all.data(), params->data());
  }
  const int64_t V = cfg.V(), Vo = cfg.Vo(), H = cfg.img_h, W = cfg.img_w;
  std::vector<float> x(B * V * H * W), y(B * Vo * H * W), lt(B), lat(H);
  br.read_f32("x", {B, V, H, W}, x.data());
  br.read_f32("y", {B, Vo, H, W}, y.data());
  br.read_f32("lead_times", {B}, lt.data());
  br.read_f32("lat", {H}, lat.data());

  m.set_recompute(o.recompute);
  if (tpm) m.set_tensor_parallel(&*tpm);
  const int64_t Bl = B / dp;  // the samples of this rank's dp replica (validate: dp divides B)
  m.plan(Bl / o.micro_batches, o.bf16 ? model::Precision::BF16 : model::Precision::F32,
         attn ? &*attn : nullptr, B, slots);
  m.sync_weights(params->data());
  if (zero) zero->attach(m, *params, *grads);  // ZeRO-3: keeps only its range
  std::vector<float> pred(B * Vo * H * W);
  double loss = 0;
  const model::BatchView batch{B, x.data(), y.data(), lt.data(), lat.data()};
  std::vector<float> logical_grads(root ? whole.params().total() : 0);
  if (!distributed && o.micro_batches == 1) {
    loss = m.forward(params->data(), batch, pred.data());
    m.backward(params->data(), grads->data());
  } else if (!distributed) {  // gradient accumulation over the micro-batches
    loss = train::Pipeline(m, *schedule, o.micro_batches)
               .run(params->data(), grads->data(), batch, pred.data());
  } else {
    // From here on the ranks communicate: an error on one rank ends them all (no hang).
    try {
      train::Pipeline pipe(grid->pp(), m, *schedule, o.micro_batches);
      std::vector<float> shard_pred(pred.size(), 0.f);  // this rank's pixels, zeros elsewhere
      // dp replica d: samples [d Bl, (d + 1) Bl)
      const int64_t s0 = grid->coords().dp * Bl;
      const model::BatchView local{Bl, x.data() + s0 * V * H * W, y.data() + s0 * Vo * H * W,
                                   lt.data() + s0, lat.data()};
      if (zero) zero->zero_grads(grads->data());
      const double part =
          pipe.run(params->data(), grads->data(), local, shard_pred.data() + s0 * Vo * H * W);
      // the replicas of this rank's shard: sp, and dp with --dp
      parallel::Comm& replicas = dp > 1 ? grid->sp_dp() : grid->sp();
      std::vector<model::LogicalRun> runs = m.logical_runs();
      const float* gsrc = grads->data();
      if (zero) {  // loss and gradients summed over sp_dp (ZeRO-2/3: into each rank's range)
        loss = zero->reduce(part, grads->data());
        if (zero->stage() >= 2) {
          runs = zero->moment_runs();
          gsrc = zero->grad_shard();
        }
      } else {
        loss = parallel::sp_reduce_loss(replicas, part);
        parallel::sp_reduce_gradients(replicas, grads->data(), m.params().total());
      }
      // every pixel has one owner among the last stage's SP ranks (TP ranks hold copies: only
      // tp rank 0 contributes), so the sum is the prediction
      if (grid->coords().tp != 0) std::fill(shard_pred.begin(), shard_pred.end(), 0.f);
      world->reduce(std::span<const float>(shard_pred),
                    std::span<float>(root ? pred.data() : nullptr, root ? pred.size() : 0), 0);
      parallel::gather_logical(*world, runs, gsrc, logical_grads.data(), whole.params().total(), 0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", grid->rank(), e.what());
      parallel::abort_all(1);
    }
  }
  if (!root) return;
  const float* gl = distributed ? logical_grads.data() : grads->data();

  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", cfg.to_json());
  w.set_metadata("seqvit.precision", o.bf16 ? "bf16" : "fp32");
  w.add_f32("pred", {B, Vo, H, W}, pred.data());
  const float lf = static_cast<float>(loss);
  w.add_f32("loss", {1}, &lf);
  for (const auto& e : whole.params().entries())
    w.add_f32("grad." + e.name, e.shape, gl + e.offset);
  w.write(o.out);
  if (o.sp > 0)
    fmt::print("sequence parallel: {} rank{}, {}, {} of {} tokens per rank\n", sp,
               sp == 1 ? "" : "s",
               *mode == parallel::SpMode::TwoD
                   ? fmt::format("2d (ulysses {} x {} {})", grid->sp_ulysses().size(),
                                 o.sp_outer, grid->sp_ring().size())
                   : o.sp_mode,
               m.local_tokens(), cfg.N());
  if (o.tp > 0)
    fmt::print("tensor parallel: {} rank{}, {} of {} heads and {} of {} MLP units per rank\n",
               tp, tp == 1 ? "" : "s", cfg.num_heads / tp, cfg.num_heads, cfg.hidden() / tp,
               cfg.hidden());
  if (o.dp > 0)
    fmt::print("data parallel: {} replica{}, {} of {} samples each\n", dp, dp == 1 ? "" : "s",
               Bl, B);
  if (zero)
    fmt::print("ZeRO-{} over the {} ranks of sp x dp: per rank {} of {} gradient values{}\n",
               o.zero, dp * sp, zero->own_range(m.params().total()).second -
                                    zero->own_range(m.params().total()).first,
               m.params().total(), o.zero == 3 ? " and parameters (plus the unit in use)" : "");
  if (o.pp > 0 || o.micro_batches > 1)
    fmt::print("pipeline: {} stage{} of {} blocks, {} micro-batch{} of {} ({})\n", pp,
               pp == 1 ? "" : "s", cfg.depth / pp, o.micro_batches,
               o.micro_batches == 1 ? "" : "es", B / o.micro_batches, o.pp_schedule);
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
  c->add_flag("--recompute", opts->recompute,
              "activation recomputation (keep block inputs only; identical results)");
  c->add_option("--attention", opts->attention,
                "block attention kernel: flash or dense (standard attention keeping the "
                "probabilities; not with --sp)")
      ->capture_default_str();
  c->add_option("--sp", opts->sp,
                "sequence-parallel degree: split the tokens over P ranks (run under "
                "mpirun -np P; fp32)");
  c->add_option("--sp-mode", opts->sp_mode,
                "sequence-parallel attention: ulysses, lss, ring or 2d (Ulysses inside groups "
                "of --sp-ulysses ranks, --sp-outer across them)")
      ->default_str("ulysses");
  c->add_option("--sp-ulysses", opts->sp_ulysses,
                "--sp-mode 2d: Ulysses degree U, dividing --sp P and at most the heads");
  c->add_option("--sp-outer", opts->sp_outer,
                "--sp-mode 2d: ring or lss across the P / U Ulysses groups")
      ->default_str("ring");
  c->add_option("--order", opts->order,
                "rank grid: the axes dp, pp, tp, sp, outermost first")
      ->default_str("dp,pp,tp,sp");
  c->add_option("--tp", opts->tp,
                "tensor-parallel degree: split heads and MLP units over T ranks (mpirun -np T*S*P "
                "with --pp S and --sp P)");
  c->add_option("--pp", opts->pp,
                "pipeline stages: split the blocks over S ranks (mpirun -np T*S*P with --tp T and "
                "--sp P)");
  c->add_option("--micro-batches", opts->micro_batches,
                "split the batch into m micro-batches (pipeline schedule; gradient accumulation "
                "without --pp)")
      ->default_str("1");
  c->add_option("--pp-schedule", opts->pp_schedule, "pipeline schedule: 1f1b or gpipe")
      ->default_str("1f1b");
  c->add_option("--dp", opts->dp,
                "data-parallel replicas: split the batch's samples over D ranks and sum "
                "(mpirun -np D*T*S*P)");
  c->add_option("--zero", opts->zero,
                "ZeRO stage over the --dp x --sp replicas: 2 shards the gradients, 3 also the "
                "parameters (gathered per unit); 0 off");
  c->callback([opts] { run_grad(*opts); });
}

}  // namespace seqvit::cli
