"""What a model is compiled with per output and fed as y, checked before any step runs: for a
functional model with several outputs (Keras's multi-output models) one loss, loss weight and
set of metrics per output, and one target array per output.

Keras 3's rules (keras/src/trainers/compile_utils.py, CompileLoss and CompileMetrics):
  * outputs are named after the layers that compute them (`model.output_names`); a dict of
    outputs is flattened in sorted key order, as a dict of inputs is;
  * `loss` is one loss for every output, a list in output order or a dict by output name;
    an output whose loss is None (or, for outputs given as a dict, that a loss dict leaves out)
    adds nothing to the loss, but keeps its metrics and its predictions; at least one output
    needs a loss ("No loss to compute"); a loss dict for outputs given as a list must name
    every output (CompileLoss.build);
  * `loss_weights` a list or a dict (a weight for an output without a loss is ignored); the
    loss minimized is sum(weight_i * loss_i) plus the regularization penalties, and the logs
    hold "loss" (that total), then each output's metrics as "<output>_<metric>", then, when
    more than one output has a loss, each such output's *unweighted* loss as "<output>_loss";
  * `metrics` is a list with one entry per output (a metric, a list of metrics, or None) or a
    dict by output name: a flat list of another length is refused, as Keras does;
  * y is a list of arrays in output order or a dict by output name; an output with neither a
    loss nor metrics needs no targets (a dict may leave it out; a list may hold only the
    outputs that need targets, as CompileLoss.call's "partially defined" case; one array when
    one output needs them). `sample_weight` is one array, which weighs every output, or one
    array per output as y is given (a list or dict, None for no weights): each output's loss
    and weighted metrics use its own. `class_weight` is refused.
A model with one output is compiled and fed exactly as before (steps with the placeholder "y").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.nn import losses, metrics
from symgraph.nn.model_inputs import InputArrays, as_array, keyed
from symgraph.nn.steps import OutputTargets, TargetSpec, logged_losses


@dataclass(frozen=True)
class OutputHead:
    """One output of a multi-output model as compiled: its name (its layer's), loss, loss
    weight, and (log name, fn) metric pairs, the log names already prefixed with the output's
    name as Keras writes them."""

    name: str
    loss: losses.Loss | None  # None: the output adds nothing to the loss
    weight: float
    metric_fns: tuple
    weighted_metric_fns: tuple

    @property
    def needs_targets(self) -> bool:
        """Whether y must hold this output's targets: it has a loss or metrics."""
        return self.loss is not None or bool(self.metric_fns or self.weighted_metric_fns)


class TargetArrays(InputArrays):
    """The checked y of a multi-output model: one array per output in the order of
    `model.outputs`; rows slice every array together (as InputArrays does for x)."""


# --- compile --------------------------------------------------------------------------------

def _names(model) -> str:
    return ", ".join(map(repr, model.output_names))


def _keyed(model, given: dict, what: str, complete: bool | list, hint: str = "") -> list:
    """The values of dict `given` in output order (None for an output without a key); a key
    that names no output, or a missing key that `complete` asks for, raises."""
    return keyed(given, model.output_names, f"compile: `{what}` is a dict keyed by output name",
                 "entry", f"model {model.name!r} has the outputs {_names(model)}{hint}", complete)


def _per_output(model, given, what: str, complete: bool | list) -> list:
    """`given` spread over the outputs: one entry each, from a list in output order or a dict
    by output name (`complete`: the outputs that need a key, True for all)."""
    k = len(model.outputs)
    if isinstance(given, dict):
        return _keyed(model, given, what, complete)
    if not isinstance(given, (list, tuple)) or len(given) != k:
        got = (f"a {type(given).__name__} of {len(given)}" if isinstance(given, (list, tuple))
               else f"{type(given).__name__} {given!r}")
        raise SymgraphError(f"compile: model {model.name!r} has {k} outputs ({_names(model)}): "
                            f"`{what}` must be a list with one entry per output, in that order, "
                            f"or a dict {{output name: entry}}; got {got}")
    return list(given)


def _losses(model, loss) -> list:
    """One Loss (or None: no loss) per output: `loss` one loss for every output, a list or a
    dict; at least one output gets a loss."""
    if isinstance(loss, dict) and not model.outputs_as_dict:
        entries = _keyed(model, loss, "loss", True, " (given as a list: a loss dict names every "
                         "output, as in Keras 3; give None for an output without a loss)")
    elif isinstance(loss, (list, tuple, dict)):
        entries = _per_output(model, loss, "loss", complete=False)
    else:
        entries = [loss] * len(model.outputs)
    if all(entry is None for entry in entries):
        raise SymgraphError(f"compile: no output of model {model.name!r} ({_names(model)}) has a "
                            f"loss (got loss={loss!r}); at least one needs one (Keras 3 stops "
                            "fit with 'No loss to compute')")
    found = []
    for name, entry in zip(model.output_names, entries):
        try:
            found.append(None if entry is None else losses.get(entry))
        except SymgraphError as exc:
            raise SymgraphError(f"compile: the loss of output {name!r}: {exc}") from None
    return found


def _weights(model, loss_weights, found_losses: list) -> list:
    """One loss weight per output (1 where `loss_weights` is None); an output without a loss
    needs none, and the weight it is given (a number or None) is ignored, as Keras does."""
    if loss_weights is None:
        return [1.0] * len(model.outputs)
    if not isinstance(loss_weights, (list, tuple, dict)):
        raise SymgraphError(f"compile: model {model.name!r} has {len(model.outputs)} outputs "
                            f"({_names(model)}): `loss_weights` must be a list with one number "
                            "per output or a dict {output name: number}, as in Keras; got "
                            f"{type(loss_weights).__name__} {loss_weights!r}")
    with_loss = [name for name, loss in zip(model.output_names, found_losses) if loss is not None]
    entries = _per_output(model, loss_weights, "loss_weights", complete=with_loss)
    weights = []
    for name, loss, w in zip(model.output_names, found_losses, entries):
        if w is None and loss is None:
            w = 1.0
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
            raise SymgraphError(f"compile: the loss weight of output {name!r} must be a finite "
                                f"number, got {type(w).__name__} {w!r}")
        weights.append(float(w))
    return weights


def _metric_lists(model, given, what: str) -> list:
    """One list of metric identifiers per output from compile's `metrics` (or
    `weighted_metrics`): None, a list with one entry per output or a dict by output name."""
    if given is None:
        return [[] for _ in model.outputs]
    if not isinstance(given, (list, tuple, dict)):
        raise SymgraphError(f"compile: `{what}` must be a list or a dict, got "
                            f"{type(given).__name__} {given!r}")
    if isinstance(given, (list, tuple)) and len(given) != len(model.outputs):
        raise SymgraphError(
            f"compile: model {model.name!r} has {len(model.outputs)} outputs ({_names(model)}): "
            f"`{what}` as a list needs one entry per output (a metric, a list of metrics or "
            f"None), as in Keras, e.g. {what}=[['accuracy'], ['mae']], or a dict "
            f"{{output name: metrics}}; got {len(given)} entries: {given!r}")
    entries = _per_output(model, given, what, complete=False)
    return [[] if e is None else [m for m in e if m is not None]
            if isinstance(e, (list, tuple)) else [e] for e in entries]


def refuse_repeated_names(model) -> None:
    """Outputs are named after their layer (the logs' '<name>_loss', a dict y): a model with
    two outputs of one layer cannot be compiled (it predicts)."""
    for t in model.outputs:
        same = [u for u in model.outputs if u.layer is t.layer]
        if len(same) > 1:
            raise SymgraphError(
                f"compile: outputs {', '.join(u.name for u in same)} all come from layer "
                f"{t.layer.name!r}; outputs are named after their layer (the logs' "
                f"'{t.layer.name}_loss', a dict y), so to train, each must come from its own "
                f"layer (pass each through one, e.g. Identity(name=...)); predict needs none")


def compile_heads(model, loss, loss_weights, metrics_given, weighted_given) -> list[OutputHead]:
    """The OutputHeads of a multi-output model from compile's arguments (everything checked:
    a bad argument raises naming the output, and nothing is set)."""
    refuse_repeated_names(model)
    found_losses = _losses(model, loss)
    weights = _weights(model, loss_weights, found_losses)
    plain, weighted = [], []
    for lists, into, what in ((_metric_lists(model, metrics_given, "metrics"), plain, "metrics"),
                              (_metric_lists(model, weighted_given, "weighted_metrics"),
                               weighted, "weighted_metrics")):
        for name, loss_obj, ids in zip(model.output_names, found_losses, lists):
            try:  # without a loss, "accuracy" is chosen from the shapes, as in Keras
                into.append([metrics.get(m, loss_obj and loss_obj.name) for m in ids])
            except SymgraphError as exc:
                raise SymgraphError(f"compile: `{what}` of output {name!r}: {exc}") from None
    plain_named, weighted_named = _log_names(model.output_names, plain, weighted)
    return [OutputHead(name, loss_obj, weight, tuple(p), tuple(w))
            for name, loss_obj, weight, p, w in zip(model.output_names, found_losses, weights,
                                                   plain_named, weighted_named)]


def _log_names(names: list, plain: list, weighted: list) -> tuple[list, list]:
    """Per output, its (log name, fn) pairs named as Keras 3's CompileMetrics.result does:
    "<output>_<metric>"; a repeated name gets "_1", "_2"...; a weighted metric clashing with a
    name already taken becomes "<output>_weighted_<metric>"."""
    taken: dict[str, int] = {}

    def fresh(name: str) -> str:
        if name not in taken:
            taken[name] = 1
            return name
        index = taken[name]
        taken[name] += 1
        return f"{name}_{index}"

    plain_named = [[(fresh(f"{out}_{m}"), fn) for m, fn in pairs]
                   for out, pairs in zip(names, plain)]
    weighted_named = []
    for out, pairs in zip(names, weighted):
        named = []
        for m, fn in pairs:
            name = f"{out}_{m}"
            if name in taken:
                name = f"{out}_weighted_{m}"
                if name in taken:
                    name = fresh(name)
            taken.setdefault(name, 1)
            named.append((name, fn))
        weighted_named.append(named)
    return plain_named, weighted_named


def single_loss(model, loss):
    """compile's `loss` for a model with one output: Keras also takes a one-element list or a
    one-entry dict keyed by the output's name."""
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        return loss[0]
    if isinstance(loss, dict) and len(loss) == 1:
        name = _single_name(model)
        if name not in loss:
            raise SymgraphError(f"compile: `loss` is a dict keyed by output name, but its key "
                                f"{next(iter(loss))!r} is not the model's output {name!r}")
        return loss[name]
    return loss


def _single_name(model) -> str:
    names = getattr(model, "output_names", None)
    return names[0] if names else model.output_layer.name


def running_names(model) -> tuple[list, list, list | None, list]:
    """(metric log names, plain ones first; for each weighted one, which end that list, the
    index of its sample weights among the arrays a step is fed; the per-output loss names, None
    for a model with one output; per metric its Accumulator, None for a mean metric) of a
    compiled model, in the order its steps output them."""
    heads = model.output_heads
    if not heads:
        named = model.metric_fns + model.weighted_metric_fns
        return ([name for name, _ in named], [0] * len(model.weighted_metric_fns), None,
                [_accumulator(fn) for _, fn in named])
    plain = [(name, fn) for h in heads for name, fn in h.metric_fns]
    fed = [h.name for h in heads if h.needs_targets]  # one weight array each, in this order
    weighted = [(name, fn, fed.index(h.name)) for h in heads
                for name, fn in h.weighted_metric_fns]
    return ([name for name, _ in plain] + [name for name, _, _ in weighted],
            [i for _, _, i in weighted], [f"{h.name}_loss" for h in logged_losses(heads)],
            [_accumulator(fn) for _, fn in plain] + [_accumulator(fn) for _, fn, _ in weighted])


def _accumulator(fn):
    return fn if isinstance(fn, metrics.Accumulator) else None


def results_in_order(logs: dict, loss_names: list) -> list:
    """A multi-output model's logs as evaluate's list, in Keras 3's order (its
    `_flatten_metrics_in_order`): "loss", the per-output losses (`loss_names`), then the other
    names sorted, a metric whose name ends in "_loss" among them (Keras lists the metrics it
    knows by their unprefixed names, which no log key matches)."""
    first = ["loss"] + [k for k in loss_names if k in logs]
    return [logs[k] for k in first] + [logs[k] for k in sorted(logs) if k not in first]


# --- targets --------------------------------------------------------------------------------

def check_target(y, n: int, loss, out_shape: tuple, layer: str, placeholder: str,
                 output: str | None = None) -> tuple[np.ndarray, TargetSpec]:
    """One output's targets checked against its loss and shape: int32 labels for a sparse loss,
    else float32 of the output's shape. An output without a loss (None: one with metrics only)
    takes labels of shape (n,) or (n, 1) where it has several classes, as Keras's "accuracy"
    reads them. `output` names the output of a multi-output model in errors (None: the
    messages of a one-output model)."""
    what = "targets y" if output is None else f"the targets of output {output!r}"
    if output is None:
        about = loss.name
    else:
        about = f"output {output!r}" + ("" if loss is None else f": {loss.name}")
    where = f"(placeholder {placeholder!r})"
    y = as_array(y, what, placeholder)
    if y.ndim == 0:
        raise SymgraphError(f"{what} must be an array with {n} samples, got a scalar {y!r} "
                            f"{where}")
    if len(y) != n:
        short = "y" if output is None else what
        raise SymgraphError(f"x has {n} samples but {short} has {len(y)} {where}")
    if loss is not None:
        sparse = loss.sparse
    else:
        sparse = len(out_shape) == 1 and out_shape[0] > 1 and y.shape[1:] in ((), (1,))
    if sparse:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise SymgraphError(f"{about} needs integer labels of shape (n,), got {y.shape} "
                                f"{where}")
        if y.dtype.kind == "f" and np.any(y != np.round(y)):
            raise SymgraphError(f"{about}: labels must be whole numbers")
        classes = out_shape[-1]
        if n and (y.min() < 0 or y.max() >= classes):
            raise SymgraphError(f"{about}: labels must lie in [0, {classes}) to match layer "
                                f"{layer!r} output shape (None, {classes}); got labels from "
                                f"{y.min()} to {y.max()} {where}")
        return y.astype(np.int32), TargetSpec((), "int32")
    if y.shape[1:] != out_shape:
        if y.size == n * int(np.prod(out_shape)):
            y = y.reshape((n,) + out_shape)  # (n,) labels for a (None, 1) output
        else:
            raise SymgraphError(f"{what[0].upper() + what[1:] if output else 'targets'} of shape "
                                f"{y.shape} do not match layer {layer!r} output shape (None, "
                                f"{', '.join(map(str, out_shape))}) {where}")
    return y.astype(np.float32, copy=False), TargetSpec(out_shape, "float32")


def check_y(model, y, n: int):
    """y checked against the model's outputs: (array, TargetSpec) for one output, else
    (TargetArrays, OutputTargets). A wrong y raises naming the output."""
    if not model.multi_outputs:
        name = _single_name(model)
        if isinstance(y, dict) and len(y) == 1 and name in y:  # Keras: {output name: array}
            y = y[name]
        if y is None:
            raise SymgraphError(f"targets y are missing: the loss {model.loss.name} needs y "
                                f"with {n} samples (placeholder 'y')")
        out_shape = tuple(model.outputs[0].shape[1:]) if hasattr(model, "outputs") \
            else tuple(model.output_shape)
        return check_target(y, n, model.loss, out_shape, model.output_layer.name, "y")
    heads = model.output_heads
    needed = [h.name for h in heads if h.needs_targets]
    if isinstance(y, TargetArrays):  # checked before: the arrays of the outputs that need them
        given = iter(y.arrays)
        values = [next(given) if h.needs_targets else None for h in heads]
    elif len(needed) == 1 and not isinstance(y, (list, tuple, dict)) and y is not None:
        values = [y if h.needs_targets else None for h in heads]  # Keras: y for the one loss
    else:
        values = per_output(model, y, "y", "array")
    arrays, specs = [], []
    for t, head, value in zip(model.outputs, heads, values):
        name = t.layer.name
        if not head.needs_targets:  # no loss, no metrics: its targets, if given, go unused
            given = None if value is None else as_array(value, f"the targets of output "
                                                        f"{name!r}", f"y_{name}")
            if given is not None and given.shape[:1] != (n,):
                count = f"{len(given)} samples" if given.ndim else "a scalar"
                raise SymgraphError(f"x has {n} samples but the targets of output {name!r}, "
                                    f"unused (it has no loss and no metrics), have {count}")
            specs.append(None)
            continue
        if value is None:
            needs = "its metrics need" if head.loss is None else f"its loss {head.loss.name} needs"
            raise SymgraphError(f"the targets of output {name!r} are missing (None); {needs} "
                                f"{n} samples")
        array, spec = check_target(value, n, head.loss, tuple(t.shape[1:]), name, f"y_{name}",
                                   name)
        arrays.append(array)
        specs.append(spec)
    return TargetArrays(tuple(arrays)), OutputTargets(tuple(specs), tuple(model.output_names))


def per_output(model, given, what: str, entry: str) -> list:
    """y, or sample weights per output, spread over the outputs (None where one gets nothing):
    a dict by output name, or a list in output order with one entry per output or one per
    output that needs targets (a loss or metrics). Every output that needs targets needs a
    key in a dict, as Keras's same-structure rule."""
    heads, k = model.output_heads, len(model.outputs)
    needed = [h.name for h in heads if h.needs_targets]
    if isinstance(given, dict):
        return keyed(given, model.output_names, f"{what} is a dict keyed by output name", entry,
                     f"model {model.name!r} has the outputs {_names(model)}", needed)
    short = (f" (or of {len(needed)}, one per output with a loss or metrics: "
             f"{', '.join(map(repr, needed))})" if len(needed) < k else "")
    expected = (f"{what} must be a list of {k} {entry}s, one per output of model "
                f"{model.name!r} in the order {_names(model)}{short}, or a dict "
                f"{{output name: {entry}}}")
    if not isinstance(given, (list, tuple)):
        shown = f" of shape {given.shape}" if hasattr(given, "shape") else f" {given!r}"[:60]
        raise SymgraphError(f"{expected}; got {type(given).__name__}{shown}")
    if len(given) not in (k, len(needed)):
        raise SymgraphError(f"{expected}; got a {type(given).__name__} of {len(given)}")
    if model.output_keys_unsorted:
        raise SymgraphError(f"model {model.name!r} took its outputs as a dict whose keys are not "
                            f"in sorted order, so a list {what} is ambiguous: pass {what} as a "
                            f"dict {{output name: {entry}}} with keys {_names(model)}")
    if len(given) == k:
        return list(given)
    rest = iter(given)
    return [next(rest) if h.needs_targets else None for h in heads]


def predictions(model, arrays: list):
    """predict's result from one array per output: an array for one output, else a list in
    output order, or a dict by output name for outputs given as a dict (as Keras returns)."""
    if model.outputs_as_dict:
        return dict(zip(model.output_names, arrays))
    return arrays if model.multi_outputs else arrays[0]
