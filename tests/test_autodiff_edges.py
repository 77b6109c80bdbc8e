"""grad and jvp at their edges, against hand derivatives: targets that are constants or inner
nodes written twice (the stabilizer must not merge or rewrite around them), integer primals,
argmax under stop_gradient, nested primals (jvp must stay the adjoint of grad), a ** b at
0 ** 0 to any order, and bad arguments."""

import numpy as np
import pytest

import symgraph as sg

X = np.array([0.1, 0.2, 0.3])


def _x():
    return sg.placeholder((3,), "float64", name="x")


def _grad_and_jvp(cost, target, tangent, x):
    return sg.function([x], [sg.grad(cost, target), sg.jvp(cost, target, tangent)])(X)


def test_a_constant_target_keeps_the_path_a_stable_rewrite_would_read_around():
    x = _x()
    c = sg.constant(1.0, dtype="float64", name="c")
    cost = sg.sum(c * x) + sg.sum(sg.log(c + x))  # log(1 + x) -> log1p(x) drops c's path
    want = X.sum() + np.sum(1 / (1 + X))
    g, t = _grad_and_jvp(cost, c, 1.0, x)
    assert g == pytest.approx(want) and t == pytest.approx(want)


def test_an_equal_constant_written_elsewhere_is_not_merged_into_the_target():
    x = _x()
    c2 = sg.constant(2.0, dtype="float64", name="c2")
    cost = sg.sum(c2 * x) + sg.sum(sg.log(1.0 + 2.0 * x))  # this 2.0 is not c2
    g, t = _grad_and_jvp(cost, c2, 1.0, x)
    assert g == pytest.approx(X.sum()) and t == pytest.approx(X.sum())


def test_an_inner_target_written_twice_is_not_merged_with_its_copy():
    x = _x()
    a, b = sg.tanh(x), sg.tanh(x)  # one expression, two nodes: only a is the target
    cost = sg.sum(a * 2.0) + sg.sum(sg.log(1.0 + b))
    g, t = _grad_and_jvp(cost, a, np.ones(3), x)
    np.testing.assert_allclose(g, 2.0)
    assert t == pytest.approx(6.0)


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_jvp_refuses_integer_and_bool_primals_as_grad_does(dtype):
    x, i = _x(), sg.placeholder((3,), dtype, name="i")
    with pytest.raises(sg.SymgraphError, match="primals must be float"):
        sg.jvp(x * sg.cast(i, "float64"), i, np.ones(3, dtype))


def test_jvp_through_argmax_under_stop_gradient_as_grad():
    x = _x()
    out = sg.sum(sg.stop_gradient(sg.cast(sg.argmax(x), "float64")) * x)  # argmax(X) = 2
    g, t = sg.function([x], [sg.grad(out, x), sg.jvp(out, x, np.array([1.0, 2.0, 3.0]))])(X)
    np.testing.assert_allclose(g, 2.0)
    assert t == pytest.approx(12.0)


def test_jvp_with_nested_primals_is_the_adjoint_of_grad():
    x = _x()
    tx, th = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.7, -1.0])
    h = x * x
    cost = sg.sum(sg.tanh(h)) + sg.sum(h * x)
    gx, gh, forward = sg.function([x], sg.grad(cost, [x, h]) + [sg.jvp(cost, [x, h], [tx, th])])(X)
    dh = 2 * X * tx + th  # x moves h, and th moves it further
    by_hand = np.sum((1 - np.tanh(X * X) ** 2 + X) * dh + X * X * tx)
    assert forward == pytest.approx(by_hand, rel=1e-12)
    assert gx @ tx + gh @ th == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("p, n", [(1.0, 2), (2.0, 3), (3.0, 4)])
def test_derivatives_of_powers_at_zero_are_finite_to_every_order(backend, p, n):
    x = sg.placeholder((2,), "float64", name="x")
    at = np.array([0.0, 0.5])
    g, t = sg.sum(x ** p), sg.sum(x ** p)
    for _ in range(n):
        g = sg.grad(sg.sum(g), x)
        t = sg.jvp(t, x, np.ones(2))  # along (1, 1): the sum of the n-th derivatives
    nth, along = sg.function([x], [g, t], backend=backend)(at)
    falling = np.prod(np.arange(p, p - n, -1))  # p (p-1) ... (p-n+1): 0 once n > p
    want = np.array([0.0, falling * 0.5 ** (p - n)])
    np.testing.assert_allclose(nth, want, atol=1e-12)
    assert along == pytest.approx(want.sum(), abs=1e-12)


def test_the_base_derivative_of_zero_to_the_zero_is_zero():
    a, b = (sg.placeholder((2,), "float64", name=n) for n in "ab")
    g = sg.function([a, b], sg.grad(sg.sum(a ** b), a))(np.array([0.0, 2.0]), np.zeros(2))
    np.testing.assert_array_equal(g, [0.0, 0.0])


@pytest.mark.parametrize("call, match", [
    (lambda x: sg.grad(sg.sum(x), None), "wrt must be a node"),
    (lambda x: sg.jvp(x * 2.0, x, np.array(["a", "b", "c"])), r"tangents\[0\]"),
    (lambda x: sg.jvp(x * 2.0, x, np.array([1j, 1, 1])), r"tangents\[0\]"),
])
def test_bad_grad_and_jvp_arguments_are_refused(call, match):
    with pytest.raises(sg.SymgraphError, match=match):
        call(_x())
