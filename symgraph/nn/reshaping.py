"""Keras's reshaping layers: Reshape, ZeroPadding1D/2D, Cropping1D/2D and UpSampling1D/2D
(the 1-D ones over (batch, steps, features), the 2-D ones over channels_last images). Flatten
lives in layers.py, Permute and RepeatVector in core_layers.py.
"""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.convolutional import _check_data_format, _check_rank, _one, pair
from symgraph.nn.layers import Layer
from symgraph.nn.symbolic import shape_text
from symgraph.ops.build import apply_unslice
from symgraph.ops.shapes import is_int


class Reshape(Layer):
    """Each sample reshaped to `target_shape` (batch dim excluded; one -1 is inferred)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        valid = isinstance(target_shape, (tuple, list)) and all(
            is_int(d) and (d > 0 or d == -1) for d in target_shape)
        if not valid or list(target_shape).count(-1) > 1:
            raise SymgraphError(f"Reshape: target_shape must be a tuple of positive ints with "
                                f"at most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if (size % known if -1 in self.target_shape else size != known):
            raise SymgraphError(f"Reshape {self.name!r}: the total size of the new array must "
                                f"be unchanged: input shape {shape_text(input_shape)} "
                                f"({size} values per sample), target_shape "
                                f"{self.target_shape}")
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def call(self, x, ctx):
        return x.reshape((x.shape[0],) + self.output_shape)


def _before_after(value, what: str, op: str) -> tuple[int, int]:
    """Keras's standardize_tuple(value, 2, allow_zero=True): an int n is (n, n); else a pair
    of ints >= 0 (cells before and after, along one axis)."""
    if is_int(value):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(is_int(v) and v >= 0 for v in value)):
        raise SymgraphError(f"{op}: {what} must be an int >= 0 or a pair of ints >= 0 (before, "
                            f"after), got {value!r}")
    return int(value[0]), int(value[1])


def _per_axis_pairs(value, what: str, op: str) -> tuple:
    """The 2-D layers' padding or cropping: an int (every side), a pair (symmetric per axis:
    height, width) or ((top, bottom), (left, right))."""
    if is_int(value):
        return (_before_after(value, what, op),) * 2
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise SymgraphError(f"{op}: `{what}` should have two elements (height, width): an int, "
                            f"a pair of ints or ((top, bottom), (left, right)); got {value!r}")
    return tuple(_before_after(v, f"each entry of {what}", op) for v in value)


class _Padding(Layer):
    rank = 1

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        self.padding = ((_before_after(padding, "padding", op),) if self.rank == 1
                        else _per_axis_pairs(padding, "padding", op))

    def build(self, input_shape):
        _check_rank(self, self.rank, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        sizes = tuple(n + a + b for n, (a, b) in zip(input_shape, self.padding))
        return sizes + tuple(input_shape[self.rank:])

    def call(self, x, ctx):
        # zeros with x written in: the adjoint of slicing (its gradient is the slice back)
        index = ((0, None, 1),) + tuple((a, a + n, 1) for n, (a, _) in
                                        zip(x.shape[1:], self.padding)) + ((0, None, 1),)
        return apply_unslice(x, index, (x.shape[0],) + self.output_shape)


class ZeroPadding1D(_Padding):
    """Zeros before and after the steps of (batch, steps, features): padding is an int or
    (before, after)."""

    rank = 1

    def __init__(self, padding=1, **kwargs):
        super().__init__(padding, **kwargs)

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding[0])}


class ZeroPadding2D(_Padding):
    """Rows and columns of zeros around (batch, height, width, channels) images: padding is
    an int, (symmetric height, symmetric width) or ((top, bottom), (left, right))."""

    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        _check_data_format(data_format, "ZeroPadding2D")
        super().__init__(padding, **kwargs)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": "channels_last"}


class _Cropping(Layer):
    rank = 1

    def __init__(self, cropping, **kwargs):
        super().__init__(**kwargs)
        op = type(self).__name__
        self.cropping = ((_before_after(cropping, "cropping", op),) if self.rank == 1
                         else _per_axis_pairs(cropping, "cropping", op))

    def build(self, input_shape):
        _check_rank(self, self.rank, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        for n, (a, b) in zip(input_shape, self.cropping):
            if a + b >= n:
                raise SymgraphError(f"{type(self).__name__} {self.name!r}: the `cropping` "
                                    f"{self.cropping if self.rank == 2 else self.cropping[0]} "
                                    f"must be smaller than the input, but inputs "
                                    f"{shape_text(input_shape)} would keep nothing")
        sizes = tuple(n - a - b for n, (a, b) in zip(input_shape, self.cropping))
        return sizes + tuple(input_shape[self.rank:])

    def call(self, x, ctx):
        index = (slice(None),) + tuple(slice(a, n - b) for n, (a, b) in
                                       zip(x.shape[1:], self.cropping))
        return x[index]


class Cropping1D(_Cropping):
    """Drops steps at the start and end of (batch, steps, features): cropping is an int or
    (start, end)."""

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(cropping, **kwargs)

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping[0])}


class Cropping2D(_Cropping):
    """Drops rows and columns at the edges of (batch, height, width, channels) images:
    cropping is an int, (symmetric height, symmetric width) or ((top, bottom), (left, right))."""

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        _check_data_format(data_format, "Cropping2D")
        super().__init__(cropping, **kwargs)

    def get_config(self):
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping],
                "data_format": "channels_last"}


def _repeat(x, axis: int, times: int):
    """np.repeat(x, times, axis) for axis >= 1: each entry along `axis` repeated `times` times
    in a row (a broadcast, so the gradient sums the copies)."""
    if times == 1:
        return x
    shape = tuple(x.shape)
    spread = shape[:axis + 1] + (times,) + shape[axis + 1:]
    y = sg.broadcast_to(x.reshape(shape[:axis + 1] + (1,) + shape[axis + 1:]), spread)
    return y.reshape(shape[:axis] + (shape[axis] * times,) + shape[axis + 1:])


class UpSampling1D(Layer):
    """Each step of (batch, steps, features) repeated `size` times."""

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = _one(size, "size", "UpSampling1D")

    def get_config(self):
        return {**super().get_config(), "size": self.size}

    def build(self, input_shape):
        _check_rank(self, 1, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0] * self.size,) + tuple(input_shape[1:])

    def call(self, x, ctx):
        return _repeat(x, 1, self.size)


class UpSampling2D(Layer):
    """Rows and columns of (batch, height, width, channels) images repeated size = (rows,
    columns) times (interpolation "nearest", Keras's default and only mode here)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        _check_data_format(data_format, "UpSampling2D")
        self.size = pair(size, "size", "UpSampling2D")
        mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if mode != "nearest":
            raise SymgraphError(f"UpSampling2D: only interpolation='nearest' is supported, got "
                                f"interpolation={interpolation!r}")
        self.interpolation = mode

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "data_format": "channels_last",
                "interpolation": self.interpolation}

    def build(self, input_shape):
        _check_rank(self, 2, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0] * self.size[0], input_shape[1] * self.size[1], input_shape[2])

    def call(self, x, ctx):
        return _repeat(_repeat(x, 1, self.size[0]), 2, self.size[1])
