"""Shape rules for simplify: movement chains, broadcasts absorbed or moved past elementwise ops,
reductions over broadcast copies or size-1 axes. All exact: values are only re-indexed.
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import Node, is_static
from symgraph.ops import OPS
from symgraph.ops import build as B
from symgraph.ops.shapes import broadcast_shapes
from symgraph.ops.table import ELEMENTWISE
from symgraph.passes.rewrite import build


def transpose_transpose(node):
    """transpose(transpose(x, p), q) -> transpose(x, p[q]) (dropped by dce when identity)."""
    x = node.inputs[0]
    if x.op != "transpose":
        return None
    inner, outer = x.attr["perm"], node.attr["perm"]
    perm = tuple(inner[q] for q in outer)
    return B.transpose(x.inputs[0], perm), "transpose_transpose"


def reshape_reshape(node):
    """reshape(reshape(x)) -> reshape(x): row-major reshapes compose."""
    x = node.inputs[0]
    if x.op != "reshape":
        return None
    try:
        return B.reshape(x.inputs[0], node.shape), "reshape_reshape"
    except SymgraphError:  # symbolic dims the direct reshape cannot express: keep the chain
        return None


def broadcast_broadcast(node):
    """broadcast_to(broadcast_to(x)) -> broadcast_to(x)."""
    x = node.inputs[0]
    return (B.broadcast_to(x.inputs[0], node.shape), "broadcast_broadcast") \
        if x.op == "broadcast_to" else None


def absorb_broadcast(node):
    """An elementwise op broadcasts its operands itself: drop explicit broadcast_to inputs."""
    if OPS[node.op].kind != ELEMENTWISE or len(node.inputs) < 2:
        return None
    inputs = list(node.inputs)
    changed = False
    for i, inp in enumerate(inputs):
        if inp.op != "broadcast_to":
            continue
        trial = inputs[:i] + [inp.inputs[0]] + inputs[i + 1:]
        try:
            if broadcast_shapes(*(t.shape for t in trial)) == tuple(node.shape):
                inputs, changed = trial, True
        except SymgraphError:
            continue
    return (build(node.op, inputs, node, **node.attr), "absorb_broadcast") if changed else None


def unary_through_broadcast(node):
    """f(broadcast_to(x)) -> broadcast_to(f(x)): the same values, computed on the small x."""
    src = node.inputs[0]
    if src.op != "broadcast_to":
        return None
    inner = build(node.op, (src.inputs[0],), node, **node.attr)
    return B.broadcast_to(inner, node.shape), "unary_through_broadcast"


def reshape_of_broadcast_scalar(node):
    """reshape(broadcast_to(x, S), T) with x of one element -> broadcast_to(x', T)."""
    src = node.inputs[0]
    if src.op != "broadcast_to":
        return None
    x = src.inputs[0]
    if not is_static(x.shape) or int(np.prod(x.shape, dtype=np.int64)) != 1:
        return None
    ones = B.reshape(x, (1,) * node.ndim)
    return B.broadcast_to(ones, node.shape), "reshape_of_broadcast_scalar"


def _broadcast_axes(node: Node) -> set[int]:
    """Axes of broadcast_to(x, S) along which x is repeated (x's dim absent or 1 and S's not)."""
    x = node.inputs[0]
    lead = node.ndim - x.ndim
    axes = set(range(lead))
    for i, d in enumerate(x.shape):
        if d == 1 and node.shape[lead + i] != 1:
            axes.add(lead + i)
    return axes


def _reduced_input(node: Node) -> Node:
    """x of reduce(broadcast_to(x, S), axes) placed in the reduction's result shape."""
    src = node.inputs[0]
    x = src.inputs[0]
    axes = node.attr["axes"]
    padded = B.reshape(x, (1,) * (src.ndim - x.ndim) + tuple(x.shape))
    kept = tuple(1 if i in axes else d for i, d in enumerate(src.shape))
    out = B.broadcast_to(padded, kept)
    return out if node.attr["keepdims"] else B.reshape(out, node.shape)


def reduced_broadcast_input(node: Node) -> Node | None:
    """For reduce(broadcast_to(x), axes) over broadcast axes only: x in the result's shape."""
    src = node.inputs[0]
    if src.op != "broadcast_to" or not set(node.attr["axes"]) <= _broadcast_axes(src):
        return None
    try:
        return _reduced_input(node)
    except SymgraphError:
        return None


def max_broadcast(node):
    """max over axes that only hold broadcast copies of x is x (exact), when there is at least
    one copy: a max over a size-0 axis is an error (NumPy: no identity), never x, so the axes
    must be static and non-empty (a symbolic batch may be bound to 0 at call time)."""
    src = node.inputs[0]
    if not all(isinstance(src.shape[a], int) and src.shape[a] > 0 for a in node.attr["axes"]):
        return None
    x = reduced_broadcast_input(node)
    return None if x is None else (x, "max_broadcast")


def reduce_unit_axes(node):
    """A reduction over size-1 axes only is a reshape."""
    x = node.inputs[0]
    if not all(x.shape[a] == 1 for a in node.attr["axes"]):
        return None
    return B.reshape(x, node.shape), f"{node.op}_unit_axes"
