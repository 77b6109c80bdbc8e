"""Run a kernel DAG on k worker threads, and the NumPy backend's parallel path built on it.

Stage: backend runtime. Two layers:

- `DagRunner` executes any kernel DAG (`deps`: kernel -> predecessors) given one callable that
  runs a kernel by id. A kernel starts only after all its predecessors finished. Dispatch is
  dynamic by default: whichever worker is free takes the ready kernel of highest critical-path
  priority (the same rule the list scheduler in symgraph/schedule.py simulates); `mode="static"`
  instead runs each worker's lane of a precomputed Schedule in order. The calling thread is one
  of the workers, so `workers=1` runs serially with no threads at all. Threads help because
  NumPy releases the GIL inside BLAS and large ufuncs, and Numba kernels are compiled nogil.
  An exception in any kernel stops dispatch, waits for kernels already running, and re-raises
  in the caller; the runtime applies updates only after success, so nothing is half-applied.
- `ProgramRunner` is the NumPy backend with `workers=k`: it evaluates the graph kernel by kernel
  with each node's NumPy impl from `symgraph.ops.OPS`, optionally with every intermediate
  written into the slots of a memory plan (symgraph/memplan.py) to prove the plan safe.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from symgraph import envvars
from symgraph.errors import SymgraphError
from symgraph.memplan import allocate_slots, plan_program
from symgraph.schedule import Schedule, critical_path_schedule, schedule_program

KernelId = Hashable

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
# A forked child inherits the pool objects but not their threads: start fresh ones there.
os.register_at_fork(after_in_child=_POOLS.clear)


def _pool(helpers: int) -> ThreadPoolExecutor:
    """A process-wide pool with `helpers` threads (kept: starting threads per call costs ~50us)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(helpers)
        if pool is None:
            pool = _POOLS[helpers] = ThreadPoolExecutor(helpers, thread_name_prefix="symgraph")
        return pool


class _RunState:
    """Shared by the worker loops of one run; every field is guarded by `cond`."""

    __slots__ = ("cond", "missing", "ready", "done", "finished", "active", "error")

    def __init__(self, missing: list[int], ready: list):
        self.cond = threading.Condition()
        self.missing = missing
        self.ready = ready
        self.done = [False] * len(missing)
        self.finished = 0
        self.active = 0
        self.error: BaseException | None = None


def _traced(execute: Callable[[KernelId], None], trace: list) -> Callable[[KernelId], None]:
    def run_and_record(kernel: KernelId) -> None:
        start = time.perf_counter()
        execute(kernel)
        trace.append((kernel, threading.get_ident(), start, time.perf_counter()))  # atomic

    return run_and_record


def overlap(trace: list) -> float:
    """Kernel-busy seconds over wall seconds: 1.0 is serial, k is k workers always busy."""
    if not trace:
        return 0.0
    wall = max(t[3] for t in trace) - min(t[2] for t in trace)
    busy = sum(t[3] - t[2] for t in trace)
    return busy / wall if wall > 0 else 1.0


