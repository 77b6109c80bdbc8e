"""Suite `kernels`: single compiled kernels per backend against unfused NumPy.

Each kernel is a small graph (built with the sg DSL, so it goes through the same passes as a
training step) plus the NumPy a user would write for it, one op per call. Every backend that
imports is measured ("numpy" always; "numba" once symgraph.backends.numba_cpu exists), and each
result is also given as GFLOP/s, GB/s and a fraction of the machine's roof (roofline.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import symgraph as sg
from symgraph.bench import roofline as R
from symgraph.bench.timing import measure, pinned_blas
from symgraph.bench.workloads import _softmax_ce

CHAIN_CONSTANTS = (0.999, 0.001, -4.0, 4.0)  # mul, add, maximum, minimum: values stay bounded


@dataclass
class Kernel:
    """A benchmark kernel: graph builder, argument maker, the unfused NumPy, its cost."""

    name: str
    params: dict
    graph: Callable[[], tuple]  # -> (inputs, outputs, updates)
    args: Callable[[], list]
    numpy: Callable[..., object]
    cost: R.Cost


def _chain_ops(y, k: int, lib):
    """k elementwise ops cycling mul, add, maximum, minimum (DSL or NumPy: same formula)."""
    a, b, lo, hi = CHAIN_CONSTANTS
    for i in range(k):
        op = i % 4
        if op == 0:
            y = y * np.float32(a)
        elif op == 1:
            y = y + np.float32(b)
        elif op == 2:
            y = lib.maximum(y, np.float32(lo))
        else:
            y = lib.minimum(y, np.float32(hi))
    return y


def _rng():
    return np.random.default_rng(0)


def chain_kernel(n: int, k: int) -> Kernel:
    def graph():
        x = sg.placeholder((n,), name="x")
        return [x], _chain_ops(x, k, sg), None

    return Kernel(f"elementwise chain k={k}", {"n": n, "k": k}, graph,
                  lambda: [_rng().random(n, dtype=np.float32)],
                  lambda x: _chain_ops(x, k, np), R.elementwise_chain(n, k))


def reduce_kernel(rows: int, cols: int, axis: int) -> Kernel:
    def graph():
        x = sg.placeholder((rows, cols), name="x")
        return [x], sg.sum(x, axis=axis), None

    out = rows if axis == 1 else cols
    return Kernel(f"sum axis={axis}", {"rows": rows, "cols": cols}, graph,
                  lambda: [_rng().random((rows, cols), dtype=np.float32)],
                  lambda x: x.sum(axis=axis), R.reduction(rows * cols, out))


def matmul_kernel(m: int, k: int, n: int) -> Kernel:
    def graph():
        a = sg.placeholder((m, k), name="a")
        w = sg.variable(_rng().standard_normal((k, n)).astype(np.float32), name="w")
        b = sg.variable(np.zeros(n, np.float32), name="b")
        return [a], sg.relu(a @ w + b), None

    w_np = _rng().standard_normal((k, n)).astype(np.float32)
    b_np = np.zeros(n, np.float32)
    return Kernel("matmul+bias+relu", {"m": m, "k": k, "n": n}, graph,
                  lambda: [_rng().random((m, k), dtype=np.float32)],
                  lambda a: np.maximum(a @ w_np + b_np, np.float32(0)),
                  R.matmul(m, n, k, bias=True, activation=True))


def softmax_ce_kernel(batch: int, classes: int) -> Kernel:
    def graph():
        logits = sg.placeholder((batch, classes), name="logits")
        labels = sg.placeholder((batch,), "int32", name="labels")
        loss = sg.mean(sg.sparse_softmax_cross_entropy(logits, labels))
        return [logits, labels], [loss, sg.grad(loss, logits)], None

    def args():
        rng = _rng()
        return [rng.standard_normal((batch, classes)).astype(np.float32),
                rng.integers(0, classes, batch).astype(np.int32)]

    return Kernel("softmax CE fwd+bwd", {"batch": batch, "classes": classes}, graph, args,
                  _softmax_ce, R.softmax_cross_entropy(batch, classes))


def _numpy_batch_norm(x, g, gamma, beta, eps=1e-3):
    mu = x.mean(axis=0)
    d = x - mu
    inv = np.float32(1.0) / np.sqrt((d * d).mean(axis=0) + np.float32(eps))
    xhat = d * inv
    y = xhat * gamma + beta
    dxhat = g * gamma
    dx = inv * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    return y, dx, (g * xhat).sum(axis=0), g.sum(axis=0)


def batch_norm_kernel(batch: int, features: int) -> Kernel:
    def graph():
        x = sg.placeholder((batch, features), name="x")
        upstream = sg.placeholder((batch, features), name="upstream")
        gamma = sg.variable(np.ones(features, np.float32), name="gamma")
        beta = sg.variable(np.zeros(features, np.float32), name="beta")
        y = sg.batch_norm(x, gamma, beta)
        dx, dgamma, dbeta = sg.grad(sg.sum(y * upstream), [x, gamma, beta])
        return [x, upstream], [y, dx, dgamma, dbeta], None

    gamma, beta = np.ones(features, np.float32), np.zeros(features, np.float32)

    def args():
        rng = _rng()
        return [rng.standard_normal((batch, features)).astype(np.float32),
                rng.standard_normal((batch, features)).astype(np.float32)]

    return Kernel("batch norm fwd+bwd", {"batch": batch, "features": features}, graph, args,
                  lambda x, g: _numpy_batch_norm(x, g, gamma, beta),
                  R.batch_norm(batch, features))


def adam_kernel(n: int, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7) -> Kernel:
    alpha = np.float32(lr * np.sqrt(1 - beta2) / (1 - beta1))  # step 1: a constant here

    def graph():
        g = sg.placeholder((n,), name="g")
        w = sg.variable(np.ones(n, np.float32), name="w")
        m = sg.variable(np.zeros(n, np.float32), name="m")
        v = sg.variable(np.zeros(n, np.float32), name="v")
        new_m = m + (g - m) * (1.0 - beta1)
        new_v = v + (g * g - v) * (1.0 - beta2)
        updates = {m: new_m, v: new_v, w: w - alpha * new_m / (sg.sqrt(new_v) + eps)}
        return [g], [], updates

    state = [np.ones(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)]

    def numpy_adam(g):  # in place, as a careful NumPy user writes it
        w, m, v = state
        m += (g - m) * np.float32(1.0 - beta1)
        v += (g * g - v) * np.float32(1.0 - beta2)
        w -= alpha * m / (np.sqrt(v) + np.float32(eps))

    return Kernel("adam update", {"n": n}, graph,
                  lambda: [_rng().standard_normal(n).astype(np.float32)], numpy_adam, R.adam(n))


def dropout_kernel(n: int, rate: float = 0.5) -> Kernel:
    def graph():
        x = sg.placeholder((n,), name="x")
        step = sg.variable(np.zeros((), np.int64), name="step", trainable=False)
        return [x], sg.dropout(x, rate, seed=7, step=step), {step: step + np.int64(1)}

    rng = np.random.default_rng(1)
    scale = np.float32(1.0 / (1.0 - rate))

    def numpy_dropout(x):
        return np.where(rng.random(n, dtype=np.float32) >= np.float32(rate), x * scale,
                        np.float32(0.0))

    return Kernel("dropout", {"n": n, "rate": rate}, graph,
                  lambda: [_rng().random(n, dtype=np.float32)], numpy_dropout, R.dropout(n))


TINY_CALL = "tiny call"  # issue 4's per-call overhead target (<= 20 us) is judged on this row


def tiny_call_kernel() -> Kernel:
    """`sum(x * w)` with the update `w -= 0.1 * x` on 4 elements: a call is all overhead
    (input validation, argument binding, dispatch, the state swap)."""
    w0 = np.ones(4, np.float32)

    def graph():
        x = sg.placeholder((4,), name="x")
        w = sg.variable(w0, name="w")
        return [x], sg.sum(x * w), {w: w - np.float32(0.1) * x}

    state = {"w": w0.copy()}

    def numpy_step(x):
        loss = (x * state["w"]).sum()
        state["w"] = state["w"] - np.float32(0.1) * x
        return loss

    return Kernel(TINY_CALL, {"n": 4}, graph, lambda: [np.ones(4, np.float32)], numpy_step,
                  R.Cost(flops=16.0, bytes=48.0))


def kernel_set(quick: bool) -> list[Kernel]:
    """The suite's kernels: tiny shapes in quick mode, cache-exceeding ones otherwise."""
    if quick:
        return [chain_kernel(4096, 4), reduce_kernel(32, 64, 1), matmul_kernel(8, 16, 16),
                softmax_ce_kernel(8, 10), batch_norm_kernel(8, 16), adam_kernel(4096),
                dropout_kernel(4096), tiny_call_kernel()]
    n = 1 << 22
    return [chain_kernel(n, 4), chain_kernel(n, 16), reduce_kernel(4096, 1024, 1),
            reduce_kernel(4096, 1024, 0), matmul_kernel(128, 1024, 1024),
            softmax_ce_kernel(1024, 1000), batch_norm_kernel(128, 1024), adam_kernel(n),
            dropout_kernel(n), tiny_call_kernel()]


