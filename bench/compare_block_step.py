#!/usr/bin/env python3
"""Training-step benchmark, seqvit against its PyTorch peers, in one run.

For each sequence length N and precision it runs, back to back on the same machine:
  seqvit   build/bench/bench_block_step --json   (ClimaX blocks, flash attention, AdamW step)
  torch1   Debian's /usr/bin/python3 (torch 1.13) bench/torch_block_step.py --attention manual
  torch2   PyTorch 2.x (scripts/install_torch2.sh; default /opt/torch2/bin/python) with
           --attention sdpa, when that interpreter exists
and prints one markdown table: GFLOP/s with FLOPs = 3 L (24 N D^2 + 4 N^2 D), tokens/s, peak
RSS, and seqvit's ratio against the stronger peer. The PyTorch steps are forward + backward only
(no optimizer); seqvit's include the AdamW update, so the ratio slightly favours PyTorch.

  bench/compare_block_step.py --ns 1024,8192,16384 --dtypes fp32,bf16 [--json out.jsonl]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(cmd, timeout):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"error": "timeout"}]
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 and not rows:
        return [{"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ns", default="1024,2048,4096,8192,16384")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--seqvit-bin", default=os.path.join(ROOT, "build", "bench", "bench_block_step"))
    ap.add_argument("--torch1-python", default="/usr/bin/python3")
    ap.add_argument("--torch2-python", default="/opt/torch2/bin/python")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed seqvit steps")
    ap.add_argument("--torch-max-s", type=float, default=60.0)
    ap.add_argument("--mem-limit-gib", type=float, default=20.0)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--json", help="also append every row to this JSON-lines file")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    peer = os.path.join(HERE, "torch_block_step.py")
    have_t2 = os.path.exists(a.torch2_python)
    table = []
    for dtype in a.dtypes.split(","):
        for n in [int(x) for x in a.ns.split(",")]:
            row = {"n": n, "dtype": dtype}
            cmd = [a.seqvit_bin, "--n", str(n), "--steps", str(a.steps), "--json"]
            if dtype == "bf16":
                cmd.append("--bf16")
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            out = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
            row["seqvit"] = out[0] if out else {"error": p.stderr.strip()[-200:]}
            if not a.skip_torch:
                common = ["--ns", str(n), "--dtype", dtype, "--threads", str(a.threads),
                          "--max-s", str(a.torch_max_s), "--target-s", "5",
                          "--mem-limit-gib", str(a.mem_limit_gib), "--json-only"]
                row["torch1"] = run_json([a.torch1_python, peer, "--attention", "manual"] + common, 1800)[0]
                if have_t2:
                    row["torch2"] = run_json([a.torch2_python, peer, "--attention", "sdpa"] + common, 1800)[0]
            table.append(row)
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(row) + "\n")

    def cell(r):
        if not r:
            return "—", "—"
        if "error" in r or r.get("status") not in (None, "ok"):
            return r.get("status") or r.get("error", "?")[:20], "—"
        return f"{r['gflops']:.1f}", f"{r['peak_rss_gib']:.2f}"

    print()
    print("| N | dtype | seqvit GFLOP/s | seqvit tok/s | seqvit peak GiB | torch 1.13 GFLOP/s | GiB | "
          "torch 2.x sdpa GFLOP/s | GiB | seqvit / stronger peer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        s = row["seqvit"]
        sg, sm = cell(s)
        t1g, t1m = cell(row.get("torch1"))
        t2g, t2m = cell(row.get("torch2"))
        peers = [r["gflops"] for r in (row.get("torch1"), row.get("torch2"))
                 if r and "gflops" in r and r.get("status", "ok") == "ok"]
        ratio = f"{s['gflops'] / max(peers):.2f}x" if peers and "gflops" in s else "peer failed"
        tok = f"{s['tokens_per_s']:.0f}" if "tokens_per_s" in s else "—"
        print(f"| {row['n']} | {row['dtype']} | {sg} | {tok} | {sm} | {t1g} | {t1m} | {t2g} | {t2m} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
