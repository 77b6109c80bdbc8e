"""symgraph's own GEMM kernel (native_gemm.py) against NumPy, called directly.

Both register tiles (AVX-512: 8 x 2 vectors; AVX2: 6 x 2) and both optimization levels are
built on this machine: every transpose, partial tiles at the bottom and right edges, several
slices of k (KC) and panels of rows (MC), leading dimensions wider than the block, and
accumulation into C."""

from __future__ import annotations

import itertools

import llvmlite.binding as llvm
import numpy as np
import pytest

from symgraph.backends.numba_cpu import llvmjit, native_gemm


def _kernel(dtype: str, avx512: bool, speed: int):
    features = llvm.get_host_cpu_features().flatten()
    if not avx512:
        features = features.replace("+avx512f", "-avx512f")
    return llvmjit.standalone_gemm(dtype, features, speed)


def _host_has_avx512() -> bool:
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


SHAPES = [(1, 1, 1), (7, 5, 3), (8, 32, 16), (13, 70, 257), (130, 33, 40), (24, 96, 600)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("avx512,speed", [(True, 1), (True, 3), (False, 1)])
def test_kernel_equals_numpy(dtype, avx512, speed):
    if avx512 and not _host_has_avx512():
        pytest.skip("this CPU has no AVX-512")
    run = _kernel(dtype, avx512, speed)
    rng = np.random.default_rng(0)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for (m, n, k), ta, tb, acc in itertools.product(SHAPES, (0, 1), (0, 1), (0, 1)):
        # operands inside wider arrays: leading dimensions larger than the block
        a_full = rng.standard_normal((k, m + 3) if ta else (m, k + 3)).astype(dtype)
        b_full = rng.standard_normal((n, k + 2) if tb else (k, n + 2)).astype(dtype)
        a = a_full[:, :m] if ta else a_full[:, :k]
        bm = b_full[:, :k] if tb else b_full[:, :n]
        c_full = rng.standard_normal((m, n + 5)).astype(dtype)
        before = c_full.copy()
        want = (a.T if ta else a).astype(np.float64) @ (bm.T if tb else bm).astype(np.float64)
        if acc:
            want += before[:, :n]
        run(ta, tb, m, n, k, a_full.ctypes.data, a_full.shape[1], b_full.ctypes.data,
            b_full.shape[1], c_full.ctypes.data, c_full.shape[1], acc)
        scale = max(1.0, float(np.abs(want).max()))
        err = float(np.abs(c_full[:, :n] - want).max()) / scale
        assert err < tol, (m, n, k, ta, tb, acc, err)
        np.testing.assert_array_equal(c_full[:, n:], before[:, n:])  # nothing outside C


def test_tiles_follow_the_vector_registers():
    assert native_gemm.tile("float32", "+avx512f,+avx2") == (8, 32, 16)
    assert native_gemm.tile("float64", "+avx512f,+avx2") == (8, 16, 8)
    assert native_gemm.tile("float32", "-avx512f,+avx2") == (6, 16, 8)
    assert native_gemm.tile("float64", "+avx2") == (6, 8, 4)


def _mlp_step(width: int):
    """A two-layer MLP's loss and gradients (a program of several hundred IR instructions)."""
    import symgraph as sg

    rng = np.random.default_rng(width)
    x = sg.placeholder((16, 12), name="x")
    w1 = sg.variable(rng.standard_normal((12, width)).astype(np.float32), name="w1")
    w2 = sg.variable(rng.standard_normal((width, 3)).astype(np.float32), name="w2")
    loss = sg.mean(sg.tanh(sg.relu(x @ w1) @ w2) ** 2)
    xs = rng.standard_normal((16, 12)).astype(np.float32)
    return [x], [loss, *sg.grad(loss, [w1, w2])], xs


@pytest.mark.parametrize("helper_fails", [False, True])
def test_large_programs_compile_in_two_processes(tmp_path, monkeypatch, helper_fails):
    """A program above the size threshold is compiled as two modules at once, one in a
    helper process, and both objects are cached and linked; when the helper fails, the
    second half is compiled in this process."""
    import symgraph as sg

    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SYMGRAPH_NATIVE", "native")
    monkeypatch.setattr(llvmjit, "PARALLEL_COMPILE_INSTRUCTIONS", 50)
    monkeypatch.setattr(llvmjit, "COMPILE_PROCESSES", 2)
    calls = []
    real_run = llvmjit.subprocess.run

    def run(cmd, **kwargs):
        calls.append(cmd)
        if helper_fails:
            raise OSError("no helper")
        return real_run(cmd, **kwargs)
    monkeypatch.setattr(llvmjit.subprocess, "run", run)
    inputs, outputs, xs = _mlp_step(37 if helper_fails else 29)  # a program new to this process
    got = sg.function(inputs, outputs, backend="numba")(xs)
    want = sg.function(inputs, outputs, backend="numpy")(xs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 and calls[0][1].endswith("llvm_passes.py")
    payloads = [open(p, "rb").read() for p in (tmp_path / "native").glob("[!g]*.o")]
    assert len(payloads) == 1 and llvmjit.PAIR in payloads[0][:200]
