// The cost model (see cost_model.h and docs/planner.md). Every activation and workspace term
// mirrors a buffer that ClimaX::plan allocates (src/model/climax.cpp), with the tensor-parallel
// and sequence-parallel shares; the SP attention's saved state, workspace and bytes come from
// the operators' own functions (parallel/sp_attention.h), so they are the engine's numbers.
#include "plan/cost_model.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "parallel/sp_attention.h"
#include "parallel/sp_attention_2d.h"
#include "backend/device.h"

namespace seqvit::plan {

namespace {

constexpr double kGiB = 1073741824.0;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool aggregate(const PlanModel& m) { return m.tokenization == model::Tokenization::Aggregate; }

}  // namespace

std::string gib(double bytes) {
  if (bytes >= 0.1 * kGiB) return fmt::format("{:.2f} GiB", bytes / kGiB);
  return fmt::format("{:.1f} MiB", bytes / 1048576.0);
}

// ---------------------------------------------------------------------------------- the model
int64_t PlanModel::hidden() const {
  return static_cast<int64_t>(std::llround(static_cast<double>(embed_dim) * mlp_ratio));
}

int64_t PlanModel::patches() const {
  return aggregate(*this) ? tokens : ceil_div(tokens, variables);
}

int64_t PlanModel::embedding_params() const {
  const int64_t D = embed_dim, V = variables, p2 = patch * patch;
  int64_t n = V * (D * p2 + D) + V * D + patches() * D + 2 * D;
  if (aggregate(*this)) n += D + 3 * D * D + 3 * D + D * D + D;
  return n;
}

int64_t PlanModel::block_split_params() const {
  const int64_t D = embed_dim, F = hidden();
  return 3 * D * D + 3 * D + D * D + F * D + F + D * F;
}

int64_t PlanModel::block_params() const { return block_split_params() + 6 * embed_dim; }

int64_t PlanModel::head_params() const {
  const int64_t D = embed_dim, outw = (aggregate(*this) ? variables : 1) * patch * patch;
  return 2 * D + decoder_depth * (D * D + D) + outw * D + outw;
}

int64_t PlanModel::params() const {
  return embedding_params() + depth * block_params() + head_params();
}

namespace {
int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }  // TensorTable's 64-byte alignment
}  // namespace

int64_t PlanModel::embedding_floats(int64_t tp) const {
  const int64_t D = embed_dim, Dt = D / tp, V = variables, p2 = patch * patch;
  int64_t n = V * (pad16(D * p2) + pad16(D)) + pad16(V * D);
  if (aggregate(*this))
    n += pad16(D) + pad16(3 * Dt * D) + pad16(3 * Dt) + pad16(D * Dt) + pad16(D);
  return n + pad16(patches() * D) + 2 * pad16(D);
}

int64_t PlanModel::block_floats(int64_t tp) const {
  const int64_t D = embed_dim, Dt = D / tp, Ft = hidden() / tp;
  return 4 * pad16(D) + pad16(3 * Dt * D) + pad16(3 * Dt) + pad16(D * Dt) + pad16(D) +
         pad16(Ft * D) + pad16(Ft) + pad16(D * Ft) + pad16(D);
}

int64_t PlanModel::head_floats() const {
  const int64_t D = embed_dim, outw = (aggregate(*this) ? variables : 1) * patch * patch;
  return 2 * pad16(D) + decoder_depth * (pad16(D * D) + pad16(D)) + pad16(outw * D) + pad16(outw);
}

void PlanModel::validate() const {
  auto positive = [&](const char* what, int64_t v) {
    if (v < 1) fail("{} must be >= 1, got {}", what, v);
  };
  positive("the embedding dimension", embed_dim);
  positive("the depth", depth);
  positive("the number of heads", heads);
  positive("the number of variables", variables);
  positive("the patch size", patch);
  positive("the sequence length", tokens);
  if (embed_dim % heads != 0)
    fail("the embedding dimension {} is not divisible by {} heads", embed_dim, heads);
  if (!(mlp_ratio > 0)) fail("the MLP ratio must be > 0, got {}", mlp_ratio);
  if (!aggregate(*this) && tokens % variables != 0)
    fail("per_variable tokenization: {} tokens are not a multiple of {} variables (N = V x Lp); "
         "nearest: {} or {}",
         tokens, variables, tokens / variables * variables, ceil_div(tokens, variables) * variables);
}

