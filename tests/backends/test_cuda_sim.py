"""The CUDA backend's kernels in Numba's CUDA simulator, against the NumPy reference.

Runs only in its own process: `NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/backends/
test_cuda_sim.py` (tests/conftest.py skips it elsewhere). The simulator runs every CUDA thread
as a Python thread, about 1e4 times slower than a GPU, so shapes stay tiny; the real kernel
geometry is checked by compiling to PTX (test_cuda_ptx.py).
"""

import numpy as np
import pytest

import symgraph as sg
from symgraph.bench.workloads import build_m1, build_m2

pytestmark = [pytest.mark.cudasim,
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]  # numpy scalar 1/0

RNG = np.random.default_rng(7)


def both(inputs, outputs, arrays, updates=None, rtol=1e-5, atol=1e-5):
    """Run on the reference and on CUDA; assert equal results; return the CUDA function."""
    ref = sg.function(inputs, outputs, updates=updates, backend="numpy")(*arrays)
    fn = sg.function(inputs, outputs, updates=updates, backend="cuda")
    got = fn(*arrays)
    for r, g in zip(ref if isinstance(ref, list) else [ref], got if isinstance(got, list)
                    else [got]):
        assert np.asarray(g).dtype == np.asarray(r).dtype
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return fn


def kernel_kinds(fn) -> set:
    return {k.kind for k in fn._run.plan.program.kernels}


def test_elementwise_templates_broadcast_and_views():
    x = sg.placeholder((5, 6), name="x")
    v = sg.placeholder((6,), name="v")
    a = RNG.standard_normal((5, 6)).astype(np.float32)
    b = RNG.uniform(0.5, 2.0, 6).astype(np.float32)
    outs = [sg.exp(x) * v + sg.tanh(x) / v, sg.sigmoid(x) - sg.log1p(sg.abs(x)),
            sg.where(x > 0, sg.sqrt(sg.abs(x)), sg.expm1(x)), sg.maximum(x, v) ** 2.0,
            sg.transpose(x)[1:4, ::2] + 1.0, sg.reshape(x, (-1,))[3:9], sg.sign(x),
            x[::-1, ::-2] * 2.0, sg.concatenate([x[:, ::-1], x[:, :1]], axis=1),
            sg.cast(x > 0.5, "int32") + 3, sg.concatenate([x, x * 2.0], axis=1),
            sg.sin(x * 3.0) + sg.cos(x * v)]
    fn = both([x, v], outs, [a, b])
    assert "elementwise" in kernel_kinds(fn)


def test_row_and_column_reductions_and_argmax():
    x = sg.placeholder(("batch", 70), name="x")
    a = RNG.standard_normal((3, 70)).astype(np.float32)
    outs = [sg.sum(sg.exp(x), axis=1), sg.max(x, axis=1, keepdims=True), sg.sum(x * x, axis=0),
            sg.mean(x), sg.max(x, axis=0), sg.argmax(x, axis=1), sg.logsumexp(x, axis=-1)]
    fn = both([x], outs, [a], rtol=1e-5, atol=1e-4)
    assert "reduce" in kernel_kinds(fn)


def test_stable_forms_at_zero_and_infinite_logits():
    """The ninth session's numerics on CUDA: softplus-family gradients at a logit of 0 are
    sigmoid(0), log-sum-exp of a row holding +inf is +inf, log_softmax keeps its digits. (A
    row of -inf is left to the other backends' tests: the simulator runs `math.log(0.0)` as
    Python does, which raises, where a GPU returns -inf.)"""
    x = sg.placeholder((3, 3), "float64", name="x")
    rows = np.array([[0.0, -0.0, 0.0], [np.inf, 0.0, 1.0], [1000.0, 1001.0, 999.0]])
    grads = [sg.grad(sg.sum(sg.softplus(x[0])), [x])[0],
             sg.grad(sg.sum(sg.log(sg.sigmoid(x[0]))), [x])[0]]
    outs = [sg.logsumexp(x[1:], axis=1), sg.log_softmax(x[2:])] + grads
    fn = both([x], outs, [rows], rtol=1e-12, atol=1e-12)
    got = fn(rows)
    assert np.all(got[2][0] == 0.5) and np.all(got[3][0] == 0.5)
    assert got[0][0] == np.inf


