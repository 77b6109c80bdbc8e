"""Numba CPU backend vs the NumPy reference: every primitive and composite, forward and gradient.

Numba compile time dominates, so many ops share one compiled graph per dtype: each test builds
a list of outputs plus the gradients of a random projection of all of them, and compares every
value with the NumPy backend running the same (optimized) graph.
"""

from __future__ import annotations

import os
import weakref

import numpy as np
import pytest

import symgraph as sg
from symgraph.backends.numba_cpu import llvmjit

pytestmark = pytest.mark.usefixtures("numba_path")  # every test on both compilation paths

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-9, atol=1e-11)}


def compare(inputs, outputs, feeds, dtype, wrt=None, seed=0):
    """Outputs (and grads of a projection wrt `wrt`) agree between numba and numpy."""
    outputs = list(outputs)
    if wrt:
        rng = np.random.default_rng(seed)
        cost = None
        for o in outputs:
            if not o.dtype.startswith("float"):
                continue
            proj = sg.constant(rng.standard_normal(tuple(
                d if isinstance(d, int) else 1 for d in o.shape)).astype(dtype))
            term = sg.sum(o * proj)
            cost = term if cost is None else cost + term
        outputs = outputs + list(sg.grad(cost, wrt))
    ref = sg.function(inputs, outputs, backend="numpy")(*feeds)
    got = sg.function(inputs, outputs, backend="numba")(*feeds)
    for i, (r, g) in enumerate(zip(ref, got)):
        assert g.shape == r.shape and g.dtype == r.dtype, (i, outputs[i], g.shape, r.shape)
        if r.dtype.kind == "f":
            np.testing.assert_allclose(g, r, err_msg=f"output {i}: {outputs[i]}", **TOL[dtype])
        else:
            np.testing.assert_array_equal(g, r, err_msg=f"output {i}: {outputs[i]}")
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_primitives_forward_and_grad(dtype):
    rng = np.random.default_rng(1)
    a = sg.placeholder(("n", 5), dtype, name="a")  # any sign
    p = sg.placeholder(("n", 5), dtype, name="p")  # positive
    r = sg.placeholder((5,), dtype, name="r")  # broadcast row
    outs = [-a, sg.exp(a), sg.log(p), sg.sqrt(p), sg.tanh(a), sg.sigmoid(a), sg.abs(a),
            sg.sign(a), sg.log1p(p), sg.expm1(a), sg.reciprocal(p), sg.sin(a * 3.0), sg.cos(a * 3.0), a + r, a - r, a * p,
            a / p, p ** r, sg.maximum(a, r), sg.minimum(a, r),
            sg.where(a > r, a, p), sg.cast(a < p, dtype), sg.cast(a, "int32"),
            sg.logical_and(a >= r, a <= p), sg.logical_or(sg.equal(a, a), sg.not_equal(a, p)),
            sg.cast(sg.cast(a, "float64" if dtype == "float32" else "float32"), dtype),
            sg.stop_gradient(a) * a, a * 2.5 + 1.0,
            sg.sum(sg.cast(a * 10.0, "int32") * 3 + 1, 1), sg.max(sg.cast(p * 7.0, "int64"), 0),
            -sg.abs(sg.cast(a * 4.0, "int64")), sg.sign(sg.cast(a * 3.0, "int32"))]
    feeds = [rng.standard_normal((4, 5)).astype(dtype),
             rng.uniform(0.5, 2.0, (4, 5)).astype(dtype),
             rng.uniform(0.5, 1.5, 5).astype(dtype)]
    compare([a, p, r], outs, feeds, dtype, wrt=[a, p, r])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_movement_matmul_index(dtype):
    rng = np.random.default_rng(2)
    x = sg.placeholder((3, 3, 4), dtype, name="x")  # static: reshape(-1) needs known dims
    w = sg.placeholder((4, 6), dtype, name="w")
    m = sg.placeholder((3, 4, 2), dtype, name="m")
    t = sg.placeholder((7, 4), dtype, name="t")
    idx = sg.placeholder(("n",), "int32", name="idx")
    x2 = sg.reshape(x, (3, 12))
    outs = [sg.sum(x), sg.sum(x, 0), sg.sum(x, (1, 2), keepdims=True), sg.sum(x, 1),
            sg.max(x, 2), sg.max(x, (0, 1), keepdims=True), sg.min(x, 1), sg.mean(x, -1),
            sg.argmax(x, 1), sg.argmax(x), sg.transpose(x, (2, 0, 1)) * 1.0,
            sg.reshape(x, (-1, 4)) @ w, sg.transpose(x2) @ x2, x @ m,
            sg.transpose(sg.reshape(x, (3, 12)))[2:9:3, :],
            sg.concatenate([x, x * 2.0], axis=2), sg.concatenate([x[:, :1], x], axis=1),
            sg.broadcast_to(sg.reshape(sg.sum(x, 2), (3, 3, 1)), (3, 3, 5)) * 1.0,
            x[:, 1:, ::2], x[::-1, :, ::-2], sg.concatenate([x[:, ::-1], x[:, 1:2]], axis=1),
            sg.one_hot(idx, 4, dtype), sg.take(t, idx),
            sg.take(t, sg.concatenate([sg.reshape(idx, ("n", 1))] * 2, 1)),
            sg.var(x, 0), sg.matmul(sg.transpose(w), sg.transpose(sg.reshape(x, (-1, 4))))]
    feeds = [rng.standard_normal((3, 3, 4)).astype(dtype),
             rng.standard_normal((4, 6)).astype(dtype),
             rng.standard_normal((3, 4, 2)).astype(dtype),
             rng.standard_normal((7, 4)).astype(dtype),
             np.array([6, 0, -1], np.int32)]
    compare([x, w, m, t, idx], outs, feeds, dtype, wrt=[x, w, m, t])


