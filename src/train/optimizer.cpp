// AdamW, gradient clipping and the warm-up + cosine schedule (see optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "kernels/ops.h"

namespace seqvit::train {

void OptimConfig::validate() const {
  if (!(lr > 0)) fail("learning rate must be > 0, got {}", lr);
  if (warmup_start_lr < 0) fail("warmup_start_lr must be >= 0, got {}", warmup_start_lr);
  if (min_lr < 0) fail("min_lr must be >= 0, got {}", min_lr);
  if (warmup_steps < 0) fail("warmup_steps must be >= 0, got {}", warmup_steps);
  if (total_steps < 1) fail("total steps must be >= 1, got {}", total_steps);
  if (!(beta1 >= 0 && beta1 < 1)) fail("beta1 must be in [0, 1), got {}", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) fail("beta2 must be in [0, 1), got {}", beta2);
  if (!(eps > 0)) fail("eps must be > 0, got {}", eps);
  if (weight_decay < 0) fail("weight_decay must be >= 0, got {}", weight_decay);
  if (grad_clip < 0) fail("grad_clip must be >= 0 (0 = off), got {}", grad_clip);
}

std::string OptimConfig::to_json() const {
  nlohmann::json j{{"lr", lr},         {"warmup_start_lr", warmup_start_lr},
                   {"warmup_steps", warmup_steps}, {"total_steps", total_steps},
                   {"min_lr", min_lr}, {"beta1", beta1},
                   {"beta2", beta2},   {"eps", eps},
                   {"weight_decay", weight_decay}, {"grad_clip", grad_clip}};
  return j.dump();
}

OptimConfig OptimConfig::from_json(const std::string& text, const std::string& where) {
  OptimConfig c;
  try {
    auto j = nlohmann::json::parse(text);
    c.lr = j.at("lr");
    c.warmup_start_lr = j.at("warmup_start_lr");
    c.warmup_steps = j.at("warmup_steps");
    c.total_steps = j.at("total_steps");
    c.min_lr = j.at("min_lr");
    c.beta1 = j.at("beta1");
    c.beta2 = j.at("beta2");
    c.eps = j.at("eps");
    c.weight_decay = j.at("weight_decay");
    c.grad_clip = j.at("grad_clip");
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad optimizer configuration: {}", where, e.what());
  }
  return c;
}

double learning_rate(const OptimConfig& c, int64_t s) {
  if (s < c.warmup_steps)
    return c.warmup_start_lr +
           (c.lr - c.warmup_start_lr) * static_cast<double>(s) / static_cast<double>(c.warmup_steps);
  if (c.total_steps <= c.warmup_steps) return c.lr;
  const double t = static_cast<double>(std::min(s, c.total_steps) - c.warmup_steps) /
                   static_cast<double>(c.total_steps - c.warmup_steps);
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}

bool decays(const std::string& name) {
  return name.find("pos_embed") == std::string::npos &&
         name.find("var_embed") == std::string::npos;
}

AdamW::AdamW(const TensorTable& table, const OptimConfig& cfg, int64_t begin, int64_t end)
    : table_(table), cfg_(cfg), begin_(begin), end_(end < 0 ? table.total() : end) {
  cfg_.validate();
  SEQVIT_CHECK(begin_ >= 0 && begin_ <= end_ && end_ <= table.total(),
               "AdamW range [{}, {}) is not inside the parameter buffer of {} values", begin_,
               end_, table.total());
  m_.resize(end_ - begin_);
  v_.resize(end_ - begin_);
}

// Calls f(offset, count, name) for each piece of a tensor inside [begin_, end_), offsets
// relative to begin_ (padding between tensors is skipped).
template <typename F>
static void for_pieces(const TensorTable& t, int64_t b, int64_t e, F&& f) {
  for (const auto& en : t.entries()) {
    const int64_t lo = std::max(b, en.offset), hi = std::min(e, en.offset + en.numel);
    if (lo < hi) f(lo - b, hi - lo, en.name);
  }
}

double AdamW::range_sum_squares(const float* g) const {
  double sq = 0;
  for_pieces(table_, begin_, end_,
             [&](int64_t o, int64_t n, const std::string&) { sq += kernels::sum_squares(g + o, n); });
  return sq;
}

void AdamW::update(float* p, float* g, double norm) {
  if (cfg_.grad_clip > 0) {
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1
    const double coef = cfg_.grad_clip / (norm + 1e-6);
    if (coef < 1.0)
      for_pieces(table_, begin_, end_, [&](int64_t o, int64_t n, const std::string&) {
        kernels::scale_inplace(g + o, static_cast<float>(coef), n);
      });
  }
  last_lr_ = learning_rate(cfg_, step_);
  ++step_;
  for_pieces(table_, begin_, end_, [&](int64_t o, int64_t n, const std::string& name) {
    kernels::adamw_step(p + o, g + o, m_.data() + o, v_.data() + o, n,
                        static_cast<float>(last_lr_), static_cast<float>(cfg_.beta1),
                        static_cast<float>(cfg_.beta2), static_cast<float>(cfg_.eps),
                        decays(name) ? static_cast<float>(cfg_.weight_decay) : 0.f, step_);
  });
}

double AdamW::step(float* P, float* G) {
  const double norm = std::sqrt(range_sum_squares(G + begin_));
  update(P + begin_, G + begin_, norm);
  return norm;
}

}  // namespace seqvit::train
