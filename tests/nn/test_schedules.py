"""Learning-rate schedules: Keras 3's formulas written in NumPy, the rate at chosen
iterations, training with a schedule evaluated inside the one compiled step (NumPy and Numba
backends equal), saving, and the callbacks that refuse a schedule."""

import math

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    Dense,
    Sequential,
    callbacks,
    load_model,
    optimizers,
    register_serializable,
    set_random_seed,
)
from symgraph.nn.optimizers import schedules

RNG = np.random.default_rng(1)
X = RNG.normal(size=(8, 4)).astype(np.float32)
Y = RNG.normal(size=(8, 2)).astype(np.float32)


# Keras 3's learning_rate_schedule.py, in float64 NumPy
def exponential(step, initial, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return initial * rate ** (math.floor(p) if staircase else p)


def piecewise(step, boundaries, values):
    for b, v in zip(boundaries, values):
        if step <= b:
            return v
    return values[-1]


def polynomial(step, initial, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (initial - end) * (1 - step / decay_steps) ** power + end


def inverse_time(step, initial, decay_steps, rate, staircase=False):
    p = step / decay_steps
    return initial / (1 + rate * (math.floor(p) if staircase else p))


def cosine(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decay(s, start):
        return start * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)

    if warmup_target is None:
        return decay(min(step, decay_steps), initial)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial) * step / warmup_steps + initial
    return decay(step - warmup_steps, warmup_target)


def restarts(step, initial, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    fraction = step / first
    if t_mul == 1.0:
        i = math.floor(fraction)
        fraction -= i
    else:
        i = math.floor(math.log(1 - fraction * (1 - t_mul)) / math.log(t_mul))
        fraction = (fraction - (1 - t_mul ** i) / (1 - t_mul)) / t_mul ** i
    return initial * ((1 - alpha) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * fraction)) + alpha)


CASES = [
    (schedules.ExponentialDecay(0.1, 7, 0.5), lambda s: exponential(s, 0.1, 7, 0.5)),
    (schedules.ExponentialDecay(0.1, 3, 0.5, staircase=True),
     lambda s: exponential(s, 0.1, 3, 0.5, True)),
    (schedules.PiecewiseConstantDecay([2, 5], [0.3, 0.1, 0.02]),
     lambda s: piecewise(s, [2, 5], [0.3, 0.1, 0.02])),
    (schedules.PolynomialDecay(0.2, 6, 0.01, power=0.5),
     lambda s: polynomial(s, 0.2, 6, 0.01, 0.5)),
    (schedules.PolynomialDecay(0.2, 4, power=2.0, cycle=True),
     lambda s: polynomial(s, 0.2, 4, power=2.0, cycle=True)),
    (schedules.InverseTimeDecay(0.1, 2, 0.5), lambda s: inverse_time(s, 0.1, 2, 0.5)),
    (schedules.InverseTimeDecay(0.1, 3, 0.5, staircase=True),
     lambda s: inverse_time(s, 0.1, 3, 0.5, True)),
    (schedules.CosineDecay(0.1, 8, alpha=0.1), lambda s: cosine(s, 0.1, 8, 0.1)),
    (schedules.CosineDecay(0.0, 6, alpha=0.2, warmup_target=0.2, warmup_steps=3),
     lambda s: cosine(s, 0.0, 6, 0.2, 0.2, 3)),
    (schedules.CosineDecayRestarts(0.1, 3), lambda s: restarts(s, 0.1, 3)),
    (schedules.CosineDecayRestarts(0.1, 2, t_mul=1.0, m_mul=0.5, alpha=0.1),
     lambda s: restarts(s, 0.1, 2, 1.0, 0.5, 0.1)),
]
IDS = [f"{type(s).__name__}-{i}" for i, (s, _) in enumerate(CASES)]


@pytest.mark.parametrize("schedule, formula", CASES, ids=IDS)
def test_the_rate_at_chosen_iterations_is_keras_formula(schedule, formula):
    opt = optimizers.SGD(schedule)
    for step in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 17, 40, 1000]:
        opt.iterations.value = np.int64(step)
        assert opt.learning_rate == pytest.approx(formula(step), rel=2e-6, abs=1e-9), step


def test_keras_documented_values():
    piecewise_decay = schedules.PiecewiseConstantDecay([100000, 110000], [1.0, 0.5, 0.1])
    for step, rate in [(0, 1.0), (100000, 1.0), (100001, 0.5), (110000, 0.5), (110001, 0.1)]:
        assert schedules.value_at(piecewise_decay, step) == pytest.approx(rate)
    assert schedules.value_at(schedules.ExponentialDecay(0.1, 100000, 0.96, True),
                              250000) == pytest.approx(0.1 * 0.96 ** 2)


