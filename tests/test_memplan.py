"""Tests for symgraph/memplan.py: slot assignment by liveness, parallel safety, in-place pairs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symgraph.errors import SymgraphError
from symgraph.memplan import BufferUse, plan_memory
from symgraph.schedule import critical_path_schedule, topological_levels


def chain_buffers(n, nbytes=1000):
    """k0 -> k1 -> ... : kernel i writes b{i}, read by kernel i+1; the last one is an output."""
    order = [f"k{i}" for i in range(n)]
    bufs = [BufferUse(f"b{i}", nbytes, f"k{i}", (f"k{i + 1}",) if i + 1 < n else (),
                      pinned=i == n - 1) for i in range(n)]
    return order, bufs


def test_chain_reuses_two_slots():
    order, bufs = chain_buffers(6)
    plan = plan_memory(bufs, order, binding={"batch": 128})
    assert len(plan.slot_bytes) == 2  # b_i and b_{i+1} overlap at kernel i+1, b_i and b_{i+2} not
    assert plan.naive_bytes == 6000
    assert plan.peak_bytes == 2 * 1024 + 1000  # slots aligned to 64 bytes, output pinned
    assert plan.slot_of["b5"] is None
    assert plan.live_peak_bytes == 3000  # b3, b4 and the pinned output
    text = str(plan)
    assert "batch=128" in text and "naive" in text
    assert plan.to_dict()["binding"] == {"batch": 128}


def test_chain_in_place_uses_one_slot():
    order, bufs = chain_buffers(6)
    pairs = [(f"b{i}", f"b{i + 1}") for i in range(5)]
    plan = plan_memory(bufs, order, inplace=pairs)
    assert len(plan.slot_bytes) == 1
    assert ("b0", "b1") in plan.inplace and ("b4", "b5") not in plan.inplace  # output is pinned


def test_in_place_refused_when_another_reader_comes_later():
    order = ["w", "e", "r"]
    bufs = [BufferUse("x", 800, "w", ("e", "r")), BufferUse("y", 800, "e", ("r",)),
            BufferUse("z", 8, "r", (), pinned=True)]
    plan = plan_memory(bufs, order, inplace=[("x", "y")])
    assert plan.inplace == ()
    assert plan.slot_of["x"] != plan.slot_of["y"]
    # Sizes differ: no in-place either.
    bufs2 = [BufferUse("x", 800, "w", ("e",)), BufferUse("y", 400, "e", ("r",))]
    assert plan_memory(bufs2, order, inplace=[("x", "y")]).inplace == ()


def test_parallel_plan_does_not_share_across_independent_branches():
    # Two independent branches a1->a2 and b1->b2. Serially (a1 a2 b1 b2) a1's buffer is dead
    # before b1 writes, so they may share; in parallel b1 may run while a2 still reads it.
    deps = {"a1": [], "a2": ["a1"], "b1": [], "b2": ["b1"], "j": ["a2", "b2"]}
    order = ["a1", "a2", "b1", "b2", "j"]
    bufs = [BufferUse("A1", 100, "a1", ("a2",)), BufferUse("A2", 100, "a2", ("j",)),
            BufferUse("B1", 100, "b1", ("b2",)), BufferUse("B2", 100, "b2", ("j",))]
    serial = plan_memory(bufs, order)
    parallel = plan_memory(bufs, order, deps=deps)
    assert serial.slot_of["A1"] == serial.slot_of["B1"]
    assert parallel.slot_of["A1"] not in (parallel.slot_of["B1"], parallel.slot_of["B2"])
    assert parallel.parallel_safe and not serial.parallel_safe
    assert len(parallel.slot_bytes) == 4 and len(serial.slot_bytes) == 3


def test_timed_plan_shares_across_branches_with_a_wait():
    # Same two branches, but the schedule runs branch b after branch a on one lane (say the
    # other worker is busy with j's other inputs): b1 may reuse A1 if it waits for a2.
    deps = {"a1": [], "a2": ["a1"], "b1": [], "b2": ["b1"], "j": ["a2", "b2"]}
    order = ["a1", "a2", "b1", "b2", "j"]
    timeline = {"a1": (0, 1), "a2": (1, 2), "b1": (2, 3), "b2": (3, 4), "j": (4, 5)}
    bufs = [BufferUse("A1", 100, "a1", ("a2",)), BufferUse("A2", 100, "a2", ("j",)),
            BufferUse("B1", 100, "b1", ("b2",)), BufferUse("B2", 100, "b2", ("j",))]
    plan = plan_memory(bufs, order, deps=deps, timeline=timeline)
    assert plan.slot_of["A1"] == plan.slot_of["B1"]
    assert plan.extra_deps == (("a2", "b1"),)
    assert "1 extra waits" in str(plan)
    # b1 overlaps a2 in the estimates: B1 cannot take A1's memory, but B2 (written at 3) can.
    timeline["b1"] = (1.5, 2.5)
    plan = plan_memory(bufs, order, deps=deps, timeline=timeline)
    assert plan.slot_of["A1"] != plan.slot_of["B1"]
    assert plan.slot_of["A1"] == plan.slot_of["B2"] and plan.extra_deps == (("a2", "b2"),)


def test_best_fit_picks_the_smallest_free_slot():
    order = ["k0", "k1", "k2", "k3"]
    bufs = [BufferUse("big", 4096, "k0", ("k1",)), BufferUse("mid", 1024, "k0", ("k1",)),
            BufferUse("small", 512, "k2", ("k3",))]
    plan = plan_memory(bufs, order)
    assert plan.slot_of["small"] == plan.slot_of["mid"]
    assert plan.peak_bytes == 4096 + 1024


def test_errors():
    with pytest.raises(SymgraphError, match="'nope'"):
        plan_memory([BufferUse("x", 8, "nope")], ["k0"])
    with pytest.raises(SymgraphError, match="twice"):
        plan_memory([BufferUse("x", 8, "k0"), BufferUse("x", 8, "k0")], ["k0"])


def test_preexisting_buffer_never_shares_in_parallel():
    deps = {"k0": [], "k1": ["k0"]}
    # c exists before the run and is read by k1; t is written by k0 earlier: they overlap.
    bufs = [BufferUse("c", 64, None, ("k1",)), BufferUse("t", 64, "k0", ("k1",))]
    plan = plan_memory(bufs, ["k0", "k1"], deps=deps)
    assert plan.slot_of["c"] != plan.slot_of["t"]
    # Read only by k0, c is dead once k0 is done, so u (written by k1) may take its memory.
    bufs = [BufferUse("c", 64, None, ("k0",)), BufferUse("u", 64, "k1", ())]
    plan = plan_memory(bufs, ["k0", "k1"], deps=deps)
    assert plan.slot_of["c"] == plan.slot_of["u"]
    # Merged in place with its successor, c still exists before the run: t written by k0
    # must not take its slot (it did once the merge dropped that fact)
    bufs = [BufferUse("c", 64, None, ("k1",)), BufferUse("out", 64, "k1", ()),
            BufferUse("t", 64, "k0", ())]
    plan = plan_memory(bufs, ["k0", "k1"], deps=deps, inplace=[("c", "out")])
    assert plan.slot_of["c"] == plan.slot_of["out"] != plan.slot_of["t"]


@st.composite
def random_programs(draw):
    n = draw(st.integers(1, 16))
    deps = {f"k{i}": sorted({f"k{p}" for p in draw(st.lists(st.integers(0, i - 1), max_size=3))})
            if i else [] for i in range(n)}
    # Each kernel writes one buffer read by its successors (so readers follow the DAG).
    readers = {k: [] for k in deps}
    for k, preds in deps.items():
        for p in preds:
            readers[p].append(k)
    sizes = st.sampled_from([64, 128, 200, 1024, 4096])
    bufs = [BufferUse(f"b_{k}", draw(sizes), k, tuple(readers[k]),
                      pinned=draw(st.booleans()) and not readers[k]) for k in deps]
    pairs = [(f"b_{p}", f"b_{k}") for k, preds in deps.items() for p in preds]
    use_pairs = draw(st.booleans())
    costs = {k: draw(st.sampled_from([0.0, 1.0, 2.0, 5.0])) for k in deps}
    return deps, bufs, pairs if use_pairs else [], draw(st.integers(1, 3)), costs


def _reaches(deps, order):
    """kernel -> set of all its ancestors (independent of memplan's bitmask code)."""
    anc = {}
    for k in order:  # a topological order of deps
        anc[k] = set()
        for p in deps[k]:
            anc[k] |= anc[p] | {p}
    return anc


@settings(max_examples=120, deadline=None)
@given(random_programs())
def test_shared_slots_never_overlap(case):
    deps, bufs, pairs, workers, costs = case
    sched = critical_path_schedule(deps, costs, workers)
    order = list(sched.order)
    timeline = {s.kernel: (s.start, s.finish) for s in sched.placement().values()}
    pos = {k: i for i, k in enumerate(order)}
    for parallel, timed in ((False, False), (True, False), (True, True)):
        plan = plan_memory(bufs, order, deps=deps if parallel else None, inplace=pairs,
                           timeline=timeline if timed else None)
        # The waits the plan adds keep the kernel graph acyclic, and all point forward.
        assert all(pos[a] < pos[b] for a, b in plan.extra_deps)
        assert timed or not plan.extra_deps
        augmented = {k: list(v) for k, v in deps.items()}
        for a, b in plan.extra_deps:
            augmented[b].append(a)
        topological_levels(augmented)
        anc = _reaches(augmented, order)
        assert plan.peak_bytes <= plan.naive_bytes + 64 * len(bufs)
        if not pairs:
            assert plan.peak_bytes >= plan.live_peak_bytes
        merged = {frozenset(p) for p in plan.inplace}
        by_slot = {}
        for b in bufs:
            if b.pinned:
                assert plan.slot_of[b.name] is None
                continue
            assert plan.slot_bytes[plan.slot_of[b.name]] >= b.nbytes
            by_slot.setdefault(plan.slot_of[b.name], []).append(b)
        for members in by_slot.values():
            for i, x in enumerate(members):
                for y in members[i + 1:]:
                    if frozenset((x.name, y.name)) in merged:
                        continue
                    assert _disjoint(x, y, pos, anc, parallel) or _in_chain(x, y, plan), (x, y)


def _uses(b):
    return [b.writer, *b.readers]


def _before(x, y, pos, anc, parallel):
    if parallel:
        return all(u in anc[y.writer] for u in _uses(x))
    return max(pos[u] for u in _uses(x)) < pos[y.writer]


def _disjoint(x, y, pos, anc, parallel):
    return _before(x, y, pos, anc, parallel) or _before(y, x, pos, anc, parallel)


def _in_chain(x, y, plan):
    """x and y linked by a chain of in-place pairs (one value updated in place several times)."""
    links = {}
    for a, b in plan.inplace:
        links.setdefault(a, set()).add(b)
        links.setdefault(b, set()).add(a)
    seen, todo = {x.name}, [x.name]
    while todo:
        for nxt in links.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return y.name in seen


def test_program_summary_fills_the_report_fields():
    import numpy as np

    import symgraph as sg
    from symgraph.lower import lower
    from symgraph.memplan import program_summary

    x = sg.placeholder(("batch", 4), name="x")
    w = sg.variable(np.ones((4, 3), np.float32), name="w")
    h = sg.tanh(x @ w)
    loss = sg.sum(h * h)
    program = lower([x], [loss, *sg.grad(loss, [w])])
    small = program_summary(program, 2, {"batch": 8})
    big = program_summary(program, 2, {"batch": 128})
    assert big["naive_peak_bytes"] > small["naive_peak_bytes"]  # sizes follow the binding
    assert big["peak_bytes"] <= big["naive_peak_bytes"]
    assert big["memory_binding"] == {"batch": 128} and big["schedule_depth"] >= 2
