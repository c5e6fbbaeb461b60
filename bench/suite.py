#!/usr/bin/python3
"""seqvit's benchmark suite (issue 5, docs/benchmarks.md), one command:

    bench/suite.py [--out DIR] [--quick] [--only single,weak,dp,peers]

runs, one after another (never two at once: 2 cores),
  single  one process: training-step throughput and peak memory against the sequence length N,
          with flash and with dense (materialised) attention, ViT-Base (D 768, 12 heads) and
          ViT-Large (D 1024, 16 heads) shapes with --blocks blocks, fp32 and bf16
          (build/bench/bench_block_step), and the PyTorch peers on the same shapes
          (bench/torch_block_step.py: Debian's torch 1.13, manual attention; PyTorch 2.x with
          scaled_dot_product_attention from /opt/torch2 when present);
  weak    weak scaling of the sequence length (N / P fixed) under mpirun with 1, 2, 4, 8 ranks on
          the reference's weak-scaling shape (embedding 2560, 16 heads): Ulysses, LSS, ring, 2-D
          (Ulysses 2 x ring), TP, PP (8 blocks, one stage per rank at 8) and ZeRO-3 (with Ulysses)
          via `seqvit train --benchmark --report-json`: per-rank peak resident memory, bytes each
          rank sends, step time and efficiency;
  dp      data-parallel batch scaling: 1, 2, 4, 8 replicas, one sample each;
  peers   the distributed PyTorch peers (bench/torch_sp_peer.py: DeepSpeed Ulysses or plain
          torch Ulysses, and DDP, on gloo) on the weak and dp shapes, when their Python exists,
          with the same threads as seqvit (2 for one rank, 1 per rank otherwise);
and for every seqvit run asks `seqvit plan --json` for the same layout, so the report prints the
planner's predicted memory and bytes beside the measured ones.

Everything lands in DIR (default bench-results/suite): raw/*.json (one per run; a run whose
file exists is not repeated, so an interrupted suite continues where it stopped; --fresh
repeats), *.csv, *.png and report.md (bench/suite_report.py writes the last three and can be
rerun alone). Progress goes to stderr, one line per run.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODELS = {"vit-base": (768, 12), "vit-large": (1024, 16)}
WEAK = dict(embed_dim=2560, heads=16, depth=1, pp_depth=8, variables="t2m,u10,v10,z_500",
            patch=2, tokens_per_rank=256)
# grids of the per-variable tokens (4 variables, patch 2): H x W / 4 patches x 4 variables = N
WEAK_IMG = {256: "16x16", 512: "16x32", 1024: "32x32", 2048: "32x64"}
SCHEMES = {  # name: (flags given P, smallest P it applies to)
    "ulysses": (lambda P: ["--sp", P, "--sp-mode", "ulysses"], 2),
    "lss": (lambda P: ["--sp", P, "--sp-mode", "lss"], 2),
    "ring": (lambda P: ["--sp", P, "--sp-mode", "ring"], 2),
    "2d": (lambda P: ["--sp", P, "--sp-mode", "2d", "--sp-ulysses", 2, "--sp-outer", "ring"], 4),
    "tp": (lambda P: ["--tp", P], 2),
    "pp": (lambda P: ["--pp", P], 2),
    "zero3": (lambda P: ["--sp", P, "--sp-mode", "ulysses", "--zero", 3], 2),
}
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl": "self,vader", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    "OMPI_MCA_mpi_yield_when_idle": "1",
}
GIB = 1024.0 ** 3
THIS_MACHINE = os.path.join(ROOT, "configs", "machines", "this-20g.json")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Suite:
    def __init__(self, a):
        self.a = a
        self.out = os.path.abspath(a.out)
        self.raw = os.path.join(self.out, "raw")
        os.makedirs(self.raw, exist_ok=True)
        self.seqvit = os.path.join(a.build, "seqvit")
        self.block_step = os.path.join(a.build, "bench", "bench_block_step")
        self.count = 0
        self.t0 = time.time()

    # ------------------------------------------------------------------ running and caching
    def cached(self, name, fn):
        """The JSON of run `name`: from raw/name.json, or by calling fn() and storing it."""
        path = os.path.join(self.raw, name + ".json")
        self.count += 1
        if os.path.exists(path) and not self.a.fresh:
            with open(path) as f:
                return json.load(f)
        t = time.time()
        log(f"[{self.count:>3}] {name} ... (suite running {time.time() - self.t0:.0f} s)")
        res = fn()
        res.setdefault("wall_s", round(time.time() - t, 2))
        log(f"      {name}: {res.get('status', 'ok')} in {res['wall_s']:.1f} s")
        with open(path + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(path + ".tmp", path)
        return res

    def run(self, cmd, env=None, timeout=None):
        e = dict(os.environ)
        e.update(env or {})
        try:
            p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=e,
                               timeout=timeout or self.a.timeout)
        except subprocess.TimeoutExpired:
            return None, f"timeout after {timeout or self.a.timeout} s"
        if p.returncode != 0:
            tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
            return None, f"exit {p.returncode}: " + " / ".join(tail)
        return p.stdout, None

    def plan(self, args):
        """seqvit plan --json for one fixed layout: its estimate (fitting or not), or None."""
        path = os.path.join(self.raw, "plan.tmp.json")
        out, err = self.run([self.seqvit, "plan", "--json", path, "--top", 1] + args, timeout=120)
        if not os.path.exists(path):
            return {"error": err}
        with open(path) as f:
            j = json.load(f)
        os.remove(path)
        rows = j["fitting"] + j["too_big"]
        return rows[0] if rows else {"error": "no layout", "invalid": j["invalid"][:1]}

    # ------------------------------------------------------------------ single process
    def single(self):
        ns = [1024, 2048] if self.a.quick else [1024, 2048, 4096, 8192, 16384]
        rows = []
        for model, (D, H) in MODELS.items():
            for dtype in ("fp32", "bf16"):
                for attn in ("flash", "dense"):
                    for n in ns:
                        rows.append(self.single_run(model, D, H, dtype, attn, n))
                for peer in self.torch_peers():
                    for n in ns:
                        rows.append(self.single_peer(model, D, H, dtype, peer, n))
        write_csv(os.path.join(self.out, "single.csv"), rows)

    def torch_peers(self):
        peers = [("torch1.13-manual", "/usr/bin/python3", "manual")]
        if os.path.exists(self.a.torch2_python):
            peers.append(("torch2-sdpa", self.a.torch2_python, "sdpa"))
        return peers

    def single_run(self, model, D, H, dtype, attn, n):
        L = self.a.blocks
        name = f"single_{model}_{dtype}_{attn}_{n}"
        prec = ["--precision", dtype]
        pred = self.plan(["--embed-dim", D, "--heads", H, "--depth", L, "--decoder-depth", 0,
                          "--variables", 1, "--patch", 1, "--seq", n, "--devices", 1,
                          "--threads", 2, "--batch", 1, "--recompute", "off",
                          "--attention", attn, "--machine", THIS_MACHINE] + prec)
        row = {"model": model, "impl": f"seqvit-{attn}", "dtype": dtype, "n": n, "blocks": L,
               "dim": D, "heads": H}
        pred_b = pred.get("memory_bytes", {}).get("total")
        row["predicted_gib"] = pred_b / GIB if pred_b else None
        row["predicted_step_s"] = pred.get("seconds", {}).get("step")
        if pred_b and pred_b > self.a.mem_limit_gib * GIB:
            row["status"] = f"skipped: needs {pred_b / GIB:.1f} GiB > {self.a.mem_limit_gib} GiB"
            return row

        def go():
            cmd = [self.block_step, "--n", n, "--dim", D, "--heads", H, "--depth", L,
                   "--steps", 1, "--warmup", 1 if n <= 4096 else 0, "--json",
                   "--attention", attn] + (["--bf16"] if dtype == "bf16" else [])
            out, err = self.run(cmd, env={"OMP_NUM_THREADS": "2"})
            if err:
                return {"status": err}
            return json.loads([l for l in out.splitlines() if l.startswith("{")][0])

        r = self.cached(name, go)
        row["status"] = r.get("status", "ok")
        for k in ("step_s", "tokens_per_s", "gflops", "peak_rss_gib", "planned_gib"):
            row[k] = r.get(k)
        return row

    def single_peer(self, model, D, H, dtype, peer, n):
        impl, py, attention = peer
        L = self.a.blocks
        name = f"single_{model}_{dtype}_{impl}_{n}"

        def go():
            cmd = [py, os.path.join(HERE, "torch_block_step.py"), "--attention", attention,
                   "--ns", n, "--dtype", dtype, "--threads", 2, "--dim", D, "--heads", H,
                   "--layers", L, "--max-s", 60, "--target-s", 5, "--mem-limit-gib",
                   self.a.mem_limit_gib, "--json-only"]
            out, err = self.run(cmd, timeout=1800)
            if err:
                return {"status": err}
            rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            return rows[0] if rows else {"status": "no output"}

        r = self.cached(name, go)
        row = {"model": model, "impl": impl, "dtype": dtype, "n": n, "blocks": L, "dim": D,
               "heads": H, "status": r.get("status", "?"), "step_s": r.get("sec_per_step"),
               "tokens_per_s": r.get("tokens_per_s"), "gflops": r.get("gflops"),
               "peak_rss_gib": r.get("peak_rss_gib")}
        return row

    # ------------------------------------------------------------------ distributed (seqvit)
    def weak_args(self, n_tokens, depth):
        w = WEAK
        return ["--embed-dim", w["embed_dim"], "--heads", w["heads"], "--depth", depth,
                "--variables", w["variables"], "--tokenization", "per_variable",
                "--img", WEAK_IMG[n_tokens], "--patch", w["patch"]]

    def plan_args(self, n_tokens, depth, P, flags, batch, threads):
        """The planner's flags for the same model and the layout of `flags` (train's)."""
        f = dict(zip(flags[0::2], flags[1::2]))
        args = ["--embed-dim", WEAK["embed_dim"], "--heads", WEAK["heads"], "--depth", depth,
                "--variables", len(WEAK["variables"].split(",")), "--patch", WEAK["patch"],
                "--tokenization", "per_variable", "--seq", n_tokens, "--devices", P,
                "--precision", "fp32", "--batch", batch, "--threads", threads,
                "--recompute", "off", "--micro-batches", 1,
                "--dp", f.get("--dp", 1), "--tp", f.get("--tp", 1), "--pp", f.get("--pp", 1),
                "--sp", f.get("--sp", 1), "--zero", f.get("--zero", 0)]
        if "--sp-mode" in f:
            args += ["--sp-mode", f["--sp-mode"]]
        if "--sp-ulysses" in f:
            args += ["--sp-ulysses", f["--sp-ulysses"], "--sp-outer", f["--sp-outer"]]
        # one rank uses both cores (2 threads): the machine file that is both cores as one device
        return args + ["--machine", "local" if P > 1 else THIS_MACHINE]

    def train_run(self, name, P, flags, n_tokens, depth, batch):
        threads = max(1, 2 // P)  # every run uses both cores: 1 rank x 2 threads or P x 1
        flags = [str(x) for x in flags]

        def go():
            report = os.path.join(self.raw, name + ".report.json")
            cmd = [self.seqvit, "train"] + self.weak_args(n_tokens, depth) + [
                "--batch", batch, "--steps", self.a.steps, "--benchmark",
                "--report-json", report, "--threads", threads] + flags
            env = {"OMP_NUM_THREADS": str(threads)}
            if P > 1:
                env.update(MPI_ENV)
                cmd = ["mpirun", "--oversubscribe", "-np", P] + cmd
            out, err = self.run(cmd, env=env)
            if err:
                return {"status": err}
            with open(report) as f:
                rep = json.load(f)
            os.remove(report)
            return {"status": "ok", "report": rep}

        r = self.cached(name, go)
        pred = self.plan(self.plan_args(n_tokens, depth, P, flags, batch, threads))
        return r, pred

    def weak(self):
        ps = [1, 2, 4] if self.a.quick else [1, 2, 4, 8]
        n0 = WEAK["tokens_per_rank"]
        rows = []
        base = {}
        for depth in sorted({WEAK["depth"], WEAK["pp_depth"]}):
            r, pred = self.train_run(f"weak_base_d{depth}", 1, [], n0, depth, 1)
            base[depth] = (r, pred)
        for scheme, (flags, pmin) in SCHEMES.items():
            depth = WEAK["pp_depth"] if scheme == "pp" else WEAK["depth"]
            for P in ps:
                if P == 1:
                    r, pred = base[depth]
                elif P < pmin:
                    continue
                else:
                    r, pred = self.train_run(f"weak_{scheme}_{P}", P, flags(P), n0 * P, depth, 1)
                rows += run_rows("weak", scheme, P, n0 * P, depth, r, pred)
        write_csv(os.path.join(self.out, "weak.csv"), rows)

    def dp(self):
        ns = [1, 2, 4] if self.a.quick else [1, 2, 4, 8]
        n0 = WEAK["tokens_per_rank"]
        rows = []
        for n in ns:
            flags = ["--dp", n] if n > 1 else []
            r, pred = self.train_run(f"dp_{n}", n, flags, n0, WEAK["depth"], n)
            rows += run_rows("dp", "dp", n, n0, WEAK["depth"], r, pred)
        write_csv(os.path.join(self.out, "dp.csv"), rows)

    # ------------------------------------------------------------------ distributed peers
    def peers(self):
        script = os.path.join(HERE, "torch_sp_peer.py")
        py = self.a.torch2_python
        if not (os.path.exists(script) and os.path.exists(py)):
            log(f"peers: skipped ({script} or {py} missing)")
            write_csv(os.path.join(self.out, "peers.csv"), [])
            return
        ps = [1, 2, 4] if self.a.quick else [1, 2, 4, 8]
        n0 = WEAK["tokens_per_rank"]
        rows = []
        for mode in ("ulysses", "ddp"):
            for P in ps:
                def go(P=P, mode=mode):
                    cmd = [py, script, "--nproc", P, "--threads", max(1, 2 // P), "--mode",
                           mode, "--tokens-per-rank", n0,
                           "--dim", WEAK["embed_dim"], "--heads", WEAK["heads"],
                           "--depth", WEAK["depth"], "--dtype", "fp32", "--steps", self.a.steps]
                    out, err = self.run(cmd, env={"OMP_NUM_THREADS": str(max(1, 2 // P))})
                    if err:
                        return {"status": err}
                    rows_ = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
                    return rows_[-1] if rows_ else {"status": "no output"}

                r = self.cached(f"peer_{mode}_{P}", go)
                rss = r.get("peak_rss_gib_per_rank") or []
                sent = r.get("bytes_sent_per_rank") or {}
                rows.append({"impl": r.get("impl", mode), "mode": mode, "ranks": P,
                             "n_tokens": r.get("n_tokens"), "status": r.get("status", "ok"),
                             "step_s": r.get("step_s"), "tokens_per_s": r.get("tokens_per_s"),
                             "peak_rss_gib_max": max(rss) if rss else None,
                             "bytes_sent_rank0": sent_total(sent), "torch": r.get("torch")})
        write_csv(os.path.join(self.out, "peers.csv"), rows)


def sent_total(sent):
    """Bytes rank 0 sent, from the peer's {"op": bytes or [per rank]} record."""
    total = 0
    for v in sent.values():
        total += v[0] if isinstance(v, list) else (v or 0)
    return total


