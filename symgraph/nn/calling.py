"""How a layer is called: the CallContext a forward pass carries, and Keras 3's subclassing API.

Two kinds of layers run side by side; which one a class is, is read once from its `call`:
- symgraph's own layers define `call(self, x, ctx)` and read everything from `ctx`;
- Keras-style layers (and subclassed models) define `call(self, inputs)` or
  `call(self, inputs, training=None)` and use symgraph ops on the graph nodes they get; they
  call their sublayers as Keras does (`self.dense(x)`), create weights with `add_weight` in
  `build(input_shape)` (Keras's shape, batch dim None) and add loss terms with `add_loss`.
While such a call runs, its context is the active one (`current_context`), so sublayer calls and
`add_loss` reach it. A Keras-style layer's build is followed by one trace of its call on
placeholders, which builds the sublayers it calls and gives its output shape, as Keras builds by
running the call; a failing build puts every layer it touched back as it was.

Layers assigned as attributes (`self.dense = Dense(8)`, or a list of layers) are tracked
(`SublayerTracking`): their weights, penalties, constraints and updates are the owner's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from dataclasses import dataclass, field

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.graph import Node
from symgraph.nn.model_inputs import as_array
from symgraph.ops.table import tagging

PART = "part:"  # tag prefix: which part of the training step built a node


def part(what: str):
    """Nodes built inside belong to `what` (a "part:" tag, which the optimizer's rewrites carry
    over to the nodes they build in their place): a NaN report names it."""
    return tagging(PART + what)


@dataclass
class CallContext:
    """What a forward pass is for, and what the layers report back to the training step."""

    training: bool = False
    step: object = None                                  # int64 step counter (dropout masks)
    updates: list = field(default_factory=list)           # [(variable, new value)]
    relu_outputs: dict = field(default_factory=dict)      # layer name -> post-ReLU node
    logits: dict = field(default_factory=dict)            # output node id -> (kind, logits)
    losses: list = field(default_factory=list)            # activity terms added to the loss
    calls: dict = field(default_factory=dict)             # layer id -> its calls so far

    def call_number(self, layer) -> int:
        """How many calls of `layer` this forward pass made before this one (a functional
        model may call a layer more than once: a shared layer)."""
        n = self.calls.get(id(layer), 0)
        self.calls[id(layer)] = n + 1
        return n

    def current(self, var):
        """`var`'s value as the updates recorded so far leave it (the variable itself if none
        did): a second call of a shared layer sees its first call's update, as in Keras 3."""
        return next((expr for v, expr in reversed(self.updates) if v is var), var)

    def assign(self, var, expr) -> None:
        """Record `var`'s new value, replacing an update recorded by an earlier call (in place:
        a context `with_training` made shares the list)."""
        self.updates[:] = [(v, e) for v, e in self.updates if v is not var] + [(var, expr)]

    def with_training(self, training: bool) -> CallContext:
        """This pass's context for a call given another `training` (Keras's
        `layer(x, training=...)`): what the layers report still goes to this pass."""
        return self if training == self.training else dataclasses.replace(self, training=training)


_ACTIVE: list[CallContext] = []  # the contexts of the Keras-style calls running, innermost last


