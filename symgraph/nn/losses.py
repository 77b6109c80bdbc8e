"""Losses by Keras name. Each gives a per-sample loss node; models reduce with the mean over the
batch (Keras's "sum_over_batch_size").

When the model's output is a softmax (sigmoid) and the loss a categorical (binary, or binary
focal) cross-entropy, the model hands the pre-activation logits over and the loss is computed from
them, as Keras's TensorFlow backend does: it is exact where the clipped-probability form
saturates.
"""

from __future__ import annotations

import inspect
import math
import numbers

import symgraph as sg
from symgraph.composites import EPSILON
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
    """Keras's BinaryCrossentropy(from_logits=False, label_smoothing=0.0): targets smoothed
    towards 0.5 as t * (1 - s) + 0.5 * s, mean over the last axis."""

    name = "binary_crossentropy"
    logits_kind = "sigmoid"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        super().__init__(from_logits)
        self.label_smoothing = _smoothing(label_smoothing, type(self).__name__)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def per_sample(self, y_true, y_pred, logits=None):
        y_true = _smoothed_binary(y_true, y_pred, self.label_smoothing)
        if self.from_logits:
            return sg.binary_crossentropy(y_true, y_pred, from_logits=True)
        if logits is not None:
            return sg.binary_crossentropy(y_true, logits, from_logits=True)
        return sg.binary_crossentropy(y_true, y_pred)


class CategoricalCrossentropy(Loss):
    """Keras's CategoricalCrossentropy(from_logits=False, label_smoothing=0.0): one-hot targets
    smoothed as t * (1 - s) + s / classes."""

    name = "categorical_crossentropy"
    logits_kind = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        super().__init__(from_logits)
        self.label_smoothing = _smoothing(label_smoothing, type(self).__name__)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}

    def per_sample(self, y_true, y_pred, logits=None):
        s = self.label_smoothing
        if s:
            y_true = sg.as_node(y_true, like=y_pred) * (1.0 - s) + s / y_pred.shape[-1]
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


