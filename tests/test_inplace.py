"""symgraph/inplace.py: which updates are written over their variable, and the Numba backend
doing it without anyone seeing the difference (values, failing calls, held arrays)."""

import weakref

import numpy as np
import pytest

import symgraph as sg
from symgraph.bench.workloads import build_m1, make_batch
from symgraph.errors import SymgraphError
from symgraph.inplace import ancestors, plan_inplace
from symgraph.lower import lower


def _plan(inputs, outputs, updates):
    """The lowered program of outputs + updates, planned: {variable name: result buffer}."""
    program = lower(inputs, list(outputs) + [e for _, e in updates])
    planned = plan_inplace(program, [v for v, _ in updates])
    return planned, {var.name: bid for bid, var in planned.inplace.items()}


def _sgd_step():
    x = sg.placeholder(("n", 6), name="x")
    y = sg.placeholder(("n",), "int32", name="y")
    w = sg.variable(np.full((6, 3), 0.1, np.float32), name="w")
    m = sg.variable(np.zeros((6, 3), np.float32), name="m")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(sg.relu(x @ w), y))
    (g,) = sg.grad(loss, [w])
    new_m = m * 0.9 - g * 0.1
    return [x, y], loss, [(m, new_m), (w, w + new_m)]


def test_a_momentum_step_writes_weights_and_slots_in_place_with_the_product_elsewhere():
    inputs, loss, updates = _sgd_step()
    program, planned = _plan(inputs, [loss], updates)
    assert set(planned) == {"w", "m"}
    (gemm,) = [k for k in program.kernels if k.kind == "matmul"
               and any(program.buffer(n).id in program.inplace for n in k.writes)]
    # the weight gradient's product goes to a scratch buffer, not over m or w
    assert program.buffer(gemm.root).kind == "temp"
    assert program.buffer(gemm.root).id not in program.inplace


def test_every_reader_runs_before_the_writer_and_ids_stay_positions():
    inputs, loss, updates = _sgd_step()
    program, planned = _plan(inputs, [loss], updates)
    assert [k.id for k in program.kernels] == list(range(len(program.kernels)))
    anc = ancestors(program)
    for bid, var in program.inplace.items():
        (writer,) = [k for k in program.kernels if any(program.buffer_of.get(n.id) == bid
                                                        for n in k.writes)]
        for k in program.kernels:
            if k is not writer and any(r is var for r in k.reads):
                assert k.id in anc[writer.id], (str(k), str(writer))
    for k in program.kernels:  # still a topological order
        assert all(d < k.id for d in program.deps[k.id])


def test_unsafe_updates_stay_out_of_place():
    x = sg.placeholder((4, 4), name="x")
    a = sg.variable(np.eye(4, dtype=np.float32), name="a")  # read through a transpose
    b = sg.variable(np.eye(4, dtype=np.float32), name="b")  # a matmul operand
    c = sg.variable(np.ones(4, np.float32), name="c")  # also returned as an output
    d = sg.variable(np.ones((4, 4), np.float32), name="d")  # its new value is also an output
    e = sg.variable(np.ones((4, 4), np.float32), name="e")  # plain: in place
    new_d = d * x
    updates = [(a, a + sg.transpose(a)), (b, b @ x), (c, c * 2.0), (d, new_d), (e, e - x)]
    _, planned = _plan([x], [c, new_d], updates)
    assert set(planned) == {"e"}


def test_a_kernel_that_can_fail_runs_before_any_write_in_place():
    table = sg.constant(np.arange(12, dtype=np.float32).reshape(6, 2))
    idx = sg.placeholder(("n",), "int32", name="idx")
    w = sg.variable(np.ones(5, np.float32), name="w")
    v = sg.variable(np.ones(5, np.float32), name="v")
    new_v = v * 3.0
    gathered = sg.take(table, idx)  # independent of w's update: made to run before it
    program, planned = _plan([idx], [gathered], [(w, w * 2.0), (v, new_v)])
    assert set(planned) == {"w", "v"}
    anc = ancestors(program)
    (take,) = [k for k in program.kernels if k.nodes[0].op == "take"]
    for k in program.kernels:
        if any(program.buffer_of.get(n.id) in program.inplace for n in k.writes):
            assert take.id in anc[k.id]
    # a gather of the new value can only run after the write: that update stays out of place
    _, planned = _plan([idx], [sg.take(sg.reshape(new_v, (5, 1)), idx)], [(v, new_v)])
    assert planned == {}


