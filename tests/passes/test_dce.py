"""DCE: operations that compute nothing are removed; results are bit-identical."""

import numpy as np

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.ops import apply
from symgraph.passes.dce import dce


def test_identity_ops_are_removed():
    x = sg.placeholder((2, 3), "float64", name="x")
    chain = apply("reshape", (x,), shape=(2, 3))
    chain = apply("transpose", (chain,), perm=(0, 1))
    chain = apply("broadcast_to", (chain,), shape=(2, 3))
    chain = apply("cast", (chain,), dtype="float64")
    chain = apply("sum", (chain,), axes=(), keepdims=False)
    chain = apply("slice", (chain,), index=((0, None, 1), (0, 3, 1)))
    chain = apply("concatenate", (chain,), axis=0)
    (out,), stats = dce([sg.tanh(chain)])
    assert stats["identities_removed"] == 7
    assert out.op == "tanh" and out.inputs[0] is x


def test_non_identities_are_kept():
    x = sg.placeholder((2, 3), "float64")
    keep = [apply("slice", (x,), index=((0, 1, 1), (0, 3, 1))), sg.transpose(x),
            sg.sum(x, axis=1, keepdims=True), apply("cast", (x,), dtype="float32"),
            sg.broadcast_to(x, (4, 2, 3))]
    outs, stats = dce(keep)
    assert stats["identities_removed"] == 0
    assert all(a is b for a, b in zip(outs, keep))


def test_where_with_equal_branches_and_unit_keepdims_reduction():
    x = sg.placeholder((3, 1), "float64")
    c = sg.placeholder((3, 4), "bool")
    w = sg.where(c, x, x)  # shape (3, 4): the branch broadcast, the condition dropped
    s = sg.sum(x, axis=1, keepdims=True)
    outs, stats = dce([w, s])
    assert stats["identities_removed"] == 2
    assert outs[0].op == "broadcast_to" and outs[0].inputs[0] is x
    assert outs[1] is x
    assert not any(n.op == "placeholder" and n is c for n in topo_order(outs))
    xs = np.arange(3.0).reshape(3, 1)
    cs = np.eye(3, 4, dtype=bool)
    f0 = sg.function([x, c], [w, s], optimize=0)(xs, cs)
    f1 = sg.function([x, c], [w, s], optimize=1)(xs, cs)
    for a, b in zip(f0, f1):
        np.testing.assert_array_equal(a, b)
