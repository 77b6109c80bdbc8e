"""Numerical stabilization: rewrite expressions that overflow or lose precision into stable forms
with the same mathematical value.

    log(exp(a) / sum(exp(a)))      -> d - log(sum(exp(d))),  d = a - stop_gradient(max(a))
                                      (log of softmax, shifted or not; cross-entropy on softmax,
                                      -sum(t * log(softmax(x))), becomes stable through it)
    log(1 + x)                     -> log1p(x)        log(1 - x) -> log1p(-x)
    exp(x) - 1                     -> expm1(x)
    log(sigmoid(x))                -> -softplus(-x)
    log(1 - sigmoid(x))            -> -softplus(x)
    log1p(exp(x)) (naive softplus) -> softplus(x)
                                      softplus(x) = where(c, x, 0) + log1p(exp(where(c, -x, x))),
                                      c = x >= 0 (TF's form: the gradient at 0 is sigmoid(0))
    log(exp(x))                    -> x
    log(sum(exp(a)))               -> log(sum(exp(a - m))) + m,  m = stop_gradient(max(a)),
                                      or 0 where that max is not finite (a row of -inf: -inf)
    sqrt(x * x)                    -> |x|

softmax and log_softmax are composites, so their primitive shapes are matched:
exp(x - stop_gradient(max(x))) / sum(...). Keras's probability-space cross-entropy clips p to
[eps, 1 - eps] before the log; that clip is part of its meaning, so it is left alone. The
expressions above are rewritten wherever they sit (forward or backward). `sg.grad` is `grad`
below: it runs this table on the cost before differentiating it (autodiff.grad), so a gradient
is built from the stable form (no division by an underflowed softmax), unless that would drop
a node being differentiated.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from symgraph import autodiff
from symgraph.graph import Node, topo_order
from symgraph.ops import build as B
from symgraph.ops.shapes import reduced_shape
from symgraph.passes.cse import cse, value_number
from symgraph.passes.rewrite import build, fit, is_value, rewrite, rule_table


def _keepdims_reduction(node: Node, op: str, of: Node) -> tuple | None:
    """The axes of `op`(of, axes) when `node` is that reduction laid out in keepdims form.

    Accepts the reduction with keepdims=True, or with keepdims=False reshaped back to the
    keepdims shape, either one possibly broadcast: exactly the layouts in which dividing by (or
    subtracting) it acts along the reduced axes. Anything else returns None.
    """
    while node.op == "broadcast_to":
        node = node.inputs[0]
    if node.op == "reshape":
        inner = node.inputs[0]
        if inner.op != op or inner.attr["keepdims"]:
            return None
        axes = tuple(inner.attr["axes"])
        if tuple(node.shape) != reduced_shape(of.shape, axes, True):
            return None
        node = inner
    elif node.op != op or not node.attr["keepdims"]:
        return None
    return tuple(node.attr["axes"]) if node.inputs[0] is of else None


def _shift_of(a: Node, axes: tuple) -> bool:
    """True when a = x - stop_gradient(max(x, axes)): already shifted by its max."""
    if a.op != "sub":
        return False
    x, m = a.inputs
    while m.op == "broadcast_to":
        m = m.inputs[0]
    if m.op != "stop_gradient":
        return False
    m = m.inputs[0]
    if m.op == "where":  # the max where finite, else 0 (_finite_max)
        m = m.inputs[1]
    return _keepdims_reduction(m, "max", x) == tuple(axes)


def _finite_max(a: Node, axes: tuple, like: Node) -> Node:
    """stop_gradient(max(a) where it is finite, else 0): the shift of a log-sum-exp."""
    top = build("max", (a,), like, axes=axes, keepdims=True)
    finite = build("lt", (build("abs", (top,), like), B.const(float("inf"), top.dtype)), like)
    return build("stop_gradient", (build("where", (finite, top, _zero(top)), like),), like)


def _log_sum_exp_shifted(d: Node, axes: tuple, like: Node) -> Node:
    e = build("exp", (d,), like)
    s = build("sum", (e,), like, axes=axes, keepdims=True)
    return build("log", (s,), like)


def log_softmax(node: Node):
    """log(exp(a) / sum(exp(a), axes)) -> d - log(sum(exp(d))) with d = a - max(a)."""
    q = node.inputs[0]
    if q.op != "div":
        return None
    e, s = q.inputs
    axes = _keepdims_reduction(s, "sum", e) if e.op == "exp" else None
    if axes is None:
        return None
    a = e.inputs[0]
    if _shift_of(a, axes):
        d = a
    else:
        mx = build("max", (a,), node, axes=axes, keepdims=True)
        d = build("sub", (a, build("stop_gradient", (mx,), node)), node)
    out = build("sub", (d, _log_sum_exp_shifted(d, axes, node)), node)
    fitted = fit(out, node)
    return None if fitted is None else (fitted, "log_softmax")


def log_sum_exp(node: Node):
    """log(sum(exp(a), axes)) -> log(sum(exp(a - m))) + m with m = stop_gradient(max(a))."""
    s = node.inputs[0]
    if s.op != "sum" or s.inputs[0].op != "exp":
        return None
    a, axes = s.inputs[0].inputs[0], tuple(s.attr["axes"])
    if _shift_of(a, axes):  # already the stable form (the composite's, or ours)
        return None
    shift = _finite_max(a, axes, node)
    d = build("sub", (a, shift), node)
    out = build("add", (_log_sum_exp_shifted(d, axes, node), shift), node)
    if not s.attr["keepdims"]:
        out = B.reshape(out, node.shape)
    return (out, "log_sum_exp") if out.type == node.type else None


def sqrt_square(node: Node):
    """sqrt(x * x) -> |x| (x*x overflows from |x| > 1e154 in float64, 1e19 in float32)."""
    x = node.inputs[0]
    if x.op == "mul" and x.inputs[0] is x.inputs[1]:
        return build("abs", (x.inputs[0],), node), "sqrt_square"
    return None


def _zero(like: Node) -> Node:
    return B.const(0, like.dtype)


def _softplus(x: Node, like: Node) -> Node:
    """softplus(x) in composites.softplus's form: where(c, x, 0) + log1p(exp(where(c, -x, x)))."""
    pos = build("ge", (x, _zero(x)), like)
    bounded = build("where", (pos, build("neg", (x,), like), x), like)
    return build("add", (build("where", (pos, x, _zero(x)), like),
                         build("log1p", (build("exp", (bounded,), like),), like)), like)


