"""Composite functions built only from primitives: activations, softmax family, losses,
dropout and batch normalization. Being compositions, they get gradients, CSE and fusion free.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from symgraph.errors import SymgraphError, SymgraphTypeError
from symgraph.graph import FLOAT_DTYPES, Node, Variable
from symgraph.ops import apply
from symgraph.ops.shapes import normalize_axes, normalize_axis, normalize_shape
from symgraph.ops.table import checking_args
from symgraph.tensor import abs as sg_abs
from symgraph.tensor import (
    as_node,
    cast,
    clip,
    exp,
    expm1,
    greater_equal,
    log,
    log1p,
    mean,
    minimum,
    one_hot,
    sqrt,
    stop_gradient,
    where,
)
from symgraph.tensor import max as sg_max
from symgraph.tensor import sum as sg_sum

EPSILON = 1e-7  # Keras backend epsilon

# --- activations ---------------------------------------------------------------------------


def relu(x, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0) -> Node:
    """Keras's relu: x above `threshold`, slope below it, capped at `max_value`."""
    x = as_node(x)
    below = x * negative_slope if negative_slope else 0.0
    if threshold:
        below = (x - threshold) * negative_slope if negative_slope else 0.0
    out = where(x <= threshold, below, x)  # NaN stays NaN (as in Keras), not 0
    return minimum(out, max_value) if max_value is not None else out


def leaky_relu(x, negative_slope: float = 0.2) -> Node:
    x = as_node(x)
    return where(x > 0, x, x * negative_slope)


def prelu(x, alpha) -> Node:
    """Leaky relu with a learned (broadcast) slope `alpha`."""
    x = as_node(x)
    return where(x > 0, x, x * alpha)


def elu(x, alpha: float = 1.0) -> Node:
    # minimum(x, 0) keeps the untaken branch finite, so its zero gradient stays zero (not inf*0)
    x = as_node(x)
    return where(x > 0, x, expm1(minimum(x, 0.0)) * alpha)


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def selu(x) -> Node:
    return elu(x, SELU_ALPHA) * SELU_SCALE


def relu6(x) -> Node:
    return relu(x, max_value=6.0)


def softplus(x) -> Node:
    """log(1 + exp(x)) in a form that neither overflows nor loses small values (TF's): one
    condition picks both parts, so the gradient is sigmoid(x) at x = 0 too (max(x, 0) with
    -|x| gave 1 there: two rules for the tie that do not add up)."""
    x = as_node(x)
    pos = greater_equal(x, 0.0)
    return where(pos, x, 0.0) + log1p(exp(where(pos, -x, x)))


