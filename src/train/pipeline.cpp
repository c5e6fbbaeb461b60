// Pipeline schedules over the pp communicator (see pipeline.h).
//
// Messages: stage s sends micro-batch k's output (the residual stream [Bm, N_local, D]) to
// s + 1 with isend from the slot's own buffer, which stays untouched until that slot is reused
// (after k's backward), and receives into its slot's input buffer with a blocking receive.
// Backward: the input gradient is copied into grad_out_ and sent with isend, completed before
// the next copy. Sends never block the schedule, receives come in each stage's order, and each
// stage's order is a topological order of the dependency graph, so neither schedule deadlocks.
#include "train/pipeline.h"

#include <algorithm>
#include <chrono>
#include <span>

#include "core/check.h"

namespace seqvit::train {

namespace {
constexpr int kTagAct = 7201, kTagGrad = 7202;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string to_string(PipeSchedule s) { return s == PipeSchedule::GPipe ? "gpipe" : "1f1b"; }

PipeSchedule parse_pipe_schedule(const std::string& s) {
  if (s == "gpipe") return PipeSchedule::GPipe;
  if (s == "1f1b") return PipeSchedule::OneFOneB;
  fail("unknown pipeline schedule '{}': valid schedules are 1f1b and gpipe", s);
}

std::vector<PipeOp> pipeline_order(PipeSchedule s, int stages, int stage, int m) {
  SEQVIT_CHECK(stages >= 1 && stage >= 0 && stage < stages && m >= 1,
               "pipeline stage {} of {} with {} micro-batches", stage, stages, m);
  std::vector<PipeOp> ops;
  if (s == PipeSchedule::GPipe) {
    for (int k = 0; k < m; ++k) ops.push_back({true, k});
    for (int k = 0; k < m; ++k) ops.push_back({false, k});
    return ops;
  }
  // 1F1B (PipeDream-flush, as Megatron): warm-up forwards, steady 1F1B, cool-down backwards.
  const int warm = std::min(stages - stage - 1, m);
  int f = 0, b = 0;
  for (; f < warm; ++f) ops.push_back({true, f});
  for (; f < m; ++f, ++b) {
    ops.push_back({true, f});
    ops.push_back({false, b});
  }
  for (; b < m; ++b) ops.push_back({false, b});
  return ops;
}

int pipeline_slots(PipeSchedule s, int stages, int stage, int m) {
  const auto ops = pipeline_order(s, stages, stage, m);
  int in_flight = 0, most = 0;
  for (const auto& op : ops) {
    in_flight += op.forward ? 1 : -1;
    most = std::max(most, in_flight);
  }
  return most;
}

double ideal_bubble(int stages, int m) {
  return static_cast<double>(stages - 1) / static_cast<double>(m + stages - 1);
}

model::BatchView micro_batch(const model::BatchView& b, const model::ModelConfig& c, int k,
                             int m) {
  SEQVIT_CHECK(m >= 1 && b.B % m == 0 && k >= 0 && k < m,
               "micro-batch {} of {} of a batch of {} samples (the batch must be divisible by the "
               "micro-batch count)",
               k, m, b.B);
  const int64_t Bm = b.B / m, HW = c.img_h * c.img_w, s0 = k * Bm;
  model::BatchView v;
  v.B = Bm;
  v.x = b.x ? b.x + s0 * c.V() * HW : nullptr;
  v.y = b.y ? b.y + s0 * c.Vo() * HW : nullptr;
  v.lead_times = b.lead_times ? b.lead_times + s0 : nullptr;
  v.lat = b.lat;
  v.first_sample = b.first_sample + s0;  // dropout masks follow the global sample index
  return v;
}

Pipeline::Pipeline(model::ClimaX& model, PipeSchedule schedule, int micro_batches)
    : Pipeline(nullptr, model, schedule, micro_batches) {}

Pipeline::Pipeline(parallel::Comm& pp, model::ClimaX& model, PipeSchedule schedule, int micro_batches)
    : Pipeline(&pp, model, schedule, micro_batches) {}

Pipeline::Pipeline(parallel::Comm* pp, model::ClimaX& model, PipeSchedule schedule, int micro_batches)
    : pp_(pp),
      model_(model),
      schedule_(schedule),
      m_(micro_batches),
      stages_(pp ? pp->size() : 1),
      stage_(pp ? pp->rank() : 0) {
  SEQVIT_CHECK(m_ >= 1, "micro_batches must be >= 1, got {}", m_);
  order_ = pipeline_order(schedule_, stages_, stage_, m_);
  const int need = pipeline_slots(schedule_, stages_, stage_, m_);
  SEQVIT_CHECK(model_.slots() >= need,
               "pipeline stage {} of {} ({} schedule, {} micro-batches) needs {} activation slots "
               "but the model was planned with {}",
               stage_, stages_, to_string(schedule_), m_, need, model_.slots());
  SEQVIT_CHECK(model_.has_embed() == (stage_ == 0) && model_.has_head() == (stage_ == stages_ - 1),
               "pipeline stage {} of {} holds blocks [{}, {}) of {}: the first stage must hold "
               "the embedding (block 0) and only the last the head",
               stage_, stages_, model_.shard().first_block, model_.shard().last_block,
               model_.config().depth);
  act_sends_.resize(static_cast<size_t>(model_.slots()));
  if (stage_ > 0)
    grad_out_ = backend::Allocation(model_.device(),
                                    sizeof(float) * model_.stage_elems(model_.max_batch()));
}

double Pipeline::run(const float* P, float* G, const model::BatchView& b, float* pred) {
  const model::ModelConfig& c = model_.config();
  SEQVIT_CHECK(b.B % m_ == 0 && b.B / m_ <= model_.max_batch(),
               "a batch of {} samples cannot be split into {} micro-batches of at most {} (the "
               "planned micro-batch)",
               b.B, m_, model_.max_batch());
  const int slots = model_.slots();
  const bool first = stage_ == 0, last = stage_ == stages_ - 1;
  stats_ = PipelineStats{};
  const double t0 = now();
  double loss = 0;
  auto timed_wait = [&](parallel::Request& r) {
    if (!r.active()) return;
    const double t = now();
    r.wait();
    stats_.idle += now() - t;
  };
  for (const PipeOp& op : order_) {
    const model::BatchView mb = micro_batch(b, c, op.micro, m_);
    const size_t n = static_cast<size_t>(model_.stage_elems(mb.B));
    const int slot = op.micro % slots;
    if (op.forward) {
      timed_wait(act_sends_[static_cast<size_t>(slot)]);  // the slot's previous output is gone
      model_.select_slot(slot);
      if (!first) {
        parallel::Request r = pp_->irecv(std::span<float>(model_.stage_input(), n), stage_ - 1, kTagAct);
        timed_wait(r);
      }
      float* p = pred && last ? pred + op.micro * mb.B * c.Vo() * c.img_h * c.img_w : nullptr;
      loss += model_.forward(P, mb, p);
      if (!last) {
        act_sends_[static_cast<size_t>(slot)] =
            pp_->isend(std::span<const float>(model_.stage_output(), n), stage_ + 1, kTagAct);
        stats_.bytes_sent += n * sizeof(float);
      }
    } else {
      // recomputation rewrites the stage output in backward: its send must be complete
      timed_wait(act_sends_[static_cast<size_t>(slot)]);
      model_.select_slot(slot);
      if (!last) {
        parallel::Request r =
            pp_->irecv(std::span<float>(model_.stage_output_grad(), n), stage_ + 1, kTagGrad);
        timed_wait(r);
      }
      model_.backward(P, G);
      if (!first) {
        timed_wait(grad_send_);
        model_.device().copy(grad_out_.get(), model_.stage_input_grad(), sizeof(float) * n);
        grad_send_ = pp_->isend(std::span<const float>(grad_out_.as<float>(), n), stage_ - 1,
                                kTagGrad);
        stats_.bytes_sent += n * sizeof(float);
      }
    }
  }
  for (auto& r : act_sends_) timed_wait(r);
  timed_wait(grad_send_);
  stats_.seconds = now() - t0;
  if (stages_ > 1) pp_->all_reduce(std::span<double>(&loss, 1));  // only the last stage scores
  return loss;
}

double StageReducer::reduce(double partial_loss, float* grads, int64_t n) {
  sp_dp_.all_reduce(std::span<double>(&partial_loss, 1));
  sp_dp_.all_reduce(std::span<float>(grads, static_cast<size_t>(n)));
  return partial_loss;
}

double StageReducer::sum_squares(double local) {
  pp_.all_reduce(std::span<double>(&local, 1));
  return local;
}

double Pipeline::evaluate(const float* P, const model::BatchView& b) {
  const model::ModelConfig& c = model_.config();
  SEQVIT_CHECK(b.B % m_ == 0 && b.B / m_ <= model_.max_batch(),
               "a batch of {} samples cannot be split into {} micro-batches of at most {}", b.B,
               m_, model_.max_batch());
  double loss = 0;
  for (int k = 0; k < m_; ++k) {
    const model::BatchView mb = micro_batch(b, c, k, m_);
    const size_t n = static_cast<size_t>(model_.stage_elems(mb.B));
    const int slot = k % model_.slots();
    act_sends_[static_cast<size_t>(slot)].wait();
    model_.select_slot(slot);
    if (stage_ > 0)
      pp_->irecv(std::span<float>(model_.stage_input(), n), stage_ - 1, kTagAct).wait();
    loss += model_.forward(P, mb);
    if (stage_ < stages_ - 1)
      act_sends_[static_cast<size_t>(slot)] =
          pp_->isend(std::span<const float>(model_.stage_output(), n), stage_ + 1, kTagAct);
  }
  for (auto& r : act_sends_) r.wait();
  if (stages_ > 1) pp_->all_reduce(std::span<double>(&loss, 1));
  return loss;
}

}  // namespace seqvit::train
