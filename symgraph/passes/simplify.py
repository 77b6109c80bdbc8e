"""Algebraic simplification: identities that make the graph smaller without changing results.

NaN/inf and signed-zero policy (the one place where "the same result" needs a definition):
- kept exact, NaN and inf included: x*1, x/1, x-0, x*(-1) -> -x, x/(-1) -> -x, neg(neg x),
  x+(-y) -> x-y, x-(-y) -> x+y, (-x)*(-y) -> x*y, -(c*y) -> (-c)*y for one-element c,
  sum(-x) -> -sum(x), x/c -> x*(1/c) for c a power of two (1/c is exact, so both are the
  correctly rounded x/c), transpose/reshape/broadcast chains, casts that
  round-trip exactly, where with a constant condition, max over broadcast copies;
- x+0 -> x and 0-x -> -x may turn -0.0 into +0.0 or back: the values compare equal and only 1/x
  tells them apart, which we accept (every numeric library's simplifier does);
- x*0 -> 0 only for integer x: for floats inf*0 and NaN*0 are NaN, so the product is kept;
- sum over broadcast copies -> x*count and pow(x, 2) -> x*x round differently from the
  original (one rounding instead of n): they are the O3 pass `reassociate`.
Each rule is one small function; the table at the bottom maps an op to its rules in order.
The shape rules (movement chains, broadcasts, reductions of broadcasts) are in shape_rules.py.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symgraph.graph import INT_DTYPES, Node, is_static
from symgraph.ops import build as B
from symgraph.passes.rewrite import (
    build,
    fit,
    is_value,
    rewrite,
    rule_table,
    single_use,
    uniform_value,
)
from symgraph.passes.shape_rules import (
    absorb_broadcast,
    broadcast_broadcast,
    max_broadcast,
    reduce_unit_axes,
    reshape_of_broadcast_scalar,
    reshape_reshape,
    transpose_transpose,
    unary_through_broadcast,
)


def _fitted(x: Node, node: Node, name: str):
    x = fit(x, node)
    return None if x is None else (x, name)


def _either(node: Node, test):
    """(other operand, matched operand) when one operand of a binary op passes `test`."""
    a, b = node.inputs
    if test(b):
        return a, b
    if test(a):
        return b, a
    return None


# --- arithmetic identities -----------------------------------------------------------------


def add_zero(node):
    hit = _either(node, lambda n: is_value(n, 0))
    return hit and _fitted(hit[0], node, "add_zero")


def add_neg(node):
    a, b = node.inputs
    if b.op == "neg":
        return build("sub", (a, b.inputs[0]), node), "add_neg"
    if a.op == "neg":
        return build("sub", (b, a.inputs[0]), node), "add_neg"
    return None


def sub_zero(node):
    a, b = node.inputs
    if is_value(b, 0):
        return _fitted(a, node, "sub_zero")
    if is_value(a, 0):
        return _fitted(build("neg", (b,), node), node, "zero_sub")
    return None


def sub_neg(node):
    a, b = node.inputs
    return (build("add", (a, b.inputs[0]), node), "sub_neg") if b.op == "neg" else None


def mul_one(node):
    hit = _either(node, lambda n: is_value(n, 1))
    return hit and _fitted(hit[0], node, "mul_one")


def mul_minus_one(node):
    hit = _either(node, lambda n: is_value(n, -1))
    return hit and _fitted(build("neg", (hit[0],), hit[0]), node, "mul_minus_one")


def mul_zero_int(node):
    if node.dtype not in INT_DTYPES:
        return None
    hit = _either(node, lambda n: is_value(n, 0))
    return hit and _fitted(hit[1], node, "mul_zero")


def mul_neg_neg(node):
    a, b = node.inputs
    if a.op == "neg" and b.op == "neg":
        return build("mul", (a.inputs[0], b.inputs[0]), node), "mul_neg_neg"
    return None


def div_one(node):
    a, b = node.inputs
    if is_value(b, 1):
        return _fitted(a, node, "div_one")
    if is_value(b, -1):
        return _fitted(build("neg", (a,), a), node, "div_minus_one")
    return None


def div_power_of_two(node):
    """x / 2**k -> x * 2**-k: the reciprocal is exact, so the product is the same number."""
    a, b = node.inputs
    c = uniform_value(b)
    if c is None or b.op != "constant" or not np.isfinite(c) or c == 0:
        return None
    mantissa, _ = np.frexp(c)
    if abs(mantissa) != 0.5:
        return None
    inverse = B.const(np.reciprocal(np.asarray(b.attr["value"].array)), b.dtype)
    if not np.all(np.isfinite(inverse.attr["value"].array)):
        return None
    return build("mul", (a, inverse), node), "div_power_of_two"


def neg_neg(node):
    x = node.inputs[0]
    return (x.inputs[0], "neg_neg") if x.op == "neg" else None


def neg_into_scalar_factor(node):
    """-(c * y) -> (-c) * y when c holds one element: negate one number, not a tensor (exact)."""
    x = node.inputs[0]
    if x.op != "mul" or not single_use(x):  # else c*y stays and a second product is added
        return None
    for i, c in enumerate(x.inputs):
        if c.type.shape != node.shape and is_static(c.shape) and \
                int(np.prod(c.shape, dtype=np.int64)) == 1:
            inputs = list(x.inputs)
            inputs[i] = build("neg", (c,), c)
            return build("mul", inputs, x), "neg_into_scalar_factor"
    return None


def sum_of_neg(node):
    """sum(-x) -> -sum(x): negation commutes with every rounding, so this is exact."""
    x = node.inputs[0]
    if x.op != "neg" or not single_use(x):
        return None
    inner = build("sum", (x.inputs[0],), node, **node.attr)
    return build("neg", (inner,), node), "sum_of_neg"


def pow_one(node):
    a, b = node.inputs
    return _fitted(a, node, "pow_one") if is_value(b, 1) else None


# --- casts, selection, logic ---------------------------------------------------------------

_EXACT_WIDENING = {("float32", "float64"), ("int32", "int64"), ("int32", "float64"),
                   ("bool", "int32"), ("bool", "int64"), ("bool", "float32"),
                   ("bool", "float64")}


def cast_roundtrip(node):
    x = node.inputs[0]
    if x.op != "cast":
        return None
    src, mid = x.inputs[0].dtype, x.dtype
    if src == node.dtype and (src, mid) in _EXACT_WIDENING:
        return x.inputs[0], "cast_roundtrip"
    return None


def where_constant(node):
    cond, a, b = node.inputs
    c = uniform_value(cond)
    if c is None:
        return None
    return _fitted(a if bool(c) else b, node, "where_constant")


def stop_gradient_twice(node):
    x = node.inputs[0]
    return (x, "stop_gradient_twice") if x.op == "stop_gradient" else None


def logical_constant(node):
    neutral = node.op == "logical_and"  # x and True = x; x or False = x
    hit = _either(node, lambda n: is_value(n, neutral))
    if hit:
        return _fitted(hit[0], node, f"{node.op}_neutral")
    hit = _either(node, lambda n: is_value(n, not neutral))  # x and False = False
    return hit and _fitted(hit[1], node, f"{node.op}_absorbing")


RULES = {
    "add": [add_zero, add_neg, absorb_broadcast],
    "sub": [sub_zero, sub_neg, absorb_broadcast],
    "mul": [mul_one, mul_minus_one, mul_zero_int, mul_neg_neg, absorb_broadcast],
    "div": [div_one, div_power_of_two, absorb_broadcast],
    "pow": [pow_one, absorb_broadcast],
    "neg": [neg_neg, unary_through_broadcast, neg_into_scalar_factor],
    "transpose": [transpose_transpose],
    "reshape": [reshape_reshape, reshape_of_broadcast_scalar],
    "broadcast_to": [broadcast_broadcast],
    "sum": [reduce_unit_axes, sum_of_neg],
    "max": [max_broadcast, reduce_unit_axes],
    "cast": [cast_roundtrip],
    "where": [where_constant, absorb_broadcast],
    "stop_gradient": [stop_gradient_twice],
    "logical_and": [logical_constant, absorb_broadcast],
    "logical_or": [logical_constant, absorb_broadcast],
}
for _op in ("maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne"):
    RULES[_op] = [absorb_broadcast]
for _op in ("exp", "log", "sqrt", "tanh", "sigmoid", "abs", "sign", "log1p", "expm1",
            "reciprocal", "sin", "cos", "cast"):
    RULES.setdefault(_op, []).append(unary_through_broadcast)


def simplify(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """Apply the identity table until nothing changes; stats: rewrites by rule."""
    outs, fired = rewrite(outputs, rule_table(RULES))
    return outs, {"rewrites": sum(n for k, n in fired.items() if not k.startswith("rejected")),
                  "rules": dict(fired.most_common())}
