// The ClimaX Vision Transformer (docs/model.md) on one process: parameter table, initialisation,
// memory plan, forward of the latitude-weighted MSE loss and its hand-written backward.
//
// Shape glossary: B batch, V input variables, Vo output variables, H x W grid, p patch,
// pp = p*p, Lp patches, N tokens (Lp for aggregate, V*Lp for per_variable), T = B*N rows,
// D embedding, Hh heads, d = D/Hh, F = MLP hidden width.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backend/device.h"
#include "core/bf16.h"
#include "core/tensor_table.h"
#include "model/config.h"
#include "model/parameter_hooks.h"
#include "model/sequence_parallel.h"
#include "model/tensor_parallel.h"

namespace seqvit::model {

enum class Precision { F32, BF16 };

// One batch, borrowed, in device memory of the model's device. Shapes: x[B,V,H,W],
// y[B,Vo,H,W], lead_times[B] (hours), lat[H] (deg).
struct BatchView {
  int64_t B = 0;
  const float* x = nullptr;
  const float* y = nullptr;
  const float* lead_times = nullptr;
  const float* lat = nullptr;
  // The index of sample 0 in the step's global batch (data-parallel replicas, micro-batches):
  // the dropout masks are a function of each sample's global index (DropoutArgs).
  int64_t first_sample = 0;
};

// Dropout and drop-path as ClimaX trains with them (docs/model.md "Dropout"): `rate` after the
// position/lead-time embedding (pos_drop), after each block's attention projection (proj_drop)
// and in its MLP after the GELU and after fc2 (timm's Mlp drop); `path` is the stochastic-depth
// rate of the last block, block i dropping each of its two residual branches per sample with
// probability path * i / (depth - 1) (timm: linspace(0, path, depth)). The masks are hashed from
// (seed, optimizer step, call site, element), so they need no memory and no random state.
struct Dropout {
  double rate = 0, path = 0;
  uint64_t seed = 0;
  bool active() const { return rate > 0 || path > 0; }
};

// A run of this rank's parameter buffer that is contiguous in the single-process ("logical")
// buffer: local[local_offset, +count) holds logical[logical_offset, +count). Checkpoints and
// `seqvit grad` hold logical tensors; a sharded model (tensor or pipeline parallel) describes
// its share of them with these runs (parallel/logical.h gathers and scatters by them). Gradients
// and optimizer state share the parameters' layout, so the same runs describe them.
struct LogicalRun {
  int64_t local_offset = 0, logical_offset = 0, count = 0;
};

// The part of the model this rank holds; the default is the whole model.
//  - Tensor parallelism (Megatron): rank tp_rank of tp_size holds its columns of
//    qkv and fc1 (heads and hidden units), its rows of proj and fc2, and likewise of the
//    variable aggregation attention; the rest is replicated.
//  - Pipeline parallelism: the blocks [first_block, last_block) (last_block < 0: depth); the
//    stage with first_block 0 also holds the embeddings, the one ending at depth the head.
// The parameter table then holds only this rank's tensors, with the single-process names and
// this rank's shapes; logical_runs() maps it into the single-process buffer.
struct ModelShard {
  int tp_size = 1, tp_rank = 0;
  int64_t first_block = 0, last_block = -1;
};

struct BlockParams {
  int norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

class ClimaX {
 public:
  // Validates cfg and the shard, builds the parameter table of this rank's share. Every op runs
  // on `device` (not owned; must outlive the model): plan() allocates there, and the buffers
  // forward() and backward() take are its device memory (docs/architecture.md).
  explicit ClimaX(const ModelConfig& cfg, const ModelShard& shard = {},
                  backend::Device& device = backend::cpu());
  backend::Device& device() const { return dev_; }

  const ModelConfig& config() const { return cfg_; }
  const ModelShard& shard() const { return shard_; }
  const TensorTable& params() const { return table_; }
  // Pipeline stage: whether this rank runs the embedding (first_block 0) and the head and loss
  // (last_block = depth). A whole model has both.
  bool has_embed() const { return shard_.first_block == 0; }
  bool has_head() const { return shard_.last_block == cfg_.depth; }

  // This rank's share of the logical parameter buffer (see LogicalRun), in increasing
  // local_offset; one run covering everything on an unsharded model. logical_total() is the
  // size of the single-process buffer.
  std::vector<LogicalRun> logical_runs() const;
  int64_t logical_total() const;
  // local[params().total()] <- this rank's share of logical[logical_total()] (by logical_runs;
  // padding zeroed): how a sharded rank takes its weights from a checkpoint or an init. Both
  // buffers are host memory.
  void slice_logical(const float* logical, float* local) const;

