#!/bin/sh
# Checks the logic of the CUDA ops (src/backend/cuda, ops.h) without a GPU: compiles their .cu
# files as host C++ against an emulation of the CUDA subset they use (fake/cuda_runtime.h: one
# std::thread per CUDA thread, a block at a time, barriers for __syncthreads and the warp
# shuffles), and compares every op with the CPU backend (ops_vs_cpu.cpp). docs/cuda.md
# "Checking the kernels without a GPU" says what this does and does not show.
#
#   scripts/cuda_emulation/run.sh [BUILD_DIR]     (default build-dev; needs seqvit_backend built)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build-dev}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen/backend/cuda"
# the kernels under test (the attention and GEMM files use CUDA features not emulated here)
for f in elementwise norms patches sp fused adamw; do
  /usr/bin/python3 "$here/transform.py" "$root/src/backend/cuda/$f.cu" "$work/gen/$f.cpp"
done
/usr/bin/python3 "$here/transform.py" "$root/src/backend/cuda/reduce.cuh" \
  "$work/gen/backend/cuda/reduce.cuh"
flags="-std=c++20 -O1 -Wall -Wno-unknown-pragmas -I$here/fake -I$work/gen -I$build/layers/backend"
for f in "$work"/gen/*.cpp "$root/src/backend/cuda/require.cpp" "$here/ops_vs_cpu.cpp"; do
  nice g++ $flags -c "$f" -o "$work/$(basename "$f" .cpp).o"
done
nice g++ -o "$work/ops_vs_cpu" "$work"/*.o "$build/libseqvit_backend.a" \
  "$build/libseqvit_kernels.a" "$build/libseqvit_core.a" -ldnnl -lfmt -fopenmp -ldl -lpthread
# The CPU's portable path: its AVX-512 clones are FMA-contracted by GCC (docs/cuda.md).
SEQVIT_NO_AVX512=1 OMP_NUM_THREADS=1 "$work/ops_vs_cpu"
