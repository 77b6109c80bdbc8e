"""Dead-code elimination.

In this IR a graph is what its outputs reach, so a node nobody uses is gone as soon as a
rewrite stops pointing at it; this pass makes that visible (it counts the nodes the graph lost)
and removes the other kind of dead code: operations that compute nothing. A reshape to the same
shape, an identity transpose, a broadcast or cast to what the value already is, a reduction over
no axes (or keepdims over size-1 axes), a full slice, a one-input concatenate and where(c, a, a)
are replaced by their input. Every removal is exact, so dce runs from O1 on.
"""

from __future__ import annotations

from typing import Sequence

from symgraph.graph import Node
from symgraph.passes.rewrite import count_nodes, fit, rewrite


def _full_index(index, shape) -> bool:
    for (start, stop, step), dim in zip(index, shape):
        if start != 0 or step != 1:
            return False
        if stop is not None and not (isinstance(dim, int) and stop >= dim):
            return False
    return True


def _is_identity(node: Node) -> bool:
    x = node.inputs[0] if node.inputs else None
    op = node.op
    if op in ("reshape", "broadcast_to", "cast"):
        return x.type == node.type
    if op == "transpose":
        return tuple(node.attr["perm"]) == tuple(range(node.ndim))
    if op in ("sum", "max"):
        axes = node.attr["axes"]
        return not axes or (node.attr["keepdims"] and all(x.shape[a] == 1 for a in axes))
    if op == "slice":
        return _full_index(node.attr["index"], x.shape)
    if op == "unslice":
        return x.type == node.type and _full_index(node.attr["index"], x.shape)
    if op == "concatenate":
        return len(node.inputs) == 1
    return False


def identity_rule(node: Node):
    """An op that returns its input unchanged is replaced by that input."""
    if node.op == "where":
        _, a, b = node.inputs
        if a is b:
            fitted = fit(a, node)
            return None if fitted is None else (fitted, "where_same_branches")
        return None
    if node.inputs and _is_identity(node):
        return node.inputs[0], f"identity_{node.op}"
    return None


def dce(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """Remove operations that compute nothing; stats: identities removed, nodes no longer used."""
    before = count_nodes(outputs)
    outs, fired = rewrite(outputs, identity_rule, max_rounds=1)
    removed = sum(n for name, n in fired.items() if not name.startswith("rejected"))
    return outs, {"identities_removed": removed, "nodes_dropped": before - count_nodes(outs)}