std::string PlanModel::describe() const {
  return fmt::format("{}: D {}, depth {}, {} heads, MLP {}, {} tokens ({}, {} variables, {} "
                     "patches of {}x{}), {:.3g} parameters",
                     name, embed_dim, depth, heads, hidden(), tokens,
                     model::to_string(tokenization), variables, patches(), patch, patch,
                     static_cast<double>(params()));
}

std::vector<std::string> model_presets() {
  return {"vit-base", "vit-large", "climax", "1b", "10b", "weak"};
}

PlanModel model_preset(const std::string& name) {
  PlanModel m;
  m.name = name;
  auto set = [&](int64_t D, int64_t depth, int64_t heads) {
    m.embed_dim = D;
    m.depth = depth;
    m.heads = heads;
  };
  if (name == "vit-base") set(768, 12, 12);
  else if (name == "vit-large") set(1024, 24, 16);
  else if (name == "climax") set(1024, 8, 16);
  else if (name == "1b") set(2048, 20, 16);   // 12 D^2 x 20 = 1.01e9 in the blocks
  else if (name == "10b") set(4096, 50, 32);  // 12 D^2 x 50 = 1.01e10 in the blocks
  else if (name == "weak") set(2560, 4, 16);  // the reference's weak-scaling shape
  else {
    std::string valid;
    for (const auto& p : model_presets()) valid += (valid.empty() ? "" : ", ") + p;
    fail("unknown model '{}': the presets are {} (or give --embed-dim, --depth and --heads)", name,
         valid);
  }
  return m;
}

// ---------------------------------------------------------------------------------- layouts
std::string describe(const parallel::GridConfig& c) {
  std::string s = fmt::format("dp{} pp{} tp{}", c.dp, c.pp, c.tp);
  if (c.sp() > 1) {
    if (c.sp_mode == parallel::SpMode::TwoD)
      s += fmt::format(" sp{}x{} ulysses-{}", c.sp_ulysses, c.sp_ring, parallel::to_string(c.sp_outer));
    else
      s += fmt::format(" sp{} {}", c.sp(), parallel::to_string(c.sp_mode));
  }
  if (c.zero > 0) s += fmt::format(" zero{}", c.zero);
  if (c.recompute) s += " recompute";
  if (c.micro_batches > 1) s += fmt::format(" m{}", c.micro_batches);
  return s;
}

std::string layout_error(const Workload& w, const parallel::GridConfig& c) {
  const auto& m = w.model;
  const int64_t heads_tp = m.heads / c.tp;
  if (m.heads % c.tp != 0 || m.hidden() % c.tp != 0)
    return fmt::format("tp {} does not divide the {} heads and the MLP width {}", c.tp, m.heads,
                       m.hidden());
  if ((c.sp_mode == parallel::SpMode::Ulysses || c.sp_mode == parallel::SpMode::TwoD) &&
      c.sp_ulysses > heads_tp)
    return fmt::format("Ulysses degree {} exceeds the {} heads per tensor-parallel rank",
                       c.sp_ulysses, heads_tp);
  if (m.tokens % c.sp() != 0)
    return fmt::format("{} tokens are not divisible by the SP degree {}", m.tokens, c.sp());
  if (w.attention == model::AttentionKernel::Dense && c.sp() > 1)
    return fmt::format("dense attention needs sp = 1 (the SP operators run flash), got sp {}",
                       c.sp());
  if (c.pp > m.depth)
    return fmt::format("{} pipeline stages exceed the depth {}", c.pp, m.depth);
  if (c.micro_batches < 1) return "micro-batches must be >= 1";
  if (c.zero < 0 || c.zero > 3) return fmt::format("ZeRO stage {} is not 0..3", c.zero);
  return "";
}

const LinkLevel& link_level(const Machine& m, int64_t stride, int64_t size) {
  const int64_t span = stride * (size - 1) + 1;
  if (span <= m.devices_per_package) return m.package;
  if (span <= m.devices_per_node) return m.node;
  return m.network;
}

