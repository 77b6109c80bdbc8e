"""Lowering (symgraph/lower.py): kernel counts of known graphs and structural invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgraph as sg
from symgraph.lower import Program, array_source, lower, reads_arrays
from symgraph.passes.pipeline import optimize


def dense_relu_dropout():
    x = sg.placeholder(("batch", 8), name="x")
    W = sg.variable(np.zeros((8, 4), np.float32), name="W")
    b = sg.variable(np.zeros(4, np.float32), name="b")
    return [x], [sg.dropout(sg.relu(x @ W + b), 0.5, seed=1)]


def softmax_ce_forward_backward():
    x = sg.placeholder(("batch", 8), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    W = sg.variable(np.zeros((8, 4), np.float32), name="W")
    b = sg.variable(np.zeros(4, np.float32), name="b")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(x @ W + b, y))
    return [x, y], [loss] + sg.grad(loss, [W, b])


def batch_norm_forward():
    x = sg.placeholder(("batch", 8), name="x")
    gamma = sg.variable(np.ones(8, np.float32), name="gamma")
    beta = sg.variable(np.zeros(8, np.float32), name="beta")
    return [x], [sg.batch_norm(x, gamma, beta)]


def adam_update():
    w = sg.variable(np.ones(5, np.float32), name="w")
    m = sg.variable(np.zeros(5, np.float32), name="m")
    v = sg.variable(np.zeros(5, np.float32), name="v")
    t = sg.variable(np.zeros((), np.float32), name="t")
    g = sg.placeholder((5,), name="g")
    t1 = t + 1.0
    lr = 0.001 * sg.sqrt(1.0 - 0.999 ** t1) / (1.0 - 0.9 ** t1)
    m1 = 0.9 * m + 0.1 * g
    v1 = 0.999 * v + 0.001 * g * g
    return [g], [w - lr * m1 / (sg.sqrt(v1) + 1e-7), m1, v1, t1]


# (graph, kernels): Dense+ReLU+Dropout is one GEMM with the bias, relu and mask in its
# epilogue; softmax CE fwd+bwd = 2 GEMMs + max + sum(exp) + CE row sum + batch mean + the
# softmax-gradient row sum + bias-gradient column sum; batch norm = mean, variance (with the
# scale in its epilogue), normalize; Adam = one loop (the lr schedule and t+1 are invariants
# computed before it, t+1 written from the same kernel).
PINNED = [(dense_relu_dropout, 1), (softmax_ce_forward_backward, 8), (batch_norm_forward, 3),
          (adam_update, 1)]


@pytest.mark.parametrize("build,kernels", PINNED, ids=[b.__name__ for b, _ in PINNED])
@pytest.mark.parametrize("level", [0, 2])
def test_pinned_kernel_counts(build, kernels, level):
    inputs, outputs = build()
    program = lower(inputs, optimize(outputs, level)[0])
    assert len(program.kernels) == kernels, program.dump()
    check_structure(program)


def test_dense_relu_dropout_is_one_matmul_with_epilogue():
    inputs, outputs = dense_relu_dropout()
    (k,) = lower(inputs, outputs).kernels
    assert k.kind == "matmul" and k.root.op == "matmul"
    assert {"add", "where", "random_uniform"} <= {n.op for n in k.epilogue}
    assert [n.op for n in k.writes] == ["where"]  # only the layer output is materialized


def max_norm_update():
    """SGD then Keras's max-norm: the column norms of the updated weights rescale them."""
    x = sg.placeholder(("batch", 6), name="x")
    g = sg.placeholder(("batch", 5), name="g")
    w = sg.variable(np.ones((6, 5), np.float32), name="w")
    new = w - 0.1 * (sg.transpose(x) @ g)
    norms = sg.sqrt(sg.sum(new * new, axis=0, keepdims=True))
    return [x, g], [new * (sg.minimum(sg.maximum(norms, 0.0), 3.0) / (norms + 1e-7))]


