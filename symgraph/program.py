"""The lowered program: buffers, kernels and their DAG, the data every backend consumes.

lower.py builds a Program from an optimized graph; backends generate code from it, schedule.py
orders its kernel DAG and memplan.py plans its buffers. This module is the data model alone,
with the estimates the compile report shows (FLOPs, bytes moved): nothing here transforms a
graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symgraph.graph import Node

REDUCE_OPS = frozenset({"sum", "max"})


@dataclass(frozen=True)
class Buffer:
    """One array the program reads or writes; dims may be symbolic (bound at call time)."""

    id: int
    dtype: str
    shape: tuple
    kind: str  # input | variable | constant | temp | output
    node: Node

    def nbytes(self, dims: dict | None = None) -> int:
        """Size in bytes; unbound symbolic dims count as 1 unless `dims` binds them."""
        shape = [d if isinstance(d, int) else (dims or {}).get(d, 1) for d in self.shape]
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"b{self.id} {self.kind} {self.dtype}[{dims}] %{self.node.id}"


def reduced_dims(node: Node) -> tuple:
    """The dims a max or argmax reduces over (() for other ops): over none of them (a batch
    of 0) such a reduction has no value and raises, as NumPy does."""
    if node.op == "max":
        return tuple(node.inputs[0].shape[a] for a in node.attr["axes"])
    if node.op == "argmax":
        return (node.inputs[0].shape[node.attr["axis"]],)
    return ()


def may_reduce_nothing(node: Node) -> bool:
    return any(not isinstance(d, int) or d == 0 for d in reduced_dims(node))


@dataclass(frozen=True)
class Kernel:
    """One loop nest (or BLAS call): the fused nodes, what it reads and what it writes.

    `nodes` are the computed nodes in topological order: for a reduction its prologue, then
    `root`, then its epilogue (`epilogue` lists those); for a matmul `root` then its epilogue.
    `invariants` are the loop-invariant scalars the kernel recomputes before its loop. `reads`
    are the materialized nodes whose buffers it reads, `writes` the nodes it materializes.
    `domain` is the iteration shape (a reduction's input shape, a matmul's output shape).
    """

    id: int
    kind: str  # elementwise | reduce | matmul | index | movement
    domain: tuple
    nodes: tuple
    reads: tuple
    writes: tuple
    root: Node | None = None
    epilogue: tuple = ()
    invariants: tuple = ()

    def ops(self) -> str:
        return "+".join(n.op for n in self.nodes) or "-"

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.domain)
        reads = ",".join(f"%{n.id}" for n in self.reads)
        writes = ",".join(f"%{n.id}" for n in self.writes)
        inv = f" inv={len(self.invariants)}" if self.invariants else ""
        return f"k{self.id} {self.kind}[{dims}] {self.ops()} reads({reads}) writes({writes}){inv}"


@dataclass(frozen=True)
class Program:
    """Kernels in topological order over buffers; `deps[k]` = ids of kernels k waits for."""

    inputs: tuple
    results: tuple
    kernels: tuple
    buffers: tuple
    deps: dict
    buffer_of: dict = field(default_factory=dict)  # node id -> buffer id
    aliases: dict = field(default_factory=dict)  # result reshape id -> source node (same data)
    inplace: dict = field(default_factory=dict)  # result buffer id -> variable (inplace.py)

    def buffer(self, node: Node) -> Buffer:
        """The buffer holding `node` (a reshape result shares its source's buffer)."""
        node = self.aliases.get(node.id, node)
        return self.buffers[self.buffer_of[node.id]]

    def storage(self, node: Node) -> Buffer:
        """The buffer whose memory holds `node`: its own, or for an update written over its
        variable (`inplace`, symgraph/inplace.py) the variable's buffer when the program reads
        the variable (else its own, which the backend points at the variable's array)."""
        buf = self.buffer(node)
        var = self.inplace.get(buf.id)
        if var is not None and var.id in self.buffer_of:
            return self.buffers[self.buffer_of[var.id]]
        return buf

    def dump(self) -> str:
        """Compact text: one buffer, then one kernel, per line."""
        lines = [str(b) for b in self.buffers]
        for k in self.kernels:
            after = ",".join(f"k{d}" for d in self.deps[k.id])
            lines.append(str(k) + (f" after({after})" if after else ""))
        lines.append("return " + ", ".join(f"%{r.id}" for r in self.results))
        return "\n".join(lines)

    __str__ = dump

    def stats(self, dims: dict | None = None) -> dict:
        """Kernel and buffer counts, estimated FLOPs and bytes moved (unbound dims count 1)."""
        flops = sum(kernel_flops(k, dims) for k in self.kernels)
        moved = 0
        for k in self.kernels:
            for n in k.reads + k.writes:
                if n.id in self.buffer_of:
                    moved += self.buffer(n).nbytes(dims)
        return {"kernels": len(self.kernels), "buffers": len(self.buffers),
                "flops": int(flops), "bytes_moved": int(moved)}

    def schedule(self, workers: int = 2):
        """The list schedule of the kernel DAG for `workers` (symgraph/schedule.py)."""
        from symgraph import schedule

        return schedule.schedule_program(self, workers)

    def memory(self):
        """The liveness-based buffer plan (symgraph/memplan.py)."""
        from symgraph import memplan

        return memplan.plan_program(self)


def element_count(shape, dims: dict | None = None) -> int:
    """Elements of `shape`, symbolic dims bound by `dims` (a dim not bound counts as 1)."""
    return int(np.prod([d if isinstance(d, int) else (dims or {}).get(d, 1) for d in shape],
                       dtype=np.int64))


def kernel_flops(kernel: Kernel, dims: dict | None = None) -> float:
    """Estimated FLOPs: 2MNK per matmul, one per element per fused op otherwise."""
    total = 0.0
    for n in kernel.nodes:
        if n.op == "matmul":
            a = n.inputs[0]
            total += 2.0 * element_count(n.shape, dims) * element_count((a.shape[-1],), dims)
        elif n.op in REDUCE_OPS:
            total += element_count(n.inputs[0].shape, dims)
        else:
            total += element_count(n.shape, dims)
    return total


REPORT_DIM = 128  # symbolic dims are bound to this for the report's sizes (e.g. batch=128)


def fill_report(report, program: Program, dims: dict | None = None) -> None:
    """Set the lowering fields of a CompileReport (passes/report.py): kernel and buffer counts,
    estimated FLOPs and bytes moved, and the schedule and memory plan figures, with every
    symbolic dim bound to `dims` (default REPORT_DIM each; the binding is in report.backend)."""
    if dims is None:
        symbols = {d for b in program.buffers for d in b.shape if isinstance(d, str)}
        dims = {s: REPORT_DIM for s in sorted(symbols)}
    stats = program.stats(dims)
    for key in ("kernels", "buffers", "flops", "bytes_moved"):
        setattr(report, key, stats[key])
    from symgraph.memplan import program_summary

    summary = program_summary(program, workers=2, dims=dims)
    for key in ("peak_bytes", "naive_peak_bytes", "schedule_depth", "schedule_width"):
        setattr(report, key, summary[key])
    if dims:
        report.backend["sizes_for"] = dict(dims)
