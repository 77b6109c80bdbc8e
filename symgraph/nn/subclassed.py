"""Keras's `Model` class: a subclass defines its layers as attributes and its forward pass in
`call`; `Model(inputs, outputs)` itself makes a functional model (functional.Functional), as
Keras 3's `Model.__new__` does.

    class MLP(nn.Model):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.hidden = nn.Dense(units, activation="relu")
            self.dropout = nn.Dropout(0.5)
            self.out = nn.Dense(10, activation="softmax")

        def call(self, inputs, training=None):
            return self.out(self.dropout(self.hidden(inputs), training=training))

The model is built on first use from the data's shapes, by `model.build((None, 784))`, or by
calling it on an `Input`: its call is traced once on placeholders, which builds the layers it
calls. `layers` are the tracked attributes, in assignment order; compile / fit / evaluate /
predict / summary / weights files work as for the other models. x may be a list of arrays (a
list of nodes reaches call) or a dict of them (a dict reaches call). `model.save` needs the
class's own `get_config` (Keras's rule); loading needs the class registered with
`register_serializable` or given in custom_objects.
"""

from __future__ import annotations

import functools

from symgraph.errors import SymgraphError
from symgraph.nn.calling import (
    CallContext,
    SublayerTracking,
    active,
    call_style,
    check_output,
    current_context,
    placeholders,
    restore,
    snapshot,
)
from symgraph.nn.layers import Input, _snake, unique_name
from symgraph.nn.models import BaseModel, checked_input_shape
from symgraph.nn.serialization import deserialize
from symgraph.nn.symbolic import SymbolicTensor, shape_text


def _is_functional_call(args, kwargs) -> bool:
    return bool(args) or "inputs" in kwargs or "outputs" in kwargs


