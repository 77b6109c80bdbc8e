"""Model tests run BLAS single-threaded: on a busy 2-core machine a multi-threaded OpenBLAS
spins and small matmuls get ~100x slower (0.5 ms -> 58 ms for 64x784x128, measured)."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield
