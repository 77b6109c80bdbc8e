"""Keras 3's image augmentation layers over channels_last images: RandomFlip and
RandomTranslation. They act only in training, with counter-based noise like Dropout's: a hash
of (the call's seed, the model's step counter, the element index), so they are reproducible
from the seeds, the same bits on the NumPy and Numba backends, and new at every training step;
each call of a shared layer draws its own (`call_seed`).
"""

from __future__ import annotations

import numbers

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.convolutional import _check_data_format, _check_rank
from symgraph.nn.layers import Layer, call_seed, draw_seed
from symgraph.ops.build import apply_unslice


class _ImageAugmentation(Layer):
    """An augmentation layer over (batch, height, width, channels) images: active in
    training only; each call of a shared layer draws its own noise (`call_seed`)."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _check_data_format(data_format, type(self).__name__)
        self.seed = draw_seed(seed)

    def get_config(self):  # the seed drawn for an unseeded layer: the same draws when rebuilt
        return {**super().get_config(), "seed": self.seed, "data_format": "channels_last"}

    def build(self, input_shape):
        _check_rank(self, 2, input_shape)
        super().build(input_shape)

    def call(self, x, ctx):
        return self.augment(x, ctx) if ctx.training else x


_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class RandomFlip(_ImageAugmentation):
    """Flips each image with probability 1/2 (uniform <= 0.5, Keras's draw): "horizontal"
    left-right, "vertical" top-bottom, "horizontal_and_vertical" both at once (one draw per
    image, as Keras 3 draws)."""

    def __init__(self, mode: str = "horizontal_and_vertical", seed=None, data_format=None,
                 **kwargs):
        super().__init__(seed, data_format, **kwargs)
        if mode not in _FLIP_MODES:
            raise SymgraphError(f"RandomFlip: mode must be one of {', '.join(_FLIP_MODES)}, got "
                                f"mode={mode!r}")
        self.mode = mode

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}

    def augment(self, x, ctx):
        flips = sg.random.uniform((x.shape[0], 1, 1, 1), call_seed(self, ctx), ctx.step,
                                  x.dtype) <= 0.5
        if self.mode != "vertical":
            x = sg.where(flips, x[:, :, ::-1, :], x)
        if self.mode != "horizontal":
            x = sg.where(flips, x[:, ::-1, :, :], x)
        return x


def _factor_bounds(factor, name: str) -> tuple[float, float]:
    """Keras's factor: a number f in [-1, 1] for [-|f|, |f|], or a pair (lower, upper)."""
    values = list(factor) if isinstance(factor, (tuple, list)) else [factor]
    ok = len(values) in ((2,) if isinstance(factor, (tuple, list)) else (1,)) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and -1 <= v <= 1 for v in values)
    if not ok:
        raise SymgraphError(f"RandomTranslation: The `factor` argument should be a number (or a "
                            f"list of two numbers) in the range [-1.0, 1.0]. Received: "
                            f"{name}={factor!r}")
    if len(values) == 1:
        return -abs(float(values[0])), abs(float(values[0]))
    low, high = sorted(float(v) for v in values)
    return low, high


def _lattice_to_pixels(size: int, fill_mode: str) -> np.ndarray:
    """0/1 of shape (3 * size + 2, cells): which cell each position -size-1 .. 2*size of the
    extended axis reads under `fill_mode`. The cells are the size pixels, and for "constant"
    fill cells before and after them (every position outside the image reads cell 0)."""
    positions = np.arange(-size - 1, 2 * size + 1)
    if fill_mode == "reflect":  # (d c b a | a b c d | d c b a)
        index = positions % (2 * size)
        index = np.where(index >= size, 2 * size - 1 - index, index)
    elif fill_mode == "wrap":  # (a b c d | a b c d | a b c d)
        index = positions % size
    elif fill_mode == "nearest":  # (a a a a | a b c d | d d d d)
        index = np.clip(positions, 0, size - 1)
    else:  # "constant": (k k k k | a b c d | k k k k)
        index = np.where((positions < 0) | (positions >= size), 0, positions + 1)
    cells = size + 2 * (fill_mode == "constant")
    return (index[:, None] == np.arange(cells)[None, :]).astype(np.float32)