class Model(SublayerTracking, BaseModel):
    """Keras's Model: `Model(inputs, outputs)` is a functional model; a subclass is a
    subclassed model (see the module docstring)."""

    call_takes_training = False

    def __new__(cls, *args, **kwargs):
        if cls is Model and _is_functional_call(args, kwargs):
            from symgraph.nn.functional import Functional

            return Functional.__new__(Functional)  # Python then runs Functional.__init__
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.call_takes_training = call_style(cls.call)[1]
        if "build" in cls.__dict__:
            cls.build = _recording_build(cls.build)

    def __init__(self, *args, name: str | None = None, **kwargs):
        if _is_functional_call(args, kwargs):
            raise SymgraphError(f"{type(self).__name__}: a subclass of Model defines its layers "
                                "in __init__ and its forward pass in call(), and calls "
                                "super().__init__() without inputs and outputs (to subclass a "
                                "functional model, subclass symgraph.nn.Functional)")
        if kwargs:
            raise SymgraphError(f"{type(self).__name__}: unknown arguments "
                                f"{', '.join(sorted(kwargs))}")
        self.__dict__.setdefault("_tracked", {})
        self._losses = []
        super().__init__(name or unique_name(_snake(type(self).__name__)))
        self.input_keys = None  # the names of the inputs of a model built from a dict x
        self.inputs = []        # its Inputs, for a model fed several arrays
        self.input_keys_unsorted = False  # a dict x is keyed by name, a list x is in order

    def __setattr__(self, name: str, value) -> None:
        if name == "layers":
            object.__setattr__(self, name, value)  # the property's setter
            return
        super().__setattr__(name, value)

    @property
    def layers(self) -> list:
        """The tracked layers (a Functional's: those its calls use)."""
        return self.sublayers() if self.tracks_sublayers else self.__dict__["_layers"]

    @layers.setter
    def layers(self, value) -> None:
        if self.tracks_sublayers and value:  # BaseModel.__init__ sets []
            raise SymgraphError(f"{type(self).__name__}: the attribute `layers` is reserved (the "
                                "model's tracked layers); assign the list under another name")
        object.__setattr__(self, "_layers", value)

    def tracking_changed(self) -> None:
        object.__setattr__(self, "_functions", {})

    def call(self, inputs, training=None):
        raise SymgraphError(f"{type(self).__name__} defines no call(self, inputs, "
                            "training=None): a subclass of Model computes its outputs there")

    @property
    def multi_inputs(self) -> list:
        return self.inputs if len(self.inputs) > 1 else []

    @property
    def output_layer(self):
        if not self.layers:
            raise SymgraphError(f"model {self.name!r} has no layers")
        return self.layers[-1]

    # --- the forward pass -------------------------------------------------------------------

    def run_layers(self, x, call):
        """The output of `call` on input node(s) `x`, in the active context."""
        ctx = current_context()
        if self.input_keys is not None:  # built from a dict: call gets one
            x = dict(zip(self.input_keys, x if self.multi_inputs else [x]))
        self.clear_losses()
        kwargs = {"training": ctx.training} if self.call_takes_training else {}
        out = self.call(x, **kwargs)
        owner = f"model {self.name!r}"
        check_output(owner, out)
        if isinstance(out, (list, tuple)):
            raise SymgraphError(f"{owner}: call() returned {len(out)} tensors; a subclassed model "
                                "has one output here (return one tensor)")
        return out

    def __call__(self, x, training: bool = False):
        """On an Input (a symbolic tensor): builds the model from its shape. On graph nodes:
        the model's output node (a symbolic forward pass)."""
        if isinstance(x, SymbolicTensor):
            self.build(tuple(x.shape))
            return SymbolicTensor(self.output_shape, "float32", self, 0, (x,))
        return super().__call__(x, training)

    # --- building ---------------------------------------------------------------------------

    def build(self, input_shape) -> None:
        """Build for inputs of `input_shape`: Keras's form (None, 784) or (784,); a list of
        shapes for a list x, or a dict {name: shape} for a dict x. The call is traced once on
        placeholders, which builds every layer it calls; a failure changes nothing."""
        keys = sorted(input_shape) if isinstance(input_shape, dict) else None
        if keys is not None:
            given = [input_shape[k] for k in keys]
        elif isinstance(input_shape, list) and input_shape and all(
                isinstance(s, (tuple, list)) for s in input_shape):
            given = input_shape
        else:
            given = [input_shape]
        shapes = [checked_input_shape(self, s) for s in given]
        shape = shapes if len(shapes) > 1 else shapes[0]
        if self.built:
            if shape != self.input_shape:
                raise SymgraphError(f"model {self.name!r} was built for inputs "
                                    f"{_shown(self.input_shape)}, not {_shown(shape)}")
            return
        saved, state = snapshot(self), (self.input_keys, self.inputs)
        try:
            self.input_keys = keys
            names = keys or [None] * len(shapes)
            self.inputs = ([Input(s, name=k) for s, k in zip(shapes, names)]
                           if keys or len(shapes) > 1 else [])
            ctx = CallContext(training=False, step=self.step_counter)
            with active(ctx):
                out = self.run_layers(placeholders(shape), None)
        except BaseException:
            restore(saved)
            self.input_keys, self.inputs = state
            raise
        self.input_shape, self.output_shape = shape, tuple(out.shape[1:])
        self.built = True
        self._functions = {}

    def build_from_data(self, x) -> None:
        """Build from x as fit / predict get it: an array, a list or a dict of arrays."""
        if isinstance(x, dict):
            self.build({k: tuple(v.shape[1:]) for k, v in x.items() if hasattr(v, "shape")})
        elif isinstance(x, (list, tuple)) and x and all(hasattr(a, "shape") for a in x):
            self.build([tuple(a.shape[1:]) for a in x])

    def get_build_config(self) -> dict | None:
        """What `build_from_config` needs to build the loaded model: its input shape(s)."""
        if not self.built:
            return None
        shapes = self.input_shape if isinstance(self.input_shape, list) else [self.input_shape]
        if self.input_keys is not None:
            return {"input_shape": {k: list(s) for k, s in zip(self.input_keys, shapes)}}
        if len(shapes) > 1:
            return {"input_shape": [list(s) for s in shapes]}
        return {"input_shape": list(shapes[0])}

    def build_from_config(self, config: dict) -> None:
        shape = config["input_shape"]
        if isinstance(shape, dict):
            self.build({k: tuple(s) for k, s in shape.items()})
        elif shape and isinstance(shape[0], list):
            self.build([tuple(s) for s in shape])
        else:
            self.build(tuple(shape))

    # --- configs, summary -------------------------------------------------------------------

    def get_config(self) -> dict:
        """A subclass saves with its own get_config (its __init__ arguments), as Keras
        requires; called from it through super(), this gives the model's name."""
        if type(self).get_config is Model.get_config:
            raise SymgraphError(f"cannot save {type(self).__name__} {self.name!r}: a subclassed "
                                "model is saved from its config; define get_config() returning "
                                "its __init__ arguments (and register the class with "
                                "@symgraph.nn.register_serializable())")
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        """A functional model's config (saved as "Model" by older symgraph) makes a functional
        model; a subclass's is its __init__ arguments."""
        if cls is Model and "input_layers" in config:
            from symgraph.nn.functional import Functional

            return Functional.from_config(config, custom_objects)
        return cls(**deserialize(config))

    def summary(self, print_fn=None) -> None:
        if not self.built:
            raise SymgraphError(f"model {self.name!r} is not built yet, so its layers' shapes and "
                                "weights are unknown: build it first (model.build((None, "
                                "features)), or fit / predict / call it on data)")
        super().summary(print_fn)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.layers)} layers>"


def _recording_build(build):
    """Wrap a subclass's own `build(input_shape)` as Keras does: it gets Keras's shape (the
    batch dim first, None), and whatever it does (building its layers itself, without
    super().build), the model is then built for that shape (its call traced, its shapes
    recorded); a failure changes nothing."""
    @functools.wraps(build)
    def wrapper(self, input_shape):
        if self.built:
            return Model.build(self, input_shape)  # the shape must be the one it was built for
        saved, state = snapshot(self), (self.input_keys, self.inputs)
        try:
            build(self, _with_batch_dim(input_shape))
            if not self.built:  # it did not call super().build(input_shape)
                Model.build(self, input_shape)
        except BaseException:
            restore(saved)
            self.input_keys, self.inputs = state
            raise
    return wrapper


def _with_batch_dim(shape):
    """A build shape in Keras's form: (None, ...) (a list or dict gives one of them)."""
    if isinstance(shape, dict):
        return {k: _with_batch_dim(s) for k, s in shape.items()}
    if isinstance(shape, list) and shape and all(isinstance(s, (tuple, list)) for s in shape):
        return [_with_batch_dim(s) for s in shape]
    if isinstance(shape, (tuple, list)) and (not shape or shape[0] is not None):
        return (None,) + tuple(shape)
    return shape


def _shown(shape) -> str:
    if isinstance(shape, list):
        return ", ".join(shape_text(s) for s in shape)
    return shape_text(shape)
