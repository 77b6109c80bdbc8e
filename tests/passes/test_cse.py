"""CSE: value numbering, commutative canonicalization, leaf identity, random ops, MLP merges."""

import numpy as np

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.ops import apply
from symgraph.passes.cse import cse


def _ops(outputs):
    return [n.op for n in topo_order(outputs)]


def test_commutative_operands_merge_and_count():
    x = sg.placeholder((3,), "float64", name="x")
    y = sg.placeholder((3,), "float64", name="y")
    a, b = x * y, y * x
    c, d = sg.maximum(x, y), sg.maximum(y, x)
    (out,), stats = cse([a + b + c + d])
    assert stats["merges"] == 2
    assert stats["merged_ops"] == {"mul": 1, "maximum": 1}
    assert _ops([out]).count("mul") == 1 and _ops([out]).count("maximum") == 1


def test_non_commutative_operands_do_not_merge():
    x = sg.placeholder((3,), "float64")
    y = sg.placeholder((3,), "float64")
    _, stats = cse([(x - y) + (y - x) + (x / y) + (y / x)])
    assert stats["merges"] == 0


def test_chains_merge_transitively():
    x = sg.placeholder((2, 3), "float64")
    one = sg.tanh(sg.exp(x) + 1.0).sum(axis=1)
    two = sg.tanh(sg.exp(x) + 1.0).sum(axis=1)
    three = sg.tanh(sg.exp(x) + 1.0).sum(axis=0)  # different attrs: only the prefix merges
    outs, stats = cse([one, two, three])
    assert outs[0] is outs[1] and outs[2] is not outs[0]
    assert stats["merges"] == 5 + 4  # exp, const, add, tanh, sum; then exp, const, add, tanh
    assert len(topo_order(outs)) == 7


def test_placeholders_and_variables_are_never_merged():
    x1 = sg.placeholder((2,), "float64", name="a")
    x2 = sg.placeholder((2,), "float64", name="a")
    v1 = sg.variable(np.ones(2), name="v", dtype="float64")
    v2 = sg.variable(np.ones(2), name="v", dtype="float64")
    outs, stats = cse([x1 + v1, x2 + v2])
    assert stats["merges"] == 0
    assert outs[0] is not outs[1]


def test_constants_merge_by_value_dtype_and_shape():
    x = sg.placeholder((2,), "float32")
    a = x * sg.constant(np.float32(2.0)) + x * sg.constant(np.float32(2.0))
    outs, stats = cse([a, sg.constant(np.array(2.0)), sg.constant(np.float32([2.0, 2.0]))])
    assert stats["merged_ops"] == {"constant": 1, "mul": 1}
    assert len({n.id for n in topo_order(outs) if n.op == "constant"}) == 3


def test_random_merges_only_with_equal_seed_and_step():
    step = sg.constant(np.int64(3))
    other = sg.constant(np.int64(4))
    a = sg.random.uniform((4,), seed=1, step=step)
    b = sg.random.uniform((4,), seed=1, step=sg.constant(np.int64(3)))  # same step by value
    c = sg.random.uniform((4,), seed=2, step=step)
    d = sg.random.uniform((4,), seed=1, step=other)
    outs, stats = cse([a, b, c, d])
    assert outs[0] is outs[1]
    assert len({o.id for o in outs}) == 3
    assert stats["merged_ops"] == {"constant": 1, "random_uniform": 1}


def test_gradient_reuses_forward_values():
    # tanh's vjp builds 1 - t*t; the forward already has t*t, so the backward reuses it.
    x = sg.placeholder((3,), "float64")
    t = sg.tanh(x)
    loss = sg.sum(t * t)
    g = sg.grad(loss, x)
    _, stats = cse([loss, g])
    assert stats["reused_forward"] >= 1
    assert stats["merged_ops"].get("mul", 0) >= 1


def _mlp():
    rng = np.random.default_rng(0)
    x = sg.placeholder(("batch", 5), "float64", name="x")
    y = sg.placeholder(("batch",), "int64", name="y")
    params = [sg.variable(rng.normal(size=(5, 6)), name="W1", dtype="float64"),
              sg.variable(np.zeros(6), name="b1", dtype="float64"),
              sg.variable(rng.normal(size=(6, 3)), name="W2", dtype="float64"),
              sg.variable(np.zeros(3), name="b2", dtype="float64")]
    h = sg.relu(x @ params[0] + params[1])
    loss = sg.mean(sg.sparse_softmax_cross_entropy(h @ params[2] + params[3], y))
    return x, y, params, loss


def test_mlp_gradient_report_shows_merges():
    x, y, params, loss = _mlp()
    joint = sg.grad(loss, params)
    separate = [sg.grad(loss, p) for p in params]  # the Theano idiom: one grad call per weight
    opt_joint, rep_joint = sg.optimize([loss] + joint, level=1)
    opt_sep, rep_sep = sg.optimize([loss] + separate, level=1)
    first = rep_sep.pass_named("cse")[0]
    # each extra grad call rebuilt the backward chain; CSE merges it back into one
    assert first.stats["merges"] >= 30
    assert {"matmul", "mul", "where"} <= set(first.stats["merged_ops"])
    assert len(topo_order(opt_sep)) == len(topo_order(opt_joint))
    assert rep_joint.total("merges") >= 2  # relu's and the gradient's zeros/ones constants
    assert "merges=" in str(rep_sep)
    rng = np.random.default_rng(1)
    xs, ys = rng.normal(size=(4, 5)), rng.integers(0, 3, 4)
    want = sg.function([x, y], [loss] + separate, optimize=0)(xs, ys)
    got = sg.function([x, y], [loss] + separate, optimize=1)(xs, ys)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)


def test_cse_is_iterative_on_deep_graphs():
    x = sg.placeholder((2,), "float64")
    a, b = x, x
    for _ in range(5000):  # far deeper than Python's recursion limit
        a = sg.tanh(a) + 1.0
        b = sg.tanh(b) + 1.0
    outs, stats = cse([a, b])
    assert outs[0] is outs[1]
    # b's tanh, add and 1.0 per level merge into a's; a's own 1.0 constants merge by value
    assert stats["merges"] == 3 * 5000 + 4999


def test_rebuilt_node_keeps_type_and_trace():
    x = sg.placeholder((2,), "float64")
    n = apply("add", (x * 2.0, x * 2.0))
    (out,), _ = cse([n])
    assert out.type == n.type and out.trace == n.trace and out.inputs[0] is out.inputs[1]


def test_unhashable_attrs_are_kept_not_crashed_on():
    x = sg.placeholder((2, 3), "float64")
    a = apply("transpose", (x,), perm=[1, 0])  # a list attr, as a careless caller might pass
    b = apply("transpose", (x,), perm=[1, 0])
    outs, stats = cse([a, b])
    assert outs[0] is a and outs[1] is b and stats["merges"] == 0
