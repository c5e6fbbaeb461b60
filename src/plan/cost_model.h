// The cost model of one training step under a layout (docs/planner.md): per
// device, the bytes of parameters, gradients, optimizer state, activations and workspace the
// engine plans; the FLOPs; the bytes every collective sends (the same count the communication
// layer's counters record); and from the machine's rates, the step time with the pipeline
// bubble. The estimate for the worst pipeline stage is what a device must hold and do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/grid.h"
#include "model/config.h"
#include "plan/machine.h"

namespace seqvit::plan {

// A model to plan: the ClimaX shape with the sequence given directly (N tokens: the patches Lp
// for aggregate, V * Lp for per_variable).
struct PlanModel {
  std::string name;
  int64_t embed_dim = 768, depth = 12, heads = 12, decoder_depth = 2;
  double mlp_ratio = 4.0;
  int64_t variables = 1, patch = 2;
  model::Tokenization tokenization = model::Tokenization::PerVariable;
  int64_t tokens = 0;  // N

  int64_t hidden() const;   // round(D * mlp_ratio)
  int64_t patches() const;  // Lp = N (aggregate) or ceil(N / V) (per_variable)
  // Parameters, as the engine's table counts them (docs/model.md), by unit.
  int64_t embedding_params() const;
  int64_t block_params() const;
  int64_t block_split_params() const;  // the part of a block that tensor parallelism splits
  int64_t head_params() const;
  int64_t params() const;
  // Floats of a rank's parameter table as the engine lays it out (each tensor padded to 16
  // floats), for the embedding, one block and the head of a tensor-parallel slice of tp.
  int64_t embedding_floats(int64_t tp) const;
  int64_t block_floats(int64_t tp) const;
  int64_t head_floats() const;
  void validate() const;  // throws naming the value
  std::string describe() const;
};

// Presets: vit-base, vit-large, climax, 1b, 10b, weak (the reference's weak-scaling shape:
// embedding 2560, 16 heads); the sequence, variables and tokenization are set by the caller.
PlanModel model_preset(const std::string& name);
std::vector<std::string> model_presets();

enum class Precision { F32, BF16 };

struct Workload {
  PlanModel model;
  Precision precision = Precision::BF16;
  int64_t micro_batch = 1;  // samples per micro-batch on one replica
  int threads = 1;          // CPU threads per device (attention scratch is per thread)
  // Block attention kernel: dense keeps B*H*N*N probabilities per block (activations) and
  // needs sp = 1; same FLOPs as flash.
  model::AttentionKernel attention = model::AttentionKernel::Flash;
};

struct Memory {  // bytes per device
  double params = 0, bf16_weights = 0, grads = 0, optimizer = 0, zero_buffers = 0,
         activations = 0, workspace = 0;
  double total() const {
    return params + bf16_weights + grads + optimizer + zero_buffers + activations + workspace;
  }
  std::string largest() const;  // "activations 12.3 GiB"
};

struct Comm {  // bytes one device sends per step, by axis
  double sp = 0, tp = 0, pp = 0, dp = 0;
  double total() const { return sp + tp + pp + dp; }
};

struct Estimate {
  parallel::GridConfig layout;
  int64_t global_batch = 0;  // samples per step
  Memory memory;             // the worst stage
  Comm bytes;                // the worst stage
  double flops = 0;          // per device per step
  double compute_s = 0;      // per step, the slowest stage, compute only
  Comm comm_s;               // seconds per step spent in each axis' communication (not overlapped)
  double bubble_s = 0;       // pipeline idle time per step
  double optimizer_s = 0;
  double step_s = 0;
  double tokens_per_s = 0;   // global
  bool fits = false;
  std::string limit;         // what bounds it: compute, communication (axis), bubble, memory
};

// Devices that share the links of a group of `size` ranks `stride` apart: the level it spans.
const LinkLevel& link_level(const Machine& m, int64_t stride, int64_t size);

// The whole estimate. The layout must be valid (see layout_error).
Estimate estimate(const Workload& w, const parallel::GridConfig& layout, const Machine& machine);

// Why a layout cannot run this model at all (heads vs tp and the Ulysses degree, tokens vs the
// SP degree, depth vs pp, micro-batches), or "" when it can.
std::string layout_error(const Workload& w, const parallel::GridConfig& layout);

std::string describe(const parallel::GridConfig& layout);  // "dp2 tp2 sp4 ulysses zero1 rc m4"
std::string gib(double bytes);                          // "12.3 GiB"

}  // namespace seqvit::plan
