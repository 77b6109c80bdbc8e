"""Memory planning: liveness-based buffer reuse and in-place updates over a kernel order.

Stage: after lowering and scheduling, before a backend allocates. Input is plain data: each
buffer says its size, which kernel writes it and which kernels read it, and whether it is pinned
(inputs, outputs and state keep their own memory: the user holds them across calls). The planner
groups the unpinned buffers into slots, one allocation each, so that two buffers share a slot only
when their lifetimes cannot overlap:

- serial execution (`deps=None`): lifetimes are intervals of positions in `order`, and two
  buffers may share when one's last read comes before the other's write;
- parallel execution (`deps` given): positions mean nothing, since independent kernels run in any
  interleaving, so one buffer may follow another in a slot only when every kernel touching the
  first is an ancestor, in the kernel DAG, of the kernel writing the second. Schedule and plan
  then agree for every interleaving the runner may produce;
- parallel with the schedule's timeline: also when the schedule runs the first buffer's kernels
  before the second's writer anyway; the plan then lists that wait in `extra_deps` and the
  runner adds it to the DAG (edges only point forward in the schedule's order: no cycles).

Assignment is greedy best-fit by size over this interference relation: buffers from largest to
smallest, each into the smallest slot none of whose occupants it interferes with. In-place pairs
(an elementwise kernel writing its result over an input that dies there) are merged first and then
placed as one unit. Sizes depend on symbolic dims, so a plan is made for one binding (batch=128)
and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

from symgraph.errors import SymgraphError

KernelId = Hashable
ALIGN = 64  # bytes: slots start on cache-line boundaries so SIMD loads stay aligned


@dataclass(frozen=True)
class BufferUse:
    """One buffer: its size, the kernel writing it (None: it exists before the run) and readers."""

    name: Hashable
    nbytes: int
    writer: KernelId | None
    readers: tuple = ()
    pinned: bool = False


@dataclass(frozen=True)
class MemoryPlan:
    """Where each buffer lives: `slot_of[name]` (None when pinned) and the slot sizes."""

    slot_of: dict
    slot_bytes: tuple[int, ...]
    inplace: tuple[tuple[Hashable, Hashable], ...]
    naive_bytes: int
    pinned_bytes: int
    live_peak_bytes: int
    binding: dict = field(default_factory=dict)
    parallel_safe: bool = False
    # (kernel, kernel): the second must also wait for the first (memory reuse across branches
    # that the schedule runs in sequence); a parallel runner adds them to the kernel DAG.
    extra_deps: tuple = ()

    def augment(self, deps: Mapping[KernelId, Sequence[KernelId]]) -> dict:
        """`deps` plus the plan's extra waits: the DAG a parallel runner must follow."""
        out = {k: list(v) for k, v in deps.items()}
        for before, after in self.extra_deps:
            out[after].append(before)
        return out

    @property
    def arena_bytes(self) -> int:
        return sum(self.slot_bytes)

    @property
    def peak_bytes(self) -> int:
        """Planned peak: every slot plus every pinned buffer, all alive for the whole run."""
        return self.arena_bytes + self.pinned_bytes

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "naive_peak_bytes": self.naive_bytes,
                "live_peak_bytes": self.live_peak_bytes, "arena_bytes": self.arena_bytes,
                "pinned_bytes": self.pinned_bytes, "slots": len(self.slot_bytes),
                "buffers": len(self.slot_of), "inplace": len(self.inplace),
                "binding": dict(self.binding), "parallel_safe": self.parallel_safe,
                "extra_deps": len(self.extra_deps)}

    def __str__(self) -> str:
        bound = ", ".join(f"{k}={v}" for k, v in sorted(self.binding.items())) or "static shapes"
        saved = 1 - self.peak_bytes / self.naive_bytes if self.naive_bytes else 0.0
        return (f"memory: peak {_fmt(self.peak_bytes)} planned vs {_fmt(self.naive_bytes)} naive "
                f"({saved:.0%} saved; {len(self.slot_of)} buffers in {len(self.slot_bytes)} "
                f"slots, {len(self.inplace)} in place; liveness lower bound "
                f"{_fmt(self.live_peak_bytes)}; planned for {bound}"
                f"{'; safe for parallel execution' if self.parallel_safe else ''}"
                f"{f' with {len(self.extra_deps)} extra waits' if self.extra_deps else ''})")


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def ancestor_masks(deps: Mapping[KernelId, Sequence[KernelId]], order: Sequence[KernelId],
                   index: Mapping[KernelId, int]) -> list[int]:
    """Per kernel position, a bitmask of every kernel that must finish before it starts."""
    anc = [0] * len(order)
    for k in order:  # order is topological, so predecessors are complete
        mask = 0
        for p in deps.get(k, ()):
            mask |= anc[index[p]] | (1 << index[p])
        anc[index[k]] = mask
    return anc


