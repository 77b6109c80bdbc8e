"""Shape and dtype rules shared by the primitives (NumPy broadcasting with symbolic dims)."""

from __future__ import annotations

import numbers

import numpy as np

from symgraph.errors import SymgraphError, SymgraphTypeError
from symgraph.graph import FLOAT_DTYPES, Shape


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting; a symbolic dim matches itself or 1, never another symbol."""
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        chosen: int | str = 1
        for d in dims:
            if d == 1 or d == chosen:
                continue
            if chosen == 1:
                chosen = d
            else:
                shown = " and ".join(str(tuple(s)) for s in shapes)
                raise SymgraphError(f"shapes {shown} do not broadcast ({chosen} vs {d})")
        out.append(chosen)
    return tuple(out)


def is_int(value) -> bool:
    """An integer as NumPy takes it for an axis or a dim (np.int64 too; bool is not one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def normalize_axis(axis, ndim: int) -> int:
    """One axis in [-ndim, ndim) -> a non-negative int (NumPy's AxisError otherwise)."""
    if not is_int(axis):
        raise SymgraphTypeError(f"axis {axis!r} must be an int")
    if not -ndim <= axis < ndim:
        raise SymgraphError(f"axis {axis} is out of range for a tensor of rank {ndim}")
    return int(axis) % ndim


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """axis=None|int|tuple -> sorted tuple of non-negative axes, checked against ndim."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = [normalize_axis(a, ndim) for a in axes]
    if len(set(out)) != len(out):
        raise SymgraphError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def normalize_shape(shape, what: str = "shape", allow_inferred: bool = False) -> Shape:
    """A shape as the user may write it (an int, a str symbol or a sequence of them) -> a tuple
    of ints and str symbols; negative dims are refused (-1 only where `allow_inferred`)."""
    if is_int(shape) or isinstance(shape, str):
        shape = (shape,)
    if isinstance(shape, np.ndarray) and shape.ndim == 1 and shape.dtype.kind in "iu":
        shape = shape.tolist()  # np.array([28, 28]), as NumPy's own shape arguments take it
    elif isinstance(shape, range):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)):
        raise SymgraphTypeError(f"{what} must be a tuple of ints and str dim names, got "
                                f"{type(shape).__name__} {shape!r}")
    dims = []
    for d in shape:
        if not is_int(d) and not isinstance(d, str):
            raise SymgraphTypeError(f"{what} {tuple(shape)}: dim {d!r} must be an int or a str "
                                    "name")
        if is_int(d) and d < (-1 if allow_inferred else 0):
            raise SymgraphError(f"{what} {tuple(shape)}: negative dim {d}")
        dims.append(d if isinstance(d, str) else int(d))
    return tuple(dims)


def reduced_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def require_float(dtype: str, what: str) -> None:
    if dtype not in FLOAT_DTYPES:
        raise SymgraphError(f"{what} needs a float tensor, got {dtype}")


def same_dtype(*dtypes: str) -> str:
    if len(set(dtypes)) != 1:
        raise SymgraphError(f"dtypes {', '.join(dtypes)} differ; cast one explicitly")
    return dtypes[0]


def dims_product(shape: Shape) -> tuple[int, list[str]]:
    """(product of int dims, list of symbolic dims) of a shape."""
    known, symbols = 1, []
    for d in shape:
        if isinstance(d, int):
            known *= d
        else:
            symbols.append(d)
    return known, symbols


def reshape_target(src: Shape, target: Shape) -> Shape:
    """Resolve one -1 in `target` against `src`, symbolic dims included (batch*784 -> batch,784)."""
    if sum(1 for d in target if d == -1) > 1:
        raise SymgraphError(f"reshape target {target} has more than one -1")
    src_known, src_syms = dims_product(src)
    rest = [d for d in target if d != -1]
    tgt_known, tgt_syms = dims_product(rest)
    leftover = list(src_syms)
    for s in tgt_syms:
        if s not in leftover:
            raise SymgraphError(f"cannot reshape {tuple(src)} to {tuple(target)}: "
                                f"symbolic dim {s!r} is not in the source shape")
        leftover.remove(s)
    if -1 not in target:
        if leftover or src_known != tgt_known:
            raise SymgraphError(f"cannot reshape {tuple(src)} to {tuple(target)}")
        return tuple(target)
    if tgt_known == 0 or src_known % tgt_known:
        raise SymgraphError(f"cannot reshape {tuple(src)} to {tuple(target)}")
    ratio = src_known // tgt_known
    if len(leftover) > 1 or (leftover and ratio != 1):
        raise SymgraphError(f"cannot infer the -1 of {tuple(target)} from {tuple(src)}: it would "
                            "mix symbolic dims; give the dims explicitly")
    fill = leftover[0] if leftover else ratio
    return tuple(fill if d == -1 else d for d in target)
