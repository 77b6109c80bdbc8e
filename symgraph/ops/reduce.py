"""Reductions (sum, max with axes and keepdims; argmax without gradient) and matmul."""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import TensorType
from symgraph.ops import build as B
from symgraph.ops.shapes import broadcast_shapes, reduced_shape, require_float, same_dtype
from symgraph.ops.table import MATMUL, REDUCE, OpDef, register


def _infer_reduce(x: TensorType, axes: tuple, keepdims: bool) -> TensorType:
    if x.dtype == "bool":
        raise SymgraphError("reducing a bool tensor; cast it first")
    if any(not 0 <= a < x.ndim for a in axes):
        raise SymgraphError(f"axes {axes} out of range for rank {x.ndim}")
    return TensorType(x.dtype, reduced_shape(x.shape, axes, keepdims))


def _kept(node, g):
    """g reshaped to the keepdims form of the reduction, ready to broadcast back."""
    x = node.inputs[0]
    return B.reshape(g, reduced_shape(x.shape, node.attr["axes"], True))


def _vjp_sum(node, g):
    return [B.broadcast_to(_kept(node, g), node.inputs[0].shape)]


def _jvp_sum(node, ts):
    a = node.attr
    return None if ts[0] is None else B.reduce_sum(ts[0], a["axes"], a["keepdims"])


def _argmax_mask(node):
    """Where x equals its max, as the float weights 1/count (ties share the gradient)."""
    x = node.inputs[0]
    hit = B.binary("eq", x, B.broadcast_to(_kept(node, node), x.shape))
    weights = B.cast(hit, x.dtype)
    count = B.reduce_sum(weights, node.attr["axes"], keepdims=True)
    return B.div(weights, B.broadcast_to(count, x.shape))


def _vjp_max(node, g):
    x = node.inputs[0]
    return [B.mul(B.broadcast_to(_kept(node, g), x.shape), _argmax_mask(node))]


def _jvp_max(node, ts):
    if ts[0] is None:
        return None
    a = node.attr
    return B.reduce_sum(B.mul(ts[0], _argmax_mask(node)), a["axes"], a["keepdims"])


register(OpDef("sum", REDUCE, _infer_reduce,
               lambda attrs, dims, x: np.sum(x, axis=attrs["axes"], keepdims=attrs["keepdims"],
                                             dtype=x.dtype),
               _vjp_sum, _jvp_sum, template="({0} + {1})"))
register(OpDef("max", REDUCE, _infer_reduce,
               lambda attrs, dims, x: np.max(x, axis=attrs["axes"], keepdims=attrs["keepdims"]),
               _vjp_max, _jvp_max, template="max({0}, {1})"))


def _infer_argmax(x: TensorType, axis: int, keepdims: bool) -> TensorType:
    if not 0 <= axis < x.ndim:
        raise SymgraphError(f"axis {axis} out of range for rank {x.ndim}")
    return TensorType("int64", reduced_shape(x.shape, (axis,), keepdims))


_ARGMAX_WHY = ("argmax is piecewise constant with no useful derivative; wrap it in "
               "stop_gradient if a zero derivative is intended")

register(OpDef("argmax", REDUCE, _infer_argmax,
               lambda attrs, dims, x: np.argmax(x, axis=attrs["axis"],
                                                keepdims=attrs["keepdims"]).astype(np.int64),
               None, None, None,
               why_not={"vjp": _ARGMAX_WHY, "jvp": _ARGMAX_WHY,
                        "template": "index reduction, rendered by hand"}))


def _infer_matmul(a: TensorType, b: TensorType) -> TensorType:
    dtype = same_dtype(a.dtype, b.dtype)
    require_float(dtype, "matmul")
    if a.ndim < 2 or b.ndim < 2:
        raise SymgraphError("matmul primitive needs rank >= 2 operands (the DSL reshapes vectors)")
    if a.shape[-1] != b.shape[-2]:
        raise SymgraphError(f"inner dims differ: {a.shape[-1]} vs {b.shape[-2]}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType(dtype, batch + (a.shape[-2], b.shape[-1]))


def _vjp_matmul(node, g):
    a, b = node.inputs
    return [B.sum_to(B.matmul(g, B.swap_last(b)), a.shape),
            B.sum_to(B.matmul(B.swap_last(a), g), b.shape)]


def _jvp_matmul(node, ts):
    a, b = node.inputs
    parts = []
    if ts[0] is not None:
        parts.append(B.matmul(ts[0], b))
    if ts[1] is not None:
        parts.append(B.matmul(a, ts[1]))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else B.add(parts[0], parts[1])


register(OpDef("matmul", MATMUL, _infer_matmul, lambda attrs, dims, a, b: np.matmul(a, b),
               _vjp_matmul, _jvp_matmul, None,
               why_not={"template": "not elementwise: BLAS on the CPU, a tiled kernel on CUDA"}))
