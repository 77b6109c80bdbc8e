"""Inputs and arguments that used to give wrong answers or lose state: arrays in another byte
order, integer inputs that do not fit, out-of-range axes, dropout of an integer tensor, and
model calls that failed halfway."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Sequential

XB = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_big_endian_inputs_variables_and_constants_read_their_values(backend):
    # the numba backend read the raw bytes of a '>f4' array as float32 (9.7e-40 for 84)
    x = sg.placeholder(("batch", 4), name="x")
    w = sg.variable(np.ones((4, 3), ">f4"), name="w")
    c = sg.constant(np.full((4, 3), 2.0, ">f4"))
    f = sg.function([x], [sg.sum(x @ w), sg.sum(x @ c)], backend=backend)
    want = XB.sum() * 3
    for feed in (XB, XB.astype(">f4")):
        got = f(feed)
        assert got[0] == pytest.approx(want) and got[1] == pytest.approx(2 * want)
    v = sg.variable(np.ones((4, 1), np.float32), name="v")
    loss = sg.mean((x @ v) ** 2)
    step = sg.function([x], loss, updates={v: v - 0.01 * sg.grad(loss, v)}, backend=backend)
    step(XB.astype(">f4"))
    ones = np.ones((4, 1))
    expected = ones - 0.01 * 2 * XB.T @ (XB @ ones) / 2
    np.testing.assert_allclose(v.value, expected, rtol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_integer_inputs_that_do_not_fit_are_refused_and_change_nothing(backend):
    x = sg.placeholder(("batch", 4), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="labels")
    w = sg.variable(np.ones((4, 3), np.float32), name="w")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(x @ w, y))
    step = sg.function([x, y], loss, updates={w: w - 0.1 * sg.grad(loss, w)}, backend=backend)
    with pytest.raises(SymgraphError, match="labels.*int32 cannot hold"):
        step(XB, np.array([2**32 + 1, 2], np.int64))  # was wrapped to 1 silently
    np.testing.assert_array_equal(w.value, 1.0)
    step(XB, np.array([1, 2], np.int64))  # values that fit are still cast
    assert not np.allclose(w.value, 1.0)
    with pytest.raises(SymgraphError, match="'x' is not an array"):
        step([[1.0, 2.0], [1.0]], np.array([1, 2]))


def test_out_of_range_axes_are_refused_as_numpy_does():
    m = sg.placeholder((3, 5), name="m")
    for build in (lambda: sg.concatenate([m, m], axis=2),    # joined along axis 0
                  lambda: sg.concatenate([m, m], axis=-3),   # joined along axis 1
                  lambda: sg.transpose(m, (2, 1)),           # the identity
                  lambda: sg.transpose(m, (0, 0)),
                  lambda: sg.expand_dims(m, 5),              # shape (3, 5, 1)
                  lambda: sg.concatenate([]),
                  lambda: sg.concatenate([sg.constant(1.0), sg.constant(2.0)])):
        with pytest.raises(SymgraphError):
            build()
    assert sg.concatenate([m, m], axis=-1).shape == (3, 10)
    assert sg.expand_dims(m, -1).shape == (3, 5, 1)
    assert sg.transpose(m, (-1, 0)).shape == (5, 3)


def test_dropout_and_uniform_draws_are_float_only():
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    with pytest.raises(SymgraphError, match="float tensor"):
        sg.dropout(y, 0.5, seed=1)  # drew [0, 1) as ints: every element dropped
    with pytest.raises(SymgraphError, match="float32 or float64"):
        sg.random.uniform((3,), seed=1, dtype="int32")
    with pytest.raises(SymgraphError, match="negative dim"):
        sg.random.uniform((-1,), seed=1)


def test_failing_model_calls_change_no_weights():
    model = Sequential([Dense(2, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match="0 rows"):  # the step ran: NaN weights, then /0
        model.train_on_batch(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32))
    new = [w + 1 for w in before[:-1]] + [np.array(["a", "b"])]
    with pytest.raises(SymgraphError, match="dtype <U1; nothing was set"):
        model.set_weights(new)  # the first weights were assigned before the last failed
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