def log_sigmoid(node: Node):
    """log(sigmoid(x)) = -softplus(-x)."""
    s = node.inputs[0]
    if s.op != "sigmoid":
        return None
    return build("neg", (_softplus(build("neg", (s.inputs[0],), node), node),), node), \
        "log_sigmoid"


def log_one_minus(node: Node):
    """log(1 - sigmoid(x)) = -softplus(x); log(1 - x) -> log1p(-x)."""
    q = node.inputs[0]
    if q.op != "sub" or not is_value(q.inputs[0], 1):
        return None
    y = q.inputs[1]
    if y.op == "sigmoid" and y.type == node.type:
        return build("neg", (_softplus(y.inputs[0], node),), node), "log_one_minus_sigmoid"
    out = fit(build("log1p", (build("neg", (y,), node),), node), node)
    return None if out is None else (out, "log_one_minus")


def log_one_plus(node: Node):
    """log(1 + x) -> log1p(x)."""
    q = node.inputs[0]
    if q.op != "add":
        return None
    a, b = q.inputs
    x = b if is_value(a, 1) else a if is_value(b, 1) else None
    if x is None:
        return None
    out = fit(build("log1p", (x,), node), node)
    return None if out is None else (out, "log1p")


def log_exp(node: Node):
    """log(exp(x)) -> x (exp overflows above 709 in float64, 88 in float32)."""
    x = node.inputs[0]
    return (x.inputs[0], "log_exp") if x.op == "exp" else None


def exp_minus_one(node: Node):
    """exp(x) - 1 -> expm1(x)."""
    e, one = node.inputs
    if e.op != "exp" or not is_value(one, 1):
        return None
    out = fit(build("expm1", (e.inputs[0],), node), node)
    return None if out is None else (out, "expm1")


def _bounded_part(x: Node) -> bool:
    """x is where(y >= 0, -y, y): softplus's bounded part, never above 0."""
    if x.op != "where":
        return False
    c, neg, y = x.inputs
    return (neg.op == "neg" and neg.inputs[0] is y and c.op == "ge" and c.inputs[0] is y
            and is_value(c.inputs[1], 0))


