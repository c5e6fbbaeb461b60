// ClimaX forward and backward on one process (see climax.h for the shape glossary).
//
// Memory: plan() allocates every buffer once. Saved per block: the block input x [T,D], LN
// statistics [T] x 2, qkv [T,3D], attention output [T,D] and its LSE [B,Hh,N], the mid-block
// residual [T,D] and the fc1 pre-activation [T,F]; LayerNorm outputs and GELU outputs are
// recomputed in backward (memory-bound, cheap) so a block keeps ~(6 + F/D) T*D floats.
// Dense attention (ModelConfig::attention) also keeps each block's probabilities [B,Hh,N,N].
#include "model/climax.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/page_buffer.h"
#include "core/rng.h"
#include "model/tp_layout.h"

namespace seqvit::model {

using backend::AttentionKind;
using backend::DeviceArray;
using backend::Trans;

namespace {

constexpr float kLnEps = 1e-5f;

// Dropout call sites (DropoutArgs::site): pos_drop 0; block i: 8 i + kind.
enum DropSite : uint64_t {
  kPosDrop = 0,
  kProjDrop = 1,   // after the attention projection
  kAttnPath = 2,   // drop-path of the attention branch
  kMlpDrop1 = 3,   // after the MLP's GELU
  kMlpDrop2 = 4,   // after fc2
  kMlpPath = 5,    // drop-path of the MLP branch
};
uint64_t block_site(int64_t block, DropSite kind) { return 8 * static_cast<uint64_t>(block) + kind; }

// y[T,out] = x[T,in] W[out,in]^T (+ b[out]). With Wb (bf16 weights) the product runs in mixed
// precision: x is staged to bf16 in `stage`.
void linear_forward(backend::Device& dev, const float* x, const float* W, const bf16* Wb, const float* b, float* y,
                    int64_t T, int64_t in, int64_t out, bf16* stage) {
  float beta = 0.f;
  if (b) {
    dev.broadcast_rows(y, b, T, out);
    beta = 1.f;
  }
  if (Wb) {
    dev.convert_to_bf16(x, stage, T * in);
    dev.gemm_bf16(Trans::N, Trans::T, T, out, in, 1.f, stage, in, Wb, in, beta, y, out);
  } else {
    dev.gemm_f32(Trans::N, Trans::T, T, out, in, 1.f, x, in, W, in, beta, y, out);
  }
}

// dx[T,in] = dy W (or += when acc_dx; skipped when dx is null); dW[out,in] += dy^T x;
// db[out] += column sums of dy (skipped when null).
void linear_backward(backend::Device& dev, const float* dy, const float* x, const float* W, const bf16* Wb, float* dx,
                     float* dW, float* db, int64_t T, int64_t in, int64_t out, bool acc_dx,
                     bf16* stage_a, bf16* stage_b) {
  if (Wb) {
    dev.convert_to_bf16(dy, stage_a, T * out);
    if (dx)
      dev.gemm_bf16(Trans::N, Trans::N, T, in, out, 1.f, stage_a, out, Wb, in, acc_dx ? 1.f : 0.f,
                         dx, in);
    dev.convert_to_bf16(x, stage_b, T * in);
    dev.gemm_bf16(Trans::T, Trans::N, out, in, T, 1.f, stage_a, out, stage_b, in, 1.f, dW, in);
  } else {
    if (dx)
      dev.gemm_f32(Trans::N, Trans::N, T, in, out, 1.f, dy, out, W, in, acc_dx ? 1.f : 0.f, dx,
                        in);
    dev.gemm_f32(Trans::T, Trans::N, out, in, T, 1.f, dy, out, x, in, 1.f, dW, in);
  }
  if (db) dev.bias_backward(dy, db, T, out);
}

// 1-D sin-cos embedding (MAE/ClimaX): out[E] = [sin(pos * w_k), cos(pos * w_k)], k < E/2,
// w_k = 1 / 10000^(k / (E/2)).
void sincos_1d(int64_t E, double pos, float* out) {
  const int64_t half = E / 2;
  for (int64_t k = 0; k < half; ++k) {
    double w = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(half));
    out[k] = static_cast<float>(std::sin(pos * w));
    out[half + k] = static_cast<float>(std::cos(pos * w));
  }
  for (int64_t k = 2 * half; k < E; ++k) out[k] = 0.f;
}


// Self-attention of one block, reading Q, K, V in place from the packed qkv[B, N, 3, Hh, d]
// (token stride 3D) and writing o[B, N, Hh, d]; backward adds dO and dqkv in the same layout.
AttentionArgs block_attention(int64_t B, int64_t N, int64_t Hh, int64_t d, bool bf16,
                                       float* qkv, float* o, float* lse, float* dout, float* dqkv,
                                       void* ws, size_t ws_bytes) {
  const int64_t D = Hh * d;
  AttentionArgs at;
  at.batch = B;
  at.heads = Hh;
  at.nq = at.nk = N;
  at.head_dim = d;
  at.scale = 1.f / std::sqrt(static_cast<float>(d));
  at.bf16 = bf16;
  at.q = {qkv, N * 3 * D, 3 * D, d};
  at.k = {qkv + D, N * 3 * D, 3 * D, d};
  at.v = {qkv + 2 * D, N * 3 * D, 3 * D, d};
  at.o = {o, N * D, D, d};
  at.lse = lse;
  if (dqkv) {
    at.dout = {dout, N * D, D, d};
    at.dq = {dqkv, N * 3 * D, 3 * D, d};
    at.dk = {dqkv + D, N * 3 * D, 3 * D, d};
    at.dv = {dqkv + 2 * D, N * 3 * D, 3 * D, d};
  }
  at.workspace = ws;
  at.workspace_bytes = ws_bytes;
  return at;
}

// Dense attention: the same arguments with the block's probability buffer.
AttentionArgs with_probs(AttentionArgs at, float* probs) {
  at.probs = probs;
  return at;
}

// Variable aggregation of one sample: Lp independent problems (one per patch), each with the
// shared query q[D] (batch stride 0) over the V keys/values of that patch, read from
// kv[V, Lp, 2D]; output o[Lp, D]. Backward: dO [Lp, D], dq per patch [Lp, D], dkv like kv.
AttentionArgs aggregation_attention(int64_t V, int64_t Lp, int64_t Hh, int64_t d,
                                             bool bf16, float* q, float* kv, float* o,
                                             float* lse, float* dout, float* dq, float* dkv,
                                             void* ws, size_t ws_bytes) {
  const int64_t D = Hh * d;
  AttentionArgs at;
  at.batch = Lp;
  at.heads = Hh;
  at.nq = 1;
  at.nk = V;
  at.head_dim = d;
  at.scale = 1.f / std::sqrt(static_cast<float>(d));
  at.bf16 = bf16;
  at.q = {q, 0, 0, d};
  at.k = {kv, 2 * D, Lp * 2 * D, d};
  at.v = {kv + D, 2 * D, Lp * 2 * D, d};
  at.o = {o, D, D, d};
  at.lse = lse;
  if (dkv) {
    at.dout = {dout, D, D, d};
    at.dq = {dq, D, D, d};
    at.dk = {dkv, 2 * D, Lp * 2 * D, d};
    at.dv = {dkv + D, 2 * D, Lp * 2 * D, d};
  }
  at.workspace = ws;
  at.workspace_bytes = ws_bytes;
  return at;
}

}  // namespace

// ------------------------------------------------------------------------ planned buffers
// A block's saved buffer of one kind: one per block, or with activation recomputation one
// slot shared by every block (the block being recomputed and back-propagated), so that the
// block code indexes [i] either way.
template <typename T>
struct PerBlock {
  std::vector<DeviceArray<T>> slots;
  bool shared = false;
  void resize(int64_t blocks, bool share = false) {
    shared = share;
    slots.resize(share ? std::min<int64_t>(blocks, 1) : blocks);
  }
  DeviceArray<T>& operator[](int64_t i) { return slots[shared ? 0 : i]; }
};

