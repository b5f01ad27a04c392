"""dfa: train neural networks with direct feedback alignment and its relatives, from NumPy.

A thin layer over the Rust library of the `dfa` command line: the same configuration, the same
run folders, the same bits.

    >>> import dfa
    >>> x_train, y_train, x_test, y_test = dfa.datasets.mnist()
    >>> net = dfa.Net(hidden=[800, 800], act="tanh", rule="dfa", seed=1)
    >>> history = net.fit(x_train, y_train, x_test, y_test, max_epochs=20)
"""

from . import datasets
from ._dfa import Net, __version__

__all__ = ["Net", "datasets", "__version__"]
