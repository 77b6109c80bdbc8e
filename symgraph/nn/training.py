"""compile / fit / evaluate / predict / train_on_batch / test_on_batch with Keras semantics
(mixed into models).

Step functions are compiled once per (targets, trainable set, backend) and cached; a new batch
size never recompiles. Input checks run in Python before a step, so a bad array names the layer
and shapes and changes no state; the runtime swaps variables only after a step succeeds.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn import callbacks as cbks
from symgraph.nn import (
    data_adapter,
    losses,
    metrics,
    model_inputs,
    model_outputs,
    optimizers,
    sample_weights,
)
from symgraph.nn.backend import choose_backend
from symgraph.nn.callback_list import CallbackList
from symgraph.nn.model_inputs import InputArrays, feed
from symgraph.nn.running import Running, logs_result, run_step, weighted
from symgraph.nn.steps import TargetSpec, build_eval_step, build_predict_step, build_train_step


def _verbosity(verbose) -> int:
    return 1 if verbose == "auto" else int(verbose)


class Trainer:
    """The training API of a model with `layers`, `input_shape`, weights and `step_counter`."""

    optimizer = None
    _resume = None  # (epoch, generator state) a BackupAndRestore found, for fit
    loss = None
    loss_weight = 1.0
    metric_fns: list = []
    weighted_metric_fns: list = []
    output_heads: list = []  # model_outputs.OutputHead per output of a multi-output model

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, backend: str | None = None, run_eagerly: bool = False,
                jit_compile="auto", **kwargs):
        """Set optimizer, loss and metrics (`weighted_metrics` are weighted by the sample or
        class weights, as in Keras 3); `backend` None/"auto" picks Numba when it works. A model
        with several outputs takes them per output (model_outputs.py)."""
        if kwargs:
            raise SymgraphError(f"compile: unsupported arguments {', '.join(sorted(kwargs))}")
        # everything is resolved (and may raise) before anything is set: a refused compile
        # leaves the model as it was
        opt = optimizers.get(optimizer)
        loss_obj, weight, metric_fns, weighted_fns, heads = None, 1.0, [], [], []
        if self.multi_outputs:
            heads = model_outputs.compile_heads(self, loss, loss_weights, metrics,
                                                weighted_metrics)
        else:
            for name, given in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
                if given is not None and not isinstance(given, (list, tuple)):
                    raise SymgraphError(f"compile: `{name}` must be a list or tuple, e.g. "
                                        f"{name}=[{given!r}]; got {type(given).__name__} "
                                        f"{given!r}")
            loss_obj = losses.get(model_outputs.single_loss(self, loss))
            weight = losses.loss_weight(loss_weights)
            metric_fns = [metrics_get(m, loss_obj.name) for m in (metrics or [])]
            plain = {name for name, _ in metric_fns}
            weighted_fns = [  # Keras renames a clash with a plain metric weighted_<name>
                (f"weighted_{name}" if name in plain else name, fn)
                for name, fn in (metrics_get(m, loss_obj.name) for m in (weighted_metrics or []))]
        chosen = choose_backend(backend)
        self._compile_args = dict(optimizer=opt, loss=loss, loss_weights=loss_weights,  # saving
                                  metrics=metrics, weighted_metrics=weighted_metrics,
                                  backend=backend)
        self.optimizer, self.loss, self.loss_weight = opt, loss_obj, weight
        self.metric_fns, self.weighted_metric_fns = metric_fns, weighted_fns
        self.output_heads = heads
        self._auto_backend = backend in (None, "auto")
        self.backend = chosen
        self._functions = {}
        self.compiled = True

    # --- data checks ----------------------------------------------------------------------

    def _require_compiled(self, what: str) -> None:
        if not getattr(self, "compiled", False):
            raise SymgraphError(f"You must call `compile()` before using the model ({what}).")

    def _check_x(self, x) -> np.ndarray | InputArrays:
        """One float32 array, or for a multi-input model an InputArrays (model_inputs.py)."""
        return model_inputs.check_x(self, x)

    def _check_y(self, y, n: int):
        """(array, TargetSpec) for one output, (TargetArrays, OutputTargets) for several."""
        return model_outputs.check_y(self, y, n)

    # --- compiled steps -------------------------------------------------------------------

    def _trainable_key(self) -> tuple:
        return tuple(v.id for v in self.trainable_weights)

    def _compiled(self, key: tuple, builder):
        """The cached step function for `key`, built by `builder(backend)` on first use.

        With backend="auto", a backend that fails to compile this model's graph (Numba
        is young) falls back to the NumPy reference, with a warning, instead of failing fit.
        """
        full_key = key + (self.backend,)
        if full_key not in self._functions:
            try:
                self._functions[full_key] = builder(self.backend)
            except Exception as exc:
                if not self._auto_backend or self.backend == "numpy":
                    raise
                warnings.warn(f"backend {self.backend!r} could not compile {key[0]} step "
                              f"({type(exc).__name__}: {exc}); using the numpy backend",
                              RuntimeWarning, stacklevel=3)
                self.backend = "numpy"
                return self._compiled(key, builder)
        return self._functions[full_key]

    def _train_step(self, target: TargetSpec, diagnostics=False, backend=None, check_nan=False,
                    nan_guard=False):
        key = ("train", target, diagnostics, self._trainable_key(), check_nan, nan_guard)
        if backend is not None and backend != self.backend:  # the NaN hunt's numpy re-run
            full = key + (backend,)
            if full not in self._functions:
                self._functions[full] = build_train_step(self, target, backend, diagnostics,
                                                         check_nan, nan_guard)
            return self._functions[full]
        return self._compiled(key, lambda b: build_train_step(self, target, b, diagnostics,
                                                              check_nan, nan_guard))

    def _eval_step(self, target: TargetSpec):
        return self._compiled(("eval", target), lambda b: build_eval_step(self, target, b))

    def _predict_step(self):
        return self._compiled(("predict",), lambda b: build_predict_step(self, b))

    def _running(self) -> Running:
        return Running(*model_outputs.running_names(self))

    # --- training -------------------------------------------------------------------------

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None,
                       return_dict: bool = False):
        """One optimizer step on one batch; returns loss (and metrics) of that batch."""
        return self._on_batch("train_on_batch", self._train_step, x, y, sample_weight,
                              class_weight, return_dict)

    def _on_batch(self, what: str, step_for, x, y, sample_weight, class_weight,
                  return_dict: bool):
        """Run the step `step_for(target)` on one batch: its loss and per-sample metrics."""
        self._require_compiled(what)
        x = self._check_x(x)
        if len(x) == 0:
            raise SymgraphError(f"{what}: no samples (x has 0 rows); nothing was run")
        y, target = self._check_y(y, len(x))
        w = sample_weights.resolve(sample_weight, class_weight, y, self, what)
        running = self._running()
        step = step_for(weighted(target, w))
        running.add(step, run_step(step, x, y, w), len(x), w)
        return logs_result(running.logs(), return_dict, running.loss_names)

    def fit(self, x=None, y=None, batch_size=None, epochs: int = 1, verbose="auto",
            callbacks=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, class_weight=None, sample_weight=None, initial_epoch: int = 0,
            steps_per_epoch=None, validation_steps=None, validation_freq=1, augment=None,
            diagnostics: bool = False, nan_guard: bool = True, seed=None):
        """Train for `epochs`; returns a History. x (and validation_data) may be arrays, a
        generator / iterable of (x, y[, sample_weight]) batches or a PyDataset
        (data_adapter.py); `steps_per_epoch` (`validation_steps`) sets the batches per epoch
        (per validation); `validation_freq` n validates after every n-th epoch (epochs counted
        from 1; a list: after those epochs), as Keras. The callbacks' hooks run in Keras 3's
        order, validation calling their on_test_* hooks. Beyond Keras:
        `augment(batch, rng)` transforms training batches only; `diagnostics=True` records
        per-layer gradient norms (grad_norm/<layer>) and dead-ReLU fractions (dead_relu/<layer>)
        per epoch; the NaN guard stops training on a non-finite loss and names the first node
        producing it."""
        self._require_compiled("fit")
        verbose = _verbosity(verbose)
        epochs = _count(epochs, "epochs")
        initial_epoch = _count(initial_epoch, "initial_epoch")
        validates = _validation_epochs(validation_freq)
        callbacks = _callbacks(callbacks)
        validations = sum(validates(e) for e in range(initial_epoch, epochs))
        if data_adapter.is_batches(x):
            data = data_adapter.BatchFit(
                self, x, steps_per_epoch, validation_data, validation_steps, validations,
                batch_size=batch_size, y=y, validation_split=validation_split,
                sample_weight=sample_weight, class_weight=class_weight, augment=augment,
                diagnostics=diagnostics)
        else:
            data = data_adapter.ArrayFit(self, x, y, batch_size, sample_weight, class_weight,
                                         validation_data, validation_split, steps_per_epoch,
                                         validation_steps, augment, validations)
        rng = np.random.default_rng(seed) if seed is not None else _fit_rng()
        callback_list = CallbackList(callbacks, self,
                                     {"verbose": verbose, "epochs": epochs, "steps": data.steps},
                                     add_history=True, add_progbar=verbose != 0)
        history = callback_list.history
        self.history = history
        self.stop_training = False
        run = _FitRun(lambda target: self._train_step(target, diagnostics, nan_guard=nan_guard),
                      augment, rng, callback_list, nan_guard, history, diagnostics)
        self._fit_rng, self._resume = rng, None
        callback_list.begin("train")
        if self._resume is not None:  # BackupAndRestore found a backup: continue from it
            initial_epoch, rng.bit_generator.state = self._resume
        training_logs = {}
        for epoch in range(initial_epoch, epochs):
            callback_list.epoch_begin(epoch)
            logs = self._train_epoch(run, data.epoch(run.step_for, shuffle, rng, epoch), epoch)
            if not logs:  # the NaN guard stopped training, or the data had run out
                break
            if data.validate is not None and validates(epoch):
                val_logs = self._test_loop(data.validate(), callback_list)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            callback_list.epoch_end(epoch, logs)
            training_logs = logs
            if self.stop_training or data.ran_out:
                break
        self.optimizer.finalize_variable_values(self.trainable_weights)  # use_ema: the averages
        callback_list.end("train", training_logs)
        return history

    def _train_epoch(self, run: _FitRun, batches, epoch: int):
        """One pass over `batches`, (x, y, w, target, step, sample rows or None) each; the
        epoch's logs ({} when there was no batch), or None when a step's loss was not finite
        (the step is undone and `history.nan_report` names the culprit)."""
        from symgraph.nn.diagnostics import EpochDiagnostics, hunt_nan

        running = self._running()
        diag = None
        for b, (xb, yb, wb, target, step, rows) in enumerate(batches):
            if run.augment is not None:
                xb = np.asarray(run.augment(xb, run.rng), np.float32)
            run.callbacks.batch_begin("train", b)
            found = model_inputs.first_nonfinite(self, xb) if run.nan_guard else None
            if found:
                # an activation (a clip, say) can hide a NaN input from the loss while its
                # gradient poisons the weights: such a batch is never run (10 us a batch)
                bad, (row, *col), where = found
                sample = (f"training sample {int(rows[row])}" if rows is not None
                          else f"sample {row} of training batch {b}")
                augmented = " after augment" if run.augment is not None else ""
                return self._stop_on_nan(run, epoch, b, f"{sample} holds {bad}{where} (at "
                                         f"{tuple(col)}{augmented}); the step was not run")
            outs = run_step(step, xb, yb, wb)
            if run.nan_guard and not np.isfinite(outs[0]):
                # the guarded step kept every old value (steps.build_train_step): nothing to undo
                before = [(v, v._value) for v in step.function.update_vars]
                batch = (*feed(xb), *feed(yb)) + (() if wb is None else feed(wb))
                return self._stop_on_nan(run, epoch, b, hunt_nan(self, target, batch, before))
            running.add(step, outs, len(xb), wb)
            if run.diagnostics:
                diag = diag or EpochDiagnostics(step)
                diag.add(outs)
            if run.callbacks.wants_batches("train"):
                run.callbacks.batch_end("train", b, running.logs())
            if self.stop_training:  # a callback (TerminateOnNaN, say) ended it mid-epoch
                break
        if not running.seen:
            return {}
        logs = running.logs()
        if diag is not None:
            logs.update(diag.summary())
        return logs

    def _stop_on_nan(self, run: _FitRun, epoch: int, b: int, report: str) -> None:
        """The NaN guard's stop: record and print `report`; no epoch logs (None)."""
        run.history.nan_report = report
        print(f"\nTraining stopped at epoch {epoch + 1}, batch {b + 1}: {report}",
              file=sys.stderr)
        self.stop_training = True
        return None

    # --- inference ------------------------------------------------------------------------

    def _eval_batches(self, x, y, w, batch_size: int):
        """(x, y, w, eval step) per batch of checked inputs `x`, sample weights `w` (or None)
        and raw targets `y`; y is checked and the step compiled now, before any batch."""
        y, target = self._check_y(y, len(x))
        fn = self._eval_step(weighted(target, w))
        count = max(1, -(-len(x) // batch_size))
        slices = (slice(b * batch_size, (b + 1) * batch_size) for b in range(count))
        return ((x[s], y[s], None if w is None else w[s], fn) for s in slices)

    def _test_loop(self, batches, callbacks: CallbackList) -> dict:
        """Keras's evaluate loop over (x, y, w, step) batches with the test hooks: the logs of
        the batches run ({} when there was none); a callback may end it early by setting
        `model.stop_evaluating`."""
        running = self._running()
        self.stop_evaluating = False
        callbacks.begin("test")
        for b, (xb, yb, wb, fn) in enumerate(batches):
            callbacks.batch_begin("test", b)
            running.add(fn, run_step(fn, xb, yb, wb), len(xb), wb)
            if callbacks.wants_batches("test"):
                callbacks.batch_end("test", b, running.logs())
            if self.stop_evaluating:
                break
        logs = running.logs() if running.seen else {}
        callbacks.end("test", logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict: bool = False):
        """[loss, *metrics] over the data (a float when there are no metrics); `sample_weight`
        weighs the loss and the weighted metrics, as in Keras. x may be a generator / iterable
        or PyDataset of (x, y[, sample_weight]) batches, `steps` of them read (all when None).
        `callbacks` get the on_test_* hooks (params: verbose, epochs 1, steps)."""
        self._require_compiled("evaluate")
        verbose = _verbosity(verbose)
        callbacks = _callbacks(callbacks)
        if data_adapter.is_batches(x):
            data_adapter.refuse_for_batches("evaluate", y=y, batch_size=batch_size,
                                            sample_weight=sample_weight)
            source = data_adapter.source_for(x, steps, "evaluate", "steps")
            batches, count = data_adapter.eval_batches(self, source, "evaluate"), source.count
        else:
            data_adapter.refuse_for_arrays("evaluate", steps=steps)
            x = self._check_x(x)
            if len(x) == 0:
                raise SymgraphError("evaluate: no samples (x has 0 rows): the loss of nothing "
                                    "is undefined")
            w = sample_weights.check_sample_weight(sample_weight, len(x),
                                                   "evaluate: sample_weight", self)
            batch_size = data_adapter.checked_batch_size(batch_size)
            batches = self._eval_batches(x, y, w, batch_size)
            count = max(1, -(-len(x) // batch_size))
        callback_list = CallbackList(callbacks, self,
                                     {"verbose": verbose, "epochs": 1, "steps": count},
                                     add_progbar=verbose != 0)
        logs = self._test_loop(batches, callback_list)
        if not logs:
            raise SymgraphError("evaluate: the generator or iterable yielded no batches: "
                                "the loss of nothing is undefined")
        return logs_result(logs, return_dict, model_outputs.running_names(self)[2])

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """Loss (and metrics) of one batch in inference mode, as `evaluate`; changes no state."""
        return self._on_batch("test_on_batch", self._eval_step, x, y, sample_weight, None,
                              return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs in inference mode (dropout off, moving BN statistics): an array,
        or for several outputs a list in output order (a dict for outputs given as one). x may
        be a generator / iterable or PyDataset of batches (x, (x,) or (x, y, ...)), `steps` of
        them read. `callbacks` get the on_predict_* hooks, on_predict_batch_end's logs
        {"outputs": that batch's outputs} as Keras."""
        verbose = _verbosity(verbose)
        callbacks = _callbacks(callbacks)
        if data_adapter.is_batches(x):
            data_adapter.refuse_for_batches("predict", batch_size=batch_size)
            source = data_adapter.source_for(x, steps, "predict", "steps")
            batches, count = data_adapter.predict_inputs(self, source), source.count
        else:
            data_adapter.refuse_for_arrays("predict", steps=steps)
            size = data_adapter.checked_batch_size(batch_size)
            x = self._check_x(x)
            batches, count = _slices(x, size), max(1, -(-len(x) // size))
        self._ensure_backend()
        callback_list = CallbackList(callbacks, self,
                                     {"verbose": verbose, "epochs": 1, "steps": count},
                                     add_progbar=verbose != 0)
        return self._predict_loop(batches, callback_list)

    def predict_on_batch(self, x):
        """predict on x as one batch."""
        x = self._check_x(x)
        self._ensure_backend()
        return self._predict_loop([x], CallbackList([], self, {}))

    def _train_mode_call(self, x):
        """`model(x, training=True)` on arrays: the outputs of the forward pass in training
        mode; its updates (moving statistics, the step that draws dropout masks) are applied."""
        x = self._check_x(x)
        self._ensure_backend()
        fn = self._compiled(("call", self._trainable_key()),
                            lambda b: build_predict_step(self, b, training=True))
        out = fn(*feed(x))
        return model_outputs.predictions(self, list(out) if self.multi_outputs else [out])

    def _ensure_backend(self) -> None:
        """predict works uncompiled: on the backend "auto" picks."""
        if not hasattr(self, "backend"):
            self.backend, self._functions = choose_backend(None), {}
            self._auto_backend = True

    def _predict_loop(self, batches, callbacks: CallbackList):
        """Keras's predict loop over checked input batches with the predict hooks; a callback
        may end it early by setting `model.stop_predicting`."""
        fn = self._predict_step()
        self.stop_predicting = False
        callbacks.begin("predict")
        outs = []
        for b, xb in enumerate(batches):
            callbacks.batch_begin("predict", b)
            out = fn(*feed(xb))
            outs.append(list(out) if self.multi_outputs else [out])
            if callbacks.wants_batches("predict"):
                callbacks.batch_end("predict", b,
                                    {"outputs": model_outputs.predictions(self, outs[-1])})
            if self.stop_predicting:
                break
        callbacks.end("predict")
        if not outs:
            raise SymgraphError("predict: the generator or iterable yielded no batches")
        return model_outputs.predictions(self, [np.concatenate(a, axis=0) for a in zip(*outs)])


@dataclass
class _FitRun:
    """What every epoch of one `fit` call shares."""

    step_for: object           # TargetSpec -> the compiled (cached) train step
    augment: object
    rng: np.random.Generator
    callbacks: CallbackList
    nan_guard: bool
    history: cbks.History
    diagnostics: bool


def metrics_get(identifier, loss_name):
    return metrics.get(identifier, loss_name)


def _fit_rng() -> np.random.Generator:
    """A generator for shuffling and augmentation, drawn from the global seeded one."""
    from symgraph.nn.initializers import global_rng

    return np.random.default_rng(global_rng().integers(2**32))


def _count(value, what: str) -> int:
    """A non-negative integer argument (epochs, initial_epoch)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SymgraphError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _slices(x, size: int):
    """Batches of `size` rows of x (one, empty, for 0 rows)."""
    return (x[b * size:(b + 1) * size] for b in range(max(1, -(-len(x) // size))))


def _validation_epochs(validation_freq):
    """Keras's validation_freq as a test of the 0-based epoch: an int n >= 1 (every n-th
    epoch) or a list of the (1-based) epochs to validate after."""
    def is_count(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

    if is_count(validation_freq):
        return lambda epoch: (epoch + 1) % int(validation_freq) == 0
    if isinstance(validation_freq, (list, tuple)) and all(map(is_count, validation_freq)):
        chosen = {int(e) for e in validation_freq}
        return lambda epoch: epoch + 1 in chosen
    raise SymgraphError(f"fit: validation_freq must be an integer >= 1 (validate every n "
                        f"epochs) or a list of epochs counted from 1, got {validation_freq!r}")


def _callbacks(callbacks) -> list:
    """Keras's `callbacks`: None or a list of Callback instances."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise SymgraphError(f"callbacks must be a list of nn.callbacks.Callback instances, got "
                            f"{type(callbacks).__name__} {callbacks!r}")
    for cb in callbacks:
        if not isinstance(cb, cbks.Callback):
            raise SymgraphError(f"callbacks must be nn.callbacks.Callback instances, got "
                                f"{type(cb).__name__} {cb!r}")
    return list(callbacks)


