// Matrix products: thin, checked wrappers over oneDNN's row-major BLAS-like API.
// oneDNN (built with the OpenMP runtime) threads each call over omp_get_max_threads() threads;
// called from inside an OpenMP parallel region it runs on the calling thread only.
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <atomic>

#include "core/check.h"
#include "kernels/ops.h"

// oneDNN 2.6 exports dnnl_gemm_bf16bf16f32 (row-major, same convention as dnnl_sgemm) but its
// public header does not declare it. Declare it under our own name bound to the exported
// symbol, so a newer header that does declare it cannot clash with this declaration.
// dnnl::impl::bfloat16_t is a struct of one uint16_t, layout-identical to seqvit::bf16.
extern "C" dnnl_status_t seqvit_dnnl_gemm_bf16bf16f32(
    char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K, float alpha,
    const uint16_t* A, dnnl_dim_t lda, const uint16_t* B, dnnl_dim_t ldb, float beta, float* C,
    dnnl_dim_t ldc) __asm__("dnnl_gemm_bf16bf16f32");

namespace seqvit::kernels {
namespace {

char op_char(Op o) { return o == Op::N ? 'N' : 'T'; }

// oneDNN's BLAS-like entry points build small internal objects (kernel descriptors) with
// operator new on every call; the allocation-discipline test excludes them by this count.
std::atomic<int> g_library_calls{0};
struct LibraryCall {
  LibraryCall() { g_library_calls.fetch_add(1, std::memory_order_relaxed); }
  ~LibraryCall() { g_library_calls.fetch_sub(1, std::memory_order_relaxed); }
};

// Shapes are validated here (not only inside oneDNN) so the message says which operand is
// wrong: op(A) is [M,K] stored as A[M,lda] (N) or A[K,lda] (T).
void check_shapes(const char* fn, Op ta, Op tb, int64_t M, int64_t N, int64_t K, const void* A,
                  int64_t lda, const void* B, int64_t ldb, const float* C, int64_t ldc) {
  SEQVIT_CHECK(M >= 0 && N >= 0 && K >= 0, "{}: negative size M={} N={} K={}", fn, M, N, K);
  const int64_t a_cols = ta == Op::N ? K : M;
  const int64_t b_cols = tb == Op::N ? N : K;
  SEQVIT_CHECK(lda >= std::max<int64_t>(1, a_cols),
               "{}: lda={} too small for op(A)={} [M={} K={}]; need lda >= {}", fn, lda,
               op_char(ta), M, K, a_cols);
  SEQVIT_CHECK(ldb >= std::max<int64_t>(1, b_cols),
               "{}: ldb={} too small for op(B)={} [K={} N={}]; need ldb >= {}", fn, ldb,
               op_char(tb), K, N, b_cols);
  SEQVIT_CHECK(ldc >= std::max<int64_t>(1, N), "{}: ldc={} too small for C [M={} N={}]", fn,
               ldc, M, N);
  SEQVIT_CHECK(M == 0 || N == 0 || C != nullptr, "{}: C is null", fn);
  SEQVIT_CHECK(K == 0 || M == 0 || N == 0 || (A != nullptr && B != nullptr),
               "{}: A or B is null", fn);
}

// K == 0: the product is empty, C = beta * C (BLAS semantics; beta == 0 clears NaNs too).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

void check_status(dnnl_status_t st, const char* call, Op ta, Op tb, int64_t M, int64_t N,
                  int64_t K) {
  if (st != dnnl_success)
    fail("{}(transa={}, transb={}, M={}, N={}, K={}) failed: {} ({})", call, op_char(ta),
         op_char(tb), M, N, K, dnnl_status2str(st), static_cast<int>(st));
}

}  // namespace

void gemm_f32(Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_shapes("gemm_f32", ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  LibraryCall in_library;
  check_status(dnnl_sgemm(op_char(ta), op_char(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
               "dnnl_sgemm", ta, tb, M, N, K);
}

void gemm_bf16(Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static_assert(sizeof(bf16) == sizeof(uint16_t));
  check_shapes("gemm_bf16", ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  LibraryCall in_library;
  check_status(seqvit_dnnl_gemm_bf16bf16f32(op_char(ta), op_char(tb), M, N, K, alpha,
                                            reinterpret_cast<const uint16_t*>(A), lda,
                                            reinterpret_cast<const uint16_t*>(B), ldb, beta, C,
                                            ldc),
               "dnnl_gemm_bf16bf16f32", ta, tb, M, N, K);
}

int gemm_library_calls_in_flight() { return g_library_calls.load(std::memory_order_relaxed); }

}  // namespace seqvit::kernels
