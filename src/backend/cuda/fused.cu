// The model's fused ops on the CUDA backend (ops.h): latitude weights, the latitude-weighted MSE
// (whole image, and one sequence shard read straight from the head output), the scatter of the
// output variables' gradient, the position / lead-time embedding add and its backward, and the
// aggregation query's mat-vec and its backward. CPU twins: backend/cpu/fused.cpp,
// core/latitude.cpp.
//
// Precision as on the CPU: every sum the CPU forms in double is formed in double here, and each
// per-element expression is the CPU's (same operations, same order) so that dpred, dhead, pred,
// dpos and the embedding add are bit-identical to it. Only the order of the long sums differs:
//   - losses: per-thread double sums, a fixed block tree, then ONE atomicAdd(double) per block
//     into loss_out (zeroed first in the same stream), then loss_out /= count by one thread;
//   - column sums (dltw, dltb, dq_sum, dx of the mat-vec): reduce.cuh column_reduce (double,
//     deterministic);
//   - gemv_bias: a warp per output row, lanes over the columns, double, warp butterfly.
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/reduce.cuh"
#include "backend/cuda/require.h"

namespace seqvit::backend::cuda {
namespace {
using namespace detail;

// ------------------------------------------------------------------ latitude weights
constexpr double kPi = 3.14159265358979323846;  // M_PI, as core/latitude.cpp

__device__ __forceinline__ double cos_lat(float deg) {
  return cos(static_cast<double>(deg) * kPi / 180.0);
}

// One block: the mean of cos(lat) in double (fixed tree), then w = cos / mean, or NaN where the
// mean is not positive (the CPU throws there; see ops.h).
__global__ void latitude_weights_kernel(const float* __restrict__ lat, int64_t H,
                                        float* __restrict__ w) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) acc += cos_lat(lat[i]);
  const double s = block_sum(acc);
  __shared__ double mean_shared;
  if (threadIdx.x == 0) mean_shared = s / static_cast<double>(H);
  __syncthreads();
  const double mean = mean_shared;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    w[i] = mean > 0 ? static_cast<float>(cos_lat(lat[i]) / mean) : __int_as_float(0x7fc00000);
}

// ------------------------------------------------------------------ losses
// loss_out[0] /= count after every block has added its part (the CPU's final division).
__global__ void divide_loss_kernel(double* loss_out, double count) {
  loss_out[0] = loss_out[0] / count;
}

// One thread per element of y / dpred [B, Vo, H, W].
__global__ void weighted_mse_kernel(WeightedMseArgs a, int64_t n) {
  const int64_t HW = a.H * a.W;
  double acc = 0.0;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const int64_t pix = i % HW, so = i / HW, o = so % a.Vo, s = so / a.Vo, row = pix / a.W;
    const float src = a.img[(s * a.V + a.out_index[o]) * HW + pix];
    const double e = static_cast<double>(src) - a.y[i];
    const float w = a.wlat[row];
    acc += w * (e * e);
    a.dpred[i] = static_cast<float>(2.0 * w * e / a.count);
    if (a.pred) a.pred[i] = src;
  }
  const double total = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(a.loss_out, total);
}

// One thread per element of head_out / dhead [B, Nl, outw]; see device.h ShardLossArgs and the
// CPU loop in backend/cpu/fused.cpp for the token and column layouts:
//   aggregate:     token j is patch l = n0 + j, column k = (pr p + pc) V + v;
//   per_variable:  token j is (v, l) = divmod(n0 + j, Lp), column k = pr p + pc.
// Columns of variables that are not outputs get dhead = 0.
__global__ void shard_loss_kernel(ShardLossArgs a, int64_t n, int64_t outw, int64_t Lp) {
  const int64_t p = a.p, W = a.W, HW = a.H * W, gw = W / p;
  double acc = 0.0;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const int64_t k = i % outw, sj = i / outw, j = sj % a.Nl, s = sj / a.Nl;
    const int64_t tok = a.n0 + j, l = a.aggregate ? tok : tok % Lp, gr = l / gw, gc = l % gw;
    const int64_t v = a.aggregate ? k % a.V : tok / Lp, rc = a.aggregate ? k / a.V : k;
    const int64_t o = a.out_slot[v];
    if (o < 0) {
      a.dhead[i] = 0.0f;
      continue;
    }
    const int64_t pr = rc / p, pc = rc % p, row = gr * p + pr;
    const int64_t pix = (s * a.Vo + o) * HW + row * W + gc * p + pc;
    const float h = a.head_out[i];
    const double e = static_cast<double>(h) - a.y[pix];
    const float w = a.wlat[row];
    acc += w * e * e;
    a.dhead[i] = static_cast<float>(2.0 * w * e / a.count);
    if (a.pred) a.pred[pix] = h;
  }
  const double total = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(a.loss_out, total);
}