@pytest.mark.parametrize("reduce", ["max", "argmax"])
def test_a_max_over_an_empty_batch_raises_before_any_write(reduce):
    """A max or argmax over the batch axis fails on a batch of 0 (it returned -inf or index 0
    on numba): it counts as a kernel that can fail, so it runs before the in-place writes and
    the failing call changes no state."""
    x = sg.placeholder(("n", 3), name="x")
    w = sg.variable(np.ones(3, np.float32), name="w")
    peak = sg.max(x, axis=0) if reduce == "max" else sg.argmax(x, axis=0)
    fn = sg.function([x], peak, updates={w: w * 2.0}, backend="numba")
    assert fn._run.program.inplace  # w is written in place
    (red,) = [k for k in fn._run.program.kernels if k.nodes[-1].op == reduce]
    anc = ancestors(fn._run.program)
    writer = [k for k in fn._run.program.kernels if k.writes and any(
        fn._run.program.buffer_of.get(n.id) in fn._run.program.inplace for n in k.writes)]
    assert all(red.id in anc[k.id] for k in writer)
    with pytest.raises(SymgraphError, match=f"{reduce} node"):
        fn(np.zeros((0, 3), np.float32))
    np.testing.assert_array_equal(w.value, np.ones(3))
    np.testing.assert_array_equal(fn(np.eye(3, dtype=np.float32)), [1, 1, 1] if reduce == "max"
                                  else [0, 1, 2])
    np.testing.assert_array_equal(w.value, 2 * np.ones(3))


@pytest.fixture
def numba_step():
    inputs, loss, updates = _sgd_step()
    fn = sg.function(inputs, loss, updates=updates, backend="numba")
    ref_inputs, ref_loss, ref_updates = _sgd_step()
    ref = sg.function(ref_inputs, ref_loss, updates=ref_updates, backend="numpy")
    return fn, ref, {v.name: v for v, _ in updates}, {v.name: v for v, _ in ref_updates}


def test_numba_writes_in_place_and_equals_the_reference(numba_step):
    fn, ref, state, ref_state = numba_step
    assert len(fn._run.program.inplace) == 2
    arrays = {k: weakref.ref(v._host) for k, v in state.items()}  # (a reference would block it)
    rng = np.random.default_rng(0)
    for n in (5, 5, 3):
        x = rng.standard_normal((n, 6)).astype(np.float32)
        y = rng.integers(0, 3, n).astype(np.int32)
        np.testing.assert_allclose(fn(x, y), ref(x, y), rtol=1e-5)
    for k, v in state.items():
        assert v._host is arrays[k]()  # the same memory, written in place
        np.testing.assert_allclose(v.value, ref_state[k].value, rtol=1e-5, atol=1e-7)


def test_an_array_someone_holds_is_never_written(numba_step):
    fn, _, state, _ = numba_step
    held = state["w"]._value  # a reference into state (the runtime's own undo lists do this)
    before = held.copy()
    x, y = np.ones((4, 6), np.float32), np.zeros(4, np.int32)
    fn(x, y)
    np.testing.assert_array_equal(held, before)
    assert state["w"]._host is not held and state["m"]._host is not None
    del held
    now = weakref.ref(state["w"]._host)
    fn(x, y)
    assert state["w"]._host is now()  # nobody holds it any more: in place again


def test_a_failing_call_changes_no_state():
    idx = sg.placeholder(("n",), "int32", name="idx")
    table = sg.variable(np.arange(10, dtype=np.float32).reshape(5, 2), name="table")
    w = sg.variable(np.ones(4, np.float32), name="w")
    loss = sg.sum(sg.take(table, idx) ** 2) + sg.sum(w * w)
    g_table, g_w = sg.grad(loss, [table, w])  # a scatter_add: bounds-checked too
    fn = sg.function([idx], loss, updates={table: table - 0.1 * g_table, w: w - 0.1 * g_w},
                     backend="numba")
    assert len(fn._run.program.inplace) == 2
    fn(np.array([0, 4], np.int32))
    before = {v.name: v.value for v in (table, w)}
    with pytest.raises(SymgraphError, match="out of range|index"):
        fn(np.array([1, 5], np.int32))  # row 5 of 5
    for v in (table, w):
        np.testing.assert_array_equal(v.value, before[v.name])