def softplus_naive(node: Node):
    """log1p(exp(x)) -> softplus(x), unless x is already bounded above by 0: -|y|, or the
    where(c, -y, y) of softplus's own form (no overflow)."""
    e = node.inputs[0]
    if e.op != "exp":
        return None
    x = e.inputs[0]
    if (x.op == "neg" and x.inputs[0].op == "abs") or _bounded_part(x):
        return None
    return _softplus(x, node), "softplus"


RULES = {
    "log": [log_softmax, log_sum_exp, log_sigmoid, log_one_minus, log_one_plus, log_exp],
    "sqrt": [sqrt_square],
    "sub": [exp_minus_one],
    "log1p": [softplus_naive],
}


def stabilize(outputs: Sequence[Node]) -> tuple[list[Node], dict]:
    """Apply the stabilization table; stats: rewrites by rule."""
    outs, fired = rewrite(outputs, rule_table(RULES))
    return outs, {"rewrites": sum(n for k, n in fired.items() if not k.startswith("rejected")),
                  "rules": dict(fired.most_common())}


def _merged_into_target(nodes: list[Node], targets: list[Node]) -> bool:
    """Would CSE merge another node of the graph with a target (an equal constant, a second
    copy of the same expression)? The stable form would then differentiate that node's uses
    as the target's own. (Inputs and variables are never merged.)"""
    if all(t.op in ("placeholder", "variable") for t in targets):
        return False
    number: dict[int, int] = {}
    first: dict = {}
    count: Counter = Counter()
    for node in topo_order(nodes):
        key = value_number(node, tuple(number[i.id] for i in node.inputs))
        try:
            rep = first.setdefault(key, node.id)
        except TypeError:  # an unhashable attr: CSE keeps such a node as it is
            rep = node.id
        number[node.id] = rep
        count[rep] += 1
    return any(count[number[t.id]] > 1 for t in targets if t.id in number)


def _stable_forms(nodes: list[Node], targets: list[Node]) -> list[Node]:
    """`nodes` through the table (after merging equal subexpressions, so that a softmax whose
    exp(x) is written twice still matches), if that changed them, every target is still in
    their graph and every user of a target that is not an input or a variable is too: such a
    target (a constant, an inner node) is a variable of its own, and a rewrite reading around
    it (log(1 - s) -> -softplus(x) with s = sigmoid(x), log(c + x) -> log1p(x) with c = 1)
    would drop the derivative along that path; and no other node is merged into a target.
    Else `nodes` as written."""
    if _merged_into_target(nodes, targets):
        return nodes
    merged, _ = cse(nodes)
    stable, stats = stabilize(merged)
    if not stats["rewrites"]:
        return nodes
    present = {n.id for n in topo_order(stable)}
    inner = {t.id for t in targets if t.op not in ("placeholder", "variable")}
    users = {n.id for n in topo_order(nodes) if any(i.id in inner for i in n.inputs)}
    if all(t.id in present for t in targets) and users <= present:
        return stable
    return nodes


def grad(cost: Node, wrt, disconnected: str = "zero", stabilize: bool = True):
    """`sg.grad`: d(cost)/d(wrt) (autodiff.grad) taken on the cost's stable form.

    The stable form is the same function with log(softmax) as log_softmax, log(sigmoid) as
    -softplus(-x), ... (the table above), so its gradient never divides by an underflowed
    probability. With `stabilize=False`, or when a rewrite would remove a node in `wrt` (the
    gradient with respect to p in sum(log(p)), p = softmax(x)), the cost is used as written.
    """
    targets = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    if stabilize and isinstance(cost, Node) and all(isinstance(t, Node) for t in targets):
        cost = _stable_forms([cost], targets)[0]
    return autodiff.grad(cost, wrt, disconnected)


def jvp(outputs, primals, tangents, stabilize: bool = True):
    """`sg.jvp`: autodiff.jvp on the outputs' stable forms (as `grad` takes the cost's), so a
    forward-mode derivative is finite wherever the reverse-mode one is; the outputs are used
    as written with `stabilize=False`, or when a rewrite would remove a primal."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else outputs
    prims = primals if isinstance(primals, (list, tuple)) else [primals]
    if stabilize and isinstance(outs, (list, tuple)) and \
            all(isinstance(n, Node) for n in [*outs, *prims]):
        outs = _stable_forms(list(outs), list(prims))
        outputs = outs[0] if single else outs
    return autodiff.jvp(outputs, primals, tangents)  # autodiff checks the arguments
