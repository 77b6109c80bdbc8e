"""Callbacks with Keras's hooks and logic: History, EarlyStopping, ModelCheckpoint,
BackupAndRestore, LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.training_state import load_training_state, save_training_state


class Callback:
    """Hooks called by `fit`; `self.model` is set before training starts."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # Keras keeps on_batch_* as aliases

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)


_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


def uses_batch_hooks(callback) -> bool:
    """Whether `callback` overrides a per-batch hook (fit calls those hooks on no other)."""
    for name in _BATCH_HOOKS:
        hook = getattr(callback, name, None)
        if hook is not None and getattr(hook, "__func__", hook) is not getattr(Callback, name):
            return True
    return False


class History(Callback):
    """Per-epoch logs: `history.history["loss"]`, `["val_accuracy"]`, ...; `history.epoch`."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.nan_report: str | None = None

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise SymgraphError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    # an output's metric is logged "<output>_acc"; a repeated name gets "_1", "_2"
    name = re.sub(r"_\d+$", "", monitor.removeprefix("val_"))
    return "max" if name in ("acc", "accuracy", "auc") or name.endswith(
        ("accuracy", "_acc", "_auc")) else "min"


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(min_delta) * (1 if self.mode == "max" else -1)
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best = None
        self.best_weights = None

    def _is_improvement(self, value, reference) -> bool:
        if self.mode == "max":
            return value - self.min_delta > reference
        return value - self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.wait = self.stopped_epoch = self.best_epoch = 0
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            available = ", ".join(sorted(logs or {}))
            print(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                  f"available. Available metrics are: {available}")
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # the first weights are the best so far
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the weights (.npz, atomically) after each epoch, or only on improvement; with
    `save_weights_only=False` the whole training state (`Model.save_training_state`); to a
    `.keras` filepath the whole model (`Model.save`, as Keras does).

    `filepath` may hold format fields: "ckpt-{epoch:02d}-{val_loss:.3f}.npz".
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool | None = None,
                 mode: str = "auto", initial_value_threshold: float | None = None):
        super().__init__()
        whole_model = str(filepath).endswith(".keras")
        if not whole_model and not str(filepath).endswith(".npz"):
            raise SymgraphError(f"ModelCheckpoint: filepath must end in .npz (weights or "
                                f"training state) or .keras (the whole model), got {filepath!r}")
        if whole_model and save_weights_only:
            raise SymgraphError(f"ModelCheckpoint: save_weights_only=True writes a .npz, but "
                                f"filepath {filepath!r} ends in .keras (a whole model)")
        if save_weights_only is None:  # the suffix says what is saved
            save_weights_only = not whole_model
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = initial_value_threshold
        self.saved: list[str] = []

    def _better(self, value) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise SymgraphError(f"ModelCheckpoint: filepath {self.filepath!r} names {exc}, which "
                                f"this epoch's logs lack (they hold: epoch, "
                                f"{', '.join(sorted(logs))}; val_* need validation data)"
                                ) from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:  # Keras warns too: a typo or missing validation data saves nothing
                warnings.warn(f"ModelCheckpoint: can save the best model only with "
                              f"{self.monitor} available (the logs hold: "
                              f"{', '.join(sorted(logs))}), skipping.", RuntimeWarning,
                              stacklevel=2)
                return
            if not np.isfinite(current) or not self._better(current):
                return
            if self.verbose:
                best = self.best if self.best is not None else (
                    -math.inf if self.mode == "max" else math.inf)  # Keras: from inf
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if path.endswith(".keras"):
            self.model.save(path)
        elif self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save_training_state(path)
        self.saved.append(path)


def _read_fit_state(extra: dict) -> tuple:
    """(next epoch, generator state) from a backup's fit arrays; raises on damaged ones."""
    epoch, state = int(extra["fit/epoch"]), json.loads(str(extra["fit/rng"]))
    if epoch < 0:
        raise ValueError(f"the next epoch is {epoch}")
    np.random.default_rng().bit_generator.state = state  # refuses a state it cannot take
    return epoch, state


