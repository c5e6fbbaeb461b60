// Layout enumeration and the report (see planner.h).
#include "plan/planner.h"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace seqvit::plan {

namespace {

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t k = 1; k <= n; ++k)
    if (n % k == 0) d.push_back(k);
  return d;
}

// The SP layouts of degree sp: Ulysses, LSS, ring, and 2-D (Ulysses U x ring or LSS sp/U).
std::vector<parallel::GridConfig> sp_layouts(int64_t sp) {
  std::vector<parallel::GridConfig> out;
  parallel::GridConfig g;
  if (sp == 1) return {g};
  g.sp_mode = parallel::SpMode::Ulysses;
  g.sp_ulysses = static_cast<int>(sp);
  out.push_back(g);
  g.sp_ulysses = 1;
  g.sp_ring = static_cast<int>(sp);
  g.sp_mode = parallel::SpMode::Lss;
  out.push_back(g);
  g.sp_mode = parallel::SpMode::Ring;
  out.push_back(g);
  for (int64_t u : divisors(sp))
    if (u > 1 && u < sp)
      for (auto outer : {parallel::SpMode::Ring, parallel::SpMode::Lss}) {
        g.sp_mode = parallel::SpMode::TwoD;
        g.sp_outer = outer;
        g.sp_ulysses = static_cast<int>(u);
        g.sp_ring = static_cast<int>(sp / u);
        out.push_back(g);
      }
  return out;
}

}  // namespace

PlanResult plan(const PlanRequest& r) {
  r.model.validate();
  r.machine.validate();
  SEQVIT_CHECK(r.devices >= 1, "--devices must be >= 1, got {}", r.devices);
  SEQVIT_CHECK(r.global_batch >= 0, "--batch must be >= 1, got {}", r.global_batch);
  PlanResult res;
  for (int64_t dp : divisors(r.devices))
    for (int64_t pp : divisors(r.devices / dp))
      for (int64_t tp : divisors(r.devices / dp / pp)) {
        const int64_t sp = r.devices / dp / pp / tp;
        if ((r.dp && *r.dp != dp) || (r.pp && *r.pp != pp) || (r.tp && *r.tp != tp) ||
            (r.sp && *r.sp != sp))
          continue;
        if (r.global_batch > 0 && r.global_batch % dp != 0) {
          parallel::GridConfig g;
          g.dp = static_cast<int>(dp);
          res.invalid.push_back({g, fmt::format("the batch of {} does not divide over {} "
                                                "data-parallel replicas", r.global_batch, dp)});
          continue;
        }
        std::vector<int64_t> ms;
        if (r.micro_batches) ms = {*r.micro_batches};
        else if (r.global_batch > 0) ms = divisors(r.global_batch / dp);
        else if (pp == 1) ms = {1};
        else ms = {pp, 2 * pp, 4 * pp};
        for (auto g : sp_layouts(sp)) {
          if (r.sp_mode && *r.sp_mode != g.sp_mode && sp > 1) continue;
          if (g.sp_mode == parallel::SpMode::TwoD &&
              ((r.sp_ulysses && *r.sp_ulysses != g.sp_ulysses) ||
               (r.sp_outer && *r.sp_outer != g.sp_outer)))
            continue;
          g.dp = static_cast<int>(dp);
          g.pp = static_cast<int>(pp);
          g.tp = static_cast<int>(tp);
          const int64_t Z = dp * sp;
          for (int zero = 0; zero <= 3; ++zero) {
            if ((r.zero && *r.zero != zero) || (!r.zero && Z == 1 && zero > 0)) continue;
            for (bool rc : {false, true}) {
              if (r.recompute && *r.recompute != rc) continue;
              for (int64_t m : ms) {
                if (r.global_batch > 0 && (r.global_batch / dp) % m != 0) continue;
                g.zero = zero;
                g.recompute = rc;
                g.micro_batches = static_cast<int>(m);
                ++res.considered;
                Workload w{r.model, r.precision,
                           r.global_batch > 0 ? r.global_batch / dp / m : 1, r.threads};
                w.attention = r.attention;
                const std::string err = layout_error(w, g);
                if (!err.empty()) {
                  res.invalid.push_back({g, err});
                  continue;
                }
                Estimate e = estimate(w, g, r.machine);
                (e.fits ? res.fitting : res.too_big).push_back(e);
              }
            }
          }
        }
      }
  // Fastest first; throughputs within 0.5% of each other count as equal (the model is not that
  // precise), and then the layout with less memory per device comes first.
  auto bucket = [](const Estimate& e) {
    return static_cast<int64_t>(std::floor(std::log(e.tokens_per_s) / std::log(1.005)));
  };
  std::stable_sort(res.fitting.begin(), res.fitting.end(), [&](const auto& a, const auto& b) {
    const int64_t ba = bucket(a), bb = bucket(b);
    return ba != bb ? ba > bb : a.memory.total() < b.memory.total();
  });
  std::stable_sort(res.too_big.begin(), res.too_big.end(), [](const auto& a, const auto& b) {
    return a.memory.total() < b.memory.total();
  });
  return res;
}

