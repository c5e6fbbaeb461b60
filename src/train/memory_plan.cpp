// Per-rank memory plan (see memory_plan.h).
#include "train/memory_plan.h"

#include <fmt/core.h>

#include <array>
#include <map>
#include <set>
#include <span>
#include <vector>

namespace seqvit::train {

std::string rank_memory_plan(Distributed& dist, Trainer& tr) {
  if (!dist.active()) return tr.memory_report();
  constexpr int kFields = 6;
  const auto& m = tr.model();
  const std::array<int64_t, kFields> mine{
      static_cast<int64_t>(tr.param_bytes()),
      static_cast<int64_t>(tr.grad_bytes()),
      static_cast<int64_t>(tr.optimizer().state_bytes()),
      static_cast<int64_t>(m.activation_bytes()),
      static_cast<int64_t>(m.workspace_bytes()),
      static_cast<int64_t>(tr.total_bytes())};
  parallel::Comm& world = dist.world();
  std::vector<int64_t> all(static_cast<size_t>(kFields * world.size()));
  world.all_gather(std::span<const int64_t>(mine), std::span<int64_t>(all));
  if (world.rank() != 0) return "";
  // ranks with the same plan share a line, in rank order of their first member
  std::map<std::vector<int64_t>, std::vector<int>> groups;
  std::vector<std::vector<int64_t>> order;
  for (int r = 0; r < world.size(); ++r) {
    std::vector<int64_t> row(all.begin() + kFields * r, all.begin() + kFields * (r + 1));
    auto [it, fresh] = groups.try_emplace(row);
    if (fresh) order.push_back(row);
    it->second.push_back(r);
  }
  const auto& layout = dist.grid().layout();
  auto h = [](int64_t b) { return human_bytes(static_cast<double>(b)); };
  std::string out = fmt::format(
      "memory plan per rank ({} rank{}; parameters | gradients | optimizer state | activations "
      "| workspace | total):\n",
      world.size(), world.size() == 1 ? "" : "s");
  int64_t peak = 0;
  for (const auto& row : order) {
    const auto& ranks = groups[row];
    std::string who;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (i == 6) {
        who += fmt::format(" +{}", ranks.size() - 6);
        break;
      }
      who += (i ? "," : "") + std::to_string(ranks[i]);
    }
    std::set<int> pp, tp;  // the pipeline stages and TP coordinates of the group
    for (int r : ranks) {
      pp.insert(layout.coords(r).pp);
      tp.insert(layout.coords(r).tp);
    }
    auto list = [](const std::set<int>& v) {
      std::string t;
      for (int x : v) t += (t.empty() ? "" : ",") + std::to_string(x);
      return t;
    };
    out += fmt::format("  rank{} {:<16} (stage {}, tp {}): {} | {} | {} | {} | {} | {}\n",
                       ranks.size() == 1 ? " " : "s", who, list(pp), list(tp), h(row[0]),
                       h(row[1]), h(row[2]), h(row[3]), h(row[4]), h(row[5]));
    peak = std::max(peak, row[5]);
  }
  out += fmt::format("  the largest: {} on one rank", h(peak));
  return out;
}

}  // namespace seqvit::train
