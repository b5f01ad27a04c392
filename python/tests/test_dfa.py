"""The Python API of dfa: learning on a real MNIST subset, the same bits as the command line,
the GIL released during training, Ctrl-C, saving and loading, and every input error.

Needs the data folder ($DFA_DATA, CI: ../shared/data) and the release binary ($DFA_BIN, default
target/release/dfa) for the comparisons with the command line."""

import json
import os
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import dfa

ROOT = Path(__file__).resolve().parents[2]
DATA = os.environ.get("DFA_DATA", str(ROOT.parent / "shared" / "data"))
BIN = os.environ.get("DFA_BIN", str(ROOT / "target" / "release" / "dfa"))


@pytest.fixture(scope="module")
def mnist():
    return dfa.datasets.mnist(DATA)


def small(**options):
    base = dict(hidden=[64], rule="dfa", seed=3, learning_rate=1e-3, threads=2, early_stop=False)
    base.update(options)
    return dfa.Net(**base)


def tensors(path):
    """Every tensor of a safetensors file, as its bytes (parsed from the format itself)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n :]
    return {k: data[v["data_offsets"][0] : v["data_offsets"][1]] for k, v in sorted(header.items())}


def numbers(path):
    lines = [json.loads(line) for line in Path(path, "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        for timing in ("seconds", "samples_per_s", "eval_seconds"):
            m.pop(timing)
    return lines


def cli(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, env={**os.environ, "DFA_DATA": DATA})
    assert out.returncode == 0, out.stderr
    return out


def test_the_readme_api_learns_mnist(mnist, tmp_path):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 784) and x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_test.shape == (10000, 784) and 0.0 <= x_train.min() and x_train.max() <= 1.0
    net = dfa.Net(hidden=[200, 200], act="tanh", rule="dfa", seed=1, learning_rate=1e-3)
    seen = []

    def on_epoch(m):
        # the callback may use the net: it holds the weights of the epoch just done
        seen.append((m["epoch"], net.evaluate(x_test[:1000], y_test[:1000])["error"], m["test_error"]))

    history = net.fit(x_train[:5000], y_train[:5000], x_test[:1000], y_test[:1000], max_epochs=3, on_epoch=on_epoch)
    assert [m["epoch"] for m in history] == [1, 2, 3] and [e for e, _, _ in seen] == [1, 2, 3]
    assert all(a == pytest.approx(b) for _, a, b in seen), seen
    assert history[-1]["test_error"] < 20.0, history  # chance: 90 %
    scores = net.predict(x_test[:7])
    assert scores.shape == (7, 10) and scores.dtype == np.float32 and ((0 <= scores) & (scores <= 1)).all()
    ev = net.evaluate(x_test[:1000], y_test[:1000])
    assert ev["error"] == pytest.approx(history[-1]["test_error"]) and ev["loss"] > 0
    assert ev["error"] == pytest.approx(100 * np.mean(net.predict(x_test[:1000]).argmax(1) != y_test[:1000]))
    angles = net.angles(x_test[:1000], y_test[:1000])
    assert [a["layer"] for a in angles] == [1, 2]
    assert all(0 < a["delta_angle_mean"] < 90 for a in angles), angles  # DFA aligns: below 90°
    net.save(tmp_path / "run")
    back = dfa.Net.load(tmp_path / "run")
    assert np.array_equal(back.predict(x_test[:100]), net.predict(x_test[:100]))
    assert back.history == net.history and back.epoch == 3
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"config.toml", "meta.json", "metrics.jsonl", "checkpoint.safetensors"}


def test_the_same_bits_as_the_command_line(mnist, tmp_path):
    x_train, y_train, x_test, y_test = mnist
    net = small()
    net.fit(x_train[:1000], y_train[:1000], x_test[:300], y_test[:300], max_epochs=2)
    net.save(tmp_path / "py")
    common = ["--model", "64", "--rule", "dfa", "--seed", "3", "--lr", "0.001", "--threads", "2",
              "--no-early-stop", "--max-epochs", "2", "--out", str(tmp_path)]
    # the named data set through the command line
    cli("train", "--dataset", "mnist", "--train-subset", "1000", "--test-subset", "300", *common, "--name", "named")
    # the same arrays in an .npz file written by NumPy
    np.savez_compressed(tmp_path / "mine.npz", x_train=x_train[:1000], y_train=y_train[:1000],
                        x_test=x_test[:300], y_test=y_test[:300])
    cli("train", "--data", str(tmp_path / "mine.npz"), *common, "--name", "npz")
    mine = tensors(tmp_path / "py" / "checkpoint.safetensors")
    assert len(mine) >= 5
    for other in ("named", "npz"):
        assert tensors(tmp_path / other / "checkpoint.safetensors") == mine, other
        assert numbers(tmp_path / other) == numbers(tmp_path / "py"), other
    # a command-line run folder loads into Python and predicts what the Python net predicts
    assert np.array_equal(dfa.Net.load(tmp_path / "named").predict(x_test[:50]), net.predict(x_test[:50]))


def test_training_releases_the_gil(mnist):
    x_train, y_train, _, _ = mnist
    counter, stop = [0], threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    small(hidden=[256, 256]).fit(x_train[:10000], y_train[:10000], max_epochs=2)
    seconds = time.perf_counter() - start
    stop.set()
    t.join()
    # a pure-Python loop makes millions of steps a second when it has the interpreter
    assert counter[0] > 100_000 * seconds, (counter[0], seconds)


def test_ctrl_c_stops_between_batches_and_fit_goes_on_bit_for_bit(mnist):
    x_train, y_train, x_test, y_test = mnist
    args = (x_train[:20000], y_train[:20000], x_test[:500], y_test[:500])
    whole = small(hidden=[256])
    whole.fit(*args, max_epochs=3)
    cut = small(hidden=[256])
    # Ctrl-C 50 ms into the second epoch (an epoch here takes several times that). Python turns
    # SIGINT into KeyboardInterrupt only where its parent left SIGINT handled: a test run started
    # in the background by a shell without job control inherits it ignored, so install the handler
    # an interactive session has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    kill = lambda: os.kill(os.getpid(), signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            cut.fit(*args, max_epochs=3, on_epoch=lambda m: m["epoch"] == 1 and threading.Timer(0.05, kill).start())
    finally:
        signal.signal(signal.SIGINT, previous)
    done = cut.epoch
    assert done == 1 and len(cut.history) == done
    cut.fit(*args, max_epochs=3 - done)
    assert cut.epoch == 3
    assert np.array_equal(cut.predict(x_test[:200]), whole.predict(x_test[:200]))
    strip = lambda h: [{k: v for k, v in m.items() if k not in ("seconds", "samples_per_s", "eval_seconds")} for m in h]
    assert strip(cut.history) == strip(whole.history)


def test_no_test_set_and_other_shapes(mnist):
    x_train, y_train, _, _ = mnist
    net = small()
    history = net.fit(x_train[:500], y_train[:500], max_epochs=1)
    assert np.isnan(history[0]["test_error"]) if history[0]["test_error"] is not None else True
    # uint8 images N×1×28×28 train a conv net
    images = (x_train[:200] * 255).round().astype(np.uint8).reshape(200, 1, 28, 28)
    conv = small(hidden="c4k5,p2s2,32")
    conv.fit(images, y_train[:200], max_epochs=1)
    assert conv.predict(images[:3]).shape == (3, 10)


def test_bad_input_raises_clear_python_errors(mnist):
    x, y, _, _ = mnist
    x, y = x[:100], y[:100]
    net = small()
    cases = [
        (TypeError, "x_train", lambda: net.fit(x.astype(np.int32), y)),
        (TypeError, "numpy array", lambda: net.fit(x.tolist(), y)),
        (TypeError, "integer class labels", lambda: net.fit(x, y.astype(np.float32))),
        (ValueError, "C-contiguous", lambda: net.fit(x[:, ::2], y)),
        (ValueError, "label -1", lambda: net.fit(x, np.where(np.arange(100) == 5, -1, y))),
        (ValueError, "finite", lambda: net.fit(np.where(np.arange(784) == 3, np.nan, x).astype(np.float32), y)),
        (ValueError, "same length", lambda: net.fit(x, y[:99])),
        (ValueError, "both or neither", lambda: net.fit(x, y, x_test=x)),
        (ValueError, "one-hot", lambda: net.fit(x, np.eye(10, dtype=np.int64)[y])),
        (ValueError, "no weights yet", lambda: net.predict(x)),
        (ValueError, "learning_rat", lambda: dfa.Net(learning_rat=0.1)),
        (ValueError, "rule", lambda: dfa.Net(rule="backprop")),
        (ValueError, "learning_rate", lambda: dfa.Net(learning_rate=-1.0)),
        (TypeError, "hidden", lambda: dfa.Net(hidden=3.5)),
    ]
    for kind, words, call in cases:
        with pytest.raises(kind) as e:
            call()
        assert words in str(e.value), (words, str(e.value))
    net.fit(x, y, max_epochs=1)
    with pytest.raises(ValueError, match="built for"):
        net.predict(x[:, :100].copy())
    with pytest.raises(ValueError, match="outside the net's 10 classes"):
        net.evaluate(x, np.full(100, 12))
    with pytest.raises(ValueError, match="not a run folder"):
        dfa.Net.load("/nonexistent/run")
