// The plugin's entry points (docs/cuda.md "Loading"), looked up by backend/device.cpp with
// dlsym. They are the only symbols libseqvit_cuda.so exports; nothing thrown crosses them (an
// error comes back as text), so the plugin's own copy of core/ never meets the binary's.
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_device.h"

#define SEQVIT_PLUGIN_API extern "C" __attribute__((visibility("default")))

using seqvit::backend::Device;

// The version of this interface; the loader refuses a plugin of another (a stale build).
SEQVIT_PLUGIN_API int seqvit_cuda_plugin_abi() { return 1; }

// How many GPUs the CUDA runtime sees; 0 with the reason in *why (no driver, no device).
SEQVIT_PLUGIN_API int seqvit_cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    return 0;
  }
  return n;
}

// A new device (the caller owns it), or nullptr with the reason in *error.
SEQVIT_PLUGIN_API Device* seqvit_cuda_create(const std::string* name, int ordinal,
                                             std::string* error) {
  try {
    return new seqvit::backend::cuda::CudaDevice(*name, ordinal);
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
}

// Attention scratch of the CUDA kernels (pure arithmetic: works without a GPU, for the planner).
SEQVIT_PLUGIN_API size_t seqvit_cuda_attention_workspace_bytes(int kind,
                                                               const seqvit::AttentionArgs* a) {
  return seqvit::backend::cuda::attention_workspace_bytes(
      static_cast<seqvit::backend::AttentionKind>(kind), *a);
}
