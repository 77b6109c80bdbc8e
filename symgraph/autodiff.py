"""Symbolic differentiation: `grad` (reverse mode) and `jvp` (forward mode).

Both emit ordinary graph nodes from the op table's rules into the same graph, so the result can
be differentiated again, optimized together with the forward pass and compiled like any graph.
Nodes built here carry the tag "grad" (visualization colours them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symgraph.errors import SymgraphError, describe_trace
from symgraph.graph import FLOAT_DTYPES, Node, topo_order
from symgraph.ops import OPS
from symgraph.ops import build as B
from symgraph.ops.table import tagging


def _as_list(x) -> tuple[list[Node], bool]:
    if isinstance(x, Node):
        return [x], True
    return list(x), False


def _nodes(what: str, x) -> tuple[list[Node], bool]:
    """`x` (a node or a list of nodes) as a list, or a SymgraphError naming the argument."""
    items, single = _as_list(x) if isinstance(x, (Node, list, tuple)) else ([x], True)
    for i, item in enumerate(items):
        if not isinstance(item, Node):
            where = what if single else f"{what}[{i}]"
            raise SymgraphError(f"jvp: {where} must be a symgraph node, got "
                                f"{type(item).__name__}")
    return items, single


def _depends_on(order: Sequence[Node], sources: set[int]) -> set[int]:
    """Ids of nodes in `order` whose value depends on any node in `sources`."""
    hit = set(sources)
    for node in order:
        if node.id not in hit and any(i.id in hit for i in node.inputs):
            hit.add(node.id)
    return hit


def _gradient_flows_to(*roots: Node) -> set[int]:
    """Ids of nodes the roots (a cost, jvp's outputs) reach without crossing a stop_gradient."""
    live, stack = {r.id for r in roots}, list(roots)
    while stack:
        node = stack.pop()
        if node.op == "stop_gradient":
            continue
        for inp in node.inputs:
            if inp.id not in live:
                live.add(inp.id)
                stack.append(inp)
    return live


def _accumulate(parts: list[Node]) -> Node:
    total = parts[0]
    for p in parts[1:]:
        total = B.add(total, p)
    return total


def grad(cost: Node, wrt, disconnected: str = "zero"):
    """d(cost)/d(wrt) as new graph nodes, in the structure of `wrt` (a node or a list).

    `cost` must be a float scalar. Inputs the cost does not depend on get zeros, or an error
    with disconnected="raise". A non-differentiable op on a path to `wrt` raises, naming it.
    (`sg.grad` is passes/stabilize.py's `grad`: this, on the cost's stable form.)
    """
    if not isinstance(cost, Node):
        raise SymgraphError(f"grad: cost must be a symgraph node, got {type(cost).__name__}")
    if cost.ndim != 0 or cost.dtype not in FLOAT_DTYPES:
        raise SymgraphError(f"grad: cost must be a float scalar; {cost.describe()} is not "
                            "(reduce it with sg.sum or sg.mean first)")
    if disconnected not in ("zero", "raise"):
        raise SymgraphError(f"grad: disconnected must be 'zero' or 'raise', got {disconnected!r}")
    if not isinstance(wrt, (Node, list, tuple)):
        raise SymgraphError(f"grad: wrt must be a node or a list of nodes, got "
                            f"{type(wrt).__name__}")
    targets, single = _as_list(wrt)
    for t in targets:
        if not isinstance(t, Node):
            raise SymgraphError(f"grad: wrt entries must be nodes, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise SymgraphError(f"grad: cannot differentiate with respect to integer "
                                f"{t.describe()}")

    order = topo_order([cost])
    on_path = _depends_on(order, {t.id for t in targets}) & _gradient_flows_to(cost)
    for node in order:
        if node.id in on_path and OPS[node.op].vjp is None and any(
                i.id in on_path and i.dtype in FLOAT_DTYPES for i in node.inputs):
            why = OPS[node.op].why_not.get("vjp", "")
            raise SymgraphError(f"grad: {node.describe()} is not differentiable and lies on the "
                                f"path from the cost to what you differentiate: {why}")
    with tagging("grad"):
        adjoints: dict[int, list[Node]] = {cost.id: [B.ones_like(cost)]}
        for node in reversed(order):
            parts = adjoints.pop(node.id, None)
            if parts is None or node.id not in on_path or not node.inputs:
                if parts is not None:
                    adjoints[node.id] = parts  # keep wrt adjoints that are leaves
                continue
            g = _accumulate(parts)
            adjoints[node.id] = [g]
            needs = [i.id in on_path and i.dtype in FLOAT_DTYPES for i in node.inputs]
            if not any(needs):
                continue
            for inp, need, gi in zip(node.inputs, needs, OPS[node.op].vjp(node, g)):
                if need and gi is not None:
                    adjoints.setdefault(inp.id, []).append(gi)

        results = []
        for t in targets:
            parts = adjoints.get(t.id)
            if parts is None:
                if disconnected == "raise":
                    raise SymgraphError(f"grad: the cost does not depend on {t.describe()} "
                                        f"(cost {describe_trace(cost.trace)})")
                results.append(B.zeros_like(t))
            else:
                results.append(_accumulate(parts))
    return results[0] if single else results


def jvp(outputs, primals, tangents):
    """Forward mode: the directional derivative of `outputs` along `tangents` at `primals`."""
    outs, single = _nodes("outputs", outputs)
    prims, _ = _nodes("primals", primals)
    if isinstance(tangents, np.ndarray) or not isinstance(tangents, (list, tuple)):
        tangents = [tangents]
    if len(prims) != len(tangents):
        raise SymgraphError(f"jvp: {len(prims)} primals but {len(tangents)} tangents")
    for p in prims:  # as grad: an integer or bool value has no tangent
        if p.dtype not in FLOAT_DTYPES:
            raise SymgraphError(f"jvp: cannot differentiate with respect to {p.dtype} "
                                f"{p.describe()}; primals must be float tensors")
    numeric = (np.ndarray, np.number, float, int)  # a constant direction, in the primal's dtype
    for i, t in enumerate(tangents):
        if isinstance(t, numeric) and np.asarray(t).dtype.kind not in "biuf":
            raise SymgraphError(f"jvp: tangents[{i}] is a {np.asarray(t).dtype} array; a "
                                "tangent holds real numbers")
    tans, _ = _nodes("tangents", [B.const(t, p.dtype) if isinstance(t, numeric) else t
                                  for p, t in zip(prims, tangents)])
    tangent: dict[int, Node] = {}
    for p, t in zip(prims, tans):
        if p.id in tangent:
            raise SymgraphError(f"jvp: {p.describe()} is listed twice among the primals (give "
                                "it one tangent: the sum of the two)")
        if t.shape != p.shape or t.dtype != p.dtype:
            raise SymgraphError(f"jvp: tangent {t.type} does not match primal {p.describe()}")
        tangent[p.id] = t
    live = _gradient_flows_to(*outs)  # what only a stop_gradient reads needs no tangent
    given = dict(tangent)
    with tagging("grad"):
        for node in topo_order(outs):
            if not node.inputs or node.id not in live:
                continue
            ins = [tangent.get(i.id) for i in node.inputs]
            if all(t is None for t in ins):
                continue
            rule = OPS[node.op].jvp
            if rule is None:
                raise SymgraphError(f"jvp: {node.describe()} has no forward-mode rule: "
                                    f"{OPS[node.op].why_not.get('jvp', '')}")
            out = rule(node, ins)
            if out is not None:
                out = B.broadcast_to(out, node.shape)
                # a primal that another primal moves too: its own tangent adds to that
                # motion (the adjoint of grad, which gives an ancestor the total derivative)
                tangent[node.id] = B.add(given[node.id], out) if node.id in given else out
        results = [tangent.get(o.id) if o.id in tangent else B.zeros_like(o) for o in outs]
    return results[0] if single else results