class _Group:
    """Buffers merged by in-place updates: placed into a slot as one unit."""

    __slots__ = ("members", "nbytes", "writers", "touch", "first", "last", "preexisting")

    def __init__(self, buf: BufferUse, first: int, last: int, writers: int, touch: int):
        self.members = [buf.name]
        self.nbytes = buf.nbytes
        self.preexisting = buf.writer is None  # holds data from before the run
        self.writers = writers  # bitmask of writing kernels (parallel mode)
        self.touch = touch  # bitmask of writing and reading kernels (parallel mode)
        self.first, self.last = first, last

    def absorb(self, other: "_Group") -> None:
        self.members += other.members
        self.nbytes = max(self.nbytes, other.nbytes)
        self.writers |= other.writers
        self.touch |= other.touch
        self.preexisting |= other.preexisting
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)


class _Reuse:
    """Decides whether group b may take over group a's memory, and at what price.

    Serial: a's last use comes before b's first write in the order. Parallel: every kernel
    touching a is a DAG ancestor of every kernel writing b. Parallel with a timeline (the
    schedule's start/finish estimates): also when the schedule already runs all of a's kernels
    before b's writers, at the price of dependency edges that make the runner wait for it.
    Edges only point forward in `order` (a topological order), so the graph stays acyclic.
    """

    def __init__(self, anc: list[int] | None, start: list[float] | None,
                 finish: list[float] | None):
        self.anc, self.start, self.finish = anc, start, finish

    def edges(self, a: _Group, b: _Group) -> list[tuple[int, int]] | None:
        """None: b may not reuse a's memory; else the (position, position) edges it needs."""
        if self.anc is None:
            return [] if a.last < b.first else None
        if not b.writers or b.preexisting:  # b (or a member merged in place) exists before
            return None  # the run starts: nothing can come before it
        needed = []
        for w in _bits(b.writers):
            missing = a.touch & ~self.anc[w]
            if not missing:
                continue
            if self.start is None:
                return None
            for u in _bits(missing):
                if u >= w or self.finish[u] > self.start[w]:
                    return None
                # u's own descendants among the missing ones will carry the wait for it.
                if not any(self.anc[v] >> u & 1 for v in _bits(missing) if v != u):
                    needed.append((u, w))
        return needed


