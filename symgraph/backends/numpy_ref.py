"""The NumPy reference backend: evaluates the graph node by node with each op's NumPy impl.

It is the independent reference every other backend is tested against, so it stays simple:
topological order, one impl call per node, intermediates freed after their last use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symgraph.errors import SymgraphError
from symgraph.graph import Node, resolve_shape, topo_order
from symgraph.ops import OPS


class Evaluation:
    """A compiled evaluation plan: node order, impls and the step at which each value dies."""

    def __init__(self, inputs: Sequence[Node], results: Sequence[Node]):
        self.inputs = list(inputs)
        self.results = list(results)
        self.order = [n for n in topo_order(self.results) if n.op != "placeholder"]
        last_use: dict[int, int] = {}
        for step, node in enumerate(self.order):
            for inp in node.inputs:
                last_use[inp.id] = step
        keep = {r.id for r in self.results}
        self.free_after: list[list[int]] = [[] for _ in self.order]
        for node_id, step in last_use.items():
            if node_id not in keep:
                self.free_after[step].append(node_id)
        self.impls = [OPS[n.op].impl for n in self.order]
        self.attrs = [n.attr for n in self.order]

    def run(self, arrays: Sequence[np.ndarray], dims: dict, check_nan: bool = False) -> list:
        env: dict[int, np.ndarray] = {n.id: a for n, a in zip(self.inputs, arrays)}
        with np.errstate(all="ignore"):
            for step, node in enumerate(self.order):
                if node.op == "variable":
                    env[node.id] = node._value
                    continue
                args = [env[i.id] for i in node.inputs]
                env[node.id] = evaluate_node(node, self.impls[step], self.attrs[step], dims,
                                             args, check_nan)
                for dead in self.free_after[step]:
                    env.pop(dead, None)
        return [env[r.id] for r in self.results]


def evaluate_node(node: Node, impl, attrs: dict, dims: dict, args: list,
                  check_nan: bool = False) -> np.ndarray:
    """One node's NumPy impl with the dtype fix-up, errors naming the node, optional NaN check."""
    try:
        value = impl(attrs, dims, *args)
    except (ValueError, IndexError, TypeError, FloatingPointError) as exc:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in args)
        raise SymgraphError(f"evaluating {node.describe()} on inputs ({shapes}) "
                            f"failed: {exc}") from None
    value = np.asarray(value)
    if value.dtype.name != node.dtype:
        value = value.astype(node.dtype)
    if check_nan and value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = "NaN" if np.isnan(value).any() else "inf"
        raise SymgraphError(f"{bad} first produced by {node.describe()} "
                            f"(shape {list(value.shape)})")
    return value


def expected_shape(node: Node, dims: dict) -> tuple:
    return resolve_shape(node.shape, dims)


class NumpyBackend:
    """Backend protocol: `compile(inputs, results, report) -> run(arrays, dims) -> arrays`."""

    name = "numpy"

    def compile(self, inputs: Sequence[Node], results: Sequence[Node], check_nan: bool = False,
                workers: int = 1):
        if workers > 1:  # kernel DAG on a thread pool (symgraph/backends/parallel.py)
            from symgraph.backends.parallel import compile_program

            return compile_program(inputs, results, workers=workers, check_nan=check_nan)
        plan = Evaluation(inputs, results)

        def run(arrays, dims):
            return plan.run(arrays, dims, check_nan=check_nan)

        run.plan = plan
        return run
