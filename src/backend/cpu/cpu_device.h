// The CPU implementation of the backend table: device memory is host memory, every op runs
// synchronously on the calling thread with OpenMP inside, through the CPU kernels (kernels/:
// oneDNN GEMMs, own AVX-512 kernels) and the fused ops of fused.cpp.
//
// Guarded (backend/guarded) derives from it: the same kernels on memory the host cannot touch,
// reached through the translate() hook that every op calls on every pointer it is given.
#pragma once

#include <functional>
#include <utility>

#include "backend/device.h"

namespace seqvit::backend {

class CpuDevice : public Device {
 public:
  std::string name() const override { return "cpu"; }
  bool host_accessible() const override { return true; }
  int threads() const override;

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  std::unique_ptr<ParameterStore> parameter_store(int64_t floats) override;
  void copy_to_device(void* dst, const void* host_src, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void synchronize() override {}
  bool owns(const void* p, size_t bytes) const override { return true; }

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

 protected:
  // Runs an op: at once here; a device that sets async_ (guarded) gets it in enqueue() to run
  // later on its stream, in order. The closure holds the op's arguments by value (and the
  // pointers of host spans, which their owners keep alive as the table's contract says).
  template <typename F>
  void exec(F&& f) {
    if (async_)
      enqueue(std::function<void()>(std::forward<F>(f)));
    else
      f();
  }
  virtual void enqueue(std::function<void()> op) { op(); }
  bool async_ = false;

  // Where the kernels read and write the `bytes` at device pointer p (the identity here);
  // `op` names the call for the guarded backend's errors. nullptr stays nullptr.
  virtual void* translate(const void* p, size_t bytes, const char* op) const {
    return const_cast<void*>(p);
  }
  template <typename T>
  T* tr(const T* p, int64_t n, const char* op) const {
    return static_cast<T*>(translate(p, static_cast<size_t>(n) * sizeof(T), op));
  }
  StridedTensor tr(const StridedTensor& t, int64_t extent, const char* op) const;
  AttentionArgs translate_attention(const AttentionArgs& a, bool backward, const char* op);
};

}  // namespace seqvit::backend
