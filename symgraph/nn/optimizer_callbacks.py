"""Callbacks that act on the optimizer: LearningRateScheduler and ReduceLROnPlateau set its
learning rate, SwapEMAWeights swaps its moving averages of the weights in (Keras 3's)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.callback_list import Callback, monitor_mode


def _refuse_a_schedule(callback, model) -> None:
    """A callback that sets the learning rate cannot work with an optimizer whose rate is a
    LearningRateSchedule (Keras fails when it first sets it); fit refuses before training."""
    opt = getattr(model, "optimizer", None)
    if getattr(opt, "schedule", None) is not None:
        raise SymgraphError(
            f"{type(callback).__name__} sets the optimizer's learning rate, but "
            f"{type(opt).__name__} was created with a LearningRateSchedule "
            f"({type(opt.schedule).__name__}) as its learning_rate, which is not settable; "
            "use one or the other (a float learning_rate with the callback)")


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate to `schedule(epoch, lr)` before each epoch (not with
    an optimizer whose rate is a LearningRateSchedule: fit refuses that pair)."""

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def set_model(self, model) -> None:
        _refuse_a_schedule(self, model)
        super().set_model(model)

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, opt.learning_rate)
        except TypeError:  # Keras also takes the older schedule(epoch)
            lr = self.schedule(epoch)
        if not isinstance(lr, (int, float, np.floating, np.integer)) or isinstance(lr, bool):
            raise SymgraphError("LearningRateScheduler: the schedule must return a float, got "
                                f"{lr!r} for epoch {epoch}")
        lr = float(lr)
        opt.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs; then wait `cooldown` epochs; never go below `min_lr`.

    The rate is the optimizer's variable (no recompiling); each epoch's logs get the
    `learning_rate` that epoch trained with, before any reduction. An optimizer whose rate is
    a LearningRateSchedule cannot be reduced: fit refuses that pair before training (Keras
    fails at the first reduction).
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if factor >= 1.0:
            raise SymgraphError("ReduceLROnPlateau does not support a factor >= 1.0. "
                                f"Received factor={factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.mode = monitor_mode(monitor, mode)
        self.min_delta, self.cooldown, self.min_lr = abs(min_delta), cooldown, min_lr
        self.wait = self.cooldown_counter = 0
        self.best = -math.inf if self.mode == "max" else math.inf

    def _is_improvement(self, value) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def set_model(self, model) -> None:
        _refuse_a_schedule(self, model)
        super().set_model(model)

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self.wait = self.cooldown_counter = 0
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        logs["learning_rate"] = opt.learning_rate
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          RuntimeWarning, stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = opt.learning_rate
                if old_lr > np.float32(self.min_lr):  # the float32 rate can equal min_lr
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    opt.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class SwapEMAWeights(Callback):
    """Evaluate (fit's validation, evaluate, predict) with the optimizer's moving averages of
    the weights (`use_ema=True`), then put the trained weights back, as Keras 3's callback.

    `swap_on_epoch=True` also puts the averages in at the end of each epoch, for the callbacks
    after this one (a ModelCheckpoint saves them; a BackupAndRestore backup holds them too, so
    a resumed fit continues from the averages) and the trained weights back at the next epoch's
    start; fit ends with the averages in any case (the optimizer's finalize step). The averages
    themselves are never changed (Keras swaps in place: an early stop after a swap then ended
    with the trained weights, and predict left the averages in). Before the optimizer's first
    step there are no averages: nothing is swapped (Keras would use its zero-initialised ones).
    """

    def __init__(self, swap_on_epoch: bool = False):
        super().__init__()
        self.swap_on_epoch = bool(swap_on_epoch)
        self._trained = None  # [(variable, trained value)] while the averages are in the model
        self._swapped_for = None  # "test" / "predict": the call that put the averages in

    def set_model(self, model) -> None:
        opt = getattr(model, "optimizer", None)
        if not getattr(opt, "use_ema", False):
            raise SymgraphError(
                "SwapEMAWeights must be used when `use_ema=True` is set on the optimizer "
                f"(compile with e.g. optimizers.Adam(use_ema=True)); the model's optimizer is "
                f"{type(opt).__name__ if opt is not None else 'None (not compiled)'} with "
                f"use_ema={getattr(opt, 'use_ema', None)}")
        super().set_model(model)

    def _averages_in(self) -> None:
        if self._trained is not None:
            return
        opt = self.model.optimizer
        if int(opt.iterations.value) == 0:
            return
        pairs = [(var, opt._slots[var.id]["average"]) for var in self.model.trainable_weights
                 if "average" in opt._slots.get(var.id, {})]
        self._trained = [(var, var.value) for var, _ in pairs]
        for var, average in pairs:
            var.value = average.value

    def _trained_in(self) -> None:
        if self._trained is not None:
            for var, value in self._trained:
                var.value = value
            self._trained = None

    def on_train_begin(self, logs=None):
        self._trained = self._swapped_for = None

    def on_train_end(self, logs=None):
        self._trained = None  # fit ended with the averages: nothing to put back

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._trained_in()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._averages_in()

    def _begin(self, mode: str) -> None:
        if self._trained is None:
            self._averages_in()
            self._swapped_for = mode if self._trained is not None else None

    def _end(self, mode: str) -> None:
        if self._swapped_for == mode:
            self._trained_in()
            self._swapped_for = None

    def on_test_begin(self, logs=None):
        self._begin("test")

    def on_test_end(self, logs=None):
        self._end("test")

    def on_predict_begin(self, logs=None):
        self._begin("predict")

    def on_predict_end(self, logs=None):
        self._end("predict")