class DagRunner:
    """Executes a kernel DAG on `workers` threads; see the module docstring."""

    def __init__(self, deps: Mapping[KernelId, Sequence[KernelId]], workers: int = 1,
                 schedule: Schedule | None = None, mode: str = "dynamic"):
        if not isinstance(workers, int) or workers < 1:
            raise SymgraphError(f"workers must be a positive integer, got {workers!r}")
        if mode not in ("dynamic", "static"):
            raise SymgraphError(f"mode must be 'dynamic' or 'static', got {mode!r}")
        self.kernels = list(deps)
        index = {k: i for i, k in enumerate(self.kernels)}
        if schedule is None:
            schedule = critical_path_schedule(deps, dict.fromkeys(deps, 1.0), workers)
        if mode == "static" and schedule.workers != workers:
            raise SymgraphError(f"a static run follows the schedule's {schedule.workers} lanes; "
                                f"got workers={workers}")
        self.schedule, self.workers, self.mode = schedule, workers, mode
        self.preds = [[index[p] for p in dict.fromkeys(deps[k])] for k in self.kernels]
        self.succ: list[list[int]] = [[] for _ in self.kernels]
        for i, preds in enumerate(self.preds):
            for p in preds:
                self.succ[p].append(i)
        # Rank in the schedule's dispatch order = critical-path priority with its tie-breaks.
        rank = {k: r for r, k in enumerate(schedule.order)}
        self.rank = [rank[k] for k in self.kernels]
        self.serial = [index[k] for k in schedule.order]
        self.lanes = [[index[s.kernel] for s in lane] for lane in schedule.lanes]

    def run(self, execute: Callable[[KernelId], None], trace: list | None = None) -> None:
        """Call `execute(kernel)` for every kernel, each after its predecessors; raise on error.

        With a `trace` list, each finished kernel appends (kernel, thread id, start, end) in
        perf_counter seconds: the timeline that shows how much the workers overlapped.
        """
        if trace is not None:
            execute = _traced(execute, trace)
        if self.workers == 1 or len(self.kernels) <= 1:
            for i in self.serial:
                execute(self.kernels[i])
            return
        missing = [len(p) for p in self.preds]
        ready = [(self.rank[i], i) for i, m in enumerate(missing) if m == 0]
        heapq.heapify(ready)
        state = _RunState(missing, ready)
        loop = self._dynamic_loop if self.mode == "dynamic" else self._static_loop
        pool = _pool(self.workers - 1)
        for w in range(1, self.workers):
            pool.submit(loop, state, execute, w)
        try:
            loop(state, execute, 0)
            with state.cond:  # the caller's loop is over; wait for kernels running elsewhere
                while True:
                    if state.error is not None:
                        if state.active == 0:  # no kernel still writing into buffers
                            raise state.error
                    elif state.finished == len(self.kernels):
                        return
                    state.cond.wait()
        except BaseException as exc:  # noqa: B036  (a KeyboardInterrupt while waiting)
            self._stop(state, exc)
            raise

    @staticmethod
    def _stop(state: _RunState, exc: BaseException) -> None:
        """Stop dispatch and wait until no kernel runs in a pool thread (they write into
        buffers the caller is about to release or hand out), whatever interrupts the wait."""
        with state.cond:
            if state.error is None:
                state.error = exc
            state.cond.notify_all()
        while True:
            try:
                with state.cond:
                    while state.active > 0:
                        state.cond.wait()
                return
            except BaseException:  # noqa: B036  (a second Ctrl-C: keep waiting, briefly)
                continue

    def _finish(self, state: _RunState, i: int) -> None:
        """Mark kernel i done and release its successors (caller holds state.cond)."""
        state.done[i] = True
        state.finished += 1
        state.active -= 1
        for s in self.succ[i]:
            state.missing[s] -= 1
            if state.missing[s] == 0:
                heapq.heappush(state.ready, (self.rank[s], s))
        state.cond.notify_all()

    def _fail(self, state: _RunState, exc: BaseException) -> None:
        with state.cond:
            if state.error is None:
                state.error = exc
            state.active -= 1
            state.cond.notify_all()

    def _dynamic_loop(self, state: _RunState, execute, worker: int) -> None:
        n = len(self.kernels)
        while True:
            with state.cond:
                while not state.ready and state.error is None and state.finished < n:
                    state.cond.wait()
                if state.error is not None or not state.ready:
                    return
                _, i = heapq.heappop(state.ready)
                state.active += 1
            try:
                execute(self.kernels[i])
            except BaseException as exc:  # noqa: B036  (re-raised in the caller)
                self._fail(state, exc)
                return
            with state.cond:
                self._finish(state, i)

    def _static_loop(self, state: _RunState, execute, worker: int) -> None:
        for i in self.lanes[worker]:
            with state.cond:
                while state.error is None and state.missing[i] > 0:
                    state.cond.wait()
                if state.error is not None:
                    return
                state.active += 1
            try:
                execute(self.kernels[i])
            except BaseException as exc:  # noqa: B036
                self._fail(state, exc)
                return
            with state.cond:
                self._finish(state, i)


