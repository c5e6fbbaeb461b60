// The single-process training step (see trainer.h).
#include "train/trainer.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "kernels/ops.h"
#include "model/tp_layout.h"

namespace seqvit::train {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  return fmt::format("{:.2f} {}", b, units[u]);
}

Trainer::Trainer(const model::ModelConfig& mcfg, const OptimConfig& ocfg, int64_t batch,
                 model::Precision precision, uint64_t seed, const TrainerParallel& par)
    : model_(mcfg, par.shard),
      params_(model_.params().total()),
      grads_(model_.params().total()),
      opt_(model_.params(), ocfg),
      batch_(batch) {
  model_.init(params_.data(), seed);
  model_.set_tensor_parallel(par.tp);
  model_.plan(batch, precision, par.sp, par.loss_batch);
  if (par.shard.tp_size > 1) {
    tp_ = par.tp;
    for (const auto& e : model_.params().entries())
      tp_sharded_.push_back(model::tp_split(e.name) != model::TpSplit::Replicated);
    opt_.set_sum_squares([this](const float* g) { return tp_sum_squares(g); });
  }
  model_.sync_weights(params_.data());
}

double Trainer::loss_and_grad(const model::BatchView& b, float* pred) {
  std::memset(grads_.data(), 0, grads_.bytes());
  const double loss = model_.forward(params_.data(), b, pred);
  model_.backward(params_.data(), grads_.data());
  return loss;
}

StepResult Trainer::step(const model::BatchView& b) {
  StepResult r;
  r.loss = loss_and_grad(b);
  // every rank gets the same global loss and gradients, so the checks and the update below
  // agree everywhere and the replicated weights stay identical
  if (reducer_) r.loss = reducer_->reduce(r.loss, grads_.data(), model_.params().total());
  if (!std::isfinite(r.loss))
    fail(
        "loss is {} at step {}; stopping before the update so the weights stay intact (try a "
        "lower learning rate or --grad-clip)",
        r.loss, opt_.steps_done() + 1);
  r.grad_norm = opt_.step(params_.data(), grads_.data());
  r.lr = opt_.last_lr();
  model_.sync_weights(params_.data());
  return r;
}

// Tensor parallelism: the squared norm of the logical gradient. Each shard's squares are summed
// over the group; a replicated tensor (the same on every TP rank) is counted once.
double Trainer::tp_sum_squares(const float* G) const {
  const auto& entries = model_.params().entries();
  double sharded = 0, replicated = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    (tp_sharded_[i] ? sharded : replicated) +=
        kernels::sum_squares(G + entries[i].offset, entries[i].numel);
  return tp_->all_reduce_sum(sharded) + replicated;
}

size_t Trainer::total_bytes() const {
  return params_.bytes() + grads_.bytes() + opt_.state_bytes() + model_.activation_bytes() +
         model_.workspace_bytes();
}

std::string Trainer::memory_report() const {
  return fmt::format(
      "memory plan: parameters {} ({} values) | gradients {} | optimizer state {} | "
      "activations {} | workspace {} | total {}",
      human_bytes(static_cast<double>(params_.bytes())), model_.params().count(),
      human_bytes(static_cast<double>(grads_.bytes())),
      human_bytes(static_cast<double>(opt_.state_bytes())),
      human_bytes(static_cast<double>(model_.activation_bytes())),
      human_bytes(static_cast<double>(model_.workspace_bytes())),
      human_bytes(static_cast<double>(total_bytes())));
}

}  // namespace seqvit::train
