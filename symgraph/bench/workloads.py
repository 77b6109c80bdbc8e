"""The two benchmark training steps (issue 4) as symgraph graphs and as hand-written NumPy.

M1: 784-1024-1024-1024-10 ReLU MLP, dropout 0.2 on the input and 0.5 after each hidden layer,
    softmax cross-entropy, SGD momentum 0.9 (Keras formula), lr 0.01.
M2: 784-512-512-10 MLP, BatchNorm (batch statistics, Keras moving averages) before each ReLU,
    Adam 1e-3 (Keras formula, epsilon 1e-7).

Both are fp32 and built with the graph DSL (not the nn layer) so that the benchmark measures the
compiler, not a model wrapper. `build_m1()` / `build_m2()` return `(inputs, loss, updates)` for
`sg.function(inputs, loss, updates=updates, backend=...)`. The NumPy versions do the same
arithmetic by hand; with `masks="hash"` their dropout masks are the graph's counter-based bits,
so their numerics equal the graph's within float tolerance (tests/bench/test_workloads.py).
With `masks="rng"` they draw masks the way a NumPy user would (np.random.Generator), which is
the fair speed baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

import symgraph as sg
from symgraph.graph import Node
from symgraph.ops.special import uniform_bits

M1_SIZES = (784, 1024, 1024, 1024, 10)
M2_SIZES = (784, 512, 512, 10)
M1_RATES = (0.2, 0.5)  # input dropout, hidden dropout
DROPOUT_SEED = 1000  # layer i draws with seed DROPOUT_SEED + i
BN_MOMENTUM = 0.99  # Keras: moving = moving * momentum + batch * (1 - momentum)
BN_EPSILON = 1e-3
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7)
BATCH = 128


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras's default kernel initializer, fp32."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


def make_batch(batch: int = BATCH, features: int = 784, classes: int = 10, seed: int = 0):
    """Random training data: x uniform in [0, 1) fp32, y int32 class labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, features), dtype=np.float32)
    y = rng.integers(0, classes, batch).astype(np.int32)
    return x, y


def matmul_flops(sizes, batch: int, input_grad_first: bool = False) -> float:
    """FLOPs of a dense MLP step's GEMMs: forward, weight gradient, input gradient (not layer 0)."""
    total = 0.0
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        per_gemm = 2.0 * batch * n_in * n_out
        total += per_gemm * (3 if (i > 0 or input_grad_first) else 2)
    return total


@dataclass
class GraphStep:
    """A training step as a graph: what `sg.function` needs plus the state by name."""

    inputs: list
    loss: Node
    updates: dict
    state: dict  # name -> Variable

    def __iter__(self):  # unpacks as (inputs, loss, updates)
        return iter((self.inputs, self.loss, self.updates))


def _placeholders(features: int):
    x = sg.placeholder(("batch", features), "float32", name="x")
    y = sg.placeholder(("batch",), "int32", name="y")
    return x, y


