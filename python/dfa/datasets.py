"""The named data sets, read from the data folder as `dfa train` reads them.

Each function returns `(x_train, y_train, x_test, y_test)`: float32 inputs in [0, 1] (MNIST and
Fashion-MNIST as N x 784, CIFAR as N x 3 x 32 x 32, channel-major) and int64 labels. The data
folder is `data_dir`, else `$DFA_DATA`, else `./data`; fetch missing data with
`dfa data download NAME`.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from ._dfa import load_dataset

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _load(name: str, data_dir: Optional[os.PathLike]) -> Arrays:
    return load_dataset(name, None if data_dir is None else os.fspath(data_dir))


def mnist(data_dir: Optional[os.PathLike] = None) -> Arrays:
    """MNIST: 60 000 training and 10 000 test digits, 28 x 28, flattened."""
    return _load("mnist", data_dir)


def fashion_mnist(data_dir: Optional[os.PathLike] = None) -> Arrays:
    """Fashion-MNIST: MNIST's format, ten kinds of clothing."""
    return _load("fashion-mnist", data_dir)


def cifar10(data_dir: Optional[os.PathLike] = None) -> Arrays:
    """CIFAR-10: 50 000 training and 10 000 test colour images, 3 x 32 x 32."""
    return _load("cifar10", data_dir)


def cifar100(data_dir: Optional[os.PathLike] = None, coarse: bool = False) -> Arrays:
    """CIFAR-100 with its 100 fine labels, or its 20 coarse ones."""
    return _load("cifar100-coarse" if coarse else "cifar100", data_dir)


def load_npz(path: os.PathLike) -> Arrays:
    """The arrays of an .npz file in the layout `dfa train --data` reads (x_test and y_test
    may be missing: then None)."""
    with np.load(os.fspath(path)) as f:
        return tuple(f[k] if k in f else None for k in ("x_train", "y_train", "x_test", "y_test"))  # type: ignore[return-value]
