// Host emulation of the CUDA subset that src/backend/cuda/{elementwise,norms,patches,sp,fused,
// adamw}.cu use, for checking their logic without a GPU (scripts/cuda_emulation/run.sh). Each
// launch runs its blocks one after another, each block as blockDim std::threads; __syncthreads,
// __syncwarp and the warp shuffles are barriers; __shared__ is a function static (one block at a
// time). Maths are the host's (normcdff via erfc), so only the logic is checked, not the ulps.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef struct CUstream_st* cudaStream_t;
enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
typedef cudaError cudaError_t;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }

namespace emu {
inline thread_local dim3 tIdx, bIdx;
inline dim3 bDim, gDim;
struct BlockCtx {
  std::unique_ptr<std::barrier<>> block;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<uint64_t> slots;
};
inline BlockCtx* ctx = nullptr;
inline int tid() { return static_cast<int>(tIdx.x + tIdx.y * bDim.x); }
inline long launches = 0;

struct Launcher {
  dim3 g, b;
  template <class F>
  void operator()(F f) {
    ++launches;
    gDim = g;
    bDim = b;
    const int nt = static_cast<int>(b.x * b.y * b.z);
    for (unsigned bx = 0; bx < g.x; ++bx) {
      BlockCtx c;
      c.block = std::make_unique<std::barrier<>>(nt);
      for (int w = 0; w < nt / 32; ++w) c.warps.push_back(std::make_unique<std::barrier<>>(32));
      c.slots.resize(nt);
      ctx = &c;
      std::vector<std::thread> ts;
      for (int t = 0; t < nt; ++t)
        ts.emplace_back([&, t, bx] {
          tIdx = dim3(t % b.x, t / b.x, 1);
          bIdx = dim3(bx, 0, 0);
          f();
          c.block->arrive_and_drop();
          if (t / 32 < nt / 32) c.warps[t / 32]->arrive_and_drop();
        });
      for (auto& th : ts) th.join();
      ctx = nullptr;
    }
  }
};
inline Launcher launch(dim3 g, dim3 b, size_t = 0, cudaStream_t = nullptr) { return {g, b}; }
inline std::mutex atomic_mutex;
}  // namespace emu

#define threadIdx (::emu::tIdx)
#define blockIdx (::emu::bIdx)
#define blockDim (::emu::bDim)
#define gridDim (::emu::gDim)

template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  auto& c = *emu::ctx;
  const int t = emu::tid(), w = t / 32, lane = t % 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  c.slots[t] = bits;
  c.warps[w]->arrive_and_wait();
  T r;
  const uint64_t got = c.slots[w * 32 + (lane ^ o)];
  std::memcpy(&r, &got, sizeof(T));
  c.warps[w]->arrive_and_wait();
  return r;
}
inline void __syncthreads() { emu::ctx->block->arrive_and_wait(); }
inline void __syncwarp() { emu::ctx->warps[emu::tid() / 32]->arrive_and_wait(); }
inline double atomicAdd(double* p, double v) {
  std::lock_guard<std::mutex> l(emu::atomic_mutex);
  const double old = *p;
  *p = old + v;
  return old;
}
inline uint32_t __float_as_uint(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
using std::isnan;
