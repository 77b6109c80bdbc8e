"""Activation functions by Keras name, built from the DSL's composites."""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import serialize as _serialize


def linear(x):
    return x


def exponential(x):
    return sg.exp(x)


_BY_NAME = {
    "linear": linear, "relu": sg.relu, "sigmoid": sg.sigmoid, "tanh": sg.tanh,
    "softmax": sg.softmax, "log_softmax": sg.log_softmax, "elu": sg.elu, "selu": sg.selu,
    "softplus": sg.softplus, "relu6": sg.relu6, "leaky_relu": sg.leaky_relu,
    "hard_sigmoid": sg.hard_sigmoid, "exponential": exponential,
}
RELU_LIKE = ("relu", "relu6")


def get(identifier):
    """A function node -> node from a Keras name, None ("linear") or a callable."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise SymgraphError(f"unknown activation {identifier!r}; known: "
                                f"{', '.join(sorted(_BY_NAME))}")
        return _BY_NAME[identifier]
    if callable(identifier):
        return identifier
    raise SymgraphError(f"cannot use {identifier!r} as an activation")


def name_of(identifier) -> str:
    """The Keras name of an activation ('custom' for other callables)."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        return identifier
    for name, fn in _BY_NAME.items():
        if fn is identifier:
            return name
    return getattr(identifier, "__name__", "custom")


def serialize(identifier):
    """An activation for a config: its Keras name, or a custom function's entry."""
    if identifier is None or isinstance(identifier, str):
        return name_of(identifier)
    known = name_of(identifier)
    return known if _BY_NAME.get(known) is identifier else _serialize(identifier)