def test_max_norm_reduction_reads_the_matmul_epilogue():
    """The column norms square the GEMM epilogue's stored output in their own prologue
    (lower.py moves the square out of the epilogue)."""
    x = sg.placeholder(("batch", 6), name="x")
    g = sg.placeholder(("batch", 5), name="g")
    w = sg.variable(RNG.standard_normal((6, 5)).astype(np.float32), name="w")
    new = w - 0.1 * (sg.transpose(x) @ g)
    norms = sg.sqrt(sg.sum(new * new, axis=0, keepdims=True))
    inputs, outputs = [x, g], [new * (sg.minimum(norms, 1.5) / (norms + 1e-7))]
    xs = RNG.standard_normal((7, 6)).astype(np.float32)
    gs = RNG.standard_normal((7, 5)).astype(np.float32)
    fn = both(inputs, outputs, [xs, gs], atol=1e-5)
    assert {"matmul", "reduce"} <= kernel_kinds(fn)


def test_whole_array_operands_from_views_and_invariants():
    """concatenate of slices and of a size-1 constant, gradients that feed a broadcast 1 to a
    GEMM or a scatter: the slice's copy ran unordered (its buffer recycled: garbage)."""
    x = sg.placeholder((5,), name="x")
    y = sg.placeholder((2,), name="y")
    idx = sg.placeholder(("batch",), "int32", name="idx")
    table = sg.variable(np.arange(8.0, dtype=np.float32).reshape(4, 2), name="table")
    outs = [sg.concatenate([y, x[1:]]), sg.concatenate([x[:2], x[3:]]),
            sg.concatenate([sg.constant(np.zeros(1, np.float32)), x[:-1]]),
            sg.grad(sg.mean(table[idx]), table),
            sg.grad(sg.sum(sg.reshape(x[:4], (2, 2)) @ table[:2]), table),
            sg.tanh(table) @ sg.constant(np.eye(2, dtype=np.float32)) + sg.tanh(table),
            sg.cast(sg.argmax(sg.broadcast_to(sg.tanh(x[0]), (2,)), 0), "float32")
            + sg.broadcast_to(sg.tanh(x[0]), (2,)),
            sg.sign(sg.argmax(x, 0, keepdims=True))]  # a size-1 load was hoisted above its loop
    both([x, y, idx], outs, [np.arange(1.0, 6.0, dtype=np.float32),
                             np.array([7, 8], np.float32), np.array([0, 3, 3], np.int32)])


def test_a_max_over_an_empty_batch_raises_and_changes_nothing():
    x = sg.placeholder(("n", 3), name="x")
    w = sg.variable(np.ones(3, np.float32), name="w")
    for peak in (sg.max(x, axis=0), sg.argmax(x, axis=0)):
        fn = sg.function([x], peak, updates={w: w * 2.0}, backend="cuda")
        with pytest.raises(sg.SymgraphError, match=f"{peak.op} node .*empty axis"):
            fn(np.zeros((0, 3), np.float32))
        np.testing.assert_array_equal(w.value, np.ones(3))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_tiled_matmul_and_transposed_operands(ta, tb):
    m, k, n = 19, 21, 23  # not multiples of the tile: edge padding is exercised
    a = RNG.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = RNG.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    pa, pb = sg.placeholder(a.shape, name="a"), sg.placeholder(b.shape, name="b")
    bias = sg.placeholder((n,), name="bias")
    lhs = sg.transpose(pa) if ta else pa
    rhs = sg.transpose(pb) if tb else pb
    out = sg.relu(lhs @ rhs + bias)  # the bias/activation epilogue is fused
    fn = both([pa, pb, bias], [out], [a, b, RNG.standard_normal(n).astype(np.float32)],
              rtol=1e-4, atol=1e-4)
    matmuls = [k for k in fn._run.plan.program.kernels if k.kind == "matmul"]
    assert len(matmuls) == 1 and len(matmuls[0].nodes) > 1


def test_gather_scatter_add_and_one_hot():
    table = sg.placeholder((6, 4), name="table")
    labels = sg.placeholder(("batch",), dtype="int32", name="labels")
    rows = sg.take(table, labels)
    g = sg.grad(sg.sum(rows * rows), table)  # scatter_add of the gathered rows (atomics)
    hot = sg.one_hot(labels, 6)
    g_slice = sg.grad(sg.sum(table[1:5:2, 1:] ** 2.0), table)  # unslice: the slice's adjoint
    t = RNG.standard_normal((6, 4)).astype(np.float32)
    lab = np.array([1, 3, 1, 5, 1, 0, 3], np.int32)  # repeats: atomics must add them all
    both([table, labels], [rows, g, hot, g_slice], [t, lab])


