// Matrix products of the CUDA backend on cuBLASLt (docs/cuda.md "Matrix products").
//
// Semantics are exactly Device::gemm_* (backend/device.h): row-major C[M,N] = alpha op(A) op(B)
// + beta C with leading dimensions in elements. cuBLASLt is column-major, so a row-major matrix
// X with leading dimension ld is the column-major X^T with the same ld, and the product is
// computed as C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B (its op = tb), its "B" our A
// (op = ta), m = N, n = M, k = K.
//
// Precision: gemm_f32 computes in exact fp32 (CUBLAS_COMPUTE_32F) unless set_tf32(true) allows
// TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); gemm_bf16 takes bf16 A and B, accumulates
// in fp32 and reads/writes fp32 C.
//
// Steady state: the descriptors, layouts and the algorithm chosen by cuBLASLt's heuristic are
// cached per (dtype, transposes, M, N, K, leading dimensions, batch, pointer alignments, TF32),
// so a repeated call does one map lookup and one cublasLtMatmul. The 32 MiB workspace is
// allocated once, in the constructor. K == 0 sets C = beta C (beta == 0 writes zeros, as BLAS).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/device.h"
#include "core/bf16.h"

namespace seqvit::backend::cuda {

class Blas {
 public:
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // Creates the cuBLASLt handle and the workspace on the current CUDA device.
  Blas();
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // TF32 tensor cores for gemm_f32 (off by default: exact fp32).
  void set_tf32(bool on) { tf32_ = on; }
  bool tf32() const { return tf32_; }

  // C[M,N] = alpha op(A) op(B) + beta C (row-major, leading dimensions in elements).
  void gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                cudaStream_t s);
  // bf16 A and B, fp32 accumulation, fp32 C.
  void gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
                 int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc,
                 cudaStream_t s);
  // `batch` independent products: matrix p of A, B, C starts at A + p sa, B + p sb, C + p sc.
  void gemm_f32_strided_batched(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                                const float* A, int64_t lda, int64_t sa, const float* B,
                                int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
                                int64_t sc, int64_t batch, cudaStream_t s);
  void gemm_bf16_strided_batched(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                                 const bf16* A, int64_t lda, int64_t sa, const bf16* B,
                                 int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc,
                                 int64_t sc, int64_t batch, cudaStream_t s);

  size_t cached_plans() const { return cache_.size(); }  // for tests

 private:
  // One call's configuration; everything the heuristic's choice depends on.
  struct Key {
    bool half;  // bf16 inputs
    bool tf32;
    bool ta, tb;  // transposed
    int64_t M, N, K, lda, ldb, ldc, batch, sa, sb, sc;
    uint32_t align_a, align_b, align_c;  // pointer alignments in bytes (<= 256)
    auto tie() const {
      return std::tie(half, tf32, ta, tb, M, N, K, lda, ldb, ldc, batch, sa, sb, sc, align_a,
                      align_b, align_c);
    }
    bool operator<(const Key& o) const { return tie() < o.tie(); }
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A, B, C
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
  };

  void gemm(const char* op, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
            const void* A, int64_t lda, int64_t sa, const void* B, int64_t ldb, int64_t sb,
            float beta, float* C, int64_t ldc, int64_t sc, int64_t batch, bool half,
            cudaStream_t s);
  const Plan& plan(const Key& k, const char* op);
  static void destroy(Plan& p);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;  // kWorkspaceBytes of device memory
  bool tf32_ = false;
  std::mutex mu_;  // guards cache_
  std::map<Key, Plan> cache_;
};

// C[rows, cols] (leading dimension ldc, `batch` matrices sc apart) = beta C; beta == 0 writes
// zeros. The K == 0 case of the products (blas_scale.cu).
void scale_matrix(float* C, int64_t rows, int64_t cols, int64_t ldc, int64_t batch, int64_t sc,
                  float beta, cudaStream_t s);

}  // namespace seqvit::backend::cuda
