// The CUDA backend's own kernels: every elementwise, normalisation, patch, sequence-parallel,
// fused-model and optimizer op of the backend table (backend/device.h), one function per Device
// method with EXACTLY its parameters plus the stream. CudaDevice calls these; docs/cuda.md lists
// each op's launch shape, reduction strategy and where results may differ in rounding from the
// CPU backend.
//
// Every function only ENQUEUES work on `stream`: it never synchronises and never allocates. All
// pointers are device memory, as device.h says, with ONE change: the small configuration tables
// that the Device method takes as HOST arrays are DEVICE arrays here (CudaDevice uploads the
// host table into a device buffer first, in stream order, and passes that pointer in the same
// argument or struct field):
//   sum_squares        ranges                       [num_ranges][2] int64 (first, count)
//   weighted_mse       WeightedMseArgs::out_index   [Vo] int64
//   shard_loss         ShardLossArgs::out_slot      [V] int64
//   scatter_outputs    out_index                    [Vo] int64
//   adamw              AdamArgs::segments           [num_segments] AdamSegment
// The table must stay valid until the op has run (a stream-ordered buffer reused only by later
// ops is fine).
//
// Semantics are the CPU backend's (backend/cpu, kernels/ops.h): row-major fp32, backward ops
// accumulate (+=) into parameter gradients and overwrite input gradients unless a flag says
// otherwise; reductions the CPU does in double are done in double. Each function checks the
// preconditions the CPU kernel checks (shapes, patch geometry, AdamW's step and betas) on the
// host before it enqueues anything and throws seqvit::Error naming the op and its shapes; a
// failed launch throws through SEQVIT_CUDA_LAUNCHED (check.h). Empty work (n == 0, T == 0, ...)
// launches nothing unless the op still has outputs to write (a zero loss, a zero sum).
//
// Differences from the CPU backend, all documented in docs/cuda.md:
//   - reductions run in a different order (warp/block trees), so sums can differ in the last
//     bits; results that go through atomicAdd (the losses, sum_squares) are not bit-for-bit
//     reproducible from run to run (double precision, ~1e-16 relative);
//   - latitude_weights writes NaN weights where the CPU throws (non-positive mean cos(lat));
//   - merge_by_lse leaves a row untouched when both of its lse are -inf (the CPU gives NaN).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/device.h"

namespace seqvit::backend::cuda {

// ------------------------------------------------------------------ elementwise (elementwise.cu)
// y[n] = to_bf16(x[n]) bit for bit as core/bf16.h (round to nearest even, NaN stays NaN).
void convert_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream);
// y[T, F] = b[F] on every row.
void broadcast_rows(float* y, const float* b, int64_t T, int64_t F, cudaStream_t stream);
// db[F] += sum_t dy[T, F] (double column sums).
void bias_backward(const float* dy, float* db, int64_t T, int64_t F, cudaStream_t stream);
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);          // y += x
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);  // y = a + b
void scale_inplace(float* y, float s, int64_t n, cudaStream_t stream);               // y *= s
// out[0] (device double) = sum over the ranges of x[i]^2 in double. ranges: DEVICE table.
void sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges, double* out,
                 cudaStream_t stream);
// Exact-erf GELU (kernels/gelu.cpp): y = x Phi(x); dx = dy (Phi(x) + x phi(x)) (dx may alias dy).
void gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);

// ------------------------------------------------------------------ rows (norms.cu)
// LayerNorm over D (kernels/layernorm.cpp): x[T, D] -> y[T, D], mean[T], rstd[T].
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y,
                       float* mean, float* rstd, int64_t T, int64_t D, float eps,
                       cudaStream_t stream);
// dx[T, D] = (or += with accumulate_dx); dgamma[D] +=, dbeta[D] += (double column sums).
// dx may alias dy.
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                        const float* rstd, float* dx, float* dgamma, float* dbeta, int64_t T,
                        int64_t D, bool accumulate_dx, cudaStream_t stream);
// Row softmax of x[T, F] into y (may alias x); lse[T] (may be nullptr) = max + log(sum exp).
void softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse,
                     cudaStream_t stream);
