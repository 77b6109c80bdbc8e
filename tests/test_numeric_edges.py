"""Values and derivatives at the edges a numerics hunt found wrong: a logit of exactly 0,
logits sharing a large offset, rows of -inf/+inf in a log-sum-exp, 1/sqrt(0) in float32 on
numba, forward mode through the stabilized forms. References: float64 math and TF/Keras."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.nn import Dense, Sequential, optimizers

CONFIGS = [("numpy", 0), ("numpy", 2), ("numba", 0), ("numba", 2)]


@pytest.mark.parametrize("backend,level", CONFIGS)
def test_gradients_at_a_logit_of_zero_are_sigmoid_of_zero(backend, level):
    """softplus' = sigmoid, so 0.5 at 0; the stable forms gave 1.0 there (max(x, 0) sent the
    tie to x while d|x|/dx = sign(0) = 0 dropped the other half)."""
    x = sg.placeholder((3,), "float64", name="x")
    exprs = {"softplus": sg.softplus(x), "naive softplus": sg.log(1.0 + sg.exp(x)),
             "log1p(exp)": sg.log1p(sg.exp(x)), "log sigmoid": sg.log(sg.sigmoid(x)),
             "log(1 - sigmoid)": sg.log(1.0 - sg.sigmoid(x)),
             "bce on logits, t=1": sg.sigmoid_cross_entropy(x, 1.0)}
    want = {"softplus": 0.5, "naive softplus": 0.5, "log1p(exp)": 0.5, "log sigmoid": 0.5,
            "log(1 - sigmoid)": -0.5, "bce on logits, t=1": -0.5}
    grads = [sg.grad(sg.sum(e), [x])[0] for e in exprs.values()]
    got = sg.function([x], grads, backend=backend, optimize=level)(np.array([0.0, -0.0, 0.0]))
    for name, g in zip(exprs, got):
        np.testing.assert_allclose(g, want[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_logistic_regression_from_zero_weights_steps_the_way_keras_does(backend):
    model = Sequential([Dense(1, input_dim=2, activation="sigmoid",
                              kernel_initializer="zeros")])
    model.compile(loss="binary_crossentropy", optimizer=optimizers.SGD(1.0), backend=backend)
    model.train_on_batch(np.ones((4, 2), np.float32), np.array([1, 1, 1, 0], np.float32))
    # Keras/TF: d loss / d bias = mean(sigmoid(0) - y) = 0.5 - 0.75, so the bias moves to +0.25
    np.testing.assert_allclose(model.layers[0].weights[1].value, [0.25], rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_log_softmax_keeps_its_digits_at_large_shared_offsets(backend):
    """x - logsumexp(x) cancelled two large numbers: 110 float32 ulps off at logits ~1000."""
    rows = np.array([[1000, 1001, 999], [-1e4, -1e4, -1e4], [0.5, -3, 2]], np.float32)
    x = sg.placeholder((3, 3), "float32", name="x")
    y = sg.placeholder((3,), "int64", name="y")
    got, ce = sg.function([x, y], [sg.log_softmax(x), sg.sparse_softmax_cross_entropy(x, y)],
                          backend=backend)(rows, np.array([0, 1, 2]))
    r64 = rows.astype(np.float64)
    want = r64 - r64.max(1, keepdims=True)
    want -= np.log(np.exp(want).sum(1, keepdims=True))
    # within 2 float32 ulps of the row's largest value (the old form: 110 ulps at ~1000)
    ulp = np.spacing(np.abs(want).max(1, keepdims=True).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 2
    np.testing.assert_allclose(ce, -want[[0, 1, 2], [0, 1, 2]], rtol=3e-7)


@pytest.mark.parametrize("backend,level", CONFIGS)
def test_log_sum_exp_of_infinite_rows_is_infinite_not_nan(backend, level):
    """TF and JAX shift by 0 where the max is not finite; a fully masked row is -inf."""
    rows = np.array([[-np.inf] * 3, [np.inf, 0, 1], [0, 1, 0.5]])
    x = sg.placeholder((3, 3), "float64", name="x")
    got = sg.function([x], [sg.logsumexp(x, 1), sg.log(sg.sum(sg.exp(x), 1))],
                      backend=backend, optimize=level)(rows)
    with np.errstate(divide="ignore"):
        want = np.log(np.exp(rows).sum(1))
    for g in got:
        np.testing.assert_allclose(g, want, rtol=1e-14)


def test_numba_float32_division_keeps_inf_and_subnormals():
    """No `arcp`: 1/sqrt(x) was rsqrt with a Newton step (NaN at 0 and inf) and x/s became
    x*(1/s), inf for a subnormal s."""
    x = sg.placeholder((4,), "float32", name="x")
    y = sg.placeholder((2,), "float32", name="y")
    s = sg.placeholder((), "float32", name="s")
    outs = [1.0 / sg.sqrt(x), sg.grad(sg.sum(sg.sqrt(x)), [x])[0], y / s]
    feeds = (np.array([0, np.inf, 4, 1e-30], np.float32), np.array([1e-39, 2e-39], np.float32),
             np.float32(1e-40))
    want = sg.function([x, y, s], outs, backend="numpy")(*feeds)
    got = sg.function([x, y, s], outs, backend="numba")(*feeds)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert np.isinf(got[0][0]) and got[0][1] == 0 and np.isfinite(got[2]).all()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_forward_mode_takes_the_stable_forms_as_reverse_mode_does(backend):
    x = sg.placeholder((3,), "float64", name="x")
    t = np.array([0.3, -1.0, 2.0])
    xs = np.array([-1000.0, 3.0, 1200.0])
    exprs = [sg.sum(sg.log(sg.softmax(x))), sg.sum(sg.log(sg.sigmoid(x))),
             sg.sum(sg.log(1.0 + sg.exp(x)))]
    tangents = [sg.jvp(e, [x], [t]) for e in exprs]
    grads = [sg.grad(e, [x])[0] for e in exprs]
    fn = sg.function([x], tangents + grads, backend=backend)
    out = fn(xs)
    for tan, g in zip(out[:3], out[3:]):
        assert np.isfinite(tan) and tan == pytest.approx(float(g @ t), rel=1e-12)
    a = sg.placeholder((2,), "float64", name="a")
    b = sg.placeholder((2,), "float64", name="b")
    along_b = sg.jvp(sg.sum(a ** b), [b], [np.ones(2)])  # a**b log(a), 0 at a = 0
    got = sg.function([a, b], along_b, backend=backend)(np.array([0.0, 2.0]), np.full(2, 2.0))
    assert got == pytest.approx(4 * np.log(2), rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_derivatives_along_an_intermediate_node_keep_every_path(backend):
    """d/ds of sum(log(1 - s)) + sum(s), s = sigmoid(x): the stabilizer's -softplus(x) reads
    around s, which dropped the log's path (the gradient was 1, only the sum's). A target
    that is not a leaf keeps the cost as written when a rewrite would bypass it."""
    x = sg.placeholder((3,), "float64", name="x")
    s = sg.sigmoid(x)
    cost = sg.sum(sg.log(1.0 - s)) + sg.sum(s)
    ds = sg.grad(cost, [s])[0]
    outs = [s, ds, sg.grad(sg.sum(ds), [s])[0], sg.jvp(cost, [s], [np.ones(3)])]
    sv, g, h, t = sg.function([x], outs, backend=backend)(np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_allclose(g, 1 - 1 / (1 - sv), rtol=1e-12)
    np.testing.assert_allclose(h, -1 / (1 - sv) ** 2, rtol=1e-12)
    assert t == pytest.approx(np.sum(1 - 1 / (1 - sv)), rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_softmax_written_with_two_exps_is_stabilized_for_grad(backend):
    """sg.grad matched the log-softmax pattern by node identity: exp(x) written twice did not
    match and the gradient at logits of +-1000 was NaN. Equal subexpressions merge first."""
    x = sg.placeholder((4,), "float64", name="x")
    t = np.array([0.1, 0.2, 0.3, 0.4])
    cost = -sg.sum(t * sg.log(sg.exp(x) / sg.sum(sg.exp(x), keepdims=True)))
    g = sg.function([x], sg.grad(cost, [x])[0], backend=backend)(
        np.array([1000.0, 0.0, -1000.0, 1000.0]))
    np.testing.assert_allclose(g, [0.4, -0.2, -0.3, 0.1], atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_mixed_second_derivative_of_pow_is_finite_at_zero(backend):
    """d2(a**b)/da db = a**(b-1) (1 + b log a): 0 at a = 0 for b > 1 (was NaN: the guarded
    log's own derivative multiplied a zero cotangent by 1/0)."""
    a = sg.placeholder((3,), "float64", name="a")
    b = sg.placeholder((3,), "float64", name="b")
    gb = sg.grad(sg.sum(a ** b), [b])[0]
    mixed = sg.grad(sg.sum(gb), [a])[0]
    av, bv = np.array([0.0, 0.5, 2.0]), np.array([2.0, 3.0, 2.5])
    got = sg.function([a, b], mixed, backend=backend)(av, bv)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(av > 0, av ** (bv - 1) * (1 + bv * np.log(av)), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("path", ["native", "numba"])
def test_numba_kernels_keep_nan_and_inf_through_cancellation(path, monkeypatch):
    # fast-math reassoc on whole kernels let LLVM fold v - v to 0 for a NaN or inf v: the
    # variance of one sample holding NaN came out 0 (and -1 after a later shift)
    monkeypatch.setenv("SYMGRAPH_NATIVE", path)
    x = sg.placeholder(("n", 3), "float64", name="x")
    a = x * 2.0 - 1.0
    outs = [a - a, sg.var(sg.reshape(x, ("n", 3, 1)), 2), sg.sum(x * x, axis=1)]
    feed = np.array([[np.nan, np.inf, 1.0]])
    got = sg.function([x], outs, backend="numba")(feed)
    want = sg.function([x], outs, backend="numpy")(feed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
