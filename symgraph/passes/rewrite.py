"""The shared rewrite engine and pattern helpers the rule-based passes (fold, simplify, dce,
stabilize) are built on.

A graph here is the list of its output nodes: every node they reach belongs to it, nothing else
does. `rewrite` walks that graph once in topological order (iteratively: graphs are deep),
rebuilds each node over its already-rewritten inputs and offers it to a rule until no rule
fires. Rules see a node whose inputs are final, return `(replacement, rule_name)` or None, and
must keep the node's type (dtype and shape); the engine refuses any replacement that does not.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import Node, topo_order
from symgraph.ops import apply
from symgraph.ops import build as B

Rule = Callable[[Node], "tuple[Node, str] | None"]

# A rule chain on one node longer than this means two rules undo each other: stop there.
_MAX_CHAIN = 16


# The last topological order computed, keyed by its outputs' ids (node ids are never reused):
# the pipeline counts a pass's result and the next pass walks the same graph, so one order
# serves both. `clear_order_cache` drops it (and the graph it keeps alive) after a pipeline run.
_last_order: list = []


def ordered(outputs: Sequence[Node]) -> list[Node]:
    """topo_order(outputs), re-used when asked twice in a row for the same outputs."""
    key = tuple(o.id for o in outputs)
    if _last_order and _last_order[0] == key:
        return _last_order[1]
    order = topo_order(outputs)
    _last_order[:] = [key, order]
    return order


def clear_order_cache() -> None:
    _last_order.clear()


def same_type_rebuild(node: Node, inputs: Sequence[Node]) -> Node:
    """`node` over new inputs of the same types (so its own type stands without re-inference).

    Every rewrite here keeps types (the engine refuses rules that do not; CSE merges only
    equal-typed values), so the shape rule need not run again (a fifth of pipeline time).
    """
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    return Node(node.op, inputs, node.attrs, node.type, name=node.name, trace=node.trace,
                tags=node.tags)


def count_nodes(outputs: Sequence[Node]) -> int:
    return len(ordered(outputs))


# Users per node id in the graph being swept (an output counts as one more), so that a rule can
# ask `single_use` before moving work onto a value someone else also needs.
_uses: dict[int, int] = {}


def single_use(node: Node) -> bool:
    """True when `node` has one user in the graph being rewritten (nodes built by rules in this
    sweep count as single-use)."""
    return _uses.get(node.id, 1) <= 1


def rewrite_once(outputs: Sequence[Node], rule: Rule, fired: Counter) -> list[Node]:
    """One bottom-up sweep of `rule` over the graph; counts each firing in `fired`."""
    order = ordered(outputs)
    _uses.clear()
    for node in order:
        for i in node.inputs:
            _uses[i.id] = _uses.get(i.id, 0) + 1
    for o in outputs:
        _uses[o.id] = _uses.get(o.id, 0) + 1
    try:
        return _sweep(order, outputs, rule, fired)
    finally:
        _uses.clear()


def _sweep(order, outputs, rule: Rule, fired: Counter) -> list[Node]:
    memo: dict[int, Node] = {}
    for node in order:
        if not node.inputs:
            memo[node.id] = node
            continue
        current = same_type_rebuild(node, [memo[i.id] for i in node.inputs])
        for _ in range(_MAX_CHAIN):
            hit = rule(current)
            if hit is None:
                break
            new, name = hit
            if new is current:
                break
            if new.type != current.type:  # a rule bug: keep the graph correct, make it visible
                fired[f"rejected:{name}"] += 1
                break
            fired[name] += 1
            current = new
        memo[node.id] = current
        if current is not node:
            _uses[current.id] = _uses.get(node.id, 1)
    return [memo[o.id] for o in outputs]


def rewrite(outputs: Sequence[Node], rule: Rule, max_rounds: int = 4) -> tuple[list[Node], Counter]:
    """Sweep until no rule fires (a replacement's new inner nodes are seen on the next sweep)."""
    fired: Counter = Counter()
    outs = list(outputs)
    for _ in range(max_rounds):
        before = sum(fired.values())
        outs = rewrite_once(outs, rule, fired)
        if sum(fired.values()) == before:
            break
    return outs, fired


def rule_table(table: dict[str, list[Rule]]) -> Rule:
    """One rule from a table op -> rules: the first rule that fires wins."""
    def rule(node: Node):
        for candidate in table.get(node.op, ()):
            hit = candidate(node)
            if hit is not None:
                return hit
        return None
    return rule


# --- pattern helpers ----------------------------------------------------------------------


def const_array(node: Node) -> np.ndarray | None:
    """The array of a constant node, else None."""
    return node.attr["value"].array if node.op == "constant" else None


_UNIFORM_CACHE: dict[int, object] = {}


def uniform_value(node: Node):
    """The single value every element of `node` holds when that is known at build time.

    A constant whose elements are all equal, or a broadcast/reshape of one (zeros_like,
    ones_like); returns a NumPy scalar, or None when unknown or not uniform.
    """
    while node.op in ("broadcast_to", "reshape"):
        node = node.inputs[0]
    array = const_array(node)
    if array is None or array.size == 0:
        return None
    key = id(array)
    if key not in _UNIFORM_CACHE:
        flat = array.reshape(-1)
        first = flat[0]
        same = bool(np.all(flat == first)) if not (array.dtype.kind == "f" and np.isnan(first)) \
            else False
        if len(_UNIFORM_CACHE) > 4096:
            _UNIFORM_CACHE.clear()
        _UNIFORM_CACHE[key] = (array, first if same else None)  # keep array alive: id stays valid
    return _UNIFORM_CACHE[key][1]


def is_value(node: Node, value) -> bool:
    """True when every element of `node` is known to equal `value`."""
    v = uniform_value(node)
    return v is not None and bool(v == value)


def fit(x: Node, like: Node) -> Node | None:
    """`x` made to have `like`'s type by broadcasting, or None when that is impossible."""
    if x.dtype != like.dtype:
        return None
    if tuple(x.shape) == tuple(like.shape):
        return x
    try:
        return B.broadcast_to(x, like.shape)
    except SymgraphError:
        return None


def build(op: str, inputs, like: Node, **attrs) -> Node:
    """A new node for a rewrite of `like`: it keeps `like`'s source line and tags."""
    return apply(op, inputs, trace=like.trace, tags=like.tags, **attrs)
