// The backend table (docs/architecture.md "The backend table"): everything the model, parallel
// and training layers do to tensor data goes through one of these calls, so that the same code
// runs on the CPU, on the guarded CPU backend of the tests, and on a GPU.
//
// Memory. Every pointer passed to an op is DEVICE memory of this device (from allocate(),
// an Arena, or a ParameterStore), or an element offset into it: pointer arithmetic on device
// pointers is allowed, dereferencing them on the host is not. The host reads and writes device
// memory only through copy_to_device / copy_to_host. Small configuration arrays (index lists a
// fused op walks, such as the output-variable slots of the loss) are HOST spans, marked so.
//
// Order. A device has one in-order stream: ops run in the order they are called, each after the
// previous one finished. An op may return before it has run (the guarded backend runs them on a
// worker thread); synchronize() waits for everything enqueued. copy_to_device may return at
// once (its host source is copied before it returns); copy_to_host and every function that
// returns a value to the host synchronise first. A collective or any other host access to the
// buffers of earlier ops must call synchronize() first (parallel/comm.h does).
//
// Conventions (as the CPU kernels, backend/cpu): row-major, fp32 storage; T rows, D/F widths.
// Backward ops ACCUMULATE (+=) into parameter gradients and overwrite input gradients unless an
// `accumulate` flag says otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/attention_args.h"
#include "core/bf16.h"

namespace seqvit::backend {

enum class Trans { N, T };
enum class AttentionKind { Flash, Dense, Naive };  // Naive: the O(N^2) oracle, for tests

// Parameters and gradients: one flat fp32 range whose pieces can be handed back and recommitted
// (ZeRO-2/3 keep only the unit in use). A released range reads as zero when next touched.
class ParameterStore {
 public:
  virtual ~ParameterStore() = default;
  virtual float* data() = 0;  // device memory, size() floats, zero at creation
  virtual int64_t size() const = 0;
  // Hands back the whole pages inside [first, first + count) (pages shared with elements
  // outside the range are kept); they read as zero afterwards.
  virtual void release(int64_t first, int64_t count) = 0;
  virtual size_t resident_bytes() const = 0;  // memory now committed
};

// The arguments of the fused latitude-weighted MSE (the whole image, one process). Shapes:
// img [B, V, H, W] (every variable), y [B, Vo, H, W], wlat [H]; out_index (HOST, Vo entries):
// the variable of each output. Writes loss_out[0] (double) = sum w_i (img - y)^2 / count,
// dpred [B, Vo, H, W] = 2 w_i (img - y) / count, and pred (optional) [B, Vo, H, W] = img's
// output variables.
struct WeightedMseArgs {
  const float* img = nullptr;
  const float* y = nullptr;
  const float* wlat = nullptr;
  const int64_t* out_index = nullptr;  // host
  int64_t B = 0, V = 0, Vo = 0, H = 0, W = 0;
  double count = 0;  // normaliser: (loss batch) * Vo * H * W
  double* loss_out = nullptr;
  float* dpred = nullptr;
  float* pred = nullptr;
};

// The loss of one sequence-parallel shard read straight from the head output head_out [B, Nl,
// outw] of tokens [n0, n0 + Nl): aggregate tokens are patches (outw = pp V, columns (p_row, p_col,
// v)); per_variable tokens are (variable, patch) (outw = pp). out_slot (HOST, V entries): each
// variable's output slot or -1. Writes loss_out[0], dhead [B, Nl, outw] (zero for variables that
// are not outputs) and pred (optional) at the shard's pixels of [B, Vo, H, W].
struct ShardLossArgs {
  const float* head_out = nullptr;
  const float* y = nullptr;
  const float* wlat = nullptr;
  const int64_t* out_slot = nullptr;  // host
  bool aggregate = false;
  int64_t B = 0, V = 0, Vo = 0, H = 0, W = 0, p = 0, Nl = 0, n0 = 0;
  double count = 0;
  double* loss_out = nullptr;
  float* dhead = nullptr;
  float* pred = nullptr;
};

// One tensor of a multi-tensor AdamW: elements [first, first + count) of p, g, m, v (m and v
// indexed from the state's own origin: m[k] belongs to p[first + k - state_first]).
struct AdamSegment {
  int64_t first = 0, count = 0;
  bool decay = true;
};
struct AdamArgs {
  float* p = nullptr;        // parameters, indexed by AdamSegment::first
  float* g = nullptr;        // gradients, same indexing (scaled in place by grad_scale)
  float* m = nullptr;        // moments, m[k - state_first]
  float* v = nullptr;
  int64_t state_first = 0;
  const AdamSegment* segments = nullptr;  // host
  int64_t num_segments = 0;
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  int64_t step = 0;          // 1-based
  float grad_scale = 1.f;    // clipping: g *= grad_scale before the update (1: untouched)
};

// Dropout and drop-path (docs/model.md "Dropout"): y = x * keep / (1 - p), elementwise over
// x[B, Nl, C] (y may be x). The keep decision is a counter-based hash, so any backend draws the
// same mask and a backward recomputes it instead of storing it:
//   key = mix(mix(mix(seed) ^ step) ^ site),  u = mix(key ^ id),  keep = (u >> 40) >= thr,
//   thr = floor(p * 2^24),  mix(z) = splitmix64's finaliser of z + 0x9e3779b97f4a7c15,
// with id = ((s0 + s) * N + n0 + j) * Ctot + c0 + c for element (s, j, c) (the element's place
// in the single-process tensor [B_global, N, Ctot]: the mask does not depend on the layout), or
// id = s0 + s with per_sample (drop-path: one draw per sample). Dropout is linear, so its
// backward is the same call on dy.
struct DropoutArgs {
  const float* x = nullptr;
  float* y = nullptr;
  int64_t B = 0, Nl = 0, C = 0;
  int64_t s0 = 0, N = 0, n0 = 0, Ctot = 0, c0 = 0;
  bool per_sample = false;
  float p = 0.f;  // drop probability, [0, 1)
  uint64_t seed = 0, step = 0, site = 0;
};
// The keep mask's hash (DropoutArgs), for the backends and the tests; constexpr, so the CUDA
// kernels call the same functions (nvcc --expt-relaxed-constexpr).
constexpr uint64_t dropout_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
constexpr uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t site) {
  return dropout_mix(dropout_mix(dropout_mix(seed) ^ step) ^ site);
}
constexpr uint64_t dropout_threshold(float p) {
  return static_cast<uint64_t>(static_cast<double>(p) * 16777216.0);
}
constexpr bool dropout_keep(uint64_t key, uint64_t id, uint64_t thr) {
  return (dropout_mix(key ^ id) >> 40) >= thr;
}