@pytest.mark.parametrize("src, dst", [
    ((6, 4), (2, 3, 4)), ((2, 3, 4), (4, 6)), ((2, 1, 3), (3, 2)), ((9, 4, 2), (3, 3, 8)),
    (("n", 9, 4), ("n", 3, 3, 4)), (("n", 3, 3, 4), ("n", 9, 4)), ((4, "n", 6), (2, 2, "n", 6)),
    (("n", 3, 4, 1), ("n", 1, 12)),
])
def test_reshape_views_that_split_and_merge_axes(src, dst):
    # read element by element through a transpose, so the reshape stays an index map (each
    # run of axes of equal size is indexed on its own, render._reshape_groups)
    x = sg.placeholder(src, "float32", name="x")
    y = sg.transpose(sg.reshape(sg.exp(x), dst), tuple(reversed(range(len(dst))))) + 1.0
    feed = np.random.default_rng(4).standard_normal(
        tuple(3 if d == "n" else d for d in src)).astype(np.float32)
    compare([x], [y], [feed], "float32", wrt=[x])


@pytest.mark.parametrize("shape", [(6, 30000), (3, 50000), (140000,), (100, 400, 4)],
                         ids=["uneven-chunks", "an-empty-chunk", "1d", "3d"])
def test_large_reductions_over_axis_0_equal_the_reference(shape):
    """Reductions over axis 0 of 2^17+ elements (known at compile time) sum 4 row ranges on
    the thread team, then combine them: uneven ranges (2, 2, 2, 0 rows), an empty one (3
    rows), a 1-d total and a 3-d domain; sums and maxima (all values negative: an empty
    range's -inf must not show), fused prologues."""
    rng = np.random.default_rng(7)
    x = sg.placeholder(shape, "float32", name="x")
    i = sg.placeholder(shape, "int32", name="i")
    nd = len(shape)
    outs = [sg.sum(x, 0), sg.max(x, 0), sg.sum(sg.exp(x) * 2.0, 0, keepdims=True),
            sg.mean(x), sg.max(x), sg.sum(i, 0), sg.max(i, 0)]
    if nd == 3:
        outs += [sg.sum(x, (0, 2)), sg.max(x * x, (0, 1), keepdims=True)]
    feeds = [rng.uniform(-3, -1, shape).astype("float32"),
             rng.integers(-50, 50, shape, dtype=np.int32)]
    compare([x, i], outs, feeds, "float32", wrt=[x])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_composites_forward_and_grad(dtype):
    rng = np.random.default_rng(3)
    z = sg.placeholder(("n", 6), dtype, name="z")
    y = sg.placeholder(("n",), "int64", name="y")
    q = sg.placeholder(("n", 6), dtype, name="q")  # probabilities-like targets
    g = sg.placeholder((6,), dtype, name="gamma")
    outs = [sg.relu(z), sg.leaky_relu(z), sg.elu(z), sg.selu(z), sg.relu6(z * 4.0),
            sg.softplus(z), sg.hard_sigmoid(z), sg.maxout(z, 3), sg.prelu(z, g),
            sg.softmax(z), sg.log_softmax(z), sg.logsumexp(z), sg.logsumexp(z, 0, True),
            sg.sparse_softmax_cross_entropy(z, y), sg.softmax_cross_entropy(z, q),
            sg.sigmoid_cross_entropy(z, sg.sigmoid(q)),
            sg.categorical_crossentropy(q, sg.softmax(z)),
            sg.sparse_categorical_crossentropy(y, sg.softmax(z)),
            sg.binary_crossentropy(sg.sigmoid(q), sg.sigmoid(z)),
            sg.mean_squared_error(q, z), sg.mean_absolute_error(q, z),
            sg.batch_norm(z, g, g * 0.5), sg.batch_norm(z * 2.0 + 1.0),
            sg.batch_norm(z, g, None, running_mean=g, running_var=g * g, training=False)]
    feeds = [rng.standard_normal((5, 6)).astype(dtype), rng.integers(0, 6, 5),
             rng.uniform(0.05, 1.0, (5, 6)).astype(dtype), rng.uniform(0.5, 1.5, 6).astype(dtype)]
    compare([z, y, q, g], outs, feeds, dtype, wrt=[z, q, g])


