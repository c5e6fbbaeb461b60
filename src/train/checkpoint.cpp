// An AdamW's state in the optimizer checkpoint file (see checkpoint.h).
#include "train/checkpoint.h"

#include <vector>

namespace seqvit::train {

// The moments live on the optimizer's device: checkpoints go through host copies.
void save_optimizer(const std::string& path, const TensorTable& table, AdamW& opt) {
  std::vector<float> m(static_cast<size_t>(opt.end() - opt.begin())), v(m.size());
  opt.read_moments(m.data(), v.data());
  save_optimizer(path, table, m.data(), v.data(), opt.steps_done(), opt.config());
}

void save_optimizer(const std::string& path, const TensorTable& table, const float* m,
                    const float* v, int64_t steps_done, const OptimConfig& cfg) {
  eval::save_optimizer(path, table, m, v, steps_done, cfg.to_json());
}

void load_optimizer(const std::string& path, const TensorTable& table, AdamW& opt) {
  std::vector<float> m(static_cast<size_t>(opt.end() - opt.begin())), v(m.size());
  opt.set_steps_done(eval::read_optimizer_into(path, table, m.data(), v.data()));
  opt.write_moments(m.data(), v.data());
}

}  // namespace seqvit::train
