// The CUDA implementation of the backend table (docs/cuda.md): one GPU, one in-order CUDA stream
// (non-blocking) on which every op and copy of this device is enqueued; the host waits only in
// synchronize(), copy_to_host and deallocation. Matrix products go through cuBLASLt (blas.h),
// attention through own flash-attention kernels (attention.h), everything else through own
// kernels (ops.h).
//
// Memory: cudaMalloc per allocation (an Arena asks for one block per owner before the first
// step), zero-filled on the stream. Parameter stores are one allocation each; release() zeroes
// the released pages but keeps them (the CPU backend hands them back to the OS): ZeRO-2/3 give
// the same results on a GPU without their memory saving yet (docs/cuda.md "Limits").
//
// Host tables (the index lists some fused ops take as host spans) are copied into a device
// buffer of the device's own, in stream order, before the op that reads them.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "backend/cuda/blas.h"
#include "backend/device.h"

namespace seqvit::backend::cuda {

class CudaDevice final : public Device {
 public:
  // `name` as --device spelled it ("cuda" or "cuda:N"); ordinal N (0 for "cuda").
  CudaDevice(const std::string& name, int ordinal);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  std::string name() const override { return name_; }
  bool host_accessible() const override { return false; }
  int threads() const override { return 1; }
  cudaStream_t stream() const { return stream_; }
  int ordinal() const { return ordinal_; }

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  std::unique_ptr<ParameterStore> parameter_store(int64_t floats) override;
  void copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void synchronize() override;
  bool owns(const void* p, size_t bytes) const override;
  size_t peak_allocated_bytes() const override;

  void gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc) override;
  void gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
                 int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) override;

  void convert_to_bf16(const float* x, bf16* y, int64_t n) override;
  void broadcast_rows(float* y, const float* b, int64_t T, int64_t F) override;
  void bias_backward(const float* dy, float* db, int64_t T, int64_t F) override;
  void add_inplace(float* y, const float* x, int64_t n) override;
  void add(const float* a, const float* b, float* y, int64_t n) override;
  void scale_inplace(float* y, float s, int64_t n) override;
  void sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges,
                   double* out) override;
  void gelu_forward(const float* x, float* y, int64_t n) override;
  void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) override;
  void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                         float* mean, float* rstd, int64_t T, int64_t D, float eps) override;
  void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, float* dx, float* dgamma, float* dbeta, int64_t T,
                          int64_t D, bool accumulate_dx) override;
  void softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse) override;
  void softmax_backward(const float* y, const float* dy, float* dx, int64_t T,
                        int64_t F) override;

  void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H, int64_t W,
                int64_t p) override;
  void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                         int64_t W, int64_t p) override;
  void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V, int64_t H,
                                int64_t W, int64_t p) override;
  void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V, int64_t H,
                              int64_t W, int64_t p) override;

  size_t attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a) override;
  void attention_forward(AttentionKind kind, const AttentionArgs& a) override;
  void attention_backward(AttentionKind kind, const AttentionArgs& a) override;
  void merge_by_lse(const LseMerge& m) override;
  void block_copy(const BlockCopy& c) override;

  void latitude_weights(const float* lat_deg, int64_t H, float* w) override;
  void weighted_mse(const WeightedMseArgs& a) override;
  void shard_loss(const ShardLossArgs& a) override;
  void scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index, int64_t B,
                       int64_t V, int64_t Vo, int64_t HW) override;
  void add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                         const float* lead_hours, float* tscaled, int64_t B, int64_t Nl,
                         int64_t D, int64_t Lp, int64_t n0) override;
  void add_position_time_backward(const float* dx, const float* tscaled, float* dpos,
                                  float* dltw, float* dltb, int64_t B, int64_t Nl, int64_t D,
                                  int64_t Lp, int64_t n0) override;
  void gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R,
                 int64_t C) override;
  void gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt, const float* x,
                          double* dq_sum, float* dW, float* db, float* dx, int64_t R,
                          int64_t C) override;
  void dropout(const DropoutArgs& a) override;
  void adamw(const AdamArgs& a) override;

 private:
  friend class CudaParameterStore;
  // A device copy of a host table of `bytes`, valid for ops enqueued before the next call.
  const void* upload_table(const void* host, size_t bytes, const char* op);
  void* device_alloc(size_t bytes, const char* what);  // cudaMalloc + registration
  void device_free(void* p);
  void note(const char* op) { last_op_ = op; }

  std::string name_;
  int ordinal_ = 0;
  cudaStream_t stream_ = nullptr;
  Blas blas_;
  void* table_ = nullptr;  // device buffer for host tables
  size_t table_bytes_ = 0;
  mutable std::mutex mu_;
  std::map<uintptr_t, size_t> live_;  // device allocations by base address
  size_t live_bytes_ = 0, peak_bytes_ = 0;
  const char* last_op_ = "(none)";
};

}  // namespace seqvit::backend::cuda
