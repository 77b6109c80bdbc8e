"""O3 reassociation: the rewrites fire only at O3 and round within a few ulps."""

import numpy as np
import pytest
from rewrite_checks import check_same
from rewrite_checks import placeholder_x as _x

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.passes.reassociate import reassociate
from symgraph.passes.simplify import simplify

_check_same = check_same


def test_max_over_broadcast_is_exact_and_sum_is_o3():
    b = sg.placeholder((4,), "float64", name="b")
    big = sg.broadcast_to(b, (3, 4))
    (out,), stats = simplify([sg.max(big, axis=0)])
    assert out is b and stats["rules"]["max_broadcast"] == 1
    s = sg.sum(big, axis=0, keepdims=True)
    (out,), stats = simplify([s])
    assert out.op == "sum"  # rounding changes: not at O2
    (out,), stats = reassociate([s])
    assert out.op == "mul" and stats["rules"] == {"sum_broadcast": 1}
    bs = np.array([0.1, -3.0, 1e10, 7.0])
    np.testing.assert_allclose(sg.function([b], s, optimize=3)(bs), 3 * bs[None, :], rtol=1e-15)


def test_reductions_over_zero_copies_keep_their_meaning():
    # max over no copies is an error (no identity) and sum over none is 0; the rewrites gave
    # x and x * 0 (NaN for an inf x)
    x = sg.placeholder((1, 3), name="x")
    xs = np.array([[1.0, np.inf, 3.0]], np.float32)
    empty = sg.broadcast_to(x, (0, 3))
    for level in (0, 2, 3):
        np.testing.assert_array_equal(
            sg.function([x], sg.sum(empty, axis=0), optimize=level)(xs), np.zeros(3))
        with pytest.raises(sg.SymgraphError, match="empty"):
            sg.function([x], sg.max(empty, axis=0), optimize=level)(xs)
    v = sg.placeholder((3,), name="v")
    copies = sg.max(sg.broadcast_to(v, ("batch", 3)), axis=0)  # the batch may be bound to 0
    assert simplify([copies])[0][0].op == "max"
    total = sg.sum(sg.broadcast_to(v, ("n", 3)), axis=0)  # n bound to 0: x * 0 was NaN for inf
    n0 = sg.placeholder(("n", 3), name="n0")
    f = sg.function([v, n0], total + sg.sum(n0, axis=0), optimize=3)
    np.testing.assert_array_equal(f(np.array([np.inf, 1, 2], np.float32),
                                    np.zeros((0, 3), np.float32)), np.zeros(3))


def test_sum_over_symbolic_broadcast_uses_dim_size():
    b = sg.placeholder((4,), "float64", name="b")
    x = sg.placeholder(("batch", 4), "float64", name="x")
    s = sg.sum(sg.broadcast_to(b, ("batch", 4)), axis=0) + sg.sum(x, axis=0)
    (out,), stats = reassociate([s])
    assert stats["rules"] == {"sum_broadcast": 1}
    assert any(n.op == "dim_size" for n in topo_order([out]))
    bs, xs = np.arange(4.0), np.ones((5, 4))
    np.testing.assert_allclose(sg.function([b, x], s, optimize=3)(bs, xs), 5 * bs + 5)


def test_pow_two_is_o3():
    x = _x()
    (out,), _ = simplify([x ** 2.0])
    assert out.op == "pow"
    (out,), stats = reassociate([x ** 2.0])
    assert out.op == "mul" and out.inputs == (x, x)
    xs = np.linspace(-3.3, 3.1, 12).reshape(3, 4)
    want = sg.function([x], x ** 2.0, optimize=0)(xs)
    np.testing.assert_allclose(sg.function([x], x ** 2.0, optimize=3)(xs), want, rtol=1e-15)