def run_dag(deps: Mapping[KernelId, Sequence[KernelId]], execute: Callable[[KernelId], None],
            workers: int = 1, schedule: Schedule | None = None, mode: str = "dynamic") -> None:
    """One-shot convenience: build a DagRunner and run it once."""
    DagRunner(deps, workers, schedule, mode).run(execute)


# --- the NumPy backend's parallel path ----------------------------------------------------


def _evaluate(node, dims: dict, args: list, check_nan: bool, prepared: dict):
    """One node's NumPy impl, with the reference backend's dtype fix-up and error messages.

    `prepared` caches node id -> (impl, attrs) per runner: `node.attr` builds a dict each time.
    """
    found = prepared.get(node.id)
    if found is None:
        from symgraph.ops import OPS

        found = prepared[node.id] = (OPS[node.op].impl, node.attr)
    from symgraph.backends.numpy_ref import evaluate_node

    return evaluate_node(node, found[0], found[1], dims, args, check_nan)


def _lookup(node, local: dict, env: dict, dims: dict, check_nan: bool, prepared: dict):
    """A node's value in this kernel: computed here, in a buffer, or recomputed through views.

    Views (reshape, transpose, ...) and loop invariants have no buffer of their own: a compiled
    kernel indexes through them, and here they are re-evaluated from their buffered source.
    """
    found = local.get(node.id)
    if found is None:
        found = env.get(node.id)
    if found is None:
        args = [_lookup(i, local, env, dims, check_nan, prepared) for i in node.inputs]
        found = local[node.id] = _evaluate(node, dims, args, check_nan, prepared)
    return found


class _Binding:
    """What a ProgramRunner prepares once per binding of the symbolic dims."""

    __slots__ = ("runner", "plan", "schedule")

    def __init__(self, runner: DagRunner, schedule: Schedule, plan):
        self.runner, self.schedule, self.plan = runner, schedule, plan


