"""The lowered program's data model (symgraph/program.py): text dump, statistics, FLOPs."""

from __future__ import annotations

import numpy as np

import symgraph as sg
from symgraph.lower import lower
from symgraph.program import Buffer, kernel_flops


def softmax_ce_forward_backward():
    x = sg.placeholder(("batch", 8), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    W = sg.variable(np.zeros((8, 4), np.float32), name="W")
    b = sg.variable(np.zeros(4, np.float32), name="b")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(x @ W + b, y))
    return [x, y], [loss] + sg.grad(loss, [W, b])


def test_dump_and_stats():
    inputs, outputs = softmax_ce_forward_backward()
    program = lower(inputs, outputs)
    text = program.dump()
    assert text.count("\nk") + text.startswith("k") == len(program.kernels)
    assert "matmul" in text and text.splitlines()[-1].startswith("return")
    stats = program.stats({"batch": 128})
    assert stats["kernels"] == 8 and stats["buffers"] == len(program.buffers)
    assert stats["flops"] >= 2 * 2 * 128 * 8 * 4  # the two GEMMs alone
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
