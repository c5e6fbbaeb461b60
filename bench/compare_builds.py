#!/usr/bin/env python3
"""Speed of one build against another on bench_block_step, measured the way a noisy shared
machine allows: the two builds' runs alternate (base, new, base, new, ...) for each
configuration, every run is printed, and the medians and their ratio decide.

    bench/compare_builds.py BASE_BUILD_DIR NEW_BUILD_DIR [--runs 3]

Configurations: N = 8,192 fp32 and N = 16,384 bf16 (the block-step shape of docs/benchmarks.md).
Ratio = new GFLOP/s median / base GFLOP/s median; within 0.95..1.05 counts as unchanged.
"""
import argparse
import re
import statistics
import subprocess
import sys

CONFIGS = [["--n", "8192"], ["--n", "16384", "--bf16"]]


def run(build, args):
    out = subprocess.run([f"{build}/bench/bench_block_step", *args], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"([0-9.]+) s/step, .*?([0-9.]+) GFLOP/s", out)
    if not m:
        sys.exit(f"unexpected output from {build}: {out}")
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    for cfg in CONFIGS:
        rates = {"base": [], "new": []}
        for r in range(a.runs):
            for name, build in (("base", a.base), ("new", a.new)):
                secs, gf = run(build, cfg)
                rates[name].append(gf)
                print(f"{' '.join(cfg):>18}  run {r + 1}  {name:4}  {secs:7.3f} s/step  "
                      f"{gf:7.1f} GFLOP/s", flush=True)
        mb, mn = statistics.median(rates["base"]), statistics.median(rates["new"])
        ratio = mn / mb
        print(f"{' '.join(cfg):>18}  median base {mb:.1f}  new {mn:.1f} GFLOP/s  "
              f"ratio {ratio:.3f}  {'unchanged' if 0.95 <= ratio <= 1.05 else 'CHANGED'}\n",
              flush=True)


if __name__ == "__main__":
    main()
