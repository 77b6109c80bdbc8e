"""Lowering: an optimized graph becomes a Program of fused kernels over materialized buffers.

What every code-generating backend consumes (DESIGN.md decision 7). Node roles:

- leaves (placeholder, variable, constant) live in buffers the runtime provides;
- views (reshape, transpose, broadcast_to, slice) compute nothing: a kernel reads their source
  buffer through an index map, so their source must be materialized;
- invariants: elementwise nodes of static size 1 that depend only on leaves of size 1 and
  `dim_size` (learning-rate schedules, step counters, 1/n). Every kernel that needs one
  recomputes it once before its loop, so they never cost a kernel of their own;
- everything else is grouped into kernels. Maximal convex groups of same-shape elementwise nodes
  fuse into one loop; a reduction absorbs the elementwise group that produces its input (its
  prologue) and the same-shape elementwise nodes that consume its result (its epilogue); a
  matmul absorbs an elementwise epilogue (bias, activation, dropout). take, scatter_add, argmax,
  concatenate and unslice are kernels of their own.

A node is materialized (written to a buffer) only when a node outside its kernel reads it, or
it is a result. Kernels are listed in a topological order; `deps` gives the kernel DAG that the
list scheduler (schedule.py) and the memory planner (memplan.py) work on. The Program, its
Buffers and Kernels are defined in program.py.
"""

from __future__ import annotations

from symgraph.graph import Node, consumers, topo_order
from symgraph.ops import OPS
from symgraph.program import (  # noqa: F401  (the data model, re-exported for its users)
    REDUCE_OPS,
    REPORT_DIM,
    Buffer,
    Kernel,
    Program,
    fill_report,
    kernel_flops,
)

VIEW_OPS = frozenset({"reshape", "transpose", "broadcast_to", "slice"})
OWN_KERNEL_OPS = frozenset({"take", "scatter_add", "argmax", "concatenate", "unslice"})
ELEMENTWISE_EXTRA = frozenset({"one_hot", "random_uniform", "dim_size", "stop_gradient"})
LEAF_KIND = {"placeholder": "input", "variable": "variable", "constant": "constant"}


# --- node roles --------------------------------------------------------------------------------


def _is_size_one(shape) -> bool:
    return all(d == 1 for d in shape)


def _elementwise(node: Node) -> bool:
    return OPS[node.op].kind == "elementwise" or node.op in ELEMENTWISE_EXTRA


def find_invariants(order) -> set[int]:
    """Ids of loop-invariant values: elementwise nodes or views computed only from size-1 leaves,
    `dim_size` and other invariants. Their value is the same at every element whatever their
    shape (a broadcast 1/n, a learning-rate schedule), so a kernel computes each once.

    Values that a GEMM or an index kernel takes as a whole array (d sum(x @ W) / dx multiplies
    a broadcast 1 by W) are not invariants: they get a kernel and a buffer."""
    inv = _invariants(order, set())
    arrays: set[int] = set()
    for u in order:
        if not reads_arrays(u):
            continue
        for node in u.inputs:
            if node.id in inv and node.op in VIEW_OPS and _needs_copy(u, node):
                arrays.add(node.id)  # a copy kernel reads its source element by element
                continue
            while node.id in inv:  # BLAS or the index kernel reads the chain's source buffer
                arrays.add(node.id)
                if node.op not in VIEW_OPS:
                    break
                node = node.inputs[0]
    return _invariants(order, arrays) if arrays else inv


def _invariants(order, excluded: set[int]) -> set[int]:
    inv: set[int] = set()
    for n in order:
        if n.is_leaf() or n.op in ("random_uniform", "one_hot") or n.id in excluded:
            continue
        if not (_elementwise(n) or n.op in VIEW_OPS):
            continue
        if all(i.id in inv or (i.is_leaf() and _is_size_one(i.shape)) for i in n.inputs):
            inv.add(n.id)
    return inv


def view_source(node: Node) -> Node:
    """The first non-view node under a chain of views."""
    while node.op in VIEW_OPS:
        node = node.inputs[0]
    return node


