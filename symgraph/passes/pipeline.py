"""The ordered pass table and the optimization levels O0..O3, in one place.

    level  passes (in table order)                         results
    O0     none                                            exactly as built
    O1     cse, fold, dce                                  identical (exact rewrites only)
    O2     + simplify, stabilize, fold again               identical except signed zeros, and
                                                           where stabilization turns an
                                                           overflow into the true value
    O3     + reassociate                                   may round differently (sum of
                                                           broadcast copies -> multiply, x**2)

Every pass is a pure function `outputs -> (new outputs, stats dict)`; a graph is the list of
its output nodes. CSE runs first and again after every pass that built new nodes (fold,
simplify, stabilize, reassociate, dce), so duplicates a rewrite creates are merged at once.
`SYMGRAPH_DEBUG=1` prints the IR after each pass.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from typing import Callable

from symgraph import envvars
from symgraph.errors import SymgraphError
from symgraph.graph import Node, dump
from symgraph.passes.cse import cse
from symgraph.passes.dce import dce
from symgraph.passes.fold import fold
from symgraph.passes.reassociate import reassociate
from symgraph.passes.report import CompileReport, PassStats
from symgraph.passes.rewrite import clear_order_cache, count_nodes
from symgraph.passes.simplify import simplify
from symgraph.passes.stabilize import stabilize

LEVELS = (0, 1, 2, 3)


@dataclass(frozen=True)
class PassSpec:
    """One row of the pass table: the pass, the lowest level running it, and whether it builds
    nodes (then CSE re-runs after it whenever it changed the graph)."""

    name: str
    run: Callable
    min_level: int
    builds_nodes: bool


PASSES = (
    PassSpec("cse", cse, 1, False),
    PassSpec("fold", fold, 1, True),
    PassSpec("simplify", simplify, 2, True),
    PassSpec("stabilize", stabilize, 2, True),
    PassSpec("reassociate", reassociate, 3, True),
    PassSpec("fold", fold, 2, True),  # simplification exposes new all-constant subgraphs
    PassSpec("dce", dce, 1, True),
)


def passes_for(level: int) -> list[PassSpec]:
    """The passes `level` runs, in order (CSE re-runs are added by `optimize`)."""
    return [p for p in PASSES if p.min_level <= level]


def _debug(name: str, outs: list[Node]) -> None:
    if envvars.flag("SYMGRAPH_DEBUG"):
        print(f"[symgraph] IR after {name}:\n{dump(outs)}", file=sys.stderr)


def _run(spec_name: str, fn: Callable, outs: list[Node], before: int,
         report: CompileReport) -> tuple[list[Node], int, bool]:
    start = time.perf_counter()
    new, stats = fn(outs)
    seconds = time.perf_counter() - start
    after = count_nodes(new)
    changed = after != before or any(a is not b for a, b in zip(new, outs)) or \
        any(v for k, v in stats.items() if isinstance(v, int))
    report.passes.append(PassStats(spec_name, before, after, seconds, stats))
    _debug(spec_name, new)
    return new, after, changed


def optimize(outputs, level: int = 2):
    """Run the passes of `level` over `outputs` (a node or a list of nodes).

    Returns (optimized outputs in the same structure, CompileReport).
    """
    if level not in LEVELS:
        raise SymgraphError(f"optimize: level must be one of 0, 1, 2, 3 (O0..O3), got {level!r}")
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    for i, o in enumerate(outs):
        if not isinstance(o, Node):
            raise SymgraphError(f"optimize: output {i} is a {type(o).__name__}, not a node")
    report = CompileReport(level=level)
    if level == 0:
        return (outs[0] if single else _restructure(outputs, outs)), report
    # Passes allocate many long-lived nodes, which makes CPython's cyclic collector rescan the
    # whole graph again and again (a third of pass time at 10k-30k nodes, growing with size).
    # The passes create no reference cycles, so collection is paused while they run.
    collecting = gc.isenabled()
    gc.disable()
    try:
        size = count_nodes(outs)
        for spec in passes_for(level):
            outs, size, changed = _run(spec.name, spec.run, outs, size, report)
            if spec.builds_nodes and changed:
                outs, size, _ = _run("cse", cse, outs, size, report)
    finally:
        clear_order_cache()
        if collecting:
            gc.enable()
    return (outs[0] if single else _restructure(outputs, outs)), report


def _restructure(given, outs: list[Node]):
    return tuple(outs) if isinstance(given, tuple) else outs
