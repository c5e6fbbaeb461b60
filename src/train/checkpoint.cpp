// An AdamW's state in the optimizer checkpoint file (see checkpoint.h).
#include "train/checkpoint.h"

namespace seqvit::train {

void save_optimizer(const std::string& path, const TensorTable& table, AdamW& opt) {
  save_optimizer(path, table, opt.m(), opt.v(), opt.steps_done(), opt.config());
}

void save_optimizer(const std::string& path, const TensorTable& table, const float* m,
                    const float* v, int64_t steps_done, const OptimConfig& cfg) {
  eval::save_optimizer(path, table, m, v, steps_done, cfg.to_json());
}

void load_optimizer(const std::string& path, const TensorTable& table, AdamW& opt) {
  opt.set_steps_done(eval::read_optimizer_into(path, table, opt.m(), opt.v()));
}

}  // namespace seqvit::train
