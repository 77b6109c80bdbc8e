"""The ordered pass table and the optimization levels O0..O3."""

from __future__ import annotations

from symgraph.graph import Node


def optimize(outputs, level: int = 2):
    """Run the passes of `level` over `outputs`; returns (optimized outputs, report)."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    report = {"level": level, "passes": []}
    return (outs[0] if single else outs), report
