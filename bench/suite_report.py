#!/usr/bin/python3
"""The benchmark suite's report: reads DIR/{single,weak,dp,peers}.csv (bench/suite.py writes
them) and writes DIR/report.md and the plots DIR/*.png. Rerun alone after editing:

    bench/suite_report.py --out bench-results/suite
"""
import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1024.0 ** 2
# The loss and gradient-norm sums (a few doubles per step, 0-32 B depending on the rank's place
# in its group) are not in the planner's byte model; the report names them apart.
SCALAR_BYTES = 64


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in list(r.items()):
            if v in ("", None):
                r[k] = None
                continue
            try:
                r[k] = float(v) if any(c in v for c in ".eE") or not v.lstrip("-").isdigit() \
                    else int(v)
            except ValueError:
                pass
    return rows


def f(v, fmt="{:.2f}", none="—"):
    return none if v is None or isinstance(v, str) else fmt.format(v)


def mib(v):
    return f(v, "{:,.0f}") if v is None else f"{v / MIB:,.2f}"


def ok(r):
    return r and r.get("status") == "ok"


def machine_line():
    cpu = "?"
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} "
            f"{platform.release()}; seqvit {commit or '?'}; report written "
            f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC")


def plots(out, single, weak, dp):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("suite_report: matplotlib is missing, no plots (Debian's python3-matplotlib, "
              "scripts/setup; run with /usr/bin/python3)", file=sys.stderr)
        return ["(matplotlib missing: no plots; Debian's python3-matplotlib, scripts/setup)"]
    made = []
    if single:
        for what, key, ylabel in (("throughput", "tokens_per_s", "tokens / s"),
                                  ("memory", "peak_rss_gib", "peak resident memory (GiB)")):
            fig, axs = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
            for ax, model in zip(axs, ("vit-base", "vit-large")):
                for impl in sorted({r["impl"] for r in single}):
                    for dtype, ls in (("fp32", "-"), ("bf16", "--")):
                        pts = [(r["n"], r[key]) for r in single if r["model"] == model and
                               r["impl"] == impl and r["dtype"] == dtype and ok(r) and r[key]]
                        if pts:
                            ax.plot(*zip(*sorted(pts)), ls, marker="o", label=f"{impl} {dtype}")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xlabel("sequence length N (tokens)")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{model} shape, one process, 2 threads")
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize=7)
            fig.tight_layout()
            name = f"single_{what}.png"
            fig.savefig(os.path.join(out, name), dpi=110)
            plt.close(fig)
            made.append(name)
    if weak:
        schemes = list(dict.fromkeys(r["scheme"] for r in weak))
        panels = (("peak_rss_gib", "predicted_gib", "per-rank peak memory (GiB)"),
                  ("bytes_total", "predicted_bytes_total", "bytes sent per rank per step (MiB)"),
                  ("step_s", "predicted_step_s", "step time (s), 2 shared cores"))
        fig, axs = plt.subplots(1, 3, figsize=(16, 4.5))
        for ax, (key, pkey, label) in zip(axs, panels):
            for s in schemes:
                pts = sorted((r["ranks"], r[key]) for r in weak if r["scheme"] == s and ok(r)
                             and r.get(key) is not None)
                ppts = sorted((r["ranks"], r[pkey]) for r in weak if r["scheme"] == s and ok(r)
                              and r.get(pkey) is not None)
                scale = MIB if key == "bytes_total" else 1
                if pts:
                    line, = ax.plot([p for p, _ in pts], [v / scale for _, v in pts], "-o",
                                    label=s)
                    if ppts:
                        ax.plot([p for p, _ in ppts], [v / scale for _, v in ppts], ":",
                                color=line.get_color())
            ax.set_xscale("log", base=2)
            if key == "step_s":
                ax.set_yscale("log")
            ax.set_xlabel("ranks P (N = 256 P tokens)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axs[0].legend(fontsize=7, title="measured (dotted: seqvit plan)")
        fig.suptitle("weak scaling of the sequence length, D 2560, 16 heads")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "weak_scaling.png"), dpi=110)
        plt.close(fig)
        made.append("weak_scaling.png")
    if dp:
        base = [r for r in dp if r["ranks"] == 1 and ok(r)]
        if base:
            t1 = base[0]["tokens_per_s"]
            pts = sorted((r["ranks"], r["tokens_per_s"]) for r in dp if ok(r))
            fig, ax = plt.subplots(figsize=(6, 4.5))
            ax.plot([n for n, _ in pts], [t / (n * t1) for n, t in pts], "-o",
                    label="thr(n) / (n thr(1))")
            ax.plot([n for n, _ in pts], [t / t1 for n, t in pts], "-s",
                    label="thr(n) / thr(1) (same 2 cores)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("data-parallel replicas n")
            ax.set_ylabel("efficiency")
            ax.set_ylim(0, 1.2)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(os.path.join(out, "dp_scaling.png"), dpi=110)
            plt.close(fig)
            made.append("dp_scaling.png")
    return made


def single_section(single):
    if not single:
        return []
    L = ["## 1. One process: throughput and peak memory against N", "",
         f"ViT-Base (D 768, 12 heads) and ViT-Large (D 1024, 16 heads) with "
         f"{single[0]['blocks']} blocks (fewer than the real 12 / 24: the time and memory per "
         "block are the same), batch 1, one variable, patch 1 (N tokens), 2 threads. seqvit: "
         "`build/bench/bench_block_step` (the real ClimaX model and an AdamW step); flash = the "
         "engine's flash attention, dense = the same model with the N x N probabilities "
         "materialised and kept per block (`--attention dense`). PyTorch peers: "
         "`bench/torch_block_step.py`, forward + backward of the same blocks without an "
         "optimizer. Peak memory = the process's peak RSS. `predicted` = `seqvit plan` for the "
         "same shape (parameters, optimizer, activations and workspace; no process overhead).",
         "",
         "| model | dtype | N | impl | tokens/s | GFLOP/s | peak GiB | predicted GiB | "
         "status |", "|---|---|---|---|---|---|---|---|---|"]
    for r in single:
        L.append(f"| {r['model']} | {r['dtype']} | {r['n']} | {r['impl']} | "
                 f"{f(r.get('tokens_per_s'), '{:.0f}')} | {f(r.get('gflops'), '{:.1f}')} | "
                 f"{f(r.get('peak_rss_gib'))} | {f(r.get('predicted_gib'))} | {r['status']} |")
    # ratios against the peers at equal shape
    L += ["", "Ratios at equal shape (tokens/s ratio > 1: seqvit faster; memory ratio < 1: "
          "seqvit smaller):", "",
          "| model | dtype | N | flash / dense tokens/s | flash / dense memory | "
          "flash / torch 1.13 tokens/s | memory | flash / torch 2 SDPA tokens/s | memory |",
          "|---|---|---|---|---|---|---|---|---|"]
    keyed = {(r["model"], r["dtype"], r["n"], r["impl"]): r for r in single}
    for (model, dtype, n, impl), r in keyed.items():
        if impl != "seqvit-flash" or not ok(r):
            continue
        cells = []
        for other in ("seqvit-dense", "torch1.13-manual", "torch2-sdpa"):
            o = keyed.get((model, dtype, n, other))
            if ok(o) and o.get("tokens_per_s") and o.get("peak_rss_gib"):
                cells += [f"{r['tokens_per_s'] / o['tokens_per_s']:.2f}x",
                          f"{r['peak_rss_gib'] / o['peak_rss_gib']:.2f}x"]
            else:
                cells += [o["status"][:30] if o else "—", "—"]
        L.append(f"| {model} | {dtype} | {n} | " + " | ".join(cells) + " |")
    return L + [""]


def efficiency_rows(rows):
    t1 = {}
    for r in rows:
        if r["ranks"] == 1 and ok(r):
            t1[(r["depth"])] = r["step_s"]
    return t1


def weak_section(weak):
    if not weak:
        return []
    t1 = efficiency_rows(weak)
    L = ["## 2. Weak scaling of the sequence length (N / P = 256 tokens per rank)", "",
         "The reference's weak-scaling shape: embedding 2560, 16 heads, MLP 4x; 1 block (PP: 8 "
         "blocks, so that 8 ranks hold one block each); 4 variables, per-variable tokens, patch "
         "2; batch 1; fp32 with AdamW; `seqvit train --benchmark --report-json` under `mpirun "
         "--oversubscribe -np P` (P = 1: one process with 2 threads; P > 1: 1 thread per rank). "
         "2-D = Ulysses 2 x ring P/2 (from P = 4: at 2 ranks it would be plain Ulysses or ring); "
         "ZeRO-3 runs with Ulysses SP over the same ranks. "
         "Step time = the fastest step after the first (the first touches every page).", "",
         "**The P ranks share 2 cores**, so the time per step grows with P even when the "
         "scheme scales perfectly; two efficiencies are given: the reference's t(1)/t(P) (ideal "
         "1 with P devices) and P t(1)/t(P), the throughput of the same 2 cores relative to one "
         "process (ideal 1 here). Memory per rank and bytes per rank are what this machine "
         "measures exactly: measured peak RSS (VmHWM over the training steps, the rank with the "
         "largest plan) beside `seqvit plan`'s prediction for that layout, and the bytes the "
         "rank sent in the first step (the communication layer's counters) beside the planner's "
         "bytes.", "",
         "| scheme | P | N | step s | tokens/s | t(1)/t(P) | P t(1)/t(P) | peak GiB per rank | "
         "predicted GiB | error | activations + workspace MiB | MiB sent per rank | "
         "predicted MiB | bytes equal |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in weak:
        if not ok(r):
            L.append(f"| {r['scheme']} | {r['ranks']} | {r['n_tokens']} | {r['status'][:60]} "
                     "| | | | | | | | | | |")
            continue
        base = t1.get(r["depth"])
        e1 = base / r["step_s"] if base else None
        e2 = r["ranks"] * base / r["step_s"] if base else None
        err = ((r["predicted_gib"] - r["peak_rss_gib"]) / r["peak_rss_gib"]
               if r.get("predicted_gib") else None)
        L.append(f"| {r['scheme']} | {r['ranks']} | {r['n_tokens']} | {f(r['step_s'])} | "
                 f"{f(r['tokens_per_s'], '{:.0f}')} | {f(e1)} | {f(e2)} | "
                 f"{f(r['peak_rss_gib'], '{:.3f}')} | {f(r.get('predicted_gib'), '{:.3f}')} | "
                 f"{f(err, '{:+.1%}')} | {f(r.get('engine_act_ws_mib'), '{:.1f}')} | "
                 f"{mib(r.get('bytes_total'))} | "
                 f"{mib(r.get('predicted_bytes_total'))} | {bytes_verdict(r)} |")
    return L + [""]


def bytes_verdict(r):
    """Per axis: measured bytes (the counters) vs the planner's; 'exact' or the differences."""
    if r.get("predicted_bytes_total") is None:
        return "no prediction"
    diffs, scalars = [], 0
    for ax in ("sp", "tp", "pp", "dp"):
        m, p = r.get(f"bytes_{ax}") or 0, r.get(f"predicted_bytes_{ax}") or 0
        d = round(m) - round(p)
        if 0 < d <= SCALAR_BYTES:
            scalars += d
        elif d != 0:
            diffs.append(f"{ax} {d:+,} B")
    if diffs:
        return ", ".join(diffs)
    return "exact" if not scalars else f"exact + {scalars} B of scalar sums"


def dp_section(dp):
    if not dp:
        return []
    base = [r for r in dp if r["ranks"] == 1 and ok(r)]
    t1 = base[0]["tokens_per_s"] if base else None
    L = ["## 3. Data-parallel batch scaling", "",
         "n replicas, one sample of 256 tokens each (global batch n), the weak-scaling shape "
         "(1 block); gradients all-reduced every step. Efficiency as the reference defines it, "
         "thr(n) / (n thr(1)), and on this fixed 2-core machine thr(n) / thr(1).", "",
         "| n | step s | tokens/s | thr(n)/(n thr(1)) | thr(n)/thr(1) | peak GiB per rank | "
         "predicted GiB | MiB sent per rank | predicted MiB | bytes equal |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in dp:
        if not ok(r):
            L.append(f"| {r['ranks']} | {r['status'][:60]} | | | | | | | | |")
            continue
        L.append(f"| {r['ranks']} | {f(r['step_s'])} | {f(r['tokens_per_s'], '{:.0f}')} | "
                 f"{f(r['tokens_per_s'] / (r['ranks'] * t1) if t1 else None)} | "
                 f"{f(r['tokens_per_s'] / t1 if t1 else None)} | {f(r['peak_rss_gib'], '{:.3f}')} "
                 f"| {f(r.get('predicted_gib'), '{:.3f}')} | {mib(r.get('bytes_total'))} | "
                 f"{mib(r.get('predicted_bytes_total'))} | {bytes_verdict(r)} |")
    return L + [""]


def peers_section(peers, weak, dp):
    if not peers:
        return ["## 4. Distributed PyTorch peers", "",
                "Not run (bench/torch_sp_peer.py or the PyTorch 2.x interpreter is missing).", ""]
    L = ["## 4. Distributed PyTorch peers on the same shapes", "",
         "`bench/torch_sp_peer.py` on `torch.distributed` (gloo, CPU; 2 threads for one rank, 1 "
         "per rank otherwise, as seqvit), the "
         "weak-scaling shape: Ulysses (DeepSpeed's DistributedAttention when installed, else "
         "the same all-to-all algorithm in plain torch; see the impl column) against seqvit's "
         "Ulysses, and DDP against seqvit's data parallelism. Ratios: seqvit / peer.", "",
         "| peer | P | step s | tokens/s | peak GiB (max rank) | MiB sent rank 0 | seqvit "
         "tokens/s ratio | seqvit memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for p in peers:
        src = weak if p["mode"] == "ulysses" else dp
        scheme = "ulysses" if p["mode"] == "ulysses" else "dp"
        s = next((r for r in src if r["scheme"] == scheme and r["ranks"] == p["ranks"]
                  and ok(r)), None)
        tr = mr = "—"
        if s and ok(p) and p.get("tokens_per_s") and p.get("peak_rss_gib_max"):
            tr = f"{s['tokens_per_s'] / p['tokens_per_s']:.2f}x"
            mr = f"{s['peak_rss_gib_max'] / p['peak_rss_gib_max']:.2f}x"
        L.append(f"| {p['impl']} (torch {p.get('torch') or '?'}) | {p['ranks']} | "
                 f"{f(p.get('step_s'))} | {f(p.get('tokens_per_s'), '{:.0f}')} | "
                 f"{f(p.get('peak_rss_gib_max'), '{:.3f}')} | {mib(p.get('bytes_sent_rank0'))} | "
                 f"{tr} | {mr} |" if ok(p) else
                 f"| {p['impl']} | {p['ranks']} | {str(p['status'])[:60]} | | | | | |")
    return L + [""]


def planner_section(single, weak, dp):
    errs, exact, total = [], 0, 0
    for r in weak + dp:
        if ok(r) and r.get("predicted_gib"):
            errs.append((abs(r["predicted_gib"] - r["peak_rss_gib"]) / r["peak_rss_gib"],
                         f"{r['scheme']} P={r['ranks']}"))
            total += 1
            exact += bytes_verdict(r).startswith("exact")
    serr = [(abs(r["predicted_gib"] - r["peak_rss_gib"]) / r["peak_rss_gib"],
             f"{r['model']} {r['dtype']} {r['impl']} N={r['n']}")
            for r in single if ok(r) and r.get("predicted_gib") and r.get("peak_rss_gib")
            and r["impl"].startswith("seqvit")]
    L = ["## 5. The planner against measurement", ""]
    if errs:
        worst = max(errs)
        L.append(f"- Distributed runs: predicted per-rank memory within {worst[0]:.1%} of the "
                 f"measured peak RSS in the worst case ({worst[1]}); "
                 f"{sum(e <= 0.15 for e, _ in errs)} of {len(errs)} runs within 15%.")
        L.append(f"- Bytes sent per rank, per axis: the planner's equal the counters in {exact} "
                 f"of {total} runs, apart from the loss and gradient-norm sums of at most "
                 f"{SCALAR_BYTES} B per step that the planner does not model (the tables name "
                 "them; any other difference is listed per axis).")
    if serr:
        worst = max(serr)
        L.append(f"- One process: predicted memory within {worst[0]:.1%} of the measured peak "
                 f"RSS in the worst case ({worst[1]}); {sum(e <= 0.15 for e, _ in serr)} of "
                 f"{len(serr)} within 15%.")
    L.append("- The measured peak includes the process itself (the binary, oneDNN, Open MPI's "
             "shared-memory segments: about 40-60 MiB), which the plan does not; it matters "
             "only for the smallest runs.")
    return L + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "suite"))
    a = ap.parse_args()
    single = read_csv(os.path.join(a.out, "single.csv"))
    weak = read_csv(os.path.join(a.out, "weak.csv"))
    dp = read_csv(os.path.join(a.out, "dp.csv"))
    peers = read_csv(os.path.join(a.out, "peers.csv"))
    made = plots(a.out, single, weak, dp)
    L = ["# seqvit benchmark suite", "", f"Machine: {machine_line()}.", "",
         "Produced by `bench/suite.py` (raw records in raw/, tables in *.csv). Times on this "
         "2-core machine are noisy (10-20% between runs) and, for P > 2 ranks, dominated by "
         "oversubscription; memory per rank and bytes sent are exact.", ""]
    L += [f"![{m}]({m})" if m.endswith(".png") else m for m in made] + [""]
    L += single_section(single) + weak_section(weak) + dp_section(dp)
    L += peers_section(peers, weak, dp) + planner_section(single, weak, dp)
    with open(os.path.join(a.out, "report.md"), "w") as fh:
        fh.write("\n".join(L) + "\n")
    print(os.path.join(a.out, "report.md"))


if __name__ == "__main__":
    main()
