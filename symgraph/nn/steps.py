"""The compiled functions behind fit / evaluate / predict.

`fit` compiles ONE training step: forward pass, loss plus penalties, `sg.grad`, optimizer
updates, constraint projection, batch-norm statistic updates and the step counter that drives
dropout masks, all in one `sg.function`. Evaluation and prediction are inference graphs. The
batch dim is the symbol "batch", so every batch size (the short last batch included) reuses
the same compiled function. A weighted step (Keras's sample_weight / class_weight) takes a third
input, one weight per sample; an unweighted step is built without it. A multi-input functional
model's steps take one placeholder per Input, named after it, where others take "x"; a
multi-output model's take one target placeholder per output that needs targets (a loss or
metrics), "y_<output name>", where others take "y", and, weighted, one weight placeholder for
each of those outputs, "sample_weight_<output name>"; when more than one output has a loss,
they output each such output's unweighted loss after the metric sums (model_outputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import symgraph as sg
from symgraph.graph import topo_order
from symgraph.nn.calling import PART, CallContext, active, part, run_call
from symgraph.nn.layer_base import constrained
from symgraph.nn.metrics import Accumulator


@dataclass(frozen=True)
class TargetSpec:
    """What a step is fed besides x: the labels' shape (batch dim excluded) and dtype, and
    whether a float32 weight per sample comes too."""

    shape: tuple
    dtype: str
    weighted: bool = False


@dataclass(frozen=True)
class OutputTargets:
    """What a multi-output model's step is fed besides x: one TargetSpec per output (in the
    order of `model.outputs`, named in `names`; None for an output that takes no targets) and
    whether each output that takes targets also takes one weight per sample."""

    targets: tuple
    names: tuple
    weighted: bool = False


def forward(model, xs: list, ctx: CallContext):
    """The model's output for its input nodes `xs`; each layer's nodes are tagged with the
    layer's name. `ctx` is the active context meanwhile (a subclassed model's call and the
    Keras-style layers' sublayer calls reach it)."""
    with active(ctx):
        return model.run_layers(xs if model.multi_inputs else xs[0],
                                lambda layer, h: run_call(layer, h, ctx))


def _data_loss(loss, out, y, w, ctx):
    """The mean over the batch of `loss` on output node `out` (from its logits where the
    activation recorded them and the loss can use them), weighted by `w` when given."""
    kind_logits = ctx.logits.get(out.id)
    logits = kind_logits[1] if kind_logits and kind_logits[0] == loss.logits_kind else None
    per_sample = loss.per_sample(y, out, logits=logits)
    if w is not None:  # Keras's "sum_over_batch_size": sum(w * loss) / batch size
        per_sample = per_sample * w
    return sg.mean(per_sample)


def logged_losses(heads: list) -> list:
    """The OutputHeads whose loss a step outputs and the logs hold as "<output>_loss": those
    with a loss when there are several (Keras 3's CompileLoss tracks them only then)."""
    with_loss = [h for h in heads if h.loss is not None]
    return with_loss if len(with_loss) > 1 else []


def _with_penalties(model, total, ctx):
    """The loss plus the layers' weight penalties and the activity terms their calls added
    (ActivityRegularization's), in training and evaluation alike, as Keras 3's compute_loss."""
    for p in model.penalties() + ctx.losses:
        total = total + p
    return total


def _loss_terms(model, xs: list, y, w, ctx):
    """The output, the loss with penalties and the metric sums of a batch: the input nodes
    `xs`, the targets `y` and the sample weights `w` (None for an unweighted step)."""
    if model.output_heads:
        return _multi_loss_terms(model, xs, y, w, ctx)
    out = forward(model, xs, ctx)
    loss = model.loss
    with part(f"the loss ({loss.name} and penalties)"):
        data_loss = _data_loss(loss, out, y, w, ctx)
        if model.loss_weight != 1.0:  # compile(loss_weights=...)
            data_loss = data_loss * model.loss_weight
        total = _with_penalties(model, data_loss, ctx)
    # Keras 3 weights only the `weighted_metrics`; the plain `metrics` ignore sample weights
    plain = [_metric_terms(fn, y, out) for _, fn in model.metric_fns]
    weighted = [_metric_terms(fn, y, out, w) for _, fn in model.weighted_metric_fns]
    metric_sums = [s for sums, _ in plain + weighted for s in sums]
    return out, total, metric_sums, tuple(once for _, once in plain)


