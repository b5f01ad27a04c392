#!/usr/bin/env python3
"""Training speed of the paper's CONV tanh net in PyTorch (autograd BP), for `scripts/compare.py`.

The same network as `dfa --model conv-tanh` (docs/conv.md): conv 5×5 96 (pad 2) → tanh →
max-pool 3×3 stride 2 → conv 5×5 128 → tanh → pool → conv 5×5 256 → tanh → pool → 2048 →
2048 → 10, tanh units, sigmoid outputs with binary cross-entropy summed over the outputs and
averaged over the batch (the paper's loss), RMSprop (lr 1e-4, alpha 0.99, eps 1e-8), batch 64,
uniform init. Inputs are random (speed does not depend on the pixels). Prints one
`SUMMARY {json}` line with the median images/s over the timed batches.

    python3 scripts/ref_conv.py --threads 2 --images 640
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=640, help="timed training images (after 2 warm-up batches)")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    pool = torch.nn.MaxPool2d(3, 2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 96, 5, padding=2), torch.nn.Tanh(), pool,
        torch.nn.Conv2d(96, 128, 5, padding=2), torch.nn.Tanh(), pool,
        torch.nn.Conv2d(128, 256, 5, padding=2), torch.nn.Tanh(), pool,
        torch.nn.Flatten(),
        torch.nn.Linear(256 * 3 * 3, 2048), torch.nn.Tanh(),
        torch.nn.Linear(2048, 2048), torch.nn.Tanh(),
        torch.nn.Linear(2048, 10),
    )
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.99, eps=1e-8)
    x = torch.randn(a.batch, 3, 32, 32)
    y = F.one_hot(torch.randint(0, 10, (a.batch,)), 10).float()
    rates = []
    batches = 2 + max(1, a.images // a.batch)
    for b in range(batches):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(net(x), y, reduction="sum") / a.batch
        loss.backward()
        opt.step()
        if b >= 2:
            rates.append(a.batch / (time.perf_counter() - start))
    print("SUMMARY " + json.dumps({"tool": "ref_conv.py", "torch": torch.__version__, "threads": a.threads,
                                   "batch": a.batch, "images": (batches - 2) * a.batch,
                                   "samples_per_s_median": statistics.median(rates)}))


if __name__ == "__main__":
    main()
