"""Keras's Reshape layer (Flatten lives in layers.py)."""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.layers import Layer
from symgraph.nn.symbolic import shape_text
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