def test_dropout_masks_bit_identical_and_step_dependent():
    x = sg.placeholder(("n", 37), "float32", name="x")
    step = sg.variable(np.int64(5), name="step", trainable=False)
    outs = [sg.dropout(x, 0.3, seed=11, step=step), sg.random.uniform((3, 129), seed=4),
            sg.random.uniform((2, 7), seed=9, step=step, dtype="float64")]
    feeds = [np.ones((6, 37), np.float32)]
    ref = sg.function([x], outs, backend="numpy")
    got = sg.function([x], outs, backend="numba")
    counter = sg.random.default_step()  # the draw without `step` uses the global counter
    step.value, counter.value = np.int64(5), np.int64(2)
    r1 = ref(*feeds)
    step.value, counter.value = np.int64(5), np.int64(2)
    g1 = got(*feeds)
    for r, g in zip(r1, g1):
        np.testing.assert_array_equal(g, r)  # bit-identical, not merely close
    step.value = np.int64(6)
    g2 = got(*feeds)
    assert not np.array_equal(g2[0], g1[0])  # a new step draws a new mask


def test_batch_norm_training_and_inference_equal_reference():
    rng = np.random.default_rng(4)
    x = sg.placeholder(("batch", 8), "float32", name="x")
    gamma = sg.variable(rng.uniform(0.5, 1.5, 8).astype(np.float32), name="gamma")
    beta = sg.variable(rng.standard_normal(8).astype(np.float32), name="beta")
    mean = sg.variable(np.zeros(8, np.float32), name="moving_mean", trainable=False)
    var = sg.variable(np.ones(8, np.float32), name="moving_var", trainable=False)
    mu, v = sg.batch_moments(x)
    train = sg.batch_norm(x, gamma, beta, training=True)
    infer = sg.batch_norm(x, gamma, beta, mean, var, training=False)
    updates = {mean: mean * 0.9 + mu * 0.1, var: var * 0.9 + v * 0.1}
    xb = rng.standard_normal((16, 8)).astype(np.float32) * 3 + 1
    results = {}
    for backend in ("numpy", "numba"):
        mean.value, var.value = np.zeros(8, np.float32), np.ones(8, np.float32)
        step = sg.function([x], train, updates=updates, backend=backend)
        out_train = step(xb)
        results[backend] = (out_train, sg.function([x], infer, backend=backend)(xb),
                            mean.value, var.value)
    for r, g in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def compiles_during(f, run) -> int:
    """How many compilations `run()` caused for `f` (Numba's signatures, or native objects)."""
    entry = f._run.compiled.entry
    if f._run.native:
        def count():
            return llvmjit.STATS["compiled"] + llvmjit.STATS["loaded"]
    else:
        def count():
            return len(entry.signatures)
    before = count()
    run()
    return count() - before