// (o, lse) <- the attention over the union of two key ranges, for the rows (b, h, t) of
// [b0, b0 + nb) x [h0, h0 + nh) x [i0, i0 + ni): lse' = log(e^lse + e^lse_in),
// o' = e^(lse - lse') o + e^(lse_in - lse') o_in. o is strided ([b][t][h][d] by its strides);
// o_in is contiguous [B][Nl][Hh][d]; lse and lse_in are [B][Hh][Nl].
struct LseMerge {
  StridedTensor o;
  float* lse = nullptr;
  const float* o_in = nullptr;
  const float* lse_in = nullptr;
  int64_t Hh = 0, Nl = 0, d = 0;
  int64_t b0 = 0, nb = 0, h0 = 0, nh = 0, i0 = 0, ni = 0;
};

// A 3-D strided block copy of contiguous runs: for every (i, j, k) < (n0, n1, n2), run floats
// from src + i s0 + j s1 + k s2 to dst + i d0 + j d1 + k d2 (element strides). accumulate: +=.
// src == nullptr: the runs of dst are zero-filled. What the sequence-parallel operators pack
// and unpack with.
struct BlockCopy {
  float* dst = nullptr;
  const float* src = nullptr;
  int64_t n0 = 1, n1 = 1, n2 = 1, run = 0;
  int64_t d0 = 0, d1 = 0, d2 = 0;
  int64_t s0 = 0, s1 = 0, s2 = 0;
  bool accumulate = false;
};

class Device {
 public:
  virtual ~Device() = default;

  virtual std::string name() const = 0;  // as --device spells it: "cpu", "guarded"
  // Whether the host may dereference device pointers (the plain CPU backend). Code above the
  // backend never relies on it for correctness; it only lets the MPI transport skip staging.
  virtual bool host_accessible() const = 0;
  // The parallelism inside one op (CPU threads), which some workspace sizes depend on.
  virtual int threads() const = 0;

