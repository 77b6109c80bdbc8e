"""The lowered program's data model (symgraph/program.py): text dump, statistics, FLOPs."""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.lower import lower
from symgraph.program import Buffer, kernel_flops


def mlp_step():
    """A two-layer MLP's squared-error loss and its weight gradients."""
    x = sg.placeholder(("batch", 8), name="x")
    t = sg.placeholder(("batch", 4), name="t")
    w1 = sg.variable(np.ones((8, 16), np.float32), name="w1")
    w2 = sg.variable(np.ones((16, 4), np.float32), name="w2")
    loss = sg.mean(sg.square(sg.relu(x @ w1) @ w2 - t))
    return [x, t], [loss] + sg.grad(loss, [w1, w2])


def test_dump_and_stats():
    program = lower(*mlp_step())
    text = program.dump()
    assert text.count("\nk") + text.startswith("k") == len(program.kernels)
    assert "matmul" in text and text.splitlines()[-1].startswith("return")
    stats = program.stats({"batch": 128})
    assert stats["kernels"] == len(program.kernels) and stats["buffers"] == len(program.buffers)
    forward = 2 * 128 * 8 * 16 + 2 * 128 * 16 * 4
    assert stats["flops"] >= 2 * forward  # the forward GEMMs and the two weight gradients
    assert stats["bytes_moved"] > 128 * 8 * 4


def test_buffer_sizes_and_matmul_flops_bind_symbolic_dims():
    x = sg.placeholder(("batch", 8), name="x")
    W = sg.variable(np.zeros((8, 4), np.float32), name="W")
    program = lower([x], [x @ W])
    (k,) = [k for k in program.kernels if k.kind == "matmul"]
    assert kernel_flops(k, {"batch": 128}) == 2 * 128 * 8 * 4
    assert kernel_flops(k) == 2 * 1 * 8 * 4  # an unbound dim counts 1
    out = program.buffer(program.results[0])
    assert isinstance(out, Buffer) and out.shape == ("batch", 4)
    assert out.nbytes({"batch": 128}) == 128 * 4 * 4 and out.nbytes() == 4 * 4