// Saved activations: what one forward keeps for its backward. With several slots (pipeline
// micro-batches in flight) each slot has its own set; the selected slot's set lives in Act (its
// base) and the others are parked, so the layer code reads a.xs[i] whichever slot is selected.
// Under tensor parallelism (tp_size T) the attention and MLP buffers hold this rank's share:
// Ht = Hh/T heads of width Dt = D/T, Ft = F/T hidden units (qkv and dqkv [T,3Dt], attn_o [T,Dt],
// fc1_pre [T,Ft], ...); without TP Ht = Hh, Dt = D, Ft = F.
struct ClimaX::Saved {
  // embedding
  DeviceArray<float> patches;  // [B,V,Lp,pp]
  DeviceArray<float> tok;      // [B,V,Lp,D] per-variable embeddings (aggregate)
  DeviceArray<float> kv;       // [B*V*Lp, 2D] aggregation keys | values (aggregate)
  DeviceArray<float> qagg;     // [D] projected variable query (aggregate)
  DeviceArray<float> agg_o;    // [B*Lp, D] aggregation attention output (aggregate)
  DeviceArray<float> agg_lse;  // [B, Lp, Hh]
  DeviceArray<float> tscaled;  // [B] lead time / 100
  // blocks (index i), xs has depth+1 entries: xs[i] is the input of block i (a pipeline stage
  // allocates xs[first_block .. last_block] and the blocks [first_block, last_block) only)
  std::vector<DeviceArray<float>> xs;
  PerBlock<float> ln1_mean, ln1_rstd, qkv, attn_o, lse, x_mid, ln2_mean, ln2_rstd, fc1_pre;
  PerBlock<float> probs;  // per block, dense attention only: [B, Ht, N, N] probabilities
  PerBlock<unsigned char> sp_saved;  // per block: the SP scheme's saved state
  // final norm and head
  DeviceArray<float> lnf_out, lnf_mean, lnf_rstd;  // [T,D], [T], [T]
  std::vector<DeviceArray<float>> head_pre, head_act;  // decoder_depth x [T,D]
  DeviceArray<float> head_out;                         // [T, outw]
  DeviceArray<float> img;                              // [B,V,H,W]
  DeviceArray<float> dpred;                            // [B,Vo,H,W]
  DeviceArray<float> wlat;                             // [H]
  // dropout of this slot's forward (its backward recomputes the same masks): the optimizer
  // step (-1: no dropout) and the global index of the batch's first sample
  int64_t drop_step = -1, sample0 = 0;
};

struct ClimaX::Act : ClimaX::Saved {
  std::vector<Saved> parked;  // [slots]: the other slots' sets (the selected one's is empty)
  DeviceArray<float> embias;       // [V, D] conv bias + var_embed, per variable
  DeviceArray<double> dq_sum;      // [Dt] aggregation query gradient
  DeviceArray<float> dvq;          // [D] var_query gradient (summed over TP)
  // backward / forward scratch
  DeviceArray<float> lnbuf;             // [T,D] LayerNorm outputs (recomputed)
  DeviceArray<float> dx, dln, d_o;      // [T,D]
  DeviceArray<float> dqkv;              // [T,3D]
  DeviceArray<float> hbuf, dh;          // [T,F]
  DeviceArray<float> dhead;             // [T,outw]
  DeviceArray<float> dimg;              // [B,V,H,W]
  DeviceArray<float> dtok, dkv, dq_agg, dagg_o;  // aggregate: [BVLp,D], [BVLp,2D], [BLp,D], [BLp,D]
  // mixed precision
  DeviceArray<bf16> wb;                 // bf16 copy of all parameters (table layout)
  DeviceArray<bf16> stage_a, stage_b;   // bf16 staging of matrix inputs
  // attention scratch
  DeviceArray<unsigned char> attn_ws;
  DeviceArray<double> loss;  // [1] the loss of the last forward, read back by forward()

  size_t saved_bytes = 0, scratch_bytes = 0;
  backend::Arena arena;  // every array above, one allocation
};

ClimaX::~ClimaX() { delete act_; }

ClimaX::ClimaX(const ModelConfig& cfg, const ModelShard& shard, backend::Device& device)
    : cfg_(cfg), shard_(shard), dev_(device) {
  cfg_.validate();
  if (shard_.last_block < 0) shard_.last_block = cfg_.depth;
  SEQVIT_CHECK(shard_.tp_size >= 1 && shard_.tp_rank >= 0 && shard_.tp_rank < shard_.tp_size,
               "tensor-parallel rank {} of {} is out of range: valid ranks are 0 to tp_size - 1",
               shard_.tp_rank, shard_.tp_size);
  SEQVIT_CHECK(cfg_.num_heads % shard_.tp_size == 0 && cfg_.hidden() % shard_.tp_size == 0,
               "tp = {} must divide the {} heads and the MLP width {}", shard_.tp_size,
               cfg_.num_heads, cfg_.hidden());
  SEQVIT_CHECK(shard_.first_block >= 0 && shard_.first_block < shard_.last_block &&
                   shard_.last_block <= cfg_.depth,
               "pipeline stage blocks [{}, {}) are not a non-empty range of the {} blocks; a "
               "stage holds blocks [first, last) with 0 <= first < last <= depth",
               shard_.first_block, shard_.last_block, cfg_.depth);
  out_index_ = cfg_.out_index();
  out_slot_.assign(cfg_.V(), -1);
  for (int64_t o = 0; o < cfg_.Vo(); ++o) out_slot_[out_index_[o]] = o;
  const int64_t D = cfg_.embed_dim, V = cfg_.V(), p = cfg_.patch_size;
  const int64_t Dt = tp_width(), Ft = tp_hidden();  // tensor parallel: this rank's share
  // A pipeline stage holds its units only, in the single-process order: the embedding (first
  // stage), blocks [first_block, last_block) (blocks_ keeps the global index), the head (last).
  for (int64_t v = 0; v < V && has_embed(); ++v) {
    tok_w_.push_back(table_.add(fmt::format("token_embeds.{}.proj.weight", v), {D, 1, p, p}));
    tok_b_.push_back(table_.add(fmt::format("token_embeds.{}.proj.bias", v), {D}));
  }
  if (has_embed()) var_embed_ = table_.add("var_embed", {1, V, D});
  if (has_embed() && cfg_.tokenization == Tokenization::Aggregate) {
    var_query_ = table_.add("var_query", {1, 1, D});
    agg_in_w_ = table_.add("var_agg.in_proj_weight", {3 * Dt, D});
    agg_in_b_ = table_.add("var_agg.in_proj_bias", {3 * Dt});
    agg_out_w_ = table_.add("var_agg.out_proj.weight", {D, Dt});
    agg_out_b_ = table_.add("var_agg.out_proj.bias", {D});
  }
  if (has_embed()) {
    pos_embed_ = table_.add("pos_embed", {1, cfg_.Lp(), D});
    lt_w_ = table_.add("lead_time_embed.weight", {D, 1});
    lt_b_ = table_.add("lead_time_embed.bias", {D});
  }
  blocks_.resize(shard_.first_block);  // blocks of earlier stages: not held, never used
  for (int64_t i = shard_.first_block; i < shard_.last_block; ++i) {
    auto n = [&](const char* s) { return fmt::format("blocks.{}.{}", i, s); };
    BlockParams bp{};
    bp.norm1_w = table_.add(n("norm1.weight"), {D});
    bp.norm1_b = table_.add(n("norm1.bias"), {D});
    bp.qkv_w = table_.add(n("attn.qkv.weight"), {3 * Dt, D});
    bp.qkv_b = table_.add(n("attn.qkv.bias"), {3 * Dt});
    bp.proj_w = table_.add(n("attn.proj.weight"), {D, Dt});
    bp.proj_b = table_.add(n("attn.proj.bias"), {D});
    bp.norm2_w = table_.add(n("norm2.weight"), {D});
    bp.norm2_b = table_.add(n("norm2.bias"), {D});
    bp.fc1_w = table_.add(n("mlp.fc1.weight"), {Ft, D});
    bp.fc1_b = table_.add(n("mlp.fc1.bias"), {Ft});
    bp.fc2_w = table_.add(n("mlp.fc2.weight"), {D, Ft});
    bp.fc2_b = table_.add(n("mlp.fc2.bias"), {D});
    blocks_.push_back(bp);
  }
  if (!has_head()) return;
  norm_w_ = table_.add("norm.weight", {D});
  norm_b_ = table_.add("norm.bias", {D});
  const int64_t outw = cfg_.tokenization == Tokenization::Aggregate ? V * cfg_.pp() : cfg_.pp();
  for (int64_t k = 0; k <= cfg_.decoder_depth; ++k) {
    const int64_t out = k < cfg_.decoder_depth ? D : outw;
    head_w_.push_back(table_.add(fmt::format("head.{}.weight", 2 * k), {out, D}));
    head_b_.push_back(table_.add(fmt::format("head.{}.bias", 2 * k), {out}));
  }
}

