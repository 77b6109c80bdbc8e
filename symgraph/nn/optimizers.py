"""Optimizers with Keras 3's update formulas and defaults, emitted as graph update expressions.

An optimizer turns (gradient, variable) pairs into new-value expressions for the variable and
its slots (momenta, accumulators, EMA averages). Slots, the iteration counter and the learning
rate are variables (a schedule is an expression of the counter, schedules.py), so the training
step is one compiled function, changing the learning rate never recompiles, and a failing step
(the runtime swaps state only after success) changes nothing.
"""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import schedules  # noqa: F401  (keras.optimizers.schedules)
from symgraph.nn.optimizer_base import Optimizer


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

    def __init__(self, learning_rate=0.001, weight_decay: float = 0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class Adamax(Optimizer):
    """m <- b1*m + (1-b1)*g; u <- max(b2*u, |g|); w <- w - lr*m/((1-b1^t)*(u + eps))."""

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def _step(self, var, w, g, lr, step):
        m, u = self.slot(var, "momentum"), self.slot(var, "norm")
        new_m = m + (g - m) * (1 - self.beta_1)
        new_u = sg.maximum(u * self.beta_2, sg.abs(g))
        denom = (1.0 - sg.power(self.beta_1, step)) * (new_u + self.epsilon)
        return [(m, new_m), (u, new_u), (var, w - lr * new_m / denom)]


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat): the momentum schedule u_t = b1*(1 - 0.5*0.96^t)
    and its running product (one scalar variable) correct the first moment."""

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def _shared_updates(self, step, dtype):
        # Keras keeps the product in the first variable's dtype and updates it before the rules
        product = self.scalar("u_product", 1.0, dtype)
        self._new_product = product * self.beta_1 * (1.0 - 0.5 * sg.power(0.96, step))
        return [(product, self._new_product)]

    def _step(self, var, w, g, lr, step):
        u_t = self.beta_1 * (1.0 - 0.5 * sg.power(0.96, step))
        u_next = self.beta_1 * (1.0 - 0.5 * sg.power(0.96, step + 1.0))
        product = sg.cast(self._new_product, var.dtype)
        m, v = self.slot(var, "momentum"), self.slot(var, "velocity")
        new_m = m + (g - m) * (1 - self.beta_1)
        new_v = v + (sg.square(g) - v) * (1 - self.beta_2)
        m_hat = u_next * new_m / (1.0 - product * u_next) + (1.0 - u_t) * g / (1.0 - product)
        v_hat = new_v / (1.0 - sg.power(self.beta_2, step))
        return [(m, new_m), (v, new_v), (var, w - m_hat * lr / (sg.sqrt(v_hat) + self.epsilon))]


class Lion(Optimizer):
    """w <- w - lr*sign(b1*m + (1-b1)*g); m <- b2*m + (1-b2)*g (Chen et al., 2023)."""

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 **kwargs):
        if beta_1 <= 0 or beta_1 > 1:
            raise SymgraphError("Argument `beta_1` must be in the [0, 1] range. Otherwise, the "
                                f"optimizer degenerates to SignSGD. Received: beta_1={beta_1}.")
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2 = beta_1, beta_2

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}

    def _step(self, var, w, g, lr, step):
        m = self.slot(var, "momentum")
        direction = sg.sign(m * self.beta_1 + g * (1.0 - self.beta_1))
        return [(var, w - lr * direction), (m, m * self.beta_2 + g * (1.0 - self.beta_2))]


class Ftrl(Optimizer):
    """Follow The Regularized Leader (McMahan et al., 2013), Keras's form: n accumulates g^2,
    z (the `linear` slot) the shrunk gradient minus sigma*w; w is the L1/L2-regularized
    closed-form minimizer of z."""

    def __init__(self, learning_rate=0.001, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1,
                 l1_regularization_strength: float = 0.0,
                 l2_regularization_strength: float = 0.0,
                 l2_shrinkage_regularization_strength: float = 0.0, beta: float = 0.0,
                 **kwargs):
        for what, value, sign in (
                ("initial_accumulator_value", initial_accumulator_value, "positive or zero"),
                ("learning_rate_power", -learning_rate_power, "negative or zero"),
                ("l1_regularization_strength", l1_regularization_strength, "positive or zero"),
                ("l2_regularization_strength", l2_regularization_strength, "positive or zero"),
                ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength,
                 "positive or zero")):
            if value < 0.0:
                shown = -value if what == "learning_rate_power" else value
                raise SymgraphError(f"`{what}` needs to be {sign}. Received: {what}={shown}.")
        super().__init__(learning_rate, **kwargs)
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength":
                    self.l2_shrinkage_regularization_strength,
                "beta": self.beta}

    def _step(self, var, w, g, lr, step):
        accum = self.slot(var, "accumulator", self.initial_accumulator_value)
        linear = self.slot(var, "linear")
        power = -self.learning_rate_power
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        shrunk = g + w * (2 * self.l2_shrinkage_regularization_strength)
        new_accum = accum + sg.square(g)
        sigma = (sg.power(new_accum, power) - sg.power(accum, power)) / lr
        new_linear = linear + shrunk - sigma * w
        quadratic = sg.power(new_accum, power) / lr + 2.0 * l2
        l1 = self.l1_regularization_strength
        new_w = (sg.clip(new_linear, -l1, l1) - new_linear) / quadratic
        return [(linear, new_linear), (var, new_w), (accum, new_accum)]


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
            "adam": Adam, "adamw": AdamW, "adamax": Adamax, "nadam": Nadam, "lion": Lion,
            "ftrl": Ftrl}


def get(identifier) -> Optimizer:
    """An optimizer from a Keras name ("adam") with default settings, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise SymgraphError(f"unknown optimizer {identifier!r}; known: {', '.join(_BY_NAME)}")
