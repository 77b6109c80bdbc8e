"""The hand-written NumPy M1/M2 steps equal the graph steps (numpy and numba backends) on tiny
sizes."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.bench import workloads as W


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("build, numpy_step, sizes", [
    (W.build_m1, W.NumpyM1, (12, 16, 16, 5)),
    (W.build_m2, W.NumpyM2, (12, 16, 8, 5)),
])
def test_numpy_step_equals_graph_step(build, numpy_step, sizes, backend):
    # numba: Adam's step counter update is written by a matmul epilogue there (it went
    # unwritten until the seventh session); its slots and weights are written in place
    graph = build(sizes=sizes)
    step = sg.function(*graph, backend=backend)
    state = W.state_arrays(graph)
    kwargs = {"masks": "hash"} if numpy_step is W.NumpyM1 else {}
    by_hand = numpy_step(state, **kwargs)
    for k in range(3):  # several steps: momentum/Adam slots, step counter and masks all advance
        x, y = W.make_batch(6, sizes[0], sizes[-1], seed=k)
        np.testing.assert_allclose(step(x, y), by_hand(x, y), rtol=2e-5)
    for name, var in graph.state.items():
        np.testing.assert_allclose(var.value, state[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert int(state["step"]) == 3


def test_graph_step_unpacks_and_names_state():
    inputs, loss, updates = W.build_m2(sizes=(4, 6, 3))
    assert [p.name for p in inputs] == ["x", "y"] and loss.ndim == 0
    names = {v.name for v in updates}
    assert {"W0", "gamma0", "m_W0", "v_W0", "moving_mean0", "step"} <= names


def test_dropout_masks_differ_per_step_and_hide_the_rate():
    graph = W.build_m1(sizes=(64, 64, 4))
    state = W.state_arrays(graph)
    by_hand = W.NumpyM1(state, masks="hash")
    x, y = W.make_batch(32, 64, 4)
    h1 = by_hand._dropout(x, 0)[1]
    state["step"] = state["step"] + 1
    h2 = by_hand._dropout(x, 0)[1]
    assert not np.array_equal(h1, h2)
    assert abs(h1.mean() - 0.8) < 0.05  # keeps 1 - rate of the input


def test_matmul_flops_counts_forward_and_backward_gemms():
    # M1 per the notes: 2.03 GFLOP per step (no input gradient for the first layer)
    assert W.matmul_flops(W.M1_SIZES, 128) == pytest.approx(2.03e9, rel=5e-3)
    assert W.matmul_flops((3, 5), 2) == 2 * (2 * 2 * 3 * 5)


def test_gemm_only_step_does_exactly_the_counted_gemms():
    step = W.GemmOnly((6, 5, 4, 3), batch=2)
    step()
    flops = sum(2 * a.shape[0] * a.shape[1] * w.shape[1] * (2 if dx is None else 3)
                for a, w, _, (_, _, dx) in step.layers)
    assert flops == W.matmul_flops((6, 5, 4, 3), 2)
    a, w, d, (fwd, dw, _) = step.layers[0]
    np.testing.assert_allclose(fwd, a @ w, rtol=1e-5)
    np.testing.assert_allclose(dw, a.T @ d, rtol=1e-5)


_GEMM_ONLY_MKL = """
import numpy as np
from symgraph.bench import workloads as W
step = W.GemmOnly((6, 5, 4, 3), batch=2, blas="mkl")
step()
for a, w, d, (fwd, dw, dx) in step.layers:
    np.testing.assert_allclose(fwd, a @ w, rtol=1e-5)
    np.testing.assert_allclose(dw, a.T @ d, rtol=1e-5)
    if dx is not None:
        np.testing.assert_allclose(dx, d @ w.T, rtol=1e-5)
print("ok")
"""


def test_gemm_only_through_mkl_computes_the_same_products():
    import os
    import subprocess
    import sys

    from symgraph.backends.numba_cpu import blas

    if not blas._find_mkl():
        pytest.skip("MKL is not installed")
    env = {**os.environ, "SYMGRAPH_BLAS": "mkl"}  # the bench worker's setting
    proc = subprocess.run([sys.executable, "-c", _GEMM_ONLY_MKL], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