class ProgramRunner:
    """Evaluates a lowered Program kernel by kernel with NumPy impls on `workers` threads.

    Each kernel computes its fused nodes in order (views and loop invariants it reads are
    recomputed locally, as a compiled kernel would index through them) and publishes the nodes
    it writes. With `memory_plan=True` every temporary buffer is written into its slot of the
    plan made for the call's binding (the plan is then exercised for real: a wrong reuse would
    corrupt results); otherwise a buffer is dropped once its last reader finished.
    """

    def __init__(self, program, workers: int = 2, mode: str = "dynamic",
                 memory_plan: bool = False, check_nan: bool = False):
        if not isinstance(workers, int) or workers < 1:  # fail at compile time, not first call
            raise SymgraphError(f"workers must be a positive integer, got {workers!r}")
        if mode not in ("dynamic", "static"):
            raise SymgraphError(f"mode must be 'dynamic' or 'static', got {mode!r}")
        self.program, self.workers, self.mode = program, workers, mode
        self.memory_plan, self.check_nan = memory_plan, check_nan
        self._bindings: dict[tuple, _Binding] = {}
        self._lock = threading.Lock()
        self._prepared: dict = {}
        self.readers: dict[int, int] = {}
        for k in program.kernels:
            for n in k.reads:
                self.readers[n.id] = self.readers.get(n.id, 0) + 1
        self.result_ids = {r.id for r in program.results}
        # Only temporaries are dropped after their last reader; outputs may be read later
        # through a view (a result that is a reshape of an output buffer).
        self.temps = {b.node.id for b in program.buffers
                      if b.kind == "temp" and b.node.id not in self.result_ids}
        self.leaves = [b.node for b in program.buffers if b.node.is_leaf()]
        self.leaves += [r for r in program.results if r.is_leaf() and r.id not in program.buffer_of]

    def binding(self, dims: dict) -> _Binding:
        """Schedule (and plan) for this binding of the symbolic dims, made once and cached."""
        key = tuple(sorted(dims.items()))
        found = self._bindings.get(key)
        if found is None:
            schedule = schedule_program(self.program, self.workers, dims)
            plan = plan_program(self.program, dims, schedule) if self.memory_plan else None
            # With a plan, slot reuse across branches adds waits to the kernel DAG.
            deps = plan.augment(schedule.deps) if plan is not None else schedule.deps
            runner = DagRunner(deps, self.workers, schedule, self.mode)
            found = self._bindings[key] = _Binding(runner, schedule, plan)
            if envvars.flag("SYMGRAPH_DEBUG"):
                print(f"[symgraph] {schedule}")
                print(f"[symgraph] {plan or plan_program(self.program, dims, schedule)}")
        return found

    def run(self, arrays: Sequence[np.ndarray], dims: dict, trace: list | None = None) -> list:
        """Values of the program's results for these inputs (state read from the variables).

        `trace`: see DagRunner.run (per-kernel thread and timing, for `overlap`).
        """
        prog = self.program
        bound = self.binding(dims)
        env: dict[int, np.ndarray] = {}
        inputs = {p.id: a for p, a in zip(prog.inputs, arrays, strict=True)}
        for leaf in self.leaves:
            if leaf.op == "placeholder":
                env[leaf.id] = inputs[leaf.id]
            elif leaf.op == "variable":
                env[leaf.id] = leaf._value  # read once: every kernel sees the same state
            else:
                env[leaf.id] = leaf.attr["value"].array
        slots = allocate_slots(prog, bound.plan, dims) if bound.plan is not None else None
        remaining = dict(self.readers)
        kernels, check_nan, prepared = prog.kernels, self.check_nan, self._prepared

        def execute(kid: int) -> None:
            kernel = kernels[kid]
            local: dict[int, np.ndarray] = {}

            with np.errstate(all="ignore"):
                for node in kernel.nodes:
                    args = [_lookup(i, local, env, dims, check_nan, prepared)
                            for i in node.inputs]
                    local[node.id] = _evaluate(node, dims, args, check_nan, prepared)
                outs = [(n, _lookup(n, local, env, dims, check_nan, prepared))
                        for n in kernel.writes]
            self._publish(outs, env, slots)
            if slots is None:
                with self._lock:
                    for n in kernel.reads:
                        remaining[n.id] -= 1
                        if remaining[n.id] == 0 and n.id in self.temps:
                            env.pop(n.id, None)

        bound.runner.run(execute, trace)
        outs = []
        for r in prog.results:
            val = env.get(r.id)
            if val is None:  # a view of an output buffer: lowering leaves it to the runtime
                val = _lookup(r, {}, env, dims, check_nan, prepared)
                if slots is not None and val.base is not None:
                    val = val.copy()  # never hand out memory a later call's plan reuses
            outs.append(val)
        return outs

    def _publish(self, outs, env, slots) -> None:
        """Make a kernel's written values visible; with a plan, temps go into their slots."""
        if slots is None:
            for node, val in outs:
                env[node.id] = val
            return
        # Copy every value first: an output may alias an input (stop_gradient returns its input)
        # that the next copy is about to overwrite in place.
        staged = []
        for node, val in outs:
            target = slots.get(node.id)
            if target is None:  # a result: must not alias memory that a later kernel reuses
                staged.append((node, val.copy() if val.base is not None else val, None))
            else:
                staged.append((node, val, target))
        if len(staged) > 1:
            staged = [(n, v.copy() if t is not None else v, t) for n, v, t in staged]
        for node, val, target in staged:
            if target is not None:
                np.copyto(target, val)
                val = target
            env[node.id] = val


def compile_program(inputs, results, workers: int = 2, memory_plan: bool = False,
                    check_nan: bool = False, mode: str = "dynamic"):
    """Lower `results` and return `run(arrays, dims)` executing it on `workers` threads.

    This is what the NumPy backend calls for `workers > 1`; `run.runner` is the ProgramRunner.
    """
    from symgraph.lower import lower

    runner = ProgramRunner(lower(inputs, results), workers, mode, memory_plan, check_nan)

    def run(arrays, dims):
        return runner.run(arrays, dims)

    run.runner = runner
    return run