def _multi_loss_terms(model, xs: list, ys: list, ws: list | None, ctx):
    """_loss_terms of a multi-output model (`ys`, `ws`: per output its target node and its
    weights, None where it takes none): the total is sum(weight_i * loss_i) over the outputs
    with a loss, plus penalties, as Keras's CompileLoss; the sums are every output's plain
    metric sums, then the weighted ones, then the unweighted mean losses of `logged_losses`."""
    outs = forward(model, xs, ctx)
    heads = model.output_heads
    ws = ws or [None] * len(heads)
    output_losses = []  # (head, its mean loss) of the outputs with a loss
    for head, out, y, w in zip(heads, outs, ys, ws):
        if head.loss is not None:
            with part(f"the loss of output {head.name!r} ({head.loss.name})"):
                output_losses.append((head, _data_loss(head.loss, out, y, w, ctx)))
    with part("the loss (the outputs' weighted losses and penalties)"):
        total = None
        for head, value in output_losses:
            term = value if head.weight == 1.0 else value * head.weight
            total = term if total is None else total + term
        total = _with_penalties(model, total, ctx)
    plain = [_metric_terms(fn, y, out) for head, out, y in zip(heads, outs, ys)
             for _, fn in head.metric_fns]
    weighted = [_metric_terms(fn, y, out, w) for head, out, y, w in zip(heads, outs, ys, ws)
                for _, fn in head.weighted_metric_fns]
    sums = [s for metric_sums, _ in plain + weighted for s in metric_sums]
    logged = [value for _, value in output_losses] if logged_losses(heads) else []
    return outs, total, sums + logged, tuple(once for _, once in plain)


def _metric_terms(fn, y, out, w=None) -> tuple[list, bool]:
    """What a step outputs for one metric on a batch, and whether it counts once per batch:
    an accumulating metric's sums (metrics.Accumulator), else the sum of its per-sample
    values (`_metric_sum`), which counts once when the function gave one value per batch."""
    if isinstance(fn, Accumulator):
        return fn.batch_sums(y, out, w), False
    values = fn(y, out)
    return [_metric_sum(values, w)], values.ndim == 0


def _metric_sum(values, w=None):
    """The batch's sum of a metric's per-sample values (times the sample weights `w`), as Keras's
    Mean reduces them: values with more axes are averaged over the trailing ones first. A
    scalar (a function that averaged the batch itself) is the batch's one value: Keras's Mean
    counts it once per batch (weighted: for the batch's sum of weights)."""
    values = sg.cast(values, "float32")
    if values.ndim == 0:
        return values if w is None else values * sg.sum(w)
    while values.ndim > 1:
        values = sg.mean(values, -1)
    return sg.sum(values if w is None else values * w)


def input_placeholders(model) -> list:
    """The model's input nodes: [x], or one per Input of a multi-input model, named after it."""
    if not model.multi_inputs:
        return [sg.placeholder(("batch",) + tuple(model.input_shape), "float32", name="x")]
    return [sg.placeholder(("batch",) + t.shape[1:], "float32", name=t.layer.name)
            for t in model.multi_inputs]


def target_placeholders(target: TargetSpec | OutputTargets) -> tuple:
    """y and, for a weighted target, the sample weights (else None); for OutputTargets each is
    a list with one node per output, None for an output that takes no targets."""
    if isinstance(target, OutputTargets):
        y = [None if t is None else
             sg.placeholder(("batch",) + tuple(t.shape), t.dtype, name=f"y_{name}")
             for t, name in zip(target.targets, target.names)]
        if not target.weighted:
            return y, None
        return y, [None if t is None else
                   sg.placeholder(("batch",), "float32", name=f"sample_weight_{name}")
                   for t, name in zip(target.targets, target.names)]
    y = sg.placeholder(("batch",) + tuple(target.shape), target.dtype, name="y")
    if not target.weighted:
        return y, None
    return y, sg.placeholder(("batch",), "float32", name="sample_weight")


def _step_inputs(model, target: TargetSpec) -> tuple[list, list, object, object]:
    """(every placeholder of a step in call order, the input nodes, y, the weights or None)."""
    xs = input_placeholders(model)
    y, w = target_placeholders(target)
    ys = y if isinstance(y, list) else [y]
    ws = [] if w is None else w if isinstance(w, list) else [w]
    return xs + [node for node in ys + ws if node is not None], xs, y, w


