"""Keras-style layers. A layer owns its weights (variables, created by `build` once the input
shape is known) and maps a node to a node in `call(x, ctx)`; `ctx` says whether the graph is
for training and collects what a training step needs besides the output (batch-norm statistic
updates, ReLU outputs for dead-unit diagnostics, logits for stable cross-entropy).
"""

from __future__ import annotations

import numbers

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import activations, constraints, initializers, regularizers
from symgraph.nn.calling import CallContext
from symgraph.nn.layer_base import (  # noqa: F401  (the layers' namespace, as before)
    Input,
    InputLayer,
    Layer,
    _snake,
    unique_name,
)
from symgraph.nn.serialization import serialize


def _apply_activation(x, activation, ctx: CallContext, layer_name: str):
    """The activation, recording ReLU outputs and softmax/sigmoid logits in `ctx`."""
    name = activations.name_of(activation)
    out = activations.get(activation)(x)
    if name in ("softmax", "sigmoid"):
        ctx.logits[out.id] = (name, x)
    if name in activations.RELU_LIKE:
        ctx.relu_outputs[layer_name] = out
    return out


class KernelLayer(Layer):
    """A layer with a kernel, an optional bias and an activation (Dense, Conv1D, Conv2D): the
    initializer, regularizer and constraint arguments they share, as Keras names them."""

    def __init__(self, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if activity_regularizer is not None:
            raise SymgraphError(f"{type(self).__name__}: activity_regularizer is not supported")
        self.activation = activation
        activations.get(activation)  # fail at construction on an unknown name
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = self.bias = None

    def build_kernel(self, kernel_shape: tuple, units: int) -> None:
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (units,), self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def kernel_config(self) -> dict:
        """The config keys of the arguments KernelLayer takes (Keras's names)."""
        return {"activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": serialize(self.kernel_initializer),
                "bias_initializer": serialize(self.bias_initializer),
                "kernel_regularizer": serialize(self.kernel_regularizer),
                "bias_regularizer": serialize(self.bias_regularizer),
                "activity_regularizer": None,
                "kernel_constraint": serialize(self.kernel_constraint),
                "bias_constraint": serialize(self.bias_constraint)}

    def finish(self, y, ctx):
        """Bias and activation on the kernel's product `y`."""
        if self.use_bias:
            y = y + self.bias
        return _apply_activation(y, self.activation, ctx, self.name)


class Dense(KernelLayer):
    """y = activation(x @ kernel + bias); kernel is (input features, units)."""

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        if int(units) <= 0:
            raise SymgraphError(f"Invalid value received for argument `units`. Expected a "
                                f"positive integer. Received: units={units}")
        self.units = int(units)

    def build(self, input_shape):
        if not input_shape:
            raise SymgraphError(f"Dense {self.name!r} needs inputs with a feature axis, shape "
                                "(None, features); got shape (None,): give x as (n, 1) for "
                                "one feature")
        self.build_kernel((input_shape[-1], self.units), self.units)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x, ctx):
        return self.finish(x @ self.kernel, ctx)

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self.kernel_config()}


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        activations.get(activation)
        self.activation = activation

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}

    def call(self, x, ctx):
        return _apply_activation(x, self.activation, ctx, self.name)


# odd, so the seeds of a layer's calls differ mod 2**32 (the hash reads the seed mod 2**32)
_CALL_SEED_STRIDE = 0x5BD1E995


def draw_seed(seed: int | None) -> int:
    """A random layer's seed: the one given, else one drawn from the global RNG (so
    set_random_seed reproduces unseeded layers); its config keeps the drawn seed."""
    return int(seed) if seed is not None else int(initializers.global_rng().integers(1, 2**31))


def call_seed(layer, ctx: CallContext) -> int:
    """The seed of this call of a random layer: each call of a shared layer draws its own noise
    (Keras 3's seed generator advances per draw), the first call's that of the layer's seed."""
    return layer.seed + ctx.call_number(layer) * _CALL_SEED_STRIDE


class Dropout(Layer):
    """Inverted dropout: active only in training; kept values scaled by 1/(1-rate). Each call
    of a shared Dropout draws its own mask (`call_seed`)."""

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise SymgraphError("Invalid value received for argument `rate`. Expected a float "
                                f"value between 0 and 1. Received: rate={rate!r}")
        if noise_shape is not None:
            raise SymgraphError("Dropout: noise_shape is not supported")
        self.rate = float(rate)
        self.seed = draw_seed(seed)

    def get_config(self):  # the seed drawn for an unseeded layer: the same masks when rebuilt
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": None}

    def call(self, x, ctx):
        if not ctx.training or self.rate == 0:
            return x
        if self.rate == 1:
            return x * 0.0
        return sg.dropout(x, self.rate, seed=call_seed(self, ctx), step=ctx.step)


