"""Array ownership: who may write an array's memory, and aligned arrays nobody else holds.

The runtime adopts a backend's result as new state without a copy only when no one else can
reach its memory (`shared`), and the Numba driver recycles a result array only when its pool
alone holds it. Both ask `sys.getrefcount`, whose baseline is measured here once (CPython 3.14
borrows some references, so it is not assumed). Only NumPy below this module: every stage may
import it.
"""

from __future__ import annotations

import sys

import numpy as np


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialized C array starting on an `align`-byte boundary (NumPy's own start on 16
    bytes): a view of a private byte buffer that nothing else references, so `shared` says no
    and the runtime adopts it as state without a copy. 64 bytes: a cache line and one AVX-512
    vector, so vector loads never straddle two lines; measured on M1 (whole step, perf stat
    task-clock): 16-byte aligned temporaries and state cost ~4%."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(n * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def aligned_copy(a, dtype=None) -> np.ndarray:
    """A 64-byte aligned C copy of `a` (a variable's first value: updates written in place
    keep it as the state's memory from then on)."""
    a = np.asarray(a, dtype=dtype)
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def _baselines() -> tuple:
    """getrefcount of an array only a list holds, asked as `pool[i]`, and of a buffer only
    that array views, asked as `a.base` (2 and 2 on CPython <= 3.13)."""
    pool = [aligned_empty(1, np.float32)]
    return sys.getrefcount(pool[0]), sys.getrefcount(pool[0].base)


class _Holder:
    __slots__ = ("value",)


def _refs_as_seen_by_a_check(a: np.ndarray) -> int:
    return sys.getrefcount(a)  # called like held_only_by_attribute's own getrefcount


def _attribute_baseline() -> int:
    """What `held_only_by_attribute` counts for an array that one slot attribute holds and its
    caller has in a local (4 on CPython <= 3.13)."""
    holder = _Holder()
    holder.value = aligned_empty(1, np.float32)
    a = holder.value
    return _refs_as_seen_by_a_check(a)


LIST_ONLY, BASE_ONLY = _baselines()
ATTRIBUTE_ONLY = _attribute_baseline()


def held_only_by_attribute(a: np.ndarray, extra: int = 0) -> bool:
    """Whether nothing but one object's attribute (a Variable's value), the caller's local
    `a` and `extra` known references (a pool list) hold `a`: then no one else can see its
    memory change (views hold their base: `shared` asks about those)."""
    return sys.getrefcount(a) <= ATTRIBUTE_ONLY + extra


def shared(a: np.ndarray) -> bool:
    """Whether `a` is a view of memory that something else may reach: its base (the owner of
    its memory; NumPy points every view at the owner) is referenced by more than `a`. An
    array that owns its memory, or a view of a buffer nobody else holds (`aligned_empty`),
    is not."""
    return a.base is not None and sys.getrefcount(a.base) > BASE_ONLY


def first_nonfinite(a: np.ndarray) -> tuple[str, tuple] | None:
    """("NaN" or "inf", the index of the first such element) of a float array, else None."""
    if a.dtype.kind != "f" or np.isfinite(a).all():
        return None
    bad = "NaN" if np.isnan(a).any() else "inf"
    return bad, tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def int_range_error(a: np.ndarray, dtype) -> str | None:
    """Why integer array `a` does not fit integer `dtype` ('values from lo to hi'), or None
    (also None when either is not an integer dtype: astype's float rules apply there)."""
    dtype = np.dtype(dtype)
    if a.dtype.kind not in "iu" or dtype.kind not in "iu" or not a.size:
        return None
    info = np.iinfo(dtype)
    lo, hi = a.min(), a.max()
    if lo < info.min or hi > info.max:
        return f"values from {lo} to {hi}, which {dtype} cannot hold"
    return None
