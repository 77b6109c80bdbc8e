"""Keras 3's regularization layers besides Dropout (layers.py): the noise layers GaussianNoise,
GaussianDropout, AlphaDropout and SpatialDropout1D, active only in training, and
ActivityRegularization, which adds a penalty on its input to the loss.

The noise is counter-based, like Dropout's masks: a hash of (the call's seed, the model's step
counter, the element index), so it is reproducible from the seeds, the same bits on the NumPy
and Numba backends, and new at every training step. Each call of a shared layer draws its own
noise (`call_seed`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

import symgraph as sg
from symgraph.composites import SELU_ALPHA, SELU_SCALE
from symgraph.errors import SymgraphError
from symgraph.nn import regularizers
from symgraph.nn.layers import Dropout, Layer, call_seed, draw_seed
from symgraph.nn.symbolic import shape_text


def _fraction(value, name: str, layer_kind: str, one_allowed: bool = True) -> float:
    """A rate or stddev in [0, 1] (Keras's check and message), [0, 1) where 1 is undefined."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        0 <= value <= 1 if one_allowed else 0 <= value < 1)
    if not ok:
        upper = "1" if one_allowed else "1 (excluded: the noise would be infinite)"
        raise SymgraphError(f"{layer_kind}: Invalid value received for argument `{name}`. "
                            f"Expected a float value between 0 and {upper}. Received: "
                            f"{name}={value!r}")
    return float(value)


class GaussianNoise(Layer):
    """x + N(0, stddev**2) noise in training; x unchanged in inference."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = _fraction(stddev, "stddev", "GaussianNoise")
        self.seed = draw_seed(seed)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}

    def call(self, x, ctx):
        if not ctx.training or self.stddev == 0:
            return x
        return x + sg.random.normal(x.shape, call_seed(self, ctx), ctx.step, x.dtype,
                                    stddev=self.stddev)


class GaussianDropout(Layer):
    """x * N(1, rate / (1 - rate)) noise in training (the noise's stddev is
    sqrt(rate / (1 - rate))); x unchanged in inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _fraction(rate, "rate", "GaussianDropout", one_allowed=False)
        self.seed = draw_seed(seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}

    def call(self, x, ctx):
        if not ctx.training or self.rate == 0:
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return x * sg.random.normal(x.shape, call_seed(self, ctx), ctx.step, x.dtype, mean=1.0,
                                    stddev=stddev)


def _noise_shape(noise_shape, batched_shape: tuple, layer) -> tuple:
    """The mask's shape for an input of `batched_shape` (batch dim first): `noise_shape` (with
    the batch axis, as Keras's) where None takes the input's size; any other size must be 1 or
    the input's (the batch's only 1)."""
    kind = f"{type(layer).__name__} {layer.name!r}"
    features = tuple(batched_shape[1:])
    if len(noise_shape) != len(batched_shape):
        raise SymgraphError(f"{kind}: noise_shape={noise_shape!r} needs one entry per axis of "
                            f"inputs of shape {shape_text(features)} (the batch axis first)")
    for i, (want, size) in enumerate(zip(noise_shape, batched_shape)):
        if want is not None and want != 1 and (i == 0 or want != size):
            raise SymgraphError(f"{kind}: noise_shape={noise_shape!r} has {want} on axis {i}, "
                                f"where inputs of shape {shape_text(features)} take None, 1 or "
                                "their size (None or 1 on the batch axis)")
    return tuple(size if want is None else want for want, size in zip(noise_shape, batched_shape))


class AlphaDropout(Layer):
    """Dropout that keeps SELU's self-normalization (Keras 3's): in training, dropped values
    become alpha' = -SELU_ALPHA * SELU_SCALE, then y = a * x + b with
    a = ((1 - rate) * (1 + rate * alpha'**2)) ** -0.5 and b = -a * alpha' * rate, so inputs of
    mean 0 and variance 1 keep them. `noise_shape` (with the batch axis, None = the input's
    size) shares the mask along axes of size 1."""

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _fraction(rate, "rate", "AlphaDropout", one_allowed=False)
        valid = noise_shape is None or isinstance(noise_shape, (list, tuple)) and all(
            d is None or isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in noise_shape)
        if not valid:
            raise SymgraphError(f"AlphaDropout: noise_shape must be None or a tuple of positive "
                                f"ints and None (the batch axis first), got {noise_shape!r}")
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = draw_seed(seed)

    def get_config(self):
        shape = None if self.noise_shape is None else list(self.noise_shape)
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": shape}

    def build(self, input_shape):
        if self.noise_shape is not None:
            _noise_shape(self.noise_shape, (None,) + tuple(input_shape), self)
        super().build(input_shape)

    def call(self, x, ctx):
        if not ctx.training or self.rate == 0:
            return x
        shape = x.shape if self.noise_shape is None else \
            _noise_shape(self.noise_shape, x.shape, self)
        keep = sg.random.uniform(shape, call_seed(self, ctx), ctx.step, x.dtype) >= self.rate
        alpha_p = -SELU_ALPHA * SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * self.rate
        # a * x + b as (x + b / a) * a: a multiply last, which no backend fuses into an FMA with
        # the add, so NumPy and Numba give the same bits
        return sg.where(keep, x + b / a, alpha_p + b / a) * a


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of (batch, steps, channels) inputs: one mask value per sample
    and channel, shared by every step; kept values scaled by 1 / (1 - rate)."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(rate, seed=seed, **kwargs)

    def get_config(self):
        return {**Layer.get_config(self), "rate": self.rate, "seed": self.seed}

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise SymgraphError(f"SpatialDropout1D {self.name!r} takes inputs of shape (None, "
                                f"steps, channels), got {shape_text(input_shape)}")
        super().build(input_shape)

    def call(self, x, ctx):
        if not ctx.training or self.rate == 0:
            return x
        if self.rate == 1:
            return x * 0.0
        shape = (x.shape[0], 1, x.shape[2])
        keep = sg.random.uniform(shape, call_seed(self, ctx), ctx.step, x.dtype) >= self.rate
        return sg.where(keep, x * (1.0 / (1.0 - self.rate)), 0.0)


class ActivityRegularization(Layer):
    """Passes its input through and adds l1 * sum(|x|) + l2 * sum(x**2), divided by the batch
    size (Keras 3's activity regularizer), to the loss: in training and in evaluate's loss."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("l1", l1), ("l2", l2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise SymgraphError(f"ActivityRegularization: {name} must be a number >= 0, got "
                                    f"{value!r}")
        self.l1, self.l2 = float(l1), float(l2)
        self._regularizer = regularizers.L1L2(l1=self.l1, l2=self.l2)

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}

    def call(self, x, ctx):
        if self.l1 or self.l2:
            ctx.losses.append(self._regularizer(x) / sg.size_of(x, 0, x.dtype))
        return x
