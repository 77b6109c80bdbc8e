"""Constant folding: a node whose inputs are all constants becomes a constant, computed with the
op table's NumPy reference (the same code that defines the op's meaning, so folding never
changes a result).

Not folded: leaves; random draws (their value changes every step through the step input,
which is never a constant in practice, and folding would freeze a mask); `dim_size` and any
node whose shape has a symbolic dim (its value depends on dims bound at call time); and
results much larger than their inputs (folding broadcast_to(0, (4096, 4096)) would turn a
scalar into a 64 MiB constant that fusion could otherwise generate for free).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symgraph.graph import ConstValue, Node, is_static, static_size
from symgraph.ops import OPS
from symgraph.ops.table import LEAF, RANDOM
from symgraph.passes.rewrite import const_array, rewrite

# A folded result may exceed its largest input by this many elements (small broadcasts fold).
GROWTH_ALLOWANCE = 64
NEVER_FOLD = frozenset({"dim_size"})


def make_constant(array: np.ndarray, like: Node) -> Node:
    """A constant node standing for `like`: same type, name, source line and tags."""
    array = np.asarray(array, dtype=like.dtype).reshape(tuple(like.shape))
    return Node("constant", (), {"value": ConstValue(array)}, like.type, name=like.name,
                trace=like.trace, tags=like.tags)


def _foldable(node: Node) -> bool:
    opdef = OPS[node.op]
    if opdef.kind in (LEAF, RANDOM) or opdef.impl is None or node.op in NEVER_FOLD:
        return False
    if not node.inputs or not is_static(node.shape):
        return False
    if any(i.op != "constant" for i in node.inputs):
        return False
    largest = max(static_size(i.shape) for i in node.inputs)
    return static_size(node.shape) <= largest + GROWTH_ALLOWANCE


def fold_rule(node: Node):
    """Replace an all-constant computation by its value."""
    if not _foldable(node):
        return None
    arrays = [const_array(i) for i in node.inputs]
    try:
        with np.errstate(all="ignore"):  # inf/NaN results fold as they compute at run time
            value = np.asarray(OPS[node.op].impl(node.attr, {}, *arrays))
    except (ValueError, IndexError, TypeError, FloatingPointError):
        return None  # left for run time, where the backend reports it naming the node
    if value.shape != tuple(node.shape):
        return None
    return make_constant(value, node), f"fold_{node.op}"


def fold(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """Fold every all-constant subgraph; stats: folded (count) and the ops folded."""
    outs, fired = rewrite(outputs, fold_rule, max_rounds=1)
    by_op = {name[len("fold_"):]: n for name, n in fired.items() if name.startswith("fold_")}
    return outs, {"folded": sum(by_op.values()), "folded_ops": by_op}
