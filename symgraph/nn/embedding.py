"""Keras's Embedding layer: integer ids -> rows of a trained (input_dim, output_dim) table."""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import constraints, regularizers
from symgraph.nn.layers import Layer
from symgraph.nn.serialization import serialize
from symgraph.ops.shapes import is_int


class Embedding(Layer):
    """Row `id` of the embeddings for each id of the input (a float input is cast to int, as
    Keras does); the output gains an axis of size output_dim."""

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None,
                 mask_zero: bool = False, **kwargs):
        super().__init__(**kwargs)
        for what, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not is_int(value) or value <= 0:
                raise SymgraphError(f"Embedding: argument `{what}` must be a positive int, "
                                    f"got {what}={value!r}")
        if mask_zero:
            raise SymgraphError("Embedding: mask_zero=True is not supported (no masking)")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.embeddings = None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": serialize(self.embeddings_initializer),
                "embeddings_regularizer": serialize(self.embeddings_regularizer),
                "embeddings_constraint": serialize(self.embeddings_constraint),
                "mask_zero": False}

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def call(self, x, ctx):
        ids = x if x.dtype in ("int32", "int64") else sg.cast(x, "int64")
        return sg.take(self.embeddings, ids)

