"""Gradient checking against finite differences (PyTensor's verify_grad shape), for users too.

The output is projected on a fixed random tensor so one scalar cost exercises every output
element; reverse mode (`grad`) and forward mode (`jvp`) are both compared with central
differences in float64.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from symgraph.autodiff import grad, jvp
from symgraph.errors import SymgraphError
from symgraph.runtime import function
from symgraph.tensor import constant, placeholder
from symgraph.tensor import sum as sg_sum


def _numeric_grad(cost_fn: Callable, arrays: list[np.ndarray], eps: float) -> list[np.ndarray]:
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            plus = cost_fn(*arrays)
            a[idx] = old - eps
            minus = cost_fn(*arrays)
            a[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def verify_grad(fn: Callable, arrays: Sequence[np.ndarray], eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0,
                backend: str = "numpy", check_jvp: bool = True) -> None:
    """Raise SymgraphError unless grad (and jvp) of `fn` match finite differences at `arrays`.

    `fn` maps symbolic float64 tensors to one symbolic tensor; `arrays` are float64 points.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    xs = [placeholder(a.shape, "float64", name=f"x{i}") for i, a in enumerate(arrays)]
    out = fn(*xs)
    projection = constant(rng.standard_normal(tuple(out.shape)))
    cost = sg_sum(out * projection)
    cost_fn = function(xs, cost, backend=backend)
    grad_fn = function(xs, grad(cost, xs), backend=backend)
    numeric = _numeric_grad(lambda *a: float(cost_fn(*a)), arrays, eps)
    for i, (sym, num) in enumerate(zip(grad_fn(*arrays), numeric)):
        if not np.allclose(sym, num, rtol=rtol, atol=atol):
            err = np.max(np.abs(sym - num))
            raise SymgraphError(f"verify_grad: reverse-mode gradient of input {i} differs from "
                                f"finite differences by up to {err:.3g}\nsymbolic:\n{sym}\n"
                                f"numeric:\n{num}")
    if not check_jvp:
        return
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    ts = [placeholder(a.shape, "float64", name=f"t{i}") for i, a in enumerate(arrays)]
    jvp_fn = function(xs + ts, jvp(out, xs, ts), backend=backend)
    out_fn = function(xs, out, backend=backend)
    plus = out_fn(*[a + eps * t for a, t in zip(arrays, tangents)])
    minus = out_fn(*[a - eps * t for a, t in zip(arrays, tangents)])
    numeric_t = (plus - minus) / (2 * eps)
    sym_t = jvp_fn(*arrays, *tangents)
    if not np.allclose(sym_t, numeric_t, rtol=rtol, atol=atol * 10):
        err = np.max(np.abs(sym_t - numeric_t))
        raise SymgraphError(f"verify_grad: forward-mode tangent differs from finite differences "
                            f"by up to {err:.3g}")