class BatchNormalization(Layer):
    """Keras BN: batch moments (biased variance) in training, moving statistics otherwise;
    moving = moving*momentum + batch*(1-momentum). A frozen layer runs in inference mode.
    Each call of a shared layer normalizes with its own batch's moments and updates the moving
    statistics in turn, from the value the previous call left (Keras 3's assign per call)."""

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = center, scale
        self._inits = (gamma_initializer, beta_initializer, moving_mean_initializer,
                       moving_variance_initializer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def get_config(self):
        names = ("gamma_initializer", "beta_initializer", "moving_mean_initializer",
                 "moving_variance_initializer")
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **{name: serialize(init) for name, init in zip(names, self._inits)}}

    def build(self, input_shape):
        axis = self.axis % (len(input_shape) + 1)
        if axis == 0:
            raise SymgraphError(f"BatchNormalization {self.name!r}: axis cannot be the batch axis")
        dim = (input_shape[axis - 1],)
        if self.scale:
            self.gamma = self.add_weight("gamma", dim, self._inits[0])
        if self.center:
            self.beta = self.add_weight("beta", dim, self._inits[1])
        self.moving_mean = self.add_weight("moving_mean", dim, self._inits[2], trainable=False)
        self.moving_variance = self.add_weight("moving_variance", dim, self._inits[3],
                                               trainable=False)
        super().build(input_shape)

    def call(self, x, ctx):
        axis = self.axis % x.ndim
        shape = tuple(d if i == axis else 1 for i, d in enumerate(x.shape))
        if ctx.training and self.trainable:
            reduce_axes = tuple(a for a in range(x.ndim) if a != axis)
            mean, var = sg.batch_moments(x, reduce_axes)
            m = self.momentum
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                ctx.assign(moving, ctx.current(moving) * m + batch * (1.0 - m))
        else:
            mean, var = self.moving_mean, self.moving_variance
        inv = 1.0 / sg.sqrt(var + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma
        out = (x - mean.reshape(shape)) * inv.reshape(shape)
        return out + self.beta.reshape(shape) if self.beta is not None else out


class ReLU(Layer):
    """relu with Keras's max_value (ReLU6 = max_value 6), negative_slope and threshold."""

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise SymgraphError(f"ReLU: max_value must be >= 0, got {max_value}")
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}

    def call(self, x, ctx):
        out = sg.relu(x, self.negative_slope, self.max_value, self.threshold)
        ctx.relu_outputs[self.name] = out
        return out


class LeakyReLU(Layer):
    """The layer's Keras default slope is 0.3 (the function's is 0.2)."""

    def __init__(self, negative_slope: float = 0.3, alpha: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(alpha if alpha is not None else negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}

    def call(self, x, ctx):
        return sg.leaky_relu(x, self.negative_slope)


class ELU(Layer):
    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}

    def call(self, x, ctx):
        return sg.elu(x, self.alpha)


class PReLU(Layer):
    """Leaky ReLU with a learned slope per feature (alpha starts at zero, as in Keras)."""

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = alpha_initializer
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        self.shared_axes = tuple(shared_axes) if shared_axes is not None else ()
        self.alpha = None

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": serialize(self.alpha_initializer),
                "alpha_regularizer": serialize(self.alpha_regularizer),
                "alpha_constraint": serialize(self.alpha_constraint),
                "shared_axes": list(self.shared_axes) or None}

    def build(self, input_shape):
        shape = [1 if i + 1 in self.shared_axes else d for i, d in enumerate(input_shape)]
        self.alpha = self.add_weight("alpha", tuple(shape), self.alpha_initializer,
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        super().build(input_shape)

    def call(self, x, ctx):
        return sg.prelu(x, self.alpha)


class Maxout(Layer):
    """Max over `num_units` groups of consecutive features (Goodfellow et al. 2013)."""

    def __init__(self, num_units: int, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.num_units, self.axis = int(num_units), axis

    def get_config(self):
        return {**super().get_config(), "num_units": self.num_units, "axis": self.axis}

    def build(self, input_shape):
        size = input_shape[self.axis]
        if size % self.num_units:
            raise SymgraphError(f"Maxout {self.name!r}: {size} features are not a multiple of "
                                f"num_units={self.num_units}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        shape[self.axis] = self.num_units
        return tuple(shape)

    def call(self, x, ctx):
        return sg.maxout(x, self.num_units, self.axis)


class Flatten(Layer):
    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def call(self, x, ctx):
        return x.reshape(("batch",) + self.output_shape) if x.shape[0] == "batch" else \
            x.reshape((x.shape[0],) + self.output_shape)
