"""Keras 3's per-sample normalization layers: LayerNormalization (mean and variance over the
feature axes, then a learned scale and offset; or rms_scaling) and UnitNormalization (unit L2
norm over the feature axes). BatchNormalization, which normalizes over the batch, is in
layers.py.
"""

from __future__ import annotations

import numbers

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import constraints, regularizers
from symgraph.nn.layers import Layer
from symgraph.nn.serialization import serialize
from symgraph.nn.symbolic import shape_text


def checked_axis(axis, layer_kind: str):
    """An `axis` argument as Keras keeps it: an int, or a list of ints for a list or tuple."""
    ints = isinstance(axis, (list, tuple)) and axis and all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis)
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return int(axis)
    if ints:
        return [int(a) for a in axis]
    raise SymgraphError(f"{layer_kind}: axis must be an int or a non-empty list/tuple of ints "
                        f"(counted with the batch axis, e.g. -1), got {axis!r}")


def feature_axes(axis, input_shape: tuple, layer) -> tuple:
    """`axis` (an int or a list, counted with the batch axis as in Keras) as non-negative axes
    of the batched input, in the order given; the batch axis is refused (a sample's output
    would depend on the other samples of its batch)."""
    rank = len(input_shape) + 1
    axes = [axis] if isinstance(axis, int) else list(axis)
    kind = f"{type(layer).__name__} {layer.name!r}"
    if any(not -rank <= a < rank for a in axes):
        raise SymgraphError(f"{kind}: axis={axis!r} is out of range for inputs of shape "
                            f"{shape_text(input_shape)}")
    found = tuple(a % rank for a in axes)
    if 0 in found:
        raise SymgraphError(f"{kind}: axis={axis!r} names the batch axis; normalize over feature "
                            f"axes only (1 to {rank - 1}, or negative ones such as -1)")
    if len(set(found)) != len(found):
        raise SymgraphError(f"{kind}: axis={axis!r} names an axis twice")
    return found


class LayerNormalization(Layer):
    """Keras 3's LayerNormalization: per sample, over `axis` (the last by default),
    y = (x - mean) / sqrt(var + epsilon) * gamma + beta (biased variance), computed as Keras
    does: inv = rsqrt(var + epsilon) * gamma, y = x * inv + (beta - mean * inv). gamma and beta
    span the normalized axes. With rms_scaling, center and scale are ignored and
    y = x * rsqrt(var + epsilon) * gamma (Keras 3 takes the variance there too, not the mean
    square)."""

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 rms_scaling: bool = False, beta_initializer="zeros", gamma_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = checked_axis(axis, "LayerNormalization")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or epsilon < 0:
            raise SymgraphError(f"LayerNormalization: epsilon must be a number >= 0, got "
                                f"{epsilon!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), bool(rms_scaling)
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None
        self._axes = None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": serialize(self.beta_initializer),
                "gamma_initializer": serialize(self.gamma_initializer),
                "beta_regularizer": serialize(self.beta_regularizer),
                "gamma_regularizer": serialize(self.gamma_regularizer),
                "beta_constraint": serialize(self.beta_constraint),
                "gamma_constraint": serialize(self.gamma_constraint)}

    def build(self, input_shape):
        self._axes = feature_axes(self.axis, input_shape, self)
        shape = tuple(input_shape[a - 1] for a in self._axes)  # in the order axis lists them
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight("beta", shape, self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)
        super().build(input_shape)

    def call(self, x, ctx):
        axes = tuple(sorted(self._axes))
        last_only = axes == (x.ndim - 1,)
        shape = tuple(d if i in axes else 1 for i, d in enumerate(x.shape))

        def spread(weight):  # Keras reshapes (not transposes) a weight onto the sorted axes
            return weight if last_only else weight.reshape(shape)

        variance = sg.var(x, axes, keepdims=True)
        inv = 1.0 / sg.sqrt(variance + self.epsilon)
        if self.rms_scaling:
            return x * inv * spread(self.gamma)
        if self.gamma is not None:
            inv = inv * spread(self.gamma)
        offset = -sg.mean(x, axes, keepdims=True) * inv
        if self.beta is not None:
            offset = offset + spread(self.beta)
        return x * inv + offset


class AxisLayer(Layer):
    """A weightless layer computing over `axis` (an int or a list of axes, counted with the
    batch axis): UnitNormalization, Softmax."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = checked_axis(axis, type(self).__name__)
        self._axes = None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def build(self, input_shape):
        self._axes = feature_axes(self.axis, input_shape, self)
        super().build(input_shape)


class UnitNormalization(AxisLayer):
    """Keras 3's UnitNormalization: x * rsqrt(max(sum(x**2 over axis), 1e-12)), so each sample
    has L2 norm 1 over `axis` (a zero sample stays zero)."""

    def call(self, x, ctx):
        square_sum = sg.sum(sg.square(x), self._axes, keepdims=True)
        return x * (1.0 / sg.sqrt(sg.maximum(square_sum, 1e-12)))
