"""Keras's `sample_weight` and `class_weight`, checked and turned into one float32 weight per
sample, the third input of a weighted step (steps.py); a multi-output model's step takes one
weight array per output that takes targets (SampleWeights).

Keras 3's rules: `sample_weight` has one weight per sample (shape (n,) or (n, 1)); `class_weight`
maps class indices to weights, a class missing from it weighs 1, and the class of a sample is
its sparse label, the argmax of a one-hot label, or a single-unit label rounded; the two
arguments together are an error. Negative weights are allowed, as in Keras; NaN and inf are not.
With several outputs (keras/src/trainers/data_adapters/array_data_adapter.py) one array weighs
every output, or one array per output (a list or a dict, as y; None: weights of 1) weighs each
output's loss and weighted metrics; `class_weight` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn import losses
from symgraph.nn.model_inputs import InputArrays
from symgraph.nn.model_outputs import per_output

_FLOAT32_MAX = float(np.finfo(np.float32).max)
CLASSIFICATION_LOSSES = (losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                         losses.SparseCategoricalCrossentropy)


class SampleWeights(InputArrays):
    """The checked sample weights of a multi-output model: one float32 array per output that
    takes targets (in the order of TargetArrays); rows slice every array together."""


def check_sample_weight(value, n: int, what: str, model=None):
    """`value` as a float32 array of one finite weight for each of `n` samples (None stays None);
    `what` names the argument in errors, e.g. "fit: sample_weight". For a multi-output `model`,
    SampleWeights: `value` one array for every output, or a list or dict of arrays per output."""
    if value is None:
        return None
    if getattr(model, "multi_outputs", None):
        return _per_output(value, n, what, model)
    return _one_array(value, n, what)


def _per_output(value, n: int, what: str, model) -> SampleWeights:
    """A multi-output model's weights: a list (entries arrays or None, not numbers) or a dict is
    per output, spread as y is; anything else is one array for every output, as Keras repeats
    it. An output whose weights are None weighs its samples 1."""
    heads = [h for h in model.output_heads if h.needs_targets]
    if not (isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and all(
            v is None or np.ndim(v) > 0 for v in value))):
        return SampleWeights((_one_array(value, n, what),) * len(heads))
    values = per_output(model, dict(value) if isinstance(value, Mapping) else value, what,
                        "weight array")
    by_name = dict(zip(model.output_names, values))
    return SampleWeights(tuple(
        np.ones(n, np.float32) if by_name[h.name] is None
        else _one_array(by_name[h.name], n, f"{what} of output {h.name!r}") for h in heads))


def _one_array(value, n: int, what: str) -> np.ndarray:
    """One finite float32 weight per sample."""
    try:
        weights = np.asarray(value)
    except (ValueError, TypeError) as exc:  # a ragged list, say
        raise SymgraphError(f"{what} must be a numeric array of shape ({n},) ({exc})") from None
    if weights.dtype.kind not in "fiub":
        raise SymgraphError(f"{what} must be numeric, got dtype {weights.dtype}")
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (n,):
        raise SymgraphError(f"{what} must have shape ({n},), one weight per sample of x; got "
                            f"shape {weights.shape}")
    finite = np.abs(weights.astype(np.float64)) <= _FLOAT32_MAX  # False for NaN and inf
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise SymgraphError(f"{what} must be finite float32 numbers: sample {i} has weight "
                            f"{weights[i]}")
    return weights.astype(np.float32)


def class_weight_to_sample_weights(class_weight, y: np.ndarray, model, what: str) -> np.ndarray:
    """Each sample's weight from `class_weight` {class index: weight} and its checked labels `y`
    (Trainer._check_y's: int labels for a sparse loss, else float of the output's shape)."""
    if getattr(model, "multi_outputs", None):
        raise SymgraphError(f"{what}: class_weight is only supported for models with one output "
                            f"(as in Keras 3); model {model.name!r} has "
                            f"{len(model.multi_outputs)}: fold the class weights into "
                            "sample_weight")
    loss, last = model.loss, model.output_layer
    out_shape = tuple(model.output_shape)
    if not isinstance(loss, CLASSIFICATION_LOSSES):
        raise SymgraphError(f"{what}: class_weight needs a classification loss (binary, "
                            f"categorical or sparse categorical cross-entropy); the model's loss "
                            f"is {loss.name}")
    if len(out_shape) != 1:
        raise SymgraphError(f"{what}: class_weight needs an output of shape (None, classes); "
                            f"layer {last.name!r} gives (None, {', '.join(map(str, out_shape))})")
    if not isinstance(class_weight, Mapping):
        raise SymgraphError(f"{what}: class_weight must be a dict {{class index: weight}}, got "
                            f"{type(class_weight).__name__} {class_weight!r}")
    classes = max(out_shape[0], 2)  # one unit (sigmoid) holds classes 0 and 1
    table = np.ones(classes)
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise SymgraphError(f"{what}: class_weight keys must be integer class indices, got "
                                f"{key!r} ({type(key).__name__})")
        if not 0 <= key < classes:
            raise SymgraphError(
                f"{what}: class_weight key {key} is no class of layer {last.name!r} output shape "
                f"(None, {out_shape[0]}): the classes are 0 to {classes - 1}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer,
                                                               np.floating)) \
                or not abs(weight) <= _FLOAT32_MAX:
            raise SymgraphError(f"{what}: class_weight[{key}] must be a finite number, got "
                                f"{weight!r}")
        table[key] = weight
    if loss.sparse:
        ids = y
    elif out_shape[0] > 1:
        ids = np.argmax(y, axis=-1)
    else:
        ids = np.round(y[:, 0]).astype(np.int64)
    inside = (ids >= 0) & (ids < classes)  # a rounded binary label of 2, say: weight 1, as Keras
    weights = np.ones(len(y), np.float32)
    weights[inside] = table[ids[inside]]
    return weights


def refuse_both(sample_weight, class_weight, what: str) -> None:
    if sample_weight is not None and class_weight is not None:
        raise SymgraphError(f"{what}: sample_weight and class_weight cannot be given together "
                            "(as in Keras 3); fold the class weights into sample_weight")


def resolve(sample_weight, class_weight, y: np.ndarray, model, what: str) -> np.ndarray | None:
    """The per-sample weights of a batch from either argument, or None."""
    refuse_both(sample_weight, class_weight, what)
    if class_weight is not None:
        return class_weight_to_sample_weights(class_weight, y, model, what)
    return check_sample_weight(sample_weight, len(y), f"{what}: sample_weight", model)
