// ZeRO-1/2/3 over the sp_dp group (see zero.h).
#include "train/zero.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include "core/check.h"
#include "core/page_buffer.h"
#include "model/tp_layout.h"

namespace seqvit::train {

ZeroOptimizer::ZeroOptimizer(parallel::Comm& group, int stage) : c_(group), stage_(stage) {
  SEQVIT_CHECK(stage >= 1 && stage <= 3,
               "ZeRO stage {} is out of range: valid stages are 1 (optimizer state), 2 (and "
               "gradients) and 3 (and parameters); 0 is plain data parallelism",
               stage);
  z_ = c_.size();
  r_ = c_.rank();
}

ZeroOptimizer::~ZeroOptimizer() = default;

std::pair<int64_t, int64_t> ZeroOptimizer::own_range(int64_t total) const {
  return parallel::zero_range(total, z_, r_);
}

void ZeroOptimizer::attach(model::ClimaX& model, backend::ParameterStore& params,
                           backend::ParameterStore& grads) {
  SEQVIT_CHECK(stage_ < 3 || model.precision() == model::Precision::F32,
               "ZeRO-3 runs in fp32 only (the bf16 weight copy would be the whole model); use "
               "--zero 1 or 2 with --bf16");
  model_ = &model;
  dev_ = &model.device();
  Ps_ = &params;
  Gs_ = &grads;
  P_ = params.data();
  G_ = grads.data();
  total_ = model.params().total();
  std::tie(begin_, end_) = own_range(total_);
  const int64_t own = end_ - begin_;
  all_counts_.resize(static_cast<size_t>(z_));
  for (int q = 0; q < z_; ++q) {
    const auto [b, e] = parallel::zero_range(total_, z_, q);
    all_counts_[static_cast<size_t>(q)] = e - b;
  }
  const int U = model.num_units();
  // units 1 .. first_block are the blocks of earlier pipeline stages: empty here
  const int64_t first_block = model.shard().first_block;
  units_.resize(static_cast<size_t>(U));
  unit_counts_.assign(static_cast<size_t>(U), std::vector<int64_t>(static_cast<size_t>(z_)));
  unit_own_off_.assign(static_cast<size_t>(U), 0);
  for (int u = 0; u < U; ++u) {
    const auto [ub, ue] = u >= 1 && u <= first_block ? std::pair<int64_t, int64_t>{0, 0}
                                                     : model.unit_range(u);
    units_[static_cast<size_t>(u)] = {ub, ue};
    for (int q = 0; q < z_; ++q) {
      const auto [b, e] = parallel::zero_range(total_, z_, q);
      unit_counts_[static_cast<size_t>(u)][static_cast<size_t>(q)] =
          std::max<int64_t>(0, std::min(e, ue) - std::max(b, ub));
    }
    unit_own_off_[static_cast<size_t>(u)] = std::clamp(ub, begin_, end_) - begin_;
  }
  if (stage_ < 3) arena_.request(scratch_, own);
  const bool tp = model.shard().tp_size > 1;
  for (auto& r : piece_ranges_) r.clear();
  for (const auto& e : model.params().entries()) {
    const int64_t lo = std::max(e.offset, begin_), hi = std::min(e.offset + e.numel, end_);
    if (lo >= hi) continue;
    auto& r = piece_ranges_[tp && model::tp_split(e.name) != model::TpSplit::Replicated ? 0 : 1];
    r.push_back(lo - begin_);
    r.push_back(hi - lo);
  }
  arena_.request(sq_, 2);
  if (stage_ >= 2) {
    int64_t most = 0;
    for (int u = 0; u < U; ++u)
      most = std::max(most, unit_counts_[static_cast<size_t>(u)][static_cast<size_t>(r_)]);
    arena_.request(acc_, most);
    arena_.request(gshard_, own);
  }
  if (stage_ == 3) arena_.request(pshard_, own);
  arena_.commit(*dev_);  // zero-filled
  if (stage_ >= 2) {
    Gs_->release(0, total_);
    model.set_parameter_hooks(this);
  }
  if (stage_ == 3) {
    dev_->copy(pshard_.data(), P_ + begin_, sizeof(float) * own);  // the master copy
    Ps_->release(0, total_);
  }
}

void ZeroOptimizer::zero_grads(float* grads) {
  // stages 2, 3: each unit's range of the full buffer is zeroed in backward_begin, just before
  // it accumulates; the shard accumulates over micro-batches
  if (stage_ == 1)
    dev_->zero(grads, sizeof(float) * static_cast<size_t>(total_));
  else
    dev_->zero(gshard_.data(), gshard_.bytes());
}

void ZeroOptimizer::set_norm_reduction(model::TensorParallel* tp,
                                       GradientReducer* stages) {
  tp_ = tp;
  stages_ = stages;
}

double ZeroOptimizer::reduce(double partial_loss, float* grads) {
  c_.all_reduce(std::span<double>(&partial_loss, 1));
  if (stage_ == 1) c_.all_reduce(std::span<float>(grads, static_cast<size_t>(total_)));
  return partial_loss;
}

double ZeroOptimizer::update(float* params, float* grads, AdamW& opt) {
  SEQVIT_CHECK(opt.begin() == begin_ && opt.end() == end_,
               "the optimizer's range [{}, {}) is not this rank's ZeRO range [{}, {})",
               opt.begin(), opt.end(), begin_, end_);
  float* g = stage_ == 1 ? grads + begin_ : gshard_.data();
  float* p = stage_ == 3 ? pshard_.data() : params + begin_;
  // the logical gradient's squared norm: over the group, then the TP-split tensors over the TP
  // group (replicated ones once), then over the pipeline stages
  for (int k = 0; k < 2; ++k)
    dev_->sum_squares(g, piece_ranges_[k].data(),
                      static_cast<int64_t>(piece_ranges_[k].size() / 2), sq_.data() + k);
  double sq2[2];  // TP-split, rest
  dev_->copy_to_host(sq2, sq_.data(), sizeof(sq2));
  double sq;
  if (tp_) {
    c_.all_reduce(std::span<double>(sq2, 2));
    sq = sq2[1] + tp_->all_reduce_sum(sq2[0]);
  } else {  // one double, as docs/parallelism.md counts it
    sq = sq2[0] + sq2[1];
    c_.all_reduce(std::span<double>(&sq, 1));
  }
  if (stages_) sq = stages_->sum_squares(sq);
  const double norm = std::sqrt(sq);
  opt.update(p, g, norm);
  if (stage_ < 3) {  // every rank's updated range into every rank's full parameters
    dev_->copy(scratch_.data(), p, scratch_.bytes());
    c_.all_gather_v(std::span<const float>(scratch_.data(), static_cast<size_t>(scratch_.size())),
                    std::span<float>(params, static_cast<size_t>(total_)),
                    std::span<const int64_t>(all_counts_));
  }
  return norm;
}

// Stage 3: the master shard and the largest unit gathered; stages 1, 2: the full buffer and the
// staging copy of the own range that the updated values are all-gathered from.
size_t ZeroOptimizer::param_bytes() const {
  int64_t biggest = 0;
  for (const auto& [b, e] : units_) biggest = std::max(biggest, e - b);
  return sizeof(float) *
         (static_cast<size_t>(stage_ == 3 ? (end_ - begin_) + biggest : total_) +
          static_cast<size_t>(scratch_.size()));
}

// Stages 2, 3: the gradient shard, the largest unit in backward and the own part of a unit
// that its reduce-scatter writes (acc_); stage 1: the full buffer.
size_t ZeroOptimizer::grad_bytes() const {
  int64_t biggest = 0;
  for (const auto& [b, e] : units_) biggest = std::max(biggest, e - b);
  return sizeof(float) *
         (static_cast<size_t>(stage_ >= 2 ? (end_ - begin_) + biggest : total_) +
          static_cast<size_t>(acc_.size()));
}

void ZeroOptimizer::gather_unit(int u) {
  const auto [ub, ue] = units_[static_cast<size_t>(u)];
  const auto& counts = unit_counts_[static_cast<size_t>(u)];
  c_.all_gather_v(std::span<const float>(pshard_.data() + unit_own_off_[static_cast<size_t>(u)],
                                         static_cast<size_t>(counts[static_cast<size_t>(r_)])),
                  std::span<float>(P_ + ub, static_cast<size_t>(ue - ub)),
                  std::span<const int64_t>(counts));
}

void ZeroOptimizer::sample_residency() {
  if (!track_) return;
  const size_t r = Ps_->resident_bytes() + Gs_->resident_bytes();
  peak_resident_ = std::max(peak_resident_, r);
}

void ZeroOptimizer::forward_begin(int u) {
  if (stage_ == 3) gather_unit(u);
}

void ZeroOptimizer::forward_end(int u) {
  sample_residency();
  if (stage_ == 3) {
    const auto [ub, ue] = units_[static_cast<size_t>(u)];
    Ps_->release(ub, ue - ub);
  }
}

void ZeroOptimizer::backward_begin(int u) {
  if (stage_ == 3) gather_unit(u);
  const auto [ub, ue] = units_[static_cast<size_t>(u)];
  dev_->zero(G_ + ub, sizeof(float) * static_cast<size_t>(ue - ub));
}

void ZeroOptimizer::backward_end(int u) {
  sample_residency();
  const auto [ub, ue] = units_[static_cast<size_t>(u)];
  const auto& counts = unit_counts_[static_cast<size_t>(u)];
  // the unit's summed gradients: each rank receives the part inside its own range
  const int64_t mine = counts[static_cast<size_t>(r_)];
  c_.reduce_scatter_v(std::span<const float>(G_ + ub, static_cast<size_t>(ue - ub)),
                      std::span<float>(acc_.data(), static_cast<size_t>(mine)),
                      std::span<const int64_t>(counts));
  // micro-batches: the shard accumulates
  dev_->add_inplace(gshard_.data() + unit_own_off_[static_cast<size_t>(u)], acc_.data(), mine);
  Gs_->release(ub, ue - ub);
  if (stage_ == 3) Ps_->release(ub, ue - ub);
}

std::vector<model::LogicalRun> ZeroOptimizer::moment_runs() const {
  // the model's runs (local parameter buffer -> logical buffer) cut to the own range, with
  // local offsets relative to the range's start
  std::vector<model::LogicalRun> out;
  for (const auto& run : model_->logical_runs()) {
    const int64_t lo = std::max(run.local_offset, begin_);
    const int64_t hi = std::min(run.local_offset + run.count, end_);
    if (lo < hi)
      out.push_back({lo - begin_, run.logical_offset + (lo - run.local_offset), hi - lo});
  }
  return out;
}

void ZeroOptimizer::gather_all_parameters() {
  if (stage_ != 3) return;
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) gather_unit(u);
}

void ZeroOptimizer::release_all_parameters() {
  if (stage_ == 3) Ps_->release(0, total_);
}

void ZeroOptimizer::load_own_parameters(const float* full) {
  if (stage_ != 3) return;
  dev_->copy(pshard_.data(), full + begin_, pshard_.bytes());
  Ps_->release(0, total_);
}

}  // namespace seqvit::train