def available_backends(requested=None) -> list[str]:
    """symgraph backends to measure: numpy always, numba when its generator imports."""
    names = ["numpy"]
    try:
        import symgraph.backends.numba_cpu  # noqa: F401

        names.append("numba")
    except ImportError:
        pass
    return [b for b in names if requested is None or b in requested]


def _row(kernel: Kernel, system: str, timing, roofs: R.Roofs | None, **extra) -> dict:
    row = {"suite": "kernels", "kernel": kernel.name, "params": kernel.params, "system": system,
           "flops": kernel.cost.flops, "bytes": kernel.cost.bytes, **timing.as_dict(),
           **R.rates(kernel.cost, timing.median), **extra}
    if roofs is not None:
        row["bound"] = roofs.bound(kernel.cost)
        row["fraction_of_roof"] = roofs.fraction(kernel.cost, timing.median)
    return row


def run_kernels(threads: int, quick: bool = False, roofs: R.Roofs | None = None,
                backends=None) -> list[dict]:
    """Measure every kernel on NumPy-unfused and each symgraph backend; one row per pair."""
    repeats = 1 if quick else 7
    budget = None if quick else 0.3 * repeats
    rows = []
    with pinned_blas(threads):
        for kernel in kernel_set(quick):
            args = kernel.args()
            base = measure(lambda: kernel.numpy(*args), repeats, warmup=1, budget_s=budget)
            rows.append(_row(kernel, "numpy-unfused", base, roofs))
            for backend in available_backends(backends):
                inputs, outputs, updates = kernel.graph()
                try:
                    fn = sg.function(inputs, outputs, updates=updates, backend=backend)
                    timing = measure(lambda: fn(*args), repeats, warmup=1, budget_s=budget)
                except Exception as exc:  # a backend gap is a result too, not a crash
                    rows.append({"suite": "kernels", "kernel": kernel.name,
                                 "params": kernel.params, "system": f"symgraph-{backend}",
                                 "error": f"{type(exc).__name__}: {exc}"[:300]})
                    continue
                rows.append(_row(kernel, f"symgraph-{backend}", timing, roofs,
                                 compile_s=fn.compile_seconds,
                                 speedup_vs_numpy=base.median / timing.median))
    return rows
