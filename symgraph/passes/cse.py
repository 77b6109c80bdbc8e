"""Common-subexpression elimination by value numbering.

A node's value number is (op, attrs, value numbers of its inputs); two nodes with the same
number compute the same value, so the later one is replaced by the first. Commutative ops sort
their input numbers first, so `a*b` and `b*a` merge. Leaves: placeholders and variables are
identities (never merged: two inputs of equal type are still two inputs); constants merge by
value (ConstValue hashes its dtype, shape and bytes). `random_uniform` merges only when op, attrs
and inputs are all equal, which is sound because its bits are a pure function of (seed, step).

Merging a node tagged "grad" (built by autodiff) into an untagged one is the backward pass
re-using a forward value (activations, masks, exp(x) of a softmax): counted as `reused_forward`.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from symgraph.graph import Node
from symgraph.passes.rewrite import ordered, same_type_rebuild

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and",
                         "logical_or"})


def value_number(node: Node, input_numbers: tuple) -> tuple:
    """The hashable key under which equal computations meet."""
    if node.op in ("placeholder", "variable"):
        return ("leaf", node.id)
    if node.op == "constant":
        return ("constant", node.type, node.attrs)
    if node.op in COMMUTATIVE:
        input_numbers = tuple(sorted(input_numbers))
    return (node.op, node.attrs, input_numbers)


def cse(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """Merge equal computations; stats: merges (total), by op, and forward values re-used."""
    table: dict[tuple, Node] = {}
    number: dict[int, int] = {}  # node id -> value number (the id of the representative)
    memo: dict[int, Node] = {}
    by_op: Counter = Counter()
    reused_forward = 0
    for node in ordered(outputs):
        inputs = [memo[i.id] for i in node.inputs]
        key = value_number(node, tuple(number[i.id] for i in inputs))
        try:
            rep = table.get(key)
        except TypeError:  # an unhashable attr (a list someone passed): keep the node as is
            key, rep = ("unhashable", node.id), None
        if rep is None:
            rep = same_type_rebuild(node, inputs) if inputs else node
            table[key] = rep
            number[rep.id] = rep.id
        else:
            by_op[node.op] += 1
            if "grad" in node.tags and "grad" not in rep.tags:
                reused_forward += 1
        memo[node.id] = rep
        number[node.id] = number[rep.id]
    merges = sum(by_op.values())
    stats = {"merges": merges, "reused_forward": reused_forward,
             "merged_ops": dict(by_op.most_common())}
    return [memo[o.id] for o in outputs], stats
