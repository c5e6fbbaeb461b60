// The layout planner (`seqvit plan`, docs/planner.md): every valid layout of a model, a
// sequence and a number of devices on a machine, estimated by the cost model, the ones that fit
// ranked by throughput, the ones that do not fit with the number that breaks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plan/cost_model.h"

namespace seqvit::plan {

struct PlanRequest {
  PlanModel model;
  Precision precision = Precision::BF16;
  int64_t devices = 1;
  Machine machine;
  int64_t global_batch = 0;  // 0: one sample per micro-batch and replica
  int threads = 1;           // CPU threads per device (the attention scratch is per thread)
  // Fixed parts of the layout (unset: every value is tried).
  std::optional<int> dp, tp, pp, sp, zero, micro_batches;
  std::optional<parallel::SpMode> sp_mode;
  std::optional<int> sp_ulysses;           // sp_mode 2d: the Ulysses degree
  std::optional<parallel::SpMode> sp_outer;    // sp_mode 2d: ring or lss
  std::optional<bool> recompute;
  // Block attention kernel (dense: standard attention keeping the probabilities; sp = 1 only).
  model::AttentionKernel attention = model::AttentionKernel::Flash;
};

struct Rejected {
  parallel::GridConfig layout;
  std::string reason;
};

struct PlanResult {
  std::vector<Estimate> fitting;  // fastest first
  std::vector<Estimate> too_big;  // smallest memory first
  std::vector<Rejected> invalid;  // cannot run this model at all
  int64_t considered = 0;
};

PlanResult plan(const PlanRequest& r);
// The printed report: the request, the best `top` layouts with their memory, time and limit,
// and the closest layouts that do not fit.
std::string report(const PlanRequest& r, const PlanResult& res, int top);
// The same as JSON (every layout that fits, fastest first, and every one that does not, smallest
// first, each with its memory, bytes and times per device), for scripts such as bench/suite.py.
std::string report_json(const PlanRequest& r, const PlanResult& res);

}  // namespace seqvit::plan
