"""Movement primitives: reshape, transpose, broadcast_to, slice (and its adjoint), concatenate."""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import TensorType, resolve_shape
from symgraph.ops import build as B
from symgraph.ops.shapes import broadcast_shapes, reshape_target, same_dtype
from symgraph.ops.table import MOVEMENT, OpDef, register

_NOT_SCALAR = "data movement, not a scalar expression: lowered as an index map"


def _infer_reshape(x: TensorType, shape: tuple) -> TensorType:
    return TensorType(x.dtype, reshape_target(x.shape, shape))


register(OpDef(
    "reshape", MOVEMENT, _infer_reshape,
    lambda attrs, dims, x: np.reshape(x, resolve_shape(attrs["shape"], dims)),
    lambda n, g: [B.reshape(g, n.inputs[0].shape)],
    lambda n, ts: None if ts[0] is None else B.reshape(ts[0], n.shape),
    None, why_not={"template": _NOT_SCALAR}))


def _infer_transpose(x: TensorType, perm: tuple) -> TensorType:
    if sorted(perm) != list(range(x.ndim)):
        raise SymgraphError(f"{perm} is not a permutation of the {x.ndim} axes")
    return TensorType(x.dtype, tuple(x.shape[p] for p in perm))


register(OpDef(
    "transpose", MOVEMENT, _infer_transpose,
    lambda attrs, dims, x: np.transpose(x, attrs["perm"]),
    lambda n, g: [B.transpose(g, np.argsort(n.attr["perm"]).tolist())],
    lambda n, ts: None if ts[0] is None else B.transpose(ts[0], n.attr["perm"]),
    None, why_not={"template": _NOT_SCALAR}))


def _infer_broadcast(x: TensorType, shape: tuple) -> TensorType:
    if broadcast_shapes(x.shape, shape) != tuple(shape):
        raise SymgraphError(f"cannot broadcast {tuple(x.shape)} to {tuple(shape)}")
    return TensorType(x.dtype, tuple(shape))


register(OpDef(
    "broadcast_to", MOVEMENT, _infer_broadcast,
    lambda attrs, dims, x: np.broadcast_to(x, resolve_shape(attrs["shape"], dims)),
    lambda n, g: [B.sum_to(g, n.inputs[0].shape)],
    lambda n, ts: None if ts[0] is None else B.broadcast_to(ts[0], n.shape),
    None, why_not={"template": _NOT_SCALAR}))


def slice_length(dim, start: int, stop, step: int):
    """Length of dim[start:stop:step]; symbolic dims allow only the full slice."""
    if isinstance(dim, str):
        if (start, stop, step) != (0, None, 1):
            raise SymgraphError(f"only a full slice ':' is allowed on symbolic dim {dim!r}")
        return dim
    return len(range(*slice(start, stop, step).indices(dim)))


def _infer_slice(x: TensorType, index: tuple) -> TensorType:
    if len(index) != x.ndim:
        raise SymgraphError(f"slice index has {len(index)} entries for rank {x.ndim}")
    return TensorType(x.dtype, tuple(slice_length(d, *s) for d, s in zip(x.shape, index)))


def _slices(index):
    return tuple(slice(*s) for s in index)


def _impl_unslice(attrs, dims, g):
    out = np.zeros(resolve_shape(attrs["shape"], dims), dtype=g.dtype)
    out[_slices(attrs["index"])] = g
    return out


def _infer_unslice(g: TensorType, index: tuple, shape: tuple) -> TensorType:
    return TensorType(g.dtype, tuple(shape))


register(OpDef(
    "slice", MOVEMENT, _infer_slice,
    lambda attrs, dims, x: x[_slices(attrs["index"])],
    lambda n, g: [B.apply_unslice(g, n.attr["index"], n.inputs[0].shape)],
    lambda n, ts: None if ts[0] is None else B.apply_slice(ts[0], n.attr["index"]),
    None, why_not={"template": _NOT_SCALAR}))
register(OpDef(
    "unslice", MOVEMENT, _infer_unslice, _impl_unslice,
    lambda n, g: [B.apply_slice(g, n.attr["index"])],
    lambda n, ts: None if ts[0] is None else B.apply_unslice(ts[0], n.attr["index"], n.shape),
    None, why_not={"template": "the adjoint of slice: zeros with the slice written in"}))


def _infer_concat(*xs: TensorType, axis: int) -> TensorType:
    dtype = same_dtype(*(x.dtype for x in xs))
    first = xs[0]
    if not 0 <= axis < first.ndim:
        raise SymgraphError(f"axis {axis} out of range for rank {first.ndim}")
    total = 0
    for x in xs:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape))
                                       if i != axis):
            raise SymgraphError(f"shapes {tuple(first.shape)} and {tuple(x.shape)} differ off "
                                f"axis {axis}")
        if not isinstance(x.shape[axis], int):
            raise SymgraphError(f"concatenate along symbolic dim {x.shape[axis]!r}")
        total += x.shape[axis]
    shape = list(first.shape)
    shape[axis] = total
    return TensorType(dtype, tuple(shape))


def _concat_pieces(node, g):
    axis = node.attr["axis"]
    out, offset = [], 0
    for x in node.inputs:
        size = x.shape[axis]
        index = tuple((offset, offset + size, 1) if i == axis else (0, None, 1)
                      for i in range(x.ndim))
        out.append(B.apply_slice(g, index))
        offset += size
    return out


def _jvp_concat(node, ts):
    if all(t is None for t in ts):
        return None
    parts = [B.zeros_like(x) if t is None else t for x, t in zip(node.inputs, ts)]
    return B.apply("concatenate", parts, axis=node.attr["axis"])


register(OpDef(
    "concatenate", MOVEMENT, _infer_concat,
    lambda attrs, dims, *xs: np.concatenate(xs, axis=attrs["axis"]),
    _concat_pieces, _jvp_concat, None, why_not={"template": _NOT_SCALAR}))
