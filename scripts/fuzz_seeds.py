#!/usr/bin/env python3
"""Writes small valid inputs for the fuzz targets (scripts/fuzz.sh): IDX files cut from MNIST,
raw and gzip, single- and multi-member; CIFAR records; gzip streams. Not committed: they are
cut from the data sets."""
import argparse
import gzip
import os
import struct


def idx(dims, body, magic_type=0x08):
    return struct.pack(">BBBB", 0, 0, magic_type, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + body


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    for t in ["idx", "gzip", "cifar", "checkpoint", "config"]:
        os.makedirs(os.path.join(a.out, t), exist_ok=True)
    w = lambda t, name, data: open(os.path.join(a.out, t, name), "wb").write(data)

    with gzip.open(os.path.join(a.data_dir, "mnist", "train-images-idx3-ubyte.gz")) as f:
        f.read(16)
        pixels = f.read(3 * 784)
    with gzip.open(os.path.join(a.data_dir, "mnist", "train-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = f.read(3)
    images = idx([3, 28, 28], pixels)
    label_file = idx([3], labels)
    w("idx", "images.idx", images)
    w("idx", "labels.idx", label_file)
    w("idx", "images.idx.gz", gzip.compress(images))
    w("idx", "labels-two-members.idx.gz", gzip.compress(label_file[:5]) + gzip.compress(label_file[5:]))
    w("idx", "float.idx", idx([2, 2], struct.pack(">4f", 0.0, 1.0, -1.0, 0.5), 0x0D))
    w("gzip", "images.gz", gzip.compress(images))
    w("gzip", "two-members.gz", gzip.compress(b"abc") + gzip.compress(b"def"))
    w("gzip", "raw", b"not compressed")

    with gzip.open(os.path.join(a.data_dir, "cifar-10-batches-bin", "data_batch_1.bin.gz"), "rb") as f:
        records = f.read(2 * 3073)
    w("cifar", "cifar10.bin", records)
    w("cifar", "cifar100.bin", bytes([3, 7]) + records[1:3073] + bytes([19, 99]) + records[3074:])


if __name__ == "__main__":
    main()