def _dense_params(sizes, seed: int, bias: tuple[bool, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        params[f"W{i}"] = glorot_uniform(rng, n_in, n_out)
        if bias[i]:
            params[f"b{i}"] = np.zeros(n_out, np.float32)
    return params


def build_m1(sizes=M1_SIZES, rates=M1_RATES, lr: float = 0.01, momentum: float = 0.9,
             seed: int = 0) -> GraphStep:
    """M1's training step: dropout MLP, softmax cross-entropy, SGD with momentum."""
    x, y = _placeholders(sizes[0])
    n_layers = len(sizes) - 1
    state = {name: sg.variable(v, name=name)
             for name, v in _dense_params(sizes, seed, (True,) * n_layers).items()}
    step = sg.variable(np.zeros((), np.int64), name="step", trainable=False)
    h = sg.dropout(x, rates[0], seed=DROPOUT_SEED, step=step)
    for i in range(n_layers):
        z = h @ state[f"W{i}"] + state[f"b{i}"]
        if i < n_layers - 1:
            h = sg.dropout(sg.relu(z), rates[1], seed=DROPOUT_SEED + i + 1, step=step)
    loss = sg.mean(sg.sparse_softmax_cross_entropy(z, y))
    params = list(state.items())
    grads = sg.grad(loss, [v for _, v in params])
    updates = {}
    for (name, w), g in zip(params, grads, strict=True):
        m = sg.variable(np.zeros(w.shape, np.float32), name=f"m_{name}", trainable=False)
        state[f"m_{name}"] = m
        new_m = m * momentum - g * lr
        updates[m] = new_m
        updates[w] = w + new_m
    updates[step] = step + np.int64(1)
    state["step"] = step
    return GraphStep([x, y], loss, updates, state)


def build_m2(sizes=M2_SIZES, seed: int = 0, lr: float = ADAM["lr"], beta1: float = ADAM["beta1"],
             beta2: float = ADAM["beta2"], eps: float = ADAM["eps"]) -> GraphStep:
    """M2's training step: BatchNorm MLP (no bias before BN: beta is the bias), Adam."""
    x, y = _placeholders(sizes[0])
    n_layers = len(sizes) - 1
    # A bias right before batch norm has an analytically zero gradient: Adam would then move it
    # by +-lr on rounding noise, so (as usual) the BN layers carry no bias.
    state = {name: sg.variable(v, name=name) for name, v in _dense_params(
        sizes, seed, tuple(i == n_layers - 1 for i in range(n_layers))).items()}
    stats_updates = {}
    h = x
    for i in range(n_layers - 1):
        n = sizes[i + 1]
        gamma = state[f"gamma{i}"] = sg.variable(np.ones(n, np.float32), name=f"gamma{i}")
        beta = state[f"beta{i}"] = sg.variable(np.zeros(n, np.float32), name=f"beta{i}")
        z = h @ state[f"W{i}"]
        mu, var = sg.batch_moments(z, (0,))
        shape = (1, n)
        normed = (z - mu.reshape(shape)) * (1.0 / sg.sqrt(var + BN_EPSILON)).reshape(shape)
        h = sg.relu(normed * gamma.reshape(shape) + beta.reshape(shape))
        mm = sg.variable(np.zeros(n, np.float32), name=f"moving_mean{i}", trainable=False)
        mv = sg.variable(np.ones(n, np.float32), name=f"moving_var{i}", trainable=False)
        state[f"moving_mean{i}"], state[f"moving_var{i}"] = mm, mv
        stats_updates[mm] = mm * BN_MOMENTUM + sg.stop_gradient(mu) * (1.0 - BN_MOMENTUM)
        stats_updates[mv] = mv * BN_MOMENTUM + sg.stop_gradient(var) * (1.0 - BN_MOMENTUM)
    last = n_layers - 1
    logits = h @ state[f"W{last}"] + state[f"b{last}"]
    loss = sg.mean(sg.sparse_softmax_cross_entropy(logits, y))
    params = [(k, v) for k, v in state.items() if v.trainable]
    grads = sg.grad(loss, [v for _, v in params])
    step = sg.variable(np.zeros((), np.int64), name="step", trainable=False)
    state["step"] = step
    t = sg.cast(step + np.int64(1), "float32")
    alpha = lr * sg.sqrt(1.0 - sg.power(beta2, t)) / (1.0 - sg.power(beta1, t))
    updates = dict(stats_updates)
    for (name, w), g in zip(params, grads, strict=True):
        m = state[f"m_{name}"] = sg.variable(np.zeros(w.shape, np.float32), name=f"m_{name}",
                                             trainable=False)
        v = state[f"v_{name}"] = sg.variable(np.zeros(w.shape, np.float32), name=f"v_{name}",
                                             trainable=False)
        new_m = m + (g - m) * (1.0 - beta1)
        new_v = v + (g * g - v) * (1.0 - beta2)
        updates[m], updates[v] = new_m, new_v
        updates[w] = w - alpha * new_m / (sg.sqrt(new_v) + eps)
    updates[step] = step + np.int64(1)
    return GraphStep([x, y], loss, updates, state)


def state_arrays(graph_step: GraphStep) -> dict[str, np.ndarray]:
    """A copy of every state variable's current value, by name (the NumPy steps' state)."""
    return {name: var.value for name, var in graph_step.state.items()}


# --- hand-written NumPy ---------------------------------------------------------------------


class GemmOnly:
    """A step doing nothing but a dense MLP step's GEMMs, same shapes: the measured bound.

    Forward (batch, n_in) @ (n_in, n_out), weight gradient (n_in, batch) @ (batch, n_out) and
    input gradient (batch, n_out) @ (n_out, n_in) except for the first layer, through NumPy's
    BLAS (`blas="numpy"`) or MKL through the Numba backend's wrapper (`blas="mkl"`) into
    preallocated outputs.
    """

    def __init__(self, sizes, batch: int = BATCH, seed: int = 0, blas: str = "numpy"):
        self.blas = blas
        if blas == "mkl":
            from symgraph.backends.numba_cpu import blas as B

            if B.BLAS != "mkl":
                raise RuntimeError("gemm-only-mkl: MKL was not found (pip install mkl)")
            self._gemm = B.mkl_gemm
        rng = np.random.default_rng(seed)
        self.layers = []
        for i, (n_in, n_out) in enumerate(pairwise(sizes)):
            a = rng.random((batch, n_in), dtype=np.float32)
            w = rng.random((n_in, n_out), dtype=np.float32)
            d = rng.random((batch, n_out), dtype=np.float32)
            outs = (np.empty((batch, n_out), np.float32), np.empty((n_in, n_out), np.float32),
                    np.empty((batch, n_in), np.float32) if i > 0 else None)
            self.layers.append((a, w, d, outs))

    def __call__(self, x=None, y=None) -> np.float32:
        if self.blas == "mkl":
            return self._mkl()
        for a, w, d, (fwd, dw, dx) in self.layers:
            np.matmul(a, w, out=fwd)
            np.matmul(a.T, d, out=dw)
            if dx is not None:
                np.matmul(d, w.T, out=dx)
        return np.float32(0.0)

    def _mkl(self) -> np.float32:
        g, i, f, t, z = self._gemm, np.int64, np.bool_(False), np.bool_(True), np.float32(0)

        def whole(rows, cols):  # the block gemm computes: every row and column
            return i(0), i(rows), i(0), i(cols)
        for a, w, d, (fwd, dw, dx) in self.layers:
            (batch, n_in), n_out = a.shape, w.shape[1]
            g(f, f, i(batch), i(n_out), i(n_in), a.ravel(), i(0), w.ravel(), i(0), fwd.ravel(),
              i(0), z, *whole(batch, n_out))
            g(t, f, i(n_in), i(n_out), i(batch), a.ravel(), i(0), d.ravel(), i(0), dw.ravel(),
              i(0), z, *whole(n_in, n_out))
            if dx is not None:
                g(f, t, i(batch), i(n_in), i(n_out), d.ravel(), i(0), w.ravel(), i(0),
                  dx.ravel(), i(0), z, *whole(batch, n_in))
        return np.float32(0.0)


def _keep_mask(shape, rate: float, seed: int, step: int, masks: str, rng) -> np.ndarray:
    if masks == "hash":  # the graph's own counter-based bits (bit-identical masks)
        bits = uniform_bits(seed, step, int(np.prod(shape)))
        u = (bits.astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)
    else:
        u = rng.random(shape, dtype=np.float32)
    return u >= np.float32(rate)


def _softmax_ce(logits: np.ndarray, y: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """Mean sparse softmax cross-entropy and its gradient with respect to the logits."""
    batch = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(batch)
    loss = np.float32(np.mean(np.log(s[:, 0]) - shifted[rows, y]))
    d = e / s
    d[rows, y] -= 1.0
    d *= np.float32(1.0 / batch)
    return loss, d


class NumpyM1:
    """M1's step by hand: forward, backward, SGD momentum; `state` is updated in place."""

    def __init__(self, state: dict[str, np.ndarray], rates=M1_RATES, lr: float = 0.01,
                 momentum: float = 0.9, masks: str = "rng", seed: int = 0):
        self.state = state
        self.n_layers = sum(1 for k in state if k.startswith("W"))
        self.rates, self.lr, self.momentum = rates, np.float32(lr), np.float32(momentum)
        self.masks, self.rng = masks, np.random.default_rng(seed)

    def _dropout(self, h, layer: int):
        rate = self.rates[0] if layer == 0 else self.rates[1]
        step = int(self.state["step"])
        keep = _keep_mask(h.shape, rate, DROPOUT_SEED + layer, step, self.masks, self.rng)
        scale = np.float32(1.0 / (1.0 - rate))
        return np.where(keep, h * scale, np.float32(0.0)), keep, scale

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.float32:
        s, n = self.state, self.n_layers
        h, keep, scale = self._dropout(x, 0)
        acts, keeps = [h], [(keep, scale)]
        for i in range(n):
            z = h @ s[f"W{i}"] + s[f"b{i}"]
            if i < n - 1:
                relu_mask = z > 0
                h, keep, scale = self._dropout(np.where(relu_mask, z, np.float32(0.0)), i + 1)
                acts.append(h)
                keeps.append((keep & relu_mask, scale))
        loss, dz = _softmax_ce(z, y)
        grads = {}
        for i in reversed(range(n)):
            grads[f"W{i}"] = acts[i].T @ dz
            grads[f"b{i}"] = dz.sum(axis=0)
            if i > 0:
                keep, scale = keeps[i]
                dz = np.where(keep, (dz @ s[f"W{i}"].T) * scale, np.float32(0.0))
        for name, g in grads.items():
            m = s[f"m_{name}"]
            m *= self.momentum
            m -= self.lr * g
            s[name] += m
        s["step"] = s["step"] + 1
        return loss


class NumpyM2:
    """M2's step by hand: BatchNorm MLP forward, backward, Adam; `state` is updated in place."""

    def __init__(self, state: dict[str, np.ndarray], lr: float = ADAM["lr"],
                 beta1: float = ADAM["beta1"], beta2: float = ADAM["beta2"],
                 eps: float = ADAM["eps"]):
        self.state = state
        self.n_layers = sum(1 for k in state if k.startswith("W"))
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, np.float32(eps)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.float32:
        s, n = self.state, self.n_layers
        f32 = np.float32
        h, cache = x, []
        for i in range(n - 1):
            z = h @ s[f"W{i}"]
            mu = z.mean(axis=0)
            d = z - mu
            var = (d * d).mean(axis=0)
            inv = f32(1.0) / np.sqrt(var + f32(BN_EPSILON))
            xhat = d * inv
            out = xhat * s[f"gamma{i}"] + s[f"beta{i}"]
            relu_mask = out > 0
            cache.append((h, xhat, inv, relu_mask))
            h = np.where(relu_mask, out, f32(0.0))
            for key, batch_value in ((f"moving_mean{i}", mu), (f"moving_var{i}", var)):
                s[key] = s[key] * f32(BN_MOMENTUM) + batch_value * f32(1.0 - BN_MOMENTUM)
        last = n - 1
        loss, dz = _softmax_ce(h @ s[f"W{last}"] + s[f"b{last}"], y)
        grads = {f"W{last}": h.T @ dz, f"b{last}": dz.sum(axis=0)}
        dh = dz @ s[f"W{last}"].T
        for i in reversed(range(n - 1)):
            h_in, xhat, inv, relu_mask = cache[i]
            dout = np.where(relu_mask, dh, f32(0.0))
            grads[f"gamma{i}"] = (dout * xhat).sum(axis=0)
            grads[f"beta{i}"] = dout.sum(axis=0)
            dxhat = dout * s[f"gamma{i}"]
            # the batch-norm backward in its usual closed form
            dz = inv * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
            grads[f"W{i}"] = h_in.T @ dz
            if i > 0:
                dh = dz @ s[f"W{i}"].T
        t = float(s["step"]) + 1.0
        alpha = f32(self.lr * np.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t))
        b1, b2 = f32(1.0 - self.beta1), f32(1.0 - self.beta2)
        for name, g in grads.items():
            m, v = s[f"m_{name}"], s[f"v_{name}"]
            m += (g - m) * b1
            v += (g * g - v) * b2
            s[name] -= alpha * m / (np.sqrt(v) + self.eps)
        s["step"] = s["step"] + 1
        return loss
