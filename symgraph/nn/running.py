"""Keras's running means of a fit / evaluate epoch, and how a compiled step is fed one batch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from symgraph.nn import model_outputs
from symgraph.nn.model_inputs import feed
from symgraph.nn.steps import TargetSpec


class Running:
    """Keras's Mean trackers over the batches run so far: the loss averages the batches weighted
    by their sizes; a metric averages its per-sample values, a weighted metric (those that end
    `names`, one per entry of `weight_of`) its values weighted by the sample weights,
    sum(w*v)/sum(w) (0 where the weights sum to 0, as Keras's divide_no_nan), w being the
    weight array `weight_of[i]` of those a step is fed (a multi-output model's are per output).
    A multi-output model's per-output losses (`loss_names`; None for a one-output model)
    average as the loss does and follow the metrics in the logs, as in Keras 3. An
    accumulating metric (`accumulators`: per metric the metrics.Accumulator, None for a mean
    metric) takes several step outputs, added up over the batches in float64 and combined by
    its `result` when the logs are read (Keras's confusion-matrix metrics)."""

    def __init__(self, names: list, weight_of: list, loss_names: list | None = None,
                 accumulators: list | None = None):
        self.names, self.weight_of, self.loss_names = names, list(weight_of), loss_names
        self.accumulators = accumulators or [None] * len(names)
        self.seen, self.loss_sum = 0, 0.0
        self.sums, self.counts = np.zeros(len(names)), np.zeros(len(names))
        self.totals: list = [None] * len(names)  # an accumulating metric's summed outputs
        self.loss_sums = np.zeros(len(loss_names or []))

    def add(self, step, outs, n: int, weights) -> None:
        """The outputs [loss, *metric sums, ...] of `step` on `n` samples with `weights` (one
        array, SampleWeights, or None); a plain metric whose function gave one value per batch
        counts once."""
        self.seen += n
        self.loss_sum += float(outs[0]) * n
        at = 1  # the next metric's first output
        for i, accumulator in enumerate(self.accumulators):
            if accumulator is None:
                self.sums[i] += float(outs[at])
                at += 1
                continue
            sums = [np.asarray(v, np.float64) for v in outs[at:at + accumulator.sum_count]]
            if self.totals[i] is not None:
                sums = [total + v for total, v in zip(self.totals[i], sums)]
            self.totals[i] = sums
            at += accumulator.sum_count
        if weights is None:
            weight_sums = [n] * len(self.weight_of)
        else:
            arrays = feed(weights)
            weight_sums = [float(np.sum(arrays[i], dtype=np.float64)) for i in self.weight_of]
        plain = [1 if once else n for once in step.per_batch]
        self.counts += plain + weight_sums
        m = len(self.loss_sums)
        self.loss_sums += [float(v) * n for v in outs[at:at + m]]

    def logs(self) -> dict:
        logs = {name: (float(s / c) if c else 0.0) if accumulator is None
                else accumulator.result(totals) if totals is not None else 0.0
                for name, s, c, accumulator, totals in zip(
                    self.names, self.sums, self.counts, self.accumulators, self.totals)}
        if self.loss_names is not None:  # Keras 3's order: the total, the metrics, the losses
            logs = {"loss": self.loss_sum / self.seen, **logs}
            logs.update({name: float(s) / self.seen
                         for name, s in zip(self.loss_names, self.loss_sums)})
            return logs
        logs["loss"] = self.loss_sum / self.seen
        return logs


def weighted(target: TargetSpec, weights) -> TargetSpec:
    """The target of a step fed `weights` (None: the unweighted step, compiled as before)."""
    return target if weights is None else replace(target, weighted=True)


def run_step(step, xb, yb, wb):
    """A step on one batch (y: one array, or TargetArrays; w: one array, SampleWeights, or None
    for an unweighted step)."""
    return step(*feed(xb), *feed(yb)) if wb is None else step(*feed(xb), *feed(yb), *feed(wb))


def logs_result(logs: dict, return_dict: bool, loss_names: list | None = None):
    """`loss_names`: a multi-output model's per-output loss log names (None for one output)."""
    if return_dict:
        return dict(logs)
    if loss_names is not None:
        return model_outputs.results_in_order(logs, loss_names)
    ordered = [logs["loss"]] + [v for k, v in logs.items() if k != "loss"]
    return ordered[0] if len(ordered) == 1 else ordered
