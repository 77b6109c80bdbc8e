"""Elementwise primitives: unary math, binary arithmetic, comparisons, where, cast.

Each row: name, NumPy reference, vjp, jvp, scalar template ({0}, {1}, {2} are the operands; the
code generators provide `math` and cast the result to the output dtype).
"""

from __future__ import annotations

import numpy as np
import scipy.special

from symgraph.errors import SymgraphError
from symgraph.graph import TensorType, canonical_dtype
from symgraph.ops import build as B
from symgraph.ops.shapes import broadcast_shapes, require_float, same_dtype
from symgraph.ops.table import ELEMENTWISE, OpDef, register


def _infer_unary_float(name):
    def infer(x: TensorType) -> TensorType:
        require_float(x.dtype, name)
        return x
    return infer


def _infer_unary_any(x: TensorType) -> TensorType:
    if x.dtype == "bool":
        raise SymgraphError("arithmetic on a bool tensor; cast it first")
    return x


def _infer_binary(name, float_only=False):
    def infer(a: TensorType, b: TensorType) -> TensorType:
        dtype = same_dtype(a.dtype, b.dtype)
        if float_only:
            require_float(dtype, name)
        elif dtype == "bool":
            raise SymgraphError(f"{name} on bool tensors; cast them first")
        return TensorType(dtype, broadcast_shapes(a.shape, b.shape))
    return infer


def _infer_compare(a: TensorType, b: TensorType) -> TensorType:
    same_dtype(a.dtype, b.dtype)
    return TensorType("bool", broadcast_shapes(a.shape, b.shape))


def _infer_logical(a: TensorType, b: TensorType) -> TensorType:
    if a.dtype != "bool" or b.dtype != "bool":
        raise SymgraphError("logical ops need bool tensors")
    return TensorType("bool", broadcast_shapes(a.shape, b.shape))


def _unary(name, impl, vjp, jvp, template, float_only=True):
    infer = _infer_unary_float(name) if float_only else _infer_unary_any
    register(OpDef(name, ELEMENTWISE, infer, lambda attrs, dims, x: impl(x),
                   vjp, jvp, template))


def _scaled(factor_of):
    """vjp and jvp of y = f(x) with dy/dx = factor_of(node): both multiply by that factor."""
    def vjp(node, g):
        return [B.mul(g, factor_of(node))]

    def jvp(node, tangents):
        (t,) = tangents
        return None if t is None else B.mul(t, factor_of(node))
    return vjp, jvp


def _x(node):
    return node.inputs[0]


def _one(node):
    return B.scalar_like(1, node)


_unary("neg", np.negative, lambda n, g: [B.neg(g)],
       lambda n, ts: None if ts[0] is None else B.neg(ts[0]), "(-{0})", float_only=False)
_unary("exp", np.exp, *_scaled(lambda n: n), "math.exp({0})")
_unary("log", np.log, *_scaled(lambda n: B.div(_one(n), _x(n))), "math.log({0})")
_unary("sqrt", np.sqrt, *_scaled(lambda n: B.div(B.scalar_like(0.5, n), n)), "math.sqrt({0})")
_unary("tanh", np.tanh, *_scaled(lambda n: B.sub(_one(n), B.mul(n, n))), "math.tanh({0})")
_unary("sigmoid", scipy.special.expit, *_scaled(lambda n: B.mul(n, B.sub(_one(n), n))),
       "(1.0 / (1.0 + math.exp(-{0})))")
_unary("abs", np.abs, *_scaled(lambda n: B.unary("sign", _x(n))), "abs({0})", float_only=False)
_unary("sign", np.sign, lambda n, g: [B.zeros_like(_x(n))], lambda n, ts: None,
       "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))", float_only=False)
_unary("log1p", np.log1p, *_scaled(lambda n: B.div(_one(n), B.add(_one(n), _x(n)))),
       "math.log1p({0})")
_unary("expm1", np.expm1, *_scaled(lambda n: B.add(n, _one(n))), "math.expm1({0})")
_unary("reciprocal", np.reciprocal, *_scaled(lambda n: B.neg(B.mul(n, n))), "(1.0 / {0})")
_unary("sin", np.sin, *_scaled(lambda n: B.unary("cos", _x(n))), "math.sin({0})")
_unary("cos", np.cos, *_scaled(lambda n: B.neg(B.unary("sin", _x(n)))), "math.cos({0})")


