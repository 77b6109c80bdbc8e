"""Tests for symgraph/backends/parallel.py: the DAG runner and the NumPy backend on k threads."""

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgraph as sg
from symgraph.backends.numpy_ref import NumpyBackend
from symgraph.backends.parallel import DagRunner, ProgramRunner, compile_program, overlap, run_dag
from symgraph.errors import SymgraphError
from symgraph.lower import lower
from symgraph.memplan import MemoryPlan, plan_program
from symgraph.passes.pipeline import optimize
from symgraph.schedule import critical_path_schedule, schedule_program


@st.composite
def dags(draw):
    n = draw(st.integers(1, 14))
    return {i: sorted(set(draw(st.lists(st.integers(0, i - 1), max_size=3)))) if i else []
            for i in range(n)}


@settings(max_examples=40, deadline=None)
@given(dags(), st.integers(1, 3), st.sampled_from(["dynamic", "static"]))
def test_every_kernel_runs_once_after_its_predecessors(deps, workers, mode):
    finished, lock = [], threading.Lock()

    def execute(k):
        with lock:
            assert all(p in finished for p in deps[k]), f"{k} started before its predecessors"
            assert k not in finished
        with lock:
            finished.append(k)

    sched = critical_path_schedule(deps, {k: 1.0 + k % 3 for k in deps}, workers)
    DagRunner(deps, workers, sched, mode).run(execute)
    assert sorted(finished) == sorted(deps)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_independent_kernels_really_run_concurrently(mode):
    # Both kernels wait on one barrier: only a runner that overlaps them gets past it.
    barrier = threading.Barrier(2, timeout=10)
    deps = {"a": [], "b": [], "join": ["a", "b"]}
    ran = []
    run_dag(deps, lambda k: barrier.wait() if k != "join" else ran.append(k), workers=2,
            schedule=critical_path_schedule(deps, dict.fromkeys(deps, 1.0), 2), mode=mode)
    assert ran == ["join"]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_exception_propagates_and_stops_dispatch(mode):
    deps = {"slow": [], "bad": [], "after_bad": ["bad"], "after_slow": ["slow"]}
    started, done = [], []

    def execute(k):
        started.append(k)
        if k == "bad":
            raise KeyError("boom in bad")
        if k == "slow":
            time.sleep(0.05)
        done.append(k)

    sched = critical_path_schedule(deps, {"slow": 5.0, "bad": 1.0, "after_bad": 1.0,
                                          "after_slow": 1.0}, 2)
    with pytest.raises(KeyError, match="boom in bad"):
        DagRunner(deps, 2, sched, mode).run(execute)
    assert "after_bad" not in started
    # a kernel that had started was waited for, not abandoned mid-write (on a loaded machine
    # "slow" may not have started when "bad" failed; then it never runs)
    assert set(started) - {"bad"} == set(done)


def test_overlap_is_busy_over_wall_seconds():
    assert overlap([]) == 0.0
    assert overlap([("a", 1, 0.0, 1.0), ("b", 1, 1.0, 3.0)]) == 1.0  # serial
    assert overlap([("a", 1, 0.0, 2.0), ("b", 2, 0.0, 2.0)]) == 2.0  # two always busy
    assert overlap([("a", 1, 0.0, 2.0), ("b", 2, 1.0, 3.0)]) == 4.0 / 3.0


def test_trace_records_each_kernel_once_on_its_thread():
    deps = {"a": [], "b": [], "c": ["a", "b"]}
    barrier = threading.Barrier(2, timeout=10)  # a and b meet: they overlap with 2 workers
    for workers in (1, 2):
        trace = []
        DagRunner(deps, workers).run(lambda k: barrier.wait() if workers == 2 and k != "c"
                                     else None, trace)
        assert sorted(t[0] for t in trace) == ["a", "b", "c"]
        assert len({t[1] for t in trace}) <= workers
        assert all(t[2] <= t[3] for t in trace)
        span = {t[0]: t[2:] for t in trace}
        assert span["c"][0] >= max(span["a"][1], span["b"][1])  # c after its inputs
        if workers == 1:
            assert overlap(trace) <= 1.0 + 1e-9
        else:  # both were running when the later one reached the barrier
            assert max(span["a"][0], span["b"][0]) <= min(span["a"][1], span["b"][1])


def test_runner_errors():
    with pytest.raises(SymgraphError, match="workers"):
        DagRunner({"a": []}, workers=0)
    with pytest.raises(SymgraphError, match="mode"):
        DagRunner({"a": []}, workers=2, mode="eager")
    sched = critical_path_schedule({"a": []}, {"a": 1.0}, 3)
    with pytest.raises(SymgraphError, match="lanes"):
        DagRunner({"a": []}, workers=2, schedule=sched, mode="static")