def _bits(mask: int):
    """Positions of the set bits of mask, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def plan_memory(buffers: Sequence[BufferUse], order: Sequence[KernelId],
                deps: Mapping[KernelId, Sequence[KernelId]] | None = None,
                inplace: Iterable[tuple[Hashable, Hashable]] = (),
                binding: Mapping[str, int] | None = None,
                timeline: Mapping[KernelId, tuple[float, float]] | None = None) -> MemoryPlan:
    """Assign unpinned buffers to shared slots; see the module docstring for the rules.

    `order` is the execution order (a topological order of the kernels). `deps` (kernel ->
    predecessors) makes the plan safe under any parallel interleaving. With `deps`, a
    `timeline` (kernel -> estimated (start, finish), from the schedule, `order` sorted by start)
    lets the plan also reuse memory across branches the schedule runs one after the other; the
    runner must then honour `plan.extra_deps` too. `inplace` lists candidate (input buffer,
    output buffer) pairs; a pair is taken only when it is safe, see `_inplace_ok`.
    """
    index = {k: i for i, k in enumerate(order)}
    by_name: dict[Hashable, BufferUse] = {}
    for b in buffers:
        if b.name in by_name:
            raise SymgraphError(f"buffer {b.name!r} is listed twice")
        for k in (() if b.writer is None else (b.writer,)) + tuple(b.readers):
            if k not in index:
                raise SymgraphError(f"buffer {b.name!r} names kernel {k!r}, which is not in the "
                                    "execution order")
        by_name[b.name] = b
    anc = ancestor_masks(deps, order, index) if deps is not None else None
    start = finish = None
    if anc is not None and timeline is not None:
        start = [float(timeline[k][0]) for k in order]
        finish = [float(timeline[k][1]) for k in order]
    reuse = _Reuse(anc, start, finish)

    groups: dict[Hashable, _Group] = {}
    for b in buffers:
        if b.pinned:
            continue
        first = -1 if b.writer is None else index[b.writer]
        last = max((index[r] for r in b.readers), default=first)
        writers = 0 if b.writer is None else 1 << index[b.writer]
        touch = writers
        for r in b.readers:
            touch |= 1 << index[r]
        groups[b.name] = _Group(b, first, last, writers, touch)

    taken = _merge_inplace(inplace, by_name, groups, index, anc)
    units = list(dict.fromkeys(id(g) for g in groups.values()))
    unique = {id(g): g for g in groups.values()}
    ordered = sorted((unique[u] for u in units), key=lambda g: (-g.nbytes, g.first))

    slots: list[list[_Group]] = []
    sizes: list[int] = []
    slot_of: dict[Hashable, int | None] = {b.name: None for b in buffers if b.pinned}
    extra: set[tuple[int, int]] = set()
    for g in ordered:
        best, best_edges = None, None
        for s, occupants in enumerate(slots):
            edges = _slot_edges(reuse, occupants, g)
            # Largest first, so every open slot is already big enough: best fit = smallest
            # slot, then the one needing the fewest new waits.
            if edges is not None and (best is None or (sizes[s], len(edges))
                                      < (sizes[best], len(best_edges))):
                best, best_edges = s, edges
        if best is None:
            slots.append([])
            sizes.append(_aligned(g.nbytes))
            best, best_edges = len(slots) - 1, []
        slots[best].append(g)
        extra.update(best_edges)
        for name in g.members:
            slot_of[name] = best

    naive = sum(b.nbytes for b in buffers)
    pinned = sum(b.nbytes for b in buffers if b.pinned)
    return MemoryPlan(slot_of=slot_of, slot_bytes=tuple(sizes), inplace=tuple(taken),
                      naive_bytes=naive, pinned_bytes=pinned,
                      live_peak_bytes=_live_peak(buffers, index, len(order)),
                      binding=dict(binding or {}), parallel_safe=deps is not None,
                      extra_deps=tuple(sorted((order[u], order[w]) for u, w in extra)))


def _slot_edges(reuse: _Reuse, occupants: list[_Group], g: _Group):
    """Edges that let g share a slot with every occupant (either order), or None."""
    edges = []
    for o in occupants:
        found = reuse.edges(o, g)
        if found is None:
            found = reuse.edges(g, o)
        if found is None:
            return None
        edges += found
    return edges


def _aligned(n: int) -> int:
    return max(ALIGN, -(-n // ALIGN) * ALIGN)


def _merge_inplace(pairs, by_name, groups, index, anc) -> list[tuple[Hashable, Hashable]]:
    """Merge each safe (src, dst) pair's groups; returns the pairs taken."""
    taken, donated = [], set()
    for src, dst in pairs:
        a, b = by_name.get(src), by_name.get(dst)
        if a is None or b is None or src in donated or not _inplace_ok(a, b, index, anc):
            continue
        ga, gb = groups[src], groups[dst]
        if ga is gb or gb.members[0] != dst:  # dst already absorbed something: keep chains simple
            continue
        ga.absorb(gb)
        for name in gb.members:
            groups[name] = ga
        donated.add(src)
        taken.append((src, dst))
    return taken


def _inplace_ok(src: BufferUse, dst: BufferUse, index, anc) -> bool:
    """dst may overwrite src: same size, neither pinned, dst's writer is src's last reader."""
    if src.pinned or dst.pinned or src.nbytes != dst.nbytes or dst.writer is None:
        return False
    k = dst.writer
    if k not in src.readers:
        return False
    others = [r for r in src.readers if r != k]
    if anc is None:
        return all(index[r] < index[k] for r in others)
    return all(anc[index[k]] >> index[r] & 1 for r in others)


def _live_peak(buffers: Sequence[BufferUse], index, n: int) -> int:
    """Most bytes alive at once in the serial order: no plan can go below it (pinned included)."""
    delta = [0] * (n + 2)
    always = 0
    for b in buffers:
        if b.pinned:
            always += b.nbytes
            continue
        first = -1 if b.writer is None else index[b.writer]
        last = max((index[r] for r in b.readers), default=first)
        delta[first + 1] += b.nbytes
        delta[last + 2] -= b.nbytes
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak + always


def naive_peak_bytes(buffers: Iterable[BufferUse]) -> int:
    """Every buffer in its own allocation for the whole run."""
    return sum(b.nbytes for b in buffers)


# --- lowered programs (symgraph/lower.py) ---------------------------------------------------


