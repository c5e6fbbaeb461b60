#include "backend/cuda/cuda_device.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/attention.h"
#include "backend/cuda/check.h"
#include "backend/cuda/ops.h"
#include "core/check.h"

namespace seqvit::backend::cuda {

namespace {

// Makes `ordinal` the current GPU of this thread, or says why it cannot be.
int activate(const std::string& name, int ordinal) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    seqvit::fail("device '{}': no CUDA GPU can be used: {} ({})", name, cudaGetErrorString(e),
         cudaGetErrorName(e));
  if (ordinal < 0 || ordinal >= count)
    seqvit::fail("device '{}': this machine has {} CUDA GPU{} (cuda:0{})", name, count,
         count == 1 ? "" : "s", count > 1 ? fmt::format(" .. cuda:{}", count - 1) : "");
  SEQVIT_CUDA_CHECK(cudaSetDevice(ordinal), "cudaSetDevice", "ordinal", ordinal);
  return ordinal;
}

constexpr size_t kPage = 4096;  // the parameter store's release granularity, as on the CPU

}  // namespace

// Parameters or gradients: one allocation; release() zeroes whole pages of the range (the memory
// stays committed, see cuda_device.h).
class CudaParameterStore final : public ParameterStore {
 public:
  CudaParameterStore(CudaDevice& dev, int64_t n)
      : dev_(dev), n_(n),
        data_(static_cast<float*>(dev.device_alloc(sizeof(float) * std::max<int64_t>(n, 1),
                                                    "parameter_store"))) {}
  ~CudaParameterStore() override { dev_.device_free(data_); }
  float* data() override { return data_; }
  int64_t size() const override { return n_; }
  void release(int64_t first, int64_t count) override {
    SEQVIT_CHECK(first >= 0 && count >= 0 && first + count <= n_,
                 "parameter store: release of [{}, {}) outside its {} floats", first,
                 first + count, n_);
    // whole pages inside the range, as the CPU store releases them
    const uintptr_t base = reinterpret_cast<uintptr_t>(data_);
    const uintptr_t lo = (base + sizeof(float) * first + kPage - 1) / kPage * kPage;
    const uintptr_t hi = (base + sizeof(float) * (first + count)) / kPage * kPage;
    if (hi > lo) dev_.zero(reinterpret_cast<void*>(lo), hi - lo);
  }
  size_t resident_bytes() const override { return sizeof(float) * static_cast<size_t>(n_); }

 private:
  CudaDevice& dev_;
  int64_t n_;
  float* data_;
};

CudaDevice::CudaDevice(const std::string& name, int ordinal)
    : name_(name), ordinal_(activate(name, ordinal)) {
  SEQVIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                    "cudaStreamCreateWithFlags", "ordinal", ordinal_);
  table_bytes_ = 64 << 10;
  table_ = device_alloc(table_bytes_, "host-table buffer");
  // fp32 products are exact fp32 unless the user asks for TF32 tensor cores (docs/cuda.md)
  if (const char* t = std::getenv("SEQVIT_CUDA_TF32"); t && std::string(t) == "1")
    blas_.set_tf32(true);
}

CudaDevice::~CudaDevice() {
  // nothing may throw here: errors of queued ops are lost with the device
  cudaStreamSynchronize(stream_);
  if (table_) cudaFree(table_);
  cudaStreamDestroy(stream_);
}

void* CudaDevice::device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const size_t n = std::max<size_t>(bytes, 1);
  const cudaError_t e = cudaMalloc(&p, n);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();  // clear the sticky-free error state of a failed allocation
    cudaMemGetInfo(&free_b, &total_b);
    seqvit::fail("{}: cannot allocate {:.3f} GiB for {} ({}; {:.2f} of {:.2f} GiB free)", name_,
         n / double(1 << 30), what, cudaGetErrorString(e), free_b / double(1 << 30),
         total_b / double(1 << 30));
  }
  SEQVIT_CUDA_CHECK(cudaMemsetAsync(p, 0, n, stream_), "allocate (zero fill)", "bytes",
                    static_cast<int64_t>(n));
  std::lock_guard<std::mutex> lock(mu_);
  live_[reinterpret_cast<uintptr_t>(p)] = n;
  live_bytes_ += n;
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  return p;
}

void CudaDevice::device_free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = live_.find(reinterpret_cast<uintptr_t>(p)); it != live_.end()) {
      live_bytes_ -= it->second;
      live_.erase(it);
    }
  }
  // queued ops may still use it: cudaFree waits for the device, but report their errors here
  synchronize();
  SEQVIT_CUDA_CHECK(cudaFree(p), "deallocate", "bytes", 0);
}

void* CudaDevice::allocate(size_t bytes) { return device_alloc(bytes, "an allocation"); }
void CudaDevice::deallocate(void* p) { device_free(p); }

std::unique_ptr<ParameterStore> CudaDevice::parameter_store(int64_t floats) {
  SEQVIT_CHECK(floats >= 0, "parameter_store: {} floats", floats);
  return std::make_unique<CudaParameterStore>(*this, floats);
}