  // ------------------------------------------------------------------ memory
  // Zero-filled device memory of `bytes` (64-byte aligned); never nullptr (throws).
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p) = 0;
  virtual std::unique_ptr<ParameterStore> parameter_store(int64_t floats) = 0;
  virtual void copy_to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Whether [p, p + bytes) lies in one allocation of this device (checks and tests).
  virtual bool owns(const void* p, size_t bytes) const = 0;
  // The high-water mark of device memory this device has allocated (arenas, parameter stores,
  // its own workspaces), in bytes; 0 where the device does not count it (the CPU backends,
  // whose memory is the process's: benchmarks read the peak RSS instead).
  virtual size_t peak_allocated_bytes() const { return 0; }

  // ------------------------------------------------------------------ matrix products
  // C[M,N] = alpha op(A) op(B) + beta C, row-major with leading dimensions (elements).
  virtual void gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc) = 0;
  // bf16 inputs, fp32 accumulation and output.
  virtual void gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta,
                         float* C, int64_t ldc) = 0;

  // ------------------------------------------------------------------ elementwise
  virtual void convert_to_bf16(const float* x, bf16* y, int64_t n) = 0;
  virtual void broadcast_rows(float* y, const float* b, int64_t T, int64_t F) = 0;
  virtual void bias_backward(const float* dy, float* db, int64_t T, int64_t F) = 0;  // db +=
  virtual void add_inplace(float* y, const float* x, int64_t n) = 0;
  virtual void add(const float* a, const float* b, float* y, int64_t n) = 0;
  virtual void scale_inplace(float* y, float s, int64_t n) = 0;
  // out[0] (device double) = sum over the ranges of x[i]^2, summed in double, in range order.
  // ranges: HOST pairs (first, count) into x.
  virtual void sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges,
                           double* out) = 0;
  virtual void gelu_forward(const float* x, float* y, int64_t n) = 0;
  virtual void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) = 0;
  virtual void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                                 float* mean, float* rstd, int64_t T, int64_t D, float eps) = 0;
  virtual void layernorm_backward(const float* dy, const float* x, const float* gamma,
                                  const float* mean, const float* rstd, float* dx, float* dgamma,
                                  float* dbeta, int64_t T, int64_t D, bool accumulate_dx) = 0;
  virtual void softmax_forward(const float* x, float* y, int64_t T, int64_t F,
                               float* lse = nullptr) = 0;
  virtual void softmax_backward(const float* y, const float* dy, float* dx, int64_t T,
                                int64_t F) = 0;

  // ------------------------------------------------------------------ patches
  // As the CPU kernels (backend/cpu/ops.h): x[B,V,H,W] <-> patches[B,V,Lp,pp] (variable-major)
  // and img[B,V,H,W] <-> tok[B,Lp,pp V] (ClimaX's head layout).
  virtual void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H,
                        int64_t W, int64_t p) = 0;
  virtual void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                                 int64_t W, int64_t p) = 0;
  virtual void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V,
                                        int64_t H, int64_t W, int64_t p) = 0;
  virtual void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V,
                                      int64_t H, int64_t W, int64_t p) = 0;

  // ------------------------------------------------------------------ attention
  virtual size_t attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a) = 0;
  virtual void attention_forward(AttentionKind kind, const AttentionArgs& a) = 0;
  virtual void attention_backward(AttentionKind kind, const AttentionArgs& a) = 0;
  // Merges a partial attention result over another key range into (o, lse), exactly.
  virtual void merge_by_lse(const LseMerge& m) = 0;
  virtual void block_copy(const BlockCopy& c) = 0;

  // ------------------------------------------------------------------ the model's fused ops
  // w[H] = cos(lat) / mean cos(lat), lat[H] in degrees (an error for a non-positive mean).
  virtual void latitude_weights(const float* lat_deg, int64_t H, float* w) = 0;
  virtual void weighted_mse(const WeightedMseArgs& a) = 0;
  virtual void shard_loss(const ShardLossArgs& a) = 0;
  // dimg[B, V, H W] = 0 except the output variables: dimg[s, out_index[o]] = dpred[s, o].
  virtual void scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index,
                               int64_t B, int64_t V, int64_t Vo, int64_t HW) = 0;
  // Adds the position and lead-time embeddings to x[B, Nl, D] (tokens n0 + j, position
  // (n0 + j) mod Lp): x += pos[l] + ltw t_s + ltb with t_s = lead_hours[s] / 100, written to
  // tscaled[B] for the backward.
  virtual void add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                                 const float* lead_hours, float* tscaled, int64_t B, int64_t Nl,
                                 int64_t D, int64_t Lp, int64_t n0) = 0;
  // Its backward from dx[B, Nl, D]: dpos[Lp, D] +=, dltw[D] +=, dltb[D] += (sums in double).
  virtual void add_position_time_backward(const float* dx, const float* tscaled, float* dpos,
                                          float* dltw, float* dltb, int64_t B, int64_t Nl,
                                          int64_t D, int64_t Lp, int64_t n0) = 0;
  // The aggregation query q[R] = W[R, C] x[C] + b[R], accumulated in double.
  virtual void gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R,
                         int64_t C) = 0;
  // Its backward with dq summed over the rows of dq_rows[n, R] (in double, into dq_sum[R]):
  // db[R] += dq_sum, dW[R, C] += dq_sum x^T, dx[C] = W^T dq_sum (overwritten).
  virtual void gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt,
                                  const float* x, double* dq_sum, float* dW, float* db, float* dx,
                                  int64_t R, int64_t C) = 0;

  // Dropout / drop-path with a hashed mask (DropoutArgs); forward and backward alike.
  virtual void dropout(const DropoutArgs& a) = 0;

  // ------------------------------------------------------------------ optimizer
  virtual void adamw(const AdamArgs& a) = 0;
};

