"""Metrics by Keras name or object.

A mean metric (a function, or an object called as one) gives a per-sample value node; the
training loop sums them over the batch in the graph and keeps running totals in Python, so a
metric is exact over an epoch whatever the batch sizes. An accumulating metric (`Accumulator`:
Precision, Recall, AUC, F1Score, Keras's confusion-matrix metrics) gives several sums per batch
(true positives, false positives, ... per threshold), which the loop adds up over the epoch
and combines once at its end (`result`): a ratio of epoch sums, not a mean of batch ratios.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

import symgraph as sg
from symgraph.composites import EPSILON
from symgraph.errors import SymgraphError
from symgraph.nn import losses
from symgraph.nn.serialization import Serializable


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


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """Keras's metric: the cosine of y_true and y_pred (plus; the loss is minus it)."""
    return -losses.cosine_similarity(y_true, y_pred, axis)


def binary_crossentropy(y_true, y_pred):
    return losses.BinaryCrossentropy().per_sample(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred):
    return losses.CategoricalCrossentropy().per_sample(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred):
    return losses.SparseCategoricalCrossentropy().per_sample(y_true, y_pred)


def _in_top_k(targets, y_pred, k: int):
    """Keras's in_top_k: fewer than k classes score strictly above the target's (ties in)."""
    hit = sg.equal(sg.expand_dims(targets, -1),
                   sg.constant(np.arange(y_pred.shape[-1], dtype=np.int64)))
    at_target = sg.max(sg.where(hit, y_pred, -np.inf), -1, keepdims=True)
    above = sg.sum(sg.cast(y_pred > at_target, "int32"), -1)
    return sg.cast(above < k, "float32")


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    """1 where the one-hot target's class is among the k highest predictions."""
    return _in_top_k(sg.argmax(y_true, -1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    """1 where the label is among the k highest predictions."""
    labels = y_true.reshape(tuple(y_true.shape[:-1])) if y_true.ndim == y_pred.ndim else y_true
    return _in_top_k(sg.cast(labels, "int64"), y_pred, k)


class Metric(Serializable):
    """A metric object compile takes, Keras's metric classes: its `name` is its log name."""

    name = "metric"

    def get_config(self) -> dict:
        return {"name": self.name}


class TopKCategoricalAccuracy(Metric):
    """Keras's TopKCategoricalAccuracy(k=5): a mean metric over one-hot targets."""

    fn = staticmethod(top_k_categorical_accuracy)

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy"):
        self.k = _count(k, "k", type(self).__name__)
        self.name = name

    def get_config(self) -> dict:
        return {"name": self.name, "k": self.k}

    def __call__(self, y_true, y_pred):
        return self.fn(y_true, y_pred, self.k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Keras's SparseTopKCategoricalAccuracy(k=5): a mean metric over integer labels."""

    fn = staticmethod(sparse_top_k_categorical_accuracy)

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy"):
        super().__init__(k, name)


class Accumulator(Metric):
    """A metric whose epoch value combines sums over every batch of the epoch:
    `batch_sums(y_true, y_pred, w)` gives the batch's sums (nodes; `w` the sample weights, or
    None), `sum_count` of them, `result(totals)` the value from their epoch totals (float64
    arrays)."""

    sum_count = 0

    def batch_sums(self, y_true, y_pred, w) -> list:
        raise NotImplementedError

    def result(self, totals: list) -> float:
        raise NotImplementedError


_NEG_INF = -1e10  # Keras's metrics_utils.NEG_INF: the score of a class outside the top k


def _top_k_mask(x, k: int):
    """Whether each entry is among the k largest on the last axis (ties: the lower index
    first, as top_k picks them)."""
    c = x.shape[-1]
    row, other = sg.expand_dims(x, -1), sg.expand_dims(x, -2)  # [..., j, i]: x_j, x_i
    earlier = sg.constant(np.tri(c, k=-1, dtype=bool))          # i < j
    before = sg.logical_or(other > row, sg.logical_and(sg.equal(other, row), earlier))
    return sg.sum(sg.cast(before, "int32"), -1) < k


def _divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b != 0, a / np.where(b != 0, b, 1.0), 0.0)


class _Confusion(Accumulator):
    """Keras's update_confusion_matrix_variables: every entry of the output is one binary
    prediction, positive above each threshold; labels are positive where nonzero; a sample's
    weight weighs each of its entries."""

    top_k = None
    class_id = None

    def _positives(self, y_pred):
        """[..., T] whether each entry is predicted positive at each threshold."""
        return sg.expand_dims(y_pred, -1) > sg.constant(np.float32(self.thresholds))

    def _entries(self, y_true, y_pred, w):
        """(labels, negatives [..., 1], predicted positive [..., T], weights [..., 1]) after
        top_k and class_id."""
        if tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]) or y_true.dtype != "float32":
            raise SymgraphError(
                f"metric {self.name!r} ({type(self).__name__}) needs targets of the output's "
                f"shape (None, {', '.join(map(str, y_pred.shape[1:]))}), one 0/1 label per "
                f"entry; got {y_true.dtype} targets of shape (None, "
                f"{', '.join(map(str, y_true.shape[1:]))}) (class ids go with a sparse loss: "
                "use one-hot targets and a categorical loss)")
        if self.top_k is not None:
            y_pred = sg.where(_top_k_mask(y_pred, self.top_k), y_pred, _NEG_INF)
        if self.class_id is not None:
            if y_pred.ndim < 2 or not 0 <= self.class_id < y_pred.shape[-1]:
                raise SymgraphError(f"metric {self.name!r}: class_id={self.class_id} needs an "
                                    f"output with more than {self.class_id} classes, got shape "
                                    f"(None, {', '.join(map(str, y_pred.shape[1:]))})")
            y_true, y_pred = y_true[..., self.class_id, None], y_pred[..., self.class_id, None]
        y_true = sg.expand_dims(y_true, -1)
        weights = sg.constant(np.float32(1.0))
        if w is not None:
            weights = w
            for _ in range(y_pred.ndim):
                weights = sg.expand_dims(weights, -1)
        return (sg.not_equal(y_true, 0.0), sg.equal(y_true, 0.0), self._positives(y_pred),
                weights)

    @staticmethod
    def _count(cond, weights):
        """The weighted count of `cond` [batch, ..., T] per threshold: [T]."""
        return sg.sum(sg.cast(cond, "float32") * weights, tuple(range(cond.ndim - 1)))


