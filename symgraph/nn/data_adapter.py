"""What fit / evaluate / predict read, as Keras 3's data adapters and EpochIterator
(keras/src/trainers/epoch_iterator.py, data_adapters/): arrays, batched here, the batches a
Python generator or iterable yields, or those a PyDataset returns by index (py_dataset.py).

Batches: each item is (x, y) or (x, y, sample_weight) (predict also takes a bare x or (x,)); a
list item is read as a tuple, as Keras's unpack_x_y_sample_weight does, so a multi-input x
inside an item is a tuple or a dict. A *generator* (any iterator) is read once: with
`steps_per_epoch` every epoch takes the next that many batches; without it an epoch runs until
it is exhausted, so a second epoch finds nothing. A *re-iterable* (a list of tuples, or an object
whose __iter__ gives a fresh iterator) is read afresh when its iterator ends. Running out of data
warns as Keras does and ends training after that epoch. Every batch is checked as arrays are; a
bad one raises naming its index, before its step runs (the earlier steps stand, as in Keras).

Data of a known number of batches (arrays, a PyDataset) is read in *passes* (Passes): without
`steps_per_epoch` an epoch is one pass; with it an epoch takes the next that many batches of the
current pass, and a pass that ends first ends the epoch early, with a warning; the next epoch
starts a new pass (shuffled afresh). This is Keras 3's EpochIterator; training goes on.
"""

from __future__ import annotations

import numbers
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn import sample_weights
from symgraph.nn.py_dataset import PyDataset, loading
from symgraph.nn.running import weighted

RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset or "
           "generator can generate at least `steps_per_epoch * epochs` batches.")


def is_py_dataset(x) -> bool:
    """A PyDataset, or any object with __len__ and __getitem__ that is not an array, a list, a
    tuple, a dict or a string (Keras's Sequence duck type)."""
    if isinstance(x, PyDataset):
        return True
    return (hasattr(x, "__len__") and hasattr(x, "__getitem__") and not hasattr(x, "__array__")
            and not isinstance(x, (list, tuple, Mapping, str, bytes, Iterator)))


def is_batches(x) -> bool:
    """Whether x is batches (an iterator, a list of tuples, an iterable object, a PyDataset),
    not arrays."""
    if is_py_dataset(x) or isinstance(x, Iterator):
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


def checked_batch_size(batch_size) -> int:
    """Keras's default 32 for None; anything but a positive integer is an error."""
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise SymgraphError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return int(batch_size)


def refuse_for_arrays(what: str, **given) -> None:
    """`steps`-like arguments that only mean something for batches."""
    for name, value in given.items():
        if value is not None:
            raise SymgraphError(f"{what}: {name}={value!r} is for data given as a generator, "
                                "iterable of batches or PyDataset; with arrays the batches are "
                                "ceil(samples / batch_size), so leave it None")


