"""What fit / evaluate / predict read, as Keras 3's data adapters and EpochIterator
(keras/src/trainers/epoch_iterator.py, data_adapters/): arrays, batched here, or the batches a
Python generator or iterable yields.

Batches: each item is (x, y) or (x, y, sample_weight) (predict also takes a bare x or (x,)); a
list item is read as a tuple, as Keras's unpack_x_y_sample_weight does, so a multi-input x
inside an item is a tuple or a dict. A *generator* (any iterator) is read once: with
`steps_per_epoch` every epoch takes the next that many batches; without it an epoch runs until
it is exhausted, so a second epoch finds nothing. A *re-iterable* (a list of tuples, or an object
whose __iter__ gives a fresh iterator) is read afresh when its iterator ends. Running out of data
warns as Keras does and ends training after that epoch. Every batch is checked as arrays are; a
bad one raises naming its index, before its step runs (the earlier steps stand, as in Keras).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn import sample_weights
from symgraph.nn.running import weighted

RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset or "
           "generator can generate at least `steps_per_epoch * epochs` batches.")


def is_batches(x) -> bool:
    """Whether x is batches (an iterator, a list of tuples, an iterable object) not arrays."""
    if isinstance(x, Iterator):
        return True
    if isinstance(x, list):
        return bool(x) and all(isinstance(item, tuple) and 1 <= len(item) <= 3
                               and not isinstance(item[0], numbers.Number) for item in x)
    return (x is not None and hasattr(x, "__iter__") and not hasattr(x, "__array__")
            and not isinstance(x, (tuple, dict, str, bytes)))


def steps_count(value, what: str) -> int | None:
    """None or a positive integer (steps_per_epoch, validation_steps, steps)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SymgraphError(f"{what} must be a positive integer or None, got {value!r}")
    return int(value)


def refuse_for_arrays(what: str, **given) -> None:
    """`steps`-like arguments only mean something for batches."""
    for name, value in given.items():
        if value is not None:
            raise SymgraphError(f"{what}: {name}={value!r} is for data given as a generator or "
                                "iterable of batches; with arrays the batches are "
                                "ceil(samples / batch_size), so leave it None")


def refuse_for_batches(what: str, **given) -> None:
    """Arguments that have no meaning when the data yields its own batches (Keras refuses
    batch_size, y and validation_split the same way)."""
    for name, value in given.items():
        if value is not None and value is not False and not (name == "validation_split"
                                                              and value == 0):
            raise SymgraphError(
                f"{what}: x is a generator or iterable of batches, so {name} must not be given "
                f"(got {name}={value!r}); each item brings its own batch"
                + (", targets and sample weights as (x, y, sample_weight)"
                   if name in ("y", "sample_weight", "class_weight") else ""))


class Batches:
    """The items of a generator (read once) or a re-iterable, `steps` (or all) per epoch."""

    def __init__(self, data, steps: int | None):
        self.data, self.steps = data, steps
        self.once = isinstance(data, Iterator)
        self.count = steps or (len(data) if isinstance(data, list) else None)
        self.ran_out = False
        self._it = None

    def epoch(self):
        """(index in the epoch, item) of the next epoch's batches."""
        if self.steps is None:
            n = 0
            for n, item in enumerate(iter(self.data), 1):
                yield n - 1, item
            if n == 0:
                self.ran_out = True
            elif not self.once:
                self.count = n  # the epoch's size, learnt from the first pass (as Keras)
            return
        for b in range(self.steps):
            item = self._next(fresh=b == 0)
            if item is _END:
                self.ran_out = True
                warnings.warn(RAN_OUT, UserWarning, stacklevel=2)
                return
            yield b, item

    def _next(self, fresh: bool):
        """The next item; at the start of an epoch a spent re-iterable starts a new pass."""
        if self._it is None:
            self._it = iter(self.data)
        try:
            return next(self._it)
        except StopIteration:
            self._it = None
            return self._next(False) if fresh and not self.once else _END


_END = object()


def check_batch(model, item, b: int, what: str, need_y: bool = True):
    """(x, y, w, target) of one item checked as arrays are (x alone when not `need_y`)."""
    try:
        if isinstance(item, list):
            item = tuple(item)
        if not isinstance(item, tuple):
            item = (item,)
        if not 1 <= len(item) <= 3 or (need_y and len(item) == 1):
            raise SymgraphError(f"an item must be (x, y) or (x, y, sample_weight), got a "
                                f"{type(item).__name__} of {len(item)}")
        x = model._check_x(item[0])
        if len(x) == 0:
            raise SymgraphError("its x has 0 rows")
        if not need_y:
            return x
        if item[1] is None:
            raise SymgraphError("its y is None")
        y, target = model._check_y(item[1], len(x))
        w = sample_weights.check_sample_weight(item[2] if len(item) == 3 else None, len(x),
                                               "its sample_weight (the third item)", model)
    except SymgraphError as exc:
        raise SymgraphError(f"{what}: batch {b} (counting from 0) is invalid, so its step was "
                            f"not run: {exc}") from None
    return x, y, w, weighted(target, w)


