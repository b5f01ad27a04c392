"""Type stubs of the compiled module `dfa._dfa` (PyO3)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Metrics = Dict[str, Any]

class Net:
    """A network with its learning rule, as `dfa train` configures it. Every option of
    `dfa train` is a keyword argument, by its name in a run's config.toml (learning_rate,
    batch_size, optimiser, dropout_hidden, align_every, layer_rules, feedback_density, threads,
    early_stop, lr_schedule, ...); `lr`, `optimizer` and `act` are accepted as aliases."""

    def __init__(
        self,
        hidden: Union[Sequence[int], str, None] = None,
        act: Optional[str] = None,
        rule: Optional[str] = None,
        seed: Optional[int] = None,
        **options: Any,
    ) -> None: ...
    @property
    def config(self) -> Dict[str, Any]:
        """The configuration, as config.toml holds it."""
    @property
    def history(self) -> List[Metrics]:
        """Every epoch trained so far (the lines of metrics.jsonl)."""
    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
    def fit(
        self,
        x_train: npt.NDArray[Any],
        y_train: npt.NDArray[np.integer[Any]],
        x_test: Optional[npt.NDArray[Any]] = None,
        y_test: Optional[npt.NDArray[np.integer[Any]]] = None,
        max_epochs: Optional[int] = None,
        on_epoch: Optional[Callable[[Metrics], Any]] = None,
    ) -> List[Metrics]:
        """Trains (GIL released) until the stopping rules or max_epochs (epochs of this call);
        a second call goes on. Ctrl-C stops after the current mini-batch, returns the net to the
        end of its last complete epoch and raises KeyboardInterrupt. Returns this call's metrics."""
    def predict(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Class scores sigma(a_L), float32 (samples, classes)."""
    def evaluate(self, x: npt.NDArray[Any], y: npt.NDArray[np.integer[Any]]) -> Dict[str, float]:
        """{"error": percent misclassified, "loss": mean loss per sample}."""
    def angles(self, x: npt.NDArray[Any], y: npt.NDArray[np.integer[Any]]) -> List[Dict[str, Any]]:
        """Per hidden layer: the alignment of the rule's update with back-propagation's (degrees)."""
    def save(self, path: Union[str, PathLike[str]]) -> None:
        """Writes the run folder as `dfa train` does."""
    @staticmethod
    def load(path: Union[str, PathLike[str]]) -> "Net":
        """A net from a run folder of Net.save or `dfa train`."""

def load_dataset(
    name: str, data_dir: Optional[str] = None
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
