"""Keras 3's preprocessing layers: Normalization (statistics given or learned by `adapt`),
Discretization (bins given or learned by `adapt`) and CategoryEncoding. The image augmentation
layers (RandomFlip, RandomTranslation) are in augmentation.py.

`adapt(data)` runs in NumPy, outside any graph: `data` is an array (the whole data set) or an
iterable of batches (a list, a generator, a PyDataset; a batch may be an (x, y[, w]) tuple,
whose x is taken).
"""

from __future__ import annotations

import numbers

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.layers import Layer
from symgraph.nn.py_dataset import PyDataset
from symgraph.nn.symbolic import shape_text
from symgraph.ops.shapes import is_int

EPSILON = 1e-7  # Keras's backend epsilon: the floor of Normalization's standard deviation


def _adapt_batches(data, kind: str):
    """`adapt`'s data as float64 arrays: [data] for an array, else each batch of an iterable
    (the x of an (x, y[, w]) tuple)."""
    if isinstance(data, np.ndarray):
        return iter([np.asarray(data, np.float64)])
    if isinstance(data, PyDataset):
        dataset = data
        data = (dataset[i] for i in range(len(dataset)))
    elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise SymgraphError(f"{kind}.adapt: data must be a NumPy array or an iterable of batches "
                            f"(a list, a generator, a PyDataset), got {type(data).__name__}")

    def arrays():
        for batch in data:
            batch = batch[0] if isinstance(batch, tuple) else batch
            try:
                yield np.asarray(batch, np.float64)
            except (TypeError, ValueError) as err:
                raise SymgraphError(f"{kind}.adapt: a batch is not an array of numbers: "
                                    f"{type(batch).__name__} ({err})") from None

    return arrays()


def _check_batch(batch, first_shape, kind: str) -> None:
    if batch.ndim == 0 or (first_shape is not None and batch.shape[1:] != first_shape):
        want = "a batch axis" if first_shape is None else f"samples of shape {first_shape}"
        raise SymgraphError(f"{kind}.adapt: every batch needs {want}, got an array of shape "
                            f"{batch.shape}; nothing was adapted")


# --- Normalization ---------------------------------------------------------------------------