def test_check_nan_and_the_switch_turn_it_off(monkeypatch):
    inputs, loss, updates = _sgd_step()
    fn = sg.function(inputs, loss, updates=updates, backend="numba", check_nan=True)
    assert fn._run.program.inplace == {}
    monkeypatch.setenv("SYMGRAPH_INPLACE", "0")
    inputs, loss, updates = _sgd_step()
    fn = sg.function(inputs, loss, updates=updates, backend="numba")
    assert fn._run.program.inplace == {}


def test_an_output_of_a_variable_shows_its_old_value():
    x = sg.placeholder((3,), name="x")
    w = sg.variable(np.ones(3, np.float32), name="w")
    fn = sg.function([x], [w * 1.0, w], updates={w: w + x}, backend="numba")
    old, out = fn(np.ones(3, np.float32))
    np.testing.assert_array_equal(out, np.ones(3))
    np.testing.assert_array_equal(old, np.ones(3))
    np.testing.assert_array_equal(w.value, 2 * np.ones(3))


@pytest.mark.parametrize("update", ["copy", "log", "input", "cast", "last_loss"])
def test_an_update_that_does_not_read_its_variable(update):
    """Nothing reads `d` (its new value is computed from others): the plan used to crash on
    such an update (no reader list to join); now it is written in place and equals NumPy."""
    x = sg.placeholder((2, 3), name="x")
    results = {}
    for backend in ("numpy", "numba"):
        d = sg.variable(np.ones((2, 3), np.float32), name="d")
        w = sg.variable(np.full((2, 3), 3.0, np.float32), name="w")
        loss = sg.sum(x * w)
        new = {"copy": w * 2.0, "log": sg.log(w), "input": w * 0.0 + x,
               "cast": sg.cast(sg.cast(w, "float64") * 0.5, "float32"),
               "last_loss": loss + d * 0.0}[update]
        fn = sg.function([x], loss, updates={d: new, w: w - 0.1 * x}, backend=backend)
        values = [fn(np.full((2, 3), float(i), np.float32)) for i in range(3)]
        results[backend] = values, d.value.copy(), w.value.copy()
    for want, got in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_m1_at_tiny_sizes_keeps_every_state_array():
    graph = build_m1(sizes=(20, 16, 16, 4))
    fn = sg.function(*graph, backend="numba")
    arrays = {k: weakref.ref(v._host) for k, v in graph.state.items()}
    for k in range(3):
        fn(*make_batch(8, 20, 4, seed=k))
    kept = {k for k, v in graph.state.items() if v._host is arrays[k]()}
    assert kept == set(graph.state)  # weights, biases, momenta and the dropout step counter


def test_the_thread_pool_driver_honours_the_added_edges():
    """workers=2 runs independent kernels at once: the input-gradient GEMMs that read a weight
    must still finish before that weight's update overwrites it (the edges inplace.py adds)."""
    graphs = [build_m1(sizes=(20, 16, 16, 4), rates=(0.0, 0.0)) for _ in range(2)]
    ref = sg.function(*graphs[0], backend="numpy")
    fn = sg.function(*graphs[1], backend="numba", workers=2)
    assert len(fn._run.program.inplace) == 13  # 3 weights, 3 biases, their momenta, step
    arrays = {k: weakref.ref(v._host) for k, v in graphs[1].state.items()}
    for k in range(4):
        batch = make_batch(8, 20, 4, seed=k)
        np.testing.assert_allclose(fn(*batch), ref(*batch), rtol=1e-5)
    for name, var in graphs[1].state.items():
        assert var._host is arrays[name]()
        np.testing.assert_allclose(var.value, graphs[0].state[name].value, rtol=1e-4,
                                   atol=1e-6, err_msg=name)


