"""Roofline arithmetic: FLOPs and bytes moved per benchmark kernel, and the fraction of the roof.

Counts are the minimum work a perfect implementation does: every input read once, every output
written once, intermediates kept in registers (that is what fusion buys). FLOPs count floating
adds, multiplies, divides, compares and transcendentals as one each; integer hashing (dropout's
random bits) counts as no FLOPs, which makes dropout memory-bound by definition.
A kernel's roof is min(peak GFLOP/s, intensity x bandwidth) with the machine's own measured
peaks (suite `limits`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Work of one kernel call."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else float("inf")

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


def matmul(m: int, n: int, k: int, bias: bool = False, activation: bool = False,
           itemsize: int = 4) -> Cost:
    """(m, k) @ (k, n) [+ bias][-> activation]: 2mnk FLOPs, A, B (and bias) read, C written once."""
    flops = 2.0 * m * n * k + (m * n if bias else 0) + (m * n if activation else 0)
    elements = m * k + k * n + m * n + (n if bias else 0)
    return Cost(flops, float(elements * itemsize))


def elementwise_chain(n: int, ops: int, inputs: int = 1, outputs: int = 1,
                      itemsize: int = 4) -> Cost:
    """`ops` elementwise ops fused over n elements: ops*n FLOPs; inputs read, outputs written."""
    return Cost(float(ops * n), float((inputs + outputs) * n * itemsize))


def elementwise_unfused(n: int, ops: int, itemsize: int = 4) -> Cost:
    """The same chain one op per pass (as NumPy runs it): every intermediate written and read."""
    return Cost(float(ops * n), float(2 * ops * n * itemsize))


def reduction(n: int, out: int = 1, itemsize: int = 4) -> Cost:
    """Sum of n elements into `out` results: n - out adds; input read, output written."""
    return Cost(float(n - out), float((n + out) * itemsize))


def softmax_cross_entropy(batch: int, classes: int, itemsize: int = 4) -> Cost:
    """Mean sparse softmax cross-entropy forward and its logits gradient.

    Per logit: max compare, subtract, exp, sum add (forward), divide and scale (backward): 6.
    Per row: log, label pick and subtract, mean add: 3. Bytes: logits read, labels (int32) read,
    gradient written.
    """
    flops = 6.0 * batch * classes + 3.0 * batch
    return Cost(flops, float(2 * batch * classes * itemsize + batch * 4))


def batch_norm(batch: int, features: int, itemsize: int = 4) -> Cost:
    """Batch norm (batch statistics) forward and backward over a (batch, features) input.

    Forward per element: mean add, subtract, square, variance add, multiply by 1/std, scale,
    shift (7). Backward per element: dgamma product and add, dbeta add, dxhat scale, two mean
    adds with one product, final combine of three terms (9). Per feature: sqrt, add, divide (3).
    Bytes: x and the upstream gradient read, y and dx written; gamma, beta, dgamma, dbeta.
    """
    n = batch * features
    flops = 16.0 * n + 3.0 * features
    return Cost(flops, float((4 * n + 4 * features) * itemsize))


def adam(n: int, itemsize: int = 4) -> Cost:
    """One Adam update of n weights: read w, g, m, v; write w, m, v.

    Per element: m (sub, mul, add: 3), v (mul, sub, mul, add: 4), w (sqrt, add, div, mul, sub: 5).
    """
    return Cost(12.0 * n, float(7 * n * itemsize))


def dropout(n: int, itemsize: int = 4) -> Cost:
    """Inverted dropout forward over n elements: compare, scale and select (3); x in, y out."""
    return Cost(3.0 * n, float(2 * n * itemsize))


@dataclass(frozen=True)
class Roofs:
    """The machine's measured peaks: fp32 GEMM GFLOP/s and memory bandwidth GB/s."""

    gflops: float
    gbps: float

    @property
    def ridge(self) -> float:
        """Intensity (FLOPs/byte) where a kernel stops being memory-bound."""
        return self.gflops / self.gbps

    def attainable_gflops(self, cost: Cost) -> float:
        return min(self.gflops, cost.intensity * self.gbps)

    def bound(self, cost: Cost) -> str:
        return "compute" if cost.intensity >= self.ridge else "memory"

    def fraction(self, cost: Cost, seconds: float) -> float:
        """Achieved performance as a fraction of this kernel's roof (1.0 = at the roof).

        Compute-bound kernels are judged by GFLOP/s, memory-bound ones by GB/s.
        """
        if seconds <= 0:
            return float("nan")
        if self.bound(cost) == "compute":
            return cost.flops / seconds / 1e9 / self.gflops
        return cost.bytes / seconds / 1e9 / self.gbps


def rates(cost: Cost, seconds: float) -> dict:
    """GFLOP/s and GB/s achieved by one call of `cost` taking `seconds`."""
    if seconds <= 0:
        return {"gflops": float("nan"), "gbps": float("nan")}
    return {"gflops": cost.flops / seconds / 1e9, "gbps": cost.bytes / seconds / 1e9}
