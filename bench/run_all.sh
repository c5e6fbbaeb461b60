#!/usr/bin/env bash
# Runs the engine's benchmarks one after another (never in parallel: 2 cores) and leaves the
# raw output in ${OUT:-bench-results}/. docs/benchmarks.md records what came out.
#   bench/run_all.sh [--quick]     --quick: N up to 8192 only
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results}"
BUILD="${BUILD:-build}"
mkdir -p "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
MAXN=65536; NS=1024,2048,4096,8192,16384; BIG="32768 65536"
if [ "${1:-}" = "--quick" ]; then MAXN=8192; NS=1024,4096,8192; BIG=""; fi
echo "== GEMM and bandwidth kernels"; "$BUILD"/bench/bench_gemm | tee "$OUT/gemm.txt"
echo "== memory-bound kernels (Google Benchmark)"; "$BUILD"/bench/gbench_kernels | tee "$OUT/gbench_kernels.txt"
echo "== flash attention";  "$BUILD"/bench/bench_flash_attention --max-n "$MAXN" | tee "$OUT/flash.txt"
echo "== training step vs PyTorch"
python3 bench/compare_block_step.py --seqvit-bin "$BUILD/bench/bench_block_step" --ns "$NS" --dtypes fp32,bf16 --json "$OUT/step.jsonl" | tee "$OUT/step.txt"
for n in $BIG; do
  for p in "" "--bf16"; do
    "$BUILD"/bench/bench_block_step --n "$n" --steps 1 $p | tee -a "$OUT/step_long.txt"
  done
done
# As root, mpirun needs the OMPI_* variables of docs/parallelism.md "Running the MPI tests".
echo "== SP communication volume vs the formulas (one step, tiny shape; bytes, not time)"
for np in 2 4; do
  mpirun -np "$np" --oversubscribe "$BUILD"/bench/bench_sp_comm --n 64 --embed-dim 64 --heads 4 \
    --depth 2 --batch 2 --check --csv "$OUT/sp_comm_np$np.csv" | tee "$OUT/sp_comm_np$np.txt"
done
