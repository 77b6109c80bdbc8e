"""Matmul kernels for codegen.py's KernelWriter: the BLAS call (blas.py's `gemm`) and the
fused epilogue over its result, or, where blas.SPLIT, the product in blocks shared by the
thread team, each block's epilogue right after its GEMM."""

from __future__ import annotations

from symgraph.backends.numba_cpu.blas import SPLIT
from symgraph.errors import SymgraphError


def _name(node) -> str:
    """A user-given node name for comments (never the process-global id: stable source)."""
    return f" {node.name}" if node.name else ""


class MatmulWriter:
    """KernelWriter's matmul kernels (needs its buffers, loops and epilogue machinery)."""

    def operand(self, node) -> tuple[str, bool]:
        """(buffer holding a matmul operand, transposed?): BLAS's flag does a 2-D transpose."""
        if node.op == "transpose" and node.id not in self.p.buffer_of:
            return self.array(node.inputs[0]), True
        return self.array(node), False

    def matmul(self) -> None:
        k, root = self.k, self.k.root
        a, b = root.inputs
        d = self.scalar.dim_expr
        m, kk, n = d(a.shape[-2]), d(a.shape[-1]), d(b.shape[-1])
        batch = tuple(root.shape[:-2])
        # The product goes straight into an epilogue output of its shape and dtype (each
        # element is read, then overwritten at the same index), else into a scratch array.
        # Never a buffer written over its variable (inplace.py): the GEMM would overwrite the
        # variable before the epilogue read it.
        target = [w for w in k.writes if w in k.epilogue and w.dtype == root.dtype
                  and tuple(w.shape) == tuple(root.shape)
                  and self.p.buffer(w).id not in self.p.inplace]
        if root.id in self.p.buffer_of:
            out = self.buf(root)
        elif target:
            out = self.buf(target[0])
        else:
            out = "c"
            self.emit(1, f"c = np.empty({self.scalar.size_expr(root.shape)}, np.{root.dtype})")
        (abuf, ta), (bbuf, tb) = self.operand(a), self.operand(b)
        gemm = "gemm"  # blas.GEMM_IMPORT: the BLAS of this process, either dtype
        zero = self.scalar.literal(0, root.dtype)
        # Every scalar argument is typed, never a literal: Numba compiles a dispatcher called
        # with literals once per distinct value (M2 compiled the GEMM wrapper 9 times).
        ta, tb = f"np.bool_({ta})", f"np.bool_({tb})"
        m, n, kk = f"np.int64({m})", f"np.int64({n})", f"np.int64({kk})"
        if not batch and SPLIT:
            self.split_matmul(root, out, (ta, tb, m, n, kk, abuf, bbuf, zero))
            return
        if not batch:
            self.emit(1, f"{gemm}({ta}, {tb}, {m}, {n}, {kk}, {abuf}, np.int64(0), {bbuf}, "
                         f"np.int64(0), {out}, np.int64(0), {zero}, np.int64(0), {m}, "
                         f"np.int64(0), {n})  # matmul{_name(root)}")
        else:
            for node in (a, b):
                if node.ndim > 2 and tuple(node.shape[:-2]) != batch and \
                        any(s != 1 for s in node.shape[:-2]):
                    raise SymgraphError(f"numba backend: matmul batch dims of {node.describe()} "
                                        "must equal the result's or be all 1")
            nb = self.scalar.size_expr(batch)
            sa = f"{m} * {kk}" if tuple(a.shape[:-2]) == batch else "0"
            sb = f"{kk} * {n}" if tuple(b.shape[:-2]) == batch else "0"
            # with SPLIT (single-threaded BLAS calls on the native path) the team shares the
            # batch: a prange whose body calls gemm forks whenever it has two iterations
            self.emit(1, f"for q in {'prange' if SPLIT else 'range'}({nb}):")
            self.emit(2, f"{gemm}({ta}, {tb}, {m}, {n}, {kk}, {abuf}, np.int64(q * {sa}), "
                         f"{bbuf}, np.int64(q * {sb}), {out}, q * {m} * {n}, {zero}, "
                         f"np.int64(0), {m}, np.int64(0), {n})  # matmul{_name(root)}")
        if k.epilogue:
            self.epilogue_start(out)
            idx, depth = self.loops(root.shape, 1, parallel=True)
            self.epilogue_body(root, out, idx, depth)

    def split_matmul(self, root, out: str, call: tuple) -> None:
        """A 2-D product in `parts` blocks (blas.gemm_parts: one per thread of the team for a
        large product on the native path, else 1): blocks of rows, or of columns where
        blas.split_columns says (each thread then packs only its part of the wide operand),
        each block's epilogue right after its GEMM, while it is in that thread's
        cache."""
        ta, tb, m, n, kk, abuf, bbuf, zero = call
        if self.k.epilogue:
            self.epilogue_start(out)
        self.emit(1, f"by_cols = split_columns({m}, {n}, {kk})")
        self.emit(1, f"parts = gemm_parts({m}, {n}, {kk}, by_cols)")
        self.emit(1, "for p in prange(parts):")
        self.emit(2, f"r0 = np.int64(0) if by_cols else p * {m} // parts")
        self.emit(2, f"r1 = {m} if by_cols else (p + 1) * {m} // parts")
        self.emit(2, f"c0 = p * {n} // parts if by_cols else np.int64(0)")
        self.emit(2, f"c1 = (p + 1) * {n} // parts if by_cols else {n}")
        self.emit(2, f"gemm({ta}, {tb}, {m}, {n}, {kk}, {abuf}, np.int64(0), {bbuf}, "
                     f"np.int64(0), {out}, np.int64(0), {zero}, r0, r1, c0, c1)"
                     f"  # matmul{_name(root)}")
        if self.k.epilogue:
            self.emit(2, "for i0 in range(r0, r1):")
            self.emit(3, "for i1 in range(c0, c1):")
            self.epilogue_body(root, out, ["i0", "i1"], 4)

    def epilogue_start(self, out: str) -> None:
        self.loads = {}
        self.invariants(1)
        self.invariant_results(1)
        self.random_keys(self.k.epilogue, 1)

    def epilogue_body(self, root, out: str, idx: list, depth: int) -> None:
        self.emit(depth, f"f = {self.flat_of(root.shape, idx)}")
        self.emit(depth, f"v{self.num[root.id]} = {out}[f]")
        self.local.add(root.id)
        for node in self.k.epilogue:
            self.compute(node, idx, depth, "f")
            self.store(node, "f", depth)