@contextlib.contextmanager
def active(ctx: CallContext):
    """Make `ctx` the context that sublayer calls and add_loss reach while the block runs."""
    _ACTIVE.append(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.pop()


def current_context() -> CallContext | None:
    return _ACTIVE[-1] if _ACTIVE else None


def call_style(call) -> tuple[bool, bool]:
    """(whether `call` is Keras-style, whether it takes `training`): symgraph's own layers
    define call(self, x, ctx)."""
    params = list(inspect.signature(call).parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    symgraph_style = len(positional) >= 2 and positional[1].name == "ctx"
    return not symgraph_style, any(p.name == "training" for p in params)


def flat(value) -> list:
    """The leaves of a value that may be a list, tuple or dict of them."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in flat(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in flat(v)]
    return [value]


def _shown(value) -> str:
    text = " ".join(repr(value).split())
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def check_output(owner: str, out) -> None:
    """Refuse what a Keras-style call returned unless it is a graph node (or a list of them)."""
    leaves = flat(out) if isinstance(out, (list, tuple)) else [out]
    for leaf in leaves:
        if not isinstance(leaf, Node):
            raise SymgraphError(f"{owner}: call() returned {_shown(leaf)}; it must return a "
                                "tensor (the graph node symgraph ops and layers give), or a list "
                                "of them")


def run_call(layer, inputs, ctx: CallContext, training=None, args=(), kwargs=None):
    """`layer`'s call on graph nodes in `ctx` (made `training` when that is given), its nodes
    tagged with the layer's name; a Keras-style call gets `training` when it takes it."""
    if training is not None:
        ctx = ctx.with_training(bool(training))
    with part(f"layer {layer.name!r} (forward)"):
        if not type(layer).keras_call:
            return layer.call(inputs, ctx)
        kwargs = dict(kwargs or {})
        if type(layer).call_takes_training:
            kwargs["training"] = ctx.training
        with active(ctx):
            out = layer.call(inputs, *args, **kwargs)
    check_output(f"{type(layer).__name__} {layer.name!r}", out)
    return out


class SublayerTracking:
    """Layers assigned as attributes (one, or a list, tuple or dict of them) are the object's
    sublayers, in assignment order. A list or dict attribute is read when the sublayers are
    asked for, so layers appended to it later count too (Keras tracks such containers);
    assigning the attribute again replaces them."""

    tracks_sublayers = True

    def __setattr__(self, name: str, value) -> None:
        if self.tracks_sublayers:
            if any(getattr(v, "is_model", False) and v is not self for v in flat(value)):
                raise SymgraphError(f"{type(self).__name__}.{name}: a model inside a layer or "
                                    "model is not supported (its weights would not be trained); "
                                    "assign its layers instead (a list of layers is tracked)")
            found = _layers_in(self, value)
            tracked = self.__dict__.get("_tracked")
            if found and tracked is None:
                raise SymgraphError(f"{type(self).__name__}: call super().__init__() in "
                                    f"__init__ before assigning layers (self.{name} = ...)")
            if tracked is not None and (found or isinstance(value, (list, tuple, dict))
                                        or name in tracked):
                had = name in tracked and _layers_in(self, self.__dict__.get(name))
                tracked.pop(name, None)
                if found or isinstance(value, (list, tuple, dict)):
                    tracked[name] = True
                object.__setattr__(self, name, value)
                if found or had:
                    self.tracking_changed()
                return
        object.__setattr__(self, name, value)

    def tracking_changed(self) -> None:
        """Called when the sublayers change."""

    def sublayers(self) -> list:
        """The tracked layers, each once, in assignment order."""
        out = []
        for name in self.__dict__.get("_tracked", {}):
            out.extend(layer for layer in _layers_in(self, self.__dict__.get(name))
                       if not any(layer is o for o in out))
        return out

    def flatten_layers(self) -> list:
        """This object's sublayers and theirs, recursively, each once."""
        out = []
        for layer in self.sublayers():
            for inner in [layer] + layer.flatten_layers():
                if not any(inner is o for o in out):
                    out.append(inner)
        return out

    def add_loss(self, loss) -> None:
        """Keras's add_loss, inside call(): a tensor added to the loss of the model being
        trained or evaluated (summed when it is not a scalar), listed in `losses`."""
        ctx = current_context()
        if ctx is None:
            raise SymgraphError(f"{type(self).__name__} {self.name!r}: add_loss() can only be "
                                "called inside call(), on a tensor computed there")
        if not isinstance(loss, Node):
            raise SymgraphError(f"{type(self).__name__} {self.name!r}: add_loss() takes a tensor "
                                f"computed in call(), got {_shown(loss)}")
        ctx.losses.append(loss if loss.ndim == 0 else sg.sum(loss))
        self._losses.append(loss)

    def clear_losses(self) -> None:
        """Forget the add_loss terms of the previous call (Keras clears them per call)."""
        self._losses = []
        for layer in self.flatten_layers():
            layer._losses = []

    def call_losses(self) -> list:
        """The add_loss terms of the last call, this object's then its sublayers'."""
        return list(self._losses) + [t for layer in self.flatten_layers() for t in layer._losses]


def _layers_in(owner, value) -> list:
    """The layers in an attribute's value (one, or in a list, tuple or dict)."""
    return [v for v in flat(value) if isinstance(v, SublayerTracking) and v is not owner]


# --- building a Keras-style layer ------------------------------------------------------------

_STATE = ("built", "input_shape", "output_shape", "_own_weights", "_weight_rules", "_tracked")


def snapshot(owner) -> list:
    """What building `owner` may change in it and its sublayers, to put back on failure."""
    return [(layer, {k: _copy(layer.__dict__[k]) for k in _STATE if k in layer.__dict__})
            for layer in [owner] + owner.flatten_layers()]


def _copy(value):
    return type(value)(value) if isinstance(value, (list, dict)) else value


def restore(saved: list) -> None:
    for layer, state in saved:
        layer.__dict__.update(state)
        layer.tracking_changed()


def placeholders(shape):
    """Graph inputs for one shape (batch dim excluded), or a list for a list of shapes."""
    if isinstance(shape, list):
        return [placeholders(s) for s in shape]
    return sg.placeholder(("batch",) + tuple(shape), "float32", name="inputs")


def output_shape_of(owner: str, out):
    """The shape (batch dim excluded) of a traced call's output, a list for several."""
    if isinstance(out, (list, tuple)):
        return [output_shape_of(owner, o) for o in out]
    check_output(owner, out)
    return tuple(out.shape[1:])


def batchless(owner: str, shape):
    """A Keras shape (batch dim first, None) without it; a list of shapes gives a list."""
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return [batchless(owner, s) for s in shape]
    dims = list(shape) if isinstance(shape, (tuple, list)) else None
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           and d > 0 for d in dims[1:]):
        raise SymgraphError(f"{owner}: build takes Keras's input shape, the batch dim first "
                            f"(None) and positive integers after it, e.g. (None, 784); got "
                            f"{shape!r}")
    return tuple(int(d) for d in dims[1:])


def with_batch(shape):
    """Keras's form of a shape without its batch dim: (None, ...); a list gives a list."""
    if isinstance(shape, list):
        return [with_batch(s) for s in shape]
    return (None,) + tuple(shape)


def keras_build(build):
    """Wrap a Keras-style layer's `build(input_shape)` as Keras does: the outermost call then
    traces the layer's call on placeholders (building the sublayers it calls), records the
    input and output shapes and marks it built; a failure restores every layer it touched."""
    @functools.wraps(build)
    def wrapper(self, input_shape):
        if self._building:  # super().build(...) from a subclass's build
            return build(self, input_shape)
        owner = f"{type(self).__name__} {self.name!r}"
        shape = batchless(owner, input_shape)
        saved = snapshot(self)
        self._building = True
        try:
            build(self, input_shape)
            ctx = CallContext(training=False)
            inputs = placeholders(shape)
            self.clear_losses()
            out = run_call(self, inputs, ctx)
            self.input_shape, self.output_shape = shape, output_shape_of(owner, out)
            self.built = True
        except BaseException:
            restore(saved)
            raise
        finally:
            self._building = False
    wrapper.keras_build = True
    return wrapper


def eager_call(layer, inputs, training, args, kwargs):
    """A layer called on arrays (Keras's eager call): its output as arrays, computed on the
    NumPy reference backend; with training=True its updates (moving statistics) are applied.
    Its `losses` then hold the values of the add_loss terms."""
    kind = f"{type(layer).__name__} {layer.name!r}"
    arrays = [as_array(a, f"the inputs of {kind}", "x").astype(np.float32, copy=False)
              for a in flat(inputs)]
    if any(a.ndim == 0 for a in arrays):
        raise SymgraphError(f"{kind} was called on a scalar; it takes a batch of samples (the "
                            "first axis)")
    shapes = [tuple(a.shape[1:]) for a in arrays]
    xs = [sg.placeholder(("batch",) + s, "float32", name=f"x{i}") for i, s in enumerate(shapes)]
    several = isinstance(inputs, (list, tuple))
    if not layer.built:
        layer.build_for(shapes if several else shapes[0])
    ctx = CallContext(training=bool(training))
    layer.clear_losses()
    out = run_call(layer, xs if several else xs[0], ctx, None, args, kwargs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    terms = layer.call_losses()
    fn = sg.function(xs, outs + terms, updates=ctx.updates if training else None,
                     backend="numpy", name=f"{layer.name}_call")
    values = fn(*arrays)
    found = dict(zip((id(t) for t in terms), values[len(outs):]))
    for each in [layer] + layer.flatten_layers():
        each._losses = [found.get(id(t), t) for t in each._losses]
    return values[:len(outs)] if isinstance(out, (list, tuple)) else values[0]
