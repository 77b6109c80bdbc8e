"""MNIST handwritten digits, bundled with symgraph (see mnist/SOURCE.md for provenance)."""

from __future__ import annotations

import os

from symgraph.data.idx import load_idx_dataset

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist")


def load_data(path: str | None = None) -> tuple:
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays, as `keras.datasets.mnist` gives.

    x_* are (n, 28, 28) pixels 0..255 and y_* are (n,) labels 0..9; 60,000 train, 10,000 test.
    `path` may point at another folder holding the four standard IDX (.gz) files.
    """
    return load_idx_dataset(path or FOLDER)
