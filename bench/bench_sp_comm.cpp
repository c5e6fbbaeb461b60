// Communication volume of one sequence-parallel ClimaX training step, measured against the
// formulas (docs/parallelism.md "Communication volume"). For each SP mode the program
// plans a sharded ClimaX, runs one step (forward, backward, the loss and gradient all-reduces over
// the SP group) with the grid's Comm counters reset before each phase, and prints per rank the
// bytes sent by op kind and communicator next to
//   scheme  the exact count of the operators' own formulas (depth x *_bytes_sent of
//           parallel/sp_attention.h; the all-reduce's 2 (n - share_r) elements), and
//   design  the closed-form docs/parallelism.md numbers per layer x depth: Ulysses 4 B N D (P-1)/P^2 each
//           way, LSS 2 B N D (P-1)/P each way, ring 2 B N D (P-1)/P forward and twice that
//           backward; the gradient all-reduce 2 params (P-1)/P floats (a nominal ring).
// 2-D SP (modes 2d-ring, 2d-lss; P = U x R with U = --sp-ulysses) gets one row per group and
// direction: the Ulysses exchange of the segment on sp_ulysses, 4 B N D (U-1)/(U P), and the
// outer scheme on sp_ring, 2 B N D (R-1)/P (ring backward: twice that), per layer.
// Timings are not the point (see bench_block_step for those): one step, tiny shapes.
//   mpirun -np P bench_sp_comm [--n N | --img HxW --patch p] [--embed-dim D] [--heads Hh]
//       [--depth L] [--batch B] [--vars V] [--tokenization aggregate|per_variable]
//       [--modes ulysses,lss,ring,2d-ring,2d-lss] [--sp-ulysses U] [--csv FILE] [--check]
//       [--device NAME]
// --device: the backend the step runs on (default cpu; an unknown name exits 1 listing this
// build's devices). The counters count the bytes Comm moves, whatever the device.
// --check: exit 1 if any measured value differs from the scheme's formula (on any rank).
#include <fmt/core.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/check.h"
#include "parallel/mpi_comm.h"
#include "parallel/grid.h"
#include "parallel/sp_attention.h"
#include "parallel/sp_attention_2d.h"
#include "parallel/sp_model.h"
#include "model/climax.h"
#include "model/device_batch.h"

using namespace seqvit;

namespace {

// A scheme to measure: a 1-D mode, or 2d with the scheme across its Ulysses groups.
struct Scheme {
  parallel::SpMode mode = parallel::SpMode::Ulysses;
  parallel::SpMode outer = parallel::SpMode::Ring;  // 2d only
  std::string name() const {
    return mode == parallel::SpMode::TwoD ? "2d-" + parallel::to_string(outer) : parallel::to_string(mode);
  }
};

Scheme parse_scheme(const std::string& m) {
  if (m.rfind("2d-", 0) == 0) return {parallel::SpMode::TwoD, parallel::parse_sp_outer(m.substr(3))};
  if (m == "2d") return {parallel::SpMode::TwoD, parallel::SpMode::Ring};
  return {parallel::parse_sp_mode(m), parallel::SpMode::Ring};
}

struct Options {
  int64_t n = 0;  // tokens; 0: from --img/--patch
  int64_t img_h = 0, img_w = 0, patch = 2;
  int64_t embed_dim = 64, heads = 4, depth = 2, batch = 1, vars = 2;
  model::Tokenization tok = model::Tokenization::Aggregate;
  std::vector<Scheme> modes{{parallel::SpMode::Ulysses},
                            {parallel::SpMode::Lss},
                            {parallel::SpMode::Ring},
                            {parallel::SpMode::TwoD, parallel::SpMode::Ring},
                            {parallel::SpMode::TwoD, parallel::SpMode::Lss}};
  int sp_ulysses = 0;  // 2d: the Ulysses degree; 0: 2 if P is even, else 1
  std::string csv;
  std::string device = "cpu";
  bool check = false;
};

[[noreturn]] void usage_error(const std::string& msg) {
  throw Error(msg +
              " (flags: --n N | --img HxW --patch p, --embed-dim D, --heads Hh, --depth L, "
              "--batch B, --vars V, --tokenization aggregate|per_variable, --modes "
              "ulysses,lss,ring,2d-ring,2d-lss, --sp-ulysses U, --csv FILE, --check, --device NAME)");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + a);
      return argv[++i];
    };
    auto number = [&]() -> int64_t {
      const std::string v = value();
      try {
        return std::stoll(v);
      } catch (const std::exception&) {
        usage_error(a + " needs an integer, got '" + v + "'");
      }
    };
    if (a == "--n") o.n = number();
    else if (a == "--img") {
      const std::string v = value();
      if (std::sscanf(v.c_str(), "%ldx%ld", &o.img_h, &o.img_w) != 2)
        usage_error("--img needs HxW, got '" + v + "'");
    } else if (a == "--patch") o.patch = number();
    else if (a == "--embed-dim") o.embed_dim = number();
    else if (a == "--heads") o.heads = number();
    else if (a == "--depth") o.depth = number();
    else if (a == "--batch") o.batch = number();
    else if (a == "--vars") o.vars = number();
    else if (a == "--tokenization") o.tok = model::parse_tokenization(value());
    else if (a == "--modes") {
      o.modes.clear();
      std::stringstream ss(value());
      for (std::string m; std::getline(ss, m, ',');) o.modes.push_back(parse_scheme(m));
    } else if (a == "--sp-ulysses") o.sp_ulysses = static_cast<int>(number());
    else if (a == "--csv") o.csv = value();
    else if (a == "--check") o.check = true;
    else if (a == "--device") o.device = value();
    else usage_error("unknown flag " + a);
  }
  if (o.vars < 1) usage_error(fmt::format("--vars must be >= 1, got {}", o.vars));
  return o;
}