// ------------------------------------------------------------------ scatter_outputs
// Tasks are (image row r = (s, v), chunk of kScatterChunk pixels); a block finds the output slot
// of v once per task (the last o with out_index[o] == v, as the CPU's later memcpy wins) and
// streams the chunk: dpred's row or zeros.
constexpr int64_t kScatterChunk = 16 * kBlock;

__global__ void scatter_outputs_kernel(const float* __restrict__ dpred, float* __restrict__ dimg,
                                       const int64_t* __restrict__ out_index, int64_t B,
                                       int64_t V, int64_t Vo, int64_t HW, int64_t chunks) {
  for (int64_t task = blockIdx.x; task < B * V * chunks; task += gridDim.x) {
    const int64_t r = task / chunks, begin = task % chunks * kScatterChunk;
    const int64_t end = begin + kScatterChunk < HW ? begin + kScatterChunk : HW;
    const int64_t s = r / V, v = r % V;
    int64_t o = -1;
    for (int64_t q = 0; q < Vo; ++q)
      if (out_index[q] == v) o = q;
    float* dst = dimg + r * HW;
    if (o < 0) {
      for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) dst[e] = 0.0f;
    } else {
      const float* src = dpred + (s * Vo + o) * HW;
      for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) dst[e] = src[e];
    }
  }
}

// ------------------------------------------------------------------ position and lead time
// x[s, j, k] += pos[(n0 + j) mod Lp, k] + (ltw[k] t_s + ltb[k]), t_s = lead[s] / 100, with the
// CPU's rounding (explicit _rn operations: no FMA contraction).
__global__ void add_position_time_kernel(float* __restrict__ x, const float* __restrict__ pos,
                                         const float* __restrict__ ltw,
                                         const float* __restrict__ ltb,
                                         const float* __restrict__ lead, float* __restrict__ ts,
                                         int64_t B, int64_t Nl, int64_t D, int64_t Lp,
                                         int64_t n0) {
  for (int64_t s = thread_index(); s < B; s += thread_count()) ts[s] = __fdiv_rn(lead[s], 100.f);
  const int64_t n = B * Nl * D;
  for (int64_t i = thread_index(); i < n; i += thread_count()) {
    const int64_t k = i % D, sj = i / D, j = sj % Nl, s = sj / Nl;
    const float t = __fdiv_rn(lead[s], 100.f);
    const float emb = __fadd_rn(__fmul_rn(ltw[k], t), ltb[k]);
    x[i] = __fadd_rn(x[i], __fadd_rn(pos[((n0 + j) % Lp) * D + k], emb));
  }
}

// dpos[l, k] += sum over s and the tokens n = l (mod Lp) in [n0, n0 + Nl) of dx[s, n - n0, k],
// in double and in the CPU's order (s, then n): bit-identical. One thread per (l, k).
__global__ void position_backward_kernel(const float* __restrict__ dx, float* __restrict__ dpos,
                                         int64_t B, int64_t Nl, int64_t D, int64_t Lp,
                                         int64_t n0) {
  for (int64_t i = thread_index(); i < Lp * D; i += thread_count()) {
    const int64_t l = i / D, k = i % D;
    const int64_t first = n0 + ((l - n0) % Lp + Lp) % Lp;
    double acc = 0.0;
    for (int64_t s = 0; s < B; ++s)
      for (int64_t tok = first; tok < n0 + Nl; tok += Lp) acc += dx[(s * Nl + tok - n0) * D + k];
    dpos[i] += static_cast<float>(acc);
  }
}