AXIS_OF_COMM = {"sp": "sp", "sp_ulysses": "sp", "sp_ring": "sp", "tp": "tp", "pp": "pp",
                "dp": "dp", "sp_dp": "dp"}


def run_rows(kind, scheme, P, n_tokens, depth, r, pred):
    """One CSV row per distinct rank role of a run (the rank with the largest plan and rank 0),
    measured beside predicted."""
    row = {"kind": kind, "scheme": scheme, "ranks": P, "n_tokens": n_tokens, "depth": depth,
           "status": r.get("status", "ok")}
    if row["status"] != "ok":
        return [row]
    rep = r["report"]
    steps = rep["step_seconds"]
    row["step_s"] = min(steps[1:]) if len(steps) > 1 else steps[0]
    row["first_step_s"] = steps[0]
    row["tokens_per_s"] = rep["batch"] * rep["model"]["tokens"] / row["step_s"]
    ranks = rep["ranks"]
    worst = max(ranks, key=lambda x: x["planned_bytes"]["total"])
    row["worst_rank"] = worst["rank"]
    row["peak_rss_gib"] = worst["peak_rss_bytes"] / GIB
    row["peak_rss_gib_max"] = max(x["peak_rss_bytes"] for x in ranks) / GIB
    row["engine_planned_gib"] = worst["planned_bytes"]["total"] / GIB
    row["engine_act_ws_mib"] = (worst["planned_bytes"]["activations"] +
                                worst["planned_bytes"]["workspace"]) / 2 ** 20
    axes = {"sp": 0, "tp": 0, "pp": 0, "dp": 0}
    for e in worst["first_step_comm"]:
        axes[AXIS_OF_COMM.get(e["comm"], "dp")] += e["bytes"]
    for k, v in axes.items():
        row[f"bytes_{k}"] = v
    row["bytes_total"] = sum(axes.values())
    row["bytes_total_max_rank"] = max(x["first_step_bytes_sent"] for x in ranks)
    if "memory_bytes" in pred:
        row["predicted_gib"] = pred["memory_bytes"]["total"] / GIB
        for k in ("sp", "tp", "pp", "dp", "total"):
            row[f"predicted_bytes_{k}"] = pred["bytes_sent"][k]
        row["predicted_step_s"] = pred["seconds"]["step"]
        row["predicted_layout"] = pred["layout"]
    else:
        row["predicted_error"] = json.dumps(pred)[:200]
    return [row]


def write_csv(path, rows):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "suite"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--quick", action="store_true",
                    help="N 1024 and 2048, 1-4 ranks (minutes, for checking the suite itself)")
    ap.add_argument("--only", default="single,weak,dp,peers")
    ap.add_argument("--blocks", type=int, default=2, help="blocks of the ViT-Base/Large shapes")
    ap.add_argument("--steps", type=int, default=2,
                    help="steps per distributed run (the fastest after the first is reported)")
    ap.add_argument("--mem-limit-gib", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--torch2-python", default="/opt/torch2/bin/python")
    ap.add_argument("--fresh", action="store_true", help="repeat runs already in raw/")
    a = ap.parse_args()
    for tool in ("seqvit", "bench/bench_block_step"):
        if not os.path.exists(os.path.join(a.build, tool)):
            log(f"building {tool} in {a.build}")
            subprocess.run(["cmake", "--build", a.build, "--target", os.path.basename(tool)],
                           check=True)
    if shutil.which("mpirun") is None:
        sys.exit("mpirun not found: run scripts/setup (Debian's openmpi-bin)")
    s = Suite(a)
    for part in a.only.split(","):
        if part not in ("single", "weak", "dp", "peers"):
            sys.exit(f"--only: unknown part '{part}' (valid: single, weak, dp, peers)")
        getattr(s, part)()
    # Debian's interpreter has python3-matplotlib (scripts/setup); the python3 on PATH may not
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([py, os.path.join(HERE, "suite_report.py"), "--out", s.out], check=True)
    log(f"suite done in {time.time() - s.t0:.0f} s: {os.path.join(s.out, 'report.md')}")


if __name__ == "__main__":
    main()
