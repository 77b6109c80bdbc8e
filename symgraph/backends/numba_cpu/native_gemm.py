"""symgraph's own GEMM in LLVM IR, for the native path's split products (codegen_matmul.py).

`C = op(A) @ op(B)` (or `C += ...`) on one block, single-threaded: the thread team shares a
product by blocks of rows or columns and each thread calls this on its block. The loops are
the classic ones of BLIS and OpenBLAS, with one difference that matters at the shapes of a
training step (128-row batches against large weight matrices):

    for pc in 0..k step KC:          a slice of the inner dimension
      for ic in 0..m step MC:        rows of A, packed into MR-row panels (small: 128 rows)
        for jr in 0..n step NR:      a column panel of B, read where it lies (not packed)
          for ir in 0..mc step MR:   MR x NR of C in registers: per k, NR/W vector loads of
                                     B, MR broadcasts of A, MR * NR/W fused multiply-adds

B, the large operand (a weight matrix), is read in place, row by row, when it is not
transposed and the panel is whole: OpenBLAS copies it into a packed buffer on every call
(its `sgemm_itcopy`/`incopy` took 16% of the M1 step in `perf`), which at 128 rows is
not repaid. A transposed B, or the last, narrower panel, is packed into a KC x NR buffer,
whole square tiles transposed in registers (as are A's panels). A tile at the edge of C
(fewer than MR rows or NR columns) goes through a buffer.

Measured against SciPy's OpenBLAS, one thread each: `python scripts/gemm_blocks.py`
(docs/numba-backend.md).
"""

from __future__ import annotations

from llvmlite import ir

from symgraph.backends.numba_cpu.native_ir import F32, F64, I1, I32, I64, PTR

KC = 256  # inner-dimension slice: an MR x KC panel of A and a KC x NR panel of B stay in L1/L2
MC = 128  # rows of A packed at once (MC x KC floats on the stack)


def tile(dtype: str, features: str) -> tuple[int, int, int]:
    """(MR, NR, W): the register tile and the vector width in elements for this CPU. With
    AVX-512 (32 vector registers): 8 x 2 vectors, 16 accumulators; else (AVX2, 16
    registers) 6 x 2 vectors, 12 accumulators."""
    bits = 512 if "+avx512f" in features.split(",") else 256
    w = bits // (32 if dtype == "float32" else 64)
    return (8 if bits == 512 else 6), 2 * w, w


SIGNATURE = ir.FunctionType(ir.VoidType(),
                            [I1, I1, I64, I64, I64, PTR, I64, PTR, I64, PTR, I64, I1])


def name_of(dtype: str) -> str:
    """The kernel's symbol: programs declare it, llvmjit.link_gemm_kernels defines it."""
    return f"symgraph_gemm_{dtype}"


def declare(module: ir.Module, dtype: str) -> ir.Function:
    """The kernel for `dtype` as an external function of a program's module:
    `void (i1 ta, i1 tb, i64 m, i64 n, i64 k, ptr a, i64 lda, ptr b, i64 ldb, ptr c,
    i64 ldc, i1 accumulate)`: row-major, op(A)[i, p] = ta ? a[p*lda + i] : a[i*lda + p],
    op(B)[p, j] = tb ? b[j*ldb + p] : b[p*ldb + j]; m, n, k > 0."""
    name = name_of(dtype)
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, SIGNATURE, name)


