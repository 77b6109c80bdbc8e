"""Each optimizer's first steps against its Keras formula, computed independently in NumPy, on
the NumPy and the Numba backends (which writes the updates in place, symgraph/inplace.py)."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Sequential, optimizers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4)).astype(np.float32)
Y = RNG.normal(size=(6, 3)).astype(np.float32)
STEPS = 3


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    return request.param


def _model(opt, backend="numpy"):
    model = Sequential([Dense(3, input_dim=4, kernel_initializer="glorot_uniform")])
    model.compile(optimizer=opt, loss="mse", backend=backend)
    return model


def _grads(w, b):
    """d/d(w, b) of mean over samples and units of (xw + b - y)^2, in float64."""
    r = X.astype(np.float64) @ w + b - Y
    scale = 2.0 / r.size
    return scale * X.T.astype(np.float64) @ r, scale * r.sum(0)


def _run_reference(update, model):
    w, b = (a.astype(np.float64) for a in model.get_weights())
    state = {}
    for t in range(1, STEPS + 1):
        gw, gb = _grads(w, b)
        w = update(w, gw, state.setdefault("w", {}), t)
        b = update(b, gb, state.setdefault("b", {}), t)
    return w, b


def _check(opt, update, clip=None, backend="numpy"):
    model = _model(opt, backend)
    ref = update if clip is None else (lambda p, g, s, t: update(p, clip(g), s, t))
    w_ref, b_ref = _run_reference(ref, model)
    for _ in range(STEPS):
        model.train_on_batch(X, Y)
    w, b = model.get_weights()
    np.testing.assert_allclose(w, w_ref, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(b, b_ref, rtol=2e-4, atol=2e-6)
    assert int(opt.iterations.value) == STEPS


def test_sgd_plain(backend):
    _check(optimizers.SGD(0.1), lambda p, g, s, t: p - 0.1 * g, backend=backend)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(nesterov, backend):
    def update(p, g, s, t):
        m = 0.9 * s.get("m", 0.0) - 0.1 * g
        s["m"] = m
        return p + 0.9 * m - 0.1 * g if nesterov else p + m

    _check(optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov), update, backend=backend)


def test_rmsprop(backend):
    def update(p, g, s, t):
        v = 0.9 * s.get("v", 0.0) + 0.1 * g * g
        s["v"] = v
        return p - 0.01 * g / np.sqrt(v + 1e-7)

    _check(optimizers.RMSprop(0.01), update, backend=backend)


def test_rmsprop_centered_momentum(backend):
    def update(p, g, s, t):
        v = 0.9 * s.get("v", 0.0) + 0.1 * g * g
        a = 0.9 * s.get("a", 0.0) + 0.1 * g
        inc = 0.01 * g / np.sqrt(v - a * a + 1e-7)
        m = 0.5 * s.get("m", 0.0) + inc
        s.update(v=v, a=a, m=m)
        return p - m

    _check(optimizers.RMSprop(0.01, momentum=0.5, centered=True), update, backend=backend)


def test_adagrad(backend):
    def update(p, g, s, t):
        a = s.get("a", 0.1) + g * g
        s["a"] = a
        return p - 0.05 * g / np.sqrt(a + 1e-7)

    _check(optimizers.Adagrad(0.05), update, backend=backend)


def test_adadelta(backend):
    def update(p, g, s, t):
        eg = 0.95 * s.get("eg", 0.0) + 0.05 * g * g
        d = -np.sqrt(s.get("ed", 0.0) + 1e-7) / np.sqrt(eg + 1e-7) * g
        s["ed"] = 0.95 * s.get("ed", 0.0) + 0.05 * d * d
        s["eg"] = eg
        return p + 1.0 * d

    _check(optimizers.Adadelta(1.0), update, backend=backend)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam(amsgrad, backend):
    def update(p, g, s, t):
        m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * 0.1
        v = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * 0.001
        s.update(m=m, v=v)
        if amsgrad:
            v = s["vhat"] = np.maximum(s.get("vhat", 0.0), v)
        alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        return p - alpha * m / (np.sqrt(v) + 1e-7)

    _check(optimizers.Adam(0.01, amsgrad=amsgrad), update, backend=backend)


def test_clipvalue(backend):
    _check(optimizers.SGD(0.1, clipvalue=0.05), lambda p, g, s, t: p - 0.1 * g,
           clip=lambda g: np.clip(g, -0.05, 0.05), backend=backend)


def test_clipnorm_per_variable(backend):
    def clip(g):
        norm = np.sqrt((g * g).sum())
        return g * 0.1 / max(norm, 0.1)

    _check(optimizers.SGD(0.1, clipnorm=0.1), lambda p, g, s, t: p - 0.1 * g, clip=clip, backend=backend)


def test_keras_defaults():
    assert optimizers.SGD().learning_rate == pytest.approx(0.01)
    adam = optimizers.get("adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == pytest.approx(
        (0.001, 0.9, 0.999, 1e-7))
    rms = optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.epsilon) == pytest.approx((0.001, 0.9, 1e-7))
    assert optimizers.get("adagrad").initial_accumulator_value == pytest.approx(0.1)
    assert optimizers.get("adadelta").rho == pytest.approx(0.95)


def test_learning_rate_change_needs_no_recompile():
    opt = optimizers.SGD(0.1)
    model = _model(opt)
    model.train_on_batch(X, Y)
    n_functions = len(model._functions)
    opt.learning_rate = 0.0
    before = model.get_weights()
    model.train_on_batch(X, Y)
    assert len(model._functions) == n_functions
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_optimizer_arguments():
    with pytest.raises(SymgraphError, match="Only one of"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(SymgraphError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(SymgraphError, match="unknown optimizer"):
        optimizers.get("adamax2")
