"""Hypothesis-generated graphs: the Numba backend agrees with the NumPy reference.

Few examples on purpose: each one is a fresh Numba compile (seconds). Shapes stay symbolic in
the batch dim so two batch sizes run through one compiled module.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symgraph as sg

UNARY = ["exp", "tanh", "sigmoid", "abs", "negative", "softplus", "relu"]


@st.composite
def graphs(draw):
    x = sg.placeholder(("n", 3), "float64", name="x")
    w = sg.placeholder((3, 3), "float64", name="w")
    nodes = [x]
    for _ in range(draw(st.integers(3, 10))):
        a = draw(st.sampled_from(nodes))
        kind = draw(st.integers(0, 7))
        if kind == 0:
            nodes.append(getattr(sg, draw(st.sampled_from(UNARY)))(a))
        elif kind == 1:
            b = draw(st.sampled_from([n for n in nodes if n.shape == a.shape]))
            nodes.append(draw(st.sampled_from([a * b, a - b, sg.maximum(a, b),
                                               sg.where(a > b, a, b * 0.5)])))
        elif kind == 2 and a.ndim == 2:
            nodes.append(sg.softmax(a))
        elif kind == 3 and a.ndim == 2:
            nodes.append(a - sg.mean(a, 0))
        elif kind == 4 and a.ndim == 2:
            nodes.append(sg.tanh(a @ w) + sg.sum(a, 1, keepdims=True))
        elif kind == 5 and a.ndim == 2:
            nodes.append(sg.max(a, 1))
        elif kind == 6 and a.ndim == 2:  # whole-array operands: slices, a constant, indices
            nodes.append(draw(st.sampled_from([
                sg.concatenate([a[:, 1:], a[:, :1] * 2.0], axis=1),
                sg.concatenate([sg.constant(np.zeros((1, 1))) + a[:, :1], a[:, ::2]], axis=1),
                sg.transpose(sg.take(sg.transpose(a), sg.constant(np.array([2, 0, 2])))),
                a @ w])))
        else:
            nodes.append(sg.sum(a * a) + 1.0)
    outs = draw(st.lists(st.sampled_from(nodes[1:]), min_size=1, max_size=2))
    return [x, w], outs


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # derandomized: warm disk cache
@given(graphs(), st.integers(0, 2**16))
def test_random_graph_forward_and_grad_match_reference(numba_path, graph, seed):
    inputs, outs = graph
    cost = sum(sg.sum(o * 0.7) for o in outs)
    results = outs + sg.grad(cost, inputs)
    ref = sg.function(inputs, results, backend="numpy")
    got = sg.function(inputs, results, backend="numba")
    rng = np.random.default_rng(seed)
    for n in (2, 5):
        feeds = [rng.standard_normal((n, 3)), rng.standard_normal((3, 3))]
        for r, g in zip(ref(*feeds), got(*feeds)):
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-11)


@st.composite
def training_steps(draw):
    """A loss of a random graph over a weight W, and random updates of W, a slot S, a bias B
    and a step counter T: some of them written in place by the Numba backend, some not
    (read through a transpose, returned as an output, read after being written)."""
    x = sg.placeholder(("n", 3), "float64", name="x")
    w = sg.variable(np.eye(3) * 0.5 + 0.1, name="W")
    s = sg.variable(np.full((3, 3), 0.01), name="S")
    b = sg.variable(np.zeros(3), name="B")
    t = sg.variable(np.int64(0), name="T")
    h = x @ w + b
    for _ in range(draw(st.integers(0, 3))):
        h = getattr(sg, draw(st.sampled_from(["tanh", "sigmoid", "relu", "softplus"])))(h)
    loss = sg.mean(h * h) + draw(st.sampled_from([0.0, 1.0])) * sg.sum(w * s)
    gw, gb = sg.grad(loss, [w, b])
    lr = 0.1 / (1.0 + sg.cast(t, "float64"))  # a loop invariant reading the counter
    new_s = draw(st.sampled_from([s * 0.9 - gw * lr, s + gw * gw, s * 0.5 + sg.transpose(w),
                                  gw]))
    new_w = draw(st.sampled_from([w + new_s, w - lr * gw, w - gw / (sg.sqrt(new_s * new_s)
                                                                      + 1.0),
                                  sg.transpose(w) * 0.9 - lr * gw]))
    new_b = draw(st.sampled_from([b - gb * lr, b * 0.9 + sg.sum(new_w, 0) * 0.01]))
    updates = {w: new_w, s: new_s, b: new_b, t: t + np.int64(1)}
    outputs = [loss] + draw(st.sampled_from([[], [w], [new_s], [sg.sum(w) + sg.sum(new_w)]]))
    return x, outputs, updates, (w, s, b, t)


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(training_steps(), st.integers(0, 2**16))
def test_random_training_steps_with_updates_in_place_match_reference(numba_path, step, seed):
    """Three steps on each backend from the same state: outputs and every state value agree."""
    x, outputs, updates, state = step
    start = [v.value for v in state]
    results = {}
    for backend in ("numpy", "numba"):
        for v, a in zip(state, start):
            v.value = a
        fn = sg.function([x], outputs, updates=updates, backend=backend)
        rng = np.random.default_rng(seed)
        results[backend] = [[np.asarray(o) for o in fn(rng.standard_normal((4, 3)))]
                            + [v.value for v in state] for _ in range(3)]
    for ref, got in zip(results["numpy"], results["numba"]):
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)
