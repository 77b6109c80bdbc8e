"""Learning-rate schedules with Keras 3's formulas and defaults (keras.optimizers.schedules).

A schedule passed as an optimizer's `learning_rate` is called with the optimizer's iteration
counter (an int64 variable) when the training step is built, so its rate is part of the one
compiled step: nothing is recomputed in Python between batches. `__call__(step)` therefore
builds graph expressions (symgraph ops, operators); a custom schedule subclasses
LearningRateSchedule the same way and returns a scalar. The rates are computed in float32, as
Keras computes them from a Python float `initial_learning_rate`.
"""

from __future__ import annotations

import math

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable

F32 = "float32"


def _floor(x):
    """floor of a float scalar node through int64 (exact for the finite values a step gives;
    symgraph has no floor primitive)."""
    t = sg.cast(sg.cast(x, "int64"), x.dtype)  # rounds toward zero
    return sg.where(t > x, t - 1.0, t)


def _ceil(x):
    return -_floor(-x)


def _step(step):
    return sg.cast(step, F32)


def _positive(value, what: str) -> None:
    if value <= 0:
        raise SymgraphError(f"Argument `{what}` must be > 0. Received: {what}={value}")


class LearningRateSchedule(Serializable):
    """Base class: subclasses give `__call__(step)` (step: a scalar int64 node, the optimizer's
    iteration count) returning the rate as a scalar node, and `get_config` to be saved."""

    def __call__(self, step):
        raise SymgraphError(f"Learning rate schedule '{type(self).__name__}' must override "
                            "`__call__(self, step)`.")

    def get_config(self) -> dict:
        raise SymgraphError(f"Learning rate schedule '{type(self).__name__}' must override "
                            "`get_config()` in order to be serializable.")


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments, and the progress
    step / decay_steps, floored when `staircase`."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        _positive(decay_steps, "decay_steps")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase = decay_rate, staircase
        self.name = type(self).__name__ if name is None else name

    def progress(self, step):
        p = _step(step) / np.float32(self.decay_steps)
        return _floor(p) if self.staircase else p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """initial_learning_rate * decay_rate ** (step / decay_steps); `staircase`: an integer
    division."""

    def __call__(self, step):
        return np.float32(self.initial_learning_rate) * sg.power(np.float32(self.decay_rate),
                                                                 self.progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
    boundaries[i], values[-1] after boundaries[-1] (boundaries taken as integers, as Keras
    casts them to the step's dtype)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise SymgraphError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}.")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        bounds = [np.int64(b) for b in self.boundaries]
        values = [np.float32(v) for v in self.values]
        result = sg.cast(step <= bounds[0], F32) * values[0]
        result = result + sg.cast(step > bounds[-1], F32) * values[-1]
        for low, high, value in zip(bounds[:-1], bounds[1:], values[1:-1]):
            result = result + sg.cast(sg.logical_and(step > low, step <= high), F32) * value
        return result

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """(initial - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end; `cycle`:
    decay_steps grows to the first multiple of itself at or above step."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        _positive(decay_steps, "decay_steps")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.end_learning_rate, self.power, self.cycle = end_learning_rate, power, cycle
        self.name = name

    def __call__(self, step):
        step = _step(step)
        decay_steps = sg.constant(np.float32(self.decay_steps))
        if self.cycle:  # the multiplier is 1 at step 0
            multiplier = sg.where(sg.equal(step, 0.0), np.float32(1.0),
                                  _ceil(step / np.float32(self.decay_steps)))
            decay_steps = decay_steps * multiplier
        else:
            step = sg.minimum(step, decay_steps)
        p = step / decay_steps
        end = np.float32(self.end_learning_rate)
        return ((np.float32(self.initial_learning_rate) - end)
                * sg.power(1.0 - p, np.float32(self.power)) + end)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(_StepDecay):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps); `staircase`: the
    division floored."""

    def __call__(self, step):
        return np.float32(self.initial_learning_rate) / (
            1.0 + np.float32(self.decay_rate) * self.progress(step))


def _cosine(fraction, alpha):
    """(1 - alpha) * 0.5 * (1 + cos(pi * fraction)) + alpha."""
    cosine = 0.5 * (1.0 + sg.cos(np.float32(math.pi) * fraction))
    return (1.0 - np.float32(alpha)) * cosine + np.float32(alpha)


class CosineDecay(LearningRateSchedule):
    """With `warmup_target`: a linear warmup from initial_learning_rate to warmup_target over
    `warmup_steps`, then a cosine decay to warmup_target * alpha over `decay_steps`; without,
    the cosine decay from initial_learning_rate to initial_learning_rate * alpha."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        _positive(decay_steps, "decay_steps")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.alpha, self.name = alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def __call__(self, step):
        step = _step(step)
        initial = np.float32(self.initial_learning_rate)
        decay_steps = np.float32(self.decay_steps)
        if self.warmup_target is None:
            return initial * _cosine(sg.minimum(step, decay_steps) / decay_steps, self.alpha)
        target, warmup_steps = np.float32(self.warmup_target), np.float32(self.warmup_steps)
        step = sg.minimum(step, decay_steps + warmup_steps)
        decayed = target * _cosine((step - warmup_steps) / decay_steps, self.alpha)
        if self.warmup_steps <= 0:  # Keras's cond never takes the warmup branch then
            return decayed
        warmup = (target - initial) * (step / warmup_steps) + initial
        return sg.where(step < warmup_steps, warmup, decayed)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """SGDR: a cosine decay from 1 to alpha (times initial_learning_rate) over
    `first_decay_steps`, then restarts, each period t_mul times longer and starting m_mul times
    lower."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        _positive(first_decay_steps, "first_decay_steps")
        self.initial_learning_rate, self.first_decay_steps = (initial_learning_rate,
                                                              first_decay_steps)
        self.t_mul, self.m_mul, self.alpha, self.name = t_mul, m_mul, alpha, name

    def __call__(self, step):
        fraction = _step(step) / np.float32(self.first_decay_steps)
        t_mul = np.float32(self.t_mul)
        if self.t_mul == 1.0:
            i_restart = _floor(fraction)
            fraction = fraction - i_restart
        else:  # periods grow geometrically: find the period by a log
            i_restart = _floor(sg.log(1.0 - fraction * (1.0 - t_mul)) / np.float32(np.log(t_mul)))
            sum_r = (1.0 - sg.power(t_mul, i_restart)) / (1.0 - t_mul)
            fraction = (fraction - sum_r) / sg.power(t_mul, i_restart)
        m_fac = sg.power(np.float32(self.m_mul), i_restart)
        cosine = 0.5 * m_fac * (1.0 + sg.cos(np.float32(math.pi) * fraction))
        alpha = np.float32(self.alpha)
        return np.float32(self.initial_learning_rate) * ((1.0 - alpha) * cosine + alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


def value_at(schedule: LearningRateSchedule, step: int) -> float:
    """The rate `schedule` gives at iteration `step`, computed by its graph (NumPy backend)."""
    counter = sg.placeholder((), "int64", name="step")
    fn = sg.function([counter], rate_node(schedule, counter), backend="numpy")
    return float(fn(np.int64(step)))


def rate_node(schedule: LearningRateSchedule, step):
    """The float32 scalar node of `schedule` at the int64 node `step`; a schedule that returns
    something else (a vector, a string) raises naming it."""
    rate = schedule(step)
    if isinstance(rate, (int, float, np.number)) and not isinstance(rate, bool):
        rate = sg.constant(np.float32(rate))
    if not isinstance(rate, sg.Node) or rate.ndim != 0 or rate.dtype == "bool":
        shown = rate.shape if isinstance(rate, sg.Node) else type(rate).__name__
        raise SymgraphError(f"learning rate schedule {type(schedule).__name__} returned {shown} "
                            "for the step; it must return a scalar number (a 0-d node)")
    return rate if rate.dtype == F32 else sg.cast(rate, F32)