def test_new_batch_size_does_not_recompile():
    x = sg.placeholder(("batch", 3), "float32", name="x")
    f = sg.function([x], sg.sum(sg.exp(x) * 2.0, 1), backend="numba")

    def run():
        for n in (1, 4, 9):
            xb = np.arange(3 * n, dtype=np.float32).reshape(n, 3) / 10
            np.testing.assert_allclose(f(xb), (np.exp(xb) * 2).sum(1), rtol=1e-6)
    assert compiles_during(f, run) == 0


def test_out_of_range_label_raises_symgraph_error():
    t = sg.placeholder((4, 2), "float32", name="table")
    i = sg.placeholder(("n",), "int32", name="labels")
    f = sg.function([t, i], sg.take(t, i) * 2.0, backend="numba")
    np.testing.assert_array_equal(f(np.ones((4, 2), np.float32), np.array([3, -4], np.int32)),
                                  np.full((2, 2), 2, np.float32))
    with pytest.raises(sg.SymgraphError, match="take"):
        f(np.ones((4, 2), np.float32), np.array([0, 4], np.int32))


def test_check_nan_names_the_node():
    x = sg.placeholder((3,), "float32", name="x")
    bad = sg.log(x)
    f = sg.function([x], bad * 2.0, backend="numba", check_nan=True)
    np.testing.assert_allclose(f(np.ones(3, np.float32)), 0.0)
    with pytest.raises(sg.SymgraphError, match="log"):
        f(np.array([1.0, -1.0, 2.0], np.float32))


def test_updates_and_scalar_results():
    w = sg.variable(np.arange(4, dtype=np.float32), name="w")
    t = sg.variable(np.float32(0), name="t", trainable=False)
    t1 = t + 1.0
    f = sg.function([], [sg.sum(w), t1, sg.constant(2.0)], updates={w: w * t1, t: t1},
                    backend="numba")
    s, t_new, two = f()
    assert s == 6 and t_new == 1 and two == 2
    f()
    np.testing.assert_array_equal(w.value, np.arange(4) * 2)
    assert t.value == 2


