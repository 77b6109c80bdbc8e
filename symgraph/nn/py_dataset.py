"""keras.utils.PyDataset: a dataset of batches read by index, which fit / evaluate / predict take
as x (data_adapter.py reads it; Keras 3's PyDatasetAdapter).

    class Batches(PyDataset):
        def __init__(self, x, y, size, **kwargs):
            super().__init__(**kwargs)
            self.x, self.y, self.size = x, y, size

        def __len__(self):
            return -(-len(self.x) // self.size)

        def __getitem__(self, i):
            part = slice(i * self.size, (i + 1) * self.size)
            return self.x[part], self.y[part]

Any object with `__len__` and `__getitem__` that is not an array, a list, a tuple or a dict is
read the same way (Keras's old Sequence duck type); `on_epoch_begin` / `on_epoch_end` are called
when it has them.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError


def loading(data) -> tuple[int, int]:
    """(workers, max_queue_size) of a dataset, checked; use_multiprocessing is refused."""
    workers = getattr(data, "workers", 1)
    processes = getattr(data, "use_multiprocessing", False)
    queue = getattr(data, "max_queue_size", 10)
    name = type(data).__name__
    if processes:
        raise SymgraphError(f"{name}: use_multiprocessing=True is not supported: symgraph reads "
                            "a PyDataset's batches in the calling process (with workers > 1, in "
                            "that many threads); leave use_multiprocessing=False")
    for arg, value in (("workers", workers), ("max_queue_size", queue)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SymgraphError(f"{name}: {arg} must be a positive integer, got {value!r}")
    return int(workers), int(queue)


class PyDataset:
    """Keras 3's PyDataset: `__len__` is the number of batches, `__getitem__(i)` returns batch
    i as (x, y) or (x, y, sample_weight) (predict also takes a bare x); `on_epoch_begin` and
    `on_epoch_end` are called around each epoch. With `workers` > 1, fit / evaluate / predict
    read up to `max_queue_size` batches ahead in that many threads (so `__getitem__` must be
    thread-safe); `use_multiprocessing=True` is refused (no process pool)."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10):
        self.workers, self.use_multiprocessing = workers, use_multiprocessing
        self.max_queue_size = max_queue_size
        loading(self)  # refused here, where the mistake is made

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__: its number of "
                                  "batches")

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__: batch "
                                  "`index` as (x, y) or (x, y, sample_weight)")

    @property
    def num_batches(self) -> int:
        """The number of batches in the dataset: len(self)."""
        return len(self)

    def on_epoch_begin(self) -> None:
        """Called at the start of every epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of every epoch (not after one that a callback stopped)."""