// The model: img/patch from --img/--patch, or a grid of N tokens (per_variable: N / V patches)
// as close to square as N's divisors allow, patch --patch.
model::ModelConfig model_config(const Options& o) {
  model::ModelConfig c;
  c.embed_dim = o.embed_dim;
  c.num_heads = o.heads;
  c.depth = o.depth;
  c.decoder_depth = 1;
  c.tokenization = o.tok;
  c.variables.clear();
  for (int64_t v = 0; v < o.vars; ++v) c.variables.push_back(fmt::format("v{}", v));
  c.out_variables = c.variables;
  c.patch_size = o.patch;
  if (o.img_h > 0) {
    c.img_h = o.img_h;
    c.img_w = o.img_w;
  } else {
    if (o.n <= 0) usage_error("give --n N or --img HxW");
    const int64_t per = o.tok == model::Tokenization::PerVariable ? o.vars : 1;
    if (o.n % per != 0)
      usage_error(fmt::format("--n {} is not a multiple of the {} variables (per_variable "
                              "tokens are V x patches)",
                              o.n, per));
    const int64_t lp = o.n / per;
    int64_t gh = 1;
    for (int64_t h = 1; h * h <= lp; ++h)
      if (lp % h == 0) gh = h;
    c.img_h = gh * o.patch;
    c.img_w = (lp / gh) * o.patch;
  }
  c.validate();
  return c;
}

// One row of the report: one phase of the step on one rank.
struct Row {
  std::string mode, component, ops;
  uint64_t measured = 0, scheme = 0;
  double design = 0;
};

// "sp all_to_all" for every (comm, op) with calls in s.
std::string ops_of(const parallel::CommStats& s) {
  std::string out;
  for (const auto& e : s.entries)
    if (e.calls > 0) out += (out.empty() ? "" : " + ") + e.comm + " " + parallel::to_string(e.op);
  return out.empty() ? "-" : out;
}

// An SP grid of the whole world for `scheme` (2d: U x P/U).
parallel::GridConfig grid_config(const Scheme& scheme, int P, int U) {
  parallel::GridConfig g;
  const bool two_d = scheme.mode == parallel::SpMode::TwoD;
  parallel::set_sp_degrees(g, P, scheme.mode, two_d ? (U > 0 ? U : P % 2 == 0 ? 2 : 1) : 0,
                       scheme.outer);
  return g;
}

int64_t even_share(int64_t n, int P, int r) { return n / P + (r < n % P ? 1 : 0); }