std::string Memory::largest() const {
  std::pair<const char*, double> parts[] = {
      {"parameters", params},   {"bf16 weights", bf16_weights}, {"gradients", grads},
      {"optimizer state", optimizer}, {"ZeRO buffers", zero_buffers},
      {"activations", activations}, {"workspace", workspace}};
  const auto* best = std::max_element(std::begin(parts), std::end(parts),
                                      [](auto& a, auto& b) { return a.second < b.second; });
  return fmt::format("{} {}", best->first, gib(best->second));
}

// ---------------------------------------------------------------------------------- estimate
namespace {

struct Stage {
  int64_t blocks = 0;
  bool first = false, last = false;
  int64_t index = 0;
};

// Bytes of the SP attention's saved state / workspace and what it sends, per attention call.
struct SpCall {
  double saved = 0, workspace = 0, fwd = 0, bwd = 0, fwd_msgs = 0, bwd_msgs = 0;
};

SpCall sp_call(const parallel::GridConfig& c, int64_t b, int64_t N, int64_t heads, int64_t d,
               int threads, bool bf16, bool dense) {
  SpCall r;
  const int P = c.sp();
  const parallel::SpAttentionShape s{b, N, heads, d};
  if (P == 1) {
    AttentionArgs a;
    a.batch = b;
    a.heads = heads;
    a.nq = a.nk = N;
    a.head_dim = d;
    a.bf16 = bf16;  // (the SP operators always run in fp32)
    r.saved = 4.0 * b * heads * N;  // the LSE
    // what the backend answers for the CPU kernels with `threads` threads
    auto ws = [&](backend::AttentionKind k) {
      return static_cast<double>(backend::attention_workspace_bytes("cpu", k, a, threads));
    };
    r.workspace = ws(backend::AttentionKind::Flash);
    if (dense) {  // + the probabilities [b, heads, N, N]
      r.saved += 4.0 * b * heads * double(N) * double(N);
      r.workspace = ws(backend::AttentionKind::Dense);
    }
    return r;
  }
  switch (c.sp_mode) {
    case parallel::SpMode::Ulysses: {
      r.saved = static_cast<double>(parallel::ulysses_saved_bytes(s, P));
      r.workspace = static_cast<double>(parallel::ulysses_workspace_bytes(s, P, threads));
      const auto by = parallel::ulysses_bytes_sent(s, P, 0);  // rank 0 has the most heads
      r.fwd = static_cast<double>(by.forward);
      r.bwd = static_cast<double>(by.backward);
      r.fwd_msgs = r.bwd_msgs = 2.0 * (P - 1);
      break;
    }
    case parallel::SpMode::Lss: {
      r.saved = static_cast<double>(parallel::lss_saved_bytes(s, P));
      r.workspace = static_cast<double>(parallel::lss_workspace_bytes(s, P, threads));
      const auto by = parallel::lss_bytes_sent(s, P, 0);
      r.fwd = static_cast<double>(by.forward);
      r.bwd = static_cast<double>(by.backward);
      r.fwd_msgs = r.bwd_msgs = P - 1;
      break;
    }
    case parallel::SpMode::Ring: {
      r.saved = static_cast<double>(parallel::ring_saved_bytes(s, P));
      r.workspace = static_cast<double>(parallel::ring_workspace_bytes(s, P, threads));
      const auto by = parallel::ring_bytes_sent(s, P, 0);
      r.fwd = static_cast<double>(by.forward);
      r.bwd = static_cast<double>(by.backward);
      r.fwd_msgs = P - 1;
      r.bwd_msgs = 2.0 * (P - 1);
      break;
    }
    case parallel::SpMode::TwoD: {
      const int U = c.sp_ulysses, R = c.sp_ring;
      r.saved = static_cast<double>(parallel::sp2d_saved_bytes(s, U, R, c.sp_outer));
      r.workspace = static_cast<double>(parallel::sp2d_workspace_bytes(s, U, R, c.sp_outer, threads));
      const auto by = parallel::sp2d_bytes_sent(s, U, R, c.sp_outer, 0);
      r.fwd = static_cast<double>(by.forward);
      r.bwd = static_cast<double>(by.backward);
      const double outer_bwd = c.sp_outer == parallel::SpMode::Ring ? 2.0 * (R - 1) : R - 1;
      r.fwd_msgs = 2.0 * (U - 1) + (R - 1);
      r.bwd_msgs = 2.0 * (U - 1) + outer_bwd;
      break;
    }
  }
  return r;
}

// Nominal bytes one rank sends in an all-reduce of n floats over g ranks (ring).
// The most elements any of the Z ranks owns of the n-element buffer (parallel::zero_range).
double largest_own_range(double n, int64_t Z) {
  int64_t most = 0;
  for (int64_t q = 0; q < Z; ++q) {
    const auto [b, e] = parallel::zero_range(static_cast<int64_t>(n), static_cast<int>(Z),
                                         static_cast<int>(q));
    most = std::max(most, e - b);
  }
  return static_cast<double>(most);
}

// The most elements any rank owns of one unit (embedding, a block, the head, laid out in that
// order), over the ranks' ZeRO ranges of the whole table.
double largest_unit_part(double emb, double blk, int64_t blocks, double head, int64_t Z) {
  std::vector<std::pair<int64_t, int64_t>> units;
  int64_t at = 0;
  auto add = [&](double n) {
    if (n > 0) units.push_back({at, at + static_cast<int64_t>(n)});
    at += static_cast<int64_t>(n);
  };
  add(emb);
  for (int64_t i = 0; i < blocks; ++i) add(blk);
  add(head);
  int64_t most = 0;
  for (int64_t q = 0; q < Z; ++q) {
    const auto [b, e] = parallel::zero_range(at, static_cast<int>(Z), static_cast<int>(q));
    for (const auto& [ub, ue] : units)
      most = std::max(most, std::min(e, ue) - std::max(b, ub));
  }
  return static_cast<double>(most);
}

double all_reduce_bytes(double n, int64_t g) { return g > 1 ? 2.0 * 4 * n * (g - 1) / g : 0; }
double gather_bytes(double n, int64_t g) { return g > 1 ? 4.0 * n * (g - 1) / g : 0; }

}  // namespace

