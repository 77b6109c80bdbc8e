"""The optimizer base class (optimizers.py has the optimizers): what every Keras 3 optimizer
shares — learning rate or schedule, iteration counter, slots, weight decay, clipping, gradient
accumulation, loss scaling and EMA — emitted as graph update expressions."""


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