// dltw[k] += sum_{s,j} dx[s, j, k] t_s, dltb[k] += sum_{s,j} dx[s, j, k] (double columns over the
// B Nl rows; the CPU sums each sample's column first, then weights it by t_s).
struct LeadTimeValue {
  const float* dx;
  const float* ts;
  int64_t Nl, D;
  __device__ void operator()(int64_t t, int64_t k, double* acc) const {
    const double d = dx[t * D + k];
    acc[0] += d * ts[t / Nl];
    acc[1] += d;
  }
};
struct LeadTimeEpilogue {
  float* dltw;
  float* dltb;
  __device__ void operator()(int64_t k, const double* s) const {
    dltw[k] += static_cast<float>(s[0]);
    dltb[k] += static_cast<float>(s[1]);
  }
};

// ------------------------------------------------------------------ aggregation query
// q[j] = b[j] + sum_k W[j, k] x[k] in double: one warp per row j (lane 0 starts from b[j]).
__global__ void gemv_bias_kernel(const float* __restrict__ Wt, const float* __restrict__ x,
                                 const float* __restrict__ b, float* __restrict__ q, int64_t R,
                                 int64_t C) {
  const int lane = threadIdx.x & 31;
  for (int64_t j = warp_index(); j < R; j += warp_count()) {
    const float* wr = Wt + j * C;
    double acc = lane == 0 ? static_cast<double>(b[j]) : 0.0;
    for (int64_t k = lane; k < C; k += 32) acc += static_cast<double>(wr[k]) * x[k];
    acc = warp_sum(acc);
    if (lane == 0) q[j] = static_cast<float>(acc);
  }
}

// dq_sum[j] = sum_r dq_rows[r, j] (double, overwritten); db[j] += dq_sum[j].
struct DqValue {
  const float* dq_rows;
  int64_t R;
  __device__ void operator()(int64_t r, int64_t j, double* acc) const {
    acc[0] += dq_rows[r * R + j];
  }
};
struct DqEpilogue {
  double* dq_sum;
  float* db;
  __device__ void operator()(int64_t j, const double* s) const {
    dq_sum[j] = s[0];
    db[j] += static_cast<float>(s[0]);
  }
};

// dW[j, k] += dq_sum[j] x[k] (the double product rounded once, as the CPU).
__global__ void gemv_weight_backward_kernel(const double* __restrict__ dq_sum,
                                            const float* __restrict__ x, float* __restrict__ dW,
                                            int64_t R, int64_t C) {
  for (int64_t i = thread_index(); i < R * C; i += thread_count())
    dW[i] += static_cast<float>(dq_sum[i / C] * x[i % C]);
}

// dx[k] = sum_j W[j, k] dq_sum[j] (double columns of W over its R rows, overwritten).
struct DxValue {
  const float* Wt;
  const double* dq_sum;
  int64_t C;
  __device__ void operator()(int64_t j, int64_t k, double* acc) const {
    acc[0] += Wt[j * C + k] * dq_sum[j];
  }
};
struct DxEpilogue {
  float* dx;
  __device__ void operator()(int64_t k, const double* s) const { dx[k] = static_cast<float>(s[0]); }
};

}  // namespace

void latitude_weights(const float* lat_deg, int64_t H, float* w, cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(H >= 0, "latitude_weights", "H must be >= 0", "H", H);
  if (H == 0) return;
  latitude_weights_kernel<<<1, kBlock, 0, stream>>>(lat_deg, H, w);
  SEQVIT_CUDA_LAUNCHED("latitude_weights", "H", H);
}

