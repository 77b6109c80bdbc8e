"""sg.function: input validation with clear errors, output structure, atomic updates."""

import numpy as np
import pytest

import symgraph as sg


def make_step():
    x = sg.placeholder(("batch", 3), name="features")
    y = sg.placeholder(("batch",), "int32", name="labels")
    W = sg.variable(np.zeros((3, 2), np.float32), name="W")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(x @ W, y))
    step = sg.function([x, y], {"loss": loss}, updates={W: W - 0.5 * sg.grad(loss, W)})
    return step, W


def test_outputs_come_back_in_the_structure_given():
    x = sg.placeholder((2,), name="x")
    f = sg.function([x], {"a": x * 2.0, "b": [x, x + 1.0]}.get("b"))
    assert isinstance(f(np.ones(2)), list)
    g = sg.function([x], (x, x * 3.0))
    assert isinstance(g(np.ones(2)), tuple)
    h = sg.function([x], {"double": x * 2.0})
    np.testing.assert_array_equal(h(np.ones(2))["double"], [2, 2])
    single = sg.function([x], x * 2.0)
    assert isinstance(single(np.ones(2)), np.ndarray)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_nested_outputs_and_one_node_twice(backend):
    """[loss, sg.grad(...)] comes back nested as given (it raised a confusing shape error);
    a node returned twice comes back as two arrays (numpy handed out one array twice)."""
    x = sg.placeholder((2, 3), name="x")
    y = sg.placeholder((2, 3), name="y")
    loss = sg.sum(sg.maximum(x, y))
    f = sg.function([x, y], [loss, sg.grad(loss, [x, y]), {"a": (x * 2.0, [loss])}],
                    backend=backend)
    out = f(np.ones((2, 3)), np.zeros((2, 3)))
    assert isinstance(out[1], list) and isinstance(out[2]["a"], tuple)
    np.testing.assert_array_equal(out[1][0], np.ones((2, 3)))
    np.testing.assert_array_equal(out[1][1], np.zeros((2, 3)))
    np.testing.assert_array_equal(out[2]["a"][0], 2 * np.ones((2, 3)))
    assert out[0] == out[2]["a"][1][0] == 6
    twice = sg.function([x], {"p": x * 2.0, "q": x * 2.0}, backend=backend)(np.ones((2, 3)))
    twice["p"][0, 0] = 5
    assert twice["q"][0, 0] == 2
    with pytest.raises(sg.SymgraphError, match="outputs must be nodes"):
        sg.function([x], "x")


def test_updates_apply_after_the_call_and_a_new_batch_size_works():
    step, W = make_step()
    rng = np.random.default_rng(0)
    before = W.value
    out = step(rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1]))
    assert np.isclose(out["loss"], np.log(2))  # zero weights: uniform prediction
    assert not np.array_equal(W.value, before)
    step(rng.standard_normal((7, 3)), np.zeros(7, np.int32))  # another batch size


def test_wrong_shape_names_the_placeholder_shapes_and_user_line():
    step, W = make_step()
    with pytest.raises(sg.SymgraphError) as info:
        step(np.zeros((5, 4)), np.zeros(5, np.int32))
    msg = str(info.value)
    assert "features" in msg and "(5, 4)" in msg and "('batch', 3)" in msg
    assert "test_runtime.py" in msg and 'sg.placeholder(("batch", 3), name="features")' in msg


def test_symbolic_dim_bound_twice_is_an_error_that_changes_no_state():
    step, W = make_step()
    before = W.value
    with pytest.raises(sg.SymgraphError, match="'batch' is 5 for input 'features' but 4"):
        step(np.zeros((5, 3)), np.zeros(4, np.int32))
    np.testing.assert_array_equal(W.value, before)


