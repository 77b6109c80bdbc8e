"""Weights and checkpoints as .npz: written atomically, read without pickle.

A file holds one array per weight under the key `NNN/layer/weight` (NNN keeps the model's
order), so it can be inspected with plain `np.load`.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.files import atomic_write  # noqa: F401  (re-exported)


def named_weights(model) -> list[tuple[str, np.ndarray]]:
    """[(`layer/weight`, value)] of every weight of `model`, in its order."""
    return [(f"{layer.name}/{w}", var.value) for layer, w, var in model.layer_weights()]


def save_arrays(path: str, named: list[tuple[str, np.ndarray]]) -> None:
    """Write [(key, array)] to `path` (.npz) atomically; keys keep their order."""
    if not str(path).endswith(".npz"):
        raise SymgraphError(f"weights files are .npz; the filepath must end in .npz, got {path!r}")
    atomic_write(str(path), lambda f: write_arrays(f, named))


def write_arrays(f, named: list[tuple[str, np.ndarray]]) -> None:
    """Write [(key, array)] as an .npz to the open binary file `f`; keys keep their order."""
    np.savez(f, **{f"{i:03d}/{key}": np.asarray(a) for i, (key, a) in enumerate(named)})


def _saved_position(key: str) -> int:
    """The NNN of a key `NNN/layer/weight`; -1 (first) for a key another writer made."""
    head = key.split("/", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else -1


def load_arrays(path: str) -> list[tuple[str, np.ndarray]]:
    """[(key, array)] in saved order (pickled objects are refused)."""
    if not isinstance(path, (str, os.PathLike)):
        raise SymgraphError(f"the weights filepath must be a str or path, got "
                            f"{type(path).__name__} {path!r}")
    if not os.path.exists(path):
        raise SymgraphError(f"weights file {path} does not exist")
    return read_arrays(path, f"weights file {path}")


def read_arrays(source, what: str) -> list[tuple[str, np.ndarray]]:
    """[(key, array)] in saved order from an .npz path or binary file; `what` names it in
    errors (pickled objects are refused)."""
    try:
        data = np.load(source, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive of weights")
        with data:
            items = [(k, data[k]) for k in data.files]
    except (ValueError, OSError, EOFError, KeyError, NotImplementedError,
            zipfile.BadZipFile) as exc:
        # a truncated or damaged archive (zip), an empty file (EOF), a bad CRC, pickled data,
        # a header naming a compression method or encryption zipfile does not implement
        raise SymgraphError(f"cannot read {what}: {type(exc).__name__}: {exc}; "
                            "nothing was loaded") from None
    items.sort(key=lambda kv: _saved_position(kv[0]))
    return [(k.split("/", 1)[1] if "/" in k else k, a) for k, a in items]
