#!/usr/bin/env python3
"""PyTorch 2.x peer of seqvit's GPU benchmarks (docs/benchmarks.md "GPU"), on the same card.

  attention  torch.nn.functional.scaled_dot_product_attention, non-causal, bf16, tried on each
             SDPA backend (flash, cudnn, efficient) with torch.nn.attention.sdpa_kernel; every
             backend's forward and backward TFLOP/s is printed and the fastest is counted.
             FLOPs: forward 4 N^2 d per (batch, head), backward 2.5x that. Shapes as
             bench_attention: heads = hidden / d, batch = max(1, tokens / N).
  step       one training step (forward, backward, AdamW) of L pre-norm ViT blocks (timm/ClimaX:
             LayerNorm, qkv Linear, SDPA, proj, MLP ratio 4 with exact GELU) on [1, N, D] tokens
             under torch.autocast(bf16), for each SDPA backend; tokens/s, TFLOP/s with the block
             count 3 L (24 N D^2 + 4 N^2 D), and peak memory (torch.cuda.max_memory_allocated).

Each configuration runs in a child process, so one that runs out of memory reports OOM and the
next starts clean. Output: one JSON object per line (lines starting with '{'), then a table.

  python bench/torch_gpu_bench.py attention --n 4096,8192 --head-dim 64,128
  python bench/torch_gpu_bench.py step --n 4096,16384 --dim 1024 --heads 16 --depth 8
"""

import argparse
import json
import subprocess
import sys
import time

BACKENDS = ["flash", "cudnn", "efficient"]


def ints(s):
    out = []
    for item in s.split(","):
        mult = 1024 if item[-1:] in ("K", "k") else 1
        out.append(int(item.rstrip("Kk")) * mult)
    return out


def sdpa_context(torch, backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kind = {"flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    return sdpa_kernel([kind])


def timed(torch, fn, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def child_attention(a):
    import torch
    F = torch.nn.functional
    N, d, backend = a.n[0], a.head_dim[0], a.backend
    H, B = max(1, a.hidden // d), max(1, a.tokens // N)
    g = torch.Generator(device="cuda").manual_seed(1)
    mk = lambda: torch.randn(B, H, N, d, device="cuda", dtype=torch.bfloat16, generator=g,
                             requires_grad=True)
    q, k, v = mk(), mk(), mk()
    do = torch.randn(B, H, N, d, device="cuda", dtype=torch.bfloat16, generator=g)
    with sdpa_context(torch, backend):
        o = F.scaled_dot_product_attention(q, k, v)
        fwd = timed(torch, lambda: F.scaled_dot_product_attention(q, k, v), a.iters, a.warmup)

        def bwd():
            q.grad = k.grad = v.grad = None
            F.scaled_dot_product_attention(q, k, v).backward(do)
        fwd_bwd = timed(torch, bwd, a.iters, a.warmup)
    flops = 4.0 * N * N * d * H * B
    bwd_s = max(fwd_bwd - fwd, 1e-12)
    return {"bench": "attention", "impl": "torch", "backend": backend, "n": N, "head_dim": d,
            "batch": B, "heads": H, "fwd_s": fwd, "bwd_s": bwd_s,
            "fwd_tflops": flops / fwd / 1e12, "bwd_tflops": 2.5 * flops / bwd_s / 1e12,
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}


def child_step(a):
    import torch
    nn, F = torch.nn, torch.nn.functional
    N, D, Hh, L, backend = a.n[0], a.dim, a.heads, a.depth, a.backend

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, x):
            B, n, _ = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(B, n, 3, Hh, D // Hh).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
            x = x + self.proj(o.transpose(1, 2).reshape(B, n, D))
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    model = nn.Sequential(*[Block() for _ in range(L)]).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randn(1, N, D, device="cuda")
    y = torch.randn(1, N, D, device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.mse_loss(model(x).float(), y)
        loss.backward()
        opt.step()

    with sdpa_context(torch, backend):
        step()
        torch.cuda.reset_peak_memory_stats()
        secs = timed(torch, step, a.iters, a.warmup)
    flops = 3.0 * L * (24 * N * D * D + 4 * N * N * D)
    return {"bench": "step", "impl": "torch", "backend": backend, "n": N, "dim": D, "heads": Hh,
            "depth": L, "step_s": secs, "tokens_per_s": N / secs, "tflops": flops / secs / 1e12,
            "peak_device_gib": torch.cuda.max_memory_allocated() / 2**30,
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["attention", "step"])
    ap.add_argument("--n", type=ints, default=ints("4K,8K,16K,32K,64K"))
    ap.add_argument("--head-dim", type=ints, default=[64, 128])
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)  # child
    a = ap.parse_args()
    if a.backend:  # a child: one configuration
        try:
            r = child_attention(a) if a.what == "attention" else child_step(a)
        except Exception as e:  # OOM or a backend that does not support the shape
            r = {"bench": a.what, "impl": "torch", "backend": a.backend, "n": a.n[0],
                 "error": type(e).__name__ + ": " + str(e).splitlines()[0][:200]}
        print(json.dumps(r), flush=True)
        return
    rows = []
    dims = a.head_dim if a.what == "attention" else [None]
    for d in dims:
        for n in a.n:
            for b in BACKENDS:
                cmd = [sys.executable, __file__, a.what, "--n", str(n), "--backend", b,
                       "--hidden", str(a.hidden), "--tokens", str(a.tokens), "--dim", str(a.dim),
                       "--heads", str(a.heads), "--depth", str(a.depth), "--iters", str(a.iters),
                       "--warmup", str(a.warmup)]
                if d:
                    cmd += ["--head-dim", str(d)]
                out = subprocess.run(cmd, capture_output=True, text=True).stdout
                line = next((l for l in out.splitlines() if l.startswith("{")), None)
                r = json.loads(line) if line else {"bench": a.what, "impl": "torch",
                                                   "backend": b, "n": n, "error": "no output"}
                print(json.dumps(r), flush=True)
                rows.append(r)
    for r in rows:
        if "error" in r:
            print(f"  {r['bench']} N={r['n']} {r['backend']}: {r['error']}")
        elif r["bench"] == "attention":
            print(f"  attention N={r['n']} d={r['head_dim']} {r['backend']}: "
                  f"fwd {r['fwd_tflops']:.1f} bwd {r['bwd_tflops']:.1f} TFLOP/s")
        else:
            print(f"  step N={r['n']} {r['backend']}: {r['tokens_per_s']:.0f} tokens/s, "
                  f"{r['tflops']:.1f} TFLOP/s, peak {r['peak_device_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