def _binary(name, impl, vjp, jvp, template, float_only=False):
    register(OpDef(name, ELEMENTWISE, _infer_binary(name, float_only),
                   lambda attrs, dims, a, b: impl(a, b), vjp, jvp, template))


def _unbroadcast(node, ga, gb):
    a, b = node.inputs
    return [None if ga is None else B.sum_to(B.broadcast_to(ga, node.shape), a.shape),
            None if gb is None else B.sum_to(B.broadcast_to(gb, node.shape), b.shape)]


def _jvp_sum(node, parts):
    """Sum of the tangent parts that are present, broadcast to the output shape."""
    present = [B.broadcast_to(p, node.shape) for p in parts if p is not None]
    if not present:
        return None
    out = present[0]
    for p in present[1:]:
        out = B.add(out, p)
    return out


def _lin(ta, tb, fa, fb):
    return (None if ta is None else fa(ta)), (None if tb is None else fb(tb))


def _safe_log(a):
    """log(a) where a > 0, else 0: d(a**b)/db = a**b log(a) is 0 at a = 0 (a**b is 0). The
    log reads a only where a > 0 (else 1), so its own derivative is finite too (the second
    derivative d2(a**b)/da db was 0 * inf = NaN at a = 0)."""
    positive = B.binary("gt", a, B.scalar_like(0, a))
    inside = B.where(positive, a, B.scalar_like(1, a))
    return B.where(positive, B.unary("log", inside), B.scalar_like(0, a))


def _d_base(node):
    """d(a**b)/da = b a**(b-1), read with a = 1 where a = b = 0: a**0 is 1 everywhere, so the
    derivative is 0 there, while 0 * 0**-1 was 0 * inf = NaN (the second derivative of x**1,
    the third of x**2 at 0). The substitute sits inside, so no derivative of it is NaN either."""
    a, b = node.inputs
    both_zero = B.binary("logical_and", B.binary("eq", a, B.scalar_like(0, a)),
                         B.binary("eq", b, B.scalar_like(0, b)))
    base = B.where(both_zero, B.scalar_like(1, a), a)
    return B.mul(b, B.binary("pow", base, B.sub(b, B.scalar_like(1, b))))


def _vjp_pow(node, g):
    a, b = node.inputs
    ga = B.mul(g, _d_base(node))
    gb = B.mul(g, B.mul(node, _safe_log(a)))
    return _unbroadcast(node, ga, gb)


def _jvp_pow(node, ts):
    a, b = node.inputs
    da = lambda t: B.mul(t, _d_base(node))  # noqa: E731
    db = lambda t: B.mul(t, B.mul(node, _safe_log(a)))  # noqa: E731
    return _jvp_sum(node, _lin(ts[0], ts[1], da, db))


def _select(node, pick_a):
    """Masks for maximum/minimum: ties send the gradient to the first operand."""
    a, b = node.inputs
    return B.binary("ge", a, b) if pick_a else B.binary("le", a, b)


def _vjp_extremum(node, g):
    mask = _select(node, node.op == "maximum")
    zero = B.scalar_like(0, g)
    return _unbroadcast(node, B.where(mask, g, zero), B.where(mask, zero, g))


def _jvp_extremum(node, ts):
    mask = _select(node, node.op == "maximum")
    ta, tb = (B.zeros_like(i) if t is None else t for i, t in zip(node.inputs, ts))
    if ts[0] is None and ts[1] is None:
        return None
    return B.where(mask, B.broadcast_to(ta, node.shape), B.broadcast_to(tb, node.shape))


_binary("add", np.add, lambda n, g: _unbroadcast(n, g, g),
        lambda n, ts: _jvp_sum(n, ts), "({0} + {1})")
_binary("sub", np.subtract, lambda n, g: _unbroadcast(n, g, B.neg(g)),
        lambda n, ts: _jvp_sum(n, _lin(ts[0], ts[1], lambda t: t, B.neg)), "({0} - {1})")
