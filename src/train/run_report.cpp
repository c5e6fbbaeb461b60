// The run report of `seqvit train --report-json` (see run_report.h).
#include "train/run_report.h"

#include <omp.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>

#include "core/check.h"

namespace seqvit::train {
namespace {

using nlohmann::json;

json rank_json(Distributed& dist, Trainer& tr, const RunRecord& r) {
  json j;
  const auto& m = tr.model();
  j["rank"] = dist.active() ? dist.world().rank() : 0;
  if (dist.active()) {
    const auto& c = dist.grid().coords();
    j["coords"] = {{"dp", c.dp}, {"pp", c.pp}, {"tp", c.tp}, {"sp", c.sp}};
  } else {
    j["coords"] = {{"dp", 0}, {"pp", 0}, {"tp", 0}, {"sp", 0}};
  }
  j["planned_bytes"] = {{"parameters", tr.param_bytes()},
                        {"gradients", tr.grad_bytes()},
                        {"optimizer", tr.optimizer().state_bytes()},
                        {"activations", m.activation_bytes()},
                        {"workspace", m.workspace_bytes()},
                        {"total", tr.total_bytes()}};
  j["peak_rss_bytes"] = r.peak_rss;
  json comm = json::array();
  for (const auto& e : r.first_step.entries)
    comm.push_back({{"comm", e.comm},
                    {"op", parallel::to_string(e.op)},
                    {"bytes", e.bytes},
                    {"calls", e.calls},
                    {"seconds", e.seconds}});
  j["first_step_comm"] = comm;
  j["first_step_bytes_sent"] = r.first_step.total_bytes();
  return j;
}

}  // namespace

void write_run_report(const std::string& path, const TrainOptions& o,
                      const model::ModelConfig& mc, Distributed& dist, Trainer& tr,
                      const RunRecord& mine) {
  const std::string own = rank_json(dist, tr, mine).dump();
  std::vector<json> ranks;
  if (dist.active()) {  // every rank's record, gathered as bytes to all (small: one per rank)
    parallel::Comm& world = dist.world();
    const int64_t len = static_cast<int64_t>(own.size());
    std::vector<int64_t> lens(static_cast<size_t>(world.size()));
    world.all_gather(std::span<const int64_t>(&len, 1), std::span<int64_t>(lens));
    int64_t total = 0;
    for (int64_t l : lens) total += l;
    std::vector<std::byte> all(static_cast<size_t>(total));
    world.all_gather_v(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(own.data()), own.size()),
        std::span<std::byte>(all), std::span<const int64_t>(lens));
    if (world.rank() != 0) return;
    int64_t at = 0;
    for (int64_t l : lens) {
      ranks.push_back(json::parse(std::string(reinterpret_cast<const char*>(all.data()) + at,
                                              static_cast<size_t>(l))));
      at += l;
    }
  } else {
    ranks.push_back(json::parse(own));
  }
  json j;
  j["command"] = "train";
  j["model"] = {{"embed_dim", mc.embed_dim},  {"depth", mc.depth},
                {"heads", mc.num_heads},      {"decoder_depth", mc.decoder_depth},
                {"mlp_ratio", mc.mlp_ratio},  {"variables", mc.V()},
                {"patch", mc.patch_size},     {"img_h", mc.img_h},
                {"img_w", mc.img_w},          {"tokenization", o.tokenization},
                {"tokens", mc.N()}};
  j["precision"] = o.bf16 ? "bf16" : "fp32";
  j["batch"] = o.batch;
  j["steps"] = o.steps;
  j["threads_per_rank"] = omp_get_max_threads();
  j["layout"] = {{"dp", o.par.dp},
                 {"tp", o.par.tp},
                 {"pp", o.par.pp},
                 {"sp", o.par.sp},
                 {"sp_mode", o.par.sp_mode},
                 {"sp_ulysses", o.par.sp_ulysses},
                 {"sp_outer", o.par.sp_outer},
                 {"zero", o.par.zero},
                 {"recompute", o.par.recompute},
                 {"micro_batches", o.par.micro_batches},
                 {"pp_schedule", o.par.pp_schedule},
                 {"order", o.par.order},
                 {"world", static_cast<int64_t>(ranks.size())}};
  j["step_seconds"] = mine.step_seconds;
  j["forward_flops_per_step"] = tr.model().forward_flops(o.batch);
  j["ranks"] = ranks;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) fail("--report-json: cannot write {}", tmp);
    f << j.dump(1) << "\n";
    if (!f) fail("--report-json: writing {} failed", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("--report-json: cannot rename {} to {}", tmp, path);
}

}  // namespace seqvit::train
