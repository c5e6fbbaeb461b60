// seqvit plan: which layouts of a model, a sequence and a number of devices fit a machine, and
// which is fastest (docs/planner.md). Pure arithmetic: no MPI, no allocation of the model.
#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "core/check.h"
#include "plan/planner.h"

namespace seqvit::cli {

namespace {

struct PlanOptions {
  std::string model = "vit-base", machine = "local", seq, tokenization = "per_variable",
              precision = "bf16", sp_mode, recompute, sp_outer, json, attention = "flash";
  int64_t devices = 1, variables = 64, patch = 2, batch = 0, embed_dim = 0, depth = 0, heads = 0,
          decoder_depth = 2;
  double mlp_ratio = 4.0;
  int dp = 0, tp = 0, pp = 0, sp = 0, zero = -1, micro_batches = 0, top = 10, sp_ulysses = 0,
      threads = 1;
};

// "188416", "188K" (x 1024), "1M" (x 1024^2).
int64_t parse_tokens(const std::string& s) {
  if (s.empty()) fail("--seq is required: the sequence length in tokens (e.g. 188416, 188K, 1M)");
  int64_t mult = 1;
  std::string digits = s;
  const char last = s.back();
  if (last == 'k' || last == 'K') mult = 1024;
  if (last == 'm' || last == 'M') mult = 1024 * 1024;
  if (mult > 1) digits.pop_back();
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(digits, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != digits.size() || digits.empty() || v < 1)
    fail("--seq '{}' is not a token count: give a positive integer, optionally with K (x1024) or "
         "M (x1048576), e.g. 188416, 184K or 1M",
         s);
  return v * mult;
}

void run_plan(const PlanOptions& o) {
  plan::PlanRequest r;
  const bool explicit_shape = o.embed_dim > 0 || o.depth > 0 || o.heads > 0;
  if (explicit_shape) {
    if (o.embed_dim <= 0 || o.depth <= 0 || o.heads <= 0)
      fail("an explicit model needs all of --embed-dim, --depth and --heads (got {}, {}, {})",
           o.embed_dim, o.depth, o.heads);
    r.model.name = "custom";
    r.model.embed_dim = o.embed_dim;
    r.model.depth = o.depth;
    r.model.heads = o.heads;
  } else {
    r.model = plan::model_preset(o.model);
  }
  r.model.mlp_ratio = o.mlp_ratio;
  r.model.decoder_depth = o.decoder_depth;
  r.model.variables = o.variables;
  r.model.patch = o.patch;
  r.model.tokenization = model::parse_tokenization(o.tokenization);
  r.model.tokens = parse_tokens(o.seq);
  if (o.precision == "bf16") r.precision = plan::Precision::BF16;
  else if (o.precision == "fp32") r.precision = plan::Precision::F32;
  else fail("--precision '{}': valid values are bf16 and fp32", o.precision);
  r.devices = o.devices;
  r.machine = plan::machine_from_arg(o.machine);
  r.global_batch = o.batch;
  if (o.dp) r.dp = o.dp;
  if (o.tp) r.tp = o.tp;
  if (o.pp) r.pp = o.pp;
  if (o.sp) r.sp = o.sp;
  if (o.zero >= 0) r.zero = o.zero;
  if (o.micro_batches) r.micro_batches = o.micro_batches;
  if (!o.sp_mode.empty()) r.sp_mode = parallel::parse_sp_mode(o.sp_mode);
  if (o.sp_ulysses) r.sp_ulysses = o.sp_ulysses;
  if (!o.sp_outer.empty()) r.sp_outer = parallel::parse_sp_outer(o.sp_outer);
  if (o.threads < 1) fail("--threads must be >= 1, got {}", o.threads);
  r.threads = o.threads;
  if (o.recompute == "on") r.recompute = true;
  else if (o.recompute == "off") r.recompute = false;
  else if (!o.recompute.empty()) fail("--recompute '{}': valid values are on and off", o.recompute);
  r.attention = model::parse_attention_kernel(o.attention);
  if (o.top < 1) fail("--top must be >= 1, got {}", o.top);
  const auto res = plan::plan(r);
  fmt::print("{}", plan::report(r, res, o.top));
  std::fflush(stdout);
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    if (!(f << plan::report_json(r, res))) fail("--json: cannot write {}", o.json);
  }
  if (res.fitting.empty()) {
    std::fprintf(stderr, "\nseqvit plan: no layout of %s on %lld device(s) fits %s\n",
                 r.model.name.c_str(), static_cast<long long>(r.devices), r.machine.name.c_str());
    std::exit(2);
  }
}

}  // namespace

