// An AdamW's state in the optimizer checkpoint file (eval/checkpoint.h holds the format:
// "<stem>.optim.safetensors" beside the model file, docs/checkpoints.md).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor_table.h"
#include "eval/checkpoint.h"
#include "train/optimizer.h"

namespace seqvit::train {

void save_optimizer(const std::string& path, const TensorTable& table, AdamW& opt);
void load_optimizer(const std::string& path, const TensorTable& table, AdamW& opt);
// Plain buffers in the table layout (a distributed run's logical state, which no single AdamW
// holds when the state is sharded), with the configuration they were trained with.
void save_optimizer(const std::string& path, const TensorTable& table, const float* m,
                    const float* v, int64_t steps_done, const OptimConfig& cfg);

}  // namespace seqvit::train
