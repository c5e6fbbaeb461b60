// cuBLASLt matrix products (blas.h, docs/cuda.md "Matrix products").
#include "backend/cuda/blas.h"

#include <algorithm>
#include <limits>

#include "backend/cuda/check.h"
#include "core/check.h"

namespace seqvit::backend::cuda {
namespace {

// Plans kept before the cache is emptied: a training run uses a few dozen shapes; a sweep over
// many shapes (a benchmark) must not grow the map without bound.
constexpr size_t kMaxPlans = 1024;

// The largest power of two (<= 256) that divides the address: cuBLASLt's heuristic assumes
// 256-byte aligned operands unless told otherwise, and offsets into a packed buffer are not.
uint32_t alignment(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (u % a) != 0) a /= 2;
  return a;
}

const char* trans_name(Trans t) { return t == Trans::N ? "N" : "T"; }

}  // namespace

Blas::Blas() {
  SEQVIT_CUDA_CHECK(cublasLtCreate(&handle_), "Blas: cublasLtCreate", "", );
  const cudaError_t e = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (e != cudaSuccess) {
    cublasLtDestroy(handle_);  // the destructor does not run for a throwing constructor
    fail(e, "Blas: cudaMalloc of the cuBLASLt workspace", "bytes",
         {static_cast<int64_t>(kWorkspaceBytes)});
  }
}

Blas::~Blas() {
  for (auto& [k, p] : cache_) destroy(p);
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

void Blas::destroy(Plan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = Plan{};
}

const Blas::Plan& Blas::plan(const Key& k, const char* op) {
  if (auto it = cache_.find(k); it != cache_.end()) return it->second;
  if (cache_.size() >= kMaxPlans) {
    for (auto& [key, p] : cache_) destroy(p);
    cache_.clear();
  }
  Plan p;
  // On failure the half-built plan is destroyed before the error propagates.
  struct Guard {
    Plan* p;
    ~Guard() {
      if (p) destroy(*p);
    }
  } guard{&p};
  const cublasComputeType_t compute =
      !k.half && k.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t in = k.half ? CUDA_R_16BF : CUDA_R_32F;
  SEQVIT_CUDA_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F), op, "M,N,K", k.M,
                    k.N, k.K);
  // cuBLASLt computes C^T[N,M] = op(B)^T op(A)^T: its A is our B, its B our A.
  const cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  SEQVIT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa,
                                                   sizeof(opa)),
                    op, "M,N,K", k.M, k.N, k.K);
  SEQVIT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb,
                                                   sizeof(opb)),
                    op, "M,N,K", k.M, k.N, k.K);
  // Layouts describe the matrices as stored (column-major view of our row-major data).
  // Our B: tb == N is row-major [K, N] = column-major N x K; tb == T is [N, K] = K x N.
  // Our A: ta == N is row-major [M, K] = column-major K x M; ta == T is [K, M] = M x K.
  // C: row-major [M, N] = column-major N x M.
  const uint64_t b_rows = k.tb ? k.K : k.N, b_cols = k.tb ? k.N : k.K;
  const uint64_t a_rows = k.ta ? k.M : k.K, a_cols = k.ta ? k.K : k.M;
  SEQVIT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, b_rows, b_cols, k.ldb), op, "M,N,K,ldb",
                    k.M, k.N, k.K, k.ldb);
  SEQVIT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, a_rows, a_cols, k.lda), op, "M,N,K,lda",
                    k.M, k.N, k.K, k.lda);
  SEQVIT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, k.N, k.M, k.ldc), op,
                    "M,N,K,ldc", k.M, k.N, k.K, k.ldc);
  if (k.batch > 1) {
    const int32_t count = static_cast<int32_t>(k.batch);
    const int64_t strides[3] = {k.sb, k.sa, k.sc};  // cuBLASLt's A, B, C
    cublasLtMatrixLayout_t layouts[3] = {p.a, p.b, p.c};
    for (int i = 0; i < 3; ++i) {
      SEQVIT_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(layouts[i],
                                                         CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof(count)),
                        op, "M,N,K,batch", k.M, k.N, k.K, k.batch);
      SEQVIT_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(
                            layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                            sizeof(strides[i])),
                        op, "M,N,K,batch", k.M, k.N, k.K, k.batch);
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  SEQVIT_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref), op, "M,N,K", k.M, k.N, k.K);
  const uint64_t max_ws = kWorkspaceBytes;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof(max_ws));
  // cuBLASLt's A is our B and vice versa.
  const uint32_t aligns[3] = {k.align_b, k.align_a, k.align_c};
  const cublasLtMatmulPreferenceAttributes_t which[3] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES};
  for (int i = 0; i < 3 && st == CUBLAS_STATUS_SUCCESS; ++i)
    st = cublasLtMatmulPreferenceSetAttribute(pref, which[i], &aligns[i], sizeof(aligns[i]));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                              &aligns[2], sizeof(aligns[2]));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result,
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  SEQVIT_CUDA_CHECK(st, op, "M,N,K,lda,ldb,ldc", k.M, k.N, k.K, k.lda, k.ldb, k.ldc);
  if (found < 1)
    seqvit::fail("{}(ta={} tb={} M={} N={} K={} lda={} ldb={} ldc={} batch={}): cuBLASLt has no "
         "algorithm for this product (operand alignments {}/{}/{} bytes, {} inputs{})",
         op, k.ta ? "T" : "N", k.tb ? "T" : "N", k.M, k.N, k.K, k.lda, k.ldb, k.ldc, k.batch,
         k.align_a, k.align_b, k.align_c, k.half ? "bf16" : "fp32", k.tf32 ? ", TF32" : "");
  p.algo = result.algo;
  p.workspace = result.workspaceSize;
  guard.p = nullptr;
  return cache_.emplace(k, p).first->second;
}