// dx[T, F] = y (dy - rowsum(dy y)) (dx may alias dy).
void softmax_backward(const float* y, const float* dy, float* dx, int64_t T, int64_t F,
                      cudaStream_t stream);

// ------------------------------------------------------------------ patches (patches.cu)
// x[B, V, H, W] <-> patches[B, V, Lp, p p] and img[B, V, H, W] <-> tok[B, Lp, p p V]
// (kernels/patch.cpp); p must divide H and W.
void patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H, int64_t W,
              int64_t p, cudaStream_t stream);
void unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V, int64_t H,
                       int64_t W, int64_t p, cudaStream_t stream);
void unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V, int64_t H,
                              int64_t W, int64_t p, cudaStream_t stream);
void patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V, int64_t H,
                            int64_t W, int64_t p, cudaStream_t stream);

// ------------------------------------------------------------------ sequence parallel (sp.cu)
// (o, lse) <- the exact merge with (o_in, lse_in) (device.h LseMerge).
void merge_by_lse(const LseMerge& m, cudaStream_t stream);
// The strided 3-D run copy / accumulate / zero-fill of device.h BlockCopy.
void block_copy(const BlockCopy& c, cudaStream_t stream);

// ------------------------------------------------------------------ the model's fused ops (fused.cu)
// w[H] = cos(lat) / mean cos(lat) (double). A non-positive (or NaN) mean, which the CPU reports
// as an error, gives NaN in every w[i] here: the device cannot throw, and the NaN reaches the
// loss, which the trainer checks.
void latitude_weights(const float* lat_deg, int64_t H, float* w, cudaStream_t stream);
// WeightedMseArgs (device.h); out_index: DEVICE table. loss_out[0] is zeroed by this call.
void weighted_mse(const WeightedMseArgs& a, cudaStream_t stream);
// ShardLossArgs (device.h); out_slot: DEVICE table. loss_out[0] is zeroed by this call.
void shard_loss(const ShardLossArgs& a, cudaStream_t stream);
// dimg[B, V, HW] = 0 except dimg[s, out_index[o]] = dpred[s, o]. out_index: DEVICE table (when
// it names a variable twice, the later output wins, as on the CPU).
void scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index, int64_t B,
                     int64_t V, int64_t Vo, int64_t HW, cudaStream_t stream);
// x[B, Nl, D] += pos[(n0 + j) mod Lp] + ltw t_s + ltb, t_s = lead_hours[s] / 100 -> tscaled[B].
void add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                       const float* lead_hours, float* tscaled, int64_t B, int64_t Nl, int64_t D,
                       int64_t Lp, int64_t n0, cudaStream_t stream);
// dpos[Lp, D] +=, dltw[D] +=, dltb[D] += from dx[B, Nl, D] (sums in double).
void add_position_time_backward(const float* dx, const float* tscaled, float* dpos, float* dltw,
                                float* dltb, int64_t B, int64_t Nl, int64_t D, int64_t Lp,
                                int64_t n0, cudaStream_t stream);
// q[R] = Wt[R, C] x[C] + b[R] (double accumulation).
void gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R, int64_t C,
               cudaStream_t stream);
// dq_sum[R] = sum of the rows of dq_rows[n, R] (double); db[R] +=, dW[R, C] += dq_sum x^T,
// dx[C] = W^T dq_sum (overwritten).
void gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt, const float* x,
                        double* dq_sum, float* dW, float* db, float* dx, int64_t R, int64_t C,
                        cudaStream_t stream);

// ------------------------------------------------------------------ optimizer (adamw.cu)
// Multi-tensor AdamW, element for element the CPU's kernels/adamw.cpp (the same fp32 operations
// in the same order, never FMA-contracted: bit-identical to its portable path; its AVX-512 clone
// is FMA-contracted by GCC, docs/cuda.md). segments: DEVICE table. One launch for all segments.
void adamw(const AdamArgs& a, cudaStream_t stream);

// ------------------------------------------------------------------ dropout (dropout.cu)
// DropoutArgs (device.h): y = x * keep / (1 - p) with the hashed mask, the CPU's bit for bit.
void dropout(const DropoutArgs& a, cudaStream_t stream);

}  // namespace seqvit::backend::cuda
