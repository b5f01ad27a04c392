#!/usr/bin/env python3
"""Speed of `dfa` beside the PyTorch reference (../shared/tools/ref_dfa.py), on this machine.

Runs every configuration of both programs --reps times, alternating the two programs and
going round-robin over the configurations (so that slow phases of a noisy host hit all alike),
and reports medians of training samples/s and their ratio against the targets of the
performance issue. Then compares the GEMM dfa uses (faer) with OpenBLAS (numpy) and MKL
(torch) at the GEMM shapes of the 2x800 training step, on 1 and 2 threads.

    python3 scripts/compare.py [--python ../ref-venv/bin/python] [--threads 2] [--reps 5]
    python3 scripts/compare.py --only 7x240 --skip-gemm   # re-measure some nets, keep the other rows

Needs a Python with torch, numpy and threadpoolctl (see ../shared/tools/README.md):
    python3 -m venv ../ref-venv && ../ref-venv/bin/pip install torch numpy threadpoolctl
Writes results/compare.json and results/compare.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

# (net, dfa rule, reference flags, target ratio, samples per measurement)
CONFIGS = [
    ("2x800", "dfa", ["--rule", "dfa", "--hidden", "800,800"], 2.0, None),
    ("2x800", "bp", ["--rule", "bp", "--bp-autograd", "--hidden", "800,800"], 1.5, None),
    ("2x800", "bp", ["--rule", "bp", "--hidden", "800,800"], None, None),
    ("2x800", "fa", ["--rule", "fa", "--hidden", "800,800"], None, None),
    ("2x800", "ifa", ["--rule", "ifa", "--hidden", "800,800"], None, None),
    ("7x240", "dfa", ["--rule", "dfa", "--hidden", ",".join(["240"] * 7)], 3.0, None),
    ("7x240", "bp", ["--rule", "bp", "--hidden", ",".join(["240"] * 7)], 3.0, None),
    ("100x240", "dfa", ["--rule", "dfa", "--hidden", ",".join(["240"] * 100)], 3.0, 12800),
    ("100x240", "bp", ["--rule", "bp", "--hidden", ",".join(["240"] * 100)], 3.0, 12800),
    ("3x1000-cifar", "dfa", ["--rule", "dfa", "--hidden", "1000,1000,1000"], 1.5, None),
    ("3x1000-cifar", "bp", ["--rule", "bp", "--hidden", "1000,1000,1000"], 1.5, None),
    # the paper's CONV tanh net; the reference is scripts/ref_conv.py (PyTorch, autograd BP only)
    ("conv-tanh-cifar", "bp", ["--conv"], None, 640),
    ("conv-tanh-cifar", "dfa", ["--conv"], None, 640),
]
STEP_SHAPES = ["64x784x800", "800x64x784", "64x800x800", "800x64x800"]


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def ref_samples_per_s(a, net, flags, samples):
    if flags == ["--conv"]:
        out = run([a.python, os.path.join(ROOT, "scripts", "ref_conv.py"), "--threads", str(a.threads),
                   "--images", str(samples)])
        line = [l for l in out.splitlines() if l.startswith("SUMMARY ")][-1]
        return json.loads(line[len("SUMMARY "):])["samples_per_s_median"]
    data = ["--data", os.path.join(SHARED, "data", "cifar-10-batches-bin" if "cifar" in net else "mnist")]
    limit = ["--limit-train", str(samples)] if samples else []
    out = run([a.python, os.path.join(SHARED, "tools", "ref_dfa.py"), *flags, *data, *limit,
               "--epochs", "1", "--threads", str(a.threads), "--no-eval"])
    line = [l for l in out.splitlines() if l.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])["samples_per_s_median"]


def dfa_samples_per_s(a, net, rule, samples):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "b.json")
        extra = ["--samples", str(samples)] if samples else []
        run([a.dfa, "bench", "--cases", net, "--rules", rule, "--threads", str(a.threads), *extra, "--json", path])
        with open(path) as fh:
            return json.load(fh)["train"][0]["samples_per_s"]


def git_commit():
    """The checkout's commit (short), with `+changes` when its code or scripts differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        # only what can change a measurement: the code, its build, the scripts
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "benches",
                                "Cargo.toml", "Cargo.lock", "scripts", "build.rs"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def best(runs):
    """Per-shape maximum over repeated measurements (a peak: noise only ever lowers it)."""
    out = {}
    for r in runs:
        for shape, v in r.items():
            if v is not None:
                out[shape] = max(out.get(shape, v), v)
    return out


