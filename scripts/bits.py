#!/usr/bin/env python3
"""Same bits, before and after a refactor.

Trains a set of short runs that together take every path of the trainer (BP, FA, DFA, IFA on
dense nets; conv BP/FA/DFA; dropout; adversarial training; --layer-rules; --freeze;
--shared-feedback; alignment measurement; chain overlap, split last layer, pipelined deep nets;
1 and 2 threads), and prints one SHA-256 per run over

  - every tensor of checkpoint.safetensors (name, shape, bytes; in name order),
  - the checkpoint's `progress` metadata (epoch, learning rate, schedule and RNG state),
  - metrics.jsonl without its timings (seconds, eval_seconds, samples_per_s).

Usage:
  python3 scripts/bits.py --binary target/release/dfa               # print the hashes
  python3 scripts/bits.py --binary target/release/dfa --check scripts/bits.expected
  python3 scripts/bits.py --binary OLD --write scripts/bits.expected  # record a baseline

`scripts/bits.expected` holds the hashes of commit 31497db (before the module restructuring);
every later refactor must reproduce them. The `adversarial-code-*` runs (the paper's code's
recipe: α = 0, no clipping) came later: theirs are the hashes of commit 5e442ca, before an α = 0
step stopped computing the clean pass's zero gradients. Needs the data folder ($DFA_DATA or --data-dir) with
MNIST and CIFAR-10. Takes about two minutes on two cores.
"""

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

MNIST = "--dataset mnist --train-subset 1280 --test-subset 500 --max-epochs 2"
ADV_CODE = "--adversarial --adv-alpha 0 --adv-no-clip --adv-batch-error"
CIFAR = "--dataset cifar10 --train-subset 192 --test-subset 64 --max-epochs 1"

# name: flags (every run also gets --seed 3)
RUNS = {
    "dense-bp-t1": f"{MNIST} --model 3x64 --rule bp --threads 1",
    "dense-fa-t1": f"{MNIST} --model 3x64 --rule fa --threads 1",
    "dense-dfa-t1": f"{MNIST} --model 3x64 --rule dfa --threads 1",
    "dense-ifa-t1": f"{MNIST} --model 3x64 --rule ifa --threads 1",
    "dense-bp-t2": f"{MNIST} --model 2x800 --rule bp --threads 2",
    "dense-dfa-t2": f"{MNIST} --model 2x800 --rule dfa --threads 2",
    "dense-ifa-t2": f"{MNIST} --model 3x64 --rule ifa --threads 2",
    "overlap-bp-7x240-t2": f"{MNIST} --model 7x240 --rule bp --threads 2",
    "overlap-fa-7x240-t2": f"{MNIST} --model 7x240 --rule fa --threads 2",
    "split-dfa-7x240-t2": f"{MNIST} --model 7x240 --rule dfa --threads 2",
    "pipelined-dfa-100x240-t2": "--dataset mnist --train-subset 640 --test-subset 200 --max-epochs 1 "
    "--model 100x240 --rule dfa --threads 2",
    "pipelined-bp-100x240-t2": "--dataset mnist --train-subset 640 --test-subset 200 --max-epochs 1 "
    "--model 100x240 --rule bp --threads 2",
    "pipelined-bp-100x240-t1": "--dataset mnist --train-subset 320 --test-subset 200 --max-epochs 1 "
    "--model 100x240 --rule bp --threads 1",
    "pipelined-fa-20x64-t2": f"{MNIST} --model 20x64 --rule fa --threads 2",
    "pipelined-ifa-20x64-t2": f"{MNIST} --model 20x64 --rule ifa --threads 2",
    "dropout-dfa-t1": f"{MNIST} --model 2x100 --rule dfa --dropout --threads 1",
    "dropout-bp-t2": f"{MNIST} --model 2x100 --rule bp --dropout --threads 2",
    "dropout-fa-validation-t1": f"{MNIST} --model 2x100 --rule fa --dropout --validation 256 "
    "--schedule-on validation --patience 1 --threads 1",
    "adversarial-bp-t1": f"{MNIST} --model 2x100 --rule bp --adversarial --threads 1",
    "adversarial-dfa-t2": f"{MNIST} --model 2x100 --rule dfa --adversarial --threads 2",
    "adversarial-fa-t1": f"{MNIST} --model 2x100 --rule fa --adversarial --threads 1",
    # the paper's code's recipe (α = 0, no clipping, adversarial batch error); baseline 5e442ca
    "adversarial-code-bp-t1": f"{MNIST} --model 2x100 --rule bp {ADV_CODE} --threads 1",
    "adversarial-code-fa-t2": f"{MNIST} --model 2x100 --rule fa {ADV_CODE} --threads 2",
    "adversarial-code-dfa-t1": f"{MNIST} --model 2x100 --rule dfa {ADV_CODE} --threads 1",
    "adversarial-code-kp-t1": f"{MNIST} --model 2x100 --rule kp {ADV_CODE} --threads 1",
    "adversarial-code-brsf-t1": f"{MNIST} --model 2x100 --rule brsf {ADV_CODE} --threads 1",
    "layer-rules-t1": f"{MNIST} --model 3x50 --layer-rules dfa,bp,fa --threads 1",
    "layer-rules-t2": f"{MNIST} --model 3x50 --layer-rules dfa,bp,bp --init uniform --threads 2",
    "freeze-bp-t1": f"{MNIST} --model 3x50 --rule bp --freeze 1 --threads 1",
    "freeze-dfa-t2": f"{MNIST} --model 3x50 --rule dfa --freeze 2,4 --threads 2",
    "shared-feedback-t1": f"{MNIST} --model 2x100 --rule dfa --shared-feedback --threads 1",
    "align-dfa-t1": f"{MNIST} --model 2x100 --rule dfa --align-every 5 --threads 1",
    "align-fa-t2": f"{MNIST} --model 2x100 --rule fa --align-every 7 --threads 2",
    "align-ifa-t1": f"{MNIST} --model 3x50 --rule ifa --align-every 9 --threads 1",
    "align-mixed-t1": f"{MNIST} --model 3x50 --layer-rules dfa,bp,fa --align-every 9 --threads 1",
    "logistic-t1": f"{MNIST} --model 2x100 --rule dfa --act logistic --threads 1",
    "relu-nobias-t2": f"{MNIST} --model 2x100 --rule fa --act relu --no-bias --threads 2",
    "schedule-batch-t1": f"{MNIST} --model 2x100 --rule dfa --schedule-on batch --schedule-start 100 "
    "--lr 1e-3 --threads 1",
    "conv-bp-t1": f"{CIFAR} --model conv-small --rule bp --threads 1",
    "conv-fa-t1": f"{CIFAR} --model conv-small --rule fa --threads 1",
    "conv-dfa-t1": f"{CIFAR} --model conv-small --rule dfa --threads 1",
    "conv-dfa-t2": f"{CIFAR} --model conv-small --rule dfa --threads 2",
    "conv-mixed-dropout-t2": f"{CIFAR} --model c8k3p1,p2s2,32 --layer-rules dfa,fa --dropout --threads 2",
}