@dataclass
class TrainStep:
    """A compiled training step and what its outputs mean."""

    function: sg.Function
    n_metrics: int             # the outputs between the loss and the diagnostics
    grad_layers: list          # layer names whose gradient norms follow the metrics
    relu_layers: list          # layer names whose per-unit activity vectors follow
    per_batch: tuple = ()      # per plain metric: one value per batch (a scalar), not per sample

    def where(self, node_id: int) -> str | None:
        """Which part of the step (layer forward, loss, gradients, updates) built a node of the
        optimized graph; for a node a pass built, the part of the node it replaced."""
        for node in topo_order(self.function.graph):
            if node.id == node_id:
                parts = sorted(t[len(PART):] for t in node.tags if t.startswith(PART))
                return parts[-1] if parts else None
        return None

    def __call__(self, *batch):
        return self.function(*batch)


def build_train_step(model, target: TargetSpec, backend: str, diagnostics: bool = False,
                     check_nan: bool = False, nan_guard: bool = False) -> TrainStep:
    """The training step. With `nan_guard` every update keeps the old value when the loss is
    not finite (fit's guard): such a step changes no state, so fit needs no copy of the state
    to undo it, and the backend may write the updates in place (symgraph/inplace.py)."""
    inputs, xs, y, w = _step_inputs(model, target)
    ctx = CallContext(training=True, step=model.step_counter)
    out, total, metric_sums, per_batch = _loss_terms(model, xs, y, w, ctx)
    trainable = model.trainable_weights  # each variable once (a shared layer's too)
    owners = {}  # variable id -> the first layer holding it (the gradient norms' layer)
    for layer in model.layers:
        for var in layer.trainable_weights:
            owners.setdefault(var.id, layer)
    rules = model.weight_rules()
    with part("the gradients (backward pass)"):
        # Keras's loss_scale_factor: the gradients of the scaled loss (the optimizer unscales)
        grads = sg.grad(model.optimizer.scale_loss(total), trainable) if trainable else []
    updates = []
    with part(f"the {model.optimizer.name} update / constraints"):
        for var, expr in model.optimizer.updates(zip(grads, trainable)):
            updates.append((var, constrained(rules, var, expr)))
    updates += ctx.updates
    updates.append((model.step_counter, model.step_counter + np.int64(1)))
    if nan_guard:
        finite = sg.abs(total) < np.float32(np.inf)  # false for NaN and +-inf
        updates = [(var, sg.where(finite, expr, var)) for var, expr in updates]
    outputs = [total] + metric_sums
    grad_layers, relu_layers = [], []
    if diagnostics:
        for layer in model.layers:
            gs = [g for g, v in zip(grads, trainable) if owners[v.id] is layer]
            if gs:
                sq = sg.sum(sg.square(gs[0]))
                for g in gs[1:]:
                    sq = sq + sg.sum(sg.square(g))
                outputs.append(sg.sqrt(sq))
                grad_layers.append(layer.name)
        for name, act in ctx.relu_outputs.items():
            axes = tuple(range(act.ndim - 1))
            outputs.append(sg.max(sg.cast(act > 0, "float32"), axis=axes))
            relu_layers.append(name)
    fn = sg.function(inputs, outputs, updates=updates, backend=backend, check_nan=check_nan,
                     name="train_step")
    return TrainStep(fn, len(metric_sums), grad_layers, relu_layers, per_batch)


def build_eval_step(model, target: TargetSpec, backend: str) -> TrainStep:
    """[mean loss with penalties, *metric sums] of a batch, in inference mode (a step without
    updates)."""
    inputs, xs, y, w = _step_inputs(model, target)
    _, total, metric_sums, per_batch = _loss_terms(model, xs, y, w, CallContext(training=False))
    fn = sg.function(inputs, [total] + metric_sums, backend=backend, name="eval_step")
    return TrainStep(fn, len(metric_sums), [], [], per_batch)


def build_predict_step(model, backend: str, training: bool = False) -> sg.Function:
    """The model's outputs; in training mode (`model(x, training=True)`) with the forward
    pass's updates and one more step (new dropout masks)."""
    xs = input_placeholders(model)
    if not training:
        out = forward(model, xs, CallContext(training=False))
        return sg.function(xs, out, backend=backend, name="predict_step")
    ctx = CallContext(training=True, step=model.step_counter)
    out = forward(model, xs, ctx)
    updates = ctx.updates + [(model.step_counter, model.step_counter + np.int64(1))]
    return sg.function(xs, out, updates=updates, backend=backend, name="train_mode_call")