def array_view_ok(node: Node, allow_transpose: bool) -> bool:
    """Can a backend hand this view to BLAS / an index kernel as an array without a copy?

    Reshapes of a contiguous buffer are free; a matmul also takes the swap of the last two axes
    of a buffer (BLAS's transpose flag).
    """
    perm = tuple(node.attr.get("perm", ()))
    swap_last = tuple(range(node.ndim - 2)) + (node.ndim - 1, node.ndim - 2)
    if node.op == "transpose" and allow_transpose and perm == swap_last:
        node = node.inputs[0]
    while node.op == "reshape":
        node = node.inputs[0]
    return node.op not in VIEW_OPS


# --- grouping ------------------------------------------------------------------------------


class _Group:
    __slots__ = ("kind", "domain", "out_shape", "root", "members", "phase")

    def __init__(self, kind, domain, root=None, out_shape=None):
        self.kind = kind
        self.domain = tuple(domain)
        self.root = root
        self.out_shape = tuple(out_shape) if out_shape is not None else self.domain
        self.members: list[Node] = []
        self.phase: dict[int, str] = {}  # node id -> "pro" | "root" | "epi"


class _Grouper:
    def __init__(self, results, invariants):
        self.result_ids = {r.id for r in results}
        self.order = topo_order(results)
        self.index = {n.id: i for i, n in enumerate(self.order)}
        self.users = consumers(self.order)
        self.inv = invariants
        self.group: dict[int, _Group] = {}

    def add(self, node, group, phase):
        group.members.append(node)
        group.phase[node.id] = phase
        self.group[node.id] = group

    def convex_after_merge(self, g1: _Group, g2: _Group) -> bool:
        """No path leaves g1 | g2 and comes back, counting a path that enters another group
        as leaving from every member of it (a kernel's outputs all wait for all its inputs)."""
        inside = {n.id for n in g1.members} | {n.id for n in g2.members}
        last = max(self.index[i] for i in inside)
        stack = [u for i in inside for u in self.users[i] if u.id not in inside]
        seen: set[int] = set()
        expanded: set[int] = set()
        while stack:
            n = stack.pop()
            if n.id in seen:
                continue
            seen.add(n.id)
            g = self.group.get(n.id)
            if g is not None and id(g) not in expanded:
                expanded.add(id(g))
                stack.extend(m for m in g.members if m.id not in seen)
            if self.index[n.id] > last:
                continue
            for u in self.users[n.id]:
                if u.id in inside:
                    return False
                stack.append(u)
        return True

    def only_reads_from(self, node: Node, mine: _Group, theirs: _Group) -> bool:
        """Fast path: a lone node whose inputs all come from `theirs` or from leaves and
        invariants cannot close a cycle by joining `theirs` (no other path reaches it)."""
        if len(mine.members) != 1:
            return False
        for inp in node.inputs:
            src = view_source(inp)
            if src.is_leaf() or src.id in self.inv:
                continue
            if inp is not src or self.group.get(src.id) is not theirs:
                return False  # a view of a kernel's value needs it materialized first
        return True

    def phases_ok(self, rooted: _Group, pure: _Group, phase: str) -> bool:
        """A prologue node must not read the reduction's result (it runs inside the loop), and
        the root must not read an epilogue node (a GEMM operand computed after the GEMM)."""
        phases = dict(rooted.phase)
        phases.update({m.id: phase for m in pure.members})
        if any(phases.get(view_source(i).id) == "epi" for i in rooted.root.inputs):
            return False
        for m in rooted.members + pure.members:
            if phases[m.id] == "pro":
                if any(phases.get(i.id) in ("root", "epi") for i in m.inputs):
                    return False
        return True

    def merge(self, keep: _Group, other: _Group, phase: str) -> _Group:
        for m in other.members:
            self.add(m, keep, other.phase[m.id] if other.root is not None else phase)
        return keep

    def try_join(self, node: Node, mine: _Group, inp: Node) -> _Group:
        """Merge the group of `inp` (a same-shape elementwise input) into `mine` if legal."""
        theirs = self.group.get(inp.id)
        if theirs is None or theirs is mine or tuple(inp.shape) != tuple(node.shape):
            return mine
        if theirs.kind in ("index", "movement"):
            return mine
        if mine.root is not None and theirs.root is not None:
            return mine
        rooted, pure = (mine, theirs) if mine.root is not None else (theirs, mine)
        if rooted is mine:
            phase = mine.phase[node.id]
        else:
            phase = "pro" if theirs.phase[inp.id] == "pro" else "epi"
        if rooted.root is not None:
            want = rooted.domain if phase == "pro" else rooted.out_shape
            if rooted.kind == "matmul" and phase == "pro":
                return mine
            if pure.domain != tuple(want):
                return mine
        elif pure.domain != rooted.domain:
            return mine
        if not self.only_reads_from(node, mine, theirs) and \
                not self.convex_after_merge(mine, theirs):
            return mine
        if rooted.root is not None and not self.phases_ok(rooted, pure, phase):
            return mine
        if rooted is mine:
            return self.merge(mine, theirs, phase)
        if node.id in mine.phase:
            mine.phase[node.id] = phase
        return self.merge(theirs, mine, phase)

    def movable_to_prologue(self, x: Node, reduction: Node, theirs: _Group) -> bool:
        """Whether `x`, the input of `reduction`, should leave the epilogue of `theirs` (a
        matmul or another reduction) for the reduction's prologue.

        In the epilogue `x` would be written to memory for the reduction to read back. Moved,
        the reduction computes it from the one value of `theirs` it reads instead: the same
        bytes read, and nothing more written when that value is stored anyway (max-norm's
        squared weights: the updated weights are written for the rescale that follows). `x`
        is computed once either way. Removing a node that only the reduction reads keeps
        `theirs` convex, and the reduction then depends on `theirs` alone, as before."""
        if (theirs.root is None or theirs.phase.get(x.id) != "epi" or x.id in self.result_ids
                or OPS[x.op].kind != "elementwise" or len(self.users[x.id]) != 1):
            return False
        computed = set()
        for inp in x.inputs:
            if inp.is_leaf() or inp.id in self.inv:
                continue
            if self.group.get(inp.id) is not theirs:
                return False  # a view, or a value of a third kernel
            computed.add(inp.id)
        return len(computed) == 1 and tuple(x.shape) == tuple(reduction.inputs[0].shape)

    def run(self) -> None:
        for node in self.order:
            if node.is_leaf() or node.id in self.inv or node.op in VIEW_OPS:
                continue
            if node.op in REDUCE_OPS:
                g = _Group("reduce", node.inputs[0].shape, root=node, out_shape=node.shape)
                self.add(node, g, "root")
                x = node.inputs[0]
                theirs = self.group.get(x.id)
                if theirs is not None and self.movable_to_prologue(x, node, theirs):
                    theirs.members.remove(x)
                    del theirs.phase[x.id]
                    self.add(x, g, "pro")
                elif (theirs is not None and theirs.kind == "elementwise" and x.id not in self.inv
                        and theirs.domain == tuple(x.shape)):  # its one input: never a cycle
                    self.merge(g, theirs, "pro")
            elif node.op == "matmul":
                self.add(node, _Group("matmul", node.shape, root=node), "root")
            elif node.op in OWN_KERNEL_OPS:
                self.add(node, _Group("index", node.shape), "pro")
            else:
                g = _Group("elementwise", node.shape)
                self.add(node, g, "pro")
                for inp in node.inputs:
                    if inp.id in self.group and inp.id not in self.inv:
                        g = self.try_join(node, g, inp)


