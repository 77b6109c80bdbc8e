"""Training diagnostics: per-layer gradient norms, dead-ReLU fractions, NaN hunting.

Gradient norms (vanishing / exploding gradients) are averaged over an epoch's batches. A unit
counts as dead when its ReLU output was zero for every sample of every batch of the epoch.
When a step's loss is not finite, the guard re-runs that batch (state restored first) with the
NumPy reference backend's `check_nan`, which stops at the first node whose value is NaN/inf and
names it with the source line that created it.
"""

from __future__ import annotations

import re

import numpy as np

from symgraph.errors import SymgraphError


class EpochDiagnostics:
    """Accumulates a training step's diagnostic outputs over one epoch."""

    def __init__(self, step):
        self.step = step
        self.start = 1 + step.n_metrics
        self.norm_sums = np.zeros(len(step.grad_layers))
        self.alive: list[np.ndarray | None] = [None] * len(step.relu_layers)
        self.batches = 0

    def add(self, outs) -> None:
        k = len(self.step.grad_layers)
        self.norm_sums += [float(v) for v in outs[self.start:self.start + k]]
        for i, active in enumerate(outs[self.start + k:]):
            seen = np.asarray(active) > 0
            self.alive[i] = seen if self.alive[i] is None else self.alive[i] | seen
        self.batches += 1

    def summary(self) -> dict:
        logs = {}
        for name, total in zip(self.step.grad_layers, self.norm_sums):
            logs[f"grad_norm/{name}"] = float(total) / max(self.batches, 1)
        for name, alive in zip(self.step.relu_layers, self.alive):
            if alive is not None:
                logs[f"dead_relu/{name}"] = float(1.0 - alive.mean())
        return logs


def hunt_nan(model, target, batch, before) -> str:
    """Name the first node that produces NaN/inf on this batch (x, y and, for a weighted
    target, the sample weights); state is left as `before`."""
    try:
        step = model._train_step(target, backend="numpy", check_nan=True)
        step(*batch)
    except SymgraphError as exc:
        found = re.search(r"node '\w+?_(\d+)'", str(exc))
        part = step.where(int(found.group(1))) if found else None
        return f"the loss became NaN/inf: {exc}" + (f"; it belongs to {part}" if part else "")
    finally:
        for var, value in before:  # the re-run must not advance state either
            var._assign(value)
    return ("the loss became NaN/inf, but a NumPy re-run of the batch with NaN checks found "
            "no NaN (the backend may differ from the reference)")
