#!/usr/bin/env python3
"""The GPU benchmark suite of the CUDA issue (docs/benchmarks.md "GPU"): seqvit and PyTorch 2.x
on the same card in one run, results as JSON lines and as a markdown section of
docs/benchmarks.md (between the markers <!-- gpu-suite:begin --> and <!-- gpu-suite:end -->).

  python bench/gpu_suite.py --build build --out gpu-results [--quick] [--docs docs/benchmarks.md]

Parts (each prints every figure as it goes):
  1. attention forward/backward TFLOP/s, bf16, head dim 64 and 128, N = 4K .. 64K:
     build/bench/bench_attention --device cuda  beside  bench/torch_gpu_bench.py attention
     (every SDPA backend; the fastest counted);
  2. a training step (forward, backward, AdamW), bf16, N = 4K .. 64K, of ViT-Base (768, 12 heads,
     12 blocks), ViT-Large (1024, 16, 24) and the ClimaX default (1024, 16, 8): tokens/s, MFU
     against --peak-tflops (989: H100 SXM bf16 dense), peak device memory; PyTorch beside;
  3. the longest N (a multiple of 4096) whose ClimaX step fits the card, with and without
     activation recomputation (doubling, then bisection);
  4. one full training step of exact attention at N = 188,416 (the ClimaX shape, recomputation
     if it does not fit without), its time and memory.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {"ViT-Base": (768, 12, 12), "ViT-Large": (1024, 16, 24), "ClimaX": (1024, 16, 8)}


def run(cmd, log):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    log.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}(exit {p.returncode}, "
              f"{time.time() - t0:.1f} s)\n")
    log.flush()
    return p


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def seqvit_step(build, n, shape, log, recompute=False, steps=3, warmup=1, peak=989.0):
    D, H, L = SHAPES[shape]
    cmd = [f"{build}/bench/bench_block_step", "--device", "cuda", "--bf16", "--json", "--n",
           str(n), "--dim", str(D), "--heads", str(H), "--depth", str(L), "--steps", str(steps),
           "--warmup", str(warmup), "--peak-tflops", str(peak)]
    if recompute:
        cmd.append("--recompute")
    p = run(cmd, log)
    rows = json_lines(p.stdout)
    if p.returncode != 0 or not rows:
        return {"bench": "step", "impl": "seqvit", "shape": shape, "n": n,
                "recompute": recompute, "error": (p.stderr or p.stdout).strip()[-300:]}
    r = rows[0]
    r.update({"bench": "step", "shape": shape})
    return r


def fits(build, n, recompute, log):
    r = seqvit_step(build, n, "ClimaX", log, recompute, steps=1, warmup=0)
    return "error" not in r, r


def longest(build, recompute, log, limit):
    lo, hi, n = 0, None, 65536
    while n <= limit:  # doubling
        ok, _ = fits(build, n, recompute, log)
        if not ok:
            hi = n
            break
        lo, n = n, 2 * n
    if hi is None:
        return lo, True
    while hi - lo > 4096:  # bisection on multiples of 4096
        mid = (lo + hi) // 2 // 4096 * 4096
        ok, _ = fits(build, mid, recompute, log)
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo, False


def markdown(rows, gpu):
    out = [f"Card: {gpu}. Measured by `bench/gpu_suite.py` "
           f"({time.strftime('%Y-%m-%d')}); every figure below comes from that run.", ""]
    att = [r for r in rows if r.get("bench") == "attention" and "error" not in r]
    if att:
        out += ["| N | d | seqvit fwd | seqvit bwd | torch fwd (best) | torch bwd (best) |",
                "|---|---|---|---|---|---|"]
        keys = sorted({(r["n"], r["head_dim"]) for r in att}, key=lambda k: (k[1], k[0]))
        for n, d in keys:
            s = [r for r in att if r["impl"] == "seqvit" and r["n"] == n and r["head_dim"] == d]
            t = [r for r in att if r["impl"] == "torch" and r["n"] == n and r["head_dim"] == d]
            bf = max(t, key=lambda r: r["fwd_tflops"]) if t else None
            bb = max(t, key=lambda r: r["bwd_tflops"]) if t else None
            out.append(f"| {n} | {d} | {s[0]['fwd_tflops']:.0f} | {s[0]['bwd_tflops']:.0f} | "
                       + (f"{bf['fwd_tflops']:.0f} ({bf['backend']}) | "
                          f"{bb['bwd_tflops']:.0f} ({bb['backend']}) |" if t else "— | — |")
                       if s else f"| {n} | {d} | — | — | — | — |")
        out.append("")
    st = [r for r in rows if r.get("bench") == "step"]
    if st:
        out += ["| shape | N | seqvit tokens/s | MFU | peak GiB | torch tokens/s (best) | "
                "peak GiB | seqvit / torch |", "|---|---|---|---|---|---|---|---|"]
        for shape in SHAPES:
            for n in sorted({r["n"] for r in st if r.get("shape") == shape}):
                s = [r for r in st if r["impl"] == "seqvit" and r.get("shape") == shape
                     and r["n"] == n and not r.get("recompute")]
                t = [r for r in st if r["impl"] == "torch" and r.get("shape") == shape
                     and r["n"] == n and "error" not in r]
                if not s:
                    continue
                s = s[0]
                if "error" in s:
                    out.append(f"| {shape} | {n} | failed: {s['error'][:60]} | | | | | |")
                    continue
                b = max(t, key=lambda r: r["tokens_per_s"]) if t else None
                out.append(
                    f"| {shape} | {n} | {s['tokens_per_s']:.0f} | {100 * s['mfu']:.1f}% | "
                    f"{s['peak_device_gib']:.2f} | "
                    + (f"{b['tokens_per_s']:.0f} ({b['backend']}) | {b['peak_device_gib']:.2f} | "
                       f"{s['tokens_per_s'] / b['tokens_per_s']:.2f}x |" if b else "— | — | — |"))
        out.append("")
    for r in rows:
        if r.get("bench") == "longest":
            out.append(f"- Longest ClimaX N on the card, {'with' if r['recompute'] else 'without'}"
                       f" recomputation: {r['n']}" + (" (the search limit)" if r["at_limit"] else ""))
        if r.get("bench") == "step" and r.get("n") == 188416 and "error" not in r:
            out.append(f"- One training step of exact attention at N = 188,416 (ClimaX shape"
                       f"{', recomputation' if r.get('recompute') else ''}): {r['step_s']:.2f} s, "
                       f"peak {r['peak_device_gib']:.2f} GiB")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="gpu-results")
    ap.add_argument("--docs", default=None, help="write the markdown section into this file")
    ap.add_argument("--quick", action="store_true", help="N = 4K, 16K only; no search")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--torch-python", default=sys.executable)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "suite.log"), "w")
    rows = []
    ns = "4096,16384" if a.quick else "4096,8192,16384,32768,65536"

    def keep(new):
        for r in new:
            print(json.dumps(r), flush=True)
        rows.extend(new)

    p = run([f"{a.build}/bench/bench_attention", "--device", "cuda", "--n", ns, "--head-dim",
             "64,128", "--json", os.path.join(a.out, "attention.json")], log)
    print(p.stdout, file=sys.stderr)
    keep(json_lines(open(os.path.join(a.out, "attention.json")).read())
         if os.path.exists(os.path.join(a.out, "attention.json")) else [])
    here = os.path.dirname(os.path.abspath(__file__))
    keep(json_lines(run([a.torch_python, f"{here}/torch_gpu_bench.py", "attention", "--n", ns],
                        log).stdout))
    for shape, (D, H, L) in SHAPES.items():
        for n in map(int, ns.split(",")):
            keep([seqvit_step(a.build, n, shape, log, peak=a.peak_tflops)])
            t = json_lines(run([a.torch_python, f"{here}/torch_gpu_bench.py", "step", "--n", str(n),
                                "--dim", str(D), "--heads", str(H), "--depth", str(L)], log).stdout)
            for r in t:
                r["shape"] = shape
            keep(t)
    if not a.quick:
        for rc in (False, True):
            n, at_limit = longest(a.build, rc, log, limit=1 << 20)
            keep([{"bench": "longest", "shape": "ClimaX", "recompute": rc, "n": n,
                   "at_limit": at_limit}])
        r = seqvit_step(a.build, 188416, "ClimaX", log, steps=1, warmup=0, peak=a.peak_tflops)
        if "error" in r:
            r = seqvit_step(a.build, 188416, "ClimaX", log, recompute=True, steps=1, warmup=0,
                            peak=a.peak_tflops)
        keep([r])
    with open(os.path.join(a.out, "results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    gpu = next((r["gpu"] for r in rows if "gpu" in r), "unknown (no PyTorch result)")
    md = markdown(rows, gpu)
    open(os.path.join(a.out, "results.md"), "w").write(md)
    print(md)
    if a.docs:
        text = open(a.docs).read()
        b, e = "<!-- gpu-suite:begin -->", "<!-- gpu-suite:end -->"
        if b in text and e in text:
            text = text[:text.index(b) + len(b)] + "\n" + md + text[text.index(e):]
            open(a.docs, "w").write(text)


if __name__ == "__main__":
    main()