# --- the NumPy backend on k threads --------------------------------------------------------


def mlp_step(seed=0, hidden=16):
    """A two-layer MLP training step (loss and SGD updates) as optimized graph results."""
    rng = np.random.default_rng(seed)
    x = sg.placeholder(("batch", 8), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    params = [sg.variable(rng.normal(size=(8, hidden)).astype(np.float32), name="W1"),
              sg.variable(np.zeros(hidden, np.float32), name="b1"),
              sg.variable(rng.normal(size=(hidden, 4)).astype(np.float32), name="W2"),
              sg.variable(np.zeros(4, np.float32), name="b2")]
    w1, b1, w2, b2 = params
    loss = sg.mean(sg.sparse_softmax_cross_entropy(sg.relu(x @ w1 + b1) @ w2 + b2, y))
    grads = sg.grad(loss, params)
    return x, y, params, loss, {p: p - 0.1 * g for p, g in zip(params, grads, strict=True)}


def batch(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


def step_results(workers):
    x, y, params, loss, updates = mlp_step()
    f = sg.function([x, y], loss, updates=updates, workers=workers)
    losses = [float(f(*batch(n, seed=n))) for n in (32, 17, 32)]  # two bindings of "batch"
    return losses, [p.value for p in params], f


def test_function_with_workers_matches_reference():
    ref_losses, ref_params, _ = step_results(1)
    losses, params, f = step_results(2)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for got, want in zip(params, ref_params, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    runner = f._run.runner
    assert isinstance(runner, ProgramRunner) and len(runner._bindings) == 2


def optimized_step():
    x, y, params, loss, updates = mlp_step()
    results, _ = optimize([loss, *updates.values()], 2)
    return x, y, results


@pytest.mark.parametrize("workers,mode", [(1, "dynamic"), (2, "dynamic"), (2, "static"),
                                          (3, "dynamic")])
def test_memory_plan_executes_to_the_same_results(workers, mode):
    x, y, results = optimized_step()
    xs, ys = batch(32)
    want = NumpyBackend().compile([x, y], results)([xs, ys], {"batch": 32})
    run = compile_program([x, y], results, workers=workers, memory_plan=True, mode=mode)
    for _ in range(3):  # repeat: interleavings differ between runs
        got = run([xs, ys], {"batch": 32})
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    plan = run.runner.binding({"batch": 32}).plan
    assert plan.parallel_safe == (workers > 1)
    assert plan.peak_bytes < plan.naive_bytes
    assert plan.binding == {"batch": 32}


def test_planned_peak_below_naive_at_batch_128():
    x, y, results = optimized_step()
    program = lower([x, y], results)
    for workers in (1, 2):
        plan = plan_program(program, {"batch": 128}, schedule_program(program, workers,
                                                                      {"batch": 128}))
        assert plan.live_peak_bytes <= plan.peak_bytes + sum(
            b.nbytes({"batch": 128}) for b in program.buffers)  # sanity: the bound is finite
        assert plan.peak_bytes < plan.naive_bytes
        assert "batch=128" in str(plan)
    serial = plan_program(program, {"batch": 128}, schedule_program(program, 1))
    two = schedule_program(program, 2, {"batch": 128})
    parallel = plan_program(program, {"batch": 128}, two)
    dag_only = plan_program(program, {"batch": 128}, two, timed=False)
    assert serial.peak_bytes <= parallel.peak_bytes <= dag_only.peak_bytes
    # waits only where they buy a smaller peak (test_memplan.py shows them doing so; this
    # step's two-worker schedule, since log_softmax lost an add in the ninth session, has no
    # pair of temporaries a wait would let share a slot)
    assert dag_only.extra_deps == ()
    assert parallel.peak_bytes == dag_only.peak_bytes or parallel.extra_deps


def test_a_wrong_plan_is_caught_by_the_results():
    # Control for the test above: cram every temporary into one slot and the results change.
    x, y, results = optimized_step()
    xs, ys = batch(32)
    want = NumpyBackend().compile([x, y], results)([xs, ys], {"batch": 32})
    run = compile_program([x, y], results, workers=1, memory_plan=True)
    bound = run.runner.binding({"batch": 32})
    good = bound.plan
    temps = [name for name, slot in good.slot_of.items() if slot is not None]
    bound.plan = MemoryPlan({**good.slot_of, **dict.fromkeys(temps, 0)},
                            (max(good.slot_bytes),), (), good.naive_bytes, good.pinned_bytes,
                            good.live_peak_bytes)
    got = run([xs, ys], {"batch": 32})
    assert not all(np.allclose(g, w) for g, w in zip(got, want, strict=True))


def test_failing_parallel_step_changes_no_state():
    x, y, params, loss, updates = mlp_step()
    f = sg.function([x, y], loss, updates=updates, workers=2, check_nan=True)
    before = [p.value for p in params]
    xs, ys = batch(8)
    xs[3] = 3e38  # finite, but the first layer's products overflow to inf
    with pytest.raises(SymgraphError, match="first produced by"):
        f(xs, ys)
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.value, b)


def test_program_runner_returns_leaf_and_view_results():
    x = sg.placeholder((2, 3), name="x")
    v = sg.variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="v")
    f = sg.function([x], [v, sg.transpose(x), x @ v, sg.exp(x)], workers=2)
    xs = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = f(xs)
    want = sg.function([x], [v, sg.transpose(x), x @ v, sg.exp(x)])(xs)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)


