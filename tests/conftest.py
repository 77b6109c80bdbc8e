"""Test-wide setup: the `cudasim` marker runs only in the simulator process."""

import os

import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pytest_collection_modifyitems(config, items):
    skip_sim = pytest.mark.skip(reason="needs NUMBA_ENABLE_CUDASIM=1 (its own pytest process)")
    skip_real = pytest.mark.skip(reason="not run inside the CUDA simulator process")
    for item in items:
        is_sim = "cudasim" in item.keywords
        if is_sim and not SIMULATOR:
            item.add_marker(skip_sim)
        elif SIMULATOR and not is_sim:
            item.add_marker(skip_real)