  // ClimaX initialisation into a flat HOST parameter buffer of params().total() floats:
  // truncated normal(0.02) for Linear/conv weights, zero biases, LayerNorm (1, 0), 2-D sin-cos
  // pos_embed, 1-D sin-cos var_embed, zero var_query. A shard gets exactly the single-process
  // values of its tensors: the random stream runs over every tensor in table order, so the
  // whole model is initialised into a reserved mapping, and after each tensor its values are
  // copied to the shard (by logical_runs()) and its pages handed back, so that a shard never
  // holds more than about one tensor of the whole model (a pipeline stage of a large model on a
  // rank of its own memory).
  void init(float* params, uint64_t seed) const;
  // The whole model's initialisation into P (table order); `done(first, count)`, if given, is
  // called after each tensor that is not all zeros is written, and `zeroed` says P is zero
  // already (no memset: an untouched mapping stays uncommitted).
  void init_whole(float* P, uint64_t seed, bool zeroed,
                  const std::function<void(int64_t, int64_t)>& done) const;

  // Tensor parallelism: the TP group's all-reduce (not owned; must outlive the model's use).
  // Required before plan() when shard().tp_size > 1, with size() = tp_size and rank() = tp_rank.
  void set_tensor_parallel(TensorParallel* tp) { tp_ = tp; }

  // Plans (allocates) every activation and workspace buffer for batches of up to max_batch.
  // Nothing is allocated by forward/backward afterwards.
  //
  // With `sp` (not owned; must outlive the model's use; in bf16 mode the SP attention still
  // runs in fp32, the matrix products in bf16) the model is shard
  // sp->rank() of sp->size() = P of a sequence-parallel group: it owns the tokens
  // [first_token(), first_token() + local_tokens()) of the N in the single-process order
  // (aggregate: patches, row-major; per_variable: (variable, patch), variable-major), and block
  // attention goes through `sp`. forward() then returns this rank's PART of the loss (its
  // pixels' squared errors over the global count B*Vo*H*W), pred receives only the pixels of
  // its tokens (others untouched), and backward() accumulates this rank's PARTIAL gradient:
  // summing losses and gradients over the group gives the single-process ones.
  //
  // loss_batch > 0 (data parallelism) normalises the loss by loss_batch*Vo*H*W instead of the
  // forward's own B*Vo*H*W: each data-parallel rank scores its B = loss_batch/dp samples over
  // the GLOBAL count, so the sum over ranks is the loss (and gradient) of the global batch.
  //
  // slots > 1 (pipeline schedules, docs/parallelism.md "Pipeline parallelism"): that many sets
  // of saved activations, so several micro-batches can be in flight between their forward and
  // backward; select_slot() picks the set the next forward / backward uses. Backward scratch,
  // bf16 weights and attention workspace are planned once and shared by the slots.
  void plan(int64_t max_batch, Precision precision, SequenceParallelAttention* sp = nullptr,
            int64_t loss_batch = 0, int slots = 1);
  int64_t max_batch() const { return max_batch_; }
  int64_t loss_batch() const { return loss_batch_; }  // 0: the batch of each forward
  int64_t local_tokens() const { return n_local_; }   // N / P (N without SP)
  int64_t first_token() const { return n_first_; }    // rank * N / P
  Precision precision() const { return precision_; }
  int slots() const { return slots_; }
  size_t activation_bytes() const;  // saved activations for backward (all slots)
  size_t workspace_bytes() const;   // backward scratch, bf16 staging, attention scratch

  // Activation recomputation (call before plan()): forward keeps only each block's input, and
  // backward recomputes the block's forward (into one set of buffers shared by all blocks)
  // before its backward. Results are identical; activation_bytes() drops by L blocks' saved
  // state (except their inputs), workspace_bytes() grows by one block's (the shared slot), and
  // each backward runs each block's forward again (with SP: its collectives).
  void set_recompute(bool on) { recompute_ = on; }

  // Dropout (see Dropout; validated: rates in [0, 1)). It applies only to the forwards between
  // set_dropout_step(step >= 0) and set_dropout_step(-1) — the trainer's optimizer steps, with
  // the number of steps already taken — so evaluation, prediction and `seqvit grad` never drop.
  // A backward uses the masks of its slot's forward.
  void set_dropout(const Dropout& d);
  const Dropout& dropout() const { return dropout_; }
  void set_dropout_step(int64_t step) { drop_step_ = step; }
  bool recompute() const { return recompute_; }

  // Units of the parameter buffer (see model/parameter_hooks.h): 0 embeddings, 1 + i block i,
  // num_units() - 1 final norm and head; unit_range(u) = [begin, end) in floats, consecutive,
  // covering [0, params().total()). `hooks` (not owned, may be null) are called around each
  // unit's use of the parameters in forward() and backward().
  int num_units() const { return static_cast<int>(blocks_.size()) + 2; }
  std::pair<int64_t, int64_t> unit_range(int unit) const;
  void set_parameter_hooks(ParameterHooks* hooks) { hooks_ = hooks; }

  // bf16 mode: refresh the bf16 copy of the weights (after loading or an optimizer step).
  // params, grads and pred here, and the stage buffers below, are device memory.
  void sync_weights(const float* params);

