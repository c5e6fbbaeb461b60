// The plugin's entry points, looked up by backend/device.cpp with dlsym (docs/cuda.md).
// Placeholder until the CudaDevice class lands: reports how many GPUs the runtime sees.
#include <cuda_runtime.h>

#include <string>

extern "C" __attribute__((visibility("default"))) int seqvit_cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    return 0;
  }
  return n;
}