def test_reduction_input_moves_out_of_a_matmul_epilogue():
    """The squared weights are only summed: the column-norm reduction squares the updated
    weights it reads anyway, instead of the GEMM's epilogue writing a second matrix."""
    inputs, outputs = max_norm_update()
    program = lower(inputs, optimize(outputs, 2)[0])
    check_structure(program)
    mm, red = (k for k in program.kernels if k.kind in ("matmul", "reduce"))
    assert [n.op for n in mm.writes] == ["sub"], program.dump()
    assert red.nodes[0].op == "mul" and mm.writes[0] in red.reads, program.dump()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(7, 6)).astype(np.float32)
    gs = rng.normal(size=(7, 5)).astype(np.float32)
    new = 1.0 - 0.1 * (xs.T @ gs)
    norms = np.sqrt((new * new).sum(axis=0, keepdims=True))
    want = new * (np.clip(norms, 0.0, 3.0) / (norms + 1e-7))
    for backend in ("numpy", "numba"):
        got = sg.function(inputs, outputs[0], backend=backend)(xs, gs)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def check_structure(program: Program) -> None:
    """Kernels in dependency order; each read is a leaf or written by an earlier kernel."""
    written_by = {}
    computed = {n.id for k in program.kernels for n in k.nodes}
    for k in program.kernels:
        for n in k.writes:
            assert n.id in program.buffer_of
            written_by[n.id] = k.id
    for k in program.kernels:
        for n in k.reads:
            if not n.is_leaf():
                assert n.id in written_by, f"k{k.id} reads unwritten %{n.id}"
                assert written_by[n.id] < k.id
                assert written_by[n.id] in program.deps[k.id] or written_by[n.id] == k.id
        assert all(d < k.id for d in program.deps[k.id])
        for m in k.nodes:  # a GEMM or index kernel reads (and waits for) the buffer it gets
            if reads_arrays(m):
                for i in m.inputs:
                    src = array_source(i, computed)
                    assert src.id in program.buffer_of, f"k{k.id}: %{src.id} has no buffer"
                    assert any(src is r for r in k.reads), f"k{k.id} reads %{src.id} unlisted"
    for r in program.results:
        program.buffer(r)  # every result has a buffer (or aliases one)


def test_schedule_and_memory_plan_accept_the_program():
    inputs, outputs = softmax_ce_forward_backward()
    program = lower(inputs, outputs)
    sched = program.schedule(2)
    assert sched.depth >= 1
    plan = program.memory()
    assert plan.peak_bytes > 0


UNARY = ["exp", "tanh", "sigmoid", "abs", "neg"]


@st.composite
def random_graphs(draw):
    """A random mix of elementwise ops, reductions, broadcasts and matmuls over one input."""
    x = sg.placeholder(("n", 4), "float64", name="x")
    nodes = [x]
    for _ in range(draw(st.integers(2, 12))):
        a = draw(st.sampled_from(nodes))
        kind = draw(st.integers(0, 6))
        if kind == 0:
            nodes.append(getattr(sg, {"neg": "negative"}.get(u := draw(st.sampled_from(UNARY)),
                                                             u))(a))
        elif kind == 1:
            b = draw(st.sampled_from([n for n in nodes if n.shape == a.shape] or [a]))
            nodes.append(a * b + a)
        elif kind == 2 and a.ndim == 2:
            nodes.append(a - sg.max(a, 1, keepdims=True))
        elif kind == 3 and a.ndim == 2:
            nodes.append(sg.sum(a, 0) + a)
        elif kind == 4 and a.ndim == 2 and a.shape[1] == 4:
            nodes.append(a @ sg.constant(np.ones((4, 4))))
        elif kind == 5 and a.ndim == 2 and a.shape[1] == 4:  # arrays for index kernels
            part = draw(st.sampled_from([a[:, 1:], a[:, ::2], sg.transpose(a)[:3].T]))
            pad = draw(st.sampled_from([sg.constant(np.zeros((1,))), sg.sum(a, 0)[:2]]))
            row = sg.concatenate([part, sg.broadcast_to(sg.reshape(pad, (1, -1)),
                                                         ("n", pad.shape[0]))], axis=1)
            nodes.append(row[:, :4] * 2.0)
        else:
            nodes.append(sg.sum(a) * 0.5)
    outs = draw(st.lists(st.sampled_from(nodes[1:]), min_size=1, max_size=3))
    return x, outs


@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_random_graphs_lower_to_valid_programs(graph):
    x, outs = graph
    program = lower([x], outs)
    check_structure(program)
    grads = sg.grad(sg.sum(sum(sg.sum(o) for o in outs)), x)
    check_structure(lower([x], outs + [grads]))


def test_compile_report_gets_lowering_fields():
    inputs, outputs = softmax_ce_forward_backward()
    f = sg.function(inputs, outputs, backend="numba")
    assert f.report.kernels == 8 and f.report.buffers >= 8
    assert f.report.flops > 0 and f.report.bytes_moved > 0
    assert "kernels: 8" in str(f.report)