void weighted_mse(const WeightedMseArgs& a, cudaStream_t stream) {
  const char* op = "weighted_mse";
  SEQVIT_CUDA_REQUIRE(a.B >= 0 && a.V >= 0 && a.Vo >= 0 && a.H >= 0 && a.W >= 0, op,
                      "B, V, Vo, H and W must be >= 0", "B,V,Vo,H,W", a.B, a.V, a.Vo, a.H, a.W);
  SEQVIT_CUDA_CHECK(cudaMemsetAsync(a.loss_out, 0, sizeof(double), stream), op, "B,V,Vo,H,W",
                    a.B, a.V, a.Vo, a.H, a.W);
  const int64_t n = a.B * a.Vo * a.H * a.W;
  if (n > 0) {
    weighted_mse_kernel<<<grid_for(n, kBlock, kReduceBlocks), kBlock, 0, stream>>>(a, n);
    SEQVIT_CUDA_LAUNCHED(op, "B,V,Vo,H,W", a.B, a.V, a.Vo, a.H, a.W);
  }
  divide_loss_kernel<<<1, 1, 0, stream>>>(a.loss_out, a.count);
  SEQVIT_CUDA_LAUNCHED(op, "B,V,Vo,H,W", a.B, a.V, a.Vo, a.H, a.W);
}

void shard_loss(const ShardLossArgs& a, cudaStream_t stream) {
  const char* op = "shard_loss";
  SEQVIT_CUDA_REQUIRE(a.B >= 0 && a.Vo >= 0 && a.Nl >= 0 && a.n0 >= 0 && a.V > 0 && a.H > 0 &&
                          a.W > 0,
                      op, "B, Vo, Nl and n0 must be >= 0 and V, H and W > 0", "B,V,Vo,H,W,p,Nl,n0",
                      a.B, a.V, a.Vo, a.H, a.W, a.p, a.Nl, a.n0);
  SEQVIT_CUDA_REQUIRE(a.p > 0 && a.H % a.p == 0 && a.W % a.p == 0, op,
                      "the patch size p must be positive and divide H and W",
                      "B,V,Vo,H,W,p,Nl,n0", a.B, a.V, a.Vo, a.H, a.W, a.p, a.Nl, a.n0);
  SEQVIT_CUDA_CHECK(cudaMemsetAsync(a.loss_out, 0, sizeof(double), stream), op,
                    "B,V,Vo,H,W,p,Nl,n0", a.B, a.V, a.Vo, a.H, a.W, a.p, a.Nl, a.n0);
  const int64_t Lp = (a.H / a.p) * (a.W / a.p);
  const int64_t outw = a.aggregate ? a.V * a.p * a.p : a.p * a.p;
  const int64_t n = a.B * a.Nl * outw;
  if (n > 0) {
    shard_loss_kernel<<<grid_for(n, kBlock, kReduceBlocks), kBlock, 0, stream>>>(a, n, outw, Lp);
    SEQVIT_CUDA_LAUNCHED(op, "B,V,Vo,H,W,p,Nl,n0", a.B, a.V, a.Vo, a.H, a.W, a.p, a.Nl, a.n0);
  }
  divide_loss_kernel<<<1, 1, 0, stream>>>(a.loss_out, a.count);
  SEQVIT_CUDA_LAUNCHED(op, "B,V,Vo,H,W,p,Nl,n0", a.B, a.V, a.Vo, a.H, a.W, a.p, a.Nl, a.n0);
}

void scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index, int64_t B,
                     int64_t V, int64_t Vo, int64_t HW, cudaStream_t stream) {
  const char* op = "scatter_outputs";
  SEQVIT_CUDA_REQUIRE(B >= 0 && V >= 0 && Vo >= 0 && HW >= 0, op,
                      "B, V, Vo and HW must be >= 0", "B,V,Vo,HW", B, V, Vo, HW);
  if (B * V * HW == 0) return;
  const int64_t chunks = (HW + kScatterChunk - 1) / kScatterChunk;
  scatter_outputs_kernel<<<grid_for(B * V * chunks, 1), kBlock, 0, stream>>>(
      dpred, dimg, out_index, B, V, Vo, HW, chunks);
  SEQVIT_CUDA_LAUNCHED(op, "B,V,Vo,HW", B, V, Vo, HW);
}

