"""Keras 3's layer wrappers: Bidirectional (a recurrent layer run forwards and backwards over
the sequence, the two outputs merged) and TimeDistributed (one layer applied to every
timestep). A wrapper holds its inner layers' weights as its own, named
`<inner layer>/<weight>`, forward layer first.
"""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.calling import run_call
from symgraph.nn.layers import InputLayer, Layer
from symgraph.nn.serialization import deserialize, serialize
from symgraph.nn.symbolic import shape_text

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class _Wrapper(Layer):
    """A layer around others (its attributes, so its sublayers: their weights, penalties,
    constraints and trainable flag are the wrapper's, layers.Layer)."""

    def wrapped(self) -> list:
        raise NotImplementedError


def _checked_layer(layer, what: str, kind: str) -> Layer:
    if not isinstance(layer, Layer) or isinstance(layer, InputLayer) or layer.takes_list:
        raise SymgraphError(f"{kind}: `{what}` must be a layer instance that takes one input "
                            f"(e.g. LSTM(64)), got {type(layer).__name__} {layer!r}")
    return layer


def _recreated(layer, **changes) -> Layer:
    """A new layer from `layer`'s config with `changes` (its weights are not carried over, as
    Keras's Bidirectional recreates its layers)."""
    entry = serialize(layer)
    entry["config"] = {**entry["config"], **changes}
    return deserialize(entry)


def _prefixed(name: str, prefix: str) -> str:
    return prefix + (name[len(prefix):] if name.startswith(prefix) else name)


class Bidirectional(_Wrapper):
    """Keras's Bidirectional: a copy of `layer` named forward_<name> and one with
    go_backwards=True named backward_<name> (or `backward_layer`), both on the same inputs;
    with return_sequences the backward outputs are flipped back to the input order before
    merge_mode ("concat", "sum", "mul", "ave", or None: both outputs, a list) merges them.
    return_state appends the forward then the backward states. The backward copy's dropout
    seed is the layer's plus one, so the two directions draw different masks."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        _checked_layer(layer, "layer", "Bidirectional")
        for attribute in ("go_backwards", "return_sequences", "return_state"):
            if not hasattr(layer, attribute):
                raise SymgraphError(f"Bidirectional: `layer` must be a recurrent layer (with "
                                    f"{attribute}), such as LSTM or GRU; got "
                                    f"{type(layer).__name__} {layer.name!r}")
        if backward_layer is not None:
            _checked_layer(backward_layer, "backward_layer", "Bidirectional")
        if merge_mode not in _MERGE_MODES:
            raise SymgraphError(f"Bidirectional: Invalid merge mode. Received: {merge_mode!r}. "
                                "Merge mode should be one of {'sum', 'mul', 'ave', 'concat', "
                                "None}")
        forward = _recreated(layer, name=_prefixed(layer.name, "forward_"))
        if backward_layer is None:
            changes = {"name": _prefixed(layer.name, "backward_"), "go_backwards": True}
            seed = getattr(layer, "seed", None)
            if isinstance(seed, int):
                changes["seed"] = seed + 1
            backward_layer = _recreated(layer, **changes)
        if forward.go_backwards == backward_layer.go_backwards:
            raise SymgraphError(f"Bidirectional: Forward layer and backward layer should have "
                                f"different `go_backwards` value, got "
                                f"{forward.go_backwards} for both")
        for attribute in ("return_sequences", "return_state"):
            ours, theirs = getattr(forward, attribute), getattr(backward_layer, attribute, None)
            if ours != theirs:
                raise SymgraphError(f"Bidirectional: Forward layer and backward layer are "
                                    f"expected to have the same value for attribute "
                                    f"{attribute!r}, got {ours} and {theirs}")
        super().__init__(**kwargs)
        self.forward_layer, self.backward_layer = forward, backward_layer
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = forward.return_sequences, forward.return_state
        self.stateful = False
        self._initial_weights = None if weights is None else list(weights)
        self.trainable = self._trainable  # trainable=False freezes both layers

    def wrapped(self):
        return [self.forward_layer, self.backward_layer]

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize(self.forward_layer),
                "backward_layer": serialize(self.backward_layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = deserialize(config.pop("layer"))
        backward = config.pop("backward_layer", None)
        backward = deserialize(backward) if backward is not None else None
        return cls(layer, backward_layer=backward, **deserialize(config))

    def build(self, input_shape):
        for layer in self.wrapped():
            if not layer.built:
                layer.build(input_shape)
        super().build(input_shape)
        if self._initial_weights is not None:  # Keras's `weights`: forward's, then backward's
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], out[1:]
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (2 * out[-1],)
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else out

    def call(self, x, ctx):
        y = self.forward_layer.call(x, ctx)
        y_rev = self.backward_layer.call(x, ctx)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]  # back to the input's time order
        if self.merge_mode == "concat":
            outs = [sg.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            outs = [y + y_rev]
        elif self.merge_mode == "ave":
            outs = [(y + y_rev) / 2.0]
        elif self.merge_mode == "mul":
            outs = [y * y_rev]
        else:
            outs = [y, y_rev]
        if self.return_state or self.merge_mode is None:
            return outs + states
        return outs[0]


class TimeDistributed(_Wrapper):
    """Keras's TimeDistributed: `layer` applied to each timestep of (batch, timesteps, ...)
    inputs, built for (batch, ...) and called once per timestep (Keras 3 loops over a static
    time axis the same way: a Dropout inside draws a new mask per timestep, a
    BatchNormalization normalizes each timestep over its batch)."""

    def __init__(self, layer, **kwargs):
        _checked_layer(layer, "layer", "TimeDistributed")
        super().__init__(**kwargs)
        self.layer = layer
        self.trainable = self._trainable  # trainable=False freezes the layer

    def wrapped(self):
        return [self.layer]

    def get_config(self):
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = deserialize(config.pop("layer"))
        return cls(layer, **deserialize(config))

    def build(self, input_shape):
        kind = f"TimeDistributed {self.name!r}"
        if len(input_shape) < 2:
            raise SymgraphError(f"{kind} takes inputs with a time axis, (None, timesteps, ...) "
                                f"(at least 3 dimensions), got {shape_text(input_shape)}")
        step_shape = tuple(input_shape[1:])
        if not self.layer.built:
            self.layer.build_for(step_shape)
        elif tuple(self.layer.input_shape) != step_shape:
            raise SymgraphError(f"{kind}: its layer {self.layer.name!r} was built for inputs "
                                f"{shape_text(self.layer.input_shape)}, but each timestep of "
                                f"{shape_text(input_shape)} is {shape_text(step_shape)}")
        if isinstance(self.layer.output_shape, list):
            raise SymgraphError(f"{kind}: its layer {self.layer.name!r} has several outputs; "
                                "TimeDistributed takes a layer with one")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.layer.output_shape)

    def call(self, x, ctx):
        outs = [run_call(self.layer, x[:, t], ctx) for t in range(x.shape[1])]
        return sg.concatenate([sg.expand_dims(o, 1) for o in outs], axis=1)