class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7), or with invert=True mean + x * max(sqrt(variance),
    1e-7), with one mean and variance per index of the `axis` axes (counted with the batch
    axis, -1 by default; None: one scalar over everything). Given `mean` and `variance`
    (broadcast onto the kept axes, aligned from the right) are constants of the layer's config;
    otherwise the layer holds them as non-trainable weights `mean`, `variance` (and Keras's
    `count`), learned by `adapt(data)` and saved with the model."""

    def __init__(self, axis=-1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        axis = (axis,) if is_int(axis) else axis
        if not isinstance(axis, (list, tuple)) or not all(is_int(a) for a in axis):
            raise SymgraphError(f"Normalization: axis must be an int, a tuple of ints or None, "
                                f"got {axis!r}")
        self.axis = tuple(int(a) for a in axis)
        if (mean is None) != (variance is None):
            raise SymgraphError(f"Normalization: When setting values directly, both `mean` and "
                                f"`variance` must be set. Received: mean={mean} and "
                                f"variance={variance}")
        if mean is not None:
            arrays = []
            for name, value in (("mean", mean), ("variance", variance)):
                try:
                    array = np.asarray(value, np.float64)
                except (TypeError, ValueError):
                    array = np.array([np.nan])
                if not np.all(np.isfinite(array)) or (name == "variance" and np.any(array < 0)):
                    raise SymgraphError(f"Normalization: {name} must be finite numbers (the "
                                        f"variance >= 0), got {value!r}")
                arrays.append(array)
            if arrays[0].shape != arrays[1].shape:
                raise SymgraphError(f"Normalization: When setting values directly, `mean` and "
                                    f"`variance` must have the same shape. Received: mean shape "
                                    f"{arrays[0].shape} and variance shape {arrays[1].shape}")
            if arrays[0].ndim > len(self.axis):
                raise SymgraphError(f"Normalization: The rank of `mean` must be less than or "
                                    f"equal to the number of axes ({len(self.axis)}). Received: "
                                    f"mean shape {arrays[0].shape} for axis {self.axis}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.mean = self.variance = self.count = None  # weights, or constant arrays if given
        self._broadcast_shape = None

    def get_config(self):
        def listed(value):
            return None if value is None else np.asarray(value, np.float64).tolist()

        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": listed(self.input_mean), "variance": listed(self.input_variance)}

    def _axes(self, input_shape) -> tuple:
        """(kept axes, reduced axes, the statistics' broadcast shape) for batched inputs of
        per-sample shape `input_shape`; the batch axis cannot be kept (its size is unknown)."""
        ndim = len(input_shape) + 1
        if any(not -ndim <= a < ndim for a in self.axis):
            raise SymgraphError(f"Normalization {self.name!r}: All `axis` values must be in the "
                                f"range [-ndim, ndim). Received inputs "
                                f"{shape_text(input_shape)} (ndim={ndim}), axis={self.axis}")
        keep = tuple(sorted({a % ndim for a in self.axis}))
        if 0 in keep:
            raise SymgraphError(f"Normalization {self.name!r}: axis={self.axis} keeps the batch "
                                "axis, whose size is unknown; keep feature axes only")
        shape = (1,) + tuple(d if i + 1 in keep else 1 for i, d in enumerate(input_shape))
        return keep, tuple(a for a in range(ndim) if a not in keep), shape

    def build(self, input_shape):
        keep, _, shape = self._axes(input_shape)
        self._broadcast_shape = shape
        if self.input_mean is None:
            stat_shape = tuple(shape[a] for a in keep)
            self.mean = self.add_weight("mean", stat_shape, "zeros", trainable=False)
            self.variance = self.add_weight("variance", stat_shape, "ones", trainable=False)
            self.count = self.add_weight("count", (), "zeros", trainable=False, dtype="int64")
        else:
            expanded = [1] * len(shape)
            given = np.asarray(self.input_mean, np.float64)
            for i in range(1, given.ndim + 1):
                expanded[keep[-i]] = given.shape[-i]
            try:
                self.mean, self.variance = (
                    np.broadcast_to(np.asarray(v, np.float64).reshape(expanded), shape)
                    .astype(self.dtype) for v in (self.input_mean, self.input_variance))
            except ValueError:
                raise SymgraphError(f"Normalization {self.name!r}: mean and variance of shape "
                                    f"{given.shape} do not broadcast onto the kept axes "
                                    f"{keep} of inputs {shape_text(input_shape)}") from None
        super().build(input_shape)

    def adapt(self, data) -> None:
        """The mean and (biased) variance of `data` over the reduced axes: computed at once
        for an array, merged batch by batch (Keras's formula) for an iterable of batches."""
        if self.input_mean is not None:
            raise SymgraphError(f"Normalization {self.name!r} was given mean and variance: "
                                "adapt() learns them (create the layer without)")
        total_mean = total_var = first_shape = None
        total_count = 0
        for batch in _adapt_batches(data, "Normalization"):
            _check_batch(batch, first_shape, "Normalization")
            if first_shape is None:
                first_shape = batch.shape[1:]
                if self.built and first_shape != tuple(self.input_shape):
                    raise SymgraphError(f"Normalization {self.name!r} was built for inputs "
                                        f"{shape_text(self.input_shape)}, but adapt() got "
                                        f"data of shape {batch.shape}; nothing was adapted")
                keep, reduce_axes, _ = self._axes(first_shape)
            mean, var = batch.mean(axis=reduce_axes), batch.var(axis=reduce_axes)
            if total_mean is None:
                total_mean, total_var = mean, var
                total_count = int(np.prod([batch.shape[a] for a in reduce_axes]))
                continue
            count = int(np.prod([batch.shape[a] for a in reduce_axes]))
            total_count += count
            weight = count / total_count
            new_mean = total_mean * (1 - weight) + mean * weight
            total_var = ((total_var + (total_mean - new_mean) ** 2) * (1 - weight)
                         + (var + (mean - new_mean) ** 2) * weight)
            total_mean = new_mean
        if total_mean is None:
            raise SymgraphError("Normalization.adapt: the data holds no batches")
        if not self.built:
            self.build(first_shape)
        self.mean.value = np.asarray(total_mean, self.dtype)
        self.variance.value = np.asarray(total_var, self.dtype)

    def call(self, x, ctx):
        if self.input_mean is None:
            shape = self._broadcast_shape
            mean, variance = self.mean.reshape(shape), self.variance.reshape(shape)
        else:
            mean, variance = sg.constant(self.mean), sg.constant(self.variance)
        std = sg.maximum(sg.sqrt(variance), EPSILON)
        return mean + x * std if self.invert else (x - mean) / std


# --- Discretization and CategoryEncoding ------------------------------------------------------

_ENCODINGS = ("one_hot", "multi_hot", "count")


def _encoded_shape(input_shape, depth: int, mode: str, layer) -> tuple:
    """Keras's output shape of an encoding: one_hot adds an axis of `depth` (replaces a last
    axis of size 1); multi_hot and count replace the last axis (the ids of one sample)."""
    input_shape = tuple(input_shape)
    if mode == "int":
        return input_shape
    if mode == "count" and len(input_shape) > 1:
        raise SymgraphError(f"{type(layer).__name__} {layer.name!r}: output_mode='count' takes "
                            f"inputs of rank 2 or less (None, ids), got {shape_text(input_shape)}")
    if input_shape and (mode != "one_hot" or input_shape[-1] == 1):
        return input_shape[:-1] + (depth,)
    return input_shape + (depth,)


def _encode(ids, depth: int, mode: str):
    """Integer ids as one_hot / multi_hot / count vectors of `depth` (float32); ids outside
    [0, depth) encode as zeros."""
    if mode == "one_hot":
        if ids.ndim > 1 and ids.shape[-1] == 1:
            ids = ids.reshape(tuple(ids.shape[:-1]))
        return sg.one_hot(ids, depth)
    if ids.ndim == 1:  # one id per sample
        ids = ids.reshape((ids.shape[0], 1))
    hot = sg.one_hot(ids, depth)
    return sg.max(hot, axis=-2) if mode == "multi_hot" else sg.sum(hot, axis=-2)


def _output_mode(output_mode, allowed, kind: str) -> str:
    if output_mode not in allowed:
        raise SymgraphError(f"{kind}: Invalid value for argument `output_mode`. Expected one of "
                            f"{', '.join(map(repr, allowed))}. Received: "
                            f"output_mode={output_mode!r}")
    return output_mode


def _no_sparse(sparse, kind: str) -> None:
    if sparse:
        raise SymgraphError(f"{kind}: sparse=True is not supported (symgraph has no sparse "
                            "tensors)")


def _quantile_summary(values: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's summary of sorted values: about 1/epsilon of them, each with the count it
    stands for (rows: values, weights)."""
    values = np.sort(values.reshape(-1))
    increment = values.size * epsilon
    step = max(increment, 1)
    picked = values[int(increment)::int(step)]
    return np.stack([picked, np.full_like(picked, step)])


def _compress_summary(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's compression: the values at the cumulative-weight fractions epsilon, 2 epsilon,
    ..., 1 (interpolated), with the weights between them."""
    if summary.shape[1] * epsilon < 1:
        return summary
    fractions = epsilon + np.arange(0.0, 1.0, epsilon)
    cumulative = summary[1].cumsum()
    at = cumulative / cumulative[-1]
    values = np.interp(fractions, at, summary[0])
    cumulative = np.interp(fractions, at, cumulative)
    weights = cumulative - np.concatenate(([0.0], cumulative[:-1]))
    return np.stack((values, weights)).astype(np.float32)


class Discretization(Layer):
    """Keras 3's Discretization: the index of each value's bin, np.digitize(x, bin_boundaries)
    (bins [-inf, b0), [b0, b1), ..., [b_last, inf); NaN lands in the last bin), as int64 with
    output_mode "int", or encoded ("one_hot", "multi_hot", "count") over len(bin_boundaries)+1
    bins. With `num_bins`, `adapt(data)` learns the boundaries as Keras does (approximate
    quantiles to `epsilon`); they are part of the config afterwards."""

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon: float = 0.01,
                 output_mode: str = "int", sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.output_mode = _output_mode(output_mode, ("int",) + _ENCODINGS, "Discretization")
        _no_sparse(sparse, "Discretization")
        if num_bins is not None and (not is_int(num_bins) or num_bins < 0):
            raise SymgraphError(f"Discretization: `num_bins` must be an int greater than or "
                                f"equal to 0. Received: `num_bins={num_bins!r}`")
        if num_bins is not None and bin_boundaries is not None:
            raise SymgraphError(f"Discretization: Both `num_bins` and `bin_boundaries` should "
                                f"not be set. Received: `num_bins={num_bins}` and "
                                f"`bin_boundaries={bin_boundaries}`")
        if num_bins is None and bin_boundaries is None:
            raise SymgraphError("Discretization: You need to set either `num_bins` or "
                                "`bin_boundaries`.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or \
                not 0 < epsilon <= 1:
            raise SymgraphError(f"Discretization: epsilon must be a number in (0, 1], got "
                                f"{epsilon!r}")
        self.bin_boundaries = (None if bin_boundaries is None
                               else self._checked_boundaries(bin_boundaries))
        self.num_bins = None if num_bins is None else int(num_bins)
        self.epsilon = float(epsilon)

    @staticmethod
    def _checked_boundaries(bins) -> list:
        try:
            array = np.asarray(bins, np.float64)
        except (TypeError, ValueError):
            array = np.array([[np.nan]])
        if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any(np.diff(array) < 0):
            raise SymgraphError(f"Discretization: bin_boundaries must be a list of finite numbers "
                                f"in increasing order, got {bins!r}")
        return array.tolist()

    @classmethod
    def from_config(cls, config):
        # an adapted layer's config holds num_bins and the learned boundaries (Keras's way)
        if config.get("bin_boundaries") is not None and config.get("num_bins") is not None:
            config = dict(config)
            bins = config.pop("bin_boundaries")
            layer = cls(**config)
            layer.bin_boundaries = cls._checked_boundaries(bins)
            return layer
        return cls(**config)

    def get_config(self):
        return {**super().get_config(), "bin_boundaries": self.bin_boundaries,
                "num_bins": self.num_bins, "epsilon": self.epsilon,
                "output_mode": self.output_mode, "sparse": False}

    def adapt(self, data, steps: int | None = None) -> None:
        """num_bins boundaries at the approximate quantiles of `data` (an array, or batches
        merged as Keras merges them); `steps` limits the batches read."""
        if self.num_bins is None:
            raise SymgraphError("Discretization: Cannot adapt a Discretization layer that has "
                                "been initialized with `bin_boundaries`, use `num_bins` instead.")
        summary = np.zeros((2, 0), np.float32)
        seen = 0
        for batch in _adapt_batches(data, "Discretization"):
            if steps is not None and seen >= steps:
                break
            seen += 1
            batch_summary = _quantile_summary(batch.astype(np.float32), self.epsilon)
            merged = np.concatenate((batch_summary, summary), axis=1)
            merged = merged[:, np.argsort(merged[0], kind="stable")]
            summary = _compress_summary(merged, self.epsilon)
        if summary.shape[1] == 0:
            raise SymgraphError("Discretization.adapt: the data holds no values")
        self.bin_boundaries = _compress_summary(summary, 1.0 / self.num_bins)[0, :-1].tolist()

    def compute_output_shape(self, input_shape):
        depth = None if self.bin_boundaries is None else len(self.bin_boundaries) + 1
        if self.output_mode != "int" and depth is None:
            raise SymgraphError(f"Discretization {self.name!r}: call adapt() before using the "
                                f"layer: output_mode={self.output_mode!r} needs the number of "
                                "bins")
        return _encoded_shape(input_shape, depth, self.output_mode, self)

    def call(self, x, ctx):
        if self.bin_boundaries is None:
            raise SymgraphError(f"Discretization {self.name!r}: You need to either pass the "
                                "`bin_boundaries` argument at construction time or call "
                                "`adapt(dataset)` before you can start using the layer.")
        bins = self.bin_boundaries
        # in float64, as np.digitize compares a float32 input with Python-float boundaries;
        # "not below" so that NaN counts as above every boundary (np.digitize's last bin)
        below = sg.cast(x, "float64").reshape(tuple(x.shape) + (1,)) < sg.constant(
            np.asarray(bins, np.float64))
        ids = len(bins) - sg.sum(sg.cast(below, "int64"), axis=-1)
        if self.output_mode == "int":
            return ids
        return _encode(ids, len(bins) + 1, self.output_mode)


class CategoryEncoding(Layer):
    """Keras 3's CategoryEncoding of integer ids in [0, num_tokens) (a float input is cast to
    int): "one_hot" (each id, a last axis of size 1 replaced), "multi_hot" (1 for each id
    present in a sample's last axis) or "count" (how often). Ids out of range encode as zeros
    (Keras raises instead; no check runs inside a compiled graph)."""

    def __init__(self, num_tokens=None, output_mode: str = "multi_hot", sparse: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        if output_mode == "binary":  # Keras's deprecated name
            output_mode = "multi_hot"
        self.output_mode = _output_mode(output_mode, _ENCODINGS, "CategoryEncoding")
        _no_sparse(sparse, "CategoryEncoding")
        if num_tokens is None:
            raise SymgraphError("CategoryEncoding: num_tokens must be set to use this layer")
        if not is_int(num_tokens) or num_tokens < 1:
            raise SymgraphError(f"CategoryEncoding: `num_tokens` must be >= 1. Received: "
                                f"num_tokens={num_tokens!r}.")
        self.num_tokens = int(num_tokens)

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens,
                "output_mode": self.output_mode}

    def compute_output_shape(self, input_shape):
        return _encoded_shape(input_shape, self.num_tokens, self.output_mode, self)

    def call(self, x, ctx):
        ids = x if x.dtype in ("int32", "int64") else sg.cast(x, "int64")
        return _encode(ids, self.num_tokens, self.output_mode)