// Bytes of the entries of `s` on communicator `comm`.
uint64_t bytes_on(const parallel::CommStats& s, const std::string& comm) {
  uint64_t b = 0;
  for (const auto& e : s.entries)
    if (e.comm == comm) b += e.bytes;
  return b;
}

// "sp_ulysses all_to_all" for the entries of `s` on `comm` (or on every other one: `others`).
std::string ops_on(const parallel::CommStats& s, const std::string& comm, bool others) {
  parallel::CommStats part;
  for (const auto& e : s.entries)
    if ((e.comm == comm) != others) part.entries.push_back(e);
  return ops_of(part);
}

// Runs one step of `scheme` and returns this rank's rows: attention forward, attention backward
// (2d: each split into its sp_ulysses and sp_ring part), loss all-reduce, gradient all-reduce,
// total.
std::vector<Row> measure(const parallel::Comm& world, const model::ModelConfig& c, int64_t B,
                         const Scheme& scheme, int sp_ulysses, backend::Device& dev) {
  const int P = world.size();
  const parallel::GridConfig g = grid_config(scheme, P, sp_ulysses);
  parallel::validate(g, P, c, B);
  parallel::RankGrid grid(world, g);
  parallel::SpBlockAttention attn(grid);
  model::ClimaX m(c, {}, dev);
  const int64_t np = m.params().total();
  std::vector<float> host_params(np);
  m.init(host_params.data(), 7);
  auto params = dev.parameter_store(np), grads = dev.parameter_store(np);
  dev.copy_to_device(params->data(), host_params.data(), np * sizeof(float));
  // a random batch, the same on every rank
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(B * c.V() * c.img_h * c.img_w), y(B * c.Vo() * c.img_h * c.img_w),
      lead(B, 6.f), lat(c.img_h);
  for (auto& v : x) v = normal(rng);
  for (auto& v : y) v = normal(rng);
  for (int64_t i = 0; i < c.img_h; ++i) lat[i] = -80.f + 160.f * i / std::max<int64_t>(1, c.img_h - 1);
  model::DeviceBatch dbatch(dev, c, B);
  const model::BatchView batch = dbatch.upload({B, x.data(), y.data(), lead.data(), lat.data()});
  m.plan(B, model::Precision::F32, &attn);

  // the step, with a snapshot of every communicator's counters per phase
  std::vector<parallel::CommStats> phase;
  grid.reset_stats();
  const double partial = m.forward(params->data(), batch);
  phase.push_back(grid.stats());
  grid.reset_stats();
  m.backward(params->data(), grads->data());
  phase.push_back(grid.stats());
  grid.reset_stats();
  const double loss = parallel::sp_reduce_loss(grid.sp(), partial);
  phase.push_back(grid.stats());
  grid.reset_stats();
  parallel::sp_reduce_gradients(grid.sp(), grads->data(), np);
  phase.push_back(grid.stats());
  const std::string name = scheme.name();
  if (!std::isfinite(loss)) throw Error(fmt::format("{}: loss is {}", name, loss));

  // the formulas
  const int r = grid.sp().rank();
  const parallel::SpAttentionShape s{B, c.N(), c.num_heads, c.head_dim()};
  const uint64_t depth = static_cast<uint64_t>(c.depth);
  const double L = static_cast<double>(c.depth), BND = double(B) * c.N() * c.embed_dim,
               f = sizeof(float), q = double(P - 1) / P;
  std::vector<Row> rows;
  if (scheme.mode != parallel::SpMode::TwoD) {
    const parallel::SpAttentionBytes per_layer = parallel::sp_scheme(scheme.mode).bytes_sent(s, P, r);
    const double design_fwd =
        L * f * BND * (scheme.mode == parallel::SpMode::Ulysses ? 4 * q / P : 2 * q);
    const double design_bwd = (scheme.mode == parallel::SpMode::Ring ? 2 : 1) * design_fwd;
    rows.push_back({name, "attention forward", ops_of(phase[0]), phase[0].total_bytes(),
                    depth * per_layer.forward, design_fwd});
    rows.push_back({name, "attention backward", ops_of(phase[1]), phase[1].total_bytes(),
                    depth * per_layer.backward, design_bwd});
  } else {
    // Ulysses over U on the segment {B, N/R, Hh, d} (sp_ulysses), the outer scheme over R for
    // this rank's heads {B, N, Hh_u, d} (sp_ring; every other communicator is counted there too,
    // so that nothing escapes the check).
    const int U = g.sp_ulysses, R = g.sp_ring, u = r % U;
    const parallel::SpAttentionShape seg{B, c.N() / R, c.num_heads, c.head_dim()},
        outer{B, c.N(), parallel::ulysses_heads(c.num_heads, U, u).count, c.head_dim()};
    const parallel::SpAttentionBytes uly = parallel::ulysses_bytes_sent(seg, U, u),
                                 out = parallel::sp_scheme(scheme.outer).bytes_sent(outer, R, r / U);
    const double uly_design = L * f * BND * 4 * (U - 1) / (double(U) * P),
                 out_design = L * f * BND * 2 * (R - 1) / P;
    const char* comp[2][2] = {{"attn fwd sp_ulysses", "attn fwd sp_ring"},
                              {"attn bwd sp_ulysses", "attn bwd sp_ring"}};
    for (int dir = 0; dir < 2; ++dir) {
      const parallel::CommStats& ph = phase[dir];
      const uint64_t on_uly = bytes_on(ph, "sp_ulysses");
      rows.push_back({name, comp[dir][0], ops_on(ph, "sp_ulysses", false), on_uly,
                      depth * (dir == 0 ? uly.forward : uly.backward), uly_design});
      rows.push_back({name, comp[dir][1], ops_on(ph, "sp_ulysses", true),
                      ph.total_bytes() - on_uly, depth * (dir == 0 ? out.forward : out.backward),
                      (dir == 1 && scheme.outer == parallel::SpMode::Ring ? 2 : 1) * out_design});
    }
  }
  rows.push_back({name, "loss all-reduce", ops_of(phase[2]), phase[2].total_bytes(),
                  2 * uint64_t(1 - even_share(1, P, r)) * sizeof(double), 2 * q * sizeof(double)});
  rows.push_back({name, "gradient all-reduce", ops_of(phase[3]), phase[3].total_bytes(),
                  2 * uint64_t(np - even_share(np, P, r)) * sizeof(float), 2 * q * np * f});
  Row total{name, "total", "", 0, 0, 0};
  for (const Row& row : rows) {
    total.measured += row.measured;
    total.scheme += row.scheme;
    total.design += row.design;
  }
  rows.push_back(total);
  return rows;
}

