// AdamW, gradient clipping and the warm-up + cosine schedule (see optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/check.h"

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

AdamW::AdamW(const TensorTable& table, const OptimConfig& cfg, int64_t begin, int64_t end,
             backend::Device& device)
    : table_(table), cfg_(cfg), begin_(begin), end_(end < 0 ? table.total() : end), dev_(device) {
  cfg_.validate();
  SEQVIT_CHECK(begin_ >= 0 && begin_ <= end_ && end_ <= table.total(),
               "AdamW range [{}, {}) is not inside the parameter buffer of {} values", begin_,
               end_, table.total());
  const size_t bytes = sizeof(float) * static_cast<size_t>(end_ - begin_);
  m_ = backend::Allocation(dev_, bytes);
  v_ = backend::Allocation(dev_, bytes);
  norm_ = backend::Allocation(dev_, sizeof(double));
  // the pieces of tensors inside [begin_, end_), relative to begin_ (padding between tensors
  // is skipped); weight decay per tensor (decays())
  for (const auto& en : table.entries()) {
    const int64_t lo = std::max(begin_, en.offset), hi = std::min(end_, en.offset + en.numel);
    if (lo >= hi) continue;
    segments_.push_back({lo - begin_, hi - lo, decays(en.name)});
    ranges_.push_back(lo - begin_);
    ranges_.push_back(hi - lo);
  }
}

void AdamW::read_moments(float* m, float* v) const {
  dev_.copy_to_host(m, m_.get(), m_.bytes());
  dev_.copy_to_host(v, v_.get(), v_.bytes());
}

void AdamW::write_moments(const float* m, const float* v) {
  dev_.copy_to_device(m_.get(), m, m_.bytes());
  dev_.copy_to_device(v_.get(), v, v_.bytes());
}

double AdamW::range_sum_squares(const float* g) const {
  dev_.sum_squares(g, ranges_.data(), static_cast<int64_t>(segments_.size()),
                   norm_.as<double>());
  double sq = 0;
  dev_.copy_to_host(&sq, norm_.get(), sizeof(double));
  return sq;
}

void AdamW::update(float* p, float* g, double norm) {
  backend::AdamArgs a;
  if (cfg_.grad_clip > 0) {
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1
    const double coef = cfg_.grad_clip / (norm + 1e-6);
    if (coef < 1.0) a.grad_scale = static_cast<float>(coef);
  }
  last_lr_ = learning_rate(cfg_, step_);
  ++step_;
  a.p = p;
  a.g = g;
  a.m = m();
  a.v = v();
  a.segments = segments_.data();
  a.num_segments = static_cast<int64_t>(segments_.size());
  a.lr = static_cast<float>(last_lr_);
  a.beta1 = static_cast<float>(cfg_.beta1);
  a.beta2 = static_cast<float>(cfg_.beta2);
  a.eps = static_cast<float>(cfg_.eps);
  a.weight_decay = static_cast<float>(cfg_.weight_decay);
  a.step = step_;
  dev_.adamw(a);
}

double AdamW::step(float* P, float* G) {
  double sq = range_sum_squares(G + begin_);
  if (sum_squares_) sq = sum_squares_(sq);  // pipeline stages: the sum over the stages
  const double norm = std::sqrt(sq);
  update(P + begin_, G + begin_, norm);
  return norm;
}

}  // namespace seqvit::train