def maxout(x, num_units: int, axis: int = -1) -> Node:
    """Max over groups of `size // num_units` consecutive features on `axis`."""
    x = as_node(x)
    with checking_args("maxout", (x,)):
        axis = normalize_axis(axis, x.ndim)
    size = x.shape[axis]
    if not isinstance(size, int) or size % num_units:
        raise SymgraphError(f"maxout: dim {size} of {x.describe()} is not a multiple of "
                            f"num_units={num_units}")
    shape = tuple(x.shape[:axis]) + (num_units, size // num_units) + tuple(x.shape[axis + 1:])
    return sg_max(x.reshape(shape), axis=axis + 1)


def hard_sigmoid(x) -> Node:
    return clip(as_node(x) * (1.0 / 6.0) + 0.5, 0.0, 1.0)


# --- softmax family ------------------------------------------------------------------------


def logsumexp(x, axis=-1, keepdims: bool = False) -> Node:
    """log(sum(exp(x))) shifted by the (gradient-free) max so it never overflows; a max that is
    not finite shifts by 0 (as TF and JAX do), so a row of -inf gives -inf, not NaN."""
    x = as_node(x)
    top = sg_max(x, axis, keepdims=True)
    shift = stop_gradient(where(sg_abs(top) < np.inf, top, 0.0))
    out = log(sg_sum(exp(x - shift), axis, keepdims=True)) + shift
    reduced = normalize_axes(axis, x.ndim)  # checked by sg_max above
    return out if keepdims else out.reshape(tuple(
        d for i, d in enumerate(out.shape) if i not in reduced))


def log_softmax(x, axis: int = -1) -> Node:
    """d - log(sum(exp(d))), d = x - max(x): x - logsumexp(x) would subtract two large numbers
    (110 ulps lost in float32 at logits near 1000)."""
    x = as_node(x)
    d = x - stop_gradient(sg_max(x, axis, keepdims=True))
    return d - log(sg_sum(exp(d), axis, keepdims=True))


def softmax(x, axis: int = -1) -> Node:
    x = as_node(x)
    e = exp(x - stop_gradient(sg_max(x, axis, keepdims=True)))
    return e / sg_sum(e, axis, keepdims=True)


# --- losses (per example; the caller reduces over the batch) --------------------------------


def softmax_cross_entropy(logits, targets, axis: int = -1) -> Node:
    """-sum(targets * log_softmax(logits)): stable at any logit size."""
    return -sg_sum(as_node(targets) * log_softmax(logits, axis), axis)


def sparse_softmax_cross_entropy(logits, labels) -> Node:
    """Cross-entropy of logits against integer class labels."""
    logits = as_node(logits)
    labels = as_node(labels)
    if labels.dtype not in ("int32", "int64"):
        raise SymgraphError(f"labels {labels.describe()} must be integers")
    with checking_args("sparse_softmax_cross_entropy", (logits, labels)):
        if logits.ndim == 0 or not isinstance(logits.shape[-1], int):
            raise SymgraphError("logits need a last axis of classes whose size is an int, "
                                f"got shape {tuple(logits.shape)}")
    return softmax_cross_entropy(logits, one_hot(labels, logits.shape[-1], logits.dtype))


def sigmoid_cross_entropy(logits, targets) -> Node:
    """Binary cross-entropy on logits: softplus(x) - x*t (TF's form; gradient sigmoid(x) - t)."""
    x = as_node(logits)
    return softplus(x) - x * targets


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, axis: int = -1) -> Node:
    """Keras: probabilities renormalised and clipped to [eps, 1-eps]; mean over nothing."""
    if from_logits:
        return softmax_cross_entropy(y_pred, y_true, axis)
    p = as_node(y_pred)
    p = clip(p / sg_sum(p, axis, keepdims=True), EPSILON, 1.0 - EPSILON)
    return -sg_sum(as_node(y_true, like=p) * log(p), axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False) -> Node:
    p = as_node(y_pred)
    labels = as_node(y_true)
    if labels.dtype not in ("int32", "int64"):
        labels = cast(labels, "int64")
    if labels.ndim == p.ndim:  # Keras accepts (batch, 1) labels
        labels = labels.reshape(tuple(labels.shape[:-1]))
    return categorical_crossentropy(one_hot(labels, p.shape[-1], p.dtype), p, from_logits)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False) -> Node:
    """Keras: clipped probabilities, mean over the last axis."""
    if from_logits:
        return mean(sigmoid_cross_entropy(y_pred, as_node(y_true, like=as_node(y_pred))), -1)
    p = clip(as_node(y_pred), EPSILON, 1.0 - EPSILON)
    t = as_node(y_true, like=p)
    return mean(-(t * log(p) + (1.0 - t) * log(1.0 - p)), -1)


def mean_squared_error(y_true, y_pred) -> Node:
    p = as_node(y_pred)
    d = p - as_node(y_true, like=p)
    return mean(d * d, -1)


def mean_absolute_error(y_true, y_pred) -> Node:
    p = as_node(y_pred)
    return mean(sg_abs(p - as_node(y_true, like=p)), -1)


mse = mean_squared_error
mae = mean_absolute_error

# --- randomness ----------------------------------------------------------------------------

_seeds = itertools.count(1)
_default_step: Variable | None = None


def default_step() -> Variable:
    """The process-wide step counter used by random ops given no `step`: +1 per call."""
    global _default_step
    if _default_step is None:
        _default_step = Variable(np.zeros((), np.int64), name="random_step", trainable=False,
                                 trace="<symgraph>")
        _default_step.set_default_update(_default_step + np.int64(1))
    return _default_step


def uniform(shape, seed: int | None = None, step: Node | None = None,
            dtype: str = "float32") -> Node:
    """Uniform [0, 1) draws from a counter-based hash of (seed, step, element index)."""
    with checking_args("random_uniform"):
        shape = normalize_shape(shape)
    seed = next(_seeds) if seed is None else int(seed)
    step = default_step() if step is None else as_node(step)
    return apply("random_uniform", (step,), shape=shape, seed=seed, dtype=dtype)


