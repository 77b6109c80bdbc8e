"""Optimizers with Keras 3's update formulas and defaults, emitted as graph update expressions.

An optimizer turns (gradient, variable) pairs into new-value expressions for the variable and
its slots (momenta, accumulators, EMA averages). Slots, the iteration counter and the learning
rate are variables (a schedule is an expression of the counter, schedules.py), so the training
step is one compiled function, changing the learning rate never recompiles, and a failing step
(the runtime swaps state only after success) changes nothing.
"""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError, SymgraphTypeError
from symgraph.nn import schedules  # noqa: F401  (keras.optimizers.schedules)
from symgraph.nn.schedules import LearningRateSchedule, rate_node, value_at
from symgraph.nn.serialization import Serializable, serialize


class Optimizer(Serializable):
    """Base: loss scaling, gradient accumulation, clipping, weight decay, the learning rate (a
    variable, or a schedule of the iteration count), EMA of the weights and iteration counting,
    in the order of Keras 3's BaseOptimizer.apply; subclasses give `_step`."""

    name = "optimizer"

    def __init__(self, learning_rate=0.001, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False,
                 ema_momentum: float = 0.99, ema_overwrite_frequency: int | None = None,
                 loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise SymgraphError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                                "be set.")
        _check_keras_options(learning_rate, use_ema, ema_momentum, ema_overwrite_frequency,
                             loss_scale_factor, gradient_accumulation_steps)
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = bool(use_ema), ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.schedule = learning_rate if isinstance(learning_rate, LearningRateSchedule) else None
        self._lr = None if self.schedule is not None else sg.variable(
            np.float32(learning_rate), name=f"{self.name}/learning_rate", trainable=False)
        self.iterations = sg.variable(np.int64(0), name=f"{self.name}/iterations",
                                      trainable=False)
        self._slots: dict[int, dict[str, sg.Variable]] = {}
        self._scalars: dict[str, sg.Variable] = {}  # state of no one weight (Nadam's u_product)
        self.built = False  # a training step was built with it (Keras: summary shows its params)

    def get_config(self) -> dict:
        """Keras's keys; the learning rate as it is now, or the schedule's config."""
        rate = serialize(self.schedule) if self.schedule is not None else self.learning_rate
        return {"name": self.name, "learning_rate": rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @property
    def learning_rate(self) -> float:
        """The rate now: the variable's value, or the schedule at the current iteration."""
        if self.schedule is not None:
            return value_at(self.schedule, int(self.iterations.value))
        return float(self._lr.value)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise SymgraphTypeError(
                f"This optimizer was created with a `LearningRateSchedule` "
                f"({type(self.schedule).__name__}) object as its `learning_rate` constructor "
                "argument, hence its learning rate is not settable. If you need the learning "
                "rate to be settable, you should instantiate the optimizer with a float "
                "`learning_rate` argument.")
        _check_rate(value)
        self._lr.value = np.float32(value)

    def slot(self, var, kind: str, init: float = 0.0):
        """The optimizer's `kind` state for `var`, created on first use."""
        per_var = self._slots.setdefault(var.id, {})
        if kind not in per_var:
            per_var[kind] = sg.variable(np.full(var.shape, init, var.dtype),
                                        name=f"{self.name}/{var.label()}/{kind}", trainable=False)
        return per_var[kind]

    def scalar(self, kind: str, init: float, dtype: str):
        """The optimizer's scalar `kind` state (of no one weight), created on first use."""
        if kind not in self._scalars:
            self._scalars[kind] = sg.variable(np.array(init, dtype), name=f"{self.name}/{kind}",
                                              trainable=False)
        return self._scalars[kind]

    @property
    def variables(self) -> list:
        """Every optimizer variable (learning rate unless scheduled, iterations, slots)."""
        rate = [] if self._lr is None else [self._lr]
        return rate + [self.iterations] + list(self._scalars.values()) + [
            s for d in self._slots.values() for s in d.values()]

    def scale_loss(self, loss):
        """The loss the gradients are taken of: times `loss_scale_factor` when set (Keras);
        `updates` divides the gradients by it again."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def finalize_variable_values(self, var_list) -> None:
        """With `use_ema`, give each weight its moving average (Keras: fit does this after
        its last epoch); nothing before a first training step."""
        if not self.use_ema or int(self.iterations.value) == 0:
            return
        for var in var_list:
            average = self._slots.get(var.id, {}).get("average")
            if average is not None:
                var.value = average.value

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
        """[(variable, new value expr)] for the variables, their slots and the iteration count.

        With `gradient_accumulation_steps` n, a step adds its gradients to accumulators and
        changes nothing else, except every n-th, which applies the mean of the n gradients;
        the update rules then count applied updates (iterations // n, Keras's `iterations`)
        while a schedule reads the steps (Keras's `_iterations`)."""
        pairs = list(grads_and_vars)
        self.built = True
        count = self.iterations
        if not pairs:
            return [(count, count + np.int64(1))]
        variables = [var for _, var in pairs]
        grads = [sg.cast(g, var.dtype) for g, var in pairs]
        if self.loss_scale_factor is not None:
            grads = [g / self.loss_scale_factor for g in grads]
        lr = self._lr if self.schedule is None else rate_node(self.schedule, count)
        n = self.gradient_accumulation_steps
        applied = count if not n else _floor_div(count, n)
        if n:
            accumulators = [self.slot(var, "gradient_accumulator") for var in variables]
            summed = [g + acc for g, acc in zip(grads, accumulators)]
            out = self._apply([g / n for g in summed], variables, lr, applied)
            is_update = _multiple_of(count + np.int64(1), n)
            out = [(var, sg.where(is_update, expr, var)) for var, expr in out]
            out += [(acc, sg.where(is_update, 0.0, total))
                    for acc, total in zip(accumulators, summed)]
        else:
            out = self._apply(grads, variables, lr, applied)
        if self.use_ema:
            out = self._moving_averages(out, variables, applied)
        return out + [(count, count + np.int64(1))]

    def _apply(self, grads, variables, lr, applied) -> list:
        """Clipping, weight decay and the update rule of each variable (Keras's update step)."""
        grads = self._clip(grads)
        out = []
        for i, (g, var) in enumerate(zip(grads, variables)):
            # Keras casts the rate and local_step = iterations + 1 to each variable's dtype
            var_lr = sg.cast(lr, var.dtype)
            step = sg.cast(applied, var.dtype) + 1.0
            if i == 0:
                out += self._shared_updates(step, var.dtype)
            w = var
            if self.weight_decay:
                w = w - w * (var_lr * self.weight_decay)
            out.extend(self._step(var, w, g, var_lr, step))
        return out

    def _moving_averages(self, out: list, variables: list, applied) -> list:
        """Keras's EMA after the update: average <- m * average + (1 - m) * new weight (m = 0
        at the first applied update), and every `ema_overwrite_frequency` applied updates the
        weights take their averages."""
        new_value = {var.id: expr for var, expr in out}
        not_first = sg.not_equal(applied, np.int64(0))
        overwrite = None
        if self.ema_overwrite_frequency:
            overwrite = _multiple_of(applied + np.int64(1), self.ema_overwrite_frequency)
        averaged = []
        for var in variables:
            average = self.slot(var, "average")
            value = new_value.get(var.id, var)
            momentum = sg.cast(not_first, var.dtype) * self.ema_momentum
            new_average = momentum * average + (1.0 - momentum) * value
            averaged.append((average, new_average))
            if overwrite is not None:
                new_value[var.id] = sg.where(overwrite, new_average, value)
        weights = {var.id for var in variables}
        return [(v, new_value[v.id] if v.id in weights else e) for v, e in out] + averaged

    def _shared_updates(self, step, dtype) -> list:
        """Updates of scalar state shared by every variable's rule, made before them."""
        return []

    def _step(self, var, w, g, lr, step) -> list:
        raise NotImplementedError


def _check_rate(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SymgraphTypeError(
            "Argument `learning_rate` should be a float or an instance of "
            f"symgraph.nn.optimizers.schedules.LearningRateSchedule. Received instead: "
            f"learning_rate={value!r}" + (" (a callable: subclass LearningRateSchedule and "
                                          "give it a __call__(step))" if callable(value) else ""))


def _check_keras_options(learning_rate, use_ema, ema_momentum, ema_overwrite_frequency,
                         loss_scale_factor, gradient_accumulation_steps) -> None:
    """Keras 3's checks of the base optimizer's arguments, with its messages."""
    if not isinstance(learning_rate, LearningRateSchedule):
        _check_rate(learning_rate)
    steps = gradient_accumulation_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 2):
        raise SymgraphError("`gradient_accumulation_steps` must be an integer >= 2. Received: "
                            f"gradient_accumulation_steps={steps}")
    if use_ema:
        if not 0 <= ema_momentum <= 1:
            raise SymgraphError("`ema_momentum` must be in the range [0, 1]. Received: "
                                f"ema_momentum={ema_momentum}")
        if ema_overwrite_frequency is not None and (
                isinstance(ema_overwrite_frequency, bool)
                or not isinstance(ema_overwrite_frequency, (int, np.integer))
                or ema_overwrite_frequency < 1):
            raise SymgraphError("`ema_overwrite_frequency` must be an integer >= 1 or None. "
                                f"Received: ema_overwrite_frequency={ema_overwrite_frequency}")
    if loss_scale_factor is not None and not loss_scale_factor > 0:
        raise SymgraphError(f"`loss_scale_factor` must be a positive float or None. Received: "
                            f"loss_scale_factor={loss_scale_factor}")


def _floor_div(count, n: int):
    """count // n of a non-negative int64 node (exact below 2**53)."""
    return sg.cast(sg.cast(count, "float64") / float(n), "int64")


def _multiple_of(count, n: int):
    """count % n == 0 of a non-negative int64 node."""
    return sg.equal(_floor_div(count, n) * np.int64(n), count)


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