// The devices this build has, by the name --device takes.
std::vector<std::string> device_names();
// A new device by name ("cpu", "guarded", and where the build has the CUDA plugin "cuda" or
// "cuda:N"); an unknown name is an error listing device_names(); a known device that this
// machine cannot run (no plugin, no driver, no GPU) is an error saying why.
std::unique_ptr<Device> make_device(const std::string& name);
// Whether make_device(name) would succeed here, and if not why (for tests that need a GPU).
bool device_available(const std::string& name, std::string* why);
// Attention scratch of `kind` on a device of that name with `threads` threads, for planning a
// machine that is not this one (seqvit plan); a Device answers for itself.
size_t attention_workspace_bytes(const std::string& device, AttentionKind kind,
                                 const AttentionArgs& a, int threads);
// The process's CPU device: the default of every layer that is not given one.
Device& cpu();

// Device memory owned by a Device, freed on destruction. Movable, not copyable.
class Allocation {
 public:
  Allocation() = default;
  Allocation(Device& dev, size_t bytes) : dev_(&dev), ptr_(bytes ? dev.allocate(bytes) : nullptr),
                                          bytes_(bytes) {}
  ~Allocation() { reset(); }
  Allocation(Allocation&& o) noexcept { *this = std::move(o); }
  Allocation& operator=(Allocation&& o) noexcept {
    if (this != &o) {
      reset();
      dev_ = o.dev_;
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  void reset() {
    if (ptr_) dev_->deallocate(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  Device* dev_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A typed view of device memory: n elements at ptr (carved from an Arena by its owner).
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  int64_t n = 0;
  T* data() const { return ptr; }
  int64_t size() const { return n; }
  size_t bytes() const { return static_cast<size_t>(n) * sizeof(T); }
};

// One allocation carved into arrays, planned before use: request() records each array, then
// commit() allocates the sum (64-byte aligned pieces) once and points every array into it. The
// arrays must not move between request() and commit().
class Arena {
 public:
  template <typename T>
  void request(DeviceArray<T>& a, int64_t n) {
    a.ptr = nullptr;
    a.n = n;
    pending_.push_back({reinterpret_cast<void**>(&a.ptr), static_cast<size_t>(n) * sizeof(T)});
  }
  size_t pending_bytes() const;
  void commit(Device& dev);
  size_t bytes() const { return mem_.bytes(); }

 private:
  struct Pending {
    void** slot;
    size_t bytes;
  };
  std::vector<Pending> pending_;
  Allocation mem_;
};

}  // namespace seqvit::backend