class BinaryFocalCrossentropy(Loss):
    """Keras's BinaryFocalCrossentropy(apply_class_balancing=False, alpha=0.25, gamma=2.0,
    from_logits=False, label_smoothing=0.0): the binary cross-entropy times (1 - p_t) ** gamma,
    p_t = t * p + (1 - t) * (1 - p), times alpha (class 1) / 1 - alpha (class 0) when balancing;
    the cross-entropy is taken from the logits where they are known (stable)."""

    name = "binary_focal_crossentropy"
    logits_kind = "sigmoid"

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25,
                 gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0):
        super().__init__(from_logits)
        self.apply_class_balancing = bool(apply_class_balancing)
        self.alpha = _number(alpha, "alpha", type(self).__name__)
        self.gamma = _number(gamma, "gamma", type(self).__name__, low=0.0)
        self.label_smoothing = _smoothing(label_smoothing, type(self).__name__)

    def get_config(self) -> dict:
        return {"apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha,
                "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}

    def per_sample(self, y_true, y_pred, logits=None):
        t = _smoothed_binary(y_true, y_pred, self.label_smoothing)
        if self.from_logits:
            logits = y_pred
        if logits is not None:
            p = sg.sigmoid(logits)
            bce = sg.sigmoid_cross_entropy(logits, t)
        else:
            p = y_pred
            q = sg.clip(p, EPSILON, 1.0 - EPSILON)
            bce = -(t * sg.log(q) + (1.0 - t) * sg.log(1.0 - q))
        p_t = t * p + (1.0 - t) * (1.0 - p)
        focal = bce if self.gamma == 0 else sg.power(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (t * self.alpha + (1.0 - t) * (1.0 - self.alpha)) * focal
        return sg.mean(focal, -1)


class Huber(Loss):
    """Keras's Huber(delta=1.0): 0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2."""

    name = "huber_loss"

    def __init__(self, delta: float = 1.0):
        self.from_logits = False
        self.delta = _number(delta, "delta", type(self).__name__, low=0.0)

    def get_config(self) -> dict:
        return {"delta": self.delta}

    def per_sample(self, y_true, y_pred, logits=None):
        return huber(y_true, y_pred, self.delta)


class CosineSimilarity(Loss):
    """Keras's CosineSimilarity(axis=-1): minus the cosine of y_true and y_pred along `axis`."""

    name = "cosine_similarity"

    def __init__(self, axis: int = -1):
        self.from_logits = False
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise SymgraphError(f"CosineSimilarity: `axis` must be an int, got {axis!r}")
        self.axis = int(axis)

    def get_config(self) -> dict:
        return {"axis": self.axis}

    def per_sample(self, y_true, y_pred, logits=None):
        return cosine_similarity(y_true, y_pred, self.axis)


class _PlainLoss(Loss):
    """A loss without arguments: `fn(y_true, y_pred)` per sample."""

    fn = None

    def __init__(self):
        self.from_logits = False

    def get_config(self) -> dict:
        return {}

    def per_sample(self, y_true, y_pred, logits=None):
        return type(self).fn(y_true, y_pred)


# --- Keras 3's formulas (keras/src/losses/losses.py), per sample ----------------------------

def _pair(y_true, y_pred):
    y_pred = sg.as_node(y_pred)
    return sg.as_node(y_true, like=y_pred), y_pred


def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(|(t - p) / max(|t|, eps)|)."""
    t, p = _pair(y_true, y_pred)
    return sg.mean(sg.abs((t - p) / sg.maximum(sg.abs(t), EPSILON)), -1) * 100.0


def mean_squared_logarithmic_error(y_true, y_pred):
    """mean((log(max(p, eps) + 1) - log(max(t, eps) + 1))^2)."""
    t, p = _pair(y_true, y_pred)
    d = sg.log1p(sg.maximum(p, EPSILON)) - sg.log1p(sg.maximum(t, EPSILON))
    return sg.mean(d * d, -1)


def l2_normalize(x, axis: int = -1):
    """Keras's normalize: x * min(1/sqrt(sum(x^2)), 1/eps), written as 1/sqrt(max(sum, eps^2))
    (the same value, with a finite gradient at a zero vector)."""
    square_sum = sg.sum(x * x, axis, keepdims=True)
    return x / sg.sqrt(sg.maximum(square_sum, EPSILON * EPSILON))


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """-sum(l2_normalize(t) * l2_normalize(p)) along `axis` (Keras's loss; the metric of that
    name is plus the sum)."""
    t, p = _pair(y_true, y_pred)
    return -sg.sum(l2_normalize(t, axis) * l2_normalize(p, axis), axis)


def huber(y_true, y_pred, delta: float = 1.0):
    t, p = _pair(y_true, y_pred)
    e = p - t
    a = sg.abs(e)
    return sg.mean(sg.where(a <= delta, 0.5 * e * e, delta * a - 0.5 * delta * delta), -1)


def log_cosh(y_true, y_pred):
    """mean(log(cosh(e))) as e + softplus(-2e) - log(2) (no overflow)."""
    t, p = _pair(y_true, y_pred)
    e = p - t
    return sg.mean(e + sg.softplus(e * -2.0) - math.log(2.0), -1)


def kl_divergence(y_true, y_pred):
    """sum(t * log(t / p)), t and p clipped to [eps, 1]."""
    t, p = _pair(y_true, y_pred)
    t, p = sg.clip(t, EPSILON, 1.0), sg.clip(p, EPSILON, 1.0)
    return sg.sum(t * sg.log(t / p), -1)


def poisson(y_true, y_pred):
    """mean(p - t * log(p + eps))."""
    t, p = _pair(y_true, y_pred)
    return sg.mean(p - t * sg.log(p + EPSILON), -1)


def _hinge_labels(t):
    """Keras's convert_binary_labels_to_hinge: labels that are all 0 or 1 (in the batch)
    become -1 / 1; others stay as given."""
    binary = sg.logical_or(sg.equal(t, 0.0), sg.equal(t, 1.0))
    all_binary = sg.min(sg.cast(binary, "int32")) > 0
    return sg.where(all_binary, t * 2.0 - 1.0, t)


def hinge(y_true, y_pred):
    """mean(max(1 - t * p, 0)), 0/1 labels taken as -1/1."""
    t, p = _pair(y_true, y_pred)
    return sg.mean(sg.maximum(1.0 - _hinge_labels(t) * p, 0.0), -1)


def squared_hinge(y_true, y_pred):
    t, p = _pair(y_true, y_pred)
    m = sg.maximum(1.0 - _hinge_labels(t) * p, 0.0)
    return sg.mean(m * m, -1)


def categorical_hinge(y_true, y_pred):
    """max(max((1 - t) * p) - sum(t * p) + 1, 0)."""
    t, p = _pair(y_true, y_pred)
    pos = sg.sum(t * p, -1)
    neg = sg.max((1.0 - t) * p, -1)
    return sg.maximum(neg - pos + 1.0, 0.0)


class MeanAbsolutePercentageError(_PlainLoss):
    name = "mean_absolute_percentage_error"
    fn = mean_absolute_percentage_error


class MeanSquaredLogarithmicError(_PlainLoss):
    name = "mean_squared_logarithmic_error"
    fn = mean_squared_logarithmic_error


class LogCosh(_PlainLoss):
    name = "log_cosh"
    fn = log_cosh


class KLDivergence(_PlainLoss):
    name = "kl_divergence"
    fn = kl_divergence


class Poisson(_PlainLoss):
    name = "poisson"
    fn = poisson


class Hinge(_PlainLoss):
    name = "hinge"
    fn = hinge


class SquaredHinge(_PlainLoss):
    name = "squared_hinge"
    fn = squared_hinge


class CategoricalHinge(_PlainLoss):
    name = "categorical_hinge"
    fn = categorical_hinge


def _number(value, what: str, owner: str, low: float | None = None) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or (low is not None and value < low)):
        bound = "" if low is None else f" >= {low:g}"
        raise SymgraphError(f"{owner}: `{what}` must be a finite number{bound}; received: "
                            f"{what}={value!r}")
    return float(value)


def _smoothing(value, owner: str) -> float:
    value = _number(value, "label_smoothing", owner, low=0.0)
    if value > 1:
        raise SymgraphError(f"{owner}: `label_smoothing` must lie in [0, 1]; received: "
                            f"label_smoothing={value!r}")
    return value


def _smoothed_binary(y_true, y_pred, s: float):
    """Binary targets squeezed towards 0.5 by `s` (Keras: t * (1 - s) + 0.5 * s)."""
    if not s:
        return y_true
    return sg.as_node(y_true, like=sg.as_node(y_pred)) * (1.0 - s) + 0.5 * s


_BY_NAME = {
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError,
    "huber": Huber, "huber_loss": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence, "poisson": Poisson,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "cosine_similarity": CosineSimilarity,
}


def get(identifier) -> Loss:
    """A Loss from a Keras name, a Loss instance or class, or a function (y_true, y_pred) ->
    per sample."""
    if isinstance(identifier, Loss):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
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
