"""Parallel scheduling of a kernel DAG: topological levels and a critical-path list scheduler.

Stage: after lowering (lower.py turns the graph into kernels), before a backend runs them. The
input is plain data so this module depends on nothing above graph level:

- `deps`: kernel id -> ids of the kernels it reads from (its predecessors). Every kernel is a
  key, even one with no predecessors; ids are any hashable, and their insertion order breaks ties
  so schedules are deterministic.
- `cost`: kernel id -> estimated seconds. `CostModel` turns the FLOPs and bytes moved that
  lowering counts per kernel into seconds (a roofline: the slower of compute and memory).

`topological_levels` gives Kahn generations, the baseline: every kernel of a level may run at
once. `critical_path_schedule` is a list scheduler for k workers: whenever a worker is idle it
takes the ready kernel with the longest remaining path to the end of the program (its "bottom
level"), so the chain that bounds the makespan is never left waiting behind short side work.
A worker never idles while a kernel is ready, hence the makespan never exceeds the serial sum.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

from symgraph.errors import SymgraphError

KernelId = Hashable


@dataclass(frozen=True)
class CostModel:
    """Seconds for one kernel from its FLOPs and bytes moved (one worker = one core).

    Defaults are one core of the development machine (notes/cpu-performance.md): ~175 GFLOP/s
    fp32 GEMM on one OpenBLAS thread, a few GB/s through a NumPy ufunc, and ~5 us of Python
    dispatch per kernel call that no amount of parallelism hides.
    """

    flops_per_second: float = 150e9
    bytes_per_second: float = 6e9
    overhead_seconds: float = 5e-6

    def seconds(self, flops: float, nbytes: float) -> float:
        compute = flops / self.flops_per_second
        memory = nbytes / self.bytes_per_second
        return self.overhead_seconds + max(compute, memory)


def costs_from_counts(flops: Mapping[KernelId, float], nbytes: Mapping[KernelId, float],
                      model: CostModel | None = None) -> dict[KernelId, float]:
    """Kernel id -> estimated seconds, from per-kernel FLOPs and bytes (missing counts are 0)."""
    model = model or CostModel()
    ids = list(dict.fromkeys(list(flops) + list(nbytes)))
    return {k: model.seconds(flops.get(k, 0.0), nbytes.get(k, 0.0)) for k in ids}


def _successors(deps: Mapping[KernelId, Sequence[KernelId]]) -> dict[KernelId, list[KernelId]]:
    """kernel -> kernels that read from it; raises on a predecessor that is not a kernel."""
    succ: dict[KernelId, list[KernelId]] = {k: [] for k in deps}
    for kernel, preds in deps.items():
        for p in dict.fromkeys(preds):  # a kernel reading two buffers of p depends on p once
            if p not in succ:
                raise SymgraphError(f"kernel {kernel!r} depends on {p!r}, which is not a kernel "
                                    "of this program")
            if p == kernel:
                raise SymgraphError(f"kernel {kernel!r} depends on itself")
            succ[p].append(kernel)
    return succ


def topological_levels(deps: Mapping[KernelId, Sequence[KernelId]]) -> list[list[KernelId]]:
    """Kahn generations: level i holds the kernels whose predecessors all lie in levels < i."""
    succ = _successors(deps)
    missing = {k: len(set(deps[k])) for k in deps}
    level = [k for k in deps if missing[k] == 0]
    levels: list[list[KernelId]] = []
    done = 0
    while level:
        levels.append(level)
        done += len(level)
        nxt = []
        for k in level:
            for s in succ[k]:
                missing[s] -= 1
                if missing[s] == 0:
                    nxt.append(s)
        level = nxt
    if done != len(deps):
        stuck = [k for k in deps if missing[k] > 0][:5]
        raise SymgraphError(f"the kernel graph has a cycle through {stuck!r}")
    return levels


def bottom_levels(deps: Mapping[KernelId, Sequence[KernelId]],
                  cost: Mapping[KernelId, float]) -> dict[KernelId, float]:
    """kernel -> its cost plus the longest cost path to any exit (the critical-path priority)."""
    succ = _successors(deps)
    levels = topological_levels(deps)
    bottom: dict[KernelId, float] = {}
    for level in reversed(levels):
        for k in level:
            tail = max((bottom[s] for s in succ[k]), default=0.0)
            bottom[k] = _cost(cost, k) + tail
    return bottom


def _cost(cost: Mapping[KernelId, float], kernel: KernelId) -> float:
    try:
        seconds = float(cost[kernel])
    except KeyError:
        raise SymgraphError(f"no cost estimate for kernel {kernel!r}") from None
    if not seconds >= 0.0:  # also rejects NaN
        raise SymgraphError(f"kernel {kernel!r} has cost {seconds!r}; costs must be >= 0 seconds")
    return seconds


@dataclass(frozen=True)
class ScheduledKernel:
    """One kernel placed on a worker with its estimated start and finish (seconds)."""

    kernel: KernelId
    worker: int
    start: float
    finish: float


@dataclass(frozen=True)
class Schedule:
    """Per worker an ordered list of kernels with time estimates, plus the summary numbers.

    `order` is the dispatch order (by estimated start, then priority): a topological order that
    serial execution and the memory planner use. `priority` is each kernel's bottom level; a
    runner that dispatches dynamically takes the ready kernel with the highest one.
    """

    workers: int
    lanes: tuple[tuple[ScheduledKernel, ...], ...]
    order: tuple[KernelId, ...]
    levels: tuple[tuple[KernelId, ...], ...]
    makespan: float
    serial_seconds: float
    critical_path_seconds: float
    priority: dict = field(compare=False, repr=False, default_factory=dict)
    deps: dict = field(compare=False, repr=False, default_factory=dict)

    @property
    def depth(self) -> int:
        """Number of topological levels: the longest chain of kernels."""
        return len(self.levels)

    @property
    def width(self) -> int:
        """Kernels in the widest level: the most that could ever run at once."""
        return max((len(level) for level in self.levels), default=0)

    @property
    def estimated_speedup(self) -> float:
        return self.serial_seconds / self.makespan if self.makespan > 0 else 1.0

    def placement(self) -> dict[KernelId, ScheduledKernel]:
        return {s.kernel: s for lane in self.lanes for s in lane}

    def to_dict(self) -> dict:
        """The numbers the compile report shows (JSON-ready except for kernel ids)."""
        return {"workers": self.workers, "kernels": len(self.order), "depth": self.depth,
                "width": self.width, "makespan_s": self.makespan,
                "serial_s": self.serial_seconds, "critical_path_s": self.critical_path_seconds,
                "estimated_speedup": self.estimated_speedup,
                "lanes": [[s.kernel for s in lane] for lane in self.lanes]}

    def __str__(self) -> str:
        head = (f"schedule: {len(self.order)} kernels on {self.workers} worker(s), depth "
                f"{self.depth}, width {self.width}, makespan ~{self.makespan * 1e6:.1f} us "
                f"(serial {self.serial_seconds * 1e6:.1f} us, critical path "
                f"{self.critical_path_seconds * 1e6:.1f} us)")
        lines = [head]
        for w, lane in enumerate(self.lanes):
            items = " ".join(f"{s.kernel}@{s.start * 1e6:.0f}" for s in lane)
            lines.append(f"  worker {w}: {items}")
        return "\n".join(lines)


def critical_path_schedule(deps: Mapping[KernelId, Sequence[KernelId]],
                           cost: Mapping[KernelId, float], workers: int) -> Schedule:
    """List-schedule the kernel DAG on `workers` workers with critical-path priority.

    Event-driven: time advances to the next kernel finish; each idle worker (lowest index first)
    takes the ready kernel with the largest bottom level (ties: first in `deps`). One worker
    has the same makespan in every topological order, so there the order is depth-first
    instead (the kernel released last runs next): a consumer runs right after its producer,
    while the producer's output is still in cache, and fewer buffers are alive at once.
    """
    if not isinstance(workers, int) or workers < 1:
        raise SymgraphError(f"workers must be a positive integer, got {workers!r}")
    deps = {k: tuple(dict.fromkeys(v)) for k, v in deps.items()}
    succ = _successors(deps)
    levels = topological_levels(deps)
    bottom = bottom_levels(deps, cost)
    rank = {k: i for i, k in enumerate(deps)}
    missing = {k: len(deps[k]) for k in deps}
    released = 0

    def key(k):
        return (-released, rank[k], k) if workers == 1 else (-bottom[k], rank[k], k)

    ready = [key(k) for k in deps if missing[k] == 0]
    heapq.heapify(ready)
    idle = list(range(workers))  # a heap of worker indices
    running: list[tuple[float, int, int, KernelId]] = []  # (finish, seq, worker, kernel)
    lanes: list[list[ScheduledKernel]] = [[] for _ in range(workers)]
    order: list[KernelId] = []
    now, seq = 0.0, 0
    while ready or running:
        while ready and idle:
            _, _, k = heapq.heappop(ready)
            w = heapq.heappop(idle)
            finish = now + _cost(cost, k)
            lanes[w].append(ScheduledKernel(k, w, now, finish))
            order.append(k)
            heapq.heappush(running, (finish, seq, w, k))
            seq += 1
        # Advance to the next finish; release every kernel finishing at that same instant so
        # zero-cost kernels do not serialize the ones after them.
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, w, k = heapq.heappop(running)
            heapq.heappush(idle, w)
            for s in succ[k]:
                missing[s] -= 1
                if missing[s] == 0:
                    released += 1
                    heapq.heappush(ready, key(s))
    makespan = max((lane[-1].finish for lane in lanes if lane), default=0.0)
    return Schedule(workers=workers, lanes=tuple(tuple(lane) for lane in lanes),
                    order=tuple(order), levels=tuple(tuple(level) for level in levels),
                    makespan=makespan, serial_seconds=sum(_cost(cost, k) for k in deps),
                    critical_path_seconds=max(bottom.values(), default=0.0),
                    priority=bottom, deps=deps)


def level_schedule(deps: Mapping[KernelId, Sequence[KernelId]],
                   cost: Mapping[KernelId, float], workers: int) -> Schedule:
    """The baseline: run level by level with a barrier between levels (for comparison)."""
    if not isinstance(workers, int) or workers < 1:
        raise SymgraphError(f"workers must be a positive integer, got {workers!r}")
    levels = topological_levels(deps)
    lanes: list[list[ScheduledKernel]] = [[] for _ in range(workers)]
    order: list[KernelId] = []
    now = 0.0
    for level in levels:
        free = [now] * workers
        for k in sorted(level, key=lambda k: -_cost(cost, k)):  # longest first within a level
            w = min(range(workers), key=free.__getitem__)
            lanes[w].append(ScheduledKernel(k, w, free[w], free[w] + _cost(cost, k)))
            free[w] += _cost(cost, k)
            order.append(k)
        now = max(free)
    bottom = bottom_levels(deps, cost)
    return Schedule(workers=workers, lanes=tuple(tuple(lane) for lane in lanes),
                    order=tuple(order), levels=tuple(tuple(level) for level in levels),
                    makespan=now, serial_seconds=sum(_cost(cost, k) for k in deps),
                    critical_path_seconds=max(bottom.values(), default=0.0),
                    priority=bottom, deps={k: tuple(v) for k, v in deps.items()})


# --- lowered programs (symgraph/lower.py) ---------------------------------------------------


def program_costs(program, dims: Mapping[str, int] | None = None,
                  model: CostModel | None = None) -> dict[int, float]:
    """Kernel id -> estimated seconds from the kernel's FLOPs and the bytes it reads and writes.

    Unbound symbolic dims count as 1 (lower.py's convention), so pass the call-time binding
    (e.g. {"batch": 128}) for realistic estimates.
    """
    from symgraph.program import kernel_flops  # lazy: program.py imports this module lazily too

    flops, moved = {}, {}
    for k in program.kernels:
        flops[k.id] = kernel_flops(k, dict(dims or {}))
        moved[k.id] = sum(program.buffer(n).nbytes(dict(dims or {}))
                          for n in k.reads + k.writes if n.id in program.buffer_of)
    return costs_from_counts(flops, moved, model)


def schedule_program(program, workers: int = 2, dims: Mapping[str, int] | None = None,
                     model: CostModel | None = None) -> Schedule:
    """The critical-path list schedule of a lowered Program's kernel DAG for `workers`."""
    deps = {k.id: program.deps[k.id] for k in program.kernels}
    return critical_path_schedule(deps, program_costs(program, dims, model), workers)