class BackupAndRestore(Callback):
    """Resume an interrupted `fit` exactly where its last finished epoch left it.

    After each epoch the training state (weights, optimizer, the dropout step, the next epoch
    and the shuffling generator) goes to `backup_dir/training_state.npz`, atomically. A `fit`
    that finds that file restores it and starts at the saved epoch; with the same data,
    seeds and model this gives the weights an uninterrupted run would have, unless another
    callback keeps counters of its own (EarlyStopping's and ReduceLROnPlateau's wait and best
    start afresh, as in Keras; the learning rate it set is restored). The file is
    deleted when `fit` ends normally (`delete_checkpoint=True`, Keras's default), with the folder
    when it is then empty.
    """

    def __init__(self, backup_dir: str, save_freq="epoch", delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch":
            raise SymgraphError(f"BackupAndRestore: save_freq={save_freq!r} is not supported; "
                                "backups are made at the end of each epoch ('epoch')")
        if not backup_dir:
            raise SymgraphError("BackupAndRestore: backup_dir must name a folder")
        self.path = os.path.join(str(backup_dir), "training_state.npz")
        self.delete_checkpoint = delete_checkpoint

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)  # found unusable now, not after an epoch
        except OSError as exc:
            raise SymgraphError(f"BackupAndRestore: cannot use {folder!r} as the backup folder "
                                f"({type(exc).__name__}: {exc})") from None
        if os.path.exists(self.path):
            self.model._resume = load_training_state(self.model, self.path, _read_fit_state)

    def on_epoch_end(self, epoch, logs=None):
        rng = json.dumps(self.model._fit_rng.bit_generator.state)
        save_training_state(self.model, self.path,
                            {"fit/epoch": np.int64(epoch + 1), "fit/rng": np.array(rng)})

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.path):
            os.remove(self.path)
            try:
                os.rmdir(os.path.dirname(self.path))  # the folder too, when nothing else is in it
            except OSError:
                pass


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
        self.mode = _monitor_mode(monitor, mode)
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


class CSVLogger(Callback):
    """Stream each epoch's logs to a CSV file: a header `epoch` then the sorted log keys of the
    first epoch, one row per epoch (epochs counted from 0, a missing value written `NA`).

    Each row is flushed when written, so a killed run keeps the rows of its finished epochs
    (at worst the row being written is cut short); the file is not written atomically.
    `append=True` continues an existing file without repeating the header.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys: list | None = None
        self.csv_file = None
        self._writer = None
        self._write_header = True

    def on_train_begin(self, logs=None):
        self._write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self._write_header = not f.readline()  # an empty file still needs one
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        try:
            self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        except OSError as exc:
            raise SymgraphError(f"CSVLogger: cannot write {self.filename!r} "
                                f"({type(exc).__name__}: {exc})") from None
        self.keys, self._writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self._writer is None:
            dialect = type("CSVLoggerDialect", (csv.excel,), {"delimiter": self.sep})
            self._writer = csv.DictWriter(self.csv_file, ["epoch"] + self.keys, dialect=dialect)
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, _csv_value(logs.get(k, "NA"))) for k in self.keys)
        self._writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self._writer = None


def _csv_value(value):
    """Numbers and strings as they are, arrays with more than 0 dims as "[a, b, ...]"."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"[{', '.join(map(str, value))}]"
    return value


class TerminateOnNaN(Callback):
    """Stop training after a batch whose loss (logs["loss"]) is NaN or infinite.

    fit's own `nan_guard` (on by default) catches such a batch first, without applying its
    step, and names the node that made the NaN; this callback matters with nan_guard=False,
    where the step has been applied, as in Keras. `raise_error=True` raises instead of
    stopping (other callbacks' `on_train_end` then does not run).
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. "
                               f"Loss value: {loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True
