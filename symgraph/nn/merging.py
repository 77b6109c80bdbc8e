"""Keras's merge layers, called on a list of symbolic tensors in a functional model:
Add, Subtract, Multiply, Average, Maximum, Minimum (element by element, inputs whose shapes
broadcast) and Concatenate (along one axis; the other axes must agree).
"""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.layers import Layer
from symgraph.nn.symbolic import shape_text
from symgraph.ops.shapes import broadcast_shapes


class Merge(Layer):
    """Combines a list of inputs element by element, left to right. As in Keras 3, the inputs'
    shapes broadcast: aligned on their last axis (the batch axis apart), an axis of size 1 takes
    the other's size, and a lower-rank input gets axes of size 1 right after the batch axis."""

    takes_list = True

    def build(self, input_shape):
        self._broadcast(input_shape)  # raises on shapes that do not broadcast
        super().build(input_shape)

    def _broadcast(self, shapes) -> tuple:
        """The output shape: Keras's _compute_elemwise_op_output_shape, left to right, which is
        NumPy's broadcasting of the feature shapes."""
        out = tuple(shapes[0])
        for i, shape in enumerate(shapes[1:], 1):
            try:
                out = broadcast_shapes(out, tuple(shape))
            except SymgraphError:
                so_far = "input 0 is" if i == 1 else f"inputs 0-{i - 1} broadcast to"
                raise SymgraphError(
                    f"{type(self).__name__} {self.name!r} needs inputs whose shapes broadcast "
                    f"(aligned on the last axis, each axis equal or 1); {so_far} "
                    f"{shape_text(out)} but input {i} is {shape_text(shape)}") from None
        return out

    def compute_output_shape(self, input_shape):
        return self._broadcast(input_shape)

    def call(self, xs, ctx):
        rank = max(x.ndim for x in xs)
        out, *rest = [x if x.ndim == rank else  # Keras: expand_dims(x, 1) up to the top rank
                      x.reshape((x.shape[0],) + (1,) * (rank - x.ndim) + tuple(x.shape[1:]))
                      for x in xs]
        for x in rest:
            out = self.combine(out, x)
        return out

    def combine(self, a, b):
        raise NotImplementedError


class Add(Merge):
    def combine(self, a, b):
        return a + b


class Subtract(Merge):
    """inputs[0] - inputs[1]: exactly two inputs."""

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise SymgraphError(f"Subtract {self.name!r} takes exactly 2 inputs, got "
                                f"{len(input_shape)}")
        super().build(input_shape)

    def combine(self, a, b):
        return a - b


class Multiply(Merge):
    def combine(self, a, b):
        return a * b


class Maximum(Merge):
    def combine(self, a, b):
        return sg.maximum(a, b)


class Minimum(Merge):
    def combine(self, a, b):
        return sg.minimum(a, b)


class Average(Merge):
    def combine(self, a, b):
        return a + b

    def call(self, xs, ctx):
        return super().call(xs, ctx) * (1.0 / len(xs))


class Concatenate(Layer):
    """Joins the inputs along `axis` (counted with the batch axis, so -1 is the last feature
    axis and 0, the batch, is refused); every other axis must agree."""

    takes_list = True

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise SymgraphError(f"Concatenate {self.name!r}: axis must be an integer (counted "
                                f"with the batch axis, e.g. -1), got {type(axis).__name__} "
                                f"{axis!r}")
        self.axis = int(axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def _feature_axis(self, rank: int) -> int:
        """The axis in a shape without the batch dim (rank features)."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise SymgraphError(f"Concatenate {self.name!r}: axis={self.axis} is not a feature "
                                f"axis of inputs of shape (None, ...) with {rank} feature axes")
        return axis - 1

    def build(self, input_shape):
        first = input_shape[0]
        axis = self._feature_axis(len(first))
        for i, shape in enumerate(input_shape[1:], 1):
            rest = [d for a, d in enumerate(shape) if a != axis]
            if len(shape) != len(first) or rest != [d for a, d in enumerate(first) if a != axis]:
                raise SymgraphError(f"Concatenate {self.name!r} (axis={self.axis}) needs inputs "
                                    f"that agree on every other axis; input 0 is "
                                    f"{shape_text(first)} but input {i} is {shape_text(shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        axis = self._feature_axis(len(input_shape[0]))
        shape = list(input_shape[0])
        shape[axis] = sum(s[axis] for s in input_shape)
        return tuple(shape)

    def call(self, xs, ctx):
        return sg.concatenate(xs, axis=self._feature_axis(len(self.output_shape)) + 1)
