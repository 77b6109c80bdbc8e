"""The O3 pass: rewrites that compute the same value but may round differently.

    sum(broadcast_to(x), broadcast axes) -> x * count   (one rounding instead of count)
    x ** 2                               -> x * x       (libm's pow may differ in the last bit)

NaN and inf behave as before; only rounding may change, which is why O2 does not run these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symgraph.graph import Node, is_static
from symgraph.ops import apply
from symgraph.ops import build as B
from symgraph.passes.rewrite import build, fit, is_value, rewrite, rule_table
from symgraph.passes.shape_rules import reduced_broadcast_input


def sum_broadcast(node):
    """sum over n broadcast copies of x -> x * n (O3: one rounding instead of n)."""
    x = reduced_broadcast_input(node)
    if x is None:
        return None
    src = node.inputs[0]
    dims = tuple(src.shape[a] for a in node.attr["axes"])
    if 0 in dims:  # a sum of no copies is 0, while x * 0 is NaN for an inf or NaN x
        return None
    if is_static(dims):
        count = B.const(int(np.prod(dims, dtype=np.int64)), node.dtype)
        return build("mul", (x, count), node), "sum_broadcast"
    # a symbolic dim may be bound to 0 at call time: no copies sum to 0, while x * 0 is NaN
    # for an inf or NaN x, so the product is taken only where there is a copy
    count = apply("dim_size", (), dims=dims, dtype=node.dtype, trace=node.trace)
    zero = B.const(0, node.dtype)
    some = build("gt", (count, zero), node)
    return build("where", (some, build("mul", (x, count), node), zero), node), "sum_broadcast"


def _pair(x: Node | None, name: str):
    return None if x is None else (x, name)


def pow_two(node):
    """x ** 2 -> x * x (O3: libm's pow may round differently from one multiply)."""
    a, b = node.inputs
    return _pair(fit(build("mul", (a, a), node), node), "pow_two") if is_value(b, 2) else None


REASSOCIATE_RULES = {"sum": [sum_broadcast], "pow": [pow_two]}


def reassociate(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """The O3 rewrites that may round differently; stats: rewrites by rule."""
    outs, fired = rewrite(outputs, rule_table(REASSOCIATE_RULES))
    return outs, {"rewrites": sum(n for k, n in fired.items() if not k.startswith("rejected")),
                  "rules": dict(fired.most_common())}
