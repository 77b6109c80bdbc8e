"""Tests for symgraph/schedule.py: levels, critical-path list scheduling, the cost model."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symgraph.errors import SymgraphError
from symgraph.schedule import (
    CostModel,
    bottom_levels,
    costs_from_counts,
    critical_path_schedule,
    level_schedule,
    topological_levels,
)


@st.composite
def random_dags(draw):
    """A random DAG (edges only from lower to higher index, ids shuffled) with random costs."""
    n = draw(st.integers(1, 24))
    names = draw(st.permutations([f"k{i}" for i in range(n)]))
    deps = {}
    for i in range(n):
        preds = draw(st.lists(st.integers(0, i - 1), max_size=4)) if i else []
        deps[names[i]] = [names[p] for p in preds]
    # Costs include zeros, and repeated values, where event ties are easiest to get wrong.
    costs = {k: draw(st.sampled_from([0.0, 1.0, 2.0, 0.5, 3.25, 7.0])) for k in deps}
    workers = draw(st.integers(1, 4))
    return deps, costs, workers


def check_schedule(deps, costs, sched):
    placed = [s for lane in sched.lanes for s in lane]
    assert sorted(s.kernel for s in placed) == sorted(deps), "each kernel exactly once"
    assert sorted(sched.order) == sorted(deps)
    where = sched.placement()
    for k, preds in deps.items():
        for p in preds:
            assert where[p].finish <= where[k].start + 1e-12, f"{k} starts before {p} finished"
    position = {k: i for i, k in enumerate(sched.order)}
    for k, preds in deps.items():
        assert all(position[p] < position[k] for p in preds), "order is topological"
    for lane in sched.lanes:  # a worker runs one kernel at a time
        for a, b in zip(lane, lane[1:], strict=False):
            assert a.finish <= b.start + 1e-12
        for s in lane:
            assert s.finish - s.start == pytest.approx(costs[s.kernel])
    serial = sum(costs.values())
    assert sched.makespan <= serial * (1 + 1e-9) + 1e-12
    assert sched.makespan >= sched.critical_path_seconds * (1 - 1e-9) - 1e-12
    assert sched.makespan >= serial / sched.workers * (1 - 1e-9) - 1e-12


@settings(max_examples=150, deadline=None)
@given(random_dags())
def test_critical_path_schedule_respects_dependencies(case):
    deps, costs, workers = case
    check_schedule(deps, costs, critical_path_schedule(deps, costs, workers))


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_level_schedule_respects_dependencies(case):
    deps, costs, workers = case
    check_schedule(deps, costs, level_schedule(deps, costs, workers))


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_levels_are_kahn_generations(case):
    deps, _, _ = case
    levels = topological_levels(deps)
    level_of = {k: i for i, level in enumerate(levels) for k in level}
    assert sorted(level_of) == sorted(deps)
    for k, preds in deps.items():
        # Each kernel sits exactly one level below its deepest predecessor.
        assert level_of[k] == max((level_of[p] + 1 for p in preds), default=0)


def test_one_worker_makespan_is_serial_sum():
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    costs = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 1.0}
    sched = critical_path_schedule(deps, costs, 1)
    assert sched.makespan == pytest.approx(7.0)
    assert sched.order == ("a", "c", "b", "d")  # the longer branch first


def test_critical_path_beats_levels_on_a_known_dag():
    # A long chain a1->a2->a3 and short independent work s1..s3 at level 0. Levels put the three
    # shorts beside a1 and then wait at each barrier; the list scheduler keeps the chain busy.
    deps = {"s1": [], "s2": [], "s3": [], "a1": [], "a2": ["a1"], "a3": ["a2"]}
    costs = {"s1": 1.0, "s2": 1.0, "s3": 1.0, "a1": 2.0, "a2": 2.0, "a3": 2.0}
    cp = critical_path_schedule(deps, costs, 2)
    lv = level_schedule(deps, costs, 2)
    assert cp.makespan == pytest.approx(6.0)  # the chain alone, shorts hidden beside it
    assert lv.makespan == pytest.approx(7.0)  # level 0 costs 2 + 1 on the busier worker
    assert cp.depth == 3 and cp.width == 4
    assert cp.critical_path_seconds == pytest.approx(6.0)
    assert cp.estimated_speedup == pytest.approx(9.0 / 6.0)


def test_independent_branches_split_across_workers():
    deps = {"x1": [], "x2": ["x1"], "y1": [], "y2": ["y1"], "out": ["x2", "y2"]}
    costs = dict.fromkeys(deps, 1.0)
    sched = critical_path_schedule(deps, costs, 2)
    assert sched.makespan == pytest.approx(3.0)
    lanes = [[s.kernel for s in lane] for lane in sched.lanes]
    assert {tuple(lane[:2]) for lane in lanes} == {("x1", "x2"), ("y1", "y2")}


def test_bottom_levels():
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"]}
    bl = bottom_levels(deps, {"a": 1.0, "b": 2.0, "c": 5.0, "d": 1.0})
    assert bl == {"a": 6.0, "b": 3.0, "c": 5.0, "d": 1.0}


def test_errors_name_the_kernel():
    with pytest.raises(SymgraphError, match="cycle"):
        topological_levels({"a": ["b"], "b": ["a"]})
    with pytest.raises(SymgraphError, match="'zz'"):
        critical_path_schedule({"a": ["zz"]}, {"a": 1.0}, 2)
    with pytest.raises(SymgraphError, match="no cost estimate for kernel 'b'"):
        critical_path_schedule({"a": [], "b": ["a"]}, {"a": 1.0}, 2)
    with pytest.raises(SymgraphError, match="workers"):
        critical_path_schedule({"a": []}, {"a": 1.0}, 0)
    with pytest.raises(SymgraphError, match="itself"):
        topological_levels({"a": ["a"]})


def test_empty_program():
    sched = critical_path_schedule({}, {}, 2)
    assert sched.makespan == 0.0 and sched.order == () and sched.depth == 0


def test_cost_model_is_a_roofline():
    model = CostModel(flops_per_second=1e9, bytes_per_second=1e8, overhead_seconds=1e-6)
    assert model.seconds(2e9, 0) == pytest.approx(2.0 + 1e-6)  # compute bound
    assert model.seconds(0, 3e8) == pytest.approx(3.0 + 1e-6)  # memory bound
    costs = costs_from_counts({"mm": 1e9}, {"mm": 1e6, "ew": 1e8}, model)
    assert costs == pytest.approx({"mm": 1.0 + 1e-6, "ew": 1.0 + 1e-6})


def test_schedule_report():
    sched = critical_path_schedule({"a": [], "b": ["a"]}, {"a": 1e-6, "b": 2e-6}, 2)
    d = sched.to_dict()
    assert d["depth"] == 2 and d["width"] == 1 and d["kernels"] == 2
    assert "2 kernels on 2 worker(s)" in str(sched)
