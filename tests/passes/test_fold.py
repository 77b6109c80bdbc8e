"""Constant folding: all-constant subgraphs become constants; symbolic and random ones stay."""

import numpy as np

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.passes.fold import fold


def test_folds_constant_chain_with_numpy_reference():
    a = sg.constant(np.array([1.0, 4.0, 9.0]))
    expr = sg.sqrt(a) * 2.0 + sg.exp(sg.constant(np.array(0.0)))
    (out,), stats = fold([expr])
    assert out.op == "constant"
    np.testing.assert_array_equal(out.attr["value"].array, np.sqrt([1.0, 4.0, 9.0]) * 2.0 + 1.0)
    assert stats["folded"] == 4 and stats["folded_ops"]["sqrt"] == 1
    assert out.type == expr.type


def test_partial_fold_keeps_placeholder_paths():
    x = sg.placeholder((3,), "float64")
    k = sg.constant(np.array([1.0, 2.0, 3.0]))
    expr = x * (k * 2.0) + sg.tanh(x)
    (out,), stats = fold([expr])
    assert stats["folded"] == 1
    consts = [n for n in topo_order([out]) if n.op == "constant"]
    assert len(consts) == 1
    np.testing.assert_array_equal(consts[0].attr["value"].array, [2.0, 4.0, 6.0])


def test_inf_and_nan_fold_as_they_compute():
    expr = sg.log(sg.constant(np.array([0.0, -1.0, 1.0])))
    (out,), _ = fold([expr])
    got = out.attr["value"].array
    assert got[0] == -np.inf and np.isnan(got[1]) and got[2] == 0.0


def test_symbolic_dims_random_and_big_broadcasts_are_not_folded():
    x = sg.placeholder(("batch", 3), "float32")
    size = sg.size_of(x, 0)  # dim_size: known only at call time
    zeros = sg.broadcast_to(sg.constant(np.float32(0.0)), (512, 512))
    draw = sg.random.uniform((3,), seed=1, step=sg.constant(np.int64(0)))
    outs, stats = fold([size * 2.0, zeros, draw])
    assert stats["folded"] == 0
    assert [o.op for o in outs] == ["mul", "broadcast_to", "random_uniform"]


def test_small_broadcast_and_integer_ops_fold():
    b = sg.broadcast_to(sg.constant(np.int32(3)), (2, 2))
    (out,), stats = fold([b * b])
    assert out.op == "constant" and out.dtype == "int32"
    np.testing.assert_array_equal(out.attr["value"].array, np.full((2, 2), 9, np.int32))
    assert stats["folded"] == 2


def test_folded_function_matches_unfolded():
    x = sg.placeholder((2, 3), "float64")
    k = sg.constant(np.arange(6.0).reshape(2, 3))
    expr = x * sg.tanh(k).T.T + sg.sum(k, axis=0)
    xs = np.random.default_rng(0).normal(size=(2, 3))
    want = sg.function([x], expr, optimize=0)(xs)
    got = sg.function([x], expr, optimize=1)(xs)
    np.testing.assert_array_equal(want, got)


def test_failing_constant_op_is_left_for_run_time():
    rows = sg.constant(np.arange(6.0).reshape(3, 2))
    bad = sg.take(rows, sg.constant(np.array([0, 7])))  # index 7 is out of range
    (out,), stats = fold([bad])
    assert out is bad and stats["folded"] == 0
    with np.testing.assert_raises(sg.SymgraphError):
        sg.function([], bad, optimize=2)()