def test_counter_random_is_bit_identical():
    step = sg.variable(np.int64(41), name="step", trainable=False)
    u = sg.random.uniform((7, 33), seed=5, step=step) if hasattr(sg, "random") and hasattr(
        sg.random, "uniform") else sg.composites.uniform((7, 33), seed=5, step=step)
    fn = sg.function([], [u], updates={step: step + np.int64(1)}, backend="cuda")
    ref = sg.function([], [u], backend="numpy")
    for _ in range(2):
        want = ref()[0]
        got = fn()[0]
        assert np.array_equal(got, want)  # same bits, not just close
    assert int(step.value) == 43


@pytest.mark.parametrize("step", [np.int32(3), np.int64(3)])
def test_random_draws_take_an_int32_step_too(step):
    # an int32 step overflowed int32 in the key's salt addition ("Python integer 4294967295 out
    # of bounds for int32" in the simulator)
    s = sg.constant(step)
    both([], [sg.random.uniform((5,), 7, s), sg.random.normal((5,), 7, s)], [])


def test_state_stays_on_device_and_host_writes_invalidate():
    w = sg.variable(np.ones(4, np.float32), name="w")
    x = sg.placeholder((4,), name="x")
    fn = sg.function([x], [sg.sum(w * x)], updates={w: w * 2.0}, backend="cuda")
    one = np.ones(4, np.float32)
    from symgraph.backends.cuda import device

    assert fn(one)[0] == 4.0
    uploads = device.STATS["state_uploads"]
    for expected in (8.0, 16.0, 32.0):
        assert fn(one)[0] == expected
        assert isinstance(w._pending, device.DeviceValue) and w._host is None  # not copied back
    assert device.STATS["state_uploads"] == uploads  # each step adopted the last one's update
    np.testing.assert_array_equal(w.value, np.full(4, 16.0, np.float32))  # read: one copy back
    w.value = np.full(4, 10.0, np.float32)  # a host write: the device copy must be refreshed
    assert fn(one)[0] == 40.0
    assert device.STATS["state_uploads"] == uploads + 1
    np.testing.assert_array_equal(w.value, np.full(4, 20.0, np.float32))


def _train(builder, backend, x, y, steps):
    graph = builder()
    fn = sg.function(graph.inputs, graph.loss, updates=graph.updates, backend=backend)
    losses = [float(fn(x, y)) for _ in range(steps)]
    if backend == "cuda":  # independent kernels went to both streams, synchronized by events
        plan = fn._run.plan
        assert set(plan.lane.values()) == {0, 1} and any(plan.cross.values())
    return losses, {k: v.value for k, v in graph.state.items()}


@pytest.mark.parametrize("builder", ["m1", "m2"])
def test_small_mlp_training_steps_match_reference(builder):
    """Dropout (M1: SGD momentum) and batch norm (M2: Adam) steps equal the reference."""
    if builder == "m1":
        make = lambda: build_m1(sizes=(12, 16, 16, 10), seed=3)  # noqa: E731
    else:
        make = lambda: build_m2(sizes=(12, 16, 16, 10), seed=3)  # noqa: E731
    x = RNG.standard_normal((8, 12)).astype(np.float32)
    y = RNG.integers(0, 10, 8).astype(np.int32)
    ref_loss, ref_state = _train(make, "numpy", x, y, 2)
    got_loss, got_state = _train(make, "cuda", x, y, 2)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5, atol=1e-6)
    for name, want in ref_state.items():
        np.testing.assert_allclose(got_state[name], want, rtol=1e-4, atol=1e-6, err_msg=name)


def test_dropout_masks_bit_identical():
    x = sg.placeholder((9, 31), name="x")
    step = sg.variable(np.int64(3), name="step", trainable=False)
    out = sg.dropout(x, 0.5, seed=11, step=step)
    a = RNG.uniform(1.0, 2.0, (9, 31)).astype(np.float32)
    got = sg.function([x], out, backend="cuda")(a)
    want = sg.function([x], out, backend="numpy")(a)
    assert np.array_equal(got == 0, want == 0) and (got == 0).any()


def test_nan_check_names_the_node():
    x = sg.placeholder((4,), name="x")
    # (not log(-1): the simulator runs Python's math, which raises where a GPU gives NaN)
    out = (x * 2.0) / sg.maximum(x, 0.0)
    fn = sg.function([x], out, backend="cuda", check_nan=True)
    with pytest.raises(sg.SymgraphError, match="(NaN|inf) first produced by div"):
        fn(np.array([1.0, -1.0, 2.0, 3.0], np.float32))