class _PrecisionRecall(_Confusion):
    """Precision / Recall: tp / (tp + fp) / tp / (tp + fn) over the epoch (0 when nothing
    counts, Keras's divide_no_nan)."""

    default_name = ""
    sum_count = 2

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        owner = type(self).__name__
        self.init_thresholds = thresholds
        given = thresholds if isinstance(thresholds, (list, tuple)) else [thresholds]
        if len(given) != 1:
            raise SymgraphError(f"{owner}: symgraph logs one number per metric, so `thresholds` "
                                f"must be one number (or a list of one); got {thresholds!r}")
        if given[0] is None:
            threshold = 0.5 if top_k is None else _NEG_INF
        else:
            threshold = _fraction(given[0], "thresholds", owner)
        self.thresholds = [threshold]
        self.top_k = None if top_k is None else _count(top_k, "top_k", owner)
        self.class_id = None if class_id is None else _count(class_id, "class_id", owner, 0)
        self.name = name or self.default_name

    def get_config(self) -> dict:
        return {"name": self.name, "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}

    def batch_sums(self, y_true, y_pred, w) -> list:
        """[true positives, the subclass's `_other` count], each of shape (1,)."""
        labels, negatives, positive, weights = self._entries(y_true, y_pred, w)
        return [self._count(sg.logical_and(labels, positive), weights),
                self._count(self._other(labels, negatives, positive), weights)]


class Precision(_PrecisionRecall):
    """Keras's Precision(thresholds=None, top_k=None, class_id=None): true positives / predicted
    positives over the epoch; thresholds default to 0.5 (to -1e10 with top_k)."""

    default_name = "precision"

    def _other(self, labels, negatives, positive):
        return sg.logical_and(negatives, positive)  # false positives

    def result(self, totals: list) -> float:
        tp, fp = totals
        return float(_divide_no_nan(tp, tp + fp)[0])


class Recall(_PrecisionRecall):
    """Keras's Recall(thresholds=None, top_k=None, class_id=None): true positives / actual
    positives over the epoch."""

    default_name = "recall"

    def _other(self, labels, negatives, positive):
        return labels  # the false negatives are these minus the true positives

    def result(self, totals: list) -> float:
        tp, actual = totals
        return float(_divide_no_nan(tp, tp + (actual - tp))[0])


class AUC(_Confusion):
    """Keras's AUC(num_thresholds=200, curve="ROC", summation_method="interpolation",
    thresholds=None, from_logits=False), flattened labels (multi_label=False): confusion counts
    at the thresholds [-eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps] (or -eps, the given ones, 1+eps)
    summed over the epoch, then Keras's Riemann sum (ROC: recall over the false positive rate;
    PR with interpolation: Davis & Goadrich's interpolation of Keras's interpolate_pr_auc)."""

    sum_count = 4

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name=None, thresholds=None,
                 multi_label: bool = False, num_labels=None, label_weights=None,
                 from_logits: bool = False):
        if multi_label or num_labels is not None or label_weights is not None:
            raise SymgraphError("AUC: multi_label, num_labels and label_weights are not "
                                "supported; the labels are flattened (multi_label=False)")
        if curve not in ("ROC", "roc", "PR", "pr"):
            raise SymgraphError(f'AUC: invalid `curve` "{curve}"; expected "ROC" or "PR"')
        if summation_method not in ("interpolation", "majoring", "minoring"):
            raise SymgraphError(f"AUC: invalid `summation_method` {summation_method!r}; "
                                "expected 'interpolation', 'majoring' or 'minoring'")
        self.init_thresholds = None if thresholds is None else list(thresholds)
        if thresholds is not None:
            inner = sorted(_fraction(t, "thresholds", "AUC") for t in thresholds)
            self.num_thresholds = len(inner) + 2
            ends = np.array([0.0] + inner + [1.0])
            self.evenly = len(ends) >= 3 and np.allclose(
                ends, np.arange(len(ends), dtype=np.float32) / (len(ends) - 1), atol=EPSILON)
        else:
            n = _count(num_thresholds, "num_thresholds", "AUC", 2)
            self.num_thresholds = n
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
            self.evenly = True
        self.thresholds = [0.0 - EPSILON] + inner + [1.0 + EPSILON]
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.from_logits = bool(from_logits)
        self.name = name or "auc"

    def get_config(self) -> dict:
        config = {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "from_logits": self.from_logits}
        if self.init_thresholds is not None:
            config["thresholds"] = self.init_thresholds
        return config

    def _positives(self, y_pred):
        if not self.evenly:
            return super()._positives(y_pred)
        # Keras's bucket form for evenly spaced thresholds: entry p (clipped to [0, 1]) is
        # positive at threshold i when p * (n - 1) > i; always at the first, never at the last
        n = self.num_thresholds
        scaled = sg.clip(y_pred, 0.0, 1.0) * np.float32(n - 1)
        bounds = np.arange(n, dtype=np.float32)
        bounds[0] = -1.0
        return sg.expand_dims(scaled, -1) > sg.constant(bounds)

    def batch_sums(self, y_true, y_pred, w) -> list:
        if self.from_logits:
            y_pred = sg.sigmoid(y_pred)
        labels, negatives, positive, weights = self._entries(y_true, y_pred, w)
        return [self._count(sg.logical_and(labels, positive), weights),
                self._count(sg.logical_and(negatives, positive), weights),
                self._count(labels, weights), self._count(negatives, weights)]

    def result(self, totals: list) -> float:
        tp, fp, pos, neg = totals
        fn, tn = pos - tp, neg - fp
        if self.curve == "PR" and self.summation_method == "interpolation":
            return float(_interpolate_pr_auc(tp, fp, fn))
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))