def refuse_for_batches(what: str, **given) -> None:
    """Arguments that have no meaning when the data yields its own batches (Keras refuses
    batch_size, y and validation_split the same way)."""
    for name, value in given.items():
        if value is not None and value is not False and not (name == "validation_split"
                                                              and value == 0):
            raise SymgraphError(
                f"{what}: x is a generator, iterable of batches or PyDataset, so {name} must "
                f"not be given "
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

    def epoch(self, rng=None):
        """(index in the epoch, its name in errors, item) of the next epoch's batches; `rng`
        (shuffling) is ignored: the generator decides the order, as in Keras."""
        if self.steps is None:
            n = 0
            for n, item in enumerate(iter(self.data), 1):
                yield n - 1, f"batch {n - 1} (counting from 0)", item
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
            yield b, f"batch {b} (counting from 0)", item

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


class Passes:
    """Keras 3's EpochIterator over data of `n` batches (arrays, a PyDataset): without `steps`
    an epoch is one pass; with it an epoch takes the next `steps` batches of the current pass
    when `carry` (fit's training data), else of a new pass (evaluate, fit's validation). A pass
    that ends first ends the epoch early, with a warning; the next epoch starts a new pass."""

    def __init__(self, n: int, steps: int | None, carry: bool, label: str):
        self.n, self.steps, self.carry, self.label = n, steps, carry, label
        self.left, self.order = 0, None  # batches of the current pass not yet taken; its order

    def epoch(self, new_order) -> tuple:
        """(the pass's order, the positions in it of the next epoch's batches); `new_order()`
        gives the order of a new pass."""
        if self.left == 0 or not self.carry:
            self.order, self.left = new_order(), self.n
        start, take = self.n - self.left, min(self.steps or self.n, self.left)
        self.left -= take
        if take < (self.steps or take):
            warnings.warn(f"{self.label}={self.steps}: the data ran out after {take} batches "
                          f"(a pass over it is {self.n}), so this epoch ended there, as in Keras "
                          "3" + ("; the next epoch starts a new pass" if self.carry else ""),
                          UserWarning, stacklevel=3)
        return self.order, range(start, start + take)


class FailedRead:
    """A PyDataset item whose __getitem__ raised: check_batch raises it, naming the item."""

    def __init__(self, error: Exception):
        self.error = error


def read_items(data, indices: list, workers: int, queue_size: int):
    """data[i] (or a FailedRead) for each i of `indices`, in order; with `workers` > 1 read by
    that many threads, at most `queue_size` items ahead of the one being used."""
    def read(i):
        try:
            return data[i]
        except Exception as exc:  # named with its index by check_batch, before its step
            return FailedRead(exc)

    if workers == 1:
        yield from map(read, indices)
        return
    pool, ahead = ThreadPoolExecutor(workers), deque()
    try:
        for i in indices:
            ahead.append(pool.submit(read, i))
            if len(ahead) > queue_size:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:  # also when the epoch stops early: no read outlives it
        pool.shutdown(wait=True, cancel_futures=True)


class Indexed:
    """A PyDataset's batches (Keras 3's PyDatasetAdapter): batch i is data[i]; an epoch reads
    them in order, or shuffled when given an `rng`, in passes (Passes); `on_epoch_begin` and
    `on_epoch_end` (when it has them) are called around each epoch."""

    once = False
    ran_out = False  # a pass always has its batches: the data never runs out for good

    def __init__(self, data, steps: int | None, what: str, label: str, carry: bool):
        n, name = data.num_batches if isinstance(data, PyDataset) else len(data), \
            type(data).__name__
        if n is None:
            raise SymgraphError(f"{what}: {name}.num_batches is None (an endless PyDataset), "
                                "which is not supported: give a generator and steps_per_epoch")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SymgraphError(f"{what}: {name} has {n!r} batches (its __len__); it needs at "
                                "least one")
        self.workers, self.queue_size = loading(data)
        self.data, self.steps, self.count = data, steps, steps or int(n)
        self.passes = Passes(int(n), steps, carry, label)

    def epoch(self, rng=None):
        """(index in the epoch, its name in errors, item) of the next epoch's batches."""
        n = self.passes.n
        order, positions = self.passes.epoch(
            lambda: np.arange(n) if rng is None else rng.permutation(n))
        indices = [int(order[p]) for p in positions]
        getattr(self.data, "on_epoch_begin", lambda: None)()
        items = read_items(self.data, indices, self.workers, self.queue_size)
        for b, (i, item) in enumerate(zip(indices, items)):
            yield b, f"item {i} of the {type(self.data).__name__} (batch {b} of the epoch, " \
                     "counting from 0)", item
        getattr(self.data, "on_epoch_end", lambda: None)()


def source_for(data, steps, what: str, label: str, carry: bool = False):
    """The batches of `data` (a PyDataset, or a generator or iterable), `steps` (the argument
    named `label`) of them per epoch."""
    steps = steps_count(steps, label)
    if is_py_dataset(data):
        return Indexed(data, steps, what, f"{what}: {label}", carry)
    return Batches(data, steps)


def check_batch(model, item, name: str, what: str, need_y: bool = True):
    """(x, y, w, target) of one item checked as arrays are (x alone when not `need_y`); `name`
    says which item it is in errors."""
    if isinstance(item, FailedRead):
        error = item.error
        raise SymgraphError(f"{what}: {name} could not be read ({type(error).__name__}: "
                            f"{error}), so its step was not run") from error
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
        raise SymgraphError(f"{what}: {name} is invalid, so its step was not run: {exc}") \
            from None
    return x, y, w, weighted(target, w)


class ArrayFit:
    """fit's arrays: checked, split and class-weighted, then sliced into batches, in passes
    (Passes) when `steps_per_epoch` is given. Without `batch_size` the batches are 32 samples,
    or with `steps_per_epoch` ceil(samples / steps_per_epoch), as Keras's ArrayDataAdapter."""

    def __init__(self, model, x, y, batch_size, sample_weight, class_weight, validation_data,
                 validation_split, steps_per_epoch, validation_steps, augment, validations: int):
        from symgraph.nn.model_inputs import InputArrays

        steps = steps_count(steps_per_epoch, "steps_per_epoch")
        given_size, batch_size = batch_size, checked_batch_size(batch_size)
        x = model._check_x(x)
        if augment is not None and isinstance(x, InputArrays):
            raise SymgraphError(f"fit: augment transforms one array x; model {model.name!r} has "
                                f"{len(x.arrays)} inputs, so augment is not supported")
        y, self.target = model._check_y(y, len(x))
        sample_weights.refuse_both(sample_weight, class_weight, "fit")
        w = sample_weights.check_sample_weight(sample_weight, len(x), "fit: sample_weight",
                                               model)
        self.validate = validation(model, validation_data, validation_steps, batch_size,
                                   validations)
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
            self.validate = lambda: model._eval_batches(*val, batch_size)
        if class_weight is not None:  # for training only: Keras splits the data first
            w = sample_weights.class_weight_to_sample_weights(class_weight, y, model, "fit")
        if given_size is None and steps is not None:
            batch_size = -(-len(x) // steps)
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.target = weighted(self.target, w)
        self.passes = Passes(-(-len(x) // batch_size), steps, True, "fit: steps_per_epoch")
        self.steps = steps or self.passes.n
        self.ran_out = False

    def epoch(self, step_for, shuffle: bool, rng, epoch: int):
        """(x, y, w, target, step, sample rows) per batch of one epoch."""
        n, size = len(self.x), self.batch_size
        order, positions = self.passes.epoch(
            lambda: rng.permutation(n) if shuffle else np.arange(n))
        step = step_for(self.target)
        for b in positions:
            idx = order[b * size:(b + 1) * size]
            yield (self.x[idx], self.y[idx], None if self.w is None else self.w[idx],
                   self.target, step, idx)


class BatchFit:
    """fit's batches: a generator, iterable or PyDataset of (x, y[, sample_weight]) items."""

    def __init__(self, model, x, steps_per_epoch, validation_data, validation_steps,
                 validations: int, **refused):
        refuse_for_batches("fit", **refused)
        self.model = model
        self.source = source_for(x, steps_per_epoch, "fit", "steps_per_epoch", carry=True)
        self.validate = validation(model, validation_data, validation_steps, None, validations)

    @property
    def steps(self) -> int | None:
        return self.source.count

    @property
    def ran_out(self) -> bool:
        return self.source.ran_out

    def epoch(self, step_for, shuffle: bool, rng, epoch: int):
        """(x, y, w, target, step, None) per batch of one epoch; `shuffle` shuffles the order
        of a PyDataset's batches per pass and is ignored for a generator or iterable (Keras
        does too: it decides the order)."""
        for _, name, item in self.source.epoch(rng if shuffle else None):
            x, y, w, target = check_batch(self.model, item, name, f"fit (epoch {epoch + 1})")
            yield x, y, w, target, step_for(target), None
        if self.source.ran_out and self.source.steps is None:
            warnings.warn(RAN_OUT, UserWarning, stacklevel=2)


def validation(model, data, steps, batch_size, validations: int):
    """fit's validation as a function returning the batches of one validation, (x, y, w,
    eval step) each (None without validation_data); fit validates `validations` times."""
    if data is None:
        refuse_for_arrays("fit", validation_steps=steps)
        return None
    if is_batches(data):
        source = source_for(data, steps, "fit: validation_data", "validation_steps")
        if source.once and source.steps is None and validations > 1:
            raise SymgraphError(
                f"fit: validation_data is a generator, read once, and fit validates "
                f"{validations} times (epochs, validation_freq): give validation_steps "
                "(batches per validation), or pass a list of batches or an iterable that "
                "starts afresh each time")
        return lambda: eval_batches(model, source, "fit: validation_data")
    refuse_for_arrays("fit", validation_steps=steps)
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise SymgraphError("validation_data must be a tuple (x_val, y_val) (or "
                            "(x_val, y_val, sample_weight)) or a generator, iterable or "
                            f"PyDataset of such batches, got {type(data).__name__}"
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
    return lambda: model._eval_batches(vx, vy, vw, batch_size)


def eval_batches(model, source, what: str):
    """(x, y, w, eval step) per checked batch of one epoch of `source` (Batches, Indexed)."""
    for _, name, item in source.epoch():
        x, y, w, target = check_batch(model, item, name, what)
        yield x, y, w, model._eval_step(target)


def predict_inputs(model, source):
    """The checked inputs of each batch of one epoch of `source`."""
    for _, name, item in source.epoch():
        yield check_batch(model, item, name, "predict", need_y=False)