def program_buffer_uses(program, dims: Mapping[str, int] | None = None) -> list[BufferUse]:
    """One BufferUse per program buffer (named by buffer id); all but temps are pinned."""
    writer: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for k in program.kernels:
        for n in k.writes:
            writer[n.id] = k.id
        for n in k.reads:
            readers.setdefault(n.id, []).append(k.id)
    return [BufferUse(b.id, b.nbytes(dict(dims or {})), writer.get(b.node.id),
                      tuple(readers.get(b.node.id, ())), pinned=b.kind != "temp")
            for b in program.buffers]


def inplace_candidates(program) -> list[tuple[int, int]]:
    """(read buffer, written buffer) pairs of elementwise kernels with equal dtype and shape."""
    pairs = []
    for k in program.kernels:
        if k.kind != "elementwise":
            continue
        direct = _read_only_directly(k)
        for w in k.writes:
            for r in k.reads:
                if (r.id in direct and r.id in program.buffer_of and w.id in program.buffer_of
                        and r.dtype == w.dtype and tuple(r.shape) == tuple(w.shape)):
                    pairs.append((program.buffer_of[r.id], program.buffer_of[w.id]))
    return pairs


def _read_only_directly(kernel) -> set[int]:
    """Node ids the kernel reads only element for element (never through a view).

    Writing in place is safe only when element i of the output depends on element i of the
    input alone; a transpose or broadcast view of the input breaks that, even at equal shapes.
    """
    direct, viewed = set(), set()
    for m in kernel.nodes + kernel.invariants:
        for i in m.inputs:
            if i.op in ("reshape", "transpose", "broadcast_to", "slice"):
                while i.op in ("reshape", "transpose", "broadcast_to", "slice"):
                    i = i.inputs[0]
                viewed.add(i.id)
            else:
                direct.add(i.id)
    return direct - viewed


def plan_program(program, dims: Mapping[str, int] | None = None, schedule=None,
                 inplace: bool = True, timed: bool = True) -> MemoryPlan:
    """The memory plan of a lowered Program for the binding `dims`.

    With a one-worker `schedule` the plan follows its serial order; with a k-worker schedule it
    is safe for any parallel interleaving of the kernel DAG plus `plan.extra_deps`, the waits
    that let branches the schedule runs in sequence share memory (`timed=False`: none, reuse
    only along the DAG's own edges). Without a schedule it follows the program's kernel order.
    """
    deps = {k.id: program.deps[k.id] for k in program.kernels}
    if schedule is None:
        order, parallel = [k.id for k in program.kernels], False
    else:
        order, parallel = list(schedule.order), schedule.workers > 1
    timeline = None
    if parallel and timed:
        timeline = {s.kernel: (s.start, s.finish) for s in schedule.placement().values()}
    return plan_memory(program_buffer_uses(program, dims), order,
                       deps=deps if parallel else None,
                       inplace=inplace_candidates(program) if inplace else (),
                       binding=dims, timeline=timeline)


plan_program_memory = plan_program


def allocate_slots(program, plan: MemoryPlan, dims: Mapping[str, int] | None = None) -> dict:
    """node id -> an array view into its slot, for every planned (unpinned) buffer.

    Fresh slots per call, so a compiled function stays reentrant; np.empty does not touch the
    memory, so this costs a few allocator calls, not the bytes.
    """
    dims = dict(dims or {})
    arenas = [np.empty(n, dtype=np.uint8) for n in plan.slot_bytes]
    views = {}
    for b in program.buffers:
        slot = plan.slot_of.get(b.id)
        if slot is None:
            continue
        shape = tuple(d if isinstance(d, int) else dims[d] for d in b.shape)
        views[b.node.id] = arenas[slot][:b.nbytes(dims)].view(b.dtype).reshape(shape)
    return views


def program_summary(program, workers: int = 2, dims: Mapping[str, int] | None = None) -> dict:
    """The compile report's schedule and memory fields for a lowered Program.

    Keys match symgraph.passes.report.CompileReport (peak_bytes, naive_peak_bytes,
    schedule_depth, schedule_width) plus the binding the sizes were computed for.
    """
    from symgraph.schedule import schedule_program

    schedule = schedule_program(program, workers, dims)
    plan = plan_program(program, dims, schedule)
    return {"peak_bytes": plan.peak_bytes, "naive_peak_bytes": plan.naive_bytes,
            "schedule_depth": schedule.depth, "schedule_width": schedule.width,
            "memory_binding": dict(dims or {}), "workers": workers,
            "estimated_speedup": schedule.estimated_speedup}
