"""The op table: every primitive has every concern, or says why not."""

import numpy as np

import symgraph as sg
from symgraph.ops import CONCERNS, OPS
from symgraph.ops.special import uniform_bits
from symgraph.ops.table import ELEMENTWISE


def test_every_op_has_every_concern_or_a_reason():
    gaps = []
    for name, opdef in OPS.items():
        for concern in CONCERNS:
            present = getattr(opdef, concern) is not None
            if concern == "template" and opdef.kind != ELEMENTWISE and not present:
                present = concern in opdef.why_not
            if not present and concern not in opdef.why_not:
                gaps.append(f"{name}.{concern}")
    assert not gaps, f"concerns missing without a reason: {gaps}"


def test_elementwise_ops_have_templates():
    for name, opdef in OPS.items():
        if opdef.kind == ELEMENTWISE:
            assert opdef.template, name


def test_table_lists_the_design_primitive_set():
    expected = {"neg", "exp", "log", "sqrt", "tanh", "sigmoid", "abs", "sign", "log1p", "expm1",
                "reciprocal", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "le",
                "gt", "ge", "eq", "ne", "where", "cast", "sum", "max", "argmax", "matmul",
                "reshape", "transpose", "broadcast_to", "slice", "concatenate", "take",
                "one_hot", "random_uniform"}
    assert expected <= set(OPS)


def test_elementwise_templates_agree_with_numpy_impls():
    import math  # noqa: F401  (templates use math.*)

    x, y = 0.37, 1.9
    for name, opdef in OPS.items():
        if opdef.kind != ELEMENTWISE or name in ("where", "cast", "logical_and", "logical_or"):
            continue
        n_args = opdef.template.count("{1}") and 2 or 1
        args = (x, y)[:n_args]
        expr = opdef.template.format(*[repr(a) for a in args])
        got = eval(expr)  # noqa: S307  (our own templates)
        want = opdef.impl({}, {}, *[np.float64(a) for a in args])
        assert np.isclose(float(got), float(want)), name


def test_random_bits_depend_on_seed_step_and_index():
    a = uniform_bits(1, 0, 1000)
    assert np.array_equal(a, uniform_bits(1, 0, 1000))
    assert (a != uniform_bits(1, 1, 1000)).mean() > 0.99
    assert (a != uniform_bits(2, 0, 1000)).mean() > 0.99
    assert len(np.unique(a)) > 990
    assert a.max() < 2 ** 24


def test_uniform_draws_are_uniform():
    u = sg.function([], sg.random.uniform((200_000,), seed=5, step=sg.constant(np.int64(3))))()
    assert u.dtype == np.float32 and 0 <= u.min() and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    expected = len(u) / 10
    chi2 = ((hist - expected) ** 2 / expected).sum()
    assert chi2 < 30  # 9 degrees of freedom: p < 1e-3 for a correct generator
