"""Optimizers with Keras 3's update formulas and defaults, emitted as graph update expressions.

An optimizer turns (gradient, variable) pairs into new-value expressions for the variable and
its slots (momenta, accumulators). Slots, the iteration counter and the learning rate are
variables, so the training step is one compiled function, changing the learning rate never
recompiles, and a failing step (the runtime swaps state only after success) changes nothing.
"""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable


class Optimizer(Serializable):
    """Base: gradient clipping, weight decay, iteration counting; subclasses give `_step`."""

    name = "optimizer"

    def __init__(self, learning_rate: float = 0.001, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise SymgraphError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                                "be set.")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self._lr = sg.variable(np.float32(learning_rate), name=f"{self.name}/learning_rate",
                               trainable=False)
        self.iterations = sg.variable(np.int64(0), name=f"{self.name}/iterations",
                                      trainable=False)
        self._slots: dict[int, dict[str, sg.Variable]] = {}
        self.built = False  # a training step was built with it (Keras: summary shows its params)

    def get_config(self) -> dict:
        """Keras's keys; the learning rate as it is now."""
        return {"name": self.name, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @property
    def learning_rate(self) -> float:
        return float(self._lr.value)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._lr.value = np.float32(value)

    def slot(self, var, kind: str, init: float = 0.0):
        """The optimizer's `kind` state for `var`, created on first use."""
        per_var = self._slots.setdefault(var.id, {})
        if kind not in per_var:
            per_var[kind] = sg.variable(np.full(var.shape, init, var.dtype),
                                        name=f"{self.name}/{var.label()}/{kind}", trainable=False)
        return per_var[kind]

    @property
    def variables(self) -> list:
        """Every optimizer variable (learning rate, iterations, slots)."""
        return [self._lr, self.iterations] + [s for d in self._slots.values() for s in d.values()]

    def _clip(self, grads: list) -> list:
        if self.clipvalue is not None:
            return [sg.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            # Keras's clip_by_norm: g * c / max(||g||, c), per variable
            return [g * (self.clipnorm / sg.maximum(sg.sqrt(sg.sum(sg.square(g))), self.clipnorm))
                    for g in grads]
        if self.global_clipnorm is not None:
            total = sg.sqrt(sum((sg.sum(sg.square(g)) for g in grads[1:]),
                                sg.sum(sg.square(grads[0]))))
            scale = self.global_clipnorm / sg.maximum(total, self.global_clipnorm)
            return [g * scale for g in grads]
        return grads

    def updates(self, grads_and_vars) -> list:
        """[(variable, new value expr)] for the variables, their slots and the iteration count."""
        pairs = list(grads_and_vars)
        self.built = True
        if not pairs:
            return [(self.iterations, self.iterations + np.int64(1))]
        grads = self._clip([g for g, _ in pairs])
        lr = self._lr
        step = sg.cast(self.iterations, "float32") + 1.0  # Keras's local_step = iterations + 1
        out = []
        for g, (_, var) in zip(grads, pairs):
            w = var
            if self.weight_decay:
                w = w - w * (lr * self.weight_decay)
            out.extend(self._step(var, w, sg.cast(g, var.dtype), lr, step))
        out.append((self.iterations, self.iterations + np.int64(1)))
        return out

    def _step(self, var, w, g, lr, step) -> list:
        raise NotImplementedError


class SGD(Optimizer):
    """m <- mu*m - lr*g; w <- w + m (nesterov: w <- w + mu*m - lr*g); mu=0: w <- w - lr*g."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise SymgraphError("Invalid value received for argument `momentum`. Expected a "
                                f"float between 0 and 1. Received: momentum={momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _step(self, var, w, g, lr, step):
        if not self.momentum:
            return [(var, w - lr * g)]
        m = self.slot(var, "momentum")
        new_m = m * self.momentum - lr * g
        new_w = w + new_m * self.momentum - lr * g if self.nesterov else w + new_m
        return [(m, new_m), (var, new_w)]


class RMSprop(Optimizer):
    """v <- rho*v + (1-rho)*g^2; w <- w - lr*g/sqrt(v + eps) (eps inside the root)."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}

    def _step(self, var, w, g, lr, step):
        v = self.slot(var, "velocity")
        new_v = v * self.rho + sg.square(g) * (1 - self.rho)
        out = [(v, new_v)]
        denom = new_v + self.epsilon
        if self.centered:
            a = self.slot(var, "average_gradient")
            new_a = a * self.rho + g * (1 - self.rho)
            out.append((a, new_a))
            denom = new_v - sg.square(new_a) + self.epsilon
        increment = lr * g / sg.sqrt(denom)
        if self.momentum > 0:
            m = self.slot(var, "momentum")
            new_m = m * self.momentum + increment
            return out + [(m, new_m), (var, w - new_m)]
        return out + [(var, w - increment)]


class Adagrad(Optimizer):
    """a <- a + g^2; w <- w - lr*g/sqrt(a + eps); a starts at initial_accumulator_value."""

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value}

    def _step(self, var, w, g, lr, step):
        a = self.slot(var, "accumulator", self.initial_accumulator_value)
        new_a = a + sg.square(g)
        return [(a, new_a), (var, w - lr * g / sg.sqrt(new_a + self.epsilon))]


class Adadelta(Optimizer):
    """Eg2 <- rho*Eg2 + (1-rho)g^2; d = -sqrt(Ed2+eps)/sqrt(Eg2+eps)*g;
    Ed2 <- rho*Ed2 + (1-rho)d^2; w <- w + lr*d."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}

    def _step(self, var, w, g, lr, step):
        eg2 = self.slot(var, "accumulated_grad")
        ed2 = self.slot(var, "accumulated_delta_var")
        new_eg2 = eg2 * self.rho + sg.square(g) * (1 - self.rho)
        delta = -sg.sqrt(ed2 + self.epsilon) / sg.sqrt(new_eg2 + self.epsilon) * g
        new_ed2 = ed2 * self.rho + sg.square(delta) * (1 - self.rho)
        return [(eg2, new_eg2), (ed2, new_ed2), (var, w + lr * delta)]


class Adam(Optimizer):
    """m, v moving moments; alpha = lr*sqrt(1-b2^t)/(1-b1^t); w <- w - alpha*m/(sqrt(v)+eps)."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}

    def _step(self, var, w, g, lr, step):
        m, v = self.slot(var, "momentum"), self.slot(var, "velocity")
        alpha = lr * sg.sqrt(1.0 - sg.power(self.beta_2, step)) / (
            1.0 - sg.power(self.beta_1, step))
        new_m = m + (g - m) * (1 - self.beta_1)
        new_v = v + (sg.square(g) - v) * (1 - self.beta_2)
        out = [(m, new_m), (v, new_v)]
        denom_v = new_v
        if self.amsgrad:
            vhat = self.slot(var, "velocity_hat")
            denom_v = sg.maximum(vhat, new_v)
            out.append((vhat, denom_v))
        return out + [(var, w - alpha * new_m / (sg.sqrt(denom_v) + self.epsilon))]


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default 0.004)."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
            "adam": Adam, "adamw": AdamW}


def get(identifier) -> Optimizer:
    """An optimizer from a Keras name ("adam") with default settings, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise SymgraphError(f"unknown optimizer {identifier!r}; known: {', '.join(_BY_NAME)}")
