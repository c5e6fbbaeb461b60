#include "backend/cuda/check.h"

#include <fmt/format.h>

#include <string>

#include "backend/cuda/require.h"
#include "core/check.h"

namespace seqvit::backend::cuda {

namespace {

// "cuda:0 (NVIDIA H100 80GB HBM3)", or what can be said when even that fails.
std::string current_device() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) return "cuda:?";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) return fmt::format("cuda:{}", dev);
  return fmt::format("cuda:{} ({})", dev, p.name);
}

// cuBLAS status names (cublasGetStatusString lives in libcublas, which the plugin does not link).
const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

}  // namespace

void fail(cudaError_t e, const char* op, const char* names, std::initializer_list<int64_t> values) {
  throw Error(fmt::format("{}: {}: {} ({})", current_device(), describe_call(op, names, values),
                          cudaGetErrorString(e), cudaGetErrorName(e)));
}

void fail(cublasStatus_t s, const char* op, const char* names,
          std::initializer_list<int64_t> values) {
  throw Error(fmt::format("{}: {}: cuBLASLt failed with {} ({})", current_device(),
                          describe_call(op, names, values), status_name(s), static_cast<int>(s)));
}

}  // namespace seqvit::backend::cuda
