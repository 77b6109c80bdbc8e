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


def _model(opt, backend="numpy", dtype="float32"):
    model = Sequential([Dense(3, input_dim=4, kernel_initializer="glorot_uniform", dtype=dtype)])
    model.compile(optimizer=opt, loss="mse", backend=backend)
    return model


def _grads(w, b):
    """d/d(w, b) of mean over samples and units of (xw + b - y)^2, in float64."""
    r = X.astype(np.float64) @ w + b - Y
    scale = 2.0 / r.size
    return scale * X.T.astype(np.float64) @ r, scale * r.sum(0)


def _run_reference(update, model, steps=STEPS):
    w, b = (a.astype(np.float64) for a in model.get_weights())
    state = {}
    for t in range(1, steps + 1):
        gw, gb = _grads(w, b)
        w = update(w, gw, state.setdefault("w", {}), t)
        b = update(b, gb, state.setdefault("b", {}), t)
    return w, b


TOLERANCE = {"float32": {"rtol": 2e-4, "atol": 2e-6}, "float64": {"rtol": 1e-9, "atol": 1e-12}}


def _check(opt, update, clip=None, backend="numpy", dtype="float32", steps=STEPS):
    model = _model(opt, backend, dtype)
    ref = update if clip is None else (lambda p, g, s, t: update(p, clip(g), s, t))
    w_ref, b_ref = _run_reference(ref, model, steps)
    for _ in range(steps):
        model.train_on_batch(X, Y)
    w, b = model.get_weights()
    assert w.dtype == dtype
    np.testing.assert_allclose(w, w_ref, **TOLERANCE[dtype])
    np.testing.assert_allclose(b, b_ref, **TOLERANCE[dtype])
    assert int(opt.iterations.value) == steps


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


# --- Keras 3's other optimizers, float32 and float64 -----------------------------------------

DTYPES = ["float32", "float64"]


def f32(rate):
    """A rate as the optimizer holds it (a float32 variable, as Keras's floatx one)."""
    return float(np.float32(rate))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamax(backend, dtype):
    def update(p, g, s, t):
        m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * 0.1
        u = np.maximum(0.999 * s.get("u", 0.0), np.abs(g))
        s.update(m=m, u=u)
        return p - f32(0.02) * m / ((1 - 0.9 ** t) * (u + 1e-7))

    _check(optimizers.Adamax(0.02), update, backend=backend, dtype=dtype, steps=4)


