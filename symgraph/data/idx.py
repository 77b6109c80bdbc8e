"""The IDX file format of MNIST-style datasets (optionally gzip-compressed).

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then
one uint32 per dimension) followed by the raw array. MNIST images are magic 2051 (uint8, 3-D),
labels 2049 (uint8, 1-D).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from symgraph.errors import SymgraphError

# IDX type code -> big-endian NumPy dtype
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """The array stored in IDX bytes `raw` (native byte order); `source` names it in errors."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise SymgraphError(f"{source} is not an IDX file (bad magic {raw[:4].hex()})")
    dtype, ndim = np.dtype(_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SymgraphError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    count = math.prod(shape)  # Python ints: a forged header cannot wrap around
    if len(raw) != header + count * dtype.itemsize:
        raise SymgraphError(f"{source}: IDX header says shape {shape} ({count} items) but the "
                            f"file holds {len(raw) - header} data bytes")
    array = np.frombuffer(raw, dtype, count, header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file, gunzipping it when the name ends in .gz."""
    if not os.path.exists(path):
        raise SymgraphError(f"IDX file {path} does not exist")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # truncated or damaged gzip, unreadable
        raise SymgraphError(f"cannot read IDX file {path}: {type(exc).__name__}: {exc} "
                            "(damaged or truncated download?)") from None
    return parse_idx(raw, path)


def _check(array: np.ndarray, path: str, ndim: int, what: str) -> np.ndarray:
    """MNIST-style images are uint8 (n, h, w) (magic 2051), labels uint8 (n,) (magic 2049)."""
    if array.dtype != np.uint8 or array.ndim != ndim:
        magic = 2051 if ndim == 3 else 2049
        raise SymgraphError(f"{path} should hold {what} (IDX magic {magic}: uint8 with {ndim} "
                            f"dims) but holds {array.dtype} with shape {array.shape}")
    return array


def load_idx_dataset(folder: str, prefix: str = "") -> tuple:
    """((x_train, y_train), (x_test, y_test)) from the four standard MNIST-style file names."""
    def find(stem: str) -> str:
        for name in (stem + ".gz", stem):
            path = os.path.join(folder, prefix + name)
            if os.path.exists(path):
                return path
        raise SymgraphError(f"missing {prefix}{stem}[.gz] in {folder}")

    def load(stem: str, ndim: int, what: str) -> np.ndarray:
        path = find(stem)
        return _check(read_idx(path), path, ndim, what)

    x_train = load("train-images-idx3-ubyte", 3, "images")
    y_train = load("train-labels-idx1-ubyte", 1, "labels")
    x_test = load("t10k-images-idx3-ubyte", 3, "images")
    y_test = load("t10k-labels-idx1-ubyte", 1, "labels")
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise SymgraphError(f"{folder}: {part} has {len(x)} images but {len(y)} labels")
    return (x_train, y_train), (x_test, y_test)