def _interpolate_pr_auc(tp, fp, fn) -> float:
    """Keras's AUC.interpolate_pr_auc: precision interpolated between thresholds with true
    and predicted positives varying linearly (Davis & Goadrich 2006)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide_no_nan(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
    ratio = np.where(ratio > 0, ratio, 1.0)  # log(0) only where `both` is false
    return np.sum(_divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                                 np.maximum(tp[1:] + fn[1:], 0)))


class F1Score(Accumulator):
    """Keras's F1Score(average=None, threshold=None) over (batch, classes) outputs: per class
    tp, fp, fn and support summed over the epoch, then 2 p r / (p + r) with Keras's epsilons;
    "micro" pools the classes' counts, "macro" averages the classes' scores, "weighted" weighs
    them by support. A prediction is positive above `threshold`, or (None) where it is its
    row's largest nonzero entry. symgraph logs one number per metric, so `average` is needed."""

    sum_count = 4

    def __init__(self, average=None, threshold=None, name: str = "f1_score"):
        if average not in ("micro", "macro", "weighted"):
            raise SymgraphError(f"F1Score: `average` must be 'micro', 'macro' or 'weighted' "
                                f"(symgraph logs one number per metric, not one per class); "
                                f"got average={average!r}")
        if threshold is not None:
            threshold = _fraction(threshold, "threshold", "F1Score")
            if threshold == 0:
                raise SymgraphError("F1Score: `threshold` must verify 0 < threshold <= 1; "
                                    "received: threshold=0")
        self.average, self.threshold, self.name = average, threshold, name

    def get_config(self) -> dict:
        return {"name": self.name, "average": self.average, "threshold": self.threshold}

    def batch_sums(self, y_true, y_pred, w) -> list:
        if y_pred.ndim != 2 or tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]):
            raise SymgraphError(f"metric {self.name!r} (F1Score) needs outputs and targets of "
                                f"shape (batch, classes); got outputs (None, "
                                f"{', '.join(map(str, y_pred.shape[1:]))}) and targets (None, "
                                f"{', '.join(map(str, y_true.shape[1:]))})")
        if self.threshold is None:
            top = sg.max(y_pred, -1, keepdims=True)
            predicted = sg.logical_and(y_pred >= top, sg.abs(y_pred) > 1e-9)
        else:
            predicted = y_pred > self.threshold
        p = sg.cast(predicted, "float32")
        t = sg.cast(y_true, "float32")
        if w is not None:
            w = sg.expand_dims(w, -1)
        return [sg.sum(v if w is None else v * w, 0)
                for v in (p * t, p * (1.0 - t), (1.0 - p) * t, t)]

    def result(self, totals: list) -> float:
        tp, fp, fn, support = totals
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        f1 = 2.0 * precision * recall / (precision + recall + EPSILON)
        if self.average == "weighted":
            return float(np.sum(f1 * support / (support.sum() + EPSILON)))
        return float(np.mean(f1))