class ArrayFit:
    """fit's arrays: checked, split and class-weighted, then sliced into batches each epoch."""

    def __init__(self, model, x, y, batch_size, sample_weight, class_weight, validation_data,
                 validation_split, validation_steps, augment, epochs_run: int):
        from symgraph.nn.model_inputs import InputArrays

        x = model._check_x(x)
        if augment is not None and isinstance(x, InputArrays):
            raise SymgraphError(f"fit: augment transforms one array x; model {model.name!r} has "
                                f"{len(x.arrays)} inputs, so augment is not supported")
        y, self.target = model._check_y(y, len(x))
        sample_weights.refuse_both(sample_weight, class_weight, "fit")
        w = sample_weights.check_sample_weight(sample_weight, len(x), "fit: sample_weight",
                                               model)
        self.validate = validation(model, validation_data, validation_steps, batch_size,
                                   epochs_run)
        val = None
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise SymgraphError(f"validation_split must be in (0, 1), got {validation_split}")
            split = int(len(x) * (1 - validation_split))  # Keras: the *last* samples
            val = (x[split:], y[split:], None if w is None else w[split:])
            x, y, w = x[:split], y[:split], None if w is None else w[:split]
        if len(x) == 0:
            left = f" after validation_split={validation_split}" if validation_split else ""
            raise SymgraphError(f"fit: no training samples{left} (x has 0 rows)")
        if val is not None:
            if len(val[0]) == 0:
                raise SymgraphError("fit: the validation data has no samples")
            self.validate = lambda: model._evaluate_arrays(*val, batch_size)
        if class_weight is not None:  # for training only: Keras splits the data first
            w = sample_weights.class_weight_to_sample_weights(class_weight, y, model, "fit")
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.target = weighted(self.target, w)
        self.steps = max(1, -(-len(x) // batch_size))
        self.ran_out = False

    def epoch(self, step_for, shuffle: bool, rng, epoch: int):
        """(x, y, w, target, step, sample rows) per batch of one epoch."""
        n, size = len(self.x), self.batch_size
        order = rng.permutation(n) if shuffle else np.arange(n)
        step = step_for(self.target)
        for b in range(self.steps):
            idx = order[b * size:(b + 1) * size]
            yield (self.x[idx], self.y[idx], None if self.w is None else self.w[idx],
                   self.target, step, idx)


class BatchFit:
    """fit's batches: a generator or iterable of (x, y[, sample_weight]) items."""

    def __init__(self, model, x, steps_per_epoch, validation_data, validation_steps,
                 epochs_run: int, **refused):
        refuse_for_batches("fit", **refused)
        self.model = model
        self.source = Batches(x, steps_count(steps_per_epoch, "steps_per_epoch"))
        self.validate = validation(model, validation_data, validation_steps, None, epochs_run)

    @property
    def steps(self) -> int | None:
        return self.source.count

    @property
    def ran_out(self) -> bool:
        return self.source.ran_out

    def epoch(self, step_for, shuffle: bool, rng, epoch: int):
        """(x, y, w, target, step, None) per batch of one epoch; `shuffle` is ignored (Keras
        does too: the generator decides the order)."""
        for b, item in self.source.epoch():
            x, y, w, target = check_batch(self.model, item, b, f"fit (epoch {epoch + 1})")
            yield x, y, w, target, step_for(target), None
        if self.source.ran_out and self.source.steps is None:
            warnings.warn(RAN_OUT, UserWarning, stacklevel=2)


def validation(model, data, steps, batch_size, epochs_run: int):
    """fit's validation as a function returning the val logs (None without validation_data)."""
    if data is None:
        refuse_for_arrays("fit", validation_steps=steps)
        return None
    if is_batches(data):
        source = Batches(data, steps_count(steps, "validation_steps"))
        if source.once and source.steps is None and epochs_run > 1:
            raise SymgraphError(
                f"fit: validation_data is a generator, read once, and fit runs {epochs_run} "
                "epochs: give validation_steps (batches per validation), or pass a list of "
                "batches or an iterable that starts afresh each time")
        return lambda: evaluate_batches(model, source, "fit: validation_data")
    refuse_for_arrays("fit", validation_steps=steps)
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise SymgraphError("validation_data must be a tuple (x_val, y_val) (or "
                            "(x_val, y_val, sample_weight)) or a generator or iterable of "
                            f"such batches, got {type(data).__name__}"
                            + (f" of length {len(data)}" if isinstance(data, (tuple, list))
                               else ""))
    try:
        vx = model._check_x(data[0])
        vy = model._check_y(data[1], len(vx))[0] if len(vx) else None
    except SymgraphError as exc:  # say which data: the messages name x and y
        raise SymgraphError(f"fit: validation_data: {exc}") from None
    if len(vx) == 0:
        raise SymgraphError("fit: the validation data has no samples")
    vw = sample_weights.check_sample_weight(
        data[2] if len(data) == 3 else None, len(vx),
        "fit: validation_data's sample weights (its third item)", model)
    return lambda: model._evaluate_arrays(vx, vy, vw, batch_size)


def evaluate_batches(model, source: Batches, what: str, bar=None) -> dict:
    """The logs over one epoch of `source` ({} when it yielded no batch)."""
    from symgraph.nn.running import run_step

    running = model._running()
    for b, item in source.epoch():
        x, y, w, target = check_batch(model, item, b, what)
        fn = model._eval_step(target)
        running.add(fn, run_step(fn, x, y, w), len(x), w)
        if bar is not None:
            bar.update(b + 1, {"loss": running.logs()["loss"]})
    return running.logs() if running.seen else {}


def predict_batches(model, source: Batches, bar=None) -> list:
    """The outputs per batch (a list of arrays per output) over one epoch of `source`."""
    from symgraph.nn.model_inputs import feed

    fn, outs = model._predict_step(), []
    for b, item in source.epoch():
        out = fn(*feed(check_batch(model, item, b, "predict", need_y=False)))
        outs.append(out if model.multi_outputs else [out])
        if bar is not None:
            bar.update(b + 1, {})
    if not outs:
        raise SymgraphError("predict: the generator or iterable yielded no batches")
    return outs
