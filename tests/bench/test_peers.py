"""PyTorch eager and JAX jit peers do the same work as the hand-written NumPy steps.

Skipped where the peer is not installed (they are never project dependencies). Dropout draws
differ between systems, so M1 is compared with rates 0; M2 has no randomness. Each peer runs in
its own process (this file run as a script): importing torch or JAX loads extra thread pools
(libgomp, MKL, XLA's) that must not leak into the rest of the test session.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from symgraph.bench import peers
from symgraph.bench import workloads as W

M1_TINY = (12, 16, 16, 5)
M2_TINY = (12, 16, 8, 5)


def _losses(step, sync, steps=3, sizes=M1_TINY):
    out = []
    for k in range(steps):
        x, y = W.make_batch(6, sizes[0], sizes[-1], seed=k)
        out.append(sync(step(x, y)))
    return np.array(out)


def _reference(build, numpy_step, sizes, **kwargs):
    state = W.state_arrays(build(sizes=sizes))
    ref = numpy_step({k: v.copy() for k, v in state.items()}, **kwargs)
    return state, _losses(ref, float, sizes=sizes)


def check_torch():
    state, want = _reference(W.build_m1, W.NumpyM1, M1_TINY, rates=(0.0, 0.0))
    got = _losses(*peers.torch_m1(state, threads=1, rates=(0.0, 0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    state, want = _reference(W.build_m2, W.NumpyM2, M2_TINY)
    got = _losses(*peers.torch_m2(state, threads=1), sizes=M2_TINY)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def check_jax():
    peers.configure_jax()
    state, want = _reference(W.build_m1, W.NumpyM1, M1_TINY, rates=(0.0, 0.0))
    step, sync = peers.jax_m1(state, rates=(0.0, 0.0))
    np.testing.assert_allclose(_losses(step, sync), want, rtol=1e-5)
    state, want = _reference(W.build_m2, W.NumpyM2, M2_TINY)
    step, sync = peers.jax_m2(state)
    np.testing.assert_allclose(_losses(step, sync, sizes=M2_TINY), want, rtol=1e-4)


@pytest.mark.parametrize("peer", ["torch", "jax"])
def test_peer_steps_match_numpy(peer):
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed (optional peer)")
    proc = subprocess.run([sys.executable, __file__, peer], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


if __name__ == "__main__":
    {"torch": check_torch, "jax": check_jax}[sys.argv[1]]()