def test_steps_from_two_threads_run_one_at_a_time():
    """Calls writing a variable in place run one at a time, whichever function writes it:
    threads' steps neither read half-written state nor lose an update (two functions sharing
    a variable ended with a mix of 100 and 101 in one array before)."""
    import threading

    x = sg.placeholder((1 << 20,), name="x")
    w = sg.variable(np.zeros(1 << 20, np.float32), name="w")
    fn = sg.function([x], sg.sum(x), updates={w: w + x}, backend="numba")
    # another function writing the same variable in place (with a second one): it waits too
    v = sg.variable(np.zeros(3, np.float32), name="v")
    other = sg.function([x], sg.max(x), updates={v: v + 1.0, w: w + 2.0 * x}, backend="numba")
    assert len(fn._run.program.inplace) == 1 and len(other._run.program.inplace) == 2
    ones = np.ones(1 << 20, np.float32)

    def steps(f):
        for _ in range(40):
            f(ones)
    threads = [threading.Thread(target=steps, args=(f,)) for f in (fn, fn, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(w.value, np.full(1 << 20, 160, np.float32))
    np.testing.assert_array_equal(v.value, np.full(3, 40, np.float32))


def test_products_sharing_a_scratch_buffer_never_run_at_once():
    """The weight-gradient GEMMs of two layers put their products in one scratch buffer: they
    are ordered in the kernel DAG, so workers=2 runs them one after the other (they ran
    together and overwrote each other's gradient: wrong weights in 3-19% of calls with
    OpenBLAS, 91% with MKL)."""
    rng = np.random.default_rng(0)
    x = sg.placeholder(("batch", 30), "float32", name="x")
    y = sg.placeholder(("batch",), "int32", name="y")
    init = [rng.standard_normal((30, 200)).astype(np.float32) * 0.1,
            rng.standard_normal((200, 10)).astype(np.float32) * 0.1]

    def step(workers):
        w1, w2 = (sg.variable(a, name=f"W{i}") for i, a in enumerate(init))
        loss = sg.mean(sg.sparse_softmax_cross_entropy(sg.tanh(x @ w1) @ w2, y))
        g1, g2 = sg.grad(loss, [w1, w2])
        return sg.function([x, y], loss, updates={w1: w1 - 0.1 * g1, w2: w2 - 0.1 * g2},
                           backend="numba", workers=workers), (w1, w2)

    (serial, want), (parallel, got) = step(1), step(2)
    program = parallel._run.program
    anc = ancestors(program)
    by_buffer: dict = {}
    for k in program.kernels:
        if k.kind == "matmul" and k.root.id in program.buffer_of:
            by_buffer.setdefault(program.buffer_of[k.root.id], []).append(k.id)
    shared = [ks for ks in by_buffer.values() if len(ks) > 1]
    assert shared, "the two weight gradients no longer share a scratch: update this test"
    for ks in shared:
        assert all(a in anc[b] for a, b in zip(ks, ks[1:]))
    xs = rng.standard_normal((64, 30)).astype(np.float32)
    ys = (np.arange(64) % 10).astype(np.int32)
    for _ in range(300):
        for v, a in zip(want + got, init + init):  # the same state before every call
            v.value = a
        serial(xs, ys)
        parallel(xs, ys)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b.value, a.value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend,check_nan", [("numpy", False), ("numba", False),
                                               ("numba", True)],
                         ids=["numpy", "numba-inplace", "numba-check-nan"])
def test_no_update_is_lost_when_threads_step_at_once(backend, check_nan):
    """Four threads each add 1 to a variable 3,000 times: every backend ends at 12,000. The
    lock used to cover only a numba step writing in place (NumPy steps kept ~7,000; a numba
    step that found the array referenced wrote a fresh one, assigned after the lock was
    released, and lost updates under load); it now covers each call until the assignment.
    A short switch interval makes the threads interleave as a loaded machine does."""
    import sys
    import threading

    w = sg.variable(np.zeros(256, np.float32), name="w")
    x = sg.placeholder((1,), "float32", name="x")
    step = sg.function([x], sg.sum(x), updates={w: w + 1.0}, backend=backend,
                       check_nan=check_nan)
    one = np.ones(1, np.float32)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=lambda: [step(one) for _ in range(3000)])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    np.testing.assert_array_equal(w.value, np.full(256, 12000, np.float32))
