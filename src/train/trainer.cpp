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
      opt_(model_.params(), ocfg,
           par.sharded ? par.sharded->own_range(model_.params().total()).first : 0,
           par.sharded ? par.sharded->own_range(model_.params().total()).second : -1),
      batch_(batch),
      sharded_(par.sharded) {
  model_.init(params_.data(), seed);
  model_.set_recompute(par.recompute);
  SEQVIT_CHECK(par.micro_batches >= 1 && batch % par.micro_batches == 0,
               "the batch of {} cannot be split into {} micro-batches", batch, par.micro_batches);
  model_.set_tensor_parallel(par.tp);
  model_.plan(batch / par.micro_batches, precision, par.sp, par.loss_batch, par.slots);
  model_.sync_weights(params_.data());
  if (sharded_) sharded_->attach(model_, params_.data(), grads_.data());
  if (par.shard.tp_size > 1) {
    tp_ = par.tp;
    for (const auto& e : model_.params().entries())
      tp_sharded_.push_back(model::tp_split(e.name) != model::TpSplit::Replicated);
  }
  if (sharded_) sharded_->set_norm_reduction(tp_, nullptr);
}

double Trainer::loss_and_grad(const model::BatchView& b, float* pred) {
  if (sharded_)
    sharded_->zero_grads(grads_.data());
  else
    std::memset(grads_.data(), 0, grads_.bytes());
  if (runner_) return runner_->forward_backward(params_.data(), grads_.data(), b);
  const double loss = model_.forward(params_.data(), b, pred);
  model_.backward(params_.data(), grads_.data());
  return loss;
}

void Trainer::set_reducer(GradientReducer* r) {
  reducer_ = r;
  if (sharded_) sharded_->set_norm_reduction(tp_, r);  // pipeline stages: norm over stages
  if (r)
    opt_.set_sum_squares([r](double local) { return r->sum_squares(local); });
  else
    opt_.set_sum_squares(nullptr);
}

StepResult Trainer::step(const model::BatchView& b) {
  StepResult r;
  r.loss = loss_and_grad(b);
  // every rank gets the same global loss and gradients, so the checks and the update below
  // agree everywhere and the replicated weights stay identical
  if (sharded_)
    r.loss = sharded_->reduce(r.loss, grads_.data());
  else if (reducer_)
    r.loss = reducer_->reduce(r.loss, grads_.data(), model_.params().total());
  if (!std::isfinite(r.loss))
    fail(
        "loss is {} at step {}; stopping before the update so the weights stay intact (try a "
        "lower learning rate or --grad-clip)",
        r.loss, opt_.steps_done() + 1);
  if (sharded_) {
    r.grad_norm = sharded_->update(params_.data(), grads_.data(), opt_);
  } else if (tp_) {  // clip by the norm of the logical gradient
    double sq = tp_sum_squares(grads_.data());
    if (reducer_) sq = reducer_->sum_squares(sq);  // pipeline stages: summed over the stages
    r.grad_norm = std::sqrt(sq);
    opt_.update(params_.data(), grads_.data(), r.grad_norm);
  } else {
    r.grad_norm = opt_.step(params_.data(), grads_.data());
  }
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
  return param_bytes() + grad_bytes() + opt_.state_bytes() + model_.activation_bytes() +
         model_.workspace_bytes();
}

size_t Trainer::param_bytes() const { return sharded_ ? sharded_->param_bytes() : params_.bytes(); }
size_t Trainer::grad_bytes() const { return sharded_ ? sharded_->grad_bytes() : grads_.bytes(); }

std::string Trainer::memory_report() const {
  return fmt::format(
      "memory plan: parameters {} ({} values) | gradients {} | optimizer state {} | "
      "activations {} | workspace {} | total {}",
      human_bytes(static_cast<double>(param_bytes())), model_.params().count(),
      human_bytes(static_cast<double>(grad_bytes())),
      human_bytes(static_cast<double>(opt_.state_bytes())),
      human_bytes(static_cast<double>(model_.activation_bytes())),
      human_bytes(static_cast<double>(model_.workspace_bytes())),
      human_bytes(static_cast<double>(total_bytes())));
}

}  // namespace seqvit::train
