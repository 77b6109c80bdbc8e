"""Keras's functional model: `Model(inputs, outputs)` runs the graph of layer calls recorded
on symbolic tensors (symbolic.py) between `Input()` and the outputs.

    inputs = Input(shape=(784,))
    h = Dense(256, activation="relu")(inputs)
    h = Add()([h, Dense(256)(h)])                       # a skip connection
    outputs = Dense(10, activation="softmax")(Concatenate()([h, inputs]))
    model = Model(inputs, outputs)                      # then compile / fit / predict as usual

The calls run in the order they were made (always a topological order); `layers` lists the
InputLayers, then each layer once in the order of first use, which is also the weights' order.

Several inputs are Keras's: `Model([a, b], out)` or `Model({"a": a, "b": b}, out)` (the keys are
the Inputs' names; `model.inputs` lists them in sorted key order, as Keras flattens a dict), and
x is then a list of arrays in the order of `model.inputs` or a dict by Input name
(model_inputs.py). Several outputs are Keras's too: `Model(inputs, [out_a, out_b])` or
`Model(inputs, {"a": out_a, "b": out_b})` (keys: the output layers' names, sorted as for inputs);
each output has its loss, weight and metrics, and y is one array per output (model_outputs.py).
"""

from __future__ import annotations

from symgraph.errors import SymgraphError
from symgraph.nn.layers import InputLayer, Layer, unique_name
from symgraph.nn.model_config import functional_config, functional_from_config
from symgraph.nn.models import BaseModel
from symgraph.nn.subclassed import Model
from symgraph.nn.symbolic import SymbolicTensor, shape_text


def _symbolic(value, what: str) -> SymbolicTensor:
    if not isinstance(value, SymbolicTensor):
        raise SymgraphError(f"Model: {what} must be symbolic tensors (what Input() and layers "
                            f"called on it return), got {type(value).__name__} {value!r}")
    return value


def _tensor_list(value, what: str, fix: str) -> tuple[list, bool, bool]:
    """The tensors in `value` (one, a list or tuple, or a dict keyed by their layers' names,
    flattened in sorted key order as Keras does), whether they came as a dict, and whether its
    keys were out of sorted order. `fix` tells how to name a layer after a dict key."""
    as_dict, unsorted = isinstance(value, dict), False
    if as_dict:
        for key, t in value.items():
            _symbolic(t, what)
            if key != t.layer.name:
                raise SymgraphError(f"Model: {what} given as a dict must be keyed by the name of "
                                    f"their layer; key {key!r} holds {t.name}, of layer "
                                    f"{t.layer.name!r} (write {fix.format(key=key)})")
        unsorted = list(value) != sorted(value)
        value = [value[key] for key in sorted(value)]
    tensors = list(value) if isinstance(value, (list, tuple)) else [value]
    if not tensors:
        raise SymgraphError(f"Model: no {what} given; pass the tensors Input() and the layers "
                            "returned")
    for t in tensors:
        _symbolic(t, what)
    return tensors, as_dict, unsorted


def _output_list(value) -> tuple[list, bool, bool]:
    """The output tensors (see _tensor_list). Several may come from one layer (an LSTM's
    states, Keras's seq2seq encoder `Model(inputs, [state_h, state_c])`): such a model
    predicts, and compile refuses to train it (model_outputs.refuse_repeated_names)."""
    return _tensor_list(value, "outputs", "Dense(..., name={key!r})")


def _input_list(value) -> tuple[list, bool]:
    """The Input tensors (see _tensor_list), each given once, and whether a dict's keys were
    out of sorted order."""
    tensors, _, unsorted = _tensor_list(value, "inputs", "Input(..., name={key!r})")
    for t in tensors:
        if not isinstance(t.layer, InputLayer):
            raise SymgraphError(f"Model: inputs must be what Input() returns, got {t.name}, "
                                f"the output of {type(t.layer).__name__} made at {t.trace}")
        times = sum(u is t for u in tensors)
        if times > 1:
            raise SymgraphError(f"Model: input {t.layer.name!r} is given {times} times; list "
                                "each Input once")
    return tensors, unsorted


def _calls_between(inputs: list, outputs: list) -> list:
    """Every layer call on a path from `inputs` to any of `outputs`, in the order they were
    made, each as its first output's tensor (a call with several outputs is listed once); an
    output that does not come from `inputs` alone, or an input no output uses, raises."""
    found, reached = {}, set()
    given = {id(t) for t in inputs}
    for out in outputs:
        stack = [out]
        while stack:
            h = stack.pop()
            if id(h) in given:
                reached.add(id(h))
                continue
            if id(h) in found:
                continue
            if not h.inputs:
                raise SymgraphError(
                    f"Model: output {out.name} (made at {out.trace}) is not computed from the "
                    f"model's inputs {', '.join(t.name for t in inputs)} alone: it depends on "
                    f"{h.name}, the Input made at {h.trace}, which is not among the model's "
                    "inputs")
            found[id(h)] = h.siblings[0]
            for sibling in h.siblings:
                found[id(sibling)] = h.siblings[0]
            stack.extend(h.inputs)
    for t in inputs:
        if id(t) not in reached:
            used = "the output" if len(outputs) == 1 else "any of the outputs"
            raise SymgraphError(f"Model: input {t.layer.name!r} (made at {t.trace}) is not used "
                                f"to compute {used} {', '.join(o.name for o in outputs)}; "
                                "remove it from inputs")
    calls = {id(h): h for h in found.values()}
    return sorted(calls.values(), key=lambda h: h.order)