TIMINGS = ("seconds", "eval_seconds", "samples_per_s")


def checkpoint_digest(path, h):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    for name in sorted(header):
        t = header[name]
        start, end = t["data_offsets"]
        h.update(f"{name} {t['dtype']} {t['shape']}\n".encode())
        h.update(body[start:end])
    h.update(meta.get("progress", "").encode())


def metrics_digest(path, h):
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            for k in TIMINGS:
                m.pop(k, None)
            h.update((json.dumps(m, sort_keys=True) + "\n").encode())


def run_all(binary, data_dir, only):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in RUNS.items():
            if only and name not in only:
                continue
            cmd = [binary, "train", *flags.split(), "--seed", "3", "--out", tmp, "--name", name,
                   "--data-dir", data_dir]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{name}: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-2000:]}")
            h = hashlib.sha256()
            checkpoint_digest(os.path.join(tmp, name, "checkpoint.safetensors"), h)
            metrics_digest(os.path.join(tmp, name, "metrics.jsonl"), h)
            out[name] = h.hexdigest()
            print(f"{name} {out[name]}", flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/release/dfa")
    p.add_argument("--data-dir", default=os.environ.get("DFA_DATA", "../shared/data"))
    p.add_argument("--check", help="compare with this file of expected hashes")
    p.add_argument("--write", help="write the hashes to this file")
    p.add_argument("--only", nargs="*", help="only these runs")
    a = p.parse_args()
    got = run_all(a.binary, a.data_dir, a.only)
    if a.write:
        with open(a.write, "w") as f:
            f.writelines(f"{k} {v}\n" for k, v in got.items())
    if a.check:
        with open(a.check) as f:
            want = dict(line.split() for line in f if line.strip())
        bad = [k for k in got if want.get(k) != got[k]]
        missing = [k for k in want if k not in got and not a.only]
        for k in bad:
            print(f"DIFFERENT: {k}: expected {want.get(k)}, got {got[k]}")
        for k in missing:
            print(f"MISSING: {k}")
        if bad or missing:
            sys.exit(1)
        print(f"same bits: {len(got)} runs")


if __name__ == "__main__":
    main()
