"""Keras 3's small weightless layers: Softmax, Lambda (a user function), Identity, Rescaling
(x * scale + offset), RepeatVector and Permute.
"""

from __future__ import annotations

import inspect
import operator

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.graph import Node
from symgraph.nn.layers import Layer, _apply_activation
from symgraph.nn.normalization import AxisLayer
from symgraph.nn.serialization import serialize
from symgraph.nn.symbolic import shape_text


class Softmax(AxisLayer):
    """softmax over `axis` (an int or a list of axes, counted with the batch axis). Over the
    last axis it records its logits, as the "softmax" activation does, so a cross-entropy loss
    on its output is computed from them."""

    def call(self, x, ctx):
        if self._axes == (x.ndim - 1,):
            return _apply_activation(x, "softmax", ctx, self.name)
        if len(self._axes) == 1:
            return sg.softmax(x, self._axes[0])
        return sg.exp(x - sg.logsumexp(x, self._axes, keepdims=True))  # Keras's form


class Identity(Layer):
    """Returns its input unchanged."""

    def call(self, x, ctx):
        return x


class Lambda(Layer):
    """Wraps `function(x, **arguments)` (given `training=` too when it takes that argument) as a
    layer; it works on symgraph tensors (sg.tanh, operators, ...). The output shape is found by
    calling the function on a symbolic input; `output_shape` (without the batch dim, or a
    function of the full input shape, as in Keras) is checked against it.

    Saving stores the function by name: a Python lambda is refused (Keras refuses to load one
    by default: its bytecode could run anything), and a def function loads where it is
    registered with `register_serializable` or passed in `custom_objects`."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise SymgraphError(f"Lambda: function must be callable, got "
                                f"{type(function).__name__} {function!r}")
        if mask is not None:
            raise SymgraphError("Lambda: mask is not supported (symgraph has no masking)")
        if arguments is not None and not isinstance(arguments, dict):
            raise SymgraphError(f"Lambda: arguments must be a dict of keyword arguments, got "
                                f"{type(arguments).__name__} {arguments!r}")
        if isinstance(output_shape, list):  # as a config gives it back
            output_shape = tuple(output_shape)
        if not (output_shape is None or callable(output_shape) or isinstance(output_shape, tuple)):
            raise SymgraphError(f"Lambda: output_shape must be a tuple (without the batch dim) or "
                                f"a function of the input shape, got {output_shape!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self.output_shape_arg = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):
            params = {}
        self._takes_training = "training" in params

    def get_config(self):
        config = {**super().get_config(), "function": self._saved(self.function, "function")}
        if self.output_shape_arg is not None:
            shape = self.output_shape_arg
            config["output_shape"] = (self._saved(shape, "output_shape") if callable(shape)
                                      else list(shape))
        config["arguments"] = serialize(self.arguments)
        return config

    def _saved(self, fn, what: str):
        if getattr(fn, "__name__", None) == "<lambda>":
            raise SymgraphError(
                f"Lambda {self.name!r}: its {what} is a Python lambda, which cannot be saved "
                "(Keras refuses to load one: its code could do anything); define it with def "
                "and register it with @symgraph.nn.register_serializable()")
        return serialize(fn)

    def _apply(self, x, training: bool):
        kwargs = dict(self.arguments)
        if self._takes_training:
            kwargs["training"] = training
        return self.function(x, **kwargs)

    def compute_output_shape(self, input_shape):
        traced = sg.placeholder(("batch",) + tuple(input_shape), "float32", name="x")
        try:
            out = self._apply(traced, False)
        except Exception as err:
            raise SymgraphError(f"Lambda {self.name!r}: its function failed on an input of shape "
                                f"{shape_text(input_shape)}: {type(err).__name__}: {err}") from err
        if not isinstance(out, Node) or out.ndim == 0 or out.shape[0] != "batch":
            shown = (f"shape {tuple(out.shape)}" if isinstance(out, Node)
                     else f"{type(out).__name__} {out!r}"[:80])
            raise SymgraphError(f"Lambda {self.name!r}: its function must return a symgraph "
                                f"tensor whose first axis is the batch axis; given an input of "
                                f"shape {shape_text(input_shape)} it returned {shown}")
        found = tuple(out.shape[1:])
        declared = self.output_shape_arg
        if callable(declared):
            declared = tuple(declared((None,) + tuple(input_shape)))[1:]
        if declared is not None and tuple(declared) != found:
            raise SymgraphError(f"Lambda {self.name!r}: output_shape={self.output_shape_arg!r} "
                                f"declares outputs {shape_text(declared)}, but the function "
                                f"returns {shape_text(found)}")
        return found

    def call(self, x, ctx):
        return self._apply(x, ctx.training)


def _constant_argument(value, name: str):
    """Rescaling's scale or offset as a float32 array (a float or nested lists)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or isinstance(value, bool) or not np.all(np.isfinite(array)):
        raise SymgraphError(f"Rescaling: {name} must be a finite number or an array of them, got "
                            f"{value!r}")
    return array


class Rescaling(Layer):
    """x * scale + offset, in training and inference alike; scale and offset are numbers or
    arrays that broadcast against the input (per channel, say)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self._scale = _constant_argument(scale, "scale")
        self._offset = _constant_argument(offset, "offset")
        self.scale = float(self._scale) if self._scale.ndim == 0 else self._scale.tolist()
        self.offset = float(self._offset) if self._offset.ndim == 0 else self._offset.tolist()

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}

    def build(self, input_shape):
        batched = (1,) + tuple(input_shape)
        for name, array in (("scale", self._scale), ("offset", self._offset)):
            try:
                fits = np.broadcast_shapes(batched, array.shape) == batched
            except ValueError:
                fits = False
            if not fits:
                raise SymgraphError(f"Rescaling {self.name!r}: {name} of shape {array.shape} does "
                                    f"not broadcast to inputs of shape {shape_text(input_shape)}")
        super().build(input_shape)

    def call(self, x, ctx):
        scale = self.scale if self._scale.ndim == 0 else sg.constant(self._scale.astype(x.dtype))
        offset = (self.offset if self._offset.ndim == 0
                  else sg.constant(self._offset.astype(x.dtype)))
        return x * scale + offset


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features): the input repeated n times."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        try:
            n = operator.index(n)
        except TypeError:
            n = None
        if n is None or n < 1:
            raise SymgraphError(f"RepeatVector: n must be a positive integer, got {n!r}")
        self.n = n

    def get_config(self):
        return {**super().get_config(), "n": self.n}

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise SymgraphError(f"RepeatVector {self.name!r} takes inputs of shape (None, "
                                f"features), got {shape_text(input_shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (self.n,) + tuple(input_shape)

    def call(self, x, ctx):
        batch, features = x.shape
        return sg.broadcast_to(x.reshape((batch, 1, features)), (batch, self.n, features))


class Permute(Layer):
    """Reorders the feature axes: dims is a permutation of 1..rank (the batch axis, 0, stays),
    e.g. Permute((2, 1)) turns (None, 10, 64) into (None, 64, 10)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        valid = isinstance(dims, (list, tuple)) and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims)
        if not valid or sorted(dims) != list(range(1, len(dims) + 1)):
            raise SymgraphError(f"Permute: dims must be a permutation of 1..rank (the feature "
                                f"axes; the batch axis is not listed), e.g. (2, 1); got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}

    def build(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise SymgraphError(f"Permute {self.name!r} with dims={self.dims} takes inputs with "
                                f"{len(self.dims)} feature axes, got {shape_text(input_shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[d - 1] for d in self.dims)

    def call(self, x, ctx):
        return sg.transpose(x, (0,) + self.dims)
