"""Kernels whose bodies are equal up to their buffers compile once (shared_kernels.py):
an unrolled recurrent step's kernels are one function each, called once per timestep, with
results bit-identical to every kernel pasted into `entry` (SYMGRAPH_SHARED_KERNELS=0)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symgraph as sg
from symgraph.backends.numba_cpu import llvmjit
from symgraph.errors import SymgraphError


def _rnn_step(steps: int, dtype: str = "float32"):
    """An Elman RNN unrolled over `steps` timesteps, its loss and SGD updates."""
    rng = np.random.default_rng(0)
    x = sg.placeholder(("batch", steps, 4), dtype, name="x")
    w = sg.variable((rng.standard_normal((4, 8)) * 0.5).astype(dtype), name="W")
    u = sg.variable((rng.standard_normal((8, 8)) * 0.3).astype(dtype), name="U")
    b = sg.variable(np.zeros(8, dtype), name="b")
    h = None
    for t in range(steps):
        x_t = sg.reshape(x[:, t:t + 1, :], ("batch", 4))
        z = x_t @ w + b if h is None else x_t @ w + h @ u + b
        h = sg.tanh(z)
    loss = sg.mean(h * h)
    grads = sg.grad(loss, [w, u, b])
    return x, loss, {v: v - 0.1 * g for v, g in zip((w, u, b), grads)}, (w, u, b)


def _train(steps: int, share: bool, monkeypatch, dtype="float32", backend="numba", calls=3):
    monkeypatch.setenv("SYMGRAPH_SHARED_KERNELS", "1" if share else "0")
    x, loss, updates, state = _rnn_step(steps, dtype)
    fn = sg.function([x], loss, updates=updates, backend=backend)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(calls):
        out.append(np.asarray(fn(rng.standard_normal((5, steps, 4)).astype(dtype))))
    return fn, out + [v.value for v in state]


def _distinct_bodies(source: str) -> tuple[int, int]:
    """(kernel bodies pasted into entry, shared kernel functions) in a generated module."""
    entry = source[source.index("\ndef entry("):]
    return len(re.findall(r"^    # \w+: ", entry, re.M)), len(re.findall(r"^def shared\d+",
                                                                        source, re.M))


def test_repeated_timesteps_compile_to_fewer_distinct_kernels(monkeypatch):
    counts = {}
    for steps in (4, 8):
        fn, _ = _train(steps, True, monkeypatch, calls=1)
        kernels = len(fn._run.program.kernels)
        inline, shared = _distinct_bodies(fn._run.source)
        calls = len(re.findall(r"^    shared\d+\(", fn._run.source, re.M))
        assert shared >= 3 and inline + calls == kernels
        counts[steps] = (kernels, inline + shared)
    (k4, d4), (k8, d8) = counts[4], counts[8]
    assert k8 - k4 >= 4 * 4  # a timestep adds several kernels...
    assert d8 - d4 <= 4  # ...but at most one new body (its input's slice, at its own offset)
    unshared, _ = _train(8, False, monkeypatch, calls=1)
    assert _distinct_bodies(unshared._run.source) == (k8, 0)


def test_native_module_defines_each_shared_body_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", str(tmp_path))  # a cold compile: the IR is built
    monkeypatch.setenv("SYMGRAPH_NATIVE", "native")
    texts = []
    compile_object = llvmjit.compile_object

    def capture(module, *args, **kwargs):
        texts.append(str(module))
        return compile_object(module, *args, **kwargs)
    monkeypatch.setattr(llvmjit, "compile_object", capture)
    fn, _ = _train(6, True, monkeypatch, calls=1)
    ir = "\n".join(texts)
    _, shared = _distinct_bodies(fn._run.source)
    defined = re.findall(r'^define internal i32 @"?[\w.]*_(shared\d+)"?\(', ir, re.M)
    assert sorted(defined) == sorted(f"shared{i}" for i in range(shared))
    calls = re.findall(r'call i32 @"?[\w.]*_shared\d+"?\(', ir)
    assert len(calls) == len(re.findall(r"^    shared\d+\(", fn._run.source, re.M))
    assert re.search(r"noinline", ir)
    # a call is followed by a check of its return code only where the function may fail (an
    # allocation, an index check): here the reductions' accumulators, not the matmuls
    checks = len(re.findall(r"^kernel_failed", ir, re.M))
    assert 0 < checks < len(calls)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shared_kernels_are_bit_identical_to_pasted_ones(numba_path, dtype, monkeypatch):
    _, shared = _train(5, True, monkeypatch, dtype)
    _, pasted = _train(5, False, monkeypatch, dtype)
    _, ref = _train(5, True, monkeypatch, dtype, backend="numpy")
    for s, p, r in zip(shared, pasted, ref):
        assert s.dtype == p.dtype and np.array_equal(s, p)
        np.testing.assert_allclose(s, r, rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-6 if dtype == "float32" else 1e-12)


def test_python_driver_calls_shared_functions_too(numba_path, monkeypatch):
    """The thread-pool driver calls one function per distinct body as well."""
    _, entry = _train(4, True, monkeypatch)
    monkeypatch.setenv("SYMGRAPH_NUMBA_DRIVER", "1")
    fn, shared = _train(4, True, monkeypatch)
    names = fn._run.compiled.kernel_names
    assert len(names) == len(fn._run.program.kernels)
    assert len(set(names)) < len(names) - 4 and any(n.startswith("shared") for n in names)
    _, separate = _train(4, False, monkeypatch)
    for s, p, e in zip(shared, separate, entry):
        assert np.array_equal(s, p)
        np.testing.assert_allclose(s, e, rtol=1e-5, atol=1e-7)


def test_same_text_for_two_dtypes_is_two_functions(numba_path):
    """A copy kernel reads the same for float32 and float64 buffers: the key has the dtypes."""
    xs = [sg.placeholder(("n", 3), dt, name=f"x{i}")
          for i, dt in enumerate(["float32", "float32", "float64", "float64"])]
    fn = sg.function(xs, [sg.transpose(x) for x in xs], backend="numba")
    assert _distinct_bodies(fn._run.source) == (0, 2)
    arrays = [np.arange(6, dtype=dt).reshape(2, 3) * (i + 1)
              for i, dt in enumerate(["float32", "float32", "float64", "float64"])]
    for a, got in zip(arrays, fn(*arrays)):
        assert got.dtype == a.dtype and np.array_equal(got, a.T)


def test_an_index_error_in_a_shared_kernel_names_the_node(numba_path):
    table = sg.placeholder((5, 3), "float32", name="table")
    i, j = (sg.placeholder(("n",), "int64", name=n) for n in "ij")
    fn = sg.function([table, i, j], [sg.take(table, i) * 2.0, sg.take(table, j) * 3.0],
                     backend="numba")
    assert _distinct_bodies(fn._run.source)[1] == 1
    t = np.arange(15, dtype=np.float32).reshape(5, 3)
    a, b = fn(t, np.array([4, 0]), np.array([-1, 2]))
    assert np.array_equal(a, t[[4, 0]] * 2) and np.array_equal(b, t[[-1, 2]] * 3)
    with pytest.raises(SymgraphError, match="take"):
        fn(t, np.array([0, 1]), np.array([1, 5]))  # the second call's kernel fails


OPS = ["tanh", "sigmoid", "exp", "square", "relu", "softmax", "sum", "matmul", "center"]


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(OPS), min_size=2, max_size=6), st.integers(2, 4),
       st.integers(0, 2**16))
def test_random_chains_repeated_share_kernels_and_match(numba_path, ops, copies, seed):
    """One random chain of ops applied to `copies` inputs (shared weights): kernels repeat.
    Shared and pasted bodies give bit-identical results, both close to the NumPy reference."""
    w = sg.placeholder((3, 3), "float64", name="w")
    xs = [sg.placeholder(("n", 3), "float64", name=f"x{i}") for i in range(copies)]
    outs = []
    for x in xs:
        h = x
        for op in ops:
            if op == "matmul":
                h = h @ w
            elif op == "sum":
                h = h + sg.sum(h, 1, keepdims=True)
            elif op == "center":
                h = h - sg.mean(h, 0)
            elif op == "softmax":
                h = sg.softmax(h)
            else:
                h = getattr(sg, op)(h)
        outs.append(h)
    results = outs + sg.grad(sum(sg.sum(o * 0.7) for o in outs), [w, *xs])
    rng = np.random.default_rng(seed)
    feeds = [rng.standard_normal((3, 3))] + [rng.standard_normal((4, 3)) for _ in xs]
    got = {}
    with pytest.MonkeyPatch.context() as mp:
        for share in (True, False):
            mp.setenv("SYMGRAPH_SHARED_KERNELS", "1" if share else "0")
            fn = sg.function([w, *xs], results, backend="numba")
            if share:
                assert _distinct_bodies(fn._run.source)[1] >= 1
            got[share] = fn(*feeds)
    ref = sg.function([w, *xs], results, backend="numpy")(*feeds)
    for s, p, r in zip(got[True], got[False], ref):
        assert np.array_equal(s, p)
        np.testing.assert_allclose(s, r, rtol=1e-9, atol=1e-11)