def test_whole_array_operands_from_views_and_invariants():
    """Operands a GEMM or an index kernel takes as arrays: a sliced input (concatenate read
    the unsliced input, so nothing ordered the slice's copy first: a race with workers=2, a
    recycled buffer on CUDA), a size-1 constant (it was a literal with no buffer), and a
    broadcast 1 or 1/n from a gradient (d sum(x @ C) / dx, d mean(W[y]) / dW: invariants with
    no buffer). Each failed to compile or gave wrong values on numba before."""
    x = sg.placeholder((5,), name="x")
    y = sg.placeholder((2,), name="y")
    rows = sg.placeholder(("batch", 4), "float64", name="rows")
    idx = sg.placeholder(("batch",), "int32", name="idx")
    table = sg.variable(np.arange(8.0).reshape(4, 2), name="table")
    c = sg.constant(np.arange(16.0).reshape(4, 4))
    outs = [sg.concatenate([y, x[1:]]), sg.concatenate([x[:2], x[3:]]),
            sg.concatenate([sg.constant(np.zeros(1, np.float32)), x[:-1]]),
            sg.concatenate([x[::2], y * 3.0]) + 1.0,
            sg.grad(sg.sum(rows @ c), rows), sg.grad(sg.sum(sg.take(table, idx)), table),
            sg.grad(sg.mean(table[idx]), table)]
    feeds = [np.arange(1.0, 6.0, dtype=np.float32), np.array([7, 8], np.float32),
             np.ones((3, 4)), np.array([0, 3, 3], np.int32)]
    ref = sg.function([x, y, rows, idx], outs, backend="numpy")(*feeds)
    for workers in (1, 2):
        fn = sg.function([x, y, rows, idx], outs, backend="numba", workers=workers)
        for _ in range(20 if workers == 2 else 1):
            for r, g in zip(ref, fn(*feeds)):
                np.testing.assert_allclose(g, r, rtol=1e-6)


def test_lowering_corner_cases_found_by_fuzzing():
    """A GEMM operand also read by the GEMM's epilogue (it was fused into the epilogue, after
    the GEMM that needs it: KeyError), a copied broadcast read again elementwise (the copy
    was bypassed to a value never materialized), the gradient of a gather from a symbolic
    batch (the reference's scatter had a symbolic size)."""
    x = sg.placeholder((3, 3), "float32", name="x")
    s = sg.placeholder((), "float64", name="s")
    rows = sg.placeholder(("n", 3), "float64", name="rows")
    a = sg.tanh(x)
    c = sg.constant(np.arange(9, dtype=np.float32).reshape(3, 3))
    b = sg.broadcast_to(sg.tanh(s), (2,))
    outs = [a @ c + a, sg.transpose(a) @ c + a, sg.cast(sg.argmax(b, 0), "float64") + b,
            sg.grad(sg.sum(sg.take(rows, sg.constant(np.array([0, 1]))) * 2.0), rows)]
    feeds = [np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32),
             np.float64(0.3), np.arange(12.0).reshape(4, 3)]
    ref = sg.function([x, s, rows], outs, backend="numpy")(*feeds)
    got = sg.function([x, s, rows], outs, backend="numba")(*feeds)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)  # float32 GEMM sums
    np.testing.assert_array_equal(ref[3], [[2.0] * 3] * 2 + [[0.0] * 3] * 2)


def test_thread_pool_driver_matches_single_entry():
    rng = np.random.default_rng(5)
    x = sg.placeholder(("n", 6), "float64", name="x")
    w1 = sg.variable(rng.standard_normal((6, 5)), name="w1")
    w2 = sg.variable(rng.standard_normal((6, 5)), name="w2")
    a, b = sg.tanh(x @ w1), sg.relu(x @ w2)  # two independent branches
    loss = sg.sum(a * b) + sg.sum(sg.softmax(a))
    outs = [loss] + sg.grad(loss, [w1, w2])
    xb = rng.standard_normal((4, 6))
    ref = sg.function([x], outs, backend="numpy")(xb)
    single = sg.function([x], outs, backend="numba")(xb)  # both on this test's path
    driver = sg.function([x], outs, backend="numba", workers=2)
    assert driver._run.native == (os.environ["SYMGRAPH_NATIVE"] == "native")
    got = driver(xb)
    for r, g, s in zip(ref, got, single):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(s, r, rtol=1e-10, atol=1e-12)


def test_strided_and_readonly_inputs_reuse_the_compiled_signature():
    x = sg.placeholder(("n", 3), "float32", name="x")
    f = sg.function([x], sg.exp(x) + 1.0, backend="numba")
    base = np.arange(24, dtype=np.float32).reshape(4, 6) / 10
    ro = base.copy()
    ro.setflags(write=False)

    def run():
        for a in (base[:, ::2], np.broadcast_to(base[0, :3], (5, 3)), ro[:, :3]):
            np.testing.assert_allclose(f(a), np.exp(a) + 1, rtol=1e-6)
    assert compiles_during(f, run) == 0


