// Error checks of the CUDA backend (docs/cuda.md): a failed CUDA, cuBLASLt or launch call throws
// seqvit::Error naming the op, its shapes, the device and CUDA's own message, e.g.
//   "cuda:0 (NVIDIA H100 80GB HBM3): layernorm_forward(T=4096, D=1024): an illegal memory
//    access was encountered (cudaErrorIllegalAddress)"
// The shape string is built only on failure, so a check costs one comparison:
//   SEQVIT_CUDA_CHECK(cudaMemsetAsync(p, 0, n, s), "zero", "bytes", n);
//   kernel<<<g, b, 0, s>>>(...); SEQVIT_CUDA_LAUNCHED("gelu_forward", "n", n);
// Names are comma-separated and match the values that follow ("T,D", T, D).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

namespace seqvit::backend::cuda {

[[noreturn]] void fail(cudaError_t e, const char* op, const char* names,
                       std::initializer_list<int64_t> values);
[[noreturn]] void fail(cublasStatus_t s, const char* op, const char* names,
                       std::initializer_list<int64_t> values);

}  // namespace seqvit::backend::cuda

#define SEQVIT_CUDA_CHECK(expr, op, names, ...)                                         \
  do {                                                                                  \
    const auto seqvit_status_ = (expr);                                                 \
    if (seqvit_status_ != decltype(seqvit_status_){})                                   \
      ::seqvit::backend::cuda::fail(seqvit_status_, op, names, {__VA_ARGS__});           \
  } while (0)

// After a kernel launch: a bad configuration shows at once; a fault inside the kernel shows at
// the next synchronisation (CudaDevice::synchronize names the last op enqueued).
#define SEQVIT_CUDA_LAUNCHED(op, names, ...) SEQVIT_CUDA_CHECK(cudaGetLastError(), op, names, __VA_ARGS__)
