"""Updates written in place: which variables may receive their new value in their own array.

Stage: after lowering, before a CPU backend generates code. A training step reads the weights
and optimizer slots and computes their new values. Written to fresh arrays, which the runtime
swaps in after the step succeeded, the state occupies twice its size (M1: 2 x 22 MiB, beyond
this machine's 32 MiB L3). Written over the variable's own array, it stays at its size. That
is done only where no one can tell the difference, for a pair (variable v, its new value r):

- the kernel K writing r is a fused loop (elementwise, or a matmul's epilogue) that reads v
  only at the element it writes and before writing it: directly (no view, no broadcast),
  never as a matmul operand, and its first read of v comes at or before r in its body;
- every other kernel reading v runs before K: an ancestor in the kernel DAG, or made one by
  an added edge where the two were independent (then it runs first in the serial entry and in
  every interleaving of the parallel driver); a kernel that needs r cannot also read v;
- every kernel that can fail (bounds-checked take and scatter_add, a max or argmax over an
  axis a batch of 0 empties) runs before every in-place writer in the same way, so a failing
  call still changes no state;
- neither v nor r is also returned as an output (an output of v would show the new value).

The plan is `Program.inplace` ({r's buffer: v}); `Program.storage(r)` is then v's buffer, so
the kernel writes v's buffer itself (one parameter: code generators keep LLVM's `noalias`).
A matmul writing r in its epilogue needs its product elsewhere (the GEMM would overwrite v
before the epilogue read it): in a written epilogue node that is not in place, else in a
scratch buffer added here. The backend still decides per call: the variable's array must be
C-contiguous, writable, of its shape, and held by nothing but the variable
(symgraph/arrays.py), else the kernel gets a fresh array holding a copy of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Sequence

import numpy as np

from symgraph.graph import Node
from symgraph.lower import view_source
from symgraph.memplan import ancestor_masks
from symgraph.program import Buffer, Kernel, Program, may_reduce_nothing

FAILING_OPS = frozenset({"take", "scatter_add"})  # raise IndexError on a bad label


def can_fail(node: Node) -> bool:
    """Whether the kernel computing `node` may raise: an index out of range, or a max or
    argmax over an axis that a batch of 0 empties."""
    return node.op in FAILING_OPS or may_reduce_nothing(node)


def ancestors(program: Program) -> dict[int, set[int]]:
    """Kernel id -> ids of every kernel it waits for, directly or not (memplan's masks)."""
    ids = [k.id for k in program.kernels]  # topological order
    masks = ancestor_masks(program.deps, ids, {k: i for i, k in enumerate(ids)})
    return {k: {ids[j] for j in range(len(ids)) if mask >> j & 1}
            for k, mask in zip(ids, masks)}


def _reads_at_own_element(kernel: Kernel, var: Node, new: Node) -> bool:
    """Does `kernel` read `var` only element for element, before it writes `new`?"""
    if kernel.kind == "elementwise":
        if tuple(kernel.domain) != tuple(new.shape):
            return False
        loop = {id(n) for n in kernel.nodes}
    elif kernel.kind == "matmul" and new in kernel.epilogue:
        if tuple(kernel.root.shape) != tuple(new.shape):
            return False
        loop = {id(n) for n in kernel.epilogue}
    else:
        return False
    first_read = None
    for pos, m in enumerate(kernel.nodes):
        for inp in m.inputs:
            if view_source(inp) is not var:
                continue
            if inp is not var or id(m) not in loop or tuple(m.shape) != tuple(var.shape):
                return False  # another element, a GEMM operand, or a broadcast
            first_read = pos if first_read is None else first_read
    return first_read is None or first_read <= kernel.nodes.index(new)


def plan_inplace(program: Program, update_vars: Sequence[Node]) -> Program:
    """`program` with `inplace` set ({result buffer id: variable}) for the updates that are safe
    to write over their variable (module docstring); the program's last results are the new
    values of `update_vars`, in order. A kernel that reads the variable (or can fail) and is
    independent of the update's kernel gets an edge to run before it; kernels are then
    renumbered in a topological order of the new DAG."""
    if not update_vars:
        return program
    news = program.results[len(program.results) - len(update_vars):]
    anc = ancestors(program)
    writer = {w.id: k for k in program.kernels for w in k.writes}
    readers: dict[int, list[int]] = {}
    for k in program.kernels:
        for r in k.reads:
            readers.setdefault(r.id, []).append(k.id)
    returned = Counter(program.buffer(r).id for r in program.results)
    failing = [k.id for k in program.kernels if any(can_fail(n) for n in k.nodes)]
    chosen: dict[int, Node] = {}
    writers: dict[int, Kernel] = {}
    edges: dict[int, set[int]] = {}  # kernel -> kernels it now waits for as well
    for var, new in zip(update_vars, news):
        if new.is_leaf() or new.id in program.aliases or new.id not in program.buffer_of:
            continue
        buf = program.buffer(new)
        k = writer.get(new.id)
        if (buf.kind != "output" or returned[buf.id] != 1 or k is None or new not in k.nodes
                or new.dtype != var.dtype or tuple(new.shape) != tuple(var.shape)):
            continue
        if var.id in program.buffer_of and returned[program.buffer_of[var.id]]:
            continue  # the variable itself is an output: it must show the old value
        if not _reads_at_own_element(k, var, new):
            continue
        first = {r for r in [*readers.get(var.id, ()), *failing] if r != k.id}
        if any(k.id in anc[r] for r in first):
            continue  # it needs the new value, or fails after the write
        for r in first - anc[k.id]:  # independent: make it run first
            edges.setdefault(k.id, set()).add(r)
            _add_edge(anc, r, k.id)
        chosen[buf.id] = var
        writers[buf.id] = k
    if not chosen:
        return program
    program = replace(program, inplace=chosen)
    program = _renumber(_give_products_a_buffer(program, set(writers.values())), edges)
    return _one_product_at_a_time(program)


def _add_edge(anc: dict[int, set[int]], before: int, after: int) -> None:
    """Record `before` -> `after` in the ancestor sets of `after` and its descendants."""
    gained = {before} | anc[before]
    for k, above in anc.items():
        if k == after or after in above:
            above |= gained


def _renumber(program: Program, edges: dict[int, set[int]]) -> Program:
    """`program` with the extra edges, its kernels in a topological order (ties: the old
    order) and numbered by position (backends index their kernel lists by id)."""
    if not edges:
        return program
    preds = {k.id: set(program.deps[k.id]) | edges.get(k.id, set()) for k in program.kernels}
    by_id = {k.id: k for k in program.kernels}
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(preds):
        kid = min(k for k in preds if k not in done and preds[k] <= done)
        order.append(kid)
        done.add(kid)
    new = {old: i for i, old in enumerate(order)}
    kernels = tuple(replace(by_id[old], id=new[old]) for old in order)
    deps = {new[k]: tuple(sorted(new[d] for d in ds)) for k, ds in preds.items()}
    return replace(program, kernels=kernels, deps=deps)


def _give_products_a_buffer(program: Program, kernels: set) -> Program:
    """A scratch buffer for the product of each matmul in `kernels` whose epilogue has no
    written node, other than in-place ones, to hold it (codegen's GEMM target). The products
    are weight gradients, of static shape; one flat scratch per dtype serves them all (each
    lives only within its kernel): M1 needs 4 MiB, not 11."""
    need: dict[str, list[Kernel]] = {}
    for k in sorted(kernels, key=lambda k: k.id):
        root = k.root
        if k.kind != "matmul" or root.id in program.buffer_of:
            continue
        if any(w in k.epilogue and w.dtype == root.dtype and tuple(w.shape) == tuple(root.shape)
               and program.buffer(w).id not in program.inplace for w in k.writes):
            continue
        need.setdefault(root.dtype, []).append(k)
    if not need:
        return program
    buffers, buffer_of = list(program.buffers), dict(program.buffer_of)
    replaced: dict[int, Kernel] = {}
    for dtype, users in need.items():
        size = max(int(np.prod(k.root.shape, dtype=np.int64)) for k in users)
        scratch = Buffer(len(buffers), dtype, (size,), "temp", users[0].root)
        buffers.append(scratch)
        for k in users:
            buffer_of[k.root.id] = scratch.id
            replaced[k.id] = replace(k, writes=(k.root,) + k.writes)
    kernels_now = tuple(replaced.get(k.id, k) for k in program.kernels)
    return replace(program, kernels=kernels_now, buffers=tuple(buffers), buffer_of=buffer_of)


def _one_product_at_a_time(program: Program) -> Program:
    """Kernels sharing a GEMM scratch buffer wait for each other, in their (topological)
    order, so that a parallel schedule (workers > 1) never runs two at once: two weight
    gradients written into one scratch gave wrong updates in 1 call of 5."""
    scratch: dict[int, list[int]] = {}  # buffer -> the matmul kernels putting products there
    for k in program.kernels:
        if k.kind == "matmul" and k.root.id in program.buffer_of:
            scratch.setdefault(program.buffer_of[k.root.id], []).append(k.id)
    deps = dict(program.deps)
    for users in scratch.values():
        for before, after in zip(users, users[1:]):
            deps[after] = tuple(sorted(set(deps[after]) | {before}))
    return replace(program, deps=deps)


def describe(program: Program) -> list[str]:
    """One line per in-place pair for the generated source (stable across processes: buffer
    ids and user-given names, never node ids)."""
    lines = []
    for bid, var in sorted(program.inplace.items()):
        read = f" b{program.buffer_of[var.id]}" if var.id in program.buffer_of else ""
        name = f" {var.name}" if var.name else ""
        lines.append(f"b{bid} is written over the array of variable{read}{name}")
    return lines