def test_float64_and_integer_dtypes():
    a = sg.placeholder((5, 7), dtype="float64", name="a")
    i = sg.placeholder((5, 7), dtype="int64", name="i")
    x = RNG.standard_normal((5, 7))
    k = RNG.integers(-9, 9, (5, 7))
    both([a, i], [sg.sigmoid(a) @ sg.transpose(a), sg.sum(i * 3, axis=0), sg.max(i, axis=1),
                  sg.abs(i) + 1, sg.cast(i, "float64") * a], [x, k], rtol=1e-12, atol=1e-12)


def test_nan_survives_max_min_argmax_maximum_and_sign():
    # a GPU's fmax/fmin drop NaN; the simulator's Python max kept it only in first position
    x = sg.placeholder((2, 4), name="x")
    a = np.array([[1, np.nan, 3, 0], [np.nan, -1, -2, 5]], np.float32)
    outs = [sg.max(x, 1), sg.max(x), sg.min(x, 1), sg.argmax(x, 1), sg.maximum(1.0, x),
            sg.minimum(x, 0.5), sg.sign(x)]
    both([x], outs, [a])


def test_argmax_of_a_mask():
    x = sg.placeholder((3, 4), name="x")
    a = np.array([[-1, 2, 3, -1], [1, -1, 1, -1], [-1, -1, -1, 4]], np.float32)
    both([x], [sg.argmax(x > 0, axis=1)], [a])  # was a ValueError from np.iinfo(bool)


def test_out_of_range_labels_raise_and_change_nothing():
    w = sg.variable(np.arange(8, dtype=np.float32).reshape(4, 2), name="w")
    idx = sg.placeholder(("n",), dtype="int32", name="idx")
    loss = sg.sum(sg.take(w, idx) ** 2.0)
    fn = sg.function([idx], loss, updates={w: w - 0.1 * sg.grad(loss, w)}, backend="cuda")
    with pytest.raises(sg.SymgraphError, match="take node .*index 4 is out of bounds"):
        fn(np.array([0, 4, 2], np.int32))  # a GPU does not bounds-check its loads
    np.testing.assert_array_equal(w.value, np.arange(8).reshape(4, 2))


def test_computed_and_negative_labels_match_reference():
    """Labels a kernel computes (argmax, idx + 1, a cast) and negative ones, wrapped as NumPy
    wraps them, in take and in its gradient's scatter_add; inputs' negative labels too."""
    w = sg.variable(np.arange(12, dtype=np.float32).reshape(6, 2), name="w")
    x = sg.placeholder((3, 5), name="x")
    idx = sg.placeholder(("n",), dtype="int32", name="idx")
    outs = [sg.take(w, sg.argmax(x, 1)), sg.take(w, idx + 1), sg.take(w, idx),
            sg.take(w, sg.cast(x[:, 0], "int32")), sg.take(w[1:], idx),
            sg.grad(sg.sum(sg.take(w, idx - 2) * 3.0), w),
            sg.grad(sg.sum(sg.take(w, sg.cast(x[:, 1], "int64")) ** 2.0), w)]
    xs = RNG.standard_normal((3, 5)).astype(np.float32)
    xs[:, 0], xs[:, 1] = [-6, 5, -1], [-2, -2, 4]
    both([x, idx], outs, [xs, np.array([0, 3, -4, -3, -1], np.int32)])


def _raises_out_of_range(fn, args, op, bad, size):
    with pytest.raises(sg.SymgraphError, match=f"evaluating {op} node .*failed: index {bad} is "
                                               f"out of bounds for axis 0 with size {size}"):
        fn(*args)


@pytest.mark.parametrize("check_nan", [False, True])
def test_computed_out_of_range_labels_raise_and_change_nothing(check_nan):
    """A training step whose gathered rows come from computed labels: a bad label (too large,
    or below -n) is a SymgraphError naming the take, no variable changes (also when the
    weights are device-resident from an earlier step), and the next good call works."""
    init = np.arange(8, dtype=np.float32).reshape(4, 2)
    w = sg.variable(init.copy(), name="w")
    step = sg.variable(np.int64(0), name="step", trainable=False)
    idx = sg.placeholder(("n",), dtype="int32", name="idx")
    loss = sg.sum(sg.take(w, idx + 1) ** 2.0)
    updates = {w: w - 0.01 * sg.grad(loss, w), step: step + np.int64(1)}
    fn = sg.function([idx], loss, updates=updates, backend="cuda", check_nan=check_nan)
    ref = sg.function([idx], loss, updates=updates, backend="numpy")
    good = np.array([0, 2, -4], np.int32)
    fn(good)  # w now lives on the device as the step's output
    after = w.value.copy()
    for bad, shown in (([0, 3, 1], 4), ([-6, 1], -5)):
        _raises_out_of_range(fn, [np.array(bad, np.int32)], "take", shown, 4)
        np.testing.assert_array_equal(w.value, after)
        assert int(step.value) == 1
    got = fn(good)
    w.value, step.value = after, np.int64(1)
    np.testing.assert_allclose(got, ref(good), rtol=1e-6)
    assert int(step.value) == 2


