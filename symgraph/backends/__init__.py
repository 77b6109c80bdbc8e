"""Backends: the NumPy reference, the Numba CPU code generator and the Numba CUDA generator."""

from __future__ import annotations

from symgraph.errors import SymgraphError

BACKENDS = ("numpy", "numba", "cuda")


def get_backend(name: str):
    """The backend object for `name` (imported lazily: Numba and CUDA are heavy)."""
    if name == "numpy":
        from symgraph.backends.numpy_ref import NumpyBackend

        return NumpyBackend()
    if name == "numba":
        from symgraph.backends.numba_cpu import NumbaBackend

        return NumbaBackend()
    if name == "cuda":
        from symgraph.backends.cuda import CudaBackend

        return CudaBackend()
    raise SymgraphError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