@pytest.mark.parametrize("schedule, formula", CASES[::2], ids=IDS[::2])
def test_training_with_a_schedule_is_one_compiled_step_on_both_backends(schedule, formula):
    """SGD with momentum; the step's rate is the schedule at the iteration count before the
    update (Keras's optimizer.learning_rate inside apply)."""
    results = []
    for backend in ["numpy", "numba"]:
        model = Sequential([Dense(2, input_dim=4, kernel_initializer="ones")])
        opt = optimizers.SGD(schedule, momentum=0.5)
        model.compile(optimizer=opt, loss="mse", backend=backend)
        w, b = (a.astype(np.float64) for a in model.get_weights())
        mw = mb = 0.0
        for it in range(6):
            r = X.astype(np.float64) @ w + b - Y
            gw, gb = 2.0 / r.size * X.T.astype(np.float64) @ r, 2.0 / r.size * r.sum(0)
            lr = float(np.float32(formula(it)))
            mw, mb = 0.5 * mw - lr * gw, 0.5 * mb - lr * gb
            w, b = w + mw, b + mb
            model.train_on_batch(X, Y)
        assert len(model._functions) == 1
        np.testing.assert_allclose(model.get_weights()[0], w, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(model.get_weights()[1], b, rtol=2e-5, atol=1e-6)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@register_serializable("test_schedules")
class Halving(schedules.LearningRateSchedule):
    """A custom schedule: initial / (step + 1), written with graph operators."""

    def __init__(self, initial):
        self.initial = initial

    def __call__(self, step):
        return self.initial / (step + 1)

    def get_config(self):
        return {"initial": self.initial}


def test_a_custom_schedule_subclass_trains_and_round_trips(tmp_path):
    opt = optimizers.SGD(Halving(0.3))
    model = Sequential([Dense(2, input_dim=4, kernel_initializer="ones")])
    model.compile(optimizer=opt, loss="mse", backend="numpy")
    w = model.get_weights()[0].astype(np.float64)
    b = model.get_weights()[1].astype(np.float64)
    for it in range(3):
        r = X.astype(np.float64) @ w + b - Y
        lr = float(np.float32(0.3 / (it + 1)))
        w, b = w - lr * 2.0 / r.size * X.T @ r, b - lr * 2.0 / r.size * r.sum(0)
        model.train_on_batch(X, Y)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-5)
    assert opt.learning_rate == pytest.approx(0.3 / 4)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer.schedule, Halving)
    assert loaded.optimizer.learning_rate == pytest.approx(0.3 / 4)


@pytest.mark.parametrize("opt_factory", [
    lambda: optimizers.Nadam(schedules.CosineDecay(0.0, 5, warmup_target=0.05, warmup_steps=2),
                             use_ema=True, ema_overwrite_frequency=3),
    lambda: optimizers.Adam(schedules.PiecewiseConstantDecay([3], [0.05, 0.01]),
                            gradient_accumulation_steps=2, use_ema=True),
    lambda: optimizers.Ftrl(schedules.ExponentialDecay(0.2, 2, 0.7), beta=0.1),
    lambda: optimizers.Lion(schedules.PolynomialDecay(0.01, 4, cycle=True), weight_decay=0.1),
    lambda: optimizers.Adamax(schedules.CosineDecayRestarts(0.05, 2), clipnorm=0.5),
], ids=["nadam", "adam-accumulate", "ftrl", "lion", "adamax"])
def test_save_load_continues_exactly_as_uninterrupted_training(tmp_path, opt_factory):
    """Config (with the schedule's) and state (slots, EMA averages, accumulators, Nadam's
    u_product, iterations) go through model.save / load_model."""
    def model_with(opt):
        set_random_seed(3)
        sg_model = Sequential([Dense(3, input_dim=4, activation="tanh",
                                     kernel_initializer="ones"), Dense(2)])
        sg_model.compile(optimizer=opt, loss="mse", backend="numpy")
        return sg_model

    whole, first = model_with(opt_factory()), model_with(opt_factory())
    for _ in range(7):
        whole.train_on_batch(X, Y)
    for _ in range(4):
        first.train_on_batch(X, Y)
    first.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == first.optimizer.get_config()
    assert type(loaded.optimizer.schedule) is type(first.optimizer.schedule)
    for _ in range(3):
        loaded.train_on_batch(X, Y)
    for a, b in zip(loaded.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations.value == 7
    assert loaded.optimizer.learning_rate == whole.optimizer.learning_rate


def test_callbacks_that_set_the_rate_refuse_a_schedule_and_nothing_changes():
    model = Sequential([Dense(2, input_dim=4)])
    opt = optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.5))
    model.compile(optimizer=opt, loss="mse", backend="numpy")
    before = model.get_weights()
    for cb in [callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5),
               callbacks.ReduceLROnPlateau(monitor="loss")]:
        with pytest.raises(SymgraphError, match=f"{type(cb).__name__} sets the optimizer's "
                                                "learning rate.*ExponentialDecay"):
            model.fit(X, Y, epochs=2, verbose=0, callbacks=[cb])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert opt.iterations.value == 0
    with pytest.raises(TypeError, match="not settable"):  # Keras's TypeError, a SymgraphError
        opt.learning_rate = 0.01


def test_bad_schedules_raise_clearly(tmp_path):
    with pytest.raises(SymgraphError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(SymgraphError, match="first_decay_steps"):
        schedules.CosineDecayRestarts(0.1, -1)
    with pytest.raises(SymgraphError, match="length of boundaries"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])

    class Vector(schedules.LearningRateSchedule):
        def __call__(self, step):
            return sg.cast(step, "float32") * np.ones(3, np.float32)

    model = Sequential([Dense(2, input_dim=4)])
    model.compile(optimizer=optimizers.SGD(Vector()), loss="mse", backend="numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match="Vector returned"):
        model.train_on_batch(X, Y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SymgraphError, match="must override `get_config"):
        model.save(tmp_path / "m.keras")
