// seqvit grad: one forward and backward of the loss for a model and a batch file, written as
// pred, loss and grad.<parameter> — the hook for checking seqvit against another framework.
#include <fmt/core.h>

#include <set>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"

namespace seqvit::cli {

namespace {
struct GradOptions {
  std::string model, batch, out;
  bool bf16 = false;
};

void run_grad(const GradOptions& o) {
  const io::SafetensorsReader model_file(o.model);  // read once: configuration and weights
  const auto cfg = train::read_model_config(model_file);
  model::ClimaX m(cfg);
  Buffer<float> params(m.params().total()), grads(m.params().total());
  train::load_parameters(model_file, m.params(), params.data());

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
  const int64_t V = cfg.V(), Vo = cfg.Vo(), H = cfg.img_h, W = cfg.img_w;
  std::vector<float> x(B * V * H * W), y(B * Vo * H * W), lt(B), lat(H);
  br.read_f32("x", {B, V, H, W}, x.data());
  br.read_f32("y", {B, Vo, H, W}, y.data());
  br.read_f32("lead_times", {B}, lt.data());
  br.read_f32("lat", {H}, lat.data());

  m.plan(B, o.bf16 ? model::Precision::BF16 : model::Precision::F32);
  m.sync_weights(params.data());
  std::vector<float> pred(B * Vo * H * W);
  const double loss = m.forward(params.data(), {B, x.data(), y.data(), lt.data(), lat.data()},
                                pred.data());
  m.backward(params.data(), grads.data());

  io::SafetensorsWriter w;
  w.set_metadata("seqvit.config", cfg.to_json());
  w.set_metadata("seqvit.precision", o.bf16 ? "bf16" : "fp32");
  w.add_f32("pred", {B, Vo, H, W}, pred.data());
  const float lf = static_cast<float>(loss);
  w.add_f32("loss", {1}, &lf);
  for (const auto& e : m.params().entries())
    w.add_f32("grad." + e.name, e.shape, grads.data() + e.offset);
  w.write(o.out);
  fmt::print("loss {:.9g}; wrote pred, loss and {} gradients to {}\n", loss,
             m.params().entries().size(), o.out);
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
  c->callback([opts] { run_grad(*opts); });
}

}  // namespace seqvit::cli