std::string report(const PlanRequest& r, const PlanResult& res, int top) {
  std::string out;
  out += fmt::format("model    {}\n", r.model.describe());
  out += fmt::format("machine  {}: {}; {} per device ({} usable), {:g}/{:g} TFLOP/s fp32/bf16 "
                     "peak\n",
                     r.machine.name, r.machine.description, gib(r.machine.memory_gib * 1073741824.0),
                     gib(r.machine.usable_bytes()), r.machine.peak_tflops_fp32,
                     r.machine.peak_tflops_bf16);
  out += fmt::format("devices  {}; {}{}; batch {}\n", r.devices,
                     r.precision == Precision::BF16 ? "bf16 (fp32 master weights)" : "fp32",
                     r.attention == model::AttentionKernel::Dense ? ", dense attention" : "",
                     r.global_batch > 0 ? std::to_string(r.global_batch)
                                        : "one sample per micro-batch and replica");
  out += fmt::format("{} layouts considered: {} fit, {} do not fit in memory, {} cannot run this "
                     "model\n\n",
                     res.considered, res.fitting.size(), res.too_big.size(), res.invalid.size());
  auto row = [&](int i, const Estimate& e) {
    return fmt::format("{:>3}  {:<40} {:>11} {:>9.3g} s {:>11.4g} {:>6.1f}%  {}\n", i,
                       describe(e.layout), gib(e.memory.total()), e.step_s, e.tokens_per_s,
                       100 * e.bubble_s / e.step_s, e.limit);
  };
  const std::string header = fmt::format("{:>3}  {:<40} {:>11} {:>11} {:>11} {:>7}  {}\n", "#",
                                         "layout", "mem/device", "step", "tokens/s", "bubble",
                                         "limited by");
  if (!res.fitting.empty()) {
    out += "best layouts (predicted):\n" + header;
    for (int i = 0; i < std::min<int>(top, static_cast<int>(res.fitting.size())); ++i)
      out += row(i + 1, res.fitting[i]);
    const auto& b = res.fitting.front();
    out += fmt::format(
        "\nbest: {}\n  memory per device: parameters {}, bf16 weights {}, gradients {}, optimizer "
        "{}, ZeRO buffers {}, activations {}, workspace {}\n  per step: {:.3g} TFLOP per device; "
        "compute {:.3g} s, sp {:.3g} s, tp {:.3g} s, pp {:.3g} s, dp {:.3g} s, bubble {:.3g} s, "
        "optimizer {:.3g} s\n  bytes sent per device per step: sp {}, tp {}, pp {}, dp {}\n",
        describe(b.layout), gib(b.memory.params), gib(b.memory.bf16_weights), gib(b.memory.grads),
        gib(b.memory.optimizer), gib(b.memory.zero_buffers), gib(b.memory.activations),
        gib(b.memory.workspace), b.flops / 1e12, b.compute_s, b.comm_s.sp, b.comm_s.tp,
        b.comm_s.pp, b.comm_s.dp, b.bubble_s, b.optimizer_s, gib(b.bytes.sp), gib(b.bytes.tp),
        gib(b.bytes.pp), gib(b.bytes.dp));
  }
  if (!res.too_big.empty()) {
    out += fmt::format("\n{}closest layouts that do not fit:\n",
                       res.fitting.empty() ? "NO LAYOUT FITS. " : "");
    for (int i = 0; i < std::min<int>(res.fitting.empty() ? 5 : 3,
                                      static_cast<int>(res.too_big.size()));
         ++i)
      out += fmt::format("     {:<40} {}\n", describe(res.too_big[i].layout),
                         res.too_big[i].limit);
  }
  if (res.fitting.empty() && res.too_big.empty() && !res.invalid.empty()) {
    out += "\nno layout can run this model on these devices:\n";
    for (size_t i = 0; i < std::min<size_t>(5, res.invalid.size()); ++i)
      out += fmt::format("     {:<40} {}\n", describe(res.invalid[i].layout),
                         res.invalid[i].reason);
  }
  return out;
}

