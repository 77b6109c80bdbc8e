"""The CUDA backend's matmul kernel: a tiled shared-memory GEMM with a fused epilogue.

Stage: backend code generation (kernels.py dispatches each lowered matmul kernel here). Tiles
are `target.bm` x `target.bn` outputs per block over `target.bk`-deep slices of K, each thread
accumulating `tm` x `tn` outputs; operands that are transposes of buffers (the backward pass's
A^T and B^T) are loaded with the thread order that keeps each warp's reads contiguous; the
epilogue (bias, activation, dropout) is applied to the accumulators before the store.
"""

from __future__ import annotations

from symgraph.backends.cuda.builder import KernelBuilder, literal

FIRST_3D = ("cuda.threadIdx.x == 0 and cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0 "
            "and cuda.blockIdx.z == 0")


def _contiguous_inner(node) -> bool:
    """Is the operand's last axis the contiguous one? (False for A^T, a transposed buffer.)"""
    if node.op == "transpose" and tuple(node.attr["perm"][-2:]) == (node.ndim - 1, node.ndim - 2):
        return False
    return True


def render_matmul(kernel, program, target, name, members):
    t = target
    root = kernel.root
    a, bnode = root.inputs
    dtype = root.dtype
    b = KernelBuilder.for_kernel(kernel, program, name, members)
    shape = tuple(root.shape)
    batch = shape[:-2]
    m_size, n_size, k_size = b.size(shape[-2:-1]), b.size(shape[-1:]), b.size(a.shape[-1:])
    threads = t.matmul_threads
    zero = literal(0, dtype)
    b.write_invariants(kernel, FIRST_3D)
    b.indent = 1
    b.emit(f"As = cuda.shared.array(({t.bk}, {t.bm}), np.{dtype})")
    b.emit(f"Bs = cuda.shared.array(({t.bk}, {t.bn}), np.{dtype})")
    b.emit("tid = cuda.threadIdx.x")
    b.emit(f"trow = tid // {t.bn // t.tn}")
    b.emit(f"tcol = tid % {t.bn // t.tn}")
    b.emit(f"bm = cuda.blockIdx.y * {t.bm}")
    b.emit(f"bn = cuda.blockIdx.x * {t.bn}")
    bidx = b.decompose("cuda.blockIdx.z", batch, "z") if batch else ()
    # Loops with constant trip counts over local arrays: LLVM unrolls them and keeps the
    # accumulators in registers (ptxas reports no stack), and the source stays small.
    b.emit(f"acc = cuda.local.array(({t.tm}, {t.tn}), np.{dtype})")
    b.emit(f"ra = cuda.local.array({t.tm}, np.{dtype})")
    b.emit(f"rb = cuda.local.array({t.tn}, np.{dtype})")
    b.emit(f"for ii in range({t.tm}):")
    b.emit(f"    for jj in range({t.tn}):")
    b.emit(f"        acc[ii, jj] = {zero}")
    b.emit(f"for kt in range(0, {k_size}, {t.bk}):")
    b.indent += 1
    a_idx = b.broadcast_index(bidx, batch, a.shape[:-2]) if batch else ()
    b_idx = b.broadcast_index(bidx, batch, bnode.shape[:-2]) if batch else ()
    _load_tile(b, a, "As", t.bm, t, threads, _contiguous_inner(a), a_idx, m_size, k_size, True)
    _load_tile(b, bnode, "Bs", t.bn, t, threads, not _contiguous_inner(bnode), b_idx, n_size,
               k_size, False)
    b.emit("cuda.syncthreads()")
    b.emit(f"for kk in range({t.bk}):")
    b.emit(f"    for ii in range({t.tm}):")
    b.emit(f"        ra[ii] = As[kk, trow + ii * {t.bm // t.tm}]")
    b.emit(f"    for jj in range({t.tn}):")
    b.emit(f"        rb[jj] = Bs[kk, tcol + jj * {t.bn // t.tn}]")
    b.emit(f"    for ii in range({t.tm}):")
    b.emit(f"        for jj in range({t.tn}):")
    b.emit("            acc[ii, jj] += ra[ii] * rb[jj]")
    b.emit("cuda.syncthreads()")
    b.indent -= 1
    written = {n.id for n in kernel.writes}
    b.emit(f"for ii in range({t.tm}):")
    b.emit(f"    gm = bm + trow + ii * {t.bm // t.tm}")
    b.emit(f"    for jj in range({t.tn}):")
    b.emit(f"        gn = bn + tcol + jj * {t.bn // t.tn}")
    b.emit(f"        if gm < {m_size} and gn < {n_size}:")
    b.push(3)
    b.emit("accv = acc[ii, jj]")
    _finish_matmul(b, kernel, root, tuple(bidx) + ("gm", "gn"), "accv", written)
    b.pop(3)
    work = ((shape[-2],), (shape[-1],), batch)
    return b, "matmul", work, threads


def _finish_matmul(b, kernel, root, idx, acc, written) -> None:
    b.special[root.id] = acc
    if root.id in written:
        b.store(root, idx, acc)
    for node in kernel.epilogue:
        if node.id in written:
            b.store(node, idx, b.value(node, idx))


def _load_tile(b, node, tile, width, t, threads, k_inner, batch_idx, outer, k_size, is_a):
    """Copy one BK x width tile of an operand into shared memory, zero-padded at the edges.

    `k_inner`: the operand is contiguous along K, so consecutive threads take consecutive k
    (else consecutive rows/columns): either way a warp's loads are one contiguous run.
    """
    per_thread = t.bk * width // threads
    kk, w, go, gk, val = (b.fresh(stem) for stem in ("kk", "w", "g", "g", "t"))
    b.emit(f"for step in range({per_thread}):")
    b.push(1)
    e = f"(tid + step * {threads})"
    if k_inner:
        b.emit(f"{kk} = {e} % {t.bk}")
        b.emit(f"{w} = {e} // {t.bk}")
    else:
        b.emit(f"{w} = {e} % {width}")
        b.emit(f"{kk} = {e} // {width}")
    b.emit(f"{go} = {'bm' if is_a else 'bn'} + {w}")
    b.emit(f"{gk} = kt + {kk}")
    b.emit(f"if {go} < {outer} and {gk} < {k_size}:")
    b.push(1)
    idx = tuple(batch_idx) + ((go, gk) if is_a else (gk, go))
    b.emit(f"{val} = {b.value(node, idx)}")
    b.pop(1)
    b.emit("else:")
    b.emit(f"    {val} = {literal(0, node.dtype)}")
    b.emit(f"{tile}[{kk}, {w}] = {val}")
    b.pop(1)