def test_wrong_dtype_and_rank_are_errors():
    step, _ = make_step()
    with pytest.raises(sg.SymgraphError, match="labels.*expects int32, got float64"):
        step(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(sg.SymgraphError, match="rank 2"):
        step(np.zeros(3), np.zeros(3, np.int32))
    with pytest.raises(sg.SymgraphError, match="takes 2 inputs"):
        step(np.zeros((2, 3)))


def test_a_failing_step_leaves_every_variable_unchanged():
    x = sg.placeholder((2,), name="x")
    idx = sg.placeholder((1,), "int64", name="idx")
    a = sg.variable(np.zeros(2, np.float32), name="a")
    b = sg.variable(np.zeros((3, 2), np.float32), name="b")
    f = sg.function([x, idx], x, updates={a: a + 1.0, b: b + sg.take(b, idx) * 0.0 + 1.0})
    f(np.ones(2), np.array([0]))
    with pytest.raises(sg.SymgraphError):
        f(np.ones(2), np.array([7]))  # take out of range fails after a's update was computed
    np.testing.assert_array_equal(a.value, [1, 1])
    np.testing.assert_array_equal(b.value, np.ones((3, 2)))


def test_build_time_shape_errors_name_both_shapes_and_the_line():
    x = sg.placeholder(("batch", 3), name="x")
    W = sg.variable(np.zeros((4, 2), np.float32), name="W")
    with pytest.raises(sg.SymgraphError) as info:
        x @ W  # the offending line
    msg = str(info.value)
    assert "float32[batch,3]" in msg and "float32[4,2]" in msg and "x @ W  # the offending" in msg


def test_missing_input_and_bad_update_are_errors():
    x = sg.placeholder((2,), name="x")
    y = sg.placeholder((2,), name="forgotten")
    with pytest.raises(sg.SymgraphError, match="forgotten"):
        sg.function([x], x + y)
    v = sg.variable(np.zeros(3, np.float32), name="v")
    with pytest.raises(sg.SymgraphError, match="shape"):
        sg.function([x], x, updates={v: x})


def test_check_nan_names_the_first_node_that_produced_it():
    x = sg.placeholder((2,), name="x")
    bad = sg.log(x)  # log of a negative number
    f = sg.function([x], bad * 2.0, check_nan=True)
    with pytest.raises(sg.SymgraphError, match="NaN first produced by log node") as info:
        f(np.array([1.0, -1.0], np.float32))
    assert "bad = sg.log(x)" in str(info.value)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_check_nan_names_an_input_or_variable_that_holds_it(backend):
    """A NaN fed in was blamed on the first node computing with it (a matmul)."""
    x = sg.placeholder(("n", 2), name="x")
    w = sg.variable(np.ones((2, 2), np.float32), name="w")
    f = sg.function([x], sg.sum(x @ w), updates={w: w * 2.0}, backend=backend, check_nan=True)
    bad = np.array([[1.0, np.inf]], np.float32)
    with pytest.raises(sg.SymgraphError, match=r"input 'x' holds inf .*index \(0, 1\)") as info:
        f(bad)
    assert 'sg.placeholder(("n", 2), name="x")' in str(info.value)
    np.testing.assert_array_equal(w.value, np.ones((2, 2)))  # no state changed
    w.value = np.full((2, 2), np.nan, np.float32)
    with pytest.raises(sg.SymgraphError, match="variable node 'w'.*holds NaN before the call"):
        f(np.ones((1, 2), np.float32))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_variables_outputs_and_inputs_never_share_arrays(backend):
    x = sg.placeholder(("batch", 4), name="x")
    a = sg.variable(np.zeros(4, np.float32), name="a")
    b = sg.variable(np.zeros(4, np.float32), name="b")
    m = sg.max(x, axis=0)
    f = sg.function([x], m, updates={a: m, b: m}, backend=backend)
    out = f(np.ones((2, 4), np.float32))
    out[0] = 99.0  # numpy: a, b and the output were one array
    np.testing.assert_array_equal(a.value, 1.0)
    np.testing.assert_array_equal(b.value, 1.0)
    p = sg.placeholder((4,), name="p")
    c = sg.variable(np.zeros(4, np.float32), name="c")
    g = sg.function([p], [sg.sum(c), p], updates={c: p}, backend=backend)
    buf = np.ones(4, np.float32)
    _, echoed = g(buf)
    buf[:] = 7.0  # the caller refills its batch buffer: c had adopted it
    np.testing.assert_array_equal(c.value, 1.0)
    assert echoed is not buf and echoed[0] == 1.0


def test_outputs_never_alias_variable_state():
    v = sg.variable(np.zeros(2, np.float32), name="v")
    f = sg.function([], v)
    out = f()
    out[0] = 9
    assert v.value[0] == 0


def test_updates_given_as_a_list_of_variables_get_a_clear_error():
    x = sg.placeholder((2,), name="x")
    W = sg.variable(np.ones(2, np.float32), name="W")
    with pytest.raises(sg.SymgraphError, match=r"list of \(variable, new value\) pairs; got an "
                                               "entry variable node 'W'"):
        sg.function([x], x, updates=[W])  # was "index 2 is out of range" (a node iterates)
    with pytest.raises(sg.SymgraphError, match="got variable node 'W'"):
        sg.function([x], x, updates=W)
    step = sg.function([x], x, updates=zip([W], [W * 2.0]))  # any iterable of pairs
    step(np.ones(2, np.float32))
    np.testing.assert_array_equal(W.value, 2.0)


def test_inputs_bind_by_placeholder_name_as_keywords():
    a = sg.placeholder((2,), name="a")
    b = sg.placeholder((2,), name="b")
    f = sg.function([a, b], a - b)
    one, two = np.ones(2, np.float32), np.full(2, 2.0, np.float32)
    np.testing.assert_array_equal(f(b=two, a=one), -1.0)
    np.testing.assert_array_equal(f(one, b=two), -1.0)
    with pytest.raises(sg.SymgraphError, match=r"no input has that name; its inputs are \(a, b\)"):
        f(one, c=two)
    with pytest.raises(sg.SymgraphError, match="both by position and by keyword"):
        f(one, a=two)
    with pytest.raises(sg.SymgraphError, match="missing b"):
        f(a=one)
    unnamed = sg.placeholder((2,))
    g = sg.function([unnamed, b], unnamed * b)
    with pytest.raises(sg.SymgraphError, match=r"\(unnamed: by position only\), b\)"):
        g(c=one)
    u = sg.placeholder((2,), "uint32", name="u")
    with pytest.raises(sg.SymgraphError, match="-1 is out of range for uint32"):
        u + (-1)  # was a raw OverflowError