# Acklam's rational approximation of the normal quantile (relative error below 1.2e-9)
_CENTRAL_NUM = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_CENTRAL_DEN = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                6.680131188771972e+01, -1.328068155288572e+01, 1.0)
_TAIL_NUM = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758276161838e+00,
             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_TAIL_DEN = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
             3.754408661907416e+00, 1.0)
_TAIL_BELOW = 0.02425


def _horner(coefficients, t) -> Node:
    out = t * coefficients[0] + coefficients[1]
    for c in coefficients[2:]:
        out = out * t + c
    return out


def normal(shape, seed: int | None = None, step: Node | None = None, dtype: str = "float32",
           mean: float = 0.0, stddev: float = 1.0) -> Node:
    """Normal draws: mean + stddev * the inverse normal CDF (Acklam's approximation) of one
    counter-based uniform draw per element, centred in its 2**-24 cell so it is never 0 or 1
    (standard draws lie within +-5.42). All in float64 (arithmetic, log and sqrt), then one
    rounding to `dtype`: the NumPy and Numba backends give the same bits (all 10**6 draws
    compared; a draw could differ only if their float64 logs differed by an ulp right at a
    rounding boundary of `dtype`)."""
    p = uniform(shape, seed, step, "float64") + 2.0 ** -25
    tail = minimum(p, 1.0 - p)  # exact: p is a multiple of 2**-25
    central = tail >= _TAIL_BELOW
    q = p - 0.5
    r = q * q
    inner = _horner(_CENTRAL_NUM, r) * q / _horner(_CENTRAL_DEN, r)
    # central draws take the other branch; the clamp keeps their unused tail value finite
    t = sqrt(log(where(central, _TAIL_BELOW, tail)) * -2.0)
    outer = _horner(_TAIL_NUM, t) / _horner(_TAIL_DEN, t)
    z = where(central, inner, where(p < 0.5, outer, -outer))
    if stddev != 1.0:
        z = z * float(stddev)
    return cast(z + float(mean) if mean else z, dtype)


def dropout(x, rate: float, seed: int | None = None, step: Node | None = None,
            training: bool = True) -> Node:
    """Inverted dropout: zero with probability `rate`, scale kept values by 1/(1-rate)."""
    with checking_args("dropout", (x,)):
        kind = SymgraphError if isinstance(rate, numbers.Real) else SymgraphTypeError
        if not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise kind("Invalid value received for argument `rate`. Expected a float value "
                       f"between 0 and 1. Received: rate={rate!r}")
    x = as_node(x)
    if x.dtype not in FLOAT_DTYPES:
        raise SymgraphError(f"dropout needs a float tensor, got {x.describe()}")
    if not training or rate == 0:
        return x
    keep = uniform(x.shape, seed, step, x.dtype) >= rate
    return where(keep, x * (1.0 / (1.0 - rate)), 0.0)


# --- batch normalization -------------------------------------------------------------------


def batch_moments(x, axes=(0,)) -> tuple[Node, Node]:
    """Batch mean and biased variance over `axes`, keepdims=False."""
    x = as_node(x)
    mu = mean(x, axes, keepdims=True)
    d = x - mu
    var = mean(d * d, axes)
    return mu.reshape(var.shape), var


def batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None,
               training: bool = True, epsilon: float = 1e-3, axis: int = -1) -> Node:
    """Normalize over every axis but `axis`: batch statistics in training, running ones else."""
    x = as_node(x)
    with checking_args("batch_norm", (x,)):
        axis = normalize_axis(axis, x.ndim)
    reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
    if training:
        mu, var = batch_moments(x, reduce_axes)
    else:
        if running_mean is None or running_var is None:
            raise SymgraphError("batch_norm(training=False) needs running_mean and running_var")
        mu, var = as_node(running_mean), as_node(running_var)
    shape = tuple(d if i == axis else 1 for i, d in enumerate(x.shape))
    scale = 1.0 / sqrt(var + epsilon)
    if gamma is not None:
        scale = scale * gamma
    out = (x - mu.reshape(shape)) * scale.reshape(shape)
    return out + as_node(beta).reshape(shape) if beta is not None else out