size_t CudaDevice::peak_allocated_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_bytes_ + Blas::kWorkspaceBytes;
}

bool CudaDevice::owns(const void* p, size_t bytes) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.upper_bound(a);
  if (it == live_.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// From pageable host memory cudaMemcpyAsync returns once the source has been staged, so the
// caller may reuse it (the table's contract).
void CudaDevice::copy_to_device(void* dst, const void* host_src, size_t bytes) {
  if (!bytes) return;
  note("copy_to_device");
  SEQVIT_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_),
                    "copy_to_device", "bytes", static_cast<int64_t>(bytes));
}

void CudaDevice::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (!bytes) return;
  note("copy_to_host");
  SEQVIT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                    "copy_to_host", "bytes", static_cast<int64_t>(bytes));
  synchronize();
}

void CudaDevice::copy(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  note("copy");
  SEQVIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy",
                    "bytes", static_cast<int64_t>(bytes));
}

void CudaDevice::zero(void* dst, size_t bytes) {
  if (!bytes) return;
  note("zero");
  SEQVIT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_), "zero", "bytes",
                    static_cast<int64_t>(bytes));
}

void CudaDevice::synchronize() {
  const cudaError_t e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess)
    seqvit::fail("{}: an op on the device's stream failed: {} ({}); the last op enqueued was {}", name_,
         cudaGetErrorString(e), cudaGetErrorName(e), last_op_);
}

const void* CudaDevice::upload_table(const void* host, size_t bytes, const char* op) {
  if (bytes > table_bytes_) {  // grows once, to the largest table (before the step loop settles)
    synchronize();
    const size_t grown = std::max(bytes, 2 * table_bytes_);
    device_free(table_);
    table_ = nullptr;
    table_ = device_alloc(grown, "host-table buffer");
    table_bytes_ = grown;
  }
  // stream order: ops enqueued earlier read the previous table before this copy overwrites it
  SEQVIT_CUDA_CHECK(cudaMemcpyAsync(table_, host, bytes, cudaMemcpyHostToDevice, stream_), op,
                    "table_bytes", static_cast<int64_t>(bytes));
  return table_;
}

// ------------------------------------------------------------------ matrix products

void CudaDevice::gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  note("gemm_f32");
  blas_.gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream_);
}

void CudaDevice::gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                           const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta,
                           float* C, int64_t ldc) {
  note("gemm_bf16");
  blas_.gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream_);
}

// ------------------------------------------------------------------ elementwise and norms
// Each forwards to its kernel in ops.h on this device's stream.

void CudaDevice::convert_to_bf16(const float* x, bf16* y, int64_t n) {
  note("convert_to_bf16");
  cuda::convert_to_bf16(x, y, n, stream_);
}
void CudaDevice::broadcast_rows(float* y, const float* b, int64_t T, int64_t F) {
  note("broadcast_rows");
  cuda::broadcast_rows(y, b, T, F, stream_);
}
void CudaDevice::bias_backward(const float* dy, float* db, int64_t T, int64_t F) {
  note("bias_backward");
  cuda::bias_backward(dy, db, T, F, stream_);
}
void CudaDevice::add_inplace(float* y, const float* x, int64_t n) {
  note("add_inplace");
  cuda::add_inplace(y, x, n, stream_);
}
void CudaDevice::add(const float* a, const float* b, float* y, int64_t n) {
  note("add");
  cuda::add(a, b, y, n, stream_);
}
void CudaDevice::scale_inplace(float* y, float s, int64_t n) {
  note("scale_inplace");
  cuda::scale_inplace(y, s, n, stream_);
}
void CudaDevice::sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges,
                             double* out) {
  note("sum_squares");
  const auto* dranges = static_cast<const int64_t*>(
      upload_table(ranges, sizeof(int64_t) * 2 * static_cast<size_t>(num_ranges), "sum_squares"));
  cuda::sum_squares(x, dranges, num_ranges, out, stream_);
}
void CudaDevice::gelu_forward(const float* x, float* y, int64_t n) {
  note("gelu_forward");
  cuda::gelu_forward(x, y, n, stream_);
}
void CudaDevice::gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  note("gelu_backward");
  cuda::gelu_backward(x, dy, dx, n, stream_);
}
void CudaDevice::layernorm_forward(const float* x, const float* gamma, const float* beta,
                                   float* y, float* mean, float* rstd, int64_t T, int64_t D,
                                   float eps) {
  note("layernorm_forward");
  cuda::layernorm_forward(x, gamma, beta, y, mean, rstd, T, D, eps, stream_);
}
void CudaDevice::layernorm_backward(const float* dy, const float* x, const float* gamma,
                                    const float* mean, const float* rstd, float* dx,
                                    float* dgamma, float* dbeta, int64_t T, int64_t D,
                                    bool accumulate_dx) {
  note("layernorm_backward");
  cuda::layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, T, D, accumulate_dx,
                           stream_);
}
void CudaDevice::softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse) {
  note("softmax_forward");
  cuda::softmax_forward(x, y, T, F, lse, stream_);
}
void CudaDevice::softmax_backward(const float* y, const float* dy, float* dx, int64_t T,
                                  int64_t F) {
  note("softmax_backward");
  cuda::softmax_backward(y, dy, dx, T, F, stream_);
}

