"""Shape rules (run by simplify): movement chains, broadcasts, reductions of broadcasts."""

import numpy as np
from rewrite_checks import SPECIAL, check_same
from rewrite_checks import placeholder_x as _x

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.passes.simplify import simplify

_check_same = check_same


def test_broadcast_absorbed_and_chains_collapsed():
    x, b = _x(), sg.placeholder((4,), "float64", name="b")
    expr = x * sg.broadcast_to(b, (3, 4))
    (out,), stats = simplify([expr])
    assert out.inputs[1] is b and stats["rules"]["absorb_broadcast"] == 1
    chain = sg.broadcast_to(sg.broadcast_to(b, (1, 4)), (2, 3, 4))
    (out,), stats = simplify([chain])
    assert out.op == "broadcast_to" and out.inputs[0] is b
    _check_same([x, b], expr + sg.sum(chain, axis=0), [SPECIAL, np.arange(4.0)])


def test_unary_and_reshape_move_through_scalar_broadcasts():
    # the shape autodiff gives the gradient of a mean: reshape(neg(broadcast(reshape(1/n))))
    n = sg.placeholder((), "float64", name="n")
    g = sg.broadcast_to(sg.reshape(1.0 / n, (1,)), ("batch",))
    expr = sg.reshape(-g, ("batch", 1))
    (out,), stats = simplify([expr])
    assert stats["rules"]["unary_through_broadcast"] == 1
    assert stats["rules"]["reshape_of_broadcast_scalar"] == 1
    assert out.op == "broadcast_to" and out.shape == ("batch", 1)
    assert all(n.shape in ((), (1,), (1, 1)) for n in topo_order([out]) if n is not out)
    x = sg.placeholder(("batch", 3), "float64", name="x")
    want = sg.function([x, n], expr * x, optimize=0)(np.ones((4, 3)), 8.0)
    got = sg.function([x, n], expr * x, optimize=2)(np.ones((4, 3)), 8.0)
    np.testing.assert_array_equal(want, got)


def test_reduction_over_unit_axes_is_reshape():
    x = sg.placeholder((3, 1, 4), "float64")
    (out,), stats = simplify([sg.sum(x, axis=1)])
    assert out.op == "reshape" and stats["rules"] == {"sum_unit_axes": 1}


def test_transpose_chain_composes_permutations():
    x = sg.placeholder((2, 3, 4), "float64")
    expr = sg.transpose(sg.transpose(x, (1, 0, 2)), (2, 0, 1))
    (out,), stats = simplify([expr])
    assert out.op == "transpose" and out.inputs[0] is x
    xs = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(sg.function([x], expr, optimize=2)(xs),
                                  np.transpose(np.transpose(xs, (1, 0, 2)), (2, 0, 1)))