def _nadam_product(t):
    """Keras's u_product after t updates: the product of b1 * (1 - 0.5 * 0.96**i), i <= t."""
    return np.prod([0.9 * (1 - 0.5 * 0.96 ** i) for i in range(1, t + 1)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_nadam(backend, dtype):
    def update(p, g, s, t):
        u_t, u_next = 0.9 * (1 - 0.5 * 0.96 ** t), 0.9 * (1 - 0.5 * 0.96 ** (t + 1))
        product = _nadam_product(t)
        m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * 0.1
        v = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * 0.001
        s.update(m=m, v=v)
        m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * g / (1 - product)
        v_hat = v / (1 - 0.999 ** t)
        return p - m_hat * f32(0.01) / (np.sqrt(v_hat) + 1e-7)

    opt = optimizers.Nadam(0.01)
    _check(opt, update, backend=backend, dtype=dtype, steps=4)
    product = opt._scalars["u_product"].value
    assert product.dtype == dtype  # the first variable's dtype, as Keras
    np.testing.assert_allclose(product, _nadam_product(4), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_with_weight_decay(backend, dtype):
    def update(p, g, s, t):
        p = p - p * 0.1 * f32(0.05)  # Keras's decoupled weight decay, before the rule
        m = s.get("m", 0.0)
        s["m"] = 0.99 * m + 0.01 * g
        return p - f32(0.05) * np.sign(0.9 * m + 0.1 * g)

    _check(optimizers.Lion(0.05, weight_decay=0.1), update, backend=backend, dtype=dtype,
           steps=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l1, beta, shrinkage", [(0.0, 0.0, 0.0), (0.01, 0.5, 0.02)])
def test_ftrl(backend, dtype, l1, beta, shrinkage):
    def update(p, g, s, t):
        lr = f32(0.1)
        l2 = 0.03 + beta / (2 * lr)
        accum, linear = s.get("n", 0.1), s.get("z", 0.0)
        new_accum = accum + g * g
        linear = linear + g + 2 * shrinkage * p - (new_accum ** 0.5 - accum ** 0.5) / lr * p
        quadratic = new_accum ** 0.5 / lr + 2 * l2
        s.update(n=new_accum, z=linear)
        return (np.clip(linear, -l1, l1) - linear) / quadratic

    opt = optimizers.Ftrl(0.1, l1_regularization_strength=l1, l2_regularization_strength=0.03,
                          l2_shrinkage_regularization_strength=shrinkage, beta=beta)
    _check(opt, update, backend=backend, dtype=dtype, steps=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_amsgrad(backend, dtype):
    def update(p, g, s, t):
        p = p - p * 0.004 * f32(0.01)
        m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * 0.1
        v = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * 0.001
        vhat = np.maximum(s.get("vhat", 0.0), v)
        s.update(m=m, v=v, vhat=vhat)
        return p - f32(0.01) * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(vhat) + 1e-7)

    _check(optimizers.AdamW(0.01, amsgrad=True), update, backend=backend, dtype=dtype)


# --- gradient accumulation, EMA, loss scaling -----------------------------------------------

def _adam_rule(lr):
    def update(p, g, s, t):
        m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * 0.1
        v = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * 0.001
        s.update(m=m, v=v)
        return p - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    return update


def _weights64(model):
    return [a.astype(np.float64) for a in model.get_weights()]


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_accumulation_applies_the_mean_every_n_steps(backend, dtype):
    """Keras 3: steps add to accumulators; every n-th applies the mean of the n gradients
    (clipped), with the rule's step count iterations // n + 1."""
    n, steps = 3, 7
    opt = optimizers.Adam(0.01, gradient_accumulation_steps=n, clipnorm=0.05)
    model = _model(opt, backend, dtype)
    params = _weights64(model)
    rule, state, acc = _adam_rule(f32(0.01)), [{}, {}], [0.0, 0.0]
    for it in range(steps):
        grads = _grads(*params)
        if (it + 1) % n == 0:
            mean = [(g + a) / n for g, a in zip(grads, acc)]
            mean = [g * 0.05 / max(np.sqrt((g * g).sum()), 0.05) for g in mean]
            params = [rule(p, g, s, it // n + 1) for p, g, s in zip(params, mean, state)]
            acc = [0.0, 0.0]
        else:
            acc = [a + g for a, g in zip(acc, grads)]
        model.train_on_batch(X, Y)
        for got, want in zip(model.get_weights(), params):
            np.testing.assert_allclose(got, want, **TOLERANCE[dtype])
    assert int(opt.iterations.value) == steps
    kernel = model.layers[0].trainable_weights[0]
    np.testing.assert_allclose(opt.slot(kernel, "gradient_accumulator").value, acc[0],
                               **TOLERANCE[dtype])


@pytest.mark.parametrize("frequency", [None, 2])
def test_ema_follows_keras_and_fit_ends_with_the_averages(backend, frequency):
    """average <- m*average + (1-m)*w after each update (m = 0 at the first); every
    `ema_overwrite_frequency` updates the weights take the averages; fit's end swaps them in."""
    steps = 5

    def reference(model):
        params = _weights64(model)
        averages = None
        for it in range(steps):
            params = [p - 0.1 * g for p, g in zip(params, _grads(*params))]
            m = 0.0 if it == 0 else 0.8
            averages = [m * (a if averages else 0.0) + (1 - m) * p
                        for a, p in zip(averages or params, params)]
            if frequency and (it + 1) % frequency == 0:
                params = list(averages)
        return params, averages

    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=frequency)
    model = _model(opt, backend)
    params, averages = reference(model)
    for _ in range(steps):
        model.train_on_batch(X, Y)  # train_on_batch keeps the weights (Keras)
    for got, want in zip(model.get_weights(), params):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)
    fitted = _model(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.8,
                                   ema_overwrite_frequency=frequency), backend)
    params, averages = reference(fitted)
    fitted.fit(X, Y, batch_size=len(X), epochs=steps, shuffle=False, verbose=0)
    for got, want in zip(fitted.get_weights(), averages):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


def test_loss_scale_factor_scales_the_gradients_back_and_logs_the_plain_loss(backend):
    plain, scaled = _model(optimizers.SGD(0.1), backend), _model(
        optimizers.SGD(0.1, loss_scale_factor=1024.0), backend)
    scaled.set_weights(plain.get_weights())
    for _ in range(3):
        assert scaled.train_on_batch(X, Y) == pytest.approx(plain.train_on_batch(X, Y),
                                                            rel=1e-6)
    for a, b in zip(scaled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_new_keras_defaults_and_names():
    for name, cls, rate in [("adamax", optimizers.Adamax, 0.001), ("nadam", optimizers.Nadam,
                                                                     0.001),
                            ("lion", optimizers.Lion, 0.001), ("ftrl", optimizers.Ftrl, 0.001)]:
        opt = optimizers.get(name)
        assert type(opt) is cls and opt.name == name
        assert opt.learning_rate == pytest.approx(rate)
        config = opt.get_config()
        assert (config["use_ema"], config["ema_momentum"], config["ema_overwrite_frequency"],
                config["loss_scale_factor"], config["gradient_accumulation_steps"]) == (
            False, 0.99, None, None, None)
    lion = optimizers.Lion()
    assert (lion.beta_1, lion.beta_2) == (0.9, 0.99)
    ftrl = optimizers.Ftrl()
    assert (ftrl.learning_rate_power, ftrl.initial_accumulator_value, ftrl.beta) == (
        -0.5, 0.1, 0.0)


def test_bad_new_arguments_name_the_argument():
    cases = [(lambda: optimizers.Lion(beta_1=0.0), "beta_1"),
             (lambda: optimizers.Ftrl(learning_rate_power=0.5), "learning_rate_power"),
             (lambda: optimizers.Ftrl(l1_regularization_strength=-1.0),
              "l1_regularization_strength"),
             (lambda: optimizers.Ftrl(initial_accumulator_value=-0.1),
              "initial_accumulator_value"),
             (lambda: optimizers.Adam(gradient_accumulation_steps=1),
              "gradient_accumulation_steps"),
             (lambda: optimizers.Adam(gradient_accumulation_steps=2.0),
              "gradient_accumulation_steps"),
             (lambda: optimizers.Adam(use_ema=True, ema_momentum=1.5), "ema_momentum"),
             (lambda: optimizers.Adam(use_ema=True, ema_overwrite_frequency=0),
              "ema_overwrite_frequency"),
             (lambda: optimizers.SGD("fast"), "learning_rate"),
             (lambda: optimizers.SGD(lambda: 0.1), "LearningRateSchedule")]
    for make, word in cases:
        with pytest.raises(SymgraphError, match=word):
            make()
    opt = optimizers.SGD(0.1)
    with pytest.raises(SymgraphError, match="learning_rate"):
        opt.learning_rate = "slow"
    assert opt.learning_rate == pytest.approx(0.1)


def test_optimizer_params_in_summary_count_the_new_variables():
    """Keras counts every optimizer variable: iterations, the rate (not a schedule's), EMA
    averages, gradient accumulators, the slots and Nadam's u_product."""
    from symgraph.nn.optimizers import schedules

    cases = [(optimizers.Nadam(), 1 + 1 + 1 + 2 * 15),
             (optimizers.Nadam(schedules.ExponentialDecay(0.1, 10, 0.5)), 1 + 1 + 2 * 15),
             (optimizers.Adamax(use_ema=True, gradient_accumulation_steps=2), 2 + 4 * 15),
             (optimizers.Lion(), 2 + 15), (optimizers.Ftrl(), 2 + 2 * 15)]
    for opt, count in cases:
        model = _model(opt)
        model.train_on_batch(X, Y)
        lines = []
        model.summary(print_fn=lines.append)
        assert f" Optimizer params: {count:,} " in lines[0], (type(opt).__name__, lines[0])
        assert f" Total params: {15 + count:,} " in lines[0]