std::string human(double bytes) {
  if (bytes >= 1024.0 * 1024.0) return fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024.0));
  if (bytes >= 1024.0) return fmt::format("{:.2f} KiB", bytes / 1024.0);
  return fmt::format("{:.0f} B", bytes);
}

int run(int argc, char** argv) {
  parallel::Comm world = parallel::mpi_world();
  const Options o = parse(argc, argv);
  const std::unique_ptr<backend::Device> device = backend::make_device(o.device);
  world.set_device(*device);  // before the grids split it
  const model::ModelConfig c = model_config(o);
  const int P = world.size();
  for (const Scheme& sc : o.modes) parallel::validate(grid_config(sc, P, o.sp_ulysses), P, c, o.batch);
  const int64_t np = model::ClimaX(c).params().total();
  if (world.rank() == 0)
    fmt::print(
        "SP communication of one training step: P={} B={} N={} ({}, {} vars, img {}x{}, patch "
        "{}) D={} Hh={} L={} params={}\n\n",
        P, o.batch, c.N(), model::to_string(c.tokenization), c.V(), c.img_h, c.img_w,
        c.patch_size, c.embed_dim, c.num_heads, c.depth, np);

  std::FILE* csv = nullptr;
  if (world.rank() == 0 && !o.csv.empty()) {
    csv = std::fopen(o.csv.c_str(), "w");
    if (!csv) throw Error("cannot open --csv file '" + o.csv + "' for writing");
    std::fputs("P,B,N,D,heads,depth,params,mode,component,ops,rank,measured_bytes,scheme_bytes,"
               "design_bytes,measured_over_design\n", csv);
  }
  int64_t mismatches = 0;
  if (world.rank() == 0)
    fmt::print("{:<8} {:<20} {:>4} {:>12} {:>12} {:>14} {:>7}  {}\n", "mode", "component", "rank",
               "measured", "scheme", "design", "ratio", "ops (rank 0)");
  for (const Scheme& sc : o.modes) {
    const std::vector<Row> rows = measure(world, c, o.batch, sc, o.sp_ulysses, *device);
    // gather (measured, scheme) of every row to every rank
    std::vector<int64_t> mine, all(rows.size() * 2 * P);
    for (const Row& row : rows) {
      mine.push_back(static_cast<int64_t>(row.measured));
      mine.push_back(static_cast<int64_t>(row.scheme));
    }
    world.all_gather<int64_t>(mine, all);
    for (size_t i = 0; i < rows.size(); ++i)
      for (int rk = 0; rk < P; ++rk) {
        const int64_t meas = all[rk * mine.size() + 2 * i], sch = all[rk * mine.size() + 2 * i + 1];
        if (meas != sch) ++mismatches;
        if (world.rank() != 0) continue;
        const double design = rows[i].design;
        const double ratio = design > 0 ? meas / design : (meas == 0 ? 1.0 : INFINITY);
        fmt::print("{:<8} {:<20} {:>4} {:>12} {:>12} {:>14.1f} {:>7.4f}  {}{}\n", rows[i].mode,
                   rows[i].component, rk, meas, sch, design, ratio,
                   rk == 0 ? rows[i].ops : "", meas != sch ? "   <-- differs from scheme" : "");
        if (csv)
          std::fprintf(csv, "%d,%ld,%ld,%ld,%ld,%ld,%ld,%s,%s,%s,%d,%ld,%ld,%.1f,%.6f\n", P,
                       o.batch, c.N(), c.embed_dim, c.num_heads, c.depth, np,
                       rows[i].mode.c_str(), rows[i].component.c_str(), rows[i].ops.c_str(), rk,
                       meas, sch, design, ratio);
      }
    if (world.rank() == 0)
      fmt::print("{} step total, rank 0: {}\n\n", rows.back().mode,
                 human(static_cast<double>(rows.back().measured)));
  }
  if (csv) std::fclose(csv);
  if (world.rank() == 0) {
    fmt::print(
        "measured: bytes this rank sent (Comm counters, reset before each phase); scheme: the\n"
        "operators' exact formulas (depth x *_bytes_sent, all-reduce 2 (n - share_r) elements);\n"
        "design: docs/parallelism.md per layer x depth, ratio = measured / design. Where they differ:\n"
        " - Ulysses with Hh % P != 0: ranks own Hh_r = ceil or floor(Hh/P) heads and send\n"
        "   B (N/P) d (3 (Hh - Hh_r) + (P-1) Hh_r) floats forward and\n"
        "   B (N/P) d ((Hh - Hh_r) + 3 (P-1) Hh_r) backward, not 4 B N D (P-1)/P^2 each way\n"
        "   (equal when P | Hh);\n"
        " - all-reduces: this rank keeps share_r = floor or ceil(n/P) of n elements, so it sends\n"
        "   2 (n - share_r) elements, vs the nominal 2 n (P-1)/P (at most 2 elements apart);\n"
        "   the loss all-reduce is one double (rank 0 keeps it and sends 0 bytes);\n"
        " - LSS and ring attention match the closed forms exactly;\n"
        " - 2d (U x R): Ulysses over U on the segment of N/R tokens (sp_ulysses rows,\n"
        "   4 B N D (U-1)/(U P) each way) and ring or LSS over R for this rank's heads (sp_ring\n"
        "   rows, 2 B N D (R-1)/P, ring backward twice that); with U not dividing Hh both follow\n"
        "   the rank's head count Hh_u as above.\n");
    fmt::print("scheme mismatches: {}\n", mismatches);
  }
  return o.check && mismatches > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  parallel::MpiRuntime mpi(&argc, &argv);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_sp_comm: %s\n", e.what());
    parallel::abort_all(2);
  }
}
