"""The Numba backend's per-call driver: result shapes, aliases and the runtime's fast path."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError


def _both(inputs, outputs, args, updates_of=None):
    got = []
    for backend in ("numpy", "numba"):
        upd = updates_of() if updates_of else None
        fn = sg.function(inputs, outputs, updates=upd, backend=backend)
        got.append(fn(*args))
    return got


@pytest.mark.parametrize("batch", [None, "batch"])
def test_reshaped_results_come_back_in_the_graph_shapes(batch):
    rows = batch or 4
    x = sg.placeholder((rows, 1), name="x")
    y = sg.exp(x)
    outs = [sg.reshape(y, (1, -1)) if batch is None else sg.transpose(y), y, x,
            sg.reshape(sg.sum(y), (1, 1))]
    a = np.arange(4, dtype=np.float32).reshape(4, 1) / 4
    ref, got = _both([x], outs, [a])
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-6)


def test_fast_path_and_checking_path_agree_on_inputs():
    x = sg.placeholder(("n", 3), name="x")
    w = sg.variable(np.ones(3, np.float32), name="w")
    fn = sg.function([x], sg.sum(x * w), updates={w: w * 0.5}, backend="numba")
    a = np.ones((2, 3), np.float32)
    assert fn(a) == pytest.approx(6.0)
    assert fn(a.astype(np.float64).astype(np.float16)) == pytest.approx(3.0)  # cast, slow path
    assert fn(a[:, ::1].T.copy().T) == pytest.approx(1.5)  # non-contiguous view
    assert fn([[1, 1, 1]]) == pytest.approx(0.375)  # a list
    with pytest.raises(SymgraphError, match="'x'.*shape"):
        fn(np.ones((2, 4), np.float32))
    with pytest.raises(SymgraphError, match="rank"):
        fn(np.ones(3, np.float32))
    np.testing.assert_allclose(w.value, np.full(3, 0.0625, np.float32))  # errors changed nothing


def test_variables_in_any_memory_order_are_read_as_their_values():
    """Native entries read each array's data pointer: a variable holding a Fortran-ordered
    or strided array (set by the user) must be passed as a C copy, never as raw memory."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 3)).astype(np.float32)
    x = sg.placeholder(("n", 4), name="x")
    w = sg.variable(np.asfortranarray(base), name="w")
    b = sg.variable(np.zeros(3, np.float32), name="b")
    fn = sg.function([x], sg.matmul(x, w) + b, backend="numba")
    a = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(fn(a), a @ base, rtol=1e-5, atol=1e-6)
    w.value = np.asfortranarray(2 * base)
    b._assign(np.arange(6, dtype=np.float32)[::2])  # a strided state array
    np.testing.assert_allclose(fn(a), a @ (2 * base) + np.arange(0, 6, 2), rtol=1e-5, atol=1e-6)
