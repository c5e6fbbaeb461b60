#!/usr/bin/env python3
"""The reference experiment at our scale: does a longer token sequence forecast better?

Trains the same ClimaX model on the same data for the same number of steps with patch sizes
that give N = 128, 512 and 2,048 tokens per variable group on the 32x64 (5.625 deg) grid
(patch 4, 2, 1), in both tokenizations (aggregate: N = patches; per_variable: N = V x patches),
evaluates each on the test period against persistence and climatology, and writes

    OUT/results.csv     one row per (tokenization, patch, variable, lead)
    OUT/results.md      the table, the settings and the training times
    OUT/rmse_acc.png    RMSE and ACC against the number of tokens (needs python3-matplotlib)

Each run lives in OUT/runs/<tokenization>_p<patch>/ and is skipped if already complete, so an
interrupted experiment continues where it stopped (`seqvit train --resume`).

    scripts/resolution_experiment.py --out experiments/resolution            # all six runs
    scripts/resolution_experiment.py --out /tmp/x --steps 20 --patches 4,2   # a quick look

Only the standard library is needed to run it (plots use matplotlib if it is installed).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, log=None):
    print("+ " + " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, check=True)
        return
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def final_step(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(d):
        return 0
    steps = [int(n[5:]) for n in os.listdir(d) if n.startswith("step_") and not n.endswith(".tmp")]
    return max(steps, default=0)


def train_seconds(run_dir):
    """Sum of the wall time of the training runs in the log (resumed runs add up)."""
    total, last = 0.0, None
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e["event"] == "end":
                last = e["elapsed_s"]
    return last if last is not None else total


def with_both_rmses(s):
    """A score entry with both RMSE definitions' keys (docs/evaluation.md). Entries written
    before `seqvit evaluate` reported both hold the mean per forecast under `rmse*`; their
    WeatherBench2 RMSE is unknown (None)."""
    if "rmse_wb2" in s:
        return s
    s = dict(s)
    for base in ("", "_persistence", "_climatology"):
        s["rmse_mean_per_forecast" + base] = s.pop("rmse" + base)
        s["rmse_wb2" + base] = None
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqvit", default=os.path.join(ROOT, "build", "seqvit"))
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--data", help="NetCDF data (default: generate OUT/data with seqvit data synth)")
    ap.add_argument("--years", type=int, default=2, help="years of synthetic data")
    ap.add_argument("--train-range", default="1979-01-01/1980-07-01")
    ap.add_argument("--val-range", default="1980-07-01/1980-09-01")
    ap.add_argument("--test-range", default="1980-09-01/1981-01-01")
    ap.add_argument("--variables", default="t2m,u10,v10,z_500,t_850")
    ap.add_argument("--out-variables", default="t2m,u10,v10,z_500,t_850")
    ap.add_argument("--lead-hours", default="36")
    ap.add_argument("--patches", default="4,2,1")
    ap.add_argument("--tokenizations", default="aggregate,per_variable")
    ap.add_argument("--skip", default="", help="runs to leave out, e.g. per_variable_p1")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--embed-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--lr", default="2e-3")
    ap.add_argument("--bf16", action="store_true", help="bf16 mixed precision for every run")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    data = a.data
    if data is None:
        data = os.path.join(a.out, "data")
        if not os.path.exists(os.path.join(data, "constants")):
            run([a.seqvit, "data", "synth", "--out", data, "--grid", "32x64", "--years",
                 str(a.years), "--seed", str(a.seed)])
    rows, times = [], {}
    for tok in a.tokenizations.split(","):
        for p in [int(x) for x in a.patches.split(",")]:
            name = f"{tok}_p{p}"
            if name in a.skip.split(","):
                print(f"  {name}: skipped (--skip)", flush=True)
                continue
            rd = os.path.join(a.out, "runs", name)
            log = os.path.join(a.out, "runs", name + ".log")
            os.makedirs(os.path.dirname(rd), exist_ok=True)
            if final_step(rd) < a.steps:
                cmd = [a.seqvit, "train", "--data", data, "--train-range", a.train_range,
                       "--val-range", a.val_range, "--test-range", a.test_range,
                       "--variables", a.variables, "--out-variables", a.out_variables,
                       "--lead-hours", a.lead_hours, "--tokenization", tok, "--patch", str(p),
                       "--embed-dim", str(a.embed_dim), "--heads", str(a.heads),
                       "--depth", str(a.depth), "--steps", str(a.steps), "--batch",
                       str(a.batch), "--lr", a.lr, "--warmup", str(max(1, a.steps // 20)),
                       "--val-every", str(max(1, a.steps // 4)), "--val-batches", "8",
                       "--checkpoint-every", str(max(1, a.steps // 4)), "--keep", "1",
                       "--seed", str(a.seed), "--run-dir", rd, "--log-every", "25"]
                if a.bf16:
                    cmd.append("--bf16")
                if a.threads:
                    cmd += ["--threads", str(a.threads)]
                if final_step(rd) > 0:
                    cmd.append("--resume")
                t = time.time()
                run(cmd, log)
                print(f"  {name}: trained in {time.time() - t:.0f} s", flush=True)
            scores = os.path.join(a.out, "runs", name + ".test.json")
            if not os.path.exists(scores):
                cmd = [a.seqvit, "evaluate", "--checkpoint", rd, "--json", scores]
                if a.threads:
                    cmd += ["--threads", str(a.threads)]
                run(cmd, log)
            times[name] = train_seconds(rd)
            with open(os.path.join(rd, "log.jsonl")) as f:
                start = json.loads(f.readline())
            n_tokens = None
            m = start["model"]
            lp = (m["img_size"][0] // p) * (m["img_size"][1] // p)
            n_tokens = lp * (len(m["variables"]) if tok == "per_variable" else 1)
            for s in json.load(open(scores))["scores"]:
                rows.append({"tokenization": tok, "patch": p, "tokens": n_tokens,
                             "train_s": round(times[name], 1), **with_both_rmses(s)})

    fields = ["tokenization", "patch", "tokens", "train_s", "variable", "units", "lead_hours",
              "forecasts", "rmse_wb2", "rmse_mean_per_forecast", "acc", "rmse_wb2_persistence",
              "rmse_mean_per_forecast_persistence", "acc_persistence", "rmse_wb2_climatology",
              "rmse_mean_per_forecast_climatology", "acc_climatology"]
    with open(os.path.join(a.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def g(v, fmt):
        return "—" if v is None else format(v, fmt)

    md = ["# Resolution / tokenization experiment", "",
          f"Data: `{data}`; train {a.train_range}, test {a.test_range}; inputs {a.variables}; "
          f"lead {a.lead_hours} h. Model: D={a.embed_dim}, {a.heads} heads, depth {a.depth}, "
          f"{a.steps} steps of batch {a.batch}, lr {a.lr}, {'bf16' if a.bf16 else 'fp32'}, "
          f"seed {a.seed}. Scores on the test period (`seqvit evaluate`).", "",
          "RMSE: `rmse_wb2` (WeatherBench2: root of the mean MSE) / `rmse_mean_per_forecast` "
          "(mean of the per-forecast RMSEs), docs/evaluation.md; — where a run's scores predate "
          "`rmse_wb2`.", "",
          "| tokenization | patch | tokens N | train s | variable | RMSE model | RMSE persistence "
          "| RMSE climatology | ACC model | ACC persistence |",
          "|---|---|---|---|---|---|---|---|---|---|"]

    def both(r, key):
        return f"{g(r['rmse_wb2' + key], '.4g')} / {g(r['rmse_mean_per_forecast' + key], '.4g')}"

    for r in rows:
        md.append(f"| {r['tokenization']} | {r['patch']} | {r['tokens']} | {r['train_s']} | "
                  f"{r['variable']} ({r['units']}) | {both(r, '')} | {both(r, '_persistence')} | "
                  f"{both(r, '_climatology')} | "
                  f"{g(r['acc'], '.3f')} | {g(r['acc_persistence'], '.3f')} |")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (apt-get install python3-matplotlib)")
        return
    # The WeatherBench2 RMSE when every run has it, else the mean per forecast (older scores).
    rk = "rmse_wb2" if all(r["rmse_wb2"] is not None for r in rows) else "rmse_mean_per_forecast"
    variables = sorted({r["variable"] for r in rows}, key=a.out_variables.split(",").index)
    fig, axes = plt.subplots(2, len(variables), figsize=(3.2 * len(variables), 6), squeeze=False)
    for j, v in enumerate(variables):
        for tok, marker in (("aggregate", "o-"), ("per_variable", "s--")):
            pts = sorted((r["tokens"], r[rk], r["acc"]) for r in rows
                         if r["variable"] == v and r["tokenization"] == tok)
            if not pts:
                continue
            axes[0][j].plot([p[0] for p in pts], [p[1] for p in pts], marker, label=tok)
            axes[1][j].plot([p[0] for p in pts], [p[2] for p in pts], marker, label=tok)
        ref = next(r for r in rows if r["variable"] == v)
        for k, key, style in ((0, rk + "_persistence", ":"), (0, rk + "_climatology", "-."),
                              (1, "acc_persistence", ":")):
            if ref[key] is not None:
                axes[k][j].axhline(ref[key], color="gray", linestyle=style,
                                   label=key.split("_")[-1])
        axes[0][j].set_title(f"{v} ({ref['units']})")
        for k in (0, 1):
            axes[k][j].set_xscale("log", base=2)
            axes[k][j].set_xlabel("tokens per sample N")
        axes[0][j].set_ylabel(f"lat-weighted RMSE ({rk})")
        axes[1][j].set_ylabel("ACC")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Test scores at {a.lead_hours} h lead vs sequence length "
                 f"({a.steps} steps, D={a.embed_dim}, depth {a.depth})")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "rmse_acc.png"), dpi=110)
    print("wrote", os.path.join(a.out, "rmse_acc.png"))


if __name__ == "__main__":
    sys.exit(main())
