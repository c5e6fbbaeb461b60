#!/usr/bin/env python3
"""PyTorch / DeepSpeed peer for seqvit's distributed benchmarks (sequence and data parallelism).

One training step of L pre-norm ViT blocks (the block of bench/torch_block_step.py: LayerNorm eps
1e-5, qkv Linear with bias, proj, MLP ratio 4, exact erf GELU; attention by
scaled_dot_product_attention) on CPU with torch.distributed (backend gloo), one thread per rank.

Modes (--mode):
  ulysses  sequence parallel, weak scaling: a [1, N, D] sequence with N = P * n0 tokens
           (--tokens-per-rank n0), rank r holds tokens [r n0, (r+1) n0). Attention is DeepSpeed's
           deepspeed.sequence.layer.DistributedAttention (DeepSpeed-Ulysses) wrapping the local
           sdpa attention: all-to-all of q, k, v from sequence-split to head-split, local attention
           over the whole sequence on H/P heads, all-to-all of the output back (and the transposed
           all-to-alls in backward). impl "deepspeed-ulysses". If deepspeed does not import (or
           with --no-deepspeed) the same algorithm runs on plain torch.distributed.all_to_all_single
           (impl "torch-ulysses", "torch Ulysses (DeepSpeed algorithm, plain torch)").
           Parameters are replicated; after backward every parameter's gradient is all-reduced
           (SUM) over the group, as DeepSpeed's engine does over its sequence-data-parallel group.
           The loss is mean over all N tokens (and D) of (out - target)^2: each rank's local sum is
           divided by the global count N*D, and the loss value is all-reduced (one float64).
           P = 1 runs the local attention directly, without DistributedAttention or collectives.
  ddp      data parallel (batch scaling): each rank its own sample of n0 tokens ([1, n0, D]),
           torch.nn.parallel.DistributedDataParallel (bucketed gradient all-reduce, averaged).
           impl "torch-ddp". Batch-scaling efficiency = thr(P) / (P * thr(1)) from tokens_per_s.

Step = zero grads, forward, loss, backward, gradient all-reduce, and (default --optimizer adamw)
torch.optim.AdamW.step() (lr 1e-4, fused=True where torch has the fused CPU kernel, else the
default; as seqvit's step includes AdamW); --optimizer none skips it.
--dtype bf16 = torch.autocast('cpu', dtype=torch.bfloat16) around forward + loss (parameters,
gradients and Adam states stay fp32; the all-to-alls then carry bf16 activations).

Measured: step time = median over --steps timed steps (after --warmup steps) of the slowest
rank's time (a barrier before each step); tokens_per_s = N / step_s (N = all tokens of the step
over all ranks); per-rank peak RSS = getrusage(RUSAGE_SELF).ru_maxrss of each rank, gathered to
rank 0 (includes the interpreter, torch, deepspeed, model, grads, Adam states); bytes each rank
sends per step, counted by wrapping torch.distributed.all_to_all_single / all_to_all /
all_reduce (and a DDP comm hook for its buckets) with the convention of seqvit's counters
(bytes a rank sends to other ranks; docs/parallelism.md "Communication volume"):
  all_to_all_single / all_to_all: (P-1)/P of the input buffer (equal splits: the part that goes
      to the other P-1 ranks);
  all_reduce: 2 (P-1)/P of the buffer (ring reduce-scatter + all-gather, nominal; seqvit counts
      2 (n - share_r) elements, within 2 elements of this).
These are nominal counts of the algorithm, not of gloo's wire traffic (gloo's own all-reduce
algorithm for small buffers differs). Timing and RSS collectives (barrier, all_gather_object)
are not counted.

Launch: the script starts its P ranks itself with --nproc P (subprocesses with RANK,
WORLD_SIZE, MASTER_ADDR/PORT set as torch.distributed.run sets them; if one rank fails the others
are ended and the exit code is non-zero):
  /opt/torch2/bin/python bench/torch_sp_peer.py --nproc 4 --mode ulysses \\
      --dim 2560 --heads 16 --depth 1 --tokens-per-rank 256
or under torch.distributed.run (torch 2.x; Debian's 1.13 launcher fails on Python 3.11):
  OMP_NUM_THREADS=1 /opt/torch2/bin/python -m torch.distributed.run --standalone \\
      --nproc-per-node 4 bench/torch_sp_peer.py --mode ulysses ...
Debian's torch 1.13 (/usr/bin/python3, no deepspeed, no sdpa: attention with the N x N scores
materialised, default AdamW) runs the same way with --nproc; impl torch-ulysses / torch-ddp.
Correctness (float64, tiny): --check compares the distributed step's loss and every gradient
with a single-process step over the whole sequence on rank 0 (relative error printed, must be
<= 1e-10), before timing.
Output: one JSON line on rank 0 (lines starting with '{' are JSON), e.g.
  {"impl": "deepspeed-ulysses", "ranks": 4, "n_tokens": 1024, "dim": 2560, ..., "step_s": ...}
DeepSpeed: scripts/install_deepspeed.sh installs it into /opt/torch2 (DS_BUILD_OPS=0).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

COUNTS = {"all_to_all": 0.0, "all_reduce": 0.0}
COUNTING = [False]


def parse():
    ap = argparse.ArgumentParser(description="PyTorch/DeepSpeed sequence/data-parallel peer")
    ap.add_argument("--mode", choices=["ulysses", "ddp"], default="ulysses")
    ap.add_argument("--dim", type=int, default=2560)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--tokens-per-rank", type=int, default=256)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--optimizer", choices=["adamw", "none"], default="adamw")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--no-deepspeed", action="store_true",
                    help="ulysses on plain torch.distributed even if deepspeed imports")
    ap.add_argument("--check", action="store_true",
                    help="float64 check of loss and gradients against one process, then exit")
    ap.add_argument("--nproc", type=int, default=0,
                    help="start P ranks of this script (when not already under a launcher)")
    return ap.parse_args()


def install_counters(dist):
    def world(group):
        return dist.get_world_size(group) if group is not None else dist.get_world_size()

    orig_a2a_single = dist.all_to_all_single
    orig_a2a = dist.all_to_all
    orig_ar = dist.all_reduce

    def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None,
                          group=None, async_op=False):
        if COUNTING[0]:
            p = world(group)
            nbytes = input.numel() * input.element_size()
            if input_split_sizes:
                me = dist.get_rank(group) if group is not None else dist.get_rank()
                row = nbytes // max(1, input.shape[0])
                COUNTS["all_to_all"] += (input.shape[0] - input_split_sizes[me]) * row
            else:
                COUNTS["all_to_all"] += nbytes * (p - 1) / p
        return orig_a2a_single(output, input, output_split_sizes, input_split_sizes,
                               group=group, async_op=async_op)

    def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
        if COUNTING[0]:
            me = dist.get_rank(group) if group is not None else dist.get_rank()
            COUNTS["all_to_all"] += sum(t.numel() * t.element_size()
                                        for i, t in enumerate(input_tensor_list) if i != me)
        return orig_a2a(output_tensor_list, input_tensor_list, group=group, async_op=async_op)

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        if COUNTING[0]:
            p = world(group)
            COUNTS["all_reduce"] += 2 * (p - 1) / p * tensor.numel() * tensor.element_size()
        return orig_ar(tensor, op=op, group=group, async_op=async_op)

    dist.all_to_all_single = all_to_all_single
    dist.all_to_all = all_to_all
    dist.all_reduce = all_reduce


def build_blocks(torch, D, heads, L, attn_fn):
    """attn_fn(q, k, v) with q, k, v of shape [B, n, H, d] -> [B, n, H, d]."""
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(D, 3 * D, bias=True)
            self.proj = nn.Linear(D, D)

        def forward(self, x):
            B, n, _ = x.shape
            qkv = self.qkv(x).reshape(B, n, 3, heads, D // heads)
            q, k, v = qkv.unbind(2)
            o = attn_fn(q.contiguous(), k.contiguous(), v.contiguous())
            return self.proj(o.reshape(B, n, D))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(D, eps=1e-5)
            self.attn = Attention()
            self.norm2 = nn.LayerNorm(D, eps=1e-5)
            self.fc1 = nn.Linear(D, 4 * D)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * D, D)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    return nn.Sequential(*[Block() for _ in range(L)])


def local_sdpa(torch):
    F = torch.nn.functional

    def attn(q, k, v):  # [B, N, h, d] -> [B, N, h, d]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v)
        else:  # torch 1.13: the N x N scores materialised
            o = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1) @ v
        return o.transpose(1, 2).contiguous()
    return attn


def torch_ulysses(torch, dist, group, P):
    """DeepSpeed-Ulysses on plain torch.distributed: [B, n0, H, d] <-> [B, N, H/P, d]."""

    def seq_to_head(x):  # [B, n0, H, d] -> [B, P n0, H/P, d]
        B, n0, H, d = x.shape
        inp = x.reshape(B, n0, P, H // P, d).permute(2, 0, 1, 3, 4).contiguous()
        out = torch.empty_like(inp)
        dist.all_to_all_single(out, inp, group=group)  # out[src] = src's tokens, my heads
        return out.permute(1, 0, 2, 3, 4).reshape(B, P * n0, H // P, d)

    def head_to_seq(x):  # [B, P n0, h, d] -> [B, n0, P h, d]
        B, N, h, d = x.shape
        inp = x.reshape(B, P, N // P, h, d).permute(1, 0, 2, 3, 4).contiguous()
        out = torch.empty_like(inp)
        dist.all_to_all_single(out, inp, group=group)  # out[src] = my tokens, src's heads
        return out.permute(1, 2, 0, 3, 4).reshape(B, N // P, P * h, d)

    class SeqToHead(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return seq_to_head(x)

        @staticmethod
        def backward(ctx, g):
            return head_to_seq(g.contiguous())

    class HeadToSeq(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return head_to_seq(x)

        @staticmethod
        def backward(ctx, g):
            return seq_to_head(g.contiguous())

    local = local_sdpa(torch)

    def attn(q, k, v):
        return HeadToSeq.apply(local(SeqToHead.apply(q), SeqToHead.apply(k), SeqToHead.apply(v)))
    return attn


def deepspeed_ulysses(torch, group):
    from deepspeed.sequence.layer import DistributedAttention

    class Local(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = local_sdpa(torch)

        def forward(self, q, k, v, *args, **kwargs):
            return self.f(q, k, v)

    # layout [B, s, H, d]: batch dim 0, heads (2) scattered, sequence (1) gathered
    da = DistributedAttention(Local(), group, scatter_idx=2, gather_idx=1)
    return lambda q, k, v: da(q, k, v, 0)


def launch_self(a):
    """Starts P ranks of this script (env RANK, WORLD_SIZE, MASTER_ADDR/PORT as
    torch.distributed.run sets them), waits, and ends the others if one fails. Used instead of
    torch.distributed.run because Debian's torch 1.13 launcher fails on Python 3.11
    ('NoneType' object has no attribute 'get' in elastic/multiprocessing/api.py to_map)."""
    import socket
    import subprocess
    args = list(sys.argv[1:])
    if "--nproc" in args:
        k = args.index("--nproc")
        del args[k:k + 2]
    args = [x for x in args if not x.startswith("--nproc=")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for r in range(a.nproc):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(a.nproc),
                   LOCAL_WORLD_SIZE=str(a.nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS=str(a.threads))
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__)] + args, env=env))
    rc = 0
    pending = list(procs)
    while pending:
        for p in list(pending):
            c = p.poll()
            if c is None:
                continue
            pending.remove(p)
            if c != 0 and rc == 0:
                rc = c if c > 0 else 1
                print(f"error: rank {procs.index(p)} exited with {c}; ending the other ranks",
                      file=sys.stderr)
                for q in pending:
                    q.terminate()
        time.sleep(0.05)
    sys.exit(rc)


def main():
    a = parse()
    if a.nproc and "RANK" not in os.environ:
        launch_self(a)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch
    import torch.distributed as dist
    torch.set_num_threads(a.threads)

    P = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = "RANK" in os.environ
    ds_error = None
    use_ds = False
    if distributed:
        install_counters(dist)
        if a.mode == "ulysses" and not a.no_deepspeed:
            try:
                import deepspeed
                import deepspeed.sequence.layer  # noqa: F401
                deepspeed.init_distributed(dist_backend="gloo", verbose=False)
                use_ds = True
            except Exception as e:  # not installed, or does not import on this machine
                ds_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if not dist.is_initialized():
            dist.init_process_group("gloo")
    if a.mode == "ulysses" and a.heads % P:
        if rank == 0:
            print(f"error: --heads {a.heads} not divisible by {P} ranks (Ulysses needs P | heads)",
                  file=sys.stderr)
        return 2
    if (a.mode == "ulysses" and a.dtype == "bf16" and P > 1
            and int(torch.__version__.split(".")[0]) < 2):
        if rank == 0:
            print(f"error: --dtype bf16 under Ulysses needs a bfloat16 all_to_all, which the gloo "
                  f"backend of torch {torch.__version__} lacks ('RuntimeError: Invalid scalar "
                  f"type'); use torch >= 2 (/opt/torch2/bin/python) or --dtype fp32", file=sys.stderr)
        return 2
    if a.dim % a.heads:
        print(f"error: --dim {a.dim} not divisible by --heads {a.heads}", file=sys.stderr)
        return 2

    if a.mode == "ddp":
        impl = "torch-ddp"
    else:
        impl = "deepspeed-ulysses" if use_ds else "torch-ulysses"
    group = dist.group.WORLD if distributed else None
    if a.mode == "ulysses" and P > 1:
        attn_fn = deepspeed_ulysses(torch, group) if use_ds else torch_ulysses(torch, dist, group, P)
    else:
        attn_fn = local_sdpa(torch)

    n0, D = a.tokens_per_rank, a.dim
    N = P * n0  # all tokens of the step (sequence in ulysses, batch * n0 in ddp)

    if a.check:
        return check(a, torch, dist, attn_fn, P, rank, distributed, impl)

    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    torch.manual_seed(0)  # same parameters on every rank
    model = build_blocks(torch, D, a.heads, a.depth, attn_fn)
    n_params = sum(p.numel() for p in model.parameters())
    if a.mode == "ddp" and distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        model = DDP(model)

        # the Python allreduce hook (same as DDP's built-in one) calls dist.all_reduce per
        # bucket, so the wrapped all_reduce counts DDP's gradient traffic
        model.register_comm_hook(group, default_hooks.allreduce_hook)
    opt, opt_name = None, "none"
    if a.optimizer == "adamw":
        try:  # fused CPU AdamW (torch >= 2.4): ~10x faster than the default foreach one here
            opt, opt_name = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True), "AdamW (fused)"
        except (RuntimeError, TypeError, ValueError):
            opt, opt_name = torch.optim.AdamW(model.parameters(), lr=1e-4), "AdamW"

    gen = torch.Generator().manual_seed(1 + (rank if a.mode == "ddp" else 0))
    if a.mode == "ulysses":  # one global sequence, this rank's slice
        xg = torch.randn(1, N, D, generator=gen)
        tg = torch.randn(1, N, D, generator=gen)
        x = xg[:, rank * n0:(rank + 1) * n0].clone()
        target = tg[:, rank * n0:(rank + 1) * n0].clone()
        del xg, tg
        count = N * D
    else:
        x = torch.randn(1, n0, D, generator=gen)
        target = torch.randn(1, n0, D, generator=gen)
        count = n0 * D  # DDP averages the gradients over ranks

    params = list(model.parameters())

    def step():
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            for p in params:
                p.grad = None
        if a.dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
                loss = ((out.float() - target) ** 2).sum() / count
        else:
            out = model(x)
            loss = ((out - target) ** 2).sum() / count
        loss.backward()
        lv = loss.detach().double()
        if distributed:
            if a.mode == "ulysses":
                for p in params:
                    dist.all_reduce(p.grad)
            dist.all_reduce(lv)
            if a.mode == "ddp":
                lv /= P
        if opt is not None:
            opt.step()
        return float(lv)

    for _ in range(a.warmup):
        step()
    times, per_step_bytes = [], []
    for _ in range(a.steps):
        if distributed:
            dist.barrier()
        for k in COUNTS:
            COUNTS[k] = 0.0
        COUNTING[0] = True
        t0 = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t0
        COUNTING[0] = False
        per_step_bytes.append(dict(COUNTS))
        times.append(dt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    mine = {"times": times, "rss": rss, "rss_import": rss_import, "bytes": per_step_bytes[-1],
            "bytes_constant": all(b == per_step_bytes[0] for b in per_step_bytes)}
    if distributed:
        allv = [None] * P
        dist.all_gather_object(allv, mine)
    else:
        allv = [mine]
    if rank == 0:
        slowest = [max(v["times"][i] for v in allv) for i in range(a.steps)]
        step_s = statistics.median(slowest)
        res = {
            "impl": impl, "ranks": P, "n_tokens": N, "tokens_per_rank": n0, "dim": D,
            "heads": a.heads, "depth": a.depth, "dtype": a.dtype, "mode": a.mode,
            "distributed_attention": bool(a.mode == "ulysses" and P > 1),
            "optimizer": opt_name,
            "params": n_params, "threads_per_rank": a.threads, "backend": "gloo" if distributed else None,
            "step_s": step_s, "step_s_min": min(slowest), "steps_timed": a.steps,
            "tokens_per_s": N / step_s, "loss": loss,
            "peak_rss_gib_per_rank": [round(v["rss"], 3) for v in allv],
            "rss_after_import_gib_per_rank": [round(v["rss_import"], 3) for v in allv],
            "bytes_sent_per_rank": {
                "all_to_all": [round(v["bytes"]["all_to_all"]) for v in allv],
                "all_reduce": [round(v["bytes"]["all_reduce"]) for v in allv],
            },  # one list per collective only: bench/suite.py sums the entries
            "bytes_sent_total_per_rank": [
                round(v["bytes"]["all_to_all"] + v["bytes"]["all_reduce"]) for v in allv],
            "bytes_convention": "a2a (P-1)/P of buffer; all_reduce 2(P-1)/P of buffer (ring, nominal)",
            "bytes_constant_over_steps": all(v["bytes_constant"] for v in allv),
            "torch": torch.__version__,
        }
        if use_ds:
            import deepspeed
            res["deepspeed"] = deepspeed.__version__
        if ds_error:
            res["deepspeed_error"] = ds_error
            res["impl_label"] = "torch Ulysses (DeepSpeed algorithm, plain torch)"
        elif impl == "torch-ulysses":
            res["impl_label"] = "torch Ulysses (DeepSpeed algorithm, plain torch)"
        print(json.dumps(res), flush=True)
    if distributed:
        dist.destroy_process_group()
    return 0


def check(a, torch, dist, attn_fn, P, rank, distributed, impl):
    """float64: distributed loss + gradients vs one process over the whole global batch."""
    torch.set_default_dtype(torch.float64)
    n0, D = a.tokens_per_rank, a.dim
    N = P * n0
    torch.manual_seed(0)
    model = build_blocks(torch, D, a.heads, a.depth, attn_fn)
    gen = torch.Generator().manual_seed(7)
    xs = torch.randn(P, n0, D, generator=gen)  # ddp: P samples; ulysses: one sequence of N
    ts = torch.randn(P, n0, D, generator=gen)
    if a.mode == "ddp" and distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        dmodel = DDP(model)
        out = dmodel(xs[rank:rank + 1])
        loss = ((out - ts[rank:rank + 1]) ** 2).sum() / (n0 * D)
        loss.backward()
        lv = loss.detach().clone()
        dist.all_reduce(lv)
        lv /= P
    else:
        x = xs.reshape(1, N, D)[:, rank * n0:(rank + 1) * n0]
        t = ts.reshape(1, N, D)[:, rank * n0:(rank + 1) * n0]
        loss = ((model(x) - t) ** 2).sum() / (N * D)
        loss.backward()
        lv = loss.detach().clone()
        if distributed:
            for p in model.parameters():
                dist.all_reduce(p.grad)
            dist.all_reduce(lv)
    ok = True
    if rank == 0:
        torch.manual_seed(0)
        ref = build_blocks(torch, D, a.heads, a.depth, local_sdpa(torch))
        if a.mode == "ddp":
            out = ref(xs)  # batch of P samples
            rl = ((out - ts) ** 2).sum() / (P * n0 * D)
        else:
            rl = ((ref(xs.reshape(1, N, D)) - ts.reshape(1, N, D)) ** 2).sum() / (N * D)
        rl.backward()
        rl = float(rl.detach())
        errs = [abs(float(lv) - rl) / abs(rl)]
        for p, r in zip(model.parameters(), ref.parameters()):
            errs.append(float((p.grad - r.grad).norm() / r.grad.norm()))
        worst = max(errs)
        ok = worst <= 1e-10
        print(json.dumps({"check": impl, "ranks": P, "n_tokens": N, "loss": float(lv),
                          "loss_rel_err": errs[0], "max_grad_rel_err": max(errs[1:]),
                          "ok": ok}), flush=True)
    if distributed:
        flag = torch.tensor([0 if ok else 1])
        dist.broadcast(flag, 0)
        ok = int(flag) == 0
        dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
