"""Weight penalties added to the training loss, scaled as Keras scales them (L2 has no 1/2)."""

from __future__ import annotations

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn.serialization import Serializable


class Regularizer(Serializable):
    """`penalty(weight_node) -> scalar node` added to the loss."""

    def __call__(self, w):
        raise NotImplementedError


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __call__(self, w):
        total = None
        if self.l1:
            total = sg.sum(sg.abs(w)) * self.l1
        if self.l2:
            term = sg.sum(sg.square(w)) * self.l2
            total = term if total is None else total + term
        return total if total is not None else sg.sum(w) * 0.0

    def __repr__(self):
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def L1(l1: float = 0.01) -> L1L2:  # noqa: N802  (Keras's class names)
    return L1L2(l1=l1)


def L2(l2: float = 0.01) -> L1L2:  # noqa: N802
    return L1L2(l2=l2)


l1, l2 = L1, L2


def l1_l2(l1: float = 0.0, l2: float = 0.0) -> L1L2:  # noqa: F811
    """Keras 3 exports L1L2 as `l1_l2` too: both factors default to 0 (Keras 2's helper used
    0.01), so l1_l2(l1=1e-4) adds no L2 term."""
    return L1L2(l1=l1, l2=l2)


def get(identifier):
    if identifier is None or isinstance(identifier, Regularizer) or callable(identifier):
        return identifier
    # the string "l1_l2" keeps 0.01 for both, as Keras's L1L2 docstring states
    names = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01)}
    if isinstance(identifier, str) and identifier.lower() in names:
        return names[identifier.lower()]()
    raise SymgraphError(f"unknown regularizer {identifier!r}; use l1, l2, l1_l2 or a callable")
