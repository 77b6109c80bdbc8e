"""Metrics by Keras name. Each gives a per-sample value node; the training loop sums them over
the batch in the graph and keeps running totals in Python, so a metric is exact over an epoch
whatever the batch sizes.
"""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    hit = sg.equal(sg.cast(y_pred > threshold, y_pred.dtype), y_true)
    return sg.mean(sg.cast(hit, "float32"), -1)


def categorical_accuracy(y_true, y_pred):
    return sg.cast(sg.equal(sg.argmax(y_pred, -1), sg.argmax(y_true, -1)), "float32")


def sparse_categorical_accuracy(y_true, y_pred):
    labels = y_true.reshape(tuple(y_true.shape[:-1])) if y_true.ndim == y_pred.ndim else y_true
    return sg.cast(sg.equal(sg.argmax(y_pred, -1), sg.cast(labels, "int64")), "float32")


def shape_accuracy(y_true, y_pred):
    """Keras's "accuracy" for a loss that does not name one: chosen from the shapes, as
    keras.src.trainers.compile_utils.get_metric does (one output unit: binary accuracy)."""
    if y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred)
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return sg.mean_squared_error(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return sg.mean_absolute_error(y_true, y_pred)


_BY_NAME = {"binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
            "sparse_categorical_accuracy": sparse_categorical_accuracy,
            "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
            "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error}


def get(identifier, loss_name: str | None) -> tuple[str, object]:
    """(history name, per-sample fn); "accuracy"/"acc" picks the variant fitting the loss (from
    the shapes for another loss, or none)."""
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            if loss_name == "binary_crossentropy":
                return identifier, binary_accuracy
            if loss_name == "sparse_categorical_crossentropy":
                return identifier, sparse_categorical_accuracy
            if loss_name == "categorical_crossentropy":
                return identifier, categorical_accuracy
            return identifier, shape_accuracy
        if identifier in _BY_NAME:
            return identifier, _BY_NAME[identifier]
        raise SymgraphError(f"unknown metric {identifier!r}; known: accuracy, "
                            f"{', '.join(_BY_NAME)}")
    if callable(identifier):
        return getattr(identifier, "__name__", "metric"), identifier
    raise SymgraphError(f"cannot use {identifier!r} as a metric")