def gemm_comparison(a):
    rows = []
    for threads in (1, 2):
        ours_runs, openblas_runs, mkl_runs = [], [], []
        for _ in range(a.reps):
            with tempfile.TemporaryDirectory() as tmp:
                ours_path, ref_path = os.path.join(tmp, "d.json"), os.path.join(tmp, "r.json")
                run([a.dfa, "bench", "--cases", "2x800", "--threads", str(threads), "--gemm-only", "--json", ours_path])
                run([a.python, os.path.join(SHARED, "tools", "gemm_peak.py"), "--threads", str(threads),
                     "--samples", "15", "--json", ref_path])
                with open(ours_path) as fh:
                    ours_runs.append({f"{g['m']}x{g['k']}x{g['n']}": g["gflops"] for g in json.load(fh)["gemm"]})
                with open(ref_path) as fh:
                    ref = json.load(fh)
            openblas_runs.append({r["shape"]: r["nn_gflops"] for r in ref["numpy_as_set"]["results"]})
            mkl_runs.append({r["shape"]: r["mlp_layout_gflops"] for r in ref["torch"]})
        ours, openblas, mkl = best(ours_runs), best(openblas_runs), best(mkl_runs)
        for shape in STEP_SHAPES + ["1024x1024x1024"]:
            rows.append({"threads": threads, "shape": shape, "dfa_faer": ours.get(shape),
                         "openblas_numpy": openblas.get(shape), "mkl_torch_mlp_layout": mkl.get(shape)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=os.path.join(os.path.dirname(ROOT), "ref-venv", "bin", "python"))
    ap.add_argument("--dfa", default=os.path.join(ROOT, "target", "release", "dfa"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None, help="substring filter on the net name")
    ap.add_argument("--skip-gemm", action="store_true")
    ap.add_argument("--gemm-only", action="store_true",
                    help="only re-measure the GEMM table; the training rows come from results/compare.json")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite results/compare.md from results/compare.json")
    a = ap.parse_args()
    if a.render:
        with open(os.path.join(ROOT, "results", "compare.json")) as fh:
            saved = json.load(fh)
        write(saved["cpu"], saved["threads"], saved["reps"], saved["train"], saved["gemm"], saved.get("date", "?"),
              saved.get("gemm_reps"))
        return
    if not os.path.exists(a.dfa):
        run(["cargo", "build", "--release"], cwd=ROOT)
    configs = [] if a.gemm_only else [c for c in CONFIGS if not a.only or a.only in c[0]]
    commit = git_commit()
    ours = {i: [] for i in range(len(configs))}
    theirs = {i: [] for i in range(len(configs))}
    for rep in range(a.reps):
        for i, (net, rule, flags, _, samples) in enumerate(configs):
            first, second = (("ref", "dfa") if (rep + i) % 2 == 0 else ("dfa", "ref"))
            for who in (first, second):
                if who == "ref":
                    theirs[i].append(ref_samples_per_s(a, net, flags, samples))
                else:
                    ours[i].append(dfa_samples_per_s(a, net, rule, samples))
            print(f"rep {rep + 1}: {net} {' '.join(flags[:3])}: dfa {ours[i][-1]:.0f}, reference {theirs[i][-1]:.0f} samples/s",
                  flush=True)
    rows = []
    for i, (net, rule, flags, target, samples) in enumerate(configs):
        d, r = statistics.median(ours[i]), statistics.median(theirs[i])
        ref_rule = "bp-autograd" if flags == ["--conv"] else rule + ("-autograd" if "--bp-autograd" in flags else "")
        rows.append({"net": net, "dfa_rule": rule, "reference_rule": ref_rule, "threads": a.threads,
                     "samples": samples or "epoch", "dfa_samples_per_s": d, "reference_samples_per_s": r,
                     "ratio": d / r, "target": target, "dfa_all": ours[i], "reference_all": theirs[i],
                     "date": str(datetime.date.today()), "commit": commit})
    saved_path = os.path.join(ROOT, "results", "compare.json")
    saved = None
    if os.path.exists(saved_path):
        with open(saved_path) as fh:
            saved = json.load(fh)
    if a.gemm_only:
        rows = saved["train"]
    elif a.only and saved:
        # keep the rows not measured this time, in their order; a row measured with another
        # thread count is a row of its own (it does not replace the saved one)
        key = lambda r: (r["net"], r["dfa_rule"], r["reference_rule"], r.get("threads", saved.get("threads")))
        fresh = {key(r): r for r in rows}
        rows = [fresh.pop(key(r), r) for r in saved["train"]]
        rows += list(fresh.values())
    gemm = [] if a.skip_gemm else gemm_comparison(a)
    if a.skip_gemm and saved:
        gemm = saved["gemm"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    gemm_reps = saved.get("gemm_reps", saved["reps"]) if a.skip_gemm and saved else a.reps
    train_reps = saved["reps"] if a.gemm_only else a.reps
    write(cpu, a.threads, train_reps, rows, gemm, str(datetime.date.today()), gemm_reps)


def write(cpu, threads, reps, rows, gemm, date, gemm_reps=None):
    gemm_reps = gemm_reps or reps
    counts = sorted({r.get("threads", threads) for r in rows}) or [threads]
    # the header names the rows' thread count; rows of several counts get a threads column
    per_row = len(counts) > 1
    said = " and ".join(str(c) for c in counts) + (" threads (column threads)" if per_row else " threads")
    lines = [f"Measured {date} on {cpu}, {os.cpu_count()} cores, {said}, "
             f"median of {reps} alternating runs (`python3 scripts/compare.py`). The ratio and its verdict "
             "compare the two medians; the runs column gives each run's ratio against the reference run "
             "next to it in time, and best / best the ratio of the two programs' fastest runs.", "",
             "| net |" + (" threads |" if per_row else "") + " dfa rule | reference rule | dfa samples/s | "
             "reference samples/s | ratio | target | runs | best / best |",
             "| --- |" + (" ---: |" if per_row else "") + " --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    dates = sorted({r["date"] for r in rows if "date" in r})
    if len(dates) > 1:
        # `--only` re-measured some rows: say which were measured when
        lines.insert(1, "Rows measured on different days: " + "; ".join(
            f"{d}: {', '.join(sorted({r['net'] for r in rows if r.get('date') == d}))}" for d in dates) + ".")
    commits = sorted({r["commit"] for r in rows if "commit" in r})
    if len(commits) > 1:
        # `--only` re-measured some rows with other code: say which
        lines.insert(1, "Rows measured at different commits: " + "; ".join(
            f"{c}: {', '.join(sorted({r['net'] for r in rows if r.get('commit') == c}))}" for c in commits) + ".")
    for r in rows:
        target = f"≥ {r['target']}×" if r["target"] else ""
        met = "" if not r["target"] else (" ✓" if r["ratio"] >= r["target"] else " ✗")
        runs = " ".join(f"{d / t:.2f}" for d, t in zip(r.get("dfa_all", []), r.get("reference_all", [])))
        bests = (f"{max(r['dfa_all']) / max(r['reference_all']):.2f}×" if r.get("dfa_all") and r.get("reference_all")
                 else "")
        col = f" {r.get('threads', threads)} |" if per_row else ""
        lines.append(f"| {r['net']} |{col} {r['dfa_rule']} | {r['reference_rule']} | {r['dfa_samples_per_s']:,.0f} | "
                     f"{r['reference_samples_per_s']:,.0f} | {r['ratio']:.2f}×{met} | {target} | {runs} | {bests} |")
    if gemm:
        lines += ["", f"GEMM GFLOP/s at the 2x800 step's shapes, best of {gemm_reps} (M×K×N; dfa in the layouts it uses, "
                  "OpenBLAS through numpy in the plain layout, MKL through torch in the MLP layout):", "",
                  "| threads | shape | dfa (faer) | OpenBLAS | dfa / OpenBLAS | MKL |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for g in gemm:
            ratio = g["dfa_faer"] / g["openblas_numpy"] if g["dfa_faer"] and g["openblas_numpy"] else float("nan")
            lines.append(f"| {g['threads']} | {g['shape']} | {g['dfa_faer']:.1f} | {g['openblas_numpy']:.1f} | "
                         f"{ratio:.2f} | {g['mkl_torch_mlp_layout']:.1f} |")
    text = "\n".join(lines)
    print("\n" + text)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    with open(os.path.join(ROOT, "results", "compare.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(ROOT, "results", "compare.json"), "w") as fh:
        json.dump({"cpu": cpu, "date": date, "threads": threads, "reps": reps, "gemm_reps": gemm_reps, "train": rows, "gemm": gemm}, fh,
                  indent=1)


if __name__ == "__main__":
    main()