def module(name: str, dtype: str, features: str) -> ir.Module:
    """A module defining the kernel for `dtype` on a CPU with `features` as `<name>_gemm`."""
    mod = ir.Module(name)
    _Writer(mod, dtype, *tile(dtype, features)).kernel(f"{name}_gemm")
    return mod


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _min(b: ir.IRBuilder, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _loop(b: ir.IRBuilder, start, stop, step, body) -> None:
    """for i in range(start, stop, step): body(i), as a phi loop."""
    fn = b.block.function
    head, loop, done = (fn.append_basic_block(x) for x in ("head", "body", "done"))
    before = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(start, before)
    b.cbranch(b.icmp_signed("<", i, stop), loop, done)
    b.position_at_end(loop)
    body(i)
    i.add_incoming(b.add(i, step), b.block)
    b.branch(head)
    b.position_at_end(done)


def _transpose(b: ir.IRBuilder, vecs: list) -> list:
    """T vectors of T lanes (T a power of two), transposed: round d exchanges bit d of the
    vector index with bit d of the lane index, pairing vectors i and i + d."""
    t, d = len(vecs), 1
    while d < t:
        out = list(vecs)
        for i in range(t):
            if i & d:
                continue
            low = [lane if not lane & d else t + lane - d for lane in range(t)]
            high = [lane + d if not lane & d else t + lane for lane in range(t)]
            for j, mask in ((i, low), (i + d, high)):
                out[j] = b.shuffle_vector(vecs[i], vecs[i + d],
                                          ir.Constant(ir.VectorType(I32, t), mask))
        vecs, d = out, d * 2
    return vecs


def _if(b: ir.IRBuilder, cond, then, otherwise=None) -> None:
    fn = b.block.function
    yes, no, after = (fn.append_basic_block(x) for x in ("then", "else", "endif"))
    b.cbranch(cond, yes, no)
    b.position_at_end(yes)
    then()
    b.branch(after)
    b.position_at_end(no)
    if otherwise is not None:
        otherwise()
    b.branch(after)
    b.position_at_end(after)


class _Writer:
    def __init__(self, module: ir.Module, dtype: str, mr: int, nr: int, w: int):
        self.module, self.mr, self.nr, self.w = module, mr, nr, w
        self.et = F32 if dtype == "float32" else F64
        self.vt = ir.VectorType(self.et, w)
        self.fma = ir.Function(module, ir.FunctionType(self.vt, [self.vt] * 3),
                               f"llvm.fma.v{w}{'f32' if dtype == 'float32' else 'f64'}")
        self.prefetch = module.globals.get("llvm.prefetch.p0") or ir.Function(
            module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]), "llvm.prefetch.p0")
        self.mc = MC - MC % mr  # whole panels of MR rows fill the packing buffer
        self.align = 4 if dtype == "float32" else 8  # elements: rows start anywhere

    def at(self, b, ptr, offset):
        return b.gep(ptr, [offset], inbounds=True, source_etype=self.et)

    def kernel(self, name: str) -> ir.Function:
        et, mr, nr = self.et, self.mr, self.nr
        micro = self.micro_kernel(f"{name}.tile")
        fn = ir.Function(self.module, SIGNATURE, name)
        ta, tb, m, n, k, a, lda, bm, ldb, c, ldc, accumulate = fn.args
        for arg in (a, bm, c):
            arg.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        a_pack = b.alloca(et, size=_c(self.mc * KC), name="a_pack")
        b_pack = b.alloca(et, size=_c(KC * nr), name="b_pack")
        a_pack.align = b_pack.align = 64

        def slice_k(pc):
            kc = _min(b, b.sub(k, pc), _c(KC))
            acc = b.or_(accumulate, b.icmp_signed(">", pc, _c(0)))

            def rows(ic):
                mc = _min(b, b.sub(m, ic), _c(self.mc))
                self.pack_a(b, ta, a, lda, ic, pc, mc, kc, a_pack)

                def columns(jr):
                    nc = _min(b, b.sub(n, jr), _c(nr))
                    packed = b.or_(tb, b.icmp_signed("<", nc, _c(nr)))
                    in_place = self.at(b, bm, b.add(b.mul(pc, ldb), jr))
                    _if(b, packed, lambda: self.pack_b(b, tb, bm, ldb, pc, jr, kc, nc, b_pack))
                    panel = b.select(packed, b_pack, in_place)
                    stride = b.select(packed, _c(nr), ldb)

                    def tiles(ir_):
                        rows_left = _min(b, b.sub(mc, ir_), _c(mr))
                        c_tile = self.at(b, c, b.add(b.mul(b.add(ic, ir_), ldc), jr))
                        b.call(micro, [kc, self.at(b, a_pack, b.mul(ir_, kc)), panel, stride,
                                       c_tile, ldc, acc, rows_left, nc])
                    _loop(b, _c(0), mc, _c(mr), tiles)
                _loop(b, _c(0), n, _c(nr), columns)
            _loop(b, _c(0), m, _c(self.mc), rows)
        _loop(b, _c(0), k, _c(KC), slice_k)
        b.ret_void()
        return fn

    def pack_a(self, b, ta, a, lda, ic, pc, mc, kc, dst) -> None:
        """dst[ir*kc + p*MR + r] = op(A)[ic + ir + r, pc + p], zero past row mc."""
        mr, et = self.mr, self.et
        vt = ir.VectorType(et, mr)

        def panel(ir_):
            base = self.at(b, dst, b.mul(ir_, kc))
            rows = _min(b, b.sub(mc, ir_), _c(mr))
            first = b.add(ic, ir_)

            def columns_of_a():  # op(A) = A^T: a panel's MR values lie side by side
                def whole():
                    _loop(b, _c(0), kc, _c(1), lambda p: b.store(
                        b.load(self.at(b, a, b.add(b.mul(b.add(pc, p), lda), first)), typ=vt,
                               align=self.align),
                        b.bitcast(self.at(b, base, b.mul(p, _c(mr))), vt.as_pointer()),
                        align=self.align))

                def partial():
                    self.copy_scalar(b, lambda p, r: b.add(b.mul(b.add(pc, p), lda),
                                                           b.add(first, r)),
                                     a, rows, kc, base, mr)
                _if(b, b.icmp_signed("==", rows, _c(mr)), whole, partial)

            def rows_of_a():
                self.pack_transposed(b, a, lda, first, pc, rows, kc, base, mr)
            _if(b, ta, columns_of_a, rows_of_a)
        _loop(b, _c(0), mc, _c(mr), panel)

    def pack_b(self, b, tb, bm, ldb, pc, jr, kc, nc, dst) -> None:
        """dst[p*NR + j] = op(B)[pc + p, jr + j], zero past column nc."""
        nr = self.nr

        def rows_of_b():  # a narrow last panel of B as it lies
            self.copy_scalar(b, lambda p, j: b.add(b.mul(b.add(pc, p), ldb), b.add(jr, j)),
                             bm, nc, kc, dst, nr)
        _if(b, tb, lambda: self.pack_transposed(b, bm, ldb, jr, pc, nc, kc, dst, nr),
            rows_of_b)

    def copy_scalar(self, b, offset, src, count, kc, dst, width, start=None) -> None:
        """dst[p*width + j] = src[offset(p, j)] for j < count (p from start(j), else 0), 0
        for count <= j < width."""
        et = self.et

        def lane(j):
            def real():
                _loop(b, start(j) if start else _c(0), kc, _c(1), lambda p: b.store(
                    b.load(self.at(b, src, offset(p, j)), typ=et),
                    self.at(b, dst, b.add(b.mul(p, _c(width)), j))))

            def padding():
                _loop(b, _c(0), kc, _c(1), lambda p: b.store(
                    ir.Constant(et, 0.0), self.at(b, dst, b.add(b.mul(p, _c(width)), j))))
            _if(b, b.icmp_signed("<", j, count), real, padding)
        _loop(b, _c(0), _c(width), _c(1), lane)

    def pack_transposed(self, b, src, ld, row0, col0, count, kc, dst, width) -> None:
        """dst[p*width + j] = src[(row0 + j)*ld + col0 + p] for j < count, 0 up to width:
        rows of the source become columns of the packed panel. Square tiles of T x T (T a
        power of two: the vector width for B, MR for A) go through registers (T loads,
        log2(T) rounds of T shuffles, T stores), the rest element by element."""
        et = self.et
        t = width if width & (width - 1) == 0 and width <= self.w else self.w
        if width % t or t & (t - 1):
            t = 0  # (an AVX2 tile of 6 rows: element by element)
        vt = ir.VectorType(et, t) if t else None
        rows_vec = b.sub(count, b.srem(count, _c(t))) if t else _c(0)
        cols_vec = b.sub(kc, b.srem(kc, _c(t))) if t else _c(0)
        if t:
            def tile_row(j0):
                def tile(p0):
                    vecs = [b.load(self.at(b, src, b.add(b.mul(b.add(row0, b.add(j0, _c(q))),
                                                                  ld), b.add(col0, p0))),
                                   typ=vt, align=self.align) for q in range(t)]
                    for q, v in enumerate(_transpose(b, vecs)):
                        out = self.at(b, dst, b.add(b.mul(b.add(p0, _c(q)), _c(width)), j0))
                        b.store(v, b.bitcast(out, vt.as_pointer()), align=self.align)
                _loop(b, _c(0), cols_vec, _c(t), tile)
            _loop(b, _c(0), rows_vec, _c(t), tile_row)

        # what the tiles left: the last columns of whole rows, the other rows
        self.copy_scalar(b, lambda p, j: b.add(b.mul(b.add(row0, j), ld), b.add(col0, p)),
                         src, count, kc, dst, width,
                         lambda j: b.select(b.icmp_signed("<", j, rows_vec), cols_vec, _c(0)))

    def micro_kernel(self, name: str) -> ir.Function:
        """`void (i64 kc, ptr a_panel, ptr b, i64 ldb, ptr c, i64 ldc, i1 acc, i64 rows,
        i64 cols)`: the MR x NR tile of C (+)= a_panel (kc x MR, packed) @ b (kc x NR rows
        `ldb` apart); only `rows` x `cols` of it are stored."""
        et, vt, mr, nr, w = self.et, self.vt, self.mr, self.nr, self.w
        nv = nr // w
        fn = ir.Function(self.module, ir.FunctionType(
            ir.VoidType(), [I64, PTR, PTR, I64, PTR, I64, I1, I64, I64]), name)
        fn.linkage = "internal"
        kc, ap, bp, ldb, cp, ldc, acc, rows, cols = fn.args
        for arg in (ap, bp, cp):
            arg.add_attribute("noalias")
        entry, loop, stores = (fn.append_basic_block(x) for x in ("entry", "k", "stores"))
        b = ir.IRBuilder(entry)
        buf = b.alloca(et, size=_c(mr * nr))  # an edge tile (store_edge)
        b.branch(loop)
        b.position_at_end(loop)
        p = b.phi(I64)
        p.add_incoming(_c(0), entry)
        zero = ir.Constant(vt, [0.0] * w)
        sums = [[b.phi(vt) for _ in range(nv)] for _ in range(mr)]
        for row in sums:
            for s in row:
                s.add_incoming(zero, entry)
        b_row = self.at(b, bp, b.mul(p, ldb))
        align = 4 if et == F32 else 8  # element alignment: rows of B start anywhere
        b_vec = [b.load(self.at(b, b_row, _c(v * w)), typ=vt, align=align) for v in range(nv)]
        # the same row of the next panel, into L1: rows of B lie a page or more apart, where
        # the hardware prefetchers do not follow (M1 0.97x the step time, 10 alternating
        # pairs; M2 1.01x)
        for v in range(0, nr, 64 // align):
            b.call(self.prefetch, [self.at(b, b_row, _c(nr + v)), ir.Constant(I32, 0),
                                   ir.Constant(I32, 3), ir.Constant(I32, 1)])
        a_row = self.at(b, ap, b.mul(p, _c(mr)))
        splat = ir.Constant(ir.VectorType(I32, w), [0] * w)
        new = []
        for r in range(mr):
            x = b.load(self.at(b, a_row, _c(r)), typ=et)
            xv = b.shuffle_vector(b.insert_element(ir.Constant(vt, ir.Undefined), x,
                                                   ir.Constant(I32, 0)),
                                  ir.Constant(vt, ir.Undefined), splat)
            new.append([b.call(self.fma, [xv, b_vec[v], sums[r][v]]) for v in range(nv)])
        p_next = b.add(p, _c(1))
        p.add_incoming(p_next, loop)
        for r in range(mr):
            for v in range(nv):
                sums[r][v].add_incoming(new[r][v], loop)
        b.cbranch(b.icmp_signed("<", p_next, kc), loop, stores)
        b.position_at_end(stores)
        whole = b.and_(b.icmp_signed("==", rows, _c(mr)), b.icmp_signed("==", cols, _c(nr)))

        def store_whole():
            for r in range(mr):
                for v in range(nv):
                    addr = self.at(b, cp, b.add(b.mul(_c(r), ldc), _c(v * w)))
                    old = b.load(addr, typ=vt, align=align)
                    b.store(b.select(acc, b.fadd(old, new[r][v]), new[r][v]), addr,
                            align=align)

        def store_edge():  # the tile through a buffer, then its rows x cols part
            for r in range(mr):
                for v in range(nv):
                    slot = b.bitcast(self.at(b, buf, _c(r * nr + v * w)), vt.as_pointer())
                    b.store(new[r][v], slot, align=align)

            def row(r):
                def col(j):
                    addr = self.at(b, cp, b.add(b.mul(r, ldc), j))
                    val = b.load(self.at(b, buf, b.add(b.mul(r, _c(nr)), j)), typ=et)
                    b.store(b.select(acc, b.fadd(b.load(addr, typ=et), val), val), addr)
                _loop(b, _c(0), cols, _c(1), col)
            _loop(b, _c(0), rows, _c(1), row)
        _if(b, whole, store_whole, store_edge)
        b.ret_void()
        return fn