def _count(value, what: str, owner: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise SymgraphError(f"{owner}: `{what}` must be an integer >= {low}; received: "
                            f"{what}={value!r}")
    return int(value)


def _fraction(value, what: str, owner: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not 0 <= value <= 1):
        raise SymgraphError(f"{owner}: threshold values must be in [0, 1]; received: "
                            f"{what}={value!r}")
    return float(value)


_BY_NAME = {"binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
            "sparse_categorical_accuracy": sparse_categorical_accuracy,
            "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
            "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
            "mape": losses.mean_absolute_percentage_error,
            "mean_absolute_percentage_error": losses.mean_absolute_percentage_error,
            "msle": losses.mean_squared_logarithmic_error,
            "mean_squared_logarithmic_error": losses.mean_squared_logarithmic_error,
            "cosine_similarity": cosine_similarity,
            "log_cosh": losses.log_cosh, "logcosh": losses.log_cosh,
            "log_cosh_error": losses.log_cosh,
            "kl_divergence": losses.kl_divergence, "kld": losses.kl_divergence,
            "kullback_leibler_divergence": losses.kl_divergence, "poisson": losses.poisson,
            "hinge": losses.hinge, "squared_hinge": losses.squared_hinge,
            "categorical_hinge": losses.categorical_hinge,
            "binary_crossentropy": binary_crossentropy,
            "categorical_crossentropy": categorical_crossentropy,
            "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
            "top_k_categorical_accuracy": top_k_categorical_accuracy,
            "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy}

# metric classes by Keras name (a string gives an instance with the defaults)
_CLASSES = {"precision": Precision, "recall": Recall, "auc": AUC,
            "Precision": Precision, "Recall": Recall, "AUC": AUC, "F1Score": F1Score,
            "TopKCategoricalAccuracy": TopKCategoricalAccuracy,
            "SparseTopKCategoricalAccuracy": SparseTopKCategoricalAccuracy}


def get(identifier, loss_name: str | None) -> tuple[str, object]:
    """(history name, per-sample fn or Accumulator); "accuracy"/"acc" picks the variant
    fitting the loss (from the shapes for another loss, or none). A string is logged under
    itself, an object under its `name`, as Keras's get_metric names them."""
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
        if identifier in _CLASSES:
            return identifier, _CLASSES[identifier]()
        raise SymgraphError(f"unknown metric {identifier!r}; known: accuracy, "
                            f"{', '.join(list(_BY_NAME) + list(_CLASSES))}")
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        identifier = identifier()
    if isinstance(identifier, Metric):
        return identifier.name, identifier
    if callable(identifier):
        return getattr(identifier, "__name__", "metric"), identifier
    raise SymgraphError(f"cannot use {identifier!r} as a metric")