void add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                       const float* lead_hours, float* tscaled, int64_t B, int64_t Nl, int64_t D,
                       int64_t Lp, int64_t n0, cudaStream_t stream) {
  const char* op = "add_position_time";
  SEQVIT_CUDA_REQUIRE(B >= 0 && Nl >= 0 && D >= 0 && n0 >= 0 && Lp > 0, op,
                      "B, Nl, D and n0 must be >= 0 and Lp > 0", "B,Nl,D,Lp,n0", B, Nl, D, Lp,
                      n0);
  if (B == 0) return;
  add_position_time_kernel<<<grid_for(B * Nl * D), kBlock, 0, stream>>>(
      x, pos, ltw, ltb, lead_hours, tscaled, B, Nl, D, Lp, n0);
  SEQVIT_CUDA_LAUNCHED(op, "B,Nl,D,Lp,n0", B, Nl, D, Lp, n0);
}

void add_position_time_backward(const float* dx, const float* tscaled, float* dpos, float* dltw,
                                float* dltb, int64_t B, int64_t Nl, int64_t D, int64_t Lp,
                                int64_t n0, cudaStream_t stream) {
  const char* op = "add_position_time_backward";
  SEQVIT_CUDA_REQUIRE(B >= 0 && Nl >= 0 && D >= 0 && n0 >= 0 && Lp > 0, op,
                      "B, Nl, D and n0 must be >= 0 and Lp > 0", "B,Nl,D,Lp,n0", B, Nl, D, Lp,
                      n0);
  if (D == 0) return;
  position_backward_kernel<<<grid_for(Lp * D), kBlock, 0, stream>>>(dx, dpos, B, Nl, D, Lp, n0);
  SEQVIT_CUDA_LAUNCHED(op, "B,Nl,D,Lp,n0", B, Nl, D, Lp, n0);
  column_reduce<2>(B * Nl, D, LeadTimeValue{dx, tscaled, Nl, D}, LeadTimeEpilogue{dltw, dltb},
                   stream);
  SEQVIT_CUDA_LAUNCHED(op, "B,Nl,D,Lp,n0", B, Nl, D, Lp, n0);
}

void gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R, int64_t C,
               cudaStream_t stream) {
  SEQVIT_CUDA_REQUIRE(R >= 0 && C >= 0, "gemv_bias", "R and C must be >= 0", "R,C", R, C);
  if (R == 0) return;
  gemv_bias_kernel<<<grid_for(R, kBlock / 32), kBlock, 0, stream>>>(Wt, x, b, q, R, C);
  SEQVIT_CUDA_LAUNCHED("gemv_bias", "R,C", R, C);
}

void gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt, const float* x,
                        double* dq_sum, float* dW, float* db, float* dx, int64_t R, int64_t C,
                        cudaStream_t stream) {
  const char* op = "gemv_bias_backward";
  SEQVIT_CUDA_REQUIRE(n >= 0 && R >= 0 && C >= 0, op, "n, R and C must be >= 0", "n,R,C", n, R,
                      C);
  if (R > 0) {  // dq_sum, db (n == 0 still writes dq_sum = 0)
    column_reduce<1>(n, R, DqValue{dq_rows, R}, DqEpilogue{dq_sum, db}, stream);
    SEQVIT_CUDA_LAUNCHED(op, "n,R,C", n, R, C);
  }
  if (R > 0 && C > 0) {
    gemv_weight_backward_kernel<<<grid_for(R * C), kBlock, 0, stream>>>(dq_sum, x, dW, R, C);
    SEQVIT_CUDA_LAUNCHED(op, "n,R,C", n, R, C);
  }
  if (C > 0) {  // dx (R == 0 still writes dx = 0)
    column_reduce<1>(R, C, DxValue{Wt, dq_sum, C}, DxEpilogue{dx}, stream);
    SEQVIT_CUDA_LAUNCHED(op, "n,R,C", n, R, C);
  }
}

}  // namespace seqvit::backend::cuda