namespace {

nlohmann::json estimate_json(const Estimate& e) {
  const auto& g = e.layout;
  const auto& m = e.memory;
  return {{"layout", describe(g)},
          {"dp", g.dp},
          {"tp", g.tp},
          {"pp", g.pp},
          {"sp", g.sp()},
          {"sp_mode", g.sp() > 1 ? parallel::to_string(g.sp_mode) : "none"},
          {"sp_ulysses", g.sp_ulysses},
          {"sp_ring", g.sp_ring},
          {"sp_outer", parallel::to_string(g.sp_outer)},
          {"zero", g.zero},
          {"recompute", g.recompute},
          {"micro_batches", g.micro_batches},
          {"global_batch", e.global_batch},
          {"memory_bytes",
           {{"parameters", m.params},
            {"bf16_weights", m.bf16_weights},
            {"gradients", m.grads},
            {"optimizer", m.optimizer},
            {"zero_buffers", m.zero_buffers},
            {"activations", m.activations},
            {"workspace", m.workspace},
            {"total", m.total()}}},
          {"bytes_sent",
           {{"sp", e.bytes.sp},
            {"tp", e.bytes.tp},
            {"pp", e.bytes.pp},
            {"dp", e.bytes.dp},
            {"total", e.bytes.total()}}},
          {"flops", e.flops},
          {"seconds",
           {{"compute", e.compute_s},
            {"sp", e.comm_s.sp},
            {"tp", e.comm_s.tp},
            {"pp", e.comm_s.pp},
            {"dp", e.comm_s.dp},
            {"bubble", e.bubble_s},
            {"optimizer", e.optimizer_s},
            {"step", e.step_s}}},
          {"tokens_per_s", e.tokens_per_s},
          {"fits", e.fits},
          {"limit", e.limit}};
}

}  // namespace

std::string report_json(const PlanRequest& r, const PlanResult& res) {
  nlohmann::json j;
  j["model"] = {{"name", r.model.name},
                {"description", r.model.describe()},
                {"parameters", r.model.params()},
                {"tokens", r.model.tokens}};
  j["machine"] = {{"name", r.machine.name}, {"usable_bytes", r.machine.usable_bytes()}};
  j["devices"] = r.devices;
  j["precision"] = r.precision == Precision::BF16 ? "bf16" : "fp32";
  j["threads"] = r.threads;
  j["considered"] = res.considered;
  j["fitting"] = nlohmann::json::array();
  for (const auto& e : res.fitting) j["fitting"].push_back(estimate_json(e));
  j["too_big"] = nlohmann::json::array();
  for (const auto& e : res.too_big) j["too_big"].push_back(estimate_json(e));
  j["invalid"] = nlohmann::json::array();
  for (const auto& x : res.invalid)
    j["invalid"].push_back({{"layout", describe(x.layout)}, {"reason", x.reason}});
  return j.dump(1) + "\n";
}

}  // namespace seqvit::plan