def reads_arrays(node: Node) -> bool:
    """Does `node` take its inputs as whole arrays (BLAS, an index kernel), not element by
    element through index maps?"""
    return node.op == "matmul" or node.op in OWN_KERNEL_OPS


def array_source(node: Node, group_of: dict) -> Node:
    """The node whose buffer an array-reading kernel gets for `node`: the first view in the
    chain with a copy kernel of its own (its buffer holds the view's data), else the source."""
    while node.op in VIEW_OPS and node.id not in group_of:
        node = node.inputs[0]
    return node


def _needs_copy(user: Node, view: Node) -> bool:
    """Does `user` need `view` as a real array that a plain view cannot give?"""
    if user.op == "matmul":
        return not array_view_ok(view, allow_transpose=True)
    return user.op in OWN_KERNEL_OPS and not array_view_ok(view, allow_transpose=False)


def lower(inputs, results) -> Program:
    """Fuse the graph of `results` into kernels over buffers (see the module docstring)."""
    results = list(results)
    order = topo_order(results)
    inv = find_invariants(order)
    grouper = _Grouper(results, inv)
    users = grouper.users
    result_ids = {r.id for r in results}
    # Views that a consumer needs as an array (or that are results) become copy kernels, except
    # a reshape result, which aliases its source buffer (same C-order data, free).
    aliases: dict[int, Node] = {}
    for node in order:
        if node.op in VIEW_OPS and node.id not in inv:
            src = view_source(node)
            if node.id in result_ids and array_view_ok(node, False) and src.id not in inv:
                aliases[node.id] = src
                if any(_needs_copy(u, node) for u in users[node.id]):
                    grouper.add(node, _Group("movement", node.shape), "pro")
            elif node.id in result_ids or any(_needs_copy(u, node) for u in users[node.id]):
                grouper.add(node, _Group("movement", node.shape), "pro")
    grouper.run()
    groups: list[_Group] = []
    for node in order:
        g = grouper.group.get(node.id)
        if g is not None and (not groups or all(g is not h for h in groups)):
            groups.append(g)
    return _build_program(inputs, results, order, groups, grouper, inv, aliases)