class Functional(Model):
    """`Model(inputs, outputs, name=None)` over layers called on symbolic tensors; it trains,
    evaluates, predicts, saves and summarizes as a Sequential does. Keras names its class
    Functional (saved configs too); `Model(inputs, outputs)` makes one (subclassed.py)."""

    tracks_sublayers = False  # its layers are those the calls between inputs and outputs use
    __call__ = BaseModel.__call__

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        # a dict's keys in the order given (get_config keeps it: out of order, a list x is refused)
        self.input_keys = list(inputs) if isinstance(inputs, dict) else None
        self.output_keys = list(outputs) if isinstance(outputs, dict) else None
        inputs, unsorted = _input_list(inputs)
        outputs, as_dict, outputs_unsorted = _output_list(outputs)
        calls = _calls_between(inputs, outputs)
        layers = [t.layer for t in inputs]
        for h in calls:
            if not isinstance(h.layer, Layer):
                raise SymgraphError(f"Model: {h.name} is the output of model {h.layer.name!r}; "
                                    "a model used as a layer of a functional model is not "
                                    "supported (call its layers instead)")
            if h.layer not in layers:
                layers.append(h.layer)
        names = [layer.name for layer in layers]
        for layer in layers:
            if names.count(layer.name) > 1:
                raise SymgraphError(f"Model: two layers are named {layer.name!r}; layer names "
                                    "must be unique (they key the weights in saved files)")
        BaseModel.__init__(self, name or unique_name("functional"))
        self.inputs, self.outputs = inputs, outputs
        self.input_keys_unsorted = unsorted  # then a list x is ambiguous (model_inputs.py)
        self.output_names = [t.layer.name for t in outputs]  # Keras: the output layers' names
        self.outputs_as_dict = as_dict  # predict returns a dict; y may be one (model_outputs.py)
        self.output_keys_unsorted = outputs_unsorted  # then a list y is ambiguous
        self._calls = calls
        self.layers = layers
        shapes = [t.shape[1:] for t in inputs]
        self.input_shape = shapes[0] if len(shapes) == 1 else shapes  # Keras: a list for several
        shapes = [t.shape[1:] for t in outputs]
        if as_dict:
            self.output_shape = dict(zip(self.output_names, shapes))
        else:  # Keras: a list for several outputs
            self.output_shape = shapes[0] if len(shapes) == 1 else shapes
        self.built = True

    @property
    def multi_inputs(self) -> list:
        return self.inputs if len(self.inputs) > 1 else []

    @property
    def multi_outputs(self) -> list:
        return self.outputs if len(self.outputs) > 1 else []

    def build(self, input_shape) -> None:
        """A functional model is built from its Inputs: another shape is an error."""
        if tuple(input_shape) != tuple(self.input_shape):
            raise SymgraphError(f"model {self.name!r} takes inputs of shape "
                                f"{', '.join(shape_text(t.shape[1:]) for t in self.inputs)}, "
                                f"not {input_shape}")

    @property
    def output_layer(self):
        return self.outputs[0].layer

    def run_layers(self, x, call):
        xs = x if self.multi_inputs else [x]
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self.inputs):
            raise SymgraphError(f"model {self.name!r} has {len(self.inputs)} inputs "
                                f"({', '.join(t.layer.name for t in self.inputs)}): call it on a "
                                f"list of {len(self.inputs)} nodes, got {type(x).__name__}")
        values = {id(t): node for t, node in zip(self.inputs, xs)}
        for h in self._calls:
            args = [values[id(p)] for p in h.inputs]
            result = call(h.layer, args if h.layer.takes_list else args[0])
            if len(h.siblings) == 1:
                values[id(h)] = result
            else:  # a layer with several outputs returns a list of nodes
                values.update((id(s), node) for s, node in zip(h.siblings, result))
        if self.multi_outputs:
            return [values[id(t)] for t in self.outputs]
        return values[id(self.outputs[0])]

    def _connections(self) -> list | None:
        """Per layer, the inputs of each of its calls; None when the calls form a chain."""
        chain = len(self.inputs) == 1 and all(
            len(h.inputs) == 1 and h.inputs[0] is prev
            for prev, h in zip([self.inputs[0]] + self._calls, self._calls))
        # Keras: a layer called twice (a shared layer) makes the model not sequential-like
        chain = chain and len(self._calls) == len(self.layers) - 1
        if chain:
            return None
        return [", ".join(p.name for h in self._calls if h.layer is layer for p in h.inputs)
                or "-" for layer in self.layers]

    def get_build_config(self) -> None:
        return None  # built from its Inputs, which its config holds

    def get_config(self) -> dict:
        """Keras 3's functional config: layers with their inbound nodes, input_layers and
        output_layers (model_config.py)."""
        return functional_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Functional:
        """The model `get_config` describes (new weights), its layers called as recorded."""
        return functional_from_config(cls, config, custom_objects)

    def __repr__(self) -> str:
        return f"<Model {self.name!r}: {len(self.layers)} layers>"
