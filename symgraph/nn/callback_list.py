"""The callback machinery of fit / evaluate / predict, as Keras 3's: the Callback hooks, the
CallbackList that calls them, and the callbacks every call may add (History, ProgbarLogger),
with LambdaCallback. The callbacks themselves are in callbacks.py."""

from __future__ import annotations

import re

from symgraph.errors import SymgraphError
from symgraph.nn.progbar import Progbar


class Callback:
    """Hooks called by `fit`, `evaluate` and `predict`; `self.model` and `self.params`
    ({"verbose", "epochs", "steps"}) are set before the first hook of a call."""

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
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # Keras keeps on_batch_* as aliases

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)


HOOKS = tuple(name for name in vars(Callback) if name.startswith("on_"))
_BATCH_HOOKS = {
    "train": ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def uses_batch_hooks(callback, mode: str = "train") -> bool:
    """Whether `callback` overrides a per-batch hook of `mode` ("train", "test", "predict"):
    the batch hooks of a mode are called on no other callback."""
    for name in _BATCH_HOOKS[mode]:
        hook = getattr(callback, name, None)
        if hook is not None and getattr(hook, "__func__", hook) is not getattr(Callback, name):
            return True
    return False


def monitor_mode(monitor: str, mode: str) -> str:
    """Whether `monitor` should fall ("min") or rise ("max"); mode "auto" picks "max" for
    accuracies and AUCs by their names."""
    if mode not in ("auto", "min", "max"):
        raise SymgraphError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    # an output's metric is logged "<output>_acc"; a repeated name gets "_1", "_2"
    name = re.sub(r"_\d+$", "", monitor.removeprefix("val_"))
    return "max" if name in ("acc", "accuracy", "auc") or name.endswith(
        ("accuracy", "_acc", "_auc")) else "min"


class CallbackList:
    """Keras's CallbackList: each hook is called on every callback in list order, with `{}`
    where there are no logs (the same dict for all: what one callback adds to the epoch logs
    the next sees). A `History` and a `ProgbarLogger` are added at the end when asked for and
    not given."""

    def __init__(self, callbacks, model, params: dict, add_history: bool = False,
                 add_progbar: bool = False):
        self.callbacks = list(callbacks)
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if add_history and self.history is None:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self._batch = {mode: [cb for cb in self.callbacks if uses_batch_hooks(cb, mode)]
                       for mode in _BATCH_HOOKS}

    def begin(self, mode: str) -> None:
        """on_train_begin / on_test_begin / on_predict_begin."""
        logs = {}
        for cb in self.callbacks:
            getattr(cb, f"on_{mode}_begin")(logs)

    def end(self, mode: str, logs: dict | None = None) -> None:
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, f"on_{mode}_end")(logs)

    def epoch_begin(self, epoch: int) -> None:
        logs = {}
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def epoch_end(self, epoch: int, logs: dict) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def wants_batches(self, mode: str) -> bool:
        return bool(self._batch[mode])

    def batch_begin(self, mode: str, batch: int) -> None:
        logs = {}
        for cb in self._batch[mode]:
            getattr(cb, f"on_{mode}_batch_begin")(batch, logs=logs)

    def batch_end(self, mode: str, batch: int, logs: dict) -> None:
        for cb in self._batch[mode]:
            getattr(cb, f"on_{mode}_batch_end")(batch, logs=logs)


class History(Callback):
    """Per-epoch logs: `history.history["loss"]`, `["val_accuracy"]`, ...; `history.epoch`.
    With `validation_freq` the val_* lists hold only the epochs that validated."""

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


class ProgbarLogger(Callback):
    """The progress bar (progbar.py) as Keras's callback: fit, evaluate and predict add one
    when verbose is not 0. In fit, validation draws no bar (its values end the epoch's line);
    an epoch's line ends after the other callbacks' on_epoch_end, with what they logged."""

    def __init__(self):
        super().__init__()
        self.progbar = None
        self.verbose, self.epochs, self.target = 1, 1, None
        self._in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs, self.target = params.get("epochs", 1), params.get("steps")

    def _start(self) -> None:
        self.progbar = Progbar(self.target, self.verbose)

    def _update(self, batch: int, logs) -> None:
        if self.progbar is None:
            self._start()
        self.progbar.update(batch + 1, logs or {})

    def _finish(self, logs) -> None:
        if self.progbar is None:
            self._start()
        # diagnostics (grad_norm/<layer>, ...) stay out of the line
        self.progbar.finish({k: v for k, v in (logs or {}).items() if "/" not in k})
        self.progbar = None

    def on_train_begin(self, logs=None):
        self._in_fit = True  # validation inside fit is silent

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}")
        self._start()

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._start()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._start()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)  # not the predictions

    def on_predict_end(self, logs=None):
        self._finish(None)


class LambdaCallback(Callback):
    """A callback from functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`, any
    hook by its name (on_train_begin(logs), on_train_batch_end(batch, logs), on_test_begin,
    on_predict_batch_end, ...), called with the arguments Keras passes (batch hooks get
    `logs` by keyword). A name that is no hook is refused (Keras would set it silently)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        unknown = sorted(set(given) - set(HOOKS))
        if unknown:
            raise SymgraphError(f"LambdaCallback: {', '.join(unknown)} is not a callback hook; "
                                f"the hooks are {', '.join(HOOKS)}")
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise SymgraphError(f"LambdaCallback: {name} must be a function, got "
                                    f"{type(fn).__name__} {fn!r}")
        for name, fn in given.items():
            if fn is not None:
                setattr(self, name, fn)