def test_result_arrays_are_recycled_only_when_nobody_holds_them(monkeypatch):
    monkeypatch.setenv("SYMGRAPH_INPLACE", "0")  # the result pool (in place: test_inplace.py)
    x = sg.placeholder((3,), "float32", name="x")
    w = sg.variable(np.ones(3, np.float32), name="w")
    f = sg.function([x], w * x, updates=[(w, w + x)], backend="numba")
    xv = np.arange(3, dtype=np.float32)
    held = [f(xv) for _ in range(4)]  # the caller keeps every output: none may be reused
    for k, out in enumerate(held):
        np.testing.assert_array_equal(out, (1 + k * xv) * xv)
    assert len({id(o) for o in held}) == 4
    alive = []
    for k in range(4, 10):  # outputs dropped: the pool ping-pongs between two state arrays
        f(xv)
        np.testing.assert_array_equal(w.value, 1 + (k + 1) * xv)
        alive.append(weakref.ref(w._host))
    # the state array of two steps ago is the one written now (a fresh one would have died)
    assert alive[-1]() is not None and alive[-3]() is alive[-1]()
    assert alive[-2]() is not alive[-1]()


PARALLEL_SCRIPT = """
import hashlib, sys
import numpy as np
import symgraph as sg
rng = np.random.default_rng(3)
x = sg.placeholder(("n", 300), "float32", name="x")
w = sg.variable(rng.standard_normal((300, 200)).astype(np.float32), name="w")
h = sg.tanh(x @ w) * 0.5 + 1.0                    # matmul epilogue (a prange loop)
s = sg.sum(sg.exp(h - sg.max(h, 1, keepdims=True)), 1)   # row reductions
c = sg.sum(h * h, 0)                              # a column reduction (serial)
loss = sg.sum(s) + sg.sum(c)
f = sg.function([x], [h, s, c] + sg.grad(loss, [w]), backend="numba")
xb = rng.standard_normal((256, 300)).astype(np.float32)
outs = f(xb)
ref = sg.function([x], [h, s, c] + sg.grad(loss, [w]), backend="numpy")(xb)
for a, r in zip(outs, ref):
    np.testing.assert_allclose(a, r, rtol=2e-4, atol=1e-3)
print(f._run.native, hashlib.sha256(b"".join(a.tobytes() for a in outs)).hexdigest())
"""


def test_parallel_loops_match_reference_and_serial_bits(numba_path, tmp_path):
    """Shapes above native.PARALLEL_WORK: prange loops fork threads (when MKL's OpenMP is
    loaded); results match the reference and are bit-identical to the serial loops."""
    import os
    import subprocess
    import sys

    lines = []
    for parallel in ("1", "0"):
        env = dict(os.environ, SYMGRAPH_PARALLEL_LOOPS=parallel, OMP_NUM_THREADS="2",
                   SYMGRAPH_CACHE_DIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-c", PARALLEL_SCRIPT], env=env, text=True,
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        lines.append(proc.stdout.split())
    assert lines[0] == lines[1]
    assert lines[0][0] == str(numba_path == "native")


def test_a_product_over_an_empty_axis_is_zeros(numba_path):
    x = sg.placeholder(("n", 0), name="x")
    w = sg.variable(np.zeros((0, 3), np.float32), name="w")
    fn = sg.function([x], [x @ w, sg.relu(x @ w) + 1.0], backend="numba")
    for _ in range(3):
        prod, shifted = fn(np.zeros((2, 0), np.float32))
        np.testing.assert_array_equal(prod, np.zeros((2, 3)))
        np.testing.assert_array_equal(shifted, np.ones((2, 3)))
        prod[:] = np.nan  # dropped: the next call recycles this array as its result
        del prod