# --- differential: random graphs (forward and gradient), planned and parallel vs reference ----

UNARY = [sg.tanh, sg.sigmoid, sg.relu, lambda t: t * t, lambda t: -t, lambda t: sg.exp(t * 0.3)]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, sg.maximum]


@st.composite
def random_graph_steps(draw):
    return [(draw(st.sampled_from("ubrmtv")), draw(st.integers(0, 5)), draw(st.integers(0, 9)))
            for _ in range(draw(st.integers(1, 8)))]


def _build_random(steps, a, b, w):
    pool = [a, b]  # every pool entry is (4, 4): matmul, transpose and reshape keep the shape
    for kind, fi, pick in steps:
        x = pool[pick % len(pool)]
        if kind == "u":
            pool.append(UNARY[fi % len(UNARY)](x))
        elif kind == "b":
            pool.append(BINARY[fi % len(BINARY)](x, pool[(pick + fi) % len(pool)]))
        elif kind == "r":
            pool.append(x - sg.mean(x, axis=fi % 2, keepdims=True))
        elif kind == "m":
            pool.append(x @ (w if fi % 2 else pool[(pick + 1) % len(pool)]))
        elif kind == "t":
            pool.append(sg.transpose(x) * 0.5)
        else:
            pool.append(sg.reshape(sg.reshape(x, (2, 8)) * 1.5, (4, 4)))
    return pool


@settings(max_examples=60, deadline=None)
@given(random_graph_steps(), st.sampled_from(["dynamic", "static"]))
def test_random_graphs_match_reference(steps, mode):
    rng = np.random.default_rng(len(steps))
    a, b = sg.placeholder((4, 4), "float64", name="a"), sg.placeholder((4, 4), "float64", name="b")
    w = sg.variable(rng.normal(size=(4, 4)), name="w")
    pool = _build_random(steps, a, b, w)
    cost = sg.sum(pool[-1] * pool[-1]) + sg.sum(pool[-2])
    outputs = [cost, pool[-1], *sg.grad(cost, [a, w])]
    results, _ = optimize(outputs, 2)
    feed = [rng.normal(size=(4, 4)), rng.normal(size=(4, 4))]
    want = NumpyBackend().compile([a, b], results)(feed, {})
    program = lower([a, b], results)
    for workers, planned in ((2, True), (3, False), (1, True)):
        got = ProgramRunner(program, workers, mode, planned).run(feed, {})
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_bad_worker_count_fails_at_compile_time():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(SymgraphError, match="workers"):
        sg.function([x], sg.exp(x), workers=2.5)


def test_debug_switch_prints_schedule_and_plan(monkeypatch, capsys):
    monkeypatch.setenv("SYMGRAPH_DEBUG", "1")
    x = sg.placeholder(("batch", 3), name="x")
    f = sg.function([x], sg.sum(sg.exp(x) * 2.0), workers=2)
    f(np.ones((5, 3), np.float32))
    out = capsys.readouterr().out
    assert "worker(s)" in out and "planned for batch=5" in out


def test_static_runner_survives_fork():
    import multiprocessing

    deps = {"a": [], "b": [], "c": ["a", "b"]}
    run_dag(deps, lambda k: None, workers=2, mode="static")  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        # Without a fresh pool in the child, lane 1 never runs and this times out.
        assert pool.apply_async(_static_run_in_child).get(timeout=20) == ["a", "b", "c"]


def _static_run_in_child():
    deps = {"a": [], "b": [], "c": ["a", "b"]}
    done = []
    run_dag(deps, done.append, workers=2,
            schedule=critical_path_schedule(deps, dict.fromkeys(deps, 1.0), 2), mode="static")
    return sorted(done)