Estimate estimate(const Workload& w, const parallel::GridConfig& c, const Machine& mach) {
  const std::string err = layout_error(w, c);
  SEQVIT_CHECK(err.empty(), "invalid layout {}: {}", describe(c), err);
  const PlanModel& M = w.model;
  const bool agg = aggregate(M), bf16 = w.precision == Precision::BF16;
  const int64_t D = M.embed_dim, F = M.hidden(), Hh = M.heads, d = D / Hh, V = M.variables,
                p2 = M.patch * M.patch, Lp = M.patches(), N = M.tokens, dec = M.decoder_depth;
  const int64_t outw = agg ? V * p2 : p2, HW = Lp * p2;
  const int64_t tp = c.tp, pp = c.pp, sp = c.sp(), dp = c.dp, Z = dp * sp,
                m = c.micro_batches, b = w.micro_batch;
  const int64_t G = c.world_size();
  const double Nl = static_cast<double>(N) / sp, T = b * Nl, Dt = double(D) / tp,
               Ft = double(F) / tp, Ll = agg ? Nl : double(Lp);
  const int64_t Hl = Hh / tp;
  const int threads = std::max(1, w.threads);
  const SpCall spc =
      sp_call(c, b, N, Hl, d, threads, bf16, w.attention == model::AttentionKernel::Dense);

  // Strides of the axes in the default order dp, pp, tp, sp (sp innermost).
  const int64_t st_tp = sp, st_pp = sp * tp, st_dp = sp * tp * pp;
  const double share =
      mach.shared_cores > 0 ? std::min(1.0, double(mach.shared_cores) / double(G)) : 1.0;
  const double peak = (bf16 ? mach.peak_tflops_bf16 : mach.peak_tflops_fp32) * 1e12 * share;
  const double rate_mm = peak * mach.matmul_efficiency, rate_at = peak * mach.attention_efficiency,
               rate_mem = mach.memory_gbytes_per_s * 1e9 * share;
  auto seconds = [&](double bytes, double msgs, const LinkLevel& l) {
    return bytes / (l.gbytes_per_s * 1e9) + msgs * l.latency_us * 1e-6;
  };
  const LinkLevel& l_sp = link_level(mach, 1, sp);
  const LinkLevel& l_tp = link_level(mach, st_tp, tp);
  const LinkLevel& l_pp = link_level(mach, st_pp, pp);
  const LinkLevel& l_dp = link_level(mach, 1, std::max<int64_t>(1, (dp - 1) * st_dp + sp));

  Estimate best;
  best.layout = c;
  best.global_batch = dp * m * b;
  double worst_micro = 0, worst_mem = -1;
  for (int64_t s = 0; s < pp; ++s) {
    Stage st;
    st.index = s;
    st.blocks = M.depth / pp + (s < M.depth % pp ? 1 : 0);
    st.first = s == 0;
    st.last = s == pp - 1;
    // parameters on this device (floats)
    // the rank's parameter table as the engine lays it out (tensors padded to 16 floats)
    const double emb = st.first ? double(M.embedding_floats(tp)) : 0;
    const double blk = double(M.block_floats(tp));
    const double head = st.last ? double(M.head_floats()) : 0;
    const double Pm = emb + st.blocks * blk + head;
    const double unit = std::max({emb, blk, head});

    Memory mem;
    mem.params = 4 * Pm / (c.zero == 3 ? Z : 1);
    mem.bf16_weights = bf16 ? 2 * Pm / (c.zero == 3 ? Z : 1) : 0;
    mem.grads = 4 * Pm / (c.zero >= 2 ? Z : 1);
    mem.optimizer = 8 * Pm / (c.zero >= 1 ? Z : 1);
    if (c.zero == 3) mem.zero_buffers = (8.0 + (bf16 ? 2 : 0)) * unit;
    if (c.zero == 2) mem.zero_buffers = 4.0 * unit;
    // The engine's ZeRO staging buffers (train/zero.cpp): stages 1, 2 copy the own range to
    // all-gather the updated parameters from; stages 2, 3 reduce-scatter a unit's gradient
    // into a buffer of the largest own part of a unit (the worst rank's).
    if (c.zero == 1 || c.zero == 2) mem.zero_buffers += 4 * largest_own_range(Pm, Z);
    if (c.zero >= 2) mem.zero_buffers += 4 * largest_unit_part(emb, blk, st.blocks, head, Z);

    // saved activations of one micro-batch (floats), as ClimaX::plan
    const double block_full = T * D + 2 * T + 3 * T * Dt + T * Dt + spc.saved / 4 + T * D +
                              2 * T + T * Ft;
    double act = st.blocks * (c.recompute ? T * D : block_full) + T * D;  // + the stage output
    if (st.first) {
      act += double(b) * V * HW + b;  // patches, lead times
      if (agg) act += b * V * Ll * D + 2.0 * b * V * Ll * Dt + D + b * Ll * Dt + b * Ll * Hl;
    }
    if (st.last)
      act += T * D + 2 * T + 2.0 * dec * T * D + T * outw +
             (sp == 1 ? double(b) * V * HW + double(b) * V * HW : T * outw) + std::sqrt(HW);
    const double in_flight = pp == 1 ? 1 : double(std::min<int64_t>(m, pp - s));
    mem.activations = 4 * act * in_flight;
    // scratch, once per device
    double ws = V * D + 4 * T * D + 3 * T * Dt + 2 * T * Ft;
    if (c.recompute) ws += block_full - T * D;  // the shared slot: a block less its input
    if (sp == 1 && st.last) ws += T * outw + double(b) * V * HW;
    if (agg && st.first)  // + the var_query gradient [D] and its double sum [Dt]
      ws += b * V * Ll * D + 2.0 * b * V * Ll * Dt + 2.0 * b * Ll * Dt + D + 2.0 * Dt;
    mem.workspace = 4 * ws + spc.workspace;
    if (bf16) {
      double stage = std::max({3 * T * D, T * F, T * outw});
      if (agg) stage = std::max(stage, 2.0 * b * V * Ll * D);
      mem.workspace += 2 * 2 * stage;
    }

    // FLOPs of one micro-batch on this device
    const double fwd_mm_blk = 2.0 * b * N * (4.0 * D * D + 2.0 * D * F) / (sp * tp);
    const double fwd_at_blk = 4.0 * b * double(N) * N * D / (sp * tp);
    double fwd_mm = st.blocks * fwd_mm_blk;
    if (st.first) {
      fwd_mm += 2.0 * b * V * Lp * p2 * D / sp;
      if (agg) fwd_mm += (2.0 * b * V * Lp * D * 2 * D + 2.0 * b * Lp * D * D) / (sp * tp);
    }
    if (st.last) fwd_mm += (2.0 * b * N * D * D * dec + 2.0 * b * N * D * outw) / sp;
    const double rc = c.recompute ? 1 : 0;
    const double mm = 3 * fwd_mm + rc * st.blocks * fwd_mm_blk;
    const double at = (3.5 + rc) * st.blocks * fwd_at_blk;
    const double ew_bytes = 4.0 * st.blocks * T * (24.0 * D + 8 * Ft) * (1 + 0.5 * rc);
    const double compute = mm / rate_mm + at / rate_at + ew_bytes / rate_mem;

    // communication of one micro-batch
    Comm bytes;
    Comm secs;
    bytes.sp = st.blocks * (spc.fwd * (1 + rc) + spc.bwd);
    secs.sp = seconds(bytes.sp, st.blocks * (spc.fwd_msgs * (1 + rc) + spc.bwd_msgs), l_sp);
    const double tp_calls = st.blocks * (4 + 2 * rc);
    bytes.tp = tp_calls * all_reduce_bytes(T * D, tp);
    if (agg && st.first && tp > 1)
      bytes.tp += all_reduce_bytes(b * Ll * D, tp) + all_reduce_bytes(b * V * Ll * D + D, tp);
    secs.tp = seconds(bytes.tp, (tp_calls + 2) * 2.0 * (tp - 1), l_tp);
    bytes.pp = (st.last ? 0 : 4 * T * D) + (st.first ? 0 : 4 * T * D);
    secs.pp = seconds(bytes.pp, (st.last ? 0 : 1) + (st.first ? 0 : 1), l_pp);
    const double micro = compute + secs.sp + secs.tp + secs.pp;

    // per step: micro-batches, then the data-parallel / ZeRO exchange and the optimizer
    Comm step_bytes{bytes.sp * m, bytes.tp * m, bytes.pp * m, 0};
    switch (c.zero) {
      case 0: step_bytes.dp = all_reduce_bytes(Pm, Z); break;
      case 1: step_bytes.dp = all_reduce_bytes(Pm, Z) + gather_bytes(Pm, Z); break;
      case 2: step_bytes.dp = 2 * gather_bytes(Pm, Z); break;
      case 3: step_bytes.dp = 3 * gather_bytes(Pm, Z) * m; break;
    }
    const double dp_s = seconds(step_bytes.dp, 2.0 * (Z - 1) * (c.zero == 3 ? 3 * m : 2), l_dp);
    const double opt_s = 28.0 * Pm / (c.zero >= 1 ? Z : 1) / rate_mem;

    if (mem.total() > worst_mem) {
      worst_mem = mem.total();
      best.memory = mem;
    }
    if (micro > worst_micro || s == 0) {
      worst_micro = std::max(worst_micro, micro);
      best.bytes = step_bytes;
      best.flops = (mm + at) * m;
      best.compute_s = compute * m;
      best.comm_s = Comm{secs.sp * m, secs.tp * m, secs.pp * m, dp_s};
      best.optimizer_s = opt_s;
    }
  }
  best.bubble_s = (pp - 1) * worst_micro;
  best.step_s = (m + pp - 1) * worst_micro + best.comm_s.dp + best.optimizer_s;
  best.tokens_per_s = best.global_batch * double(N) / best.step_s;
  best.fits = best.memory.total() <= mach.usable_bytes();
  // what bounds it
  std::pair<std::string, double> parts[] = {
      {"compute", best.compute_s},
      {"communication (sequence parallel)", best.comm_s.sp},
      {"communication (tensor parallel)", best.comm_s.tp},
      {"communication (pipeline)", best.comm_s.pp},
      {"communication (data parallel / ZeRO)", best.comm_s.dp},
      {"pipeline bubble", best.bubble_s},
      {"optimizer (memory bandwidth)", best.optimizer_s}};
  const auto* top = std::max_element(std::begin(parts), std::end(parts),
                                     [](auto& a, auto& b) { return a.second < b.second; });
  best.limit = fmt::format("{} {:.0f}%", top->first, 100 * top->second / best.step_s);
  const double used = best.memory.total() / mach.usable_bytes();
  if (!best.fits)
    best.limit = fmt::format("memory: needs {} > {} usable ({})", gib(best.memory.total()),
                             gib(mach.usable_bytes()), best.memory.largest());
  else if (used > 0.9)
    best.limit += fmt::format("; memory {:.0f}% of {}", 100 * used, gib(mach.usable_bytes()));
  return best;
}

}  // namespace seqvit::plan