// A sharded rank: each of its tensors is found by name in the single-process table and mapped by
// its tensor-parallel split (model/tp_layout.h); tensors a rank does not hold add no runs.
std::vector<LogicalRun> ClimaX::logical_runs() const {
  if (whole_model()) return {LogicalRun{0, 0, table_.total()}};
  // A shard: each tensor at its single-process offset (same name), cut by its tensor-parallel
  // split; runs merged where both buffers are contiguous (a pipeline stage without TP is one
  // run, padding included).
  const ClimaX whole(cfg_);
  std::vector<LogicalRun> runs;
  for (const auto& e : table_.entries()) {
    const auto& l = whole.params().get(e.name);
    append_tp_runs(tp_split(e.name), l.shape, shard_.tp_size, shard_.tp_rank, e.offset, l.offset,
                   runs);
  }
  // Coalesce runs contiguous in both buffers. Without TP every gap between runs is alignment
  // padding in both buffers, so equal gaps merge too (a stage becomes one run); under TP a gap
  // may hold another rank's slice in the logical buffer, so only touching runs merge.
  std::vector<LogicalRun> merged;
  for (const auto& r : runs) {
    if (!merged.empty()) {
      LogicalRun& m = merged.back();
      const int64_t gap = r.local_offset - (m.local_offset + m.count);
      if ((gap == 0 || (gap > 0 && shard_.tp_size == 1)) &&
          r.logical_offset - (m.logical_offset + m.count) == gap) {
        m.count += gap + r.count;
        continue;
      }
    }
    merged.push_back(r);
  }
  return merged;
}

int64_t ClimaX::logical_total() const {
  return whole_model() ? table_.total() : ClimaX(cfg_).params().total();
}

void ClimaX::slice_logical(const float* logical, float* local) const {
  std::memset(local, 0, sizeof(float) * table_.total());
  for (const auto& r : logical_runs())
    std::memcpy(local + r.local_offset, logical + r.logical_offset, sizeof(float) * r.count);
}

std::pair<int64_t, int64_t> ClimaX::unit_range(int u) const {
  SEQVIT_CHECK(u >= 0 && u < num_units(), "parameter unit {} out of range: valid units are 0 to {}",
               u, num_units() - 1);
  // first tensor of each unit: embeddings from 0, block i from its norm1, the head from norm
  auto first = [&](int k) -> int64_t {
    if (k == 0) return 0;
    if (k == num_units()) return table_.total();
    if (k == num_units() - 1) return norm_w_ >= 0 ? table_[norm_w_].offset : table_.total();
    return table_[blocks_[k - 1].norm1_w].offset;
  };
  return {first(u), first(u + 1)};
}

void ClimaX::init(float* P, uint64_t seed) const {
  if (whole_model()) return init_whole(P, seed, false, nullptr);
  // a shard: its slice of the single-process initialisation (not in a step: may allocate)
  std::memset(P, 0, sizeof(float) * table_.total());
  const ClimaX whole(cfg_);
  PageBuffer buf(logical_total());  // reserved, committed page by page as init writes it
  const auto runs = logical_runs();
  whole.init_whole(buf.data(), seed, true, [&](int64_t first, int64_t count) {
    for (const auto& r : runs) {
      const int64_t lo = std::max(first, r.logical_offset),
                    hi = std::min(first + count, r.logical_offset + r.count);
      if (lo < hi)
        std::memcpy(P + r.local_offset + (lo - r.logical_offset), buf.data() + lo,
                    sizeof(float) * static_cast<size_t>(hi - lo));
    }
    buf.release(first, count);  // whole pages only: a page shared with the next tensor stays
  });
}

void ClimaX::init_whole(float* P, uint64_t seed, bool zeroed,
                        const std::function<void(int64_t, int64_t)>& done) const {
  Rng rng(seed);
  if (!zeroed) std::memset(P, 0, sizeof(float) * table_.total());
  const int64_t D = cfg_.embed_dim;
  auto finished = [&](int idx) {
    if (done) done(table_[idx].offset, table_[idx].numel);
  };
  auto fill_tn = [&](int idx) {
    const auto& e = table_[idx];
    for (int64_t i = 0; i < e.numel; ++i) P[e.offset + i] = static_cast<float>(rng.trunc_normal(0.02));
    finished(idx);
  };
  auto fill_const = [&](int idx, float v) {
    const auto& e = table_[idx];
    for (int64_t i = 0; i < e.numel; ++i) P[e.offset + i] = v;
    finished(idx);
  };
  for (int w : tok_w_) fill_tn(w);
  for (int64_t v = 0; v < cfg_.V(); ++v)
    sincos_1d(D, static_cast<double>(v), P + table_[var_embed_].offset + v * D);
  finished(var_embed_);
  if (agg_in_w_ >= 0) {
    fill_tn(agg_in_w_);
    fill_tn(agg_out_w_);
  }
  // 2-D sin-cos: first half encodes the patch column, second half the patch row (as ClimaX).
  for (int64_t r = 0; r < cfg_.grid_h(); ++r)
    for (int64_t c = 0; c < cfg_.grid_w(); ++c) {
      float* dst = P + table_[pos_embed_].offset + (r * cfg_.grid_w() + c) * D;
      sincos_1d(D / 2, static_cast<double>(c), dst);
      sincos_1d(D - D / 2, static_cast<double>(r), dst + D / 2);
    }
  finished(pos_embed_);
  fill_tn(lt_w_);
  for (const auto& b : blocks_) {
    fill_const(b.norm1_w, 1.f);
    fill_const(b.norm2_w, 1.f);
    fill_tn(b.qkv_w);
    fill_tn(b.proj_w);
    fill_tn(b.fc1_w);
    fill_tn(b.fc2_w);
  }
  fill_const(norm_w_, 1.f);
  for (int w : head_w_) fill_tn(w);
}

