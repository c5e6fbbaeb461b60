#!/usr/bin/env python3
"""PyTorch peer for seqvit's transformer-block training-step benchmark.

One training step = forward of a [1, N, D] token sequence through L ClimaX/timm blocks
(pre-norm, qkv Linear with bias, proj, MLP ratio 4, exact erf GELU, LayerNorm eps 1e-5), the
loss mean((out - target)^2), and backward (gradients of every parameter; the input does not
require grad). NO optimizer update is applied (gradients are set to None before each step), so
the step is forward + backward only, like seqvit's `bench` block step.

Attention:
  manual  softmax(Q K^T / sqrt(d)) V with the N x N score matrix materialised (all torch 1.13 has)
  sdpa    torch.nn.functional.scaled_dot_product_attention (torch >= 2.0; flash/memory-efficient
          CPU kernels where the build has them)
Precision: fp32, or bf16 = torch.autocast('cpu', dtype=torch.bfloat16) around forward + loss.

FLOPs per step = 3 * L * (24 N D^2 + 4 N^2 D)   (docs/planner.md: training step ~ 3x forward)

Each N runs in a fresh child process (the same interpreter), so peak RSS
(getrusage(RUSAGE_SELF).ru_maxrss) is per configuration. The child limits its address space with
RLIMIT_AS to (its virtual size after importing torch and building the model) + --mem-limit-gib,
so a too-large N fails cleanly with 'OOM' instead of taking the machine down.

Usage (Debian's torch 1.13, manual attention):
  /usr/bin/python3 bench/torch_block_step.py --attention manual --dtype fp32 --ns 1024,2048,4096
PyTorch 2.x peer (scripts/install_torch2.sh prints its python):
  /opt/torch2/bin/python bench/torch_block_step.py --attention sdpa --dtype bf16
Output: one JSON object per line (prefix-free, parseable with json.loads per line that starts
with '{'), then a readable table.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time


def build_blocks(torch, D, heads, L, mlp_ratio, attention):
    nn = torch.nn
    F = torch.nn.functional

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(D, 3 * D, bias=True)
            self.proj = nn.Linear(D, D)

        def forward(self, x):
            B, N, _ = x.shape
            d = D // heads
            qkv = self.qkv(x).reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            if attention == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v)
            else:
                a = (q @ k.transpose(-2, -1)) * (d ** -0.5)
                a = a.softmax(dim=-1)
                o = a @ v
            return self.proj(o.transpose(1, 2).reshape(B, N, D))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(D, eps=1e-5)
            self.attn = Attention()
            self.norm2 = nn.LayerNorm(D, eps=1e-5)
            hidden = int(round(D * mlp_ratio))
            self.fc1 = nn.Linear(D, hidden)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(hidden, D)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    return nn.Sequential(*[Block() for _ in range(L)])


def vm_size_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child(a):
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    res = {"torch": torch.__version__, "attention": a.attention, "dtype": a.dtype,
           "threads": a.threads, "N": a.n, "D": a.dim, "heads": a.heads, "layers": a.layers,
           "batch": 1, "optimizer": "none (forward+backward only)"}
    try:
        model = build_blocks(torch, a.dim, a.heads, a.layers, 4.0, a.attention)
        x = torch.randn(1, a.n, a.dim)
        target = torch.randn(1, a.n, a.dim)
        if a.mem_limit_gib > 0:
            lim = vm_size_bytes() + int(a.mem_limit_gib * 2 ** 30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

        def step():
            for p in model.parameters():
                p.grad = None
            if a.dtype == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(x)
                    loss = ((out.float() - target) ** 2).mean()
            else:
                out = model(x)
                loss = ((out - target) ** 2).mean()
            loss.backward()
            return float(loss)

        t0 = time.perf_counter()
        step()  # warm-up
        warm = time.perf_counter() - t0
        times = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            el = time.perf_counter() - start
            per = el / len(times)
            if len(times) >= a.min_steps and (el >= a.target_s or el + per > a.max_s):
                break
        sec = sum(times) / len(times)
        flops = 3 * a.layers * (24 * a.n * a.dim ** 2 + 4 * a.n ** 2 * a.dim)
        res.update({"status": "ok", "warmup_s": round(warm, 4), "steps_timed": len(times),
                    "sec_per_step": sec, "min_sec_per_step": min(times),
                    "tokens_per_s": a.n / sec, "gflops": flops / sec / 1e9})
    except (MemoryError, RuntimeError) as e:
        msg = str(e).split("\n")[0]
        oom = isinstance(e, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower()
        res.update({"status": "OOM" if oom else "error", "error": msg[:300]})
    res["rss_after_import_gib"] = round(rss0, 3)
    res["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)
    print(json.dumps(res), flush=True)


def check_sdpa_matches_manual(a):
    """Small-N check that the two attention modes compute the same step (fp32)."""
    import torch
    torch.set_num_threads(a.threads)
    outs = []
    for mode in ("manual", "sdpa"):
        torch.manual_seed(1)
        m = build_blocks(torch, a.dim, a.heads, a.layers, 4.0, mode).double()
        x = torch.randn(1, 96, a.dim, dtype=torch.float64)
        y = m(x)
        (y ** 2).mean().backward()
        outs.append((y.detach(), [p.grad for p in m.parameters()]))
    err = max(float((outs[0][0] - outs[1][0]).abs().max()),
              *[float((g0 - g1).abs().max()) for g0, g1 in zip(outs[0][1], outs[1][1])])
    return err


def main():
    ap = argparse.ArgumentParser(description="PyTorch transformer-block training-step peer")
    ap.add_argument("--ns", default="1024,2048,4096,8192,16384,32768,65536")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--attention", choices=["manual", "sdpa"], default="manual")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--min-steps", type=int, default=2, help="timed steps at least")
    ap.add_argument("--target-s", type=float, default=10.0,
                    help="keep timing steps until this many seconds have passed ...")
    ap.add_argument("--max-s", type=float, default=60.0,
                    help="... unless one more step would exceed this (min-steps always run)")
    ap.add_argument("--mem-limit-gib", type=float, default=20.0,
                    help="RLIMIT_AS headroom in the child over its size after setup (0 = none)")
    ap.add_argument("--child-timeout-s", type=float, default=900.0)
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return 0

    import torch
    has_sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    info = f"# torch {torch.__version__} ({sys.executable}), attention={a.attention}, dtype={a.dtype}, " \
           f"threads={a.threads}, D={a.dim}, heads={a.heads}, layers={a.layers}, batch=1, " \
           f"step=forward+backward of mean((out-target)^2), no optimizer"
    print(info, file=sys.stderr if a.json_only else sys.stdout, flush=True)
    if a.attention == "sdpa":
        if not has_sdpa:
            print(f"error: torch {torch.__version__} has no scaled_dot_product_attention "
                  "(needs torch >= 2.0; see scripts/install_torch2.sh)", file=sys.stderr)
            return 2
        err = check_sdpa_matches_manual(a)
        print(f"# sdpa vs manual (float64, N=96, output and all grads) max abs diff {err:.2e}",
              file=sys.stderr if a.json_only else sys.stdout, flush=True)
        if err > 1e-10:
            print("error: sdpa and manual attention disagree", file=sys.stderr)
            return 1

    rows = []
    for n in [int(s) for s in a.ns.split(",") if s]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n", str(n)]
        for k in ("dtype", "attention", "threads", "dim", "heads", "layers", "min_steps",
                  "target_s", "max_s", "mem_limit_gib"):
            cmd += ["--" + k.replace("_", "-"), str(getattr(a, k))]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.child_timeout_s)
            lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
            if lines:
                r = json.loads(lines[-1])
            else:
                tail = (p.stderr or "").strip().splitlines()[-1:] or [""]
                # killed by a signal (e.g. the kernel OOM killer) or crashed
                r = {"N": n, "status": "OOM" if p.returncode in (-9, 137) else "error",
                     "error": f"child exit {p.returncode}: {tail[0][:300]}"}
        except subprocess.TimeoutExpired:
            r = {"N": n, "status": "TIMEOUT", "error": f"> {a.child_timeout_s} s"}
        r.setdefault("torch", torch.__version__)
        r.setdefault("attention", a.attention)
        r.setdefault("dtype", a.dtype)
        print(json.dumps(r), flush=True)
        rows.append(r)

    if not a.json_only:
        print()
        print(f"torch {torch.__version__}  attention={a.attention}  dtype={a.dtype}  "
              f"threads={a.threads}  D={a.dim} heads={a.heads} L={a.layers} B=1")
        print(f"{'N':>7} {'s/step':>9} {'min s':>9} {'tokens/s':>10} {'GFLOP/s':>8} {'peak RSS GiB':>12}  status")
        for r in rows:
            if r.get("status") == "ok":
                print(f"{r['N']:>7} {r['sec_per_step']:>9.3f} {r['min_sec_per_step']:>9.3f} {r['tokens_per_s']:>10.0f} "
                      f"{r['gflops']:>8.1f} {r['peak_rss_gib']:>12.2f}  ok ({r['steps_timed']} steps)")
            else:
                rss = r.get("peak_rss_gib")
                print(f"{r['N']:>7} {'-':>9} {'-':>9} {'-':>10} {'-':>8} "
                      f"{(f'{rss:.2f}' if rss is not None else '-'):>12}  {r.get('status')}: "
                      f"{r.get('error', '')[:80]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