def _build_program(inputs, results, order, groups, grouper, inv, aliases) -> Program:
    users, index, group_of = grouper.users, grouper.index, grouper.group
    result_ids = {r.id for r in results}
    materialized: set[int] = (result_ids - set(aliases)) | {s.id for s in aliases.values()}
    alias_sources = {s.id for s in aliases.values()}
    for g in groups:
        for m in g.members:
            for u in users[m.id]:
                ug = group_of.get(u.id)
                if ug is not g or (g.phase[m.id] == "pro" and ug.phase[u.id] != "pro"
                                   and m is not g.root and u is not g.root):
                    materialized.add(m.id)
    # Reads: materialized sources behind each member's inputs (through views and invariants).
    group_reads: list[list[Node]] = []
    group_invs: list[list[Node]] = []
    for g in groups:
        reads: dict[int, Node] = {}
        invs: dict[int, Node] = {}
        mine = {m.id for m in g.members}
        stack = [array_source(i, group_of) if reads_arrays(m) else i
                 for m in g.members for i in m.inputs]
        while stack:
            n = stack.pop()
            if n.id in inv:
                if n.id not in invs:
                    invs[n.id] = n
                    stack.extend(n.inputs)
            elif n.op in VIEW_OPS and n.id not in mine and n.id not in group_of:
                stack.append(n.inputs[0])
            elif n.id not in mine:
                reads[n.id] = n
                materialized.add(n.id)
        for m in g.members:  # a view member reads its source
            if m.op in VIEW_OPS:
                src = view_source(m)
                if src.id not in mine and src.id not in inv:
                    reads[src.id] = src
                    materialized.add(src.id)
        group_reads.append(sorted(reads.values(), key=lambda n: index[n.id]))
        group_invs.append(sorted(invs.values(), key=lambda n: index[n.id]))
    # An invariant result is written by the first kernel that computes it anyway, else by a
    # tiny kernel of its own (so an optimizer step's counter update costs no extra kernel).
    # Only a kernel whose domain is static and non-empty can be its writer: one over a batch
    # of 0 rows is not launched on a GPU, and the update would be left unwritten.
    inv_writer: dict[int, int] = {}
    for n in order:
        if n.id in inv and n.id in result_ids:
            users_of = [gi for gi, invs in enumerate(group_invs) if any(i is n for i in invs)
                        and all(isinstance(d, int) and d > 0 for d in groups[gi].domain)]
            if users_of:
                inv_writer[n.id] = min(users_of, key=lambda gi: index[groups[gi].members[0].id])
            else:
                g = _Group("elementwise", n.shape)
                grouper.add(n, g, "pro")
                groups.append(g)
                inv_stack, invs = [n], {}
                while inv_stack:
                    x = inv_stack.pop()
                    for i in x.inputs:
                        if i.id in inv:
                            invs[i.id] = i
                            inv_stack.append(i)
                        elif i.is_leaf():
                            materialized.add(i.id)
                group_reads.append(sorted({i.id: i for x in [n, *invs.values()] for i in x.inputs
                                           if i.is_leaf()}.values(), key=lambda x: index[x.id]))
                group_invs.append(sorted(invs.values(), key=lambda x: index[x.id]))
    # Buffers: leaves read or returned, then every materialized computed node.
    buffers: list[Buffer] = []
    buffer_of: dict[int, int] = {}
    for n in order:
        if n.id not in materialized or (n.id in inv and n.id not in result_ids):
            continue
        if n.is_leaf():
            kind = LEAF_KIND[n.op]
        else:
            kind = "output" if n.id in result_ids or n.id in alias_sources else "temp"
        buffer_of[n.id] = len(buffers)
        buffers.append(Buffer(len(buffers), n.dtype, tuple(n.shape), kind, n))
    # Kernel order: Kahn over the group DAG, ties broken by first member's topo index.
    writer: dict[int, int] = {}
    for gi, g in enumerate(groups):
        for m in g.members:
            writer[m.id] = gi
    writer.update(inv_writer)
    preds = [set() for _ in groups]
    for gi, reads in enumerate(group_reads):
        for r in reads:
            if r.id in writer and writer[r.id] != gi:
                preds[gi].add(writer[r.id])
    ready = sorted((gi for gi in range(len(groups)) if not preds[gi]),
                   key=lambda gi: index[groups[gi].members[0].id])
    succ = [[] for _ in groups]
    for gi, ps in enumerate(preds):
        for p in ps:
            succ[p].append(gi)
    remaining = [len(p) for p in preds]
    kernel_of: dict[int, int] = {}
    kernels: list[Kernel] = []
    while ready:
        gi = ready.pop(0)
        kernel_of[gi] = len(kernels)
        extra = tuple(n for n in order if inv_writer.get(n.id) == gi)
        kernels.append(_make_kernel(len(kernels), groups[gi], group_reads[gi], group_invs[gi],
                                    materialized, index, extra))
        for s in succ[gi]:
            remaining[s] -= 1
            if remaining[s] == 0:
                ready.append(s)
                ready.sort(key=lambda k: index[groups[k].members[0].id])
    if len(kernels) != len(groups):
        raise AssertionError("lowering produced a cyclic kernel graph (fusion bug)")
    deps = {kernel_of[gi]: tuple(sorted(kernel_of[p] for p in preds[gi]))
            for gi in range(len(groups))}
    return Program(tuple(inputs), tuple(results), tuple(kernels), tuple(buffers), deps,
                   buffer_of, aliases)


def _make_kernel(kid, g: _Group, reads, invs, materialized, index, inv_writes) -> Kernel:
    members = sorted(g.members, key=lambda n: index[n.id])
    if g.root is not None:
        pro = [m for m in members if g.phase[m.id] == "pro"]
        epi = [m for m in members if g.phase[m.id] == "epi"]
        members = pro + [g.root] + epi
    else:
        epi = []
    writes = tuple(m for m in members if m.id in materialized) + inv_writes
    return Kernel(kid, g.kind, g.domain, tuple(members), tuple(reads), writes, g.root,
                  tuple(epi), tuple(invs))
