"""Weight constraints: projections applied right after each optimizer update (in the graph)."""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable

EPSILON = 1e-7


class Constraint(Serializable):
    """`constraint(new_weight_node) -> projected node`."""

    def __call__(self, w):
        return w


class MaxNorm(Constraint):
    """Keras MaxNorm: w * clip(||w||, 0, max_value) / (eps + ||w||), norms along `axis`.

    For a Dense kernel (inputs, units) the default axis=0 bounds each unit's incoming weights.
    """

    def __init__(self, max_value: float = 2.0, axis: int = 0):
        self.max_value, self.axis = float(max_value), axis

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}

    def __call__(self, w):
        norms = sg.sqrt(sg.sum(sg.square(w), axis=self.axis, keepdims=True))
        desired = sg.clip(norms, 0.0, self.max_value)
        return w * (desired / (norms + EPSILON))

    def __repr__(self):
        return f"MaxNorm(max_value={self.max_value}, axis={self.axis})"


class NonNeg(Constraint):
    def __call__(self, w):
        return sg.maximum(w, 0.0)


max_norm = MaxNorm
non_neg = NonNeg


def get(identifier):
    if identifier is None or isinstance(identifier, Constraint) or callable(identifier):
        return identifier
    names = {"max_norm": MaxNorm, "maxnorm": MaxNorm, "non_neg": NonNeg}
    if isinstance(identifier, str) and identifier.lower() in names:
        return names[identifier.lower()]()
    raise SymgraphError(f"unknown constraint {identifier!r}")