void ClimaX::plan(int64_t max_batch, Precision precision, SequenceParallelAttention* sp,
                  int64_t loss_batch, int slots) {
  SEQVIT_CHECK(max_batch >= 1, "batch size must be >= 1, got {}", max_batch);
  SEQVIT_CHECK(slots >= 1, "activation slots must be >= 1, got {}", slots);
  SEQVIT_CHECK(loss_batch == 0 || loss_batch >= max_batch,
               "the loss batch ({}) must be 0 or at least the planned batch ({})", loss_batch,
               max_batch);
  loss_batch_ = loss_batch;
  const int P = sp ? sp->size() : 1;
  SEQVIT_CHECK(P >= 1 && cfg_.N() % P == 0,
               "{} tokens cannot be split into equal segments over a sequence-parallel group of {}",
               cfg_.N(), P);
  SEQVIT_CHECK(shard_.tp_size == 1 || (tp_ && tp_->size() == shard_.tp_size &&
                                        tp_->rank() == shard_.tp_rank),
               "tensor-parallel rank {} of {}: plan() needs set_tensor_parallel() with a group of "
               "that size and rank (got {})",
               shard_.tp_rank, shard_.tp_size,
               tp_ ? fmt::format("rank {} of {}", tp_->rank(), tp_->size()) : "none");
  const bool dense = cfg_.attention == AttentionKernel::Dense;
  SEQVIT_CHECK(!(dense && sp),
               "--attention dense does not work with sequence parallelism (a group of {}): the SP "
               "operators run flash attention; valid choices under SP: flash (dense needs sp = 1)",
               P);
  sp_ = sp;
  n_local_ = cfg_.N() / P;
  n_first_ = sp ? static_cast<int64_t>(sp->rank()) * n_local_ : 0;
  delete act_;
  act_ = new Act();
  Act& a = *act_;
  max_batch_ = max_batch;
  precision_ = precision;
  slots_ = slots;
  slot_ = 0;
  slot_batch_.assign(static_cast<size_t>(slots), 0);
  B_ = 0;
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  const bool emb = has_embed(), head = has_head();
  const int64_t B = max_batch, V = cfg_.V(), Vo = cfg_.Vo(), Lp = cfg_.Lp(), N = cfg_.N(),
                D = cfg_.embed_dim, F = cfg_.hidden(), pp = cfg_.pp(),
                H = cfg_.img_h, W = cfg_.img_w, Nl = n_local_, T = B * Nl, L = cfg_.depth,
                i0 = shard_.first_block, i1 = shard_.last_block;
  const int64_t outw = agg ? V * pp : pp;
  const int64_t Ll = agg ? Nl : Lp;  // patches this rank aggregates (aggregate: its tokens)
  const int64_t Ht = tp_heads(), Dt = tp_width(), Ft = tp_hidden();  // tensor parallel share
  size_t saved = 0, scratch = 0;
  auto X = [&](auto& buf, int64_t n) {
    a.arena.request(buf, n);
    scratch += buf.bytes();
  };
  // one slot's saved activations: the embedding (first stage), blocks [i0, i1), head (last)
  auto plan_saved = [&](Saved& sv) {
    auto S = [&](auto& buf, int64_t n) {
      a.arena.request(buf, n);
      saved += buf.bytes();
    };
    if (emb) {
      S(sv.patches, B * V * Lp * pp);
      if (agg) {
        S(sv.tok, B * V * Ll * D);
        S(sv.kv, B * V * Ll * 2 * Dt);
        S(sv.qagg, Dt);
        S(sv.agg_o, B * Ll * Dt);
        S(sv.agg_lse, B * Ll * Ht);
      }
      S(sv.tscaled, B);
    }
    sv.xs.resize(L + 1);
    for (auto* v : {&sv.ln1_mean, &sv.ln1_rstd, &sv.qkv, &sv.attn_o, &sv.lse, &sv.x_mid,
                    &sv.ln2_mean, &sv.ln2_rstd, &sv.fc1_pre, &sv.probs})
      v->resize(L, recompute_);
    sv.sp_saved.resize(sp ? L : 0, recompute_);
    for (int64_t i = i0; i <= i1; ++i) S(sv.xs[i], T * D);
    // with recomputation only the block inputs xs are kept per block: one shared slot of the rest
    for (int64_t i = i0; i < (recompute_ ? std::min<int64_t>(i1, i0 + 1) : i1); ++i) {
      S(sv.ln1_mean[i], T);
      S(sv.ln1_rstd[i], T);
      S(sv.qkv[i], T * 3 * Dt);
      S(sv.attn_o[i], T * Dt);
      if (sp) {  // the SP scheme keeps its own LSE (and, for Ulysses and LSS, K/V copies)
        S(sv.sp_saved[i], static_cast<int64_t>(sp->saved_bytes(B, N, Ht, cfg_.head_dim())));
      } else {
        S(sv.lse[i], B * Ht * N);
        if (dense) S(sv.probs[i], B * Ht * N * N);
      }
      S(sv.x_mid[i], T * D);
      S(sv.ln2_mean[i], T);
      S(sv.ln2_rstd[i], T);
      S(sv.fc1_pre[i], T * Ft);
    }
    if (recompute_ && i1 > i0) {  // the shared slot is scratch: live only in one block's backward
      size_t slot = sv.sp_saved.slots.empty() ? 0 : sv.sp_saved[i0].bytes();
      for (auto* v : {&sv.ln1_mean, &sv.ln1_rstd, &sv.qkv, &sv.attn_o, &sv.lse, &sv.x_mid,
                      &sv.ln2_mean, &sv.ln2_rstd, &sv.fc1_pre, &sv.probs})
        slot += (*v)[i0].bytes();
      saved -= slot;
      scratch += slot;
    }
    if (!head) return;
    S(sv.lnf_out, T * D);
    S(sv.lnf_mean, T);
    S(sv.lnf_rstd, T);
    sv.head_pre.resize(cfg_.decoder_depth);
    sv.head_act.resize(cfg_.decoder_depth);
    for (int64_t k = 0; k < cfg_.decoder_depth; ++k) {
      S(sv.head_pre[k], T * D);
      S(sv.head_act[k], T * D);
    }
    S(sv.head_out, T * outw);
    if (!sp) S(sv.img, B * V * H * W);
    S(sv.dpred, sp ? T * outw : B * Vo * H * W);  // SP: the loss gradient in head_out's layout
    S(sv.wlat, H);
  };
  plan_saved(a);
  a.parked.resize(static_cast<size_t>(slots));
  for (int k = 1; k < slots; ++k) plan_saved(a.parked[k]);
  if (emb) {
    if (agg) {
      X(a.dtok, B * V * Ll * D);
      X(a.dkv, B * V * Ll * 2 * Dt);
      X(a.dq_agg, B * Ll * Dt);
      X(a.dagg_o, B * Ll * Dt);
      X(a.dvq, D);
      X(a.dq_sum, Dt);
    }
    X(a.embias, V * D);
  }
  X(a.lnbuf, T * D);
  X(a.dx, T * D);
  X(a.dln, T * D);
  X(a.d_o, T * D);  // also the head backward's ping-pong buffer: D wide
  X(a.dqkv, T * 3 * Dt);
  X(a.hbuf, T * Ft);
  X(a.dh, T * Ft);
  if (head && !sp) X(a.dhead, T * outw);
  if (head && !sp) X(a.dimg, B * V * H * W);
  if (precision == Precision::BF16) {
    X(a.wb, table_.total());
    // the largest matrix input staged: rows x width over every linear layer
    int64_t stage = std::max({T * 3 * D, T * F, head ? T * outw : 0});
    if (agg && emb) stage = std::max(stage, B * V * Ll * 2 * D);
    X(a.stage_a, stage);
    X(a.stage_b, stage);
  }
  // attention scratch: the larger of the block attention and the aggregation attention
  AttentionArgs blk;
  blk.batch = B;
  blk.heads = Ht;
  blk.nq = blk.nk = N;
  blk.head_dim = cfg_.head_dim();
  blk.bf16 = precision == Precision::BF16;
  size_t ws = sp ? sp->workspace_bytes(B, N, Ht, cfg_.head_dim(), dev_.threads())
                : dev_.attention_workspace_bytes(
                      dense ? AttentionKind::Dense : AttentionKind::Flash, blk);
  if (agg && emb) {
    AttentionArgs ag = blk;
    ag.batch = Ll;
    ag.nq = 1;
    ag.nk = V;
    ws = std::max(ws, dev_.attention_workspace_bytes(AttentionKind::Flash, ag));
  }
  X(a.attn_ws, static_cast<int64_t>(ws));
  a.arena.request(a.loss, 1);
  a.arena.commit(dev_);
  a.saved_bytes = saved;
  a.scratch_bytes = scratch;
}

void ClimaX::select_slot(int k) {
  SEQVIT_CHECK(act_, "ClimaX::select_slot before plan()");
  SEQVIT_CHECK(k >= 0 && k < slots_, "activation slot {} does not exist: plan() made {} (0 to {})",
               k, slots_, slots_ - 1);
  if (k == slot_) return;
  Act& a = *act_;
  Saved& cur = a;  // moves of buffers and vectors: no allocation, no copy
  std::swap(cur, a.parked[static_cast<size_t>(slot_)]);
  std::swap(cur, a.parked[static_cast<size_t>(k)]);
  slot_batch_[static_cast<size_t>(slot_)] = B_;
  B_ = slot_batch_[static_cast<size_t>(k)];
  slot_ = k;
}

