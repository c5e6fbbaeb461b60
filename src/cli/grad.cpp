// seqvit grad: one forward and backward of the loss for a model and a batch file, written as
// pred, loss and grad.<parameter> — the hook for checking seqvit against another framework.
//
// With --sp P (under `mpirun -np P`) the token sequence is split over P ranks (docs/
// parallelism.md "The model under sequence parallelism"): every rank reads the same files,
// computes its shard, the loss and gradients are summed over the group, pred is gathered, and
// rank 0 writes the same file a single process would. With --tp T (and --sp P, under
// `mpirun -np T*P`) each rank also holds only its tensor-parallel slice of the weights ("Tensor
// parallelism"); rank 0 gathers the logical gradients. MPI is initialised only with --sp or
// --tp; without them the command never touches MPI, and launching it as several ranks is
// refused (they would all write the same file).
#include <fmt/core.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "dist/comm.h"
#include "dist/grid.h"
#include "dist/logical.h"
#include "dist/sp_model.h"
#include "dist/tp_model.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"

namespace seqvit::cli {

namespace {
struct GradOptions {
  std::string model, batch, out;
  bool bf16 = false;
  bool recompute = false;
  int sp = 0;  // 0 (and tp 0): no MPI at all
  int tp = 0;
  std::string sp_mode = "ulysses";
  int sp_ulysses = 0;            // --sp-mode 2d: the Ulysses degree U (P / U ring or LSS groups)
  std::string sp_outer = "ring";  // --sp-mode 2d: ring or lss across the Ulysses groups
};

// The number of ranks this process was launched among by mpirun (Open MPI, MPICH/PMI), or 1.
int launched_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

void run_grad(const GradOptions& o) {
  std::optional<dist::SpMode> mode;
  dist::GridConfig g;  // with --sp or --tp: the SP and TP degrees, checked before MPI starts
  const int sp = std::max(o.sp, 1), tp = std::max(o.tp, 1);
  if (o.sp == 0 && o.tp == 0) {
    if (launched_ranks() > 1)
      fail("seqvit grad was launched as {} ranks without --sp or --tp; to split the sequence "
           "pass --sp {} --sp-mode ulysses|lss|ring|2d (or the weights, --tp {}), or run it as "
           "one process",
           launched_ranks(), launched_ranks(), launched_ranks());
  } else {
    if (o.sp < 0) fail("--sp must be >= 1, got {}", o.sp);
    if (o.tp < 0) fail("--tp must be >= 1, got {}", o.tp);
    mode = dist::parse_sp_mode(o.sp_mode);
    dist::set_sp_degrees(g, sp, *mode, o.sp_ulysses, dist::parse_sp_outer(o.sp_outer));
    g.tp = tp;
    if (o.bf16 && o.sp != 0)
      fail("--sp runs in fp32 only (the SP attention operators have no bf16 mode); drop --bf16");
  }
  // Declared first so that it is destroyed last (MPI_Finalize after every communicator).
  std::optional<dist::MpiRuntime> mpi;
  if (mode) mpi.emplace(nullptr, nullptr);

  const io::SafetensorsReader model_file(o.model);  // read once: configuration and weights
  const auto cfg = train::read_model_config(model_file);

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

  // Sequence and tensor parallelism: the configuration is checked (world size vs --tp x --sp,
  // tokens vs P, heads and MLP width vs T, heads / T vs P for Ulysses) on every rank alike
  // before anything else is allocated, so a bad one ends every rank with the same message.
  std::optional<dist::Comm> world;
  std::optional<dist::RankGrid> grid;
  std::optional<dist::SpBlockAttention> attn;
  std::optional<dist::TpModel> tpm;
  if (mode) {
    world.emplace(dist::Comm::world());
    if (world->size() != tp * sp) {
      const std::string flags = o.tp == 0   ? fmt::format("--sp {}", sp)
                                : o.sp == 0 ? fmt::format("--tp {}", tp)
                                            : fmt::format("--tp {} --sp {}", tp, sp);
      fail("{} needs {} ranks (mpirun -np {}), but this job has {}", flags, tp * sp, tp * sp,
           world->size());
    }
    dist::validate(g, world->size(), cfg, B);
    grid.emplace(*world, g);
    if (o.sp != 0) attn.emplace(*grid);
    tpm.emplace(grid->tp());
  }
  const bool root = !grid || grid->rank() == 0;
  model::ClimaX m(cfg, model::ModelShard{tp, grid ? grid->coords().tp : 0});
  const model::ClimaX whole(cfg);  // the logical (single-process) layout of the files

  Buffer<float> params(m.params().total()), grads(m.params().total());
  if (tp == 1) {
    train::load_parameters(model_file, m.params(), params.data());
  } else {  // every rank reads the whole model and keeps its slice
    std::vector<float> logical(static_cast<size_t>(whole.params().total()));
    train::load_parameters(model_file, whole.params(), logical.data());
    m.slice_logical(logical.data(), params.data());
  }
  const int64_t V = cfg.V(), Vo = cfg.Vo(), H = cfg.img_h, W = cfg.img_w;
  std::vector<float> x(B * V * H * W), y(B * Vo * H * W), lt(B), lat(H);
  br.read_f32("x", {B, V, H, W}, x.data());
  br.read_f32("y", {B, Vo, H, W}, y.data());
  br.read_f32("lead_times", {B}, lt.data());
  br.read_f32("lat", {H}, lat.data());

  m.set_recompute(o.recompute);
  if (tpm) m.set_tensor_parallel(&*tpm);
  m.plan(B, o.bf16 ? model::Precision::BF16 : model::Precision::F32,
         attn ? &*attn : nullptr);
  m.sync_weights(params.data());
  std::vector<float> pred(B * Vo * H * W);
  std::vector<float> logical_grads;  // tensor parallel: the gathered gradients, on rank 0
  double loss = 0;
  const model::BatchView batch{B, x.data(), y.data(), lt.data(), lat.data()};
  if (!mode) {
    loss = m.forward(params.data(), batch, pred.data());
    m.backward(params.data(), grads.data());
  } else {
    // From here on the ranks communicate: an error on one rank ends them all (no hang).
    try {
      std::vector<float> shard(pred.size(), 0.f);  // this rank's pixels, zeros elsewhere
      loss = dist::sp_reduce_loss(grid->sp(), m.forward(params.data(), batch, shard.data()));
      m.backward(params.data(), grads.data());
      dist::sp_reduce_gradients(grid->sp(), grads.data(), m.params().total());
      dist::sp_gather_pred(grid->sp(), shard.data(), pred.data(),
                           static_cast<int64_t>(pred.size()), 0);
      // every TP group holds the same gradients after the SP sum: rank 0's group gathers them
      if (tp > 1 && grid->coords().sp == 0 && grid->coords().dp == 0 && grid->coords().pp == 0) {
        if (root) logical_grads.resize(static_cast<size_t>(whole.params().total()));
        dist::gather_logical(grid->tp(), m.logical_runs(), grads.data(), logical_grads.data(),
                             whole.params().total(), 0);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "\nseqvit: error on rank %d: %s\n", grid->rank(), e.what());
      dist::abort_all(1);
    }
  }
  if (!root) return;

  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", cfg.to_json());
  w.set_metadata("seqvit.precision", o.bf16 ? "bf16" : "fp32");
  w.add_f32("pred", {B, Vo, H, W}, pred.data());
  const float lf = static_cast<float>(loss);
  w.add_f32("loss", {1}, &lf);
  const float* gw = tp > 1 ? logical_grads.data() : grads.data();
  for (const auto& e : whole.params().entries())
    w.add_f32("grad." + e.name, e.shape, gw + e.offset);
  w.write(o.out);
  if (o.sp != 0)
    fmt::print("sequence parallel: {} rank{}, {}, {} of {} tokens per rank\n", o.sp,
               o.sp == 1 ? "" : "s",
               *mode == dist::SpMode::TwoD
                   ? fmt::format("2d (ulysses {} x {} {})", grid->sp_ulysses().size(),
                                 o.sp_outer, grid->sp_ring().size())
                   : o.sp_mode,
               m.local_tokens(), cfg.N());
  if (o.tp != 0)
    fmt::print("tensor parallel: {} rank{}, {} of {} heads and {} of {} MLP units per rank\n",
               tp, tp == 1 ? "" : "s", cfg.num_heads / tp, cfg.num_heads, cfg.hidden() / tp,
               cfg.hidden());
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
  c->add_option("--tp", opts->tp,
                "tensor-parallel degree: split heads and MLP units over T ranks (run under "
                "mpirun -np T*P with --sp P)");
  c->callback([opts] { run_grad(*opts); });
}

}  // namespace seqvit::cli
