"""net.fit against `dfa train` on the same net, alternating in one run (docs/performance.md).

    DFA_DATA=../shared/data python scripts/py_speed.py [--rounds 3] [--epochs 1]

Prints, per round, the training samples/s of the epoch (metrics' samples_per_s) and the wall time
of the whole call (CLI: the process, data loading included; Python: fit, with the arrays already
loaded, their copy and SHA-256 included)."""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import dfa

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--model", default="2x800")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
root = Path(__file__).resolve().parents[1]
binary = os.environ.get("DFA_BIN", str(root / "target" / "release" / "dfa"))
data = dfa.datasets.mnist()
hidden = a.model if "x" in a.model else [int(w) for w in a.model.split(",")]
for r in range(1, a.rounds + 1):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([binary, "train", "--dataset", "mnist", "--model", a.model, "--rule", "dfa", "--threads",
                        str(a.threads), "--max-epochs", str(a.epochs), "--no-early-stop", "--out", tmp, "--name", "c"],
                       check=True, capture_output=True)
        cli_wall = time.perf_counter() - t
        cli = [json.loads(l)["samples_per_s"] for l in Path(tmp, "c", "metrics.jsonl").read_text().splitlines()]
    net = dfa.Net(hidden=hidden, rule="dfa", seed=1, threads=a.threads, early_stop=False)
    t = time.perf_counter()
    hist = net.fit(*data, max_epochs=a.epochs)
    py_wall = time.perf_counter() - t
    py = [m["samples_per_s"] for m in hist]
    print(f"round {r}: samples/s CLI {sum(cli)/len(cli):8.0f}  Python {sum(py)/len(py):8.0f}  "
          f"ratio {sum(py)/len(py)/(sum(cli)/len(cli)):.3f}   wall CLI {cli_wall:6.2f}s  Python {py_wall:6.2f}s")