class RandomTranslation(_ImageAugmentation):
    """Shifts each image by (height, width) fractions drawn uniformly from the factors' ranges
    (a positive shift moves the image down / right), output pixel (i, j) reading the input at
    (i - dy, j - dx): "bilinear" blends the two nearest pixels along each axis, "nearest" takes
    the closest (halves round up). Outside the image, `fill_mode` reads "reflect" (d c b a |
    a b c d | d c b a), "wrap", "nearest" (the edge pixel) or "constant" (`fill_value`), per
    lattice point: at the wrap seam a fractional shift blends the two edges (TF clamps
    there)."""

    def __init__(self, height_factor, width_factor, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", seed=None, fill_value: float = 0.0,
                 data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        self.height_lower, self.height_upper = _factor_bounds(height_factor, "height_factor")
        self.width_lower, self.width_upper = _factor_bounds(width_factor, "width_factor")
        self.height_factor = (list(height_factor) if isinstance(height_factor, (tuple, list))
                              else height_factor)
        self.width_factor = (list(width_factor) if isinstance(width_factor, (tuple, list))
                             else width_factor)
        modes = ("reflect", "wrap", "constant", "nearest")
        if fill_mode not in modes:
            raise SymgraphError(f"RandomTranslation: Unknown `fill_mode` {fill_mode!r}. Expected "
                                f"one of {modes}.")
        if interpolation not in ("nearest", "bilinear"):
            raise SymgraphError(f"RandomTranslation: Unknown `interpolation` {interpolation!r}. "
                                "Expected one of ('nearest', 'bilinear').")
        if isinstance(fill_value, bool) or not isinstance(fill_value, numbers.Real):
            raise SymgraphError(f"RandomTranslation: fill_value must be a number, got "
                                f"{fill_value!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.fill_value = float(fill_value)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor, "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}

    def _reads(self, draw, size: int, lower: float, upper: float) -> list:
        """The matrices (batch, size, cells) whose sum over a matmul with the input's cells
        along one axis of `size` pixels is the translated axis, for each sample's shift
        (lower + draw * (upper - lower)) * size pixels, draw (batch, 1) uniform in [0, 1).

        Each matrix has at most one nonzero per row (a 0/1 gather, times the pixel's weight),
        so a matmul computes weight * pixel exactly on every backend; the shift enters the
        offsets k - (i - shift) of the extended-axis positions k from each output pixel i's
        source i - shift as (constant + draw) * scale, a multiply last, which no backend fuses
        into an FMA: every backend computes the same bits."""
        batch = draw.shape[0]
        lattice = np.arange(-size - 1, 2 * size + 1, dtype=np.float64)
        distance = lattice[None, :] - np.arange(size, dtype=np.float64)[:, None]  # k - i
        scale = (upper - lower) * size
        if scale == 0:
            offset = sg.constant((distance + lower * size).astype(np.float32)).reshape(
                (1, size, lattice.size)) + draw.reshape((batch, 1, 1)) * 0.0
        else:
            base = (distance + lower * size) / scale
            offset = (sg.constant(base.astype(np.float32)).reshape((1, size, lattice.size))
                      + draw.reshape((batch, 1, 1))) * scale
        to_cells = sg.constant(_lattice_to_pixels(size, self.fill_mode))

        def gather(low, high, weight=None):  # the position k with low < k - source <= high
            picked = sg.cast(sg.logical_and(offset > low, offset <= high), draw.dtype)
            return sg.matmul(picked if weight is None else picked * weight, to_cells)

        if self.interpolation == "nearest":
            return [gather(-0.5, 0.5)]
        # source - floor(source): the offset of the position just below (or at) the source
        below = sg.logical_and(offset > -1.0, offset <= 0.0)
        fraction = -sg.sum(sg.where(below, offset, 0.0), axis=-1, keepdims=True)
        return [gather(-1.0, 0.0, 1.0 - fraction), gather(0.0, 1.0, fraction)]

    def augment(self, x, ctx):
        batch, height, width, channels = x.shape
        draws = sg.random.uniform((batch, 2), call_seed(self, ctx), ctx.step, x.dtype)
        rows = self._reads(draws[:, 0:1], height, self.height_lower, self.height_upper)
        cols = self._reads(draws[:, 1:2], width, self.width_lower, self.width_upper)
        if self.fill_mode == "constant":  # a border of fill cells around the image
            index = ((0, None, 1), (1, height + 1, 1), (1, width + 1, 1), (0, None, 1))
            border = np.ones((1, height + 2, width + 2, 1), np.float32)
            border[:, 1:-1, 1:-1] = 0.0
            x = apply_unslice(x, index, (batch, height + 2, width + 2, channels)) + \
                sg.constant(border * np.float32(self.fill_value))
        cells_h, cells_w = x.shape[1], x.shape[2]
        flat = x.reshape((batch, cells_h, cells_w * channels))
        y = sum_of(sg.matmul(read, flat) for read in rows)
        y = sg.transpose(y.reshape((batch, height, cells_w, channels)), (0, 2, 1, 3))
        flat = y.reshape((batch, cells_w, height * channels))
        y = sum_of(sg.matmul(read, flat) for read in cols)
        return sg.transpose(y.reshape((batch, width, height, channels)), (0, 2, 1, 3))


def sum_of(terms):
    """The sum of an iterable of nodes."""
    terms = list(terms)
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out
