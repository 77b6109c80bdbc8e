"""Callbacks with Keras 3's hooks and logic: History, LambdaCallback, ProgbarLogger (from
callback_list.py), EarlyStopping, ModelCheckpoint, BackupAndRestore, LearningRateScheduler,
ReduceLROnPlateau, CSVLogger, TerminateOnNaN, SwapEMAWeights. Keras's RemoteMonitor (an HTTP
POST per epoch) and TensorBoard are not built."""

from __future__ import annotations

import csv
import json
import math
import os
import warnings

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn.callback_list import (  # noqa: F401  (the public names of nn.callbacks)
    Callback,
    CallbackList,
    History,
    LambdaCallback,
    ProgbarLogger,
    monitor_mode,
    uses_batch_hooks,
)
from symgraph.nn.optimizer_callbacks import (  # noqa: F401
    LearningRateScheduler,
    ReduceLROnPlateau,
    SwapEMAWeights,
)
from symgraph.nn.training_state import load_training_state, save_training_state


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = monitor_mode(monitor, mode)
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
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs or {})}",
                          RuntimeWarning, stacklevel=2)
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
    """Save the weights (.npz, atomically) after each epoch, or every `save_freq` training
    batches (an int, counted across epochs as Keras), or only on improvement of `monitor`
    (`save_best_only`, from `initial_value_threshold` when given); with
    `save_weights_only=False` the whole training state (`Model.save_training_state`); to a
    `.keras` filepath the whole model (`Model.save`, as Keras does).

    `filepath` may hold format fields: "ckpt-{epoch:02d}-{val_loss:.3f}.npz", and with an int
    `save_freq` "{batch}" (1-based, as {epoch}). A missing folder is created.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool | None = None,
                 mode: str = "auto", save_freq="epoch",
                 initial_value_threshold: float | None = None):
        super().__init__()
        whole_model = str(filepath).endswith(".keras")
        if not whole_model and not str(filepath).endswith(".npz"):
            raise SymgraphError(f"ModelCheckpoint: filepath must end in .npz (weights or "
                                f"training state) or .keras (the whole model), got {filepath!r}")
        if whole_model and save_weights_only:
            raise SymgraphError(f"ModelCheckpoint: save_weights_only=True writes a .npz, but "
                                f"filepath {filepath!r} ends in .keras (a whole model)")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(
                save_freq, (int, np.integer)) or save_freq < 1):
            raise SymgraphError(f"ModelCheckpoint: unrecognized save_freq={save_freq!r}; "
                                "expected 'epoch' or an integer >= 1 (a number of batches)")
        if save_weights_only is None:  # the suffix says what is saved
            save_weights_only = not whole_model
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.mode = monitor_mode(monitor, mode)
        self.best = initial_value_threshold
        self.saved: list[str] = []
        self._batches_since_saving = self._last_batch = self._epoch = 0

    def _better(self, value) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        # Keras's count: a batch index not above the last one starts a new epoch
        self._batches_since_saving += batch + 1 if batch <= self._last_batch else \
            batch - self._last_batch
        self._last_batch = batch
        if self._batches_since_saving >= self.save_freq:
            self._batches_since_saving = 0
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _path(self, epoch: int, batch: int | None, logs: dict) -> str:
        fields = dict(logs, epoch=epoch + 1)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            when = "this epoch's logs lack" if batch is None else "this batch's logs lack"
            raise SymgraphError(f"ModelCheckpoint: filepath {self.filepath!r} names {exc}, which "
                                f"{when} (they hold: {', '.join(sorted(fields))}; val_* need "
                                "validation data and exist only at the end of an epoch)"
                                ) from None

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:  # Keras warns too: a typo or missing validation data saves nothing
                warnings.warn(f"ModelCheckpoint: can save the best model only with "
                              f"{self.monitor} available (the logs hold: "
                              f"{', '.join(sorted(logs))}), skipping.", RuntimeWarning,
                              stacklevel=3)
                return
            best = self.best if self.best is not None else (
                -math.inf if self.mode == "max" else math.inf)  # Keras: from inf
            if not np.isfinite(current) or not self._better(current):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
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
