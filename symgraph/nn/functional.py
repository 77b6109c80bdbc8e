"""Keras's functional model: `Model(inputs, outputs)` runs the graph of layer calls recorded
on symbolic tensors (symbolic.py) between `Input()` and the outputs.

    inputs = Input(shape=(784,))
    h = Dense(256, activation="relu")(inputs)
    h = Add()([h, Dense(256)(h)])                       # a skip connection
    outputs = Dense(10, activation="softmax")(Concatenate()([h, inputs]))
    model = Model(inputs, outputs)                      # then compile / fit / predict as usual

The calls run in the order they were made (always a topological order); `layers` lists each
layer once, in the order of first use, which is also the weights' order. One input and one
output: multiple inputs or outputs are refused (the Trainer feeds one array x and one y).
"""

from __future__ import annotations

from symgraph.errors import SymgraphError
from symgraph.nn.layers import InputLayer, unique_name
from symgraph.nn.models import BaseModel
from symgraph.nn.symbolic import SymbolicTensor


def _one(value, what: str) -> SymbolicTensor:
    """The single symbolic tensor in `value` (a one-element list counts as its element)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (list, tuple, dict)):
        raise SymgraphError(f"Model: {len(value)} {what} given; only models with one input and "
                            "one output are supported (fit feeds one array x and one array y)")
    if not isinstance(value, SymbolicTensor):
        raise SymgraphError(f"Model: {what} must be symbolic tensors (what Input() and layers "
                            f"called on it return), got {type(value).__name__} {value!r}")
    return value


def _calls_between(inputs: SymbolicTensor, outputs: SymbolicTensor) -> list:
    """Every layer call on a path from `inputs` to `outputs`, in the order they were made; an
    output that does not come from `inputs` alone raises, naming the Input it comes from."""
    found, stack = {}, [outputs]
    while stack:
        h = stack.pop()
        if id(h) in found or h is inputs:
            continue
        if not h.inputs:
            raise SymgraphError(
                f"Model: output {outputs.name} (made at {outputs.trace}) is not computed from the "
                f"model's inputs {inputs.name} alone: it depends on {h.name}, the Input made at "
                f"{h.trace}, which is not among the model's inputs")
        found[id(h)] = h
        stack.extend(h.inputs)
    return sorted(found.values(), key=lambda h: h.order)


class Model(BaseModel):
    """`Model(inputs, outputs, name=None)` over layers called on symbolic tensors; it trains,
    evaluates, predicts, saves and summarizes as a Sequential does."""

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        inputs, outputs = _one(inputs, "inputs"), _one(outputs, "outputs")
        if not isinstance(inputs.layer, InputLayer):
            raise SymgraphError(f"Model: inputs must be what Input() returns, got {inputs.name}, "
                                f"the output of {type(inputs.layer).__name__} made at "
                                f"{inputs.trace}")
        calls = _calls_between(inputs, outputs)
        layers = [inputs.layer]
        for h in calls:
            if h.layer not in layers:
                layers.append(h.layer)
        names = [layer.name for layer in layers]
        for layer in layers:
            if names.count(layer.name) > 1:
                raise SymgraphError(f"Model: two layers are named {layer.name!r}; layer names "
                                    "must be unique (they key the weights in saved files)")
            uses = sum(h.layer is layer for h in calls)
            if uses > 1 and not layer.shareable:
                raise SymgraphError(f"Model: {type(layer).__name__} {layer.name!r} is called "
                                    f"{uses} times; a {type(layer).__name__} cannot be shared "
                                    "(its training-time mask or statistics would be shared): "
                                    "create one per use")
        super().__init__(name or unique_name("functional"))
        self.inputs, self.outputs = [inputs], [outputs]
        self._calls = calls
        self.layers = layers
        self.input_shape = inputs.shape[1:]
        self.output_shape = outputs.shape[1:]
        self.built = True

    def build(self, input_shape) -> None:
        """A functional model is built from its Input: another shape is an error."""
        if tuple(input_shape) != tuple(self.input_shape):
            raise SymgraphError(f"model {self.name!r} takes inputs of shape (None, "
                                f"{', '.join(map(str, self.input_shape))}), not {input_shape}")

    @property
    def output_layer(self):
        return self.outputs[0].layer

    def run_layers(self, x, call):
        values = {id(self.inputs[0]): x}
        for h in self._calls:
            args = [values[id(p)] for p in h.inputs]
            values[id(h)] = call(h.layer, args if h.layer.takes_list else args[0])
        return values[id(self.outputs[0])]

    def _connections(self) -> list | None:
        """Per layer, the inputs of each of its calls; None when the calls form a chain."""
        chain = all(len(h.inputs) == 1 and h.inputs[0] is prev
                    for prev, h in zip([self.inputs[0]] + self._calls, self._calls))
        # Keras: a layer called twice (a shared layer) makes the model not sequential-like
        chain = chain and len(self._calls) == len(self.layers) - 1
        if chain:
            return None
        return [", ".join(p.name for h in self._calls if h.layer is layer for p in h.inputs)
                or "-" for layer in self.layers]

    def __repr__(self) -> str:
        return f"<Model {self.name!r}: {len(self.layers)} layers>"
