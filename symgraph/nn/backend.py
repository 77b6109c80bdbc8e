"""The one place that chooses the backend a model compiles for."""

from __future__ import annotations

import numpy as np

from symgraph.backends import BACKENDS
from symgraph.errors import SymgraphError

_auto: dict[str, str] = {}


def _numba_works() -> bool:
    """True when the Numba CPU backend imports and computes a tiny graph correctly."""
    try:
        import symgraph as sg
        import symgraph.backends.numba_cpu  # noqa: F401

        x = sg.placeholder(("batch", 3), name="probe_x")
        w = sg.variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="probe_w")
        fn = sg.function([x], sg.relu(x @ w - 3.0), backend="numba")
        got = fn(np.ones((2, 3), np.float32))
        return bool(np.allclose(got, np.maximum(np.ones((2, 3)) @ w.value - 3.0, 0)))
    except Exception:  # any failure (missing module, compile error) means: use NumPy
        return False


def choose_backend(requested: str | None = None) -> str:
    """`requested` when given; else "numba" when the Numba CPU backend works, else "numpy"."""
    if requested not in (None, "auto"):
        if requested not in BACKENDS:
            raise SymgraphError(f"unknown backend {requested!r}; choose auto or one of "
                                f"{', '.join(BACKENDS)}")
        return requested
    if "auto" not in _auto:
        _auto["auto"] = "numba" if _numba_works() else "numpy"
    return _auto["auto"]