float* ClimaX::stage_input() {
  SEQVIT_CHECK(act_, "ClimaX::stage_input before plan()");
  return act_->xs[shard_.first_block].data();
}
const float* ClimaX::stage_output() const {
  SEQVIT_CHECK(act_, "ClimaX::stage_output before plan()");
  return act_->xs[shard_.last_block].data();
}
float* ClimaX::stage_output_grad() {
  SEQVIT_CHECK(act_, "ClimaX::stage_output_grad before plan()");
  return act_->dx.data();
}
const float* ClimaX::stage_input_grad() const {
  SEQVIT_CHECK(act_, "ClimaX::stage_input_grad before plan()");
  return act_->dx.data();
}

size_t ClimaX::activation_bytes() const { return act_ ? act_->saved_bytes : 0; }
size_t ClimaX::workspace_bytes() const { return act_ ? act_->scratch_bytes : 0; }

void ClimaX::sync_weights(const float* P) {
  SEQVIT_CHECK(act_, "ClimaX::sync_weights before plan()");
  if (precision_ == Precision::BF16) dev_.convert_to_bf16(P, act_->wb.data(), table_.total());
}

double ClimaX::forward_flops(int64_t B) const {
  const double V = cfg_.V(), Lp = cfg_.Lp(), N = cfg_.N(), D = cfg_.embed_dim,
               F = cfg_.hidden(), pp = cfg_.pp();
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  double f = 2 * V * Lp * pp * D;                            // patch embedding
  if (agg) f += 2 * V * Lp * D * 2 * D + 4 * V * D * Lp + 2 * Lp * D * D;  // aggregation
  f += cfg_.depth * (2 * N * (4 * D * D + 2 * D * F) + 4 * N * N * D);    // blocks
  f += 2 * N * D * D * cfg_.decoder_depth + 2 * N * D * (agg ? V * pp : pp);  // head
  return f * static_cast<double>(B);
}

// ------------------------------------------------------------------------ dropout
void ClimaX::set_dropout(const Dropout& d) {
  SEQVIT_CHECK(d.rate >= 0 && d.rate < 1, "dropout rate {} is outside [0, 1) (ClimaX trains with "
               "0.1; 0 turns it off)", d.rate);
  SEQVIT_CHECK(d.path >= 0 && d.path < 1, "drop-path rate {} is outside [0, 1) (ClimaX trains with "
               "0.1; 0 turns it off)", d.path);
  dropout_ = d;
}

double ClimaX::drop_path_rate(int64_t block) const {
  // timm / ClimaX: dpr = torch.linspace(0, drop_path, depth), block i drops with dpr[i]
  return cfg_.depth > 1 ? dropout_.path * static_cast<double>(block) /
                              static_cast<double>(cfg_.depth - 1)
                        : 0.0;
}

void ClimaX::drop(const float* x, float* y, int64_t C, int64_t Ctot, int64_t c0, uint64_t site,
                  double p, bool per_sample) {
  const Act& a = *act_;
  if (a.drop_step < 0 || p <= 0) {
    if (x != y) dev_.copy(y, x, sizeof(float) * static_cast<size_t>(B_ * n_local_ * C));
    return;
  }
  backend::DropoutArgs d;
  d.x = x;
  d.y = y;
  d.B = B_;
  d.Nl = n_local_;
  d.C = C;
  d.s0 = a.sample0;
  d.N = cfg_.N();
  d.n0 = n_first_;
  d.Ctot = Ctot;
  d.c0 = c0;
  d.per_sample = per_sample;
  d.p = static_cast<float>(p);
  d.seed = dropout_.seed;
  d.step = static_cast<uint64_t>(a.drop_step);
  d.site = site;
  dev_.dropout(d);
}

// ------------------------------------------------------------------------ forward
double ClimaX::forward(const float* P, const BatchView& b, float* pred) {
  SEQVIT_CHECK(act_, "ClimaX::forward before plan()");
  SEQVIT_CHECK(b.B >= 1 && b.B <= max_batch_, "batch of {} samples, but memory was planned for "
               "at most {}", b.B, max_batch_);
  Act& a = *act_;
  B_ = b.B;
  a.drop_step = dropout_.active() ? drop_step_ : -1;
  a.sample0 = b.first_sample;
  const int head_unit = num_units() - 1;
  if (has_embed()) {  // else: stage_input() holds the previous stage's output
    if (hooks_) hooks_->forward_begin(0);
    embed_forward(P, b);
    if (hooks_) hooks_->forward_end(0);
  }
  for (int i = static_cast<int>(shard_.first_block); i < shard_.last_block; ++i) {
    if (hooks_) hooks_->forward_begin(1 + i);
    block_forward(P, i);
    if (hooks_) hooks_->forward_end(1 + i);
  }
  if (!has_head()) return 0;  // stage_output() goes to the next stage
  if (hooks_) hooks_->forward_begin(head_unit);
  head_forward(P);
  if (hooks_) hooks_->forward_end(head_unit);

  // pred and the latitude-weighted MSE, with its gradient dpred for backward
  const int64_t H = cfg_.img_h, W = cfg_.img_w, V = cfg_.V(), Vo = cfg_.Vo();
  const double count = static_cast<double>((loss_batch_ > 0 ? loss_batch_ : B_) * Vo * H * W);
  dev_.latitude_weights(b.lat, H, a.wlat.data());
  if (sp_) {
    shard_loss(b, pred, count);
  } else {
    backend::WeightedMseArgs m;
    m.img = a.img.data();
    m.y = b.y;
    m.wlat = a.wlat.data();
    m.out_index = out_index_.data();
    m.B = B_;
    m.V = V;
    m.Vo = Vo;
    m.H = H;
    m.W = W;
    m.count = count;
    m.loss_out = a.loss.data();
    m.dpred = a.dpred.data();
    m.pred = pred;
    dev_.weighted_mse(m);
  }
  double loss = 0;
  dev_.copy_to_host(&loss, a.loss.data(), sizeof(double));  // the step's one read of a value
  return loss;
}

// The loss of one sequence-parallel shard, read straight from head_out: each token owns p x p
// pixels of one variable (per_variable) or of every variable (aggregate), so every pixel is
// scored by exactly one rank. Normalised by the GLOBAL count B*Vo*H*W, so the sum over the group
// is the single-process loss; dpred receives the gradient in head_out's layout [T, outw].
void ClimaX::shard_loss(const BatchView& b, float* pred, double count) {
  Act& a = *act_;
  backend::ShardLossArgs m;
  m.head_out = a.head_out.data();
  m.y = b.y;
  m.wlat = a.wlat.data();
  m.out_slot = out_slot_.data();
  m.aggregate = cfg_.tokenization == Tokenization::Aggregate;
  m.B = B_;
  m.V = cfg_.V();
  m.Vo = cfg_.Vo();
  m.H = cfg_.img_h;
  m.W = cfg_.img_w;
  m.p = cfg_.patch_size;
  m.Nl = n_local_;
  m.n0 = n_first_;
  m.count = count;
  m.loss_out = a.loss.data();
  m.dhead = a.dpred.data();
  m.pred = pred;
  dev_.shard_loss(m);
}

