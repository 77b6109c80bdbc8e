"""The Layer base class (layers.py has the built-in layers): naming, weights, the
trainable flag, input-shape declaration, Keras-style and symgraph-style calls, configs; and
Keras's `Input` with its InputLayer.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import defaultdict

import numpy as np

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.graph import Node
from symgraph.nn import constraints, initializers, regularizers
from symgraph.nn.calling import (
    CallContext,
    SublayerTracking,
    call_style,
    current_context,
    eager_call,
    flat,
    keras_build,
    run_call,
    with_batch,
)
from symgraph.nn.serialization import Serializable
from symgraph.nn.symbolic import SymbolicTensor, call_layer, shape_text

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)


def _snake(name: str) -> str:
    """Keras's to_snake_case: BatchNormalization -> batch_normalization, ReLU -> re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(base: str) -> str:
    """Keras's naming: dense, dense_1, dense_2, ... per process."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


class Layer(SublayerTracking, Serializable):
    """Base layer: naming, weights, trainable flag, input shape declaration; `get_config()`
    gives the arguments that rebuild it (`from_config`), without its weights. A subclass
    defines symgraph's `call(self, x, ctx)` or Keras's `call(self, inputs[, training])`
    (calling.py); layers assigned as its attributes are its sublayers: their weights,
    penalties and constraints are its own."""

    takes_list = False  # merge layers are called on a list of inputs
    keras_call, call_takes_training = False, False  # set per class from its call's signature

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.keras_call, cls.call_takes_training = call_style(cls.call)
        if cls.keras_call and not getattr(cls.build, "keras_build", False):
            cls.build = keras_build(cls.build)
        elif not cls.keras_call and "build" in cls.__dict__:
            cls.build = _taking_keras_shapes(cls.build)

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape=None,
                 input_dim: int | None = None, dtype: str = "float32", **kwargs):
        if kwargs:
            raise SymgraphError(f"{type(self).__name__}: unknown arguments "
                                f"{', '.join(sorted(kwargs))}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise SymgraphError(f"{type(self).__name__}: name must be a non-empty string "
                                f"without '/' (it keys the weights in saved files), got {name!r}")
        self.__dict__.setdefault("_tracked", {})  # a subclass may assign layers before this
        self._own_weights: list[tuple[str, sg.Variable]] = []
        self._weight_rules: dict[int, tuple] = {}  # variable id -> (regularizer, constraint)
        self._losses: list = []  # add_loss terms of the last call
        self._building = False
        self.name = name or unique_name(_snake(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = dtype
        if input_dim is not None:
            input_shape = (int(input_dim),)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.built = False
        self.output_shape = None
        self.calls = 0  # calls on symbolic tensors so far (numbers them, Keras's node index)

    # --- weights ----------------------------------------------------------------------------

    def add_weight(self, *args, shape=None, initializer=None, dtype: str | None = None,
                   trainable: bool = True, regularizer=None, constraint=None,
                   name: str | None = None) -> sg.Variable:
        """Keras's `add_weight(shape=None, initializer=None, dtype=None, trainable=True,
        regularizer=None, constraint=None, name=None)` (shape, initializer and dtype may come
        positionally; no shape: a scalar; no initializer: glorot_uniform for floats, zeros
        else); the regularizer's penalty joins the loss, the constraint projects the weight
        after each update. symgraph's own form `add_weight(name, shape, initializer,
        trainable=True, dtype=None)` takes the name first."""
        if "_own_weights" not in self.__dict__:
            raise SymgraphError(f"{type(self).__name__}: call super().__init__() in __init__ "
                                "before add_weight")
        if args and isinstance(args[0], str):  # symgraph's form
            fields = dict(zip(("name", "shape", "initializer", "trainable", "dtype"), args))
            name, shape = fields["name"], fields.get("shape", shape)
            initializer = fields.get("initializer", initializer)
            trainable, dtype = fields.get("trainable", trainable), fields.get("dtype", dtype)
        elif args:
            if len(args) > 3:
                raise SymgraphError(f"layer {self.name!r}: add_weight takes at most 3 positional "
                                    f"arguments (shape, initializer, dtype), got {len(args)}")
            shape, initializer, dtype = (list(args) + [shape, initializer, dtype][len(args):])
        shape = () if shape is None else shape
        if not isinstance(shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
                for d in shape):
            raise SymgraphError(f"layer {self.name!r}: add_weight needs a fully defined shape, a "
                                f"tuple of non-negative integers (no None), got shape={shape!r}")
        if self.built and not self._building:
            raise SymgraphError(f"layer {self.name!r} is already built: create its weights in "
                                "__init__ or build(), not in call()")
        dtype = dtype or self.dtype
        if name is None:  # Keras's default name, made unique: it keys the weight in files
            taken = {n for n, _ in self._own_weights}
            name = next(n for n in (f"variable_{i}" if i else "variable" for i in range(10**6))
                        if n not in taken)
        if not isinstance(name, str) or not name or "/" in name:
            raise SymgraphError(f"layer {self.name!r}: a weight's name must be a non-empty string "
                                f"without '/', got name={name!r}")
        if any(existing == name for existing, _ in self._own_weights):
            raise SymgraphError(f"layer {self.name!r} already has a weight {name!r} (a layer is "
                                "built once, for one input shape)")
        if initializer is None:
            initializer = "glorot_uniform" if np.dtype(dtype).kind == "f" else "zeros"
        rules = (regularizers.get(regularizer), constraints.get(constraint))
        value = initializers.get(initializer)(tuple(shape), dtype)
        var = sg.variable(np.asarray(value, dtype), name=f"{self.name}/{name}",
                          trainable=trainable)
        self._own_weights.append((name, var))
        if rules != (None, None):
            self._weight_rules[var.id] = rules
        return var

    @property
    def _weights(self) -> list:
        """[(name, variable)]: the layer's own weights, then each sublayer's as
        `<sublayer>/<name>` (Keras's order), each variable once."""
        out, seen = [], set()
        named = list(self._own_weights) + [(f"{layer.name}/{wname}", var)
                                           for layer in self.sublayers()
                                           for wname, var in layer._weights]
        for wname, var in named:
            if var.id not in seen:
                seen.add(var.id)
                out.append((wname, var))
        return out

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:  # Keras: a layer's flag sets its sublayers'
        self._trainable = bool(value)
        for layer in self.sublayers():
            layer.trainable = value

    @property
    def weights(self) -> list:
        return [v for _, v in self._weights]

    @property
    def trainable_weights(self) -> list:
        if not self._trainable:
            return []
        own = [v for _, v in self._own_weights if v.trainable]
        return list({v.id: v for v in own + [v for layer in self.sublayers()
                                             for v in layer.trainable_weights]}.values())

    @property
    def non_trainable_weights(self) -> list:
        trainable = {v.id for v in self.trainable_weights}
        return [v for v in self.weights if v.id not in trainable]

    def get_weights(self) -> list:
        return [v.value for v in self.weights]

    def set_weights(self, arrays) -> None:
        """Replace every weight; shapes are checked first, so a mismatch changes nothing."""
        arrays = list(arrays)
        if len(arrays) != len(self._weights):
            raise SymgraphError(f"layer {self.name!r} has {len(self._weights)} weights, got "
                                f"{len(arrays)} arrays")
        for (wname, var), a in zip(self._weights, arrays):
            if tuple(np.shape(a)) != tuple(var.shape):
                raise SymgraphError(f"layer {self.name!r} weight {wname!r} has shape "
                                    f"{tuple(var.shape)}, got an array of shape {np.shape(a)}")
        for var, a in zip(self.weights, arrays):
            var.value = np.asarray(a, var.dtype)

    def count_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    # --- graph ------------------------------------------------------------------------------

    def build(self, input_shape: tuple) -> None:
        """Create the weights for inputs of `input_shape`: the batch dim excluded, or first as
        None as Keras writes it ((None, 3) is (3,); a merge layer takes a list of shapes)."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def build_for(self, input_shape) -> None:
        """Build for inputs of `input_shape`, batch dim excluded (a list of shapes for a
        Keras-style layer called on a list; a tuple of them for a merge layer): a Keras-style
        layer's build gets Keras's shape, the batch dim first (None)."""
        self.build(with_batch(input_shape) if self.keras_call else input_shape)

    def __call__(self, inputs, *args, training=None, **kwargs):
        """On symbolic tensors (the functional API): builds the layer from their shapes on
        first use and returns the output's symbolic tensor. On graph nodes (inside another
        layer's or a subclassed model's call): the output node, in the forward pass running
        (`training` overrides its mode for this call, as Keras's). On arrays: the output
        computed now (Keras's eager call)."""
        leaves = flat(inputs)
        if any(isinstance(leaf, SymbolicTensor) for leaf in leaves):
            if args or kwargs or training is not None:
                raise SymgraphError(f"{type(self).__name__} {self.name!r}: a call on symbolic "
                                    "tensors takes the inputs alone (no training= or other "
                                    "arguments)")
            return call_layer(self, inputs)
        if not all(isinstance(leaf, Node) for leaf in leaves):
            return eager_call(self, inputs, training, args, kwargs)
        shapes = [tuple(leaf.shape[1:]) for leaf in leaves]
        several = isinstance(inputs, (list, tuple))
        shape = (tuple(shapes) if self.takes_list else shapes) if several else shapes[0]
        if not self.built:
            self.build_for(shape)
        elif self.input_shape is not None and _shapes_differ(self.input_shape, shape):
            raise SymgraphError(f"{type(self).__name__} {self.name!r} was built for inputs "
                                f"{_shown_shape(self.input_shape)} but is called on "
                                f"{_shown_shape(shape)}")
        ctx = current_context() or CallContext(training=bool(training))
        return run_call(self, inputs, ctx, training, args, kwargs)

    def call(self, x, ctx: CallContext):
        raise NotImplementedError

    def weight_rules(self) -> dict:
        """{variable id: (regularizer, constraint)}: what this layer's weights and its
        sublayers' were added with (add_weight's regularizer and constraint)."""
        rules = {}
        for layer in [self] + self.flatten_layers():
            rules.update(layer._weight_rules)
        return rules

    def penalties(self) -> list:
        """Regularization terms this layer adds to the loss: those of the regularizers its
        trainable weights were added with, each weight once (Keras sums them over
        `trainable_weights`: a frozen layer adds none)."""
        return penalties_of(self.trainable_weights, self.weight_rules())

    def constrain(self, var, new_value):
        """The projection applied to `var`'s value right after an optimizer update: the
        constraint it was added with (its own or a sublayer's)."""
        return constrained(self.weight_rules(), var, new_value)

    @property
    def losses(self) -> list:
        """Keras's `losses`: the add_loss terms of the last call (this layer's, then its
        sublayers'), then the regularization penalties. After a call on arrays they are
        arrays; in a forward pass being built (inside call()) they are graph nodes."""
        return self.call_losses() + penalty_values(self.penalties())

    def get_config(self) -> dict:
        """Keras's base keys; a layer with arguments adds its own (JSON-ready values)."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _taking_keras_shapes(build):
    """Wrap a symgraph-style layer's `build(input_shape)` (the batch dim excluded) so that it
    takes Keras's shape too, as a custom layer's build passes it on (`self.dense.build(
    input_shape)`): a leading None is the batch dim, dropped (a merge layer's: per shape)."""
    @functools.wraps(build)
    def wrapper(self, input_shape):
        if getattr(self, "_building", False):  # super().build(...) from a subclass's build
            return build(self, input_shape)
        self._building = True
        try:
            return build(self, _batch_dim_dropped(self, input_shape))
        finally:
            self._building = False
    return wrapper


def _batch_dim_dropped(layer, shape):
    def drop(s):
        return tuple(s[1:]) if isinstance(s, (tuple, list)) and s and s[0] is None else s
    if layer.takes_list and isinstance(shape, (tuple, list)) and shape and all(
            isinstance(s, (tuple, list)) for s in shape):
        return tuple(drop(s) for s in shape)
    return drop(shape)


Layer.build = _taking_keras_shapes(Layer.build)


def penalties_of(variables, rules: dict) -> list:
    """The penalties of `variables` by the regularizers in `rules` (`weight_rules`)."""
    return [rule[0](var) for var in variables
            if (rule := rules.get(var.id)) is not None and rule[0] is not None]


def penalty_values(penalties: list) -> list:
    """`penalties` as arrays, computed now; inside a call (a forward pass being built) the
    graph nodes themselves."""
    if penalties and current_context() is None:
        return list(sg.function([], penalties, backend="numpy", name="penalties")())
    return list(penalties)


def constrained(rules: dict, var, new_value):
    """`new_value` projected by `var`'s constraint in `rules` (`weight_rules`), if it has one."""
    rule = rules.get(var.id)
    return rule[1](new_value) if rule is not None and rule[1] is not None else new_value


def _shapes_differ(built, given) -> bool:
    as_tuples = (lambda s: tuple(tuple(x) for x in s) if s and isinstance(s[0], (tuple, list))
                 else tuple(s))
    return as_tuples(built) != as_tuples(given)


def _shown_shape(shape) -> str:
    if shape and isinstance(shape[0], (tuple, list)):
        return ", ".join(shape_text(s) for s in shape)
    return shape_text(shape)


class InputLayer(Layer):
    """Declares the model's input shape: the first entry of a Sequential, or the layer behind
    the symbolic tensor `Input()` returns (its `output`)."""

    def __init__(self, shape=None, name: str | None = None, input_shape=None, batch_shape=None,
                 **kwargs):
        if batch_shape is not None:  # Keras's config: the shape with the batch dim (None)
            shape = tuple(batch_shape)[1:]
        super().__init__(name=name or unique_name("input_layer"),
                         input_shape=shape if shape is not None else input_shape, **kwargs)
        self.output = None

    def get_config(self):
        return {"batch_shape": [None, *self.input_shape], "dtype": self.dtype, "name": self.name}

    def __call__(self, inputs):
        raise SymgraphError(f"InputLayer {self.name!r} is not called on tensors: Input(shape) "
                            "returns its symbolic tensor, on which the next layer is called")

    def call(self, x, ctx):
        return x


def Input(shape, name: str | None = None, dtype: str = "float32") -> SymbolicTensor:  # noqa: N802
    """Keras's `Input`: the symbolic tensor a functional model starts from (shape excludes the
    batch dim). `Sequential([Input(shape), ...])` takes it as the model's input shape."""
    valid = isinstance(shape, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape)
    if not valid:
        raise SymgraphError("Input: shape must be a tuple of positive integers without the batch "
                            f"dim, e.g. shape=(784,); got {shape!r}")
    if dtype != "float32":
        raise SymgraphError(f"Input: only dtype='float32' inputs are supported, got {dtype!r}")
    layer = InputLayer(shape=tuple(int(d) for d in shape), name=name)
    layer.build(layer.input_shape)
    layer.output = SymbolicTensor(layer.output_shape, dtype, layer, 0)
    layer.calls = 1
    return layer.output
