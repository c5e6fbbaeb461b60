// Distributed checkpoints (see train_checkpoint_dist.h).
#include "train/checkpoint_sharding.h"

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "core/check.h"

namespace seqvit::train {

namespace {
// seqvit.layout of any layout: world, dp, sp (and its mode), tp, pp, micro-batches, state.
nlohmann::json layout_of(const TrainOptions& o, const char* state) {
  nlohmann::json j{{"world", o.par.dp * o.par.sp * o.par.tp * o.par.pp}, {"dp", o.par.dp}, {"sp", o.par.sp}};
  if (o.par.sp > 1) j["sp_mode"] = o.par.sp_mode;
  if (o.par.sp > 1 && o.par.sp_mode == "2d") {
    j["sp_ulysses"] = o.par.sp_ulysses;
    j["sp_outer"] = o.par.sp_outer;
  }
  if (o.par.tp > 1) j["tp"] = o.par.tp;
  if (o.par.pp > 1) {
    j["pp"] = o.par.pp;
    j["pp_schedule"] = o.par.pp_schedule;
  }
  if (o.par.micro_batches > 1) j["micro_batches"] = o.par.micro_batches;
  j["state"] = state;
  return j;
}

uint64_t state_hash(const float* p, const float* m, const float* v, int64_t n) {
  const std::array<uint64_t, 3> h3{hash_floats(p, n), hash_floats(m, n), hash_floats(v, n)};
  return hash_floats(reinterpret_cast<const float*>(h3.data()), 2 * 3);
}
}  // namespace

ReplicatedState::ReplicatedState(Distributed& dist, const TrainOptions& o) : dist_(dist) {
  layout_ = layout_of(o, "replicated").dump();
}

namespace {
// The replicated state is the whole logical buffer on every rank (no TP/PP shard).
void check_unsharded(const model::ClimaX& m) {
  const auto runs = m.logical_runs();
  if (runs.size() != 1 || runs[0].count != m.logical_total() || runs[0].local_offset != 0 ||
      runs[0].logical_offset != 0 || m.params().total() != m.logical_total())
    fail("checkpoint: this rank holds a shard of the model ({} logical runs of {} floats); the "
         "replicated checkpoint writer handles whole replicas only (DP x SP)",
         runs.size(), m.logical_total());
}
}  // namespace

LogicalState ReplicatedState::gather(Trainer& tr) {
  check_unsharded(tr.model());
  const int64_t n = tr.model().params().total();
  auto& opt = tr.optimizer();
  params_.resize(static_cast<size_t>(n));
  m_.resize(static_cast<size_t>(n));
  v_.resize(static_cast<size_t>(n));
  tr.read_params(params_.data());
  opt.read_moments(m_.data(), v_.data());
  LogicalState s{params_.data(), m_.data(), v_.data(), opt.steps_done(), 0};
  // FNV-1a of each buffer; the state's hash is that of the three hashes.
  const uint64_t hp = hash_floats(s.params, n), hm = hash_floats(s.m, n), hv = hash_floats(s.v, n);
  const std::array<uint64_t, 3> h3{hp, hm, hv};
  s.hash = hash_floats(reinterpret_cast<const float*>(h3.data()), 2 * 3);
  if (dist_.active()) {
    // every rank's (world rank, hashes of params, m, v, step), compared on every rank
    auto& c = dist_.grid().sp_dp();
    const std::array<int64_t, 5> mine{c.world_rank(), static_cast<int64_t>(hp),
                                      static_cast<int64_t>(hm), static_cast<int64_t>(hv),
                                      s.steps_done};
    std::vector<int64_t> all(5 * static_cast<size_t>(c.size()));
    c.all_gather(std::span<const int64_t>(mine), std::span<int64_t>(all));
    const char* what[] = {"", "weights", "AdamW first moments", "AdamW second moments",
                          "optimizer step counts"};
    for (size_t r = 0; r < static_cast<size_t>(c.size()); ++r)
      for (size_t k = 1; k < 5; ++k)
        if (all[5 * r + k] != all[k])
          fail("checkpoint at step {}: the replicated {} differ between ranks (world rank {}: "
               "{:016x}, world rank {}: {:016x}); the replicas diverged, nothing was written",
               s.steps_done, what[k], all[0], static_cast<uint64_t>(all[k]), all[5 * r],
               static_cast<uint64_t>(all[5 * r + k]));
  }
  if (!dist_.root()) return {};
  return s;
}

void ReplicatedState::scatter(const LogicalState& logical, Trainer& tr) {
  check_unsharded(tr.model());
  tr.write_params(logical.params);  // also refreshes the bf16 weights
  tr.optimizer().write_moments(logical.m, logical.v);
  tr.optimizer().set_steps_done(logical.steps_done);
}

LogicalState GatheredState::collect(Trainer& tr, int64_t steps) {
  const int64_t n = tr.model().logical_total();
  const size_t held = dist_.root() ? static_cast<size_t>(n) : 0;
  params_.assign(held, 0.f);
  m_.assign(held, 0.f);
  v_.assign(held, 0.f);
  dist_.gather_logical_state(tr, params_.data(), m_.data(), v_.data());
  if (!dist_.root()) return {};
  return {params_.data(), m_.data(), v_.data(), steps,
          state_hash(params_.data(), m_.data(), v_.data(), n)};
}

ShardedState::ShardedState(Distributed& dist, const TrainOptions& o)
    : GatheredState(dist, layout_of(o, "sharded").dump()) {}

LogicalState ShardedState::gather(Trainer& tr) {
  const model::ClimaX& m = tr.model();
  const int64_t steps = tr.optimizer().steps_done();
  // The replicas of each (stage, tp) shard agree on weights and moments (a hash all-gathered;
  // the tensors replicated over TP agree across the stage's TP ranks too).
  const char* what[] = {"weights", "AdamW first moments", "AdamW second moments"};
  const auto n = static_cast<size_t>(m.params().total());
  std::vector<float> hp(n), hm(n), hv(n);  // host copies (no ZeRO: the moments cover the table)
  tr.read_params(hp.data());
  tr.optimizer().read_moments(hm.data(), hv.data());
  const float* bufs[] = {hp.data(), hm.data(), hv.data()};
  for (int k = 0; k < 3; ++k) {
    try {
      dist_.check_replicated(bufs[k], m.params());
    } catch (const Error& e) {
      fail("checkpoint at step {}: the {} of the replicas diverged, nothing was written: {}",
           steps, what[k], e.what());
    }
  }
  return collect(tr, steps);
}

void ShardedState::scatter(const LogicalState& logical, Trainer& tr) {
  const model::ClimaX& m = tr.model();
  const auto n = static_cast<size_t>(m.params().total());
  std::vector<float> p(n), mm(n), vv(n);
  m.slice_logical(logical.params, p.data());
  m.slice_logical(logical.m, mm.data());
  m.slice_logical(logical.v, vv.data());
  tr.write_params(p.data());
  tr.optimizer().write_moments(mm.data(), vv.data());
  tr.optimizer().set_steps_done(logical.steps_done);
}

namespace {
std::string zero_layout(const TrainOptions& o) {
  auto j = layout_of(o, "zero");
  j["zero"] = o.par.zero;
  return j.dump();
}
}  // namespace

ZeroState::ZeroState(Distributed& dist, const TrainOptions& o)
    : GatheredState(dist, zero_layout(o)) {}

LogicalState ZeroState::gather(Trainer& tr) {
  ZeroOptimizer& z = *dist_.zero();
  const model::ClimaX& m = tr.model();
  const int64_t steps = tr.optimizer().steps_done();
  z.gather_all_parameters();  // ZeRO-3: every unit into the full buffer (collective)
  std::vector<float> hp(static_cast<size_t>(m.params().total()));
  tr.read_params(hp.data());
  try {
    dist_.check_replicated(hp.data(), m.params());
  } catch (const Error& e) {
    z.release_all_parameters();
    fail("checkpoint at step {}: the weights of the replicas diverged, nothing was written: {}",
         steps, e.what());
  }
  LogicalState state = collect(tr, steps);
  z.release_all_parameters();
  return state;
}

void ZeroState::scatter(const LogicalState& logical, Trainer& tr) {
  ZeroOptimizer& z = *dist_.zero();
  const model::ClimaX& m = tr.model();
  const int64_t total = m.params().total();
  // the weights: this rank's shard into the full buffer; ZeRO-3 keeps its range of it only
  std::vector<float> full(static_cast<size_t>(total));
  m.slice_logical(logical.params, full.data());
  tr.write_params(full.data());
  z.load_own_parameters(tr.params());
  // the moments: this rank's shard, of which the optimizer keeps its ZeRO range
  auto& opt = tr.optimizer();
  const auto [b, e] = z.own_range(total);
  SEQVIT_CHECK(opt.begin() == b && opt.end() == e,
               "the optimizer's range [{}, {}) is not this rank's ZeRO range [{}, {})",
               opt.begin(), opt.end(), b, e);
  std::vector<float> fv(static_cast<size_t>(total));
  m.slice_logical(logical.m, full.data());
  m.slice_logical(logical.v, fv.data());
  opt.write_moments(full.data() + b, fv.data() + b);
  opt.set_steps_done(logical.steps_done);
}

std::unique_ptr<CheckpointSharding> make_checkpoint_sharding(Distributed& dist,
                                                             const TrainOptions& o) {
  if (o.par.zero > 0) return std::make_unique<ZeroState>(dist, o);
  if (o.par.tp > 1 || o.par.pp > 1) return std::make_unique<ShardedState>(dist, o);
  return std::make_unique<ReplicatedState>(dist, o);
}

std::string describe_layout(const std::string& layout_json) {
  if (layout_json.empty()) return "an unrecorded layout";
  try {
    const auto j = nlohmann::json::parse(layout_json);
    const int world = j.value("world", 1);
    const std::string micro =
        j.contains("micro_batches")
            ? fmt::format(", {} micro-batches", j.at("micro_batches").get<int>())
            : std::string();
    if (world == 1) return "1 process" + micro;
    std::string s = fmt::format("{} ranks: dp {} x sp {}", world, j.value("dp", 1), j.value("sp", 1));
    if (j.contains("sp_ulysses"))
      s += fmt::format(" (2d: ulysses {} x {})", j.at("sp_ulysses").get<int>(),
                       j.value("sp_outer", std::string("ring")));
    else if (j.contains("sp_mode"))
      s += fmt::format(" ({})", j.at("sp_mode").get<std::string>());
    if (j.contains("tp")) s += fmt::format(" x tp {}", j.at("tp").get<int>());
    if (j.contains("pp")) s += fmt::format(" x pp {}", j.at("pp").get<int>());
    if (j.contains("zero")) s += fmt::format(", ZeRO-{}", j.at("zero").get<int>());
    return s + micro;
  } catch (const std::exception&) {
    return "an unreadable layout (" + layout_json + ")";
  }
}

}  // namespace seqvit::train
