// The K == 0 case of Blas's products (blas.h): C = beta C, an empty sum. beta == 0 writes
// zeros without reading C (so NaNs in C are cleared, as BLAS and the CPU backend do).
#include "backend/cuda/blas.h"
#include "backend/cuda/check.h"

namespace seqvit::backend::cuda {
namespace {

// One thread per element of the batch of [rows, cols] matrices, flattened (64-bit index).
__global__ void scale_matrix_kernel(float* C, int64_t rows, int64_t cols, int64_t ldc,
                                    int64_t batch, int64_t sc, float beta) {
  const int64_t n = batch * rows * cols;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = e / (rows * cols), r = (e / cols) % rows, c = e % cols;
    float* x = C + p * sc + r * ldc + c;
    *x = beta == 0.f ? 0.f : beta * *x;
  }
}

}  // namespace

void scale_matrix(float* C, int64_t rows, int64_t cols, int64_t ldc, int64_t batch, int64_t sc,
                  float beta, cudaStream_t s) {
  const int64_t n = batch * rows * cols;
  if (n <= 0 || beta == 1.f) return;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < 65536 ? blocks : 65536);  // grid-stride
  scale_matrix_kernel<<<grid, threads, 0, s>>>(C, rows, cols, ldc, batch, sc, beta);
  SEQVIT_CUDA_LAUNCHED("gemm (K = 0): C = beta C", "M,N,ldc,batch", rows, cols, ldc, batch);
}

}  // namespace seqvit::backend::cuda