_binary("mul", np.multiply,
        lambda n, g: _unbroadcast(n, B.mul(g, n.inputs[1]), B.mul(g, n.inputs[0])),
        lambda n, ts: _jvp_sum(n, _lin(ts[0], ts[1], lambda t: B.mul(t, n.inputs[1]),
                                      lambda t: B.mul(n.inputs[0], t))), "({0} * {1})")
_binary("div", np.divide,
        lambda n, g: _unbroadcast(n, B.div(g, n.inputs[1]), B.neg(B.div(B.mul(g, n), n.inputs[1]))),
        lambda n, ts: _jvp_sum(n, _lin(ts[0], ts[1], lambda t: B.div(t, n.inputs[1]),
                                      lambda t: B.neg(B.div(B.mul(t, n), n.inputs[1])))),
        "({0} / {1})", float_only=True)
_binary("pow", np.power, _vjp_pow, _jvp_pow, "({0} ** {1})", float_only=True)
_binary("maximum", np.maximum, _vjp_extremum, _jvp_extremum, "max({0}, {1})")
_binary("minimum", np.minimum, _vjp_extremum, _jvp_extremum, "min({0}, {1})")


def _zero_grad(node, g):
    return [None] * len(node.inputs)


def _zero_tangent(node, ts):
    return None


for _name, _impl, _tmpl in [("lt", np.less, "({0} < {1})"), ("le", np.less_equal, "({0} <= {1})"),
                            ("gt", np.greater, "({0} > {1})"),
                            ("ge", np.greater_equal, "({0} >= {1})"),
                            ("eq", np.equal, "({0} == {1})"), ("ne", np.not_equal, "({0} != {1})")]:
    # Comparisons are piecewise constant: zero gradient almost everywhere, and bool output.
    register(OpDef(_name, ELEMENTWISE, _infer_compare,
                   (lambda f: lambda attrs, dims, a, b: f(a, b))(_impl), _zero_grad,
                   _zero_tangent, _tmpl))

for _name, _impl, _tmpl in [("logical_and", np.logical_and, "({0} and {1})"),
                            ("logical_or", np.logical_or, "({0} or {1})")]:
    register(OpDef(_name, ELEMENTWISE, _infer_logical,
                   (lambda f: lambda attrs, dims, a, b: f(a, b))(_impl), _zero_grad,
                   _zero_tangent, _tmpl))


def _infer_where(c: TensorType, a: TensorType, b: TensorType) -> TensorType:
    if c.dtype != "bool":
        raise SymgraphError(f"where needs a bool condition, got {c.dtype}")
    dtype = same_dtype(a.dtype, b.dtype)
    return TensorType(dtype, broadcast_shapes(c.shape, a.shape, b.shape))


def _vjp_where(node, g):
    c, a, b = node.inputs
    zero = B.scalar_like(0, g)
    ga = B.sum_to(B.where(c, g, zero), a.shape)
    gb = B.sum_to(B.where(c, zero, g), b.shape)
    return [None, ga, gb]


def _jvp_where(node, ts):
    c, a, b = node.inputs
    if ts[1] is None and ts[2] is None:
        return None
    ta = B.zeros_like(a) if ts[1] is None else ts[1]
    tb = B.zeros_like(b) if ts[2] is None else ts[2]
    return B.where(c, ta, tb)


register(OpDef("where", ELEMENTWISE, _infer_where, lambda attrs, dims, c, a, b: np.where(c, a, b),
               _vjp_where, _jvp_where, "({1} if {0} else {2})"))


def _infer_cast(x: TensorType, dtype: str) -> TensorType:
    return TensorType(canonical_dtype(dtype), x.shape)


def _is_float(dtype):
    return dtype in ("float32", "float64")


def _vjp_cast(node, g):
    x = node.inputs[0]
    return [B.cast(g, x.dtype) if _is_float(x.dtype) and _is_float(node.dtype) else None]


def _jvp_cast(node, ts):
    t = ts[0]
    ok = t is not None and _is_float(node.dtype) and _is_float(node.inputs[0].dtype)
    return B.cast(t, node.dtype) if ok else None


register(OpDef("cast", ELEMENTWISE, _infer_cast,
               lambda attrs, dims, x: x.astype(attrs["dtype"]), _vjp_cast, _jvp_cast,
               "{0}"))