void ClimaX::embed_forward(const float* P, const BatchView& b) {
  Act& a = *act_;
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  const int64_t B = B_, V = cfg_.V(), Lp = cfg_.Lp(), D = cfg_.embed_dim, pp = cfg_.pp(),
                d = cfg_.head_dim(), N = cfg_.N(), Nl = n_local_, n0 = n_first_;
  const int64_t Ll = agg ? Nl : Lp;  // patches aggregated here (this rank's tokens)
  const int64_t Ht = tp_heads(), Dt = tp_width();  // tensor parallel: this rank's heads
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  dev_.patchify(b.x, a.patches.data(), B, V, cfg_.img_h, cfg_.img_w, cfg_.patch_size);
  // per-variable constant rows: conv bias + var_embed
  for (int64_t v = 0; v < V; ++v)
    dev_.add(P + table_[tok_b_[v]].offset, P + table_[var_embed_].offset + v * D,
                 a.embias.data() + v * D, D);
  // per-variable patch embedding (a p x p stride-p conv 1 -> D is a [pp] -> [D] linear map);
  // K = pp is tiny, so it stays in fp32. Only this rank's tokens: aggregate, patches
  // [n0, n0 + Nl) of every variable into tok [B, V, Ll, D]; per_variable, the run of each
  // variable's patches that falls in [n0, n0 + Nl) into xs[0] [B, Nl, D].
  for (int64_t s = 0; s < B; ++s)
    for (int64_t v = 0; v < V; ++v) {
      const int64_t lo = agg ? n0 : std::max(n0, v * Lp);
      const int64_t hi = agg ? n0 + Nl : std::min(n0 + Nl, (v + 1) * Lp);
      if (lo >= hi) continue;
      const float* src = a.patches.data() + (agg ? (s * V + v) * Lp + lo : s * N + lo) * pp;
      float* dst = agg ? a.tok.data() + (s * V + v) * Ll * D : a.xs[0].data() + (s * Nl + lo - n0) * D;
      linear_forward(dev_, src, P + table_[tok_w_[v]].offset, nullptr, a.embias.data() + v * D, dst,
                     hi - lo, pp, D, nullptr);
    }
  // position and lead-time embeddings: position (n0 + j) mod Lp of each token (aggregate
  // tokens are patches, n0 + j < Lp)
  auto add_pos_time = [&](int64_t tokens) {
    dev_.add_position_time(a.xs[0].data(), P + table_[pos_embed_].offset,
                           P + table_[lt_w_].offset, P + table_[lt_b_].offset, b.lead_times,
                           a.tscaled.data(), B, tokens, D, Lp, n0);
    // ClimaX's pos_drop, after the lead-time embedding
    drop(a.xs[0].data(), a.xs[0].data(), D, D, 0, kPosDrop, dropout_.rate, false);
  };
  if (!agg) return add_pos_time(Nl);
  // variable aggregation: one attention per patch, query = var_query, keys/values = V tokens.
  // Under TP this rank's in_proj rows are its heads' q | k | v (each Dt rows) and out_proj is
  // row-parallel: its partial output is summed over the group (out_proj bias added once).
  const int64_t rows = B * V * Ll;
  const float* inw = P + table_[agg_in_w_].offset;
  const float* inb = P + table_[agg_in_b_].offset;
  linear_forward(dev_, a.tok.data(), inw + Dt * D, wb ? wb + table_[agg_in_w_].offset + Dt * D : nullptr,
                 inb + Dt, a.kv.data(), rows, D, 2 * Dt, a.stage_a.data());
  dev_.gemv_bias(inw, P + table_[var_query_].offset, inb, a.qagg.data(), Dt, D);
  for (int64_t s = 0; s < B; ++s)
    dev_.attention_forward(AttentionKind::Flash, aggregation_attention(
        V, Ll, Ht, d, wb != nullptr, a.qagg.data(), a.kv.data() + s * V * Ll * 2 * Dt,
        a.agg_o.data() + s * Ll * Dt, a.agg_lse.data() + s * Ll * Ht, nullptr, nullptr, nullptr,
        a.attn_ws.data(), a.attn_ws.bytes()));
  linear_forward(dev_, a.agg_o.data(), P + table_[agg_out_w_].offset,
                 wb ? wb + table_[agg_out_w_].offset : nullptr,
                 shard_.tp_rank == 0 ? P + table_[agg_out_b_].offset : nullptr, a.xs[0].data(),
                 B * Ll, Dt, D, a.stage_a.data());
  tp_sum(a.xs[0].data(), B * Ll * D);
  add_pos_time(Ll);
}

void ClimaX::block_forward(const float* P, int i) {
  Act& a = *act_;
  const BlockParams& bp = blocks_[i];
  const int64_t N = n_local_, D = cfg_.embed_dim, T = B_ * N,
                d = cfg_.head_dim();  // N: this rank's tokens
  // Tensor parallel: qkv and fc1 are column-parallel (this rank's Ht heads of width Dt, its Ft
  // hidden units), proj and fc2 row-parallel: their partial outputs are summed over the group,
  // with the bias added once (by TP rank 0) before the sum.
  const int64_t Ht = tp_heads(), Dt = tp_width(), Ft = tp_hidden();
  const bool bias_here = shard_.tp_rank == 0;
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  auto WB = [&](int idx) { return wb ? wb + table_[idx].offset : nullptr; };
  auto p = [&](int idx) { return P + table_[idx].offset; };
  bf16* st = a.stage_a.data();
  const float* x = a.xs[i].data();
  dev_.layernorm_forward(x, p(bp.norm1_w), p(bp.norm1_b), a.lnbuf.data(),
                             a.ln1_mean[i].data(), a.ln1_rstd[i].data(), T, D, kLnEps);
  linear_forward(dev_, a.lnbuf.data(), p(bp.qkv_w), WB(bp.qkv_w), p(bp.qkv_b), a.qkv[i].data(), T, D,
                 3 * Dt, st);
  const auto at = block_attention(B_, N, Ht, d, wb != nullptr, a.qkv[i].data(), a.attn_o[i].data(),
                                  a.lse[i].data(), nullptr, nullptr, a.attn_ws.data(),
                                  a.attn_ws.bytes());
  if (sp_)  // the only exchange between the ranks of an SP group
    sp_->forward(at, a.sp_saved[i].data(), a.sp_saved[i].bytes());
  else if (cfg_.attention == AttentionKernel::Dense)
    dev_.attention_forward(AttentionKind::Dense, with_probs(at, a.probs[i].data()));
  else
    dev_.attention_forward(AttentionKind::Flash, at);
  linear_forward(dev_, a.attn_o[i].data(), p(bp.proj_w), WB(bp.proj_w),
                 bias_here ? p(bp.proj_b) : nullptr, a.x_mid[i].data(), T, Dt, D, st);
  tp_sum(a.x_mid[i].data(), T * D);
  // ClimaX (timm Block): x + drop_path(proj_drop(proj(...))); in place, the whole D after the sum
  drop(a.x_mid[i].data(), a.x_mid[i].data(), D, D, 0, block_site(i, kProjDrop), dropout_.rate,
       false);
  drop(a.x_mid[i].data(), a.x_mid[i].data(), D, D, 0, block_site(i, kAttnPath),
       drop_path_rate(i), true);
  dev_.add_inplace(a.x_mid[i].data(), x, T * D);
  dev_.layernorm_forward(a.x_mid[i].data(), p(bp.norm2_w), p(bp.norm2_b), a.lnbuf.data(),
                             a.ln2_mean[i].data(), a.ln2_rstd[i].data(), T, D, kLnEps);
  linear_forward(dev_, a.lnbuf.data(), p(bp.fc1_w), WB(bp.fc1_w), p(bp.fc1_b), a.fc1_pre[i].data(), T,
                 D, Ft, st);
  dev_.gelu_forward(a.fc1_pre[i].data(), a.hbuf.data(), T * Ft);
  // timm Mlp: fc2(drop(gelu(fc1))), then drop again; this rank's hidden columns [r Ft, +Ft)
  drop(a.hbuf.data(), a.hbuf.data(), Ft, cfg_.hidden(), shard_.tp_rank * Ft,
       block_site(i, kMlpDrop1), dropout_.rate, false);
  linear_forward(dev_, a.hbuf.data(), p(bp.fc2_w), WB(bp.fc2_w), bias_here ? p(bp.fc2_b) : nullptr,
                 a.xs[i + 1].data(), T, Ft, D, st);
  tp_sum(a.xs[i + 1].data(), T * D);
  drop(a.xs[i + 1].data(), a.xs[i + 1].data(), D, D, 0, block_site(i, kMlpDrop2), dropout_.rate,
       false);
  drop(a.xs[i + 1].data(), a.xs[i + 1].data(), D, D, 0, block_site(i, kMlpPath),
       drop_path_rate(i), true);
  dev_.add_inplace(a.xs[i + 1].data(), a.x_mid[i].data(), T * D);
}