void Blas::gemm(const char* op, Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                const void* A, int64_t lda, int64_t sa, const void* B, int64_t ldb, int64_t sb,
                float beta, float* C, int64_t ldc, int64_t sc, int64_t batch, bool half,
                cudaStream_t s) {
  SEQVIT_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0,
               "{}: M={} N={} K={} batch={} must not be negative", op, M, N, K, batch);
  if (M == 0 || N == 0 || batch == 0) return;
  // Row-major storage: the row length of each stored matrix bounds its leading dimension.
  const int64_t a_row = ta == Trans::N ? K : M, b_row = tb == Trans::N ? N : K;
  SEQVIT_CHECK(ldc >= N, "{}(M={} N={} K={}): ldc={} is less than N={} (row-major C[M,N])", op,
               M, N, K, ldc, N);
  if (K == 0) {  // an empty sum: C = beta C
    scale_matrix(C, M, N, ldc, batch, sc, beta, s);
    return;
  }
  SEQVIT_CHECK(lda >= std::max<int64_t>(a_row, 1),
               "{}(ta={} M={} N={} K={}): lda={} is less than the row length {} of the stored A "
               "(row-major {})",
               op, trans_name(ta), M, N, K, lda, a_row, ta == Trans::N ? "[M,K]" : "[K,M]");
  SEQVIT_CHECK(ldb >= std::max<int64_t>(b_row, 1),
               "{}(tb={} M={} N={} K={}): ldb={} is less than the row length {} of the stored B "
               "(row-major {})",
               op, trans_name(tb), M, N, K, ldb, b_row, tb == Trans::N ? "[K,N]" : "[N,K]");
  SEQVIT_CHECK(A && B && C, "{}(M={} N={} K={}): A, B and C must be device pointers, got {} {} {}",
               op, M, N, K, A, B, static_cast<const void*>(C));
  SEQVIT_CHECK(batch <= std::numeric_limits<int32_t>::max(),
               "{}: batch={} exceeds cuBLASLt's limit of 2^31 - 1 matrices", op, batch);
  const Key k{half, tf32_ && !half, ta == Trans::T, tb == Trans::T, M, N, K, lda, ldb, ldc,
              batch, batch > 1 ? sa : 0, batch > 1 ? sb : 0, batch > 1 ? sc : 0,
              alignment(A), alignment(B), alignment(C)};
  std::lock_guard<std::mutex> lock(mu_);
  const Plan& p = plan(k, op);
  // cuBLASLt's A is our B, its B our A; D = C in place.
  SEQVIT_CUDA_CHECK(cublasLtMatmul(handle_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c,
                                   &p.algo, workspace_, p.workspace, s),
                    op, "M,N,K,lda,ldb,ldc,batch", M, N, K, lda, ldb, ldc, batch);
}

void Blas::gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc, cudaStream_t s) {
  gemm("gemm_f32", ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, false, s);
}

void Blas::gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, cudaStream_t s) {
  gemm("gemm_bf16", ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, true, s);
}

void Blas::gemm_f32_strided_batched(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                                    float alpha, const float* A, int64_t lda, int64_t sa,
                                    const float* B, int64_t ldb, int64_t sb, float beta, float* C,
                                    int64_t ldc, int64_t sc, int64_t batch, cudaStream_t s) {
  gemm("gemm_f32_strided_batched", ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc,
       sc, batch, false, s);
}

void Blas::gemm_bf16_strided_batched(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K,
                                     float alpha, const bf16* A, int64_t lda, int64_t sa,
                                     const bf16* B, int64_t ldb, int64_t sb, float beta, float* C,
                                     int64_t ldc, int64_t sc, int64_t batch, cudaStream_t s) {
  gemm("gemm_bf16_strided_batched", ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc,
       sc, batch, true, s);
}

}  // namespace seqvit::backend::cuda