def test_scatter_add_of_computed_labels_raises_and_changes_nothing():
    """The gradient of a take alone (its forward pass pruned) is a scatter_add: its labels are
    checked on the device too, before any update is applied."""
    init = np.ones((4, 3), np.float32)
    w = sg.variable(init.copy(), name="w")
    x = sg.placeholder(("n", 5), name="x")
    g = sg.grad(sg.sum(sg.take(w, sg.argmax(x, 1) * 2)), w)
    fn = sg.function([x], g, updates={w: w - 0.5 * g}, backend="cuda")
    assert [n.op for k in fn._run.plan.program.kernels for n in k.nodes].count("take") == 0
    xs = np.zeros((3, 5), np.float32)
    xs[:, 1] = 1.0  # argmax 1: row 2
    np.testing.assert_array_equal(fn(xs)[:, 0], [0, 0, 3, 0])
    xs[1] = [0, 0, 1, 0, 0]  # argmax 2: row 4 of 4
    _raises_out_of_range(fn, [xs], "scatter_add", 4, 4)
    np.testing.assert_array_equal(w.value, init - 0.5 * np.array([[0], [0], [3], [0]]))
    xs[1] = [0, 1, 0, 0, 0]
    np.testing.assert_array_equal(fn(xs)[:, 0], [0, 0, 3, 0])


def test_a_counter_update_is_kept_on_empty_batches():
    x = sg.placeholder(("n", 3), name="x")
    cnt = sg.variable(np.zeros((), np.float32), name="cnt")
    fn = sg.function([x], x * (cnt + 1.0), updates={cnt: cnt + 1.0}, backend="cuda")
    fn(np.ones((2, 3), np.float32))
    for _ in range(3):  # its writer was the batch kernel, which is not launched on 0 rows
        fn(np.zeros((0, 3), np.float32))
    assert float(cnt.value) == 4.0


def test_two_variables_updated_with_one_node_keep_their_own_arrays():
    # they shared one device array: later steps on one changed the other
    x = sg.placeholder((3,), name="x")
    p1 = sg.variable(np.zeros(3, np.float32), name="p1")
    p2 = sg.variable(np.zeros(3, np.float32), name="p2")
    both_ = sg.function([x], [], updates={p1: x * 2.0, p2: x * 2.0}, backend="cuda")
    only1 = sg.function([x], [], updates={p1: p1 + x}, backend="cuda")
    both_(np.ones(3, np.float32))
    for _ in range(3):
        only1(np.ones(3, np.float32))
    np.testing.assert_array_equal(p1.value, 5.0)
    np.testing.assert_array_equal(p2.value, 2.0)


def test_overflow_and_domain_edges_give_ieee_values_as_a_gpu():
    """exp(1000), log(0), sqrt(-1): libdevice gives inf, -inf, NaN; the simulator's kernels
    must too (Python's math raised OverflowError / ValueError inside the kernel)."""
    x = sg.placeholder(("batch", 3), name="x")
    a = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    with np.errstate(all="ignore"):
        both([x], [sg.sigmoid(x), sg.exp(x), sg.log(sg.relu(x)), sg.sqrt(x), sg.expm1(x),
                   sg.log1p(x - 1.0), sg.sin(x * np.float32(np.inf)),
                   sg.cos(x * np.float32(np.inf))], [a])


def test_fit_on_cuda_stops_at_an_overflowing_loss_with_the_nan_report():
    from symgraph import nn

    nn.set_random_seed(0)
    model = nn.Sequential([nn.Dense(1, input_dim=1, activation="exponential",
                                    kernel_initializer="ones")])
    model.compile(optimizer="sgd", loss="mse", backend="cuda")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(np.array([[1000.0]], np.float32), np.zeros(1), verbose=0)
    assert history.nan_report
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
