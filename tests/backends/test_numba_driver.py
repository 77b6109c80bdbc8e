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


def test_results_and_temporaries_are_aligned_and_reused_safely(monkeypatch):
    """Result arrays and the workspace of temporaries start on 64 bytes; a result whose view
    the caller still holds is never recycled, and state is adopted without a copy."""
    monkeypatch.setenv("SYMGRAPH_INPLACE", "0")  # the result pool (in place: test_inplace.py)
    x = sg.placeholder(("n", 64), name="x")
    w = sg.variable(np.ones((64, 64), np.float32), name="w")
    h = sg.relu(sg.matmul(x, w))  # a temporary between two kernels
    out = sg.exp(h - sg.max(h, axis=1, keepdims=True))
    fn = sg.function([x], out, updates={w: w * 0.5}, backend="numba")
    compiled = fn._run.compiled
    a = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    first = fn(a)
    held = first[2:]  # the caller keeps a view of the first result only
    expected = held.copy()
    del first
    for _ in range(3):
        got = fn(a)
        assert got.ctypes.data % 64 == 0
    np.testing.assert_array_equal(held, expected)  # its memory was not reused
    assert w._value.ctypes.data % 64 == 0
    assert w._value.base is not None  # an aligned view, adopted as state without a copy
    assert compiled.pool[1][-1] is w._value or any(p is w._value for p in compiled.pool[1])
    temps = compiled.temp_shapes
    assert temps, "the graph has temporaries"
    (key, free), = compiled.workspaces.items()
    assert key == (8,) and len(free) == 1  # one workspace, reused call after call
    ws = free[0]
    fn(a)
    assert compiled.workspaces[(8,)][0] is ws
    assert all(t.ctypes.data % 64 == 0 for t in ws)
    for n in (3, 5, 7):  # workspaces are kept for the last two batch sizes only
        fn(a[:n])
    assert list(compiled.workspaces) == [(5,), (7,)]


def test_a_failing_call_gives_its_workspace_back():
    x = sg.placeholder(("n", 2), name="x")
    idx = sg.placeholder((1,), "int64", name="idx")
    b = sg.variable(np.zeros((3, 2), np.float32), name="b")
    h = sg.exp(x) + sg.take(b, idx)  # take out of range raises inside the kernel
    fn = sg.function([x, idx], sg.sum(h * sg.max(h)), backend="numba")
    compiled = fn._run.compiled
    a = np.ones((3, 2), np.float32)
    assert np.isfinite(fn(a, np.array([1])))
    assert compiled.temp_shapes
    with pytest.raises(SymgraphError):
        fn(a, np.array([7]))
    assert [len(v) for v in compiled.workspaces.values()] == [1]
    assert np.isfinite(fn(a, np.array([2])))


def test_workspace_evicted_during_a_call_is_dropped_not_an_error():
    """Calls in other threads with other batch sizes may evict a running call's dims."""
    x = sg.placeholder(("n", 4), name="x")
    h = sg.exp(x)
    fn = sg.function([x], sg.sum(h * sg.sum(h)), backend="numba")
    compiled = fn._run.compiled
    inner = compiled._call

    def evicting(*args):
        compiled.workspaces.clear()  # what three other batch sizes meanwhile would do
        return inner(*args)
    compiled._call = evicting
    a = np.ones((2, 4), np.float32)
    assert fn(a) == pytest.approx(float(np.sum(np.exp(a)) ** 2))
    assert compiled.workspaces == {}