void add_plan(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  auto* c = app.add_subcommand(
      "plan", "Which parallel layouts of a model and sequence fit a machine, and which is fastest");
  c->add_option("--model", o->model,
                "preset: vit-base, vit-large, climax, 1b, 10b, weak (or --embed-dim/--depth/--heads)")
      ->default_str("vit-base");
  c->add_option("--seq", o->seq, "sequence length in tokens: 188416, 184K (x1024), 1M (x1048576)")
      ->required();
  c->add_option("--devices", o->devices, "number of devices (ranks)")->required();
  c->add_option("--machine", o->machine,
                "preset (frontier, h100, dgx-h100, local) or a machine JSON file (docs/planner.md)")
      ->default_str("local");
  c->add_option("--embed-dim", o->embed_dim, "explicit model: embedding dimension D");
  c->add_option("--depth", o->depth, "explicit model: blocks");
  c->add_option("--heads", o->heads, "explicit model: attention heads");
  c->add_option("--mlp-ratio", o->mlp_ratio, "MLP width / D")->default_str("4");
  c->add_option("--decoder-depth", o->decoder_depth, "head: Linear+GELU pairs")->default_str("2");
  c->add_option("--variables", o->variables, "input variables V")->default_str("64");
  c->add_option("--patch", o->patch, "patch size p")->default_str("2");
  c->add_option("--tokenization", o->tokenization, "per_variable (N = V x patches) or aggregate")
      ->default_str("per_variable");
  c->add_option("--precision", o->precision, "bf16 (fp32 master weights) or fp32")
      ->default_str("bf16");
  c->add_option("--batch", o->batch,
                "global batch in samples (default: one sample per micro-batch and replica)");
  c->add_option("--dp", o->dp, "fix the data-parallel degree");
  c->add_option("--tp", o->tp, "fix the tensor-parallel degree");
  c->add_option("--pp", o->pp, "fix the number of pipeline stages");
  c->add_option("--sp", o->sp, "fix the sequence-parallel degree");
  c->add_option("--sp-mode", o->sp_mode, "fix the SP scheme: ulysses, lss, ring or 2d");
  c->add_option("--zero", o->zero, "fix the ZeRO stage 0..3");
  c->add_option("--recompute", o->recompute, "fix activation recomputation: on or off");
  c->add_option("--micro-batches", o->micro_batches, "fix the micro-batches per step");
  c->add_option("--sp-ulysses", o->sp_ulysses, "fix the Ulysses degree of --sp-mode 2d");
  c->add_option("--sp-outer", o->sp_outer, "fix the scheme across 2-D Ulysses groups: ring or lss");
  c->add_option("--threads", o->threads,
                "CPU threads per device (the attention scratch is per thread)")
      ->default_str("1");
  c->add_option("--top", o->top, "layouts to print")->default_str("10");
  c->add_option("--json", o->json,
                "also write every layout (fitting and too big) with its memory, bytes and times "
                "to this JSON file");
  c->add_option("--attention", o->attention,
                "block attention kernel: flash or dense (keeps the probabilities; sp = 1 only)")
      ->default_str("flash");
  c->callback([o] { run_plan(*o); });
}

}  // namespace seqvit::cli