void ClimaX::head_forward(const float* P) {
  Act& a = *act_;
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  const int64_t T = B_ * n_local_, D = cfg_.embed_dim, V = cfg_.V(), pp = cfg_.pp();
  const int64_t outw = agg ? V * pp : pp;
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  auto WB = [&](int idx) { return wb ? wb + table_[idx].offset : nullptr; };
  auto p = [&](int idx) { return P + table_[idx].offset; };
  dev_.layernorm_forward(a.xs[cfg_.depth].data(), p(norm_w_), p(norm_b_), a.lnf_out.data(),
                             a.lnf_mean.data(), a.lnf_rstd.data(), T, D, kLnEps);
  const float* cur = a.lnf_out.data();
  for (int64_t k = 0; k < cfg_.decoder_depth; ++k) {
    linear_forward(dev_, cur, p(head_w_[k]), WB(head_w_[k]), p(head_b_[k]), a.head_pre[k].data(), T, D,
                   D, a.stage_a.data());
    dev_.gelu_forward(a.head_pre[k].data(), a.head_act[k].data(), T * D);
    cur = a.head_act[k].data();
  }
  const int kl = static_cast<int>(cfg_.decoder_depth);
  linear_forward(dev_, cur, p(head_w_[kl]), WB(head_w_[kl]), p(head_b_[kl]), a.head_out.data(), T, D,
                 outw, a.stage_a.data());
  if (sp_) return;  // shard_loss reads head_out directly
  if (agg)
    dev_.unpatchify_channels_last(a.head_out.data(), a.img.data(), B_, V, cfg_.img_h,
                                      cfg_.img_w, cfg_.patch_size);
  else
    dev_.unpatchify_vmajor(a.head_out.data(), a.img.data(), B_, V, cfg_.img_h, cfg_.img_w,
                               cfg_.patch_size);
}

// ------------------------------------------------------------------------ backward
void ClimaX::backward(const float* P, float* G) {
  SEQVIT_CHECK(act_ && B_ > 0, "ClimaX::backward without a forward");
  const int head_unit = num_units() - 1;
  // leaves dL/dxs[depth] in act_->dx; a stage without the head has it there already
  // (stage_output_grad(), from the next stage)
  if (has_head()) {
    if (hooks_) hooks_->backward_begin(head_unit);
    head_backward(P, G);
    if (hooks_) hooks_->backward_end(head_unit);
  }
  for (int i = static_cast<int>(shard_.last_block) - 1; i >= shard_.first_block; --i) {
    if (hooks_) hooks_->backward_begin(1 + i);
    if (recompute_) block_forward(P, i);  // from the saved input xs[i] (rewrites xs[i+1])
    block_backward(P, G, i);
    if (hooks_) hooks_->backward_end(1 + i);
  }
  if (has_embed()) {  // else: act_->dx (stage_input_grad()) goes to the previous stage
    if (hooks_) hooks_->backward_begin(0);
    // pos_drop (see embed_forward): the embeddings' gradient is the masked dL/dxs[0]
    drop(act_->dx.data(), act_->dx.data(), cfg_.embed_dim, cfg_.embed_dim, 0, kPosDrop,
         dropout_.rate, false);
    embed_backward(P, G, act_->dx.data());
    if (hooks_) hooks_->backward_end(0);
  }
}

void ClimaX::head_backward(const float* P, float* G) {
  Act& a = *act_;
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  const int64_t T = B_ * n_local_, D = cfg_.embed_dim, V = cfg_.V(), Vo = cfg_.Vo(),
                pp = cfg_.pp(), HW = cfg_.img_h * cfg_.img_w;
  const int64_t outw = agg ? V * pp : pp;
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  auto WB = [&](int idx) { return wb ? wb + table_[idx].offset : nullptr; };
  auto p = [&](int idx) { return P + table_[idx].offset; };
  auto g = [&](int idx) { return G + table_[idx].offset; };
  // scatter dpred into the full-variable image gradient (variables not output get zero); under
  // SP, shard_loss already wrote it in head_out's layout
  const float* dhead = sp_ ? a.dpred.data() : a.dhead.data();
  if (!sp_) {
    dev_.scatter_outputs(a.dpred.data(), a.dimg.data(), out_index_.data(), B_, V, Vo, HW);
    if (agg)
      dev_.patchify_channels_last(a.dimg.data(), a.dhead.data(), B_, V, cfg_.img_h,
                                      cfg_.img_w, cfg_.patch_size);
    else
      dev_.patchify(a.dimg.data(), a.dhead.data(), B_, V, cfg_.img_h, cfg_.img_w,
                        cfg_.patch_size);
  }
  const int kl = static_cast<int>(cfg_.decoder_depth);
  float* dcur = a.dln.data();  // ping-pong between dln and d_o
  float* dnext = a.d_o.data();
  const float* in = kl > 0 ? a.head_act[kl - 1].data() : a.lnf_out.data();
  linear_backward(dev_, dhead, in, p(head_w_[kl]), WB(head_w_[kl]), dcur, g(head_w_[kl]),
                  g(head_b_[kl]), T, D, outw, false, a.stage_a.data(), a.stage_b.data());
  for (int k = kl - 1; k >= 0; --k) {
    dev_.gelu_backward(a.head_pre[k].data(), dcur, dcur, T * D);
    in = k > 0 ? a.head_act[k - 1].data() : a.lnf_out.data();
    linear_backward(dev_, dcur, in, p(head_w_[k]), WB(head_w_[k]), dnext, g(head_w_[k]), g(head_b_[k]),
                    T, D, D, false, a.stage_a.data(), a.stage_b.data());
    std::swap(dcur, dnext);
  }
  dev_.layernorm_backward(dcur, a.xs[cfg_.depth].data(), p(norm_w_), a.lnf_mean.data(),
                              a.lnf_rstd.data(), a.dx.data(), g(norm_w_), g(norm_b_), T, D,
                              false);
}

