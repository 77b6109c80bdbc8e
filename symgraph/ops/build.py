"""Small node builders the rule functions use (so rules read like math, not like `apply` calls)."""

from __future__ import annotations

import numpy as np

from symgraph.graph import ConstValue, Node, TensorType
from symgraph.ops.table import (
    active_tags,
    apply,  # noqa: F401  (re-exported for rules)
)


def const(value, dtype: str) -> Node:
    """A constant node holding `value` as an array of `dtype`."""
    array = np.asarray(value, dtype=dtype)
    ttype = TensorType(dtype, tuple(array.shape))
    return Node("constant", (), {"value": ConstValue(array)}, ttype, trace="<symgraph>",
                tags=active_tags())


def scalar_like(value, node: Node) -> Node:
    return const(value, node.dtype)


def add(a: Node, b: Node) -> Node:
    return apply("add", (a, b))


def sub(a: Node, b: Node) -> Node:
    return apply("sub", (a, b))


def mul(a: Node, b: Node) -> Node:
    return apply("mul", (a, b))


def div(a: Node, b: Node) -> Node:
    return apply("div", (a, b))


def neg(a: Node) -> Node:
    return apply("neg", (a,))


def unary(op: str, a: Node) -> Node:
    return apply(op, (a,))


def where(cond: Node, a: Node, b: Node) -> Node:
    return apply("where", (cond, a, b))


def cast(a: Node, dtype: str) -> Node:
    return a if a.dtype == dtype else apply("cast", (a,), dtype=dtype)


def reshape(a: Node, shape) -> Node:
    return a if tuple(a.shape) == tuple(shape) else apply("reshape", (a,), shape=tuple(shape))


def transpose(a: Node, perm) -> Node:
    perm = tuple(perm)
    return a if perm == tuple(range(a.ndim)) else apply("transpose", (a,), perm=perm)


def broadcast_to(a: Node, shape) -> Node:
    return a if tuple(a.shape) == tuple(shape) else apply("broadcast_to", (a,), shape=tuple(shape))


def reduce_sum(a: Node, axes, keepdims: bool = False) -> Node:
    axes = tuple(axes)
    if not axes:
        return a
    return apply("sum", (a,), axes=axes, keepdims=keepdims)


def sum_to(g: Node, shape) -> Node:
    """Un-broadcast: sum `g` over the axes that broadcasting added or stretched to reach it."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = list(range(lead))
    for i, d in enumerate(shape):
        if d == 1 and g.shape[lead + i] != 1:
            axes.append(lead + i)
    out = reduce_sum(g, axes, keepdims=True)
    return reshape(out, shape)


def zeros_like(node: Node) -> Node:
    return broadcast_to(const(0, node.dtype), node.shape)


def ones_like(node: Node) -> Node:
    return broadcast_to(const(1, node.dtype), node.shape)


def swap_last(a: Node) -> Node:
    perm = list(range(a.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(a, perm)


def matmul(a: Node, b: Node) -> Node:
    return apply("matmul", (a, b))


def binary(op: str, a: Node, b: Node) -> Node:
    return apply(op, (a, b))


def apply_slice(a: Node, index) -> Node:
    return apply("slice", (a,), index=tuple(index))


def apply_unslice(g: Node, index, shape) -> Node:
    return apply("unslice", (g,), index=tuple(index), shape=tuple(shape))
