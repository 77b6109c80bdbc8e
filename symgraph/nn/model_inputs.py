"""What a model is fed as x, checked before any step runs: one array, or for a functional model
with several inputs (Keras's multi-input models) one array per Input, given as a list in the
order of `model.inputs` or as a dict keyed by the Inputs' names.

A multi-input x becomes an `InputArrays`, whose rows slice every array together, so fit's
validation split, shuffling and batching treat it as they treat one array; each array feeds its
own placeholder of the compiled step (steps.input_placeholders). A one-input model's x stays one
array checked exactly as before (placeholder 'x').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symgraph.arrays import first_nonfinite as _first_nonfinite
from symgraph.errors import SymgraphError
from symgraph.nn.symbolic import shape_text


@dataclass(frozen=True)
class InputArrays:
    """The checked x of a multi-input model: one float32 array per input, in the order of
    `model.inputs`, all with the same number of samples. `len` is that number and indexing
    takes the same rows of every array."""

    arrays: tuple

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, rows) -> InputArrays:
        return type(self)(tuple(a[rows] for a in self.arrays))  # TargetArrays stay so


def feed(x) -> tuple:
    """The arrays a compiled step takes for checked x, in placeholder order."""
    return x.arrays if isinstance(x, InputArrays) else (x,)


def as_array(value, what: str, placeholder: str) -> np.ndarray:
    """`value` as a numeric array; a ragged list or strings are errors naming `what`."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # a ragged list, say
        raise SymgraphError(f"{what} must be a rectangular numeric array ({exc}) "
                            f"(placeholder {placeholder!r})") from None
    if array.dtype.kind not in "fiub":
        raise SymgraphError(f"{what} must be numeric, got dtype {array.dtype} "
                            f"(placeholder {placeholder!r})")
    return array


def check_x(model, x):
    """x checked against the model's inputs: a float32 array for a model with one input, an
    `InputArrays` for a multi-input model. A wrong x raises naming the input."""
    if not model.built and hasattr(model, "build_from_data"):  # a subclassed model
        model.build_from_data(x)
    inputs = model.multi_inputs
    if not inputs:
        if isinstance(x, dict) and hasattr(model, "inputs"):  # Keras: {Input name: array}
            x = _by_name(model, x)[0]
        return _check_one(model, x)
    arrays = _by_name(model, x) if isinstance(x, dict) else _in_order(model, x)
    checked = []
    for t, value in zip(inputs, arrays):
        name = t.layer.name
        array = as_array(value, f"model input {name!r}", name)
        expected = t.shape[1:]
        if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
            raise SymgraphError(f"model input {name!r} (InputLayer) expects shape "
                                f"{shape_text(expected)}, got {array.shape} "
                                f"(placeholder {name!r})")
        checked.append(array.astype(np.float32, copy=False))
    counts = [len(a) for a in checked]
    if len(set(counts)) > 1:
        listed = ", ".join(f"{t.layer.name!r} has {n}" for t, n in zip(inputs, counts))
        raise SymgraphError(f"the arrays of x must have the same number of samples, one per "
                            f"model input: {listed}")
    return InputArrays(tuple(checked))


def _check_one(model, x) -> np.ndarray:
    """The x of a model with one input, built from it if the model is not built yet."""
    x = as_array(x, "model inputs x", "x")
    if not model.built:
        model.build(tuple(x.shape[1:]))
    expected = tuple(model.input_shape)
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        first = model.layers[0]
        raise SymgraphError(
            f"Input of layer {first.name!r} ({type(first).__name__}) is incompatible with "
            f"the model: expected shape (None, {', '.join(map(str, expected))}), got "
            f"{x.shape} (placeholder 'x')")
    return x.astype(np.float32, copy=False)


def _names(model) -> str:
    return ", ".join(repr(t.layer.name) for t in model.inputs)


def keyed(given: dict, names: list, intro: str, entry: str, owner: str,
          complete: bool | list = True) -> list:
    """The values of dict `given` in the order of `names` (None where a name has no key);
    unknown keys, or missing ones that `complete` asks for (True: every name; a list: those
    names), raise: "`intro`, but it has unknown keys ... and no `entry` for ...; `owner`"."""
    unknown = [k for k in given if k not in names]
    needed = names if complete is True else complete or []
    missing = [name for name in needed if name not in given]
    if unknown or missing:
        problems = ([f"unknown keys {', '.join(map(repr, unknown))}"] if unknown else []) \
            + ([f"no {entry} for {', '.join(map(repr, missing))}"] if missing else [])
        raise SymgraphError(f"{intro}, but it has {' and '.join(problems)}; {owner}")
    return [given.get(name) for name in names]


def _by_name(model, x: dict) -> list:
    """The values of dict x in the order of `model.inputs`."""
    return keyed(x, [t.layer.name for t in model.inputs], "x is a dict keyed by Input name",
                 "array", f"model {model.name!r} has the inputs {_names(model)}")


def _in_order(model, x) -> list:
    """The arrays of list x, one per input in the order of `model.inputs`."""
    n = len(model.inputs)
    if not isinstance(x, (list, tuple)):
        shown = f" of shape {x.shape}" if hasattr(x, "shape") else f" {x!r}"[:60]
        raise SymgraphError(f"model {model.name!r} has {n} inputs ({_names(model)}): x must be a "
                            f"list of {n} arrays in that order, or a dict {{Input name: array}}; "
                            f"got {type(x).__name__}{shown}")
    if len(x) != n:
        raise SymgraphError(f"model {model.name!r} has {n} inputs ({_names(model)}): x must be a "
                            f"list of {n} arrays in that order, got a {type(x).__name__} of "
                            f"{len(x)}")
    if model.input_keys_unsorted:
        raise SymgraphError(f"model {model.name!r} took its inputs as a dict whose keys are not "
                            "in sorted order, so a list x is ambiguous (Keras refuses it too): "
                            f"pass x as a dict {{Input name: array}} with keys {_names(model)}")
    return list(x)


def first_nonfinite(model, x) -> tuple | None:
    """(what, index, which input) of the first NaN/inf in checked x (the input is "" for a
    one-input model, else " of input 'name'"), or None."""
    for t, array in zip(model.multi_inputs or [None], feed(x)):
        found = _first_nonfinite(array)
        if found:
            return found + ("" if t is None else f" of input {t.layer.name!r}",)
    return None