void ClimaX::block_backward(const float* P, float* G, int i) {
  Act& a = *act_;
  const BlockParams& bp = blocks_[i];
  const int64_t N = n_local_, D = cfg_.embed_dim, T = B_ * N,
                d = cfg_.head_dim();  // N: this rank's tokens
  // Tensor parallel (see block_forward): the input gradient of each column-parallel layer (qkv,
  // fc1) is this rank's part of dL/dLN(x); it is summed over the group before the LayerNorm
  // backward. Gradients of the replicated parameters come out the same on every TP rank.
  const int64_t Ht = tp_heads(), Dt = tp_width(), Ft = tp_hidden();
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  auto WB = [&](int idx) { return wb ? wb + table_[idx].offset : nullptr; };
  auto p = [&](int idx) { return P + table_[idx].offset; };
  auto g = [&](int idx) { return G + table_[idx].offset; };
  bf16* sa = a.stage_a.data();
  bf16* sb = a.stage_b.data();
  float* dx = a.dx.data();  // in: dL/d xs[i+1]; out: dL/d xs[i]
  // MLP: xs[i+1] = x_mid + fc2(gelu(fc1(LN2(x_mid))))
  // with dropout (see block_forward): the branch's gradient is the masked dx (in lnbuf, which
  // is free until the LayerNorm recomputation below), fc2's input the masked GELU output, and
  // the mask after the GELU applies to fc2's input gradient too (masks recomputed, not stored)
  const bool dropping = a.drop_step >= 0;
  dev_.gelu_forward(a.fc1_pre[i].data(), a.hbuf.data(), T * Ft);
  drop(a.hbuf.data(), a.hbuf.data(), Ft, cfg_.hidden(), shard_.tp_rank * Ft,
       block_site(i, kMlpDrop1), dropout_.rate, false);
  const float* dbranch = dx;
  if (dropping) {
    drop(dx, a.lnbuf.data(), D, D, 0, block_site(i, kMlpDrop2), dropout_.rate, false);
    drop(a.lnbuf.data(), a.lnbuf.data(), D, D, 0, block_site(i, kMlpPath), drop_path_rate(i),
         true);
    dbranch = a.lnbuf.data();
  }
  linear_backward(dev_, dbranch, a.hbuf.data(), p(bp.fc2_w), WB(bp.fc2_w), a.dh.data(),
                  g(bp.fc2_w), g(bp.fc2_b), T, Ft, D, false, sa, sb);
  drop(a.dh.data(), a.dh.data(), Ft, cfg_.hidden(), shard_.tp_rank * Ft,
       block_site(i, kMlpDrop1), dropout_.rate, false);
  dev_.gelu_backward(a.fc1_pre[i].data(), a.dh.data(), a.dh.data(), T * Ft);
  dev_.layernorm_forward(a.x_mid[i].data(), p(bp.norm2_w), p(bp.norm2_b), a.lnbuf.data(),
                             a.ln2_mean[i].data(), a.ln2_rstd[i].data(), T, D, kLnEps);
  linear_backward(dev_, a.dh.data(), a.lnbuf.data(), p(bp.fc1_w), WB(bp.fc1_w), a.dln.data(),
                  g(bp.fc1_w), g(bp.fc1_b), T, D, Ft, false, sa, sb);
  tp_sum(a.dln.data(), T * D);
  dev_.layernorm_backward(a.dln.data(), a.x_mid[i].data(), p(bp.norm2_w),
                              a.ln2_mean[i].data(), a.ln2_rstd[i].data(), dx, g(bp.norm2_w),
                              g(bp.norm2_b), T, D, true);
  // attention: x_mid = x + proj(attn(LN1(x)))
  dbranch = dx;
  if (dropping) {  // lnbuf is free again until LN1's recomputation
    drop(dx, a.lnbuf.data(), D, D, 0, block_site(i, kProjDrop), dropout_.rate, false);
    drop(a.lnbuf.data(), a.lnbuf.data(), D, D, 0, block_site(i, kAttnPath), drop_path_rate(i),
         true);
    dbranch = a.lnbuf.data();
  }
  linear_backward(dev_, dbranch, a.attn_o[i].data(), p(bp.proj_w), WB(bp.proj_w), a.d_o.data(),
                  g(bp.proj_w), g(bp.proj_b), T, Dt, D, false, sa, sb);
  float* dqkv = a.dqkv.data();
  const auto at = block_attention(B_, N, Ht, d, wb != nullptr, a.qkv[i].data(), a.attn_o[i].data(),
                                  a.lse[i].data(), a.d_o.data(), dqkv, a.attn_ws.data(),
                                  a.attn_ws.bytes());
  if (sp_)
    sp_->backward(at, a.sp_saved[i].data(), a.sp_saved[i].bytes());
  else if (cfg_.attention == AttentionKernel::Dense)
    dev_.attention_backward(AttentionKind::Dense, with_probs(at, a.probs[i].data()));
  else
    dev_.attention_backward(AttentionKind::Flash, at);
  dev_.layernorm_forward(a.xs[i].data(), p(bp.norm1_w), p(bp.norm1_b), a.lnbuf.data(),
                             a.ln1_mean[i].data(), a.ln1_rstd[i].data(), T, D, kLnEps);
  linear_backward(dev_, dqkv, a.lnbuf.data(), p(bp.qkv_w), WB(bp.qkv_w), a.dln.data(), g(bp.qkv_w),
                  g(bp.qkv_b), T, D, 3 * Dt, false, sa, sb);
  tp_sum(a.dln.data(), T * D);
  dev_.layernorm_backward(a.dln.data(), a.xs[i].data(), p(bp.norm1_w), a.ln1_mean[i].data(),
                              a.ln1_rstd[i].data(), dx, g(bp.norm1_w), g(bp.norm1_b), T, D, true);
}

void ClimaX::embed_backward(const float* P, float* G, const float* dx0) {
  Act& a = *act_;
  const bool agg = cfg_.tokenization == Tokenization::Aggregate;
  const int64_t B = B_, V = cfg_.V(), Lp = cfg_.Lp(), D = cfg_.embed_dim, pp = cfg_.pp(),
                d = cfg_.head_dim(), N = cfg_.N(), Nl = n_local_, n0 = n_first_;
  const int64_t Ll = agg ? Nl : Lp;
  const int64_t Ht = tp_heads(), Dt = tp_width();  // tensor parallel: this rank's heads
  const bf16* wb = precision_ == Precision::BF16 ? a.wb.data() : nullptr;
  auto p = [&](int idx) { return P + table_[idx].offset; };
  auto g = [&](int idx) { return G + table_[idx].offset; };
  // pos_embed, lead-time embedding: sums over the rows they were added to
  dev_.add_position_time_backward(dx0, a.tscaled.data(), g(pos_embed_), g(lt_w_), g(lt_b_), B,
                                  Nl, D, Lp, n0);
  const float* dtok = dx0;  // per_variable: the tokens' gradient is dx0 itself, [B,V,Lp,D]
  if (agg) {
    // Under TP (see embed_forward) in_proj's inputs, var_query and the tokens, receive partial
    // gradients from this rank's heads only: both are summed over the group.
    linear_backward(dev_, dx0, a.agg_o.data(), p(agg_out_w_), wb ? wb + table_[agg_out_w_].offset : nullptr,
                    a.dagg_o.data(), g(agg_out_w_), g(agg_out_b_), B * Ll, Dt, D, false,
                    a.stage_a.data(), a.stage_b.data());
    for (int64_t s = 0; s < B; ++s)
      dev_.attention_backward(AttentionKind::Flash, aggregation_attention(
          V, Ll, Ht, d, wb != nullptr, a.qagg.data(), a.kv.data() + s * V * Ll * 2 * Dt,
          a.agg_o.data() + s * Ll * Dt, a.agg_lse.data() + s * Ll * Ht,
          a.dagg_o.data() + s * Ll * Dt, a.dq_agg.data() + s * Ll * Dt,
          a.dkv.data() + s * V * Ll * 2 * Dt, a.attn_ws.data(), a.attn_ws.bytes()));
    // q = Wq var_query + bq is shared by every patch: its gradient summed over patches
    const float* inw = p(agg_in_w_);
    float* dinw = g(agg_in_w_);
    float* dinb = g(agg_in_b_);
    float* dvq = a.dvq.data();
    dev_.gemv_bias_backward(a.dq_agg.data(), B * Ll, inw, p(var_query_), a.dq_sum.data(), dinw,
                            dinb, dvq, Dt, D);
    tp_sum(dvq, D);
    dev_.add_inplace(g(var_query_), dvq, D);
    linear_backward(dev_, a.dkv.data(), a.tok.data(), inw + Dt * D,
                    wb ? wb + table_[agg_in_w_].offset + Dt * D : nullptr, a.dtok.data(),
                    dinw + Dt * D, dinb + Dt, B * V * Ll, D, 2 * Dt, false, a.stage_a.data(),
                    a.stage_b.data());
    tp_sum(a.dtok.data(), B * V * Ll * D);
    dtok = a.dtok.data();
  }
  // per-variable patch embeddings, conv biases and var_embed
  float* dve = g(var_embed_);
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t s = 0; s < B; ++s) {  // this rank's rows, as in embed_forward
      const int64_t lo = agg ? n0 : std::max(n0, v * Lp);
      const int64_t hi = agg ? n0 + Nl : std::min(n0 + Nl, (v + 1) * Lp);
      if (lo >= hi) continue;
      const float* dt = agg ? dtok + (s * V + v) * Ll * D : dtok + (s * Nl + lo - n0) * D;
      const float* x = a.patches.data() + (agg ? (s * V + v) * Lp + lo : s * N + lo) * pp;
      dev_.gemm_f32(Trans::T, Trans::N, D, pp, hi - lo, 1.f, dt, D, x, pp, 1.f, g(tok_w_[v]), pp);
      dev_.bias_backward(dt, g(tok_b_[v]), hi - lo, D);
      dev_.bias_backward(dt, dve + v * D, hi - lo, D);
    }
  }
}

}  // namespace seqvit::model
