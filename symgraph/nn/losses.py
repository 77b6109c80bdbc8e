"""Losses by Keras name. Each gives a per-sample loss node; models reduce with the mean over the
batch (Keras's "sum_over_batch_size").

When the model's output is a softmax (sigmoid) and the loss a categorical (binary)
cross-entropy, the model hands the pre-activation logits over and the loss is computed from
them, as Keras's TensorFlow backend does: it is exact where the clipped-probability form
saturates.
"""

from __future__ import annotations

import math
import numbers

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable


class Loss(Serializable):
    """`per_sample(y_true, y_pred, logits=None) -> (batch,) node`."""

    name = "loss"
    sparse = False         # labels are integer class ids
    logits_kind = None     # "softmax" / "sigmoid": the activation whose logits it can use

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}

    def per_sample(self, y_true, y_pred, logits=None):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """Mean loss over the batch, as calling a Keras loss object gives."""
        return sg.mean(self.per_sample(y_true, y_pred))


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    logits_kind = "sigmoid"

    def per_sample(self, y_true, y_pred, logits=None):
        if self.from_logits:
            return sg.binary_crossentropy(y_true, y_pred, from_logits=True)
        if logits is not None:
            return sg.binary_crossentropy(y_true, logits, from_logits=True)
        return sg.binary_crossentropy(y_true, y_pred)


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    logits_kind = "softmax"

    def per_sample(self, y_true, y_pred, logits=None):
        if self.from_logits:
            return sg.categorical_crossentropy(y_true, y_pred, from_logits=True)
        if logits is not None:
            return sg.categorical_crossentropy(y_true, logits, from_logits=True)
        return sg.categorical_crossentropy(y_true, y_pred)


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    sparse = True
    logits_kind = "softmax"

    def per_sample(self, y_true, y_pred, logits=None):
        if self.from_logits:
            return sg.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        if logits is not None:
            return sg.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        return sg.sparse_categorical_crossentropy(y_true, y_pred)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def per_sample(self, y_true, y_pred, logits=None):
        return sg.mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def per_sample(self, y_true, y_pred, logits=None):
        return sg.mean_absolute_error(y_true, y_pred)


_BY_NAME = {
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}


def get(identifier) -> Loss:
    """A Loss from a Keras name, a Loss instance, or a function (y_true, y_pred) -> per sample."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise SymgraphError(f"unknown loss {identifier!r}; known: {', '.join(_BY_NAME)}")
        return _BY_NAME[identifier]()
    if callable(identifier):
        return _FunctionLoss(identifier)
    raise SymgraphError(f"compile() needs a loss: a Keras name or a callable, got {identifier!r}")


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.name = getattr(fn, "__name__", "loss")

    def per_sample(self, y_true, y_pred, logits=None):
        out = self.fn(y_true, y_pred)
        while out.ndim > 1:
            out = sg.mean(out, -1)
        return out


def loss_weight(loss_weights) -> float:
    """compile's `loss_weights` for the model's one output: a number, a one-element list or a
    one-entry dict (Keras multiplies that output's loss by it; penalties stay unweighted)."""
    given = loss_weights
    if loss_weights is None:
        return 1.0
    if isinstance(loss_weights, dict) and len(loss_weights) == 1:
        loss_weights = next(iter(loss_weights.values()))
    elif isinstance(loss_weights, (list, tuple)) and len(loss_weights) == 1:
        loss_weights = loss_weights[0]
    if (isinstance(loss_weights, bool) or not isinstance(loss_weights, numbers.Real)
            or not math.isfinite(loss_weights)):
        raise SymgraphError("compile: `loss_weights` must be a finite number (or a one-element "
                            "list or dict) for a model with one output; got "
                            f"{type(given).__name__} {given!r}")
    return float(loss_weights)
