// The single-process training step (see trainer.h).
#include "train/trainer.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
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
                 model::Precision precision, uint64_t seed, const TrainerParallel& par,
                 backend::Device& device)
    : dev_(device),
      model_(mcfg, par.shard, device),
      params_(device.parameter_store(model_.params().total())),
      grads_(device.parameter_store(model_.params().total())),
      opt_(model_.params(), ocfg,
           par.sharded ? par.sharded->own_range(model_.params().total()).first : 0,
           par.sharded ? par.sharded->own_range(model_.params().total()).second : -1, device),
      batch_dev_(device, mcfg, batch),
      sq_(device, 2 * sizeof(double)),
      batch_(batch),
      sharded_(par.sharded) {
  {  // initialised on the host, then uploaded
    std::vector<float> host(static_cast<size_t>(model_.params().total()));
    model_.init(host.data(), seed);
    dev_.copy_to_device(params(), host.data(), sizeof(float) * host.size());
    dev_.synchronize();  // before `host` goes
  }
  model_.set_recompute(par.recompute);
  first_sample_ = par.first_sample;
  SEQVIT_CHECK(par.micro_batches >= 1 && batch % par.micro_batches == 0,
               "the batch of {} cannot be split into {} micro-batches", batch, par.micro_batches);
  model_.set_tensor_parallel(par.tp);
  model_.plan(batch / par.micro_batches, precision, par.sp, par.loss_batch, par.slots);
  model_.sync_weights(params());
  if (sharded_) sharded_->attach(model_, *params_, *grads_);
  if (par.shard.tp_size > 1) {
    tp_ = par.tp;
    for (const auto& e : model_.params().entries()) {
      auto& r = tp_ranges_[model::tp_split(e.name) != model::TpSplit::Replicated ? 0 : 1];
      r.push_back(e.offset);
      r.push_back(e.numel);
    }
  }
  if (sharded_) sharded_->set_norm_reduction(tp_, nullptr);
}

void Trainer::read_params(float* host) const {
  dev_.copy_to_host(host, params_->data(), sizeof(float) * static_cast<size_t>(params_->size()));
}

void Trainer::write_params(const float* host) {
  dev_.copy_to_device(params(), host, sizeof(float) * static_cast<size_t>(params_->size()));
  params_changed();
  dev_.synchronize();
}

double Trainer::loss_and_grad(const model::BatchView& host_batch, float* pred) {
  if (sharded_)
    sharded_->zero_grads(grads());
  else
    dev_.zero(grads(), sizeof(float) * static_cast<size_t>(grads_->size()));
  model::BatchView b = batch_dev_.upload(host_batch);
  b.first_sample = first_sample_;
  if (runner_) return runner_->forward_backward(params(), grads(), b);
  const double loss = model_.forward(params(), b, pred);
  model_.backward(params(), grads());
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
  // dropout in this step's forwards and backwards, with the masks of the step being taken (the
  // optimizer's count, restored on resume); off again for anything else
  struct DropoutScope {
    model::ClimaX& m;
    ~DropoutScope() { m.set_dropout_step(-1); }
  } scope{model_};
  model_.set_dropout_step(opt_.steps_done());
  r.loss = loss_and_grad(b);
  model_.set_dropout_step(-1);
  // every rank gets the same global loss and gradients, so the checks and the update below
  // agree everywhere and the replicated weights stay identical
  if (sharded_)
    r.loss = sharded_->reduce(r.loss, grads());
  else if (reducer_)
    r.loss = reducer_->reduce(r.loss, grads(), model_.params().total());
  if (!std::isfinite(r.loss))
    fail(
        "loss is {} at step {}; stopping before the update so the weights stay intact (try a "
        "lower learning rate or --grad-clip)",
        r.loss, opt_.steps_done() + 1);
  if (sharded_) {
    r.grad_norm = sharded_->update(params(), grads(), opt_);
  } else if (tp_) {  // clip by the norm of the logical gradient
    double sq = tp_sum_squares(grads());
    if (reducer_) sq = reducer_->sum_squares(sq);  // pipeline stages: summed over the stages
    r.grad_norm = std::sqrt(sq);
    opt_.update(params(), grads(), r.grad_norm);
  } else {
    r.grad_norm = opt_.step(params(), grads());
  }
  r.lr = opt_.last_lr();
  model_.sync_weights(params());
  return r;
}

// Tensor parallelism: the squared norm of the logical gradient. Each shard's squares are summed
// over the group; a replicated tensor (the same on every TP rank) is counted once.
double Trainer::tp_sum_squares(const float* G) const {
  double* sq = sq_.as<double>();
  for (int k = 0; k < 2; ++k)
    dev_.sum_squares(G, tp_ranges_[k].data(), static_cast<int64_t>(tp_ranges_[k].size() / 2),
                     sq + k);
  double host[2];
  dev_.copy_to_host(host, sq, sizeof(host));
  return tp_->all_reduce_sum(host[0]) + host[1];
}

size_t Trainer::total_bytes() const {
  return param_bytes() + grad_bytes() + opt_.state_bytes() + model_.activation_bytes() +
         model_.workspace_bytes();
}

size_t Trainer::param_bytes() const {
  return sharded_ ? sharded_->param_bytes() : sizeof(float) * static_cast<size_t>(params_->size());
}
size_t Trainer::grad_bytes() const {
  return sharded_ ? sharded_->grad_bytes() : sizeof(float) * static_cast<size_t>(grads_->size());
}

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
