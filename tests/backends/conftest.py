"""The Numba backend's two compilation paths (native.py's LLVM IR, and Numba itself)."""

import pytest


@pytest.fixture(params=["native", "numba"])
def numba_path(request, monkeypatch):
    """Run a test once per path; `native` is strict (no silent fallback to Numba)."""
    monkeypatch.setenv("SYMGRAPH_NATIVE", request.param)
    return request.param