  // Forward of the loss; saves what backward needs. pred (optional) receives [B,Vo,H,W].
  // Returning the loss is the step's one synchronisation with the device.
  // Pipeline stage: without the embedding the stage input (stage_input()) must hold the
  // previous stage's output, and batch.x is not read; without the head it returns 0, leaves
  // pred alone and its output is stage_output() (batch.y is not read).
  double forward(const float* params, const BatchView& batch, float* pred = nullptr);
  // Backward of the last forward (of the selected slot); ACCUMULATES into grads (same table as
  // params). Without the head, stage_output_grad() must hold dL/d(stage output) first; after
  // it, stage_input_grad() holds dL/d(stage input) (to send to the previous stage).
  void backward(const float* params, float* grads);

  // Pipeline stages. The activations crossing a stage boundary are the residual stream
  // [B, N_local, D] (B of the slot's forward): the input of block first_block and the output of
  // block last_block - 1, per slot. The gradients are in backward scratch shared by the slots.
  void select_slot(int slot);
  int slot() const { return slot_; }
  int64_t stage_elems(int64_t B) const { return B * n_local_ * cfg_.embed_dim; }
  float* stage_input();               // [B, N_local, D], the selected slot's
  const float* stage_output() const;  // [B, N_local, D], the selected slot's
  float* stage_output_grad();         // [B, N_local, D], dL/d stage_output (before backward)
  const float* stage_input_grad() const;  // [B, N_local, D], dL/d stage_input (after backward)

  // FLOPs of one forward pass for a batch of B (matrix products and attention only).
  double forward_flops(int64_t B) const;

 private:
  struct Saved;  // saved activations of one slot, defined in climax.cpp
  struct Act;    // planned buffers, defined in climax.cpp
  void embed_forward(const float* P, const BatchView& b);
  void embed_backward(const float* P, float* G, const float* dx0);
  void block_forward(const float* P, int i);
  void block_backward(const float* P, float* G, int i);
  void head_forward(const float* P);
  void head_backward(const float* P, float* G);
  void shard_loss(const BatchView& b, float* pred, double count);  // under SP, see plan()
  // y[B_, Nl, C] = dropout of x (columns [c0, c0 + C) of Ctot) at `site` with probability p,
  // with the step and first sample of the selected slot's forward; nothing when p = 0.
  void drop(const float* x, float* y, int64_t C, int64_t Ctot, int64_t c0, uint64_t site,
            double p, bool per_sample);
  double drop_path_rate(int64_t block) const;
  bool whole_model() const {  // no tensor or pipeline sharding
    return shard_.tp_size == 1 && shard_.first_block == 0 && shard_.last_block == cfg_.depth;
  }
  // Tensor parallelism: this rank's heads, their width Ht*d and its MLP hidden units (the whole
  // model's without TP), and the all-reduce of partial sums over the TP group.
  int64_t tp_heads() const { return cfg_.num_heads / shard_.tp_size; }
  int64_t tp_width() const { return cfg_.embed_dim / shard_.tp_size; }
  int64_t tp_hidden() const { return cfg_.hidden() / shard_.tp_size; }
  void tp_sum(float* x, int64_t n) {
    if (shard_.tp_size > 1) tp_->all_reduce_sum(x, n);
  }

  ModelConfig cfg_;
  ModelShard shard_;
  backend::Device& dev_;
  TensorTable table_;
  // parameter indices
  std::vector<int> tok_w_, tok_b_;
  int var_embed_ = -1, var_query_ = -1, agg_in_w_ = -1, agg_in_b_ = -1, agg_out_w_ = -1,
      agg_out_b_ = -1, pos_embed_ = -1, lt_w_ = -1, lt_b_ = -1, norm_w_ = -1, norm_b_ = -1;
  std::vector<BlockParams> blocks_;
  std::vector<int> head_w_, head_b_;
  std::vector<int64_t> out_index_;  // position of each out variable in `variables`
  std::vector<int64_t> out_slot_;   // [V]: output slot of each variable, -1 if not an output

  int64_t max_batch_ = 0;
  int64_t B_ = 0;           // batch of the last forward
  int64_t loss_batch_ = 0;  // > 0: the loss is normalised by this (global) batch, see plan()
  SequenceParallelAttention* sp_ = nullptr;
  TensorParallel* tp_ = nullptr;
  int64_t n_local_ = 0, n_first_ = 0;  // this rank's tokens [n_first_, n_first_ + n_local_)
  Precision precision_ = Precision::F32;
  Act* act_ = nullptr;
  bool recompute_ = false;
  Dropout dropout_;
  int64_t drop_step_ = -1;  // >= 0: the forwards drop (training steps), see set_dropout_step
  ParameterHooks* hooks_ = nullptr;
  int slots_ = 1, slot_ = 0;          // activation slots (plan), the selected one
  std::vector<int64_t> slot_batch_;  // [slots]: B_ of each slot's last forward

 public:
  ~ClimaX();
  ClimaX(const ClimaX&) = delete;
  ClimaX& operator=(const ClimaX&) = delete;
};

}  // namespace seqvit::model