// ------------------------------------------------------------------ patches

void CudaDevice::patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H,
                          int64_t W, int64_t p) {
  note("patchify");
  cuda::patchify(x, patches, B, V, H, W, p, stream_);
}
void CudaDevice::unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V,
                                   int64_t H, int64_t W, int64_t p) {
  note("unpatchify_vmajor");
  cuda::unpatchify_vmajor(patches, x, B, V, H, W, p, stream_);
}
void CudaDevice::unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V,
                                          int64_t H, int64_t W, int64_t p) {
  note("unpatchify_channels_last");
  cuda::unpatchify_channels_last(tok, img, B, V, H, W, p, stream_);
}
void CudaDevice::patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V,
                                        int64_t H, int64_t W, int64_t p) {
  note("patchify_channels_last");
  cuda::patchify_channels_last(img, tok, B, V, H, W, p, stream_);
}

// ------------------------------------------------------------------ attention

size_t CudaDevice::attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a) {
  return cuda::attention_workspace_bytes(kind, a);
}
void CudaDevice::attention_forward(AttentionKind kind, const AttentionArgs& a) {
  note("attention_forward");
  cuda::attention_forward(kind, a, stream_);
}
void CudaDevice::attention_backward(AttentionKind kind, const AttentionArgs& a) {
  note("attention_backward");
  cuda::attention_backward(kind, a, stream_);
}
void CudaDevice::merge_by_lse(const LseMerge& m) {
  note("merge_by_lse");
  cuda::merge_by_lse(m, stream_);
}
void CudaDevice::block_copy(const BlockCopy& c) {
  note("block_copy");
  cuda::block_copy(c, stream_);
}

// ------------------------------------------------------------------ the model's fused ops

void CudaDevice::latitude_weights(const float* lat_deg, int64_t H, float* w) {
  note("latitude_weights");
  cuda::latitude_weights(lat_deg, H, w, stream_);
}
void CudaDevice::weighted_mse(const WeightedMseArgs& a) {
  note("weighted_mse");
  WeightedMseArgs d = a;
  d.out_index = static_cast<const int64_t*>(
      upload_table(a.out_index, sizeof(int64_t) * static_cast<size_t>(a.Vo), "weighted_mse"));
  cuda::weighted_mse(d, stream_);
}
void CudaDevice::shard_loss(const ShardLossArgs& a) {
  note("shard_loss");
  ShardLossArgs d = a;
  d.out_slot = static_cast<const int64_t*>(
      upload_table(a.out_slot, sizeof(int64_t) * static_cast<size_t>(a.V), "shard_loss"));
  cuda::shard_loss(d, stream_);
}
void CudaDevice::scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index,
                                 int64_t B, int64_t V, int64_t Vo, int64_t HW) {
  note("scatter_outputs");
  const auto* dindex = static_cast<const int64_t*>(
      upload_table(out_index, sizeof(int64_t) * static_cast<size_t>(Vo), "scatter_outputs"));
  cuda::scatter_outputs(dpred, dimg, dindex, B, V, Vo, HW, stream_);
}
void CudaDevice::add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                                   const float* lead_hours, float* tscaled, int64_t B, int64_t Nl,
                                   int64_t D, int64_t Lp, int64_t n0) {
  note("add_position_time");
  cuda::add_position_time(x, pos, ltw, ltb, lead_hours, tscaled, B, Nl, D, Lp, n0, stream_);
}
void CudaDevice::add_position_time_backward(const float* dx, const float* tscaled, float* dpos,
                                            float* dltw, float* dltb, int64_t B, int64_t Nl,
                                            int64_t D, int64_t Lp, int64_t n0) {
  note("add_position_time_backward");
  cuda::add_position_time_backward(dx, tscaled, dpos, dltw, dltb, B, Nl, D, Lp, n0, stream_);
}
void CudaDevice::gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R,
                           int64_t C) {
  note("gemv_bias");
  cuda::gemv_bias(Wt, x, b, q, R, C, stream_);
}
void CudaDevice::gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt,
                                    const float* x, double* dq_sum, float* dW, float* db,
                                    float* dx, int64_t R, int64_t C) {
  note("gemv_bias_backward");
  cuda::gemv_bias_backward(dq_rows, n, Wt, x, dq_sum, dW, db, dx, R, C, stream_);
}

// ------------------------------------------------------------------ optimizer

void CudaDevice::dropout(const DropoutArgs& a) {
  note("dropout");
  cuda::dropout(a, stream_);
}

void CudaDevice::adamw(const AdamArgs& a) {
  note("adamw");
  AdamArgs d = a;
  d.segments = static_cast<const AdamSegment*>(upload_table(
      a.segments, sizeof(AdamSegment) * static_cast<size_t>(a.num_segments), "adamw"));
  cuda::adamw(d, stream_);
}

}  // namespace seqvit::backend::cuda
