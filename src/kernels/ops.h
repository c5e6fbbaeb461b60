// The CPU kernels: the numerical engine's contract. Every kernel here has a naive oracle in
// tests (or beside it in kernels/) and is checked against a double-precision reference.
//
// Conventions: row-major, fp32 storage; T = number of rows (tokens x batch), D, F = feature
// widths. "Backward" functions ACCUMULATE (+=) into parameter gradients (dgamma, dbeta, db);
// input gradients (dx) are overwritten unless an `accumulate` flag says otherwise.
// All kernels parallelise internally with OpenMP and may be called from one thread.
#pragma once

#include <cstdint>

#include "core/bf16.h"

namespace seqvit::kernels {

// ---------------------------------------------------------------- matrix products (gemm.cpp)
enum class Op { N, T };

// C[M,N] = alpha * op(A) op(B) + beta * C. op(A) is [M,K], op(B) is [K,N]; row-major with leading
// dimensions lda, ldb, ldc (elements). Backed by oneDNN (dnnl_sgemm).
void gemm_f32(Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// Mixed precision: bf16 inputs, fp32 accumulation and output (dnnl_gemm_bf16bf16f32).
void gemm_bf16(Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc);
// oneDNN calls in progress (any thread). oneDNN allocates small descriptor objects inside
// every dnnl_sgemm call; tests of seqvit's own no-allocation rule exclude those by this count.
int gemm_library_calls_in_flight();

// ---------------------------------------------------------------- elementwise (elementwise.cpp)
// y[t, f] = b[f] for every row: used to seed a gemm with beta = 1 (bias fusion).
void broadcast_rows(float* y, const float* b, int64_t T, int64_t F);
// db[f] += sum_t dy[t, f]
void bias_backward(const float* dy, float* db, int64_t T, int64_t F);
// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);
// y[i] = a[i] + b[i]
void add(const float* a, const float* b, float* y, int64_t n);
// y[i] *= s
void scale_inplace(float* y, float s, int64_t n);
// sum of squares in double (for gradient-norm clipping)
double sum_squares(const float* x, int64_t n);

// ---------------------------------------------------------------- GELU, exact erf (gelu.cpp)
// y = 0.5 x (1 + erf(x / sqrt 2))
void gelu_forward(const float* x, float* y, int64_t n);
// dx = dy * gelu'(x)   (dx may alias dy)
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);

// ---------------------------------------------------------------- LayerNorm (layernorm.cpp)
// x[T,D] -> y[T,D] = (x - mean) * rstd * gamma + beta; saves mean[T], rstd[T].
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t T, int64_t D, float eps);
// dx[T,D] (overwritten, or += when accumulate_dx), dgamma[D] +=, dbeta[D] +=.
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                        const float* rstd, float* dx, float* dgamma, float* dbeta, int64_t T,
                        int64_t D, bool accumulate_dx);

// ---------------------------------------------------------------- softmax (softmax.cpp)
// Row softmax of x[T,F] into y (may alias x), and its backward dx = y * (dy - rowsum(dy*y)).
// With lse, also each row's log-sum-exp max + log(sum exp(x - max)) into lse[T].
void softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse = nullptr);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t T, int64_t F);

// ---------------------------------------------------------------- patches (patch.cpp)
// Lp = (H/p)(W/p) patches in row-major patch order (patch row, patch column); within a patch,
// values ordered (p_row, p_col).
// x[B,V,H,W] -> patches[B,V,Lp,p*p]; the adjoint (patches -> image) is unpatchify_vmajor.
void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H, int64_t W,
              int64_t p);
// patches[B,V,Lp,p*p] -> x[B,V,H,W] (exact inverse and adjoint of patchify).
void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                       int64_t W, int64_t p);
// ClimaX head layout: tok[B,Lp,p*p*V] with per-patch values ordered (p_row, p_col, v)
// -> img[B,V,H,W]; and its adjoint/inverse img -> tok.
void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V, int64_t H,
                              int64_t W, int64_t p);
void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V, int64_t H,
                            int64_t W, int64_t p);

// ---------------------------------------------------------------- optimizer (adamw.cpp)
// PyTorch AdamW (decoupled weight decay), step is 1-based:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step);

}  // namespace seqvit::kernels
