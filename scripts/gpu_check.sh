#!/usr/bin/env bash
# The GPU run of the CUDA issue (docs/cuda.md "Running it on a GPU machine"), on a machine with
# an NVIDIA GPU, the CUDA toolkit, cmake, ninja and g++ but none of Debian's -dev packages:
#   1. unpacks .gpu-debs/*.deb (scripts/gpu_bundle.sh) into a prefix of their own ($DEPS);
#   2. configures and builds seqvit in build-gpu/ with every core, against that prefix;
#   3. runs SEQVIT_REQUIRE_GPU=1 ctest -L gpu (every GPU test; a skip is a failure);
#   4. runs the GPU benchmark suite (bench/gpu_suite.py; --quick with GPU_QUICK=1);
#   5. copies the logs and JSON to $OUT (default ./gpu-out).
# Each step's log is kept; the script goes on after a failing step and exits non-zero at the end.
# STOP_AFTER=configure|build stops early (to check the steps on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
DEPS="${DEPS:-/tmp/seqvit-deps}"
mkdir -p "$OUT" "$DEPS"
status=0
step() { echo "== $1 ($(date -u +%H:%M:%S))" | tee -a "$OUT/steps.log"; }

step "unpack"
for d in .gpu-debs/*.deb; do dpkg -x "$d" "$DEPS"; done
MA=x86_64-linux-gnu
export PKG_CONFIG_PATH="$DEPS/usr/lib/$MA/pkgconfig:$DEPS/usr/share/pkgconfig"
export LD_LIBRARY_PATH="$DEPS/usr/lib/$MA:$DEPS/usr/lib/$MA/openmpi/lib:$DEPS/usr/lib/$MA/hdf5/serial:${LD_LIBRARY_PATH:-}"
export OPAL_PREFIX="$DEPS/usr"          # relocates the unpacked Open MPI
export PATH="$DEPS/usr/bin:/usr/local/cuda/bin:$PATH"
# the pkg-config files name /usr: point them at the prefix
sed -i -e "s|=/usr|=$DEPS/usr|g" -e "s| -I/usr| -I$DEPS/usr|g" -e "s| -L/usr| -L$DEPS/usr|g" \
  "$DEPS"/usr/lib/$MA/pkgconfig/*.pc "$DEPS"/usr/share/pkgconfig/*.pc 2>/dev/null || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

step "configure"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$DEPS/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DMPI_CXX_COMPILER=/bin/false -DMPI_CXX_HEADER_DIR="$DEPS/usr/lib/$MA/openmpi/include" \
  -DMPI_CXX_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$DEPS/usr/lib/$MA/libmpi.so.40" \
  -DMPIEXEC_EXECUTABLE="$DEPS/usr/bin/mpirun.openmpi" \
  > "$OUT/configure.log" 2>&1 || { status=1; tail -30 "$OUT/configure.log"; }

[ "${STOP_AFTER:-}" = configure ] && exit $status
step "build"
cmake --build build-gpu -j "$(nproc)" > "$OUT/build.log" 2>&1 || { status=1; tail -30 "$OUT/build.log"; }

[ "${STOP_AFTER:-}" = build ] && exit $status
step "ctest -L gpu"
SEQVIT_REQUIRE_GPU=1 ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 600 \
  > "$OUT/ctest-gpu.log" 2>&1 || status=1
tail -15 "$OUT/ctest-gpu.log"

step "benchmarks"
python3 bench/gpu_suite.py --build build-gpu --out "$OUT/bench" ${GPU_QUICK:+--quick} \
  > "$OUT/bench.log" 2>&1 || status=1
tail -40 "$OUT/bench.log"

step "done (status $status)"
exit $status
