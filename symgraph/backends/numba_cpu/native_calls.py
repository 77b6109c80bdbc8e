"""Calls in native.py's translation: helpers inlined from their Python source, math
functions and intrinsics, NumPy scalar types as casts, and the BLAS GEMM."""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from symgraph.backends.numba_cpu import blas, native_gemm, vecmath
from symgraph.backends.numba_cpu.native_ir import (
    F32,
    FLOATS,
    I1,
    I8,
    I32,
    I64,
    INTRINSICS,
    INTS,
    LIBM,
    LL,
    PTR,
    SCALAR_TYPES,
    Buf,
    Unsupported,
    promote,
)

# blas.py's wrappers -> the CBLAS symbol prefix (None: Numba's numba_xxgemm)
GEMMS = {blas.mkl_gemm: "", blas.openblas_gemm: "scipy_", blas.scipy_gemm: None}
GEMM_SPLIT_WORK = 1 << 17  # multiply-adds (m * n * k) from which a product is split
GEMM_MIN_ROWS = 8  # rows (or columns) of a block, at least
# Narrower blocks go to the BLAS even with blas.OWN_GEMM: the own kernel's 2-vector-wide tile
# wastes most of its work there (M1's 10-wide output layer: 0.19 ms against OpenBLAS's 0.07)
OWN_GEMM_MIN_COLS = 64


@dataclass(eq=False)
class Helper:
    """A Python function to inline: its definition, globals and fast-math flags."""

    fdef: ast.FunctionDef
    namespace: dict
    fastmath: tuple
    shared: bool = False  # a kernel body several kernels call (shared_kernels.py)


def _fastmath(option) -> tuple:
    if option is True:
        return ("fast",)
    return tuple(sorted(option or ()))


_HELPERS: dict = {}


def _helper_of(obj) -> Helper | None:
    """The Helper for a Numba dispatcher (vecmath's functions), parsed once per process."""
    if isinstance(obj, Helper):
        return obj
    py = getattr(obj, "py_func", None)
    if py is None:
        return None
    if py not in _HELPERS:
        tree = ast.parse(textwrap.dedent(inspect.getsource(py)))
        fastmath = _fastmath(getattr(obj, "targetoptions", {}).get("fastmath"))
        _HELPERS[py] = Helper(tree.body[0], py.__globals__, fastmath)
    return _HELPERS[py]


class Calls:
    """The translator's calls (needs its expression and helper machinery)."""

    def call(self, node: ast.Call) -> tuple:
        if node.keywords:
            raise Unsupported("keyword arguments")
        f = self.resolve(node.func)
        if f in GEMMS:
            self.gemm(node.args, GEMMS[f])
            return None, None
        if f is blas.gemm_parts:
            return self.gemm_parts([self.cast(*self.expr(a), "int64") for a in node.args[:3]] +
                               [self.truth(*self.expr(a)) for a in node.args[3:]])
        helper = _helper_of(f) if not isinstance(f, type) else None
        if helper is not None and helper.shared:
            self.call_shared(helper, node.args)
            return None, None
        if helper is not None:
            return self.inline(helper, [self.expr(a) for a in node.args])
        args = [self.expr(a) for a in node.args]
        b = self.builder
        if f in SCALAR_TYPES:
            (v, t), = args
            return self.cast(v, t, SCALAR_TYPES[f]), SCALAR_TYPES[f]
        if f is abs:
            (v, t), = args
            if t in FLOATS:
                return b.call(self.intrinsic("llvm.fabs", t), [v]), t
            return b.select(b.icmp_signed("<", v, ir.Constant(v.type, 0)), b.neg(v), v), t
        if f in (min, max) and len(args) == 2:
            (x, xt), (y, yt) = args
            t = promote(xt, yt)
            x, y = self.cast(x, xt, t), self.cast(y, yt, t)
            # Python's: the first argument unless the second is strictly beyond it
            second, _ = self.compare(ast.Lt() if f is min else ast.Gt(), (y, t), (x, t))
            return b.select(second, y, x), t
        for name, intrinsic in (("fmaximum", "llvm.maximum"), ("fminimum", "llvm.minimum")):
            if f is getattr(vecmath, name):
                (x, xt), (y, yt) = args
                if xt != yt or xt not in FLOATS:
                    raise Unsupported(f"{name} of {xt} and {yt}")
                return b.call(self.intrinsic(intrinsic, xt), [x, y]), xt
        if f is vecmath._f32_from_bits:
            return b.bitcast(self.cast(*args[0], "int32"), F32), "float32"
        if f is vecmath._bits_of_f32:
            return b.bitcast(self.cast(*args[0], "float32"), I32), "int32"
        name = getattr(f, "__name__", None)
        if (getattr(f, "__module__", None) == "math" or f in (np.floor, np.sqrt, np.exp,
                                                              np.log)) and len(args) == 1:
            (v, t), = args
            if t not in FLOATS:
                v, t = self.cast(v, t, "float64"), "float64"
            if name in INTRINSICS:
                return b.call(self.intrinsic(INTRINSICS[name], t), [v]), t
            if name in LIBM:
                symbol = name + ("f" if t == "float32" else "")
                fn = self.declare(symbol, LL[t], [LL[t]])
                return b.call(fn, [v]), t
        raise Unsupported(f"call of {ast.unparse(node.func)[:40]!r}")

    def shared_calls(self, fdef) -> list:
        """The shared kernel functions (shared_kernels.py) `fdef` calls."""
        out = []
        for n in ast.walk(fdef):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
                h = self.namespace.get(n.func.id)
                if isinstance(h, Helper) and h.shared and h not in out:
                    out.append(h)
        return out

    def call_shared(self, helper: Helper, args: list) -> None:
        """A call of a shared kernel function: translated once per module, as a function of
        its own that LLVM never inlines (compiling it once is the point), called here with
        this kernel's buffers; a failure's return code leaves the caller too."""
        fdef = helper.fdef
        params = [a.arg for a in fdef.args.args]
        if self.returns is not None or self.in_outlined or len(params) != len(args) or \
                not all(isinstance(a, ast.Name) for a in args):
            raise Unsupported(f"call of {fdef.name} here")
        values, kinds, sizes = [], [], {}
        for p, a in zip(params, args):
            held = self.scope.get(a.id)
            if held is not None and isinstance(held[1], Buf):
                values.append(self.builder.load(held[0], typ=PTR))
                kinds.append(held[1])
                if a.id in self.param_sizes:
                    sizes[p] = self.param_sizes[a.id]
            else:
                v, t = self.expr(a)
                if t not in INTS:
                    raise Unsupported(f"argument {a.id} of {fdef.name} of dtype {t}")
                values.append(self.cast(v, t, "int64"))
                kinds.append("int64")
        signature = (kinds, sizes)
        known = self.shared.get(fdef.name)
        if known is None:
            translator = type(self)(self.module, helper.namespace, helper.fastmath,
                                    self.parallel)
            translator.shared = self.shared
            fn = translator.function(fdef, f"{self.module.name}_{fdef.name}", kinds, sizes)
            fn.attributes.add("noinline")
            known = self.shared[fdef.name] = (fn, signature, translator.may_fail)
        elif known[1] != signature:  # codegen keys a body by its parameters' dtypes and sizes
            raise Unsupported(f"{fdef.name} called with {signature}, first with {known[1]}")
        b = self.builder
        code = b.call(known[0], values)
        if not known[2]:  # no branch where no error can come: LLVM's correlated value
            return  # propagation took 0.6 s on an unrolled LSTM's 333 calls with branches
        self.may_fail = True
        failed, ok = self.new_block("kernel_failed"), self.new_block("kernel_done")
        b.cbranch(b.icmp_signed("!=", code, ir.Constant(I32, 0)), failed, ok)
        b.position_at_end(failed)
        b.store(code, self.code)
        b.branch(self.exit)
        b.position_at_end(ok)

    def inline(self, helper: Helper, args) -> tuple:
        """The helper's body at this point, its parameters bound to `args`."""
        fdef = helper.fdef
        params = [a.arg for a in fdef.args.args]
        if len(params) != len(args) or fdef.args.vararg or fdef.args.kwonlyargs:
            raise Unsupported(f"call of {fdef.name} with {len(args)} arguments")
        saved = (self.scope, self.namespace, self.fastmath, self.returns)
        self.scope, self.namespace, self.fastmath = {}, helper.namespace, helper.fastmath
        for p, (v, t) in zip(params, args):
            if t is None:
                raise Unsupported(f"argument of {fdef.name} has no value")
            self.bind(p, t, v)
        done = self.new_block(f"{fdef.name}.done")
        self.returns = (done, [None, None])
        try:
            self.statements(fdef.body)
            if not self.builder.block.is_terminated:
                self.builder.branch(done)
            self.builder.position_at_end(done)
            slot, t = self.returns[1]
        finally:
            self.scope, self.namespace, self.fastmath, self.returns = saved
        if slot is None:
            return None, None
        return self.builder.load(slot, typ=LL[t]), t

    def gemm_parts(self, args) -> tuple:
        """blas.gemm_parts(m, n, k, by_columns): the blocks of a product, one per thread of the team
        when the process splits GEMMs (blas.SPLIT), parallel loops are on and the product has
        at least GEMM_SPLIT_WORK multiply-adds; else 1."""
        one = ir.Constant(I64, 1)
        if len(args) != 4:
            raise Unsupported("gemm_parts arity")
        if not (self.parallel and blas.SPLIT):
            return one, "int64"
        b = self.builder
        m, n, k, by_columns = args
        threads = b.sext(b.call(self.declare("omp_get_max_threads", I32, []), []), I64)
        side = b.select(by_columns, n, m)  # the side codegen.split_matmul splits
        most = b.sdiv(side, ir.Constant(I64, GEMM_MIN_ROWS))
        parts = b.select(b.icmp_signed("<", most, threads), most, threads)
        parts = b.select(b.icmp_signed("<", parts, one), one, parts)
        large = b.icmp_signed(">=", b.mul(b.mul(m, n), k), ir.Constant(I64, GEMM_SPLIT_WORK))
        return b.select(large, parts, one), "int64"

    def gemm(self, args, prefix: str | None) -> None:
        """blas.py's gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta, r0, r1,
        c0, c1) on flat buffers: rows r0..r1, columns c0..c1 of c[c_off:] (m x n) = that block
        of op(a) @ op(b) + beta * c, through the CBLAS `<prefix>cblas_?gemm` (MKL's, or
        OpenBLAS's with prefix `scipy_`) or, with prefix None, Numba's numba_xxgemm."""
        if len(args) != 16:
            raise Unsupported("gemm arity")
        b = self.builder
        ta, tb = (self.truth(*self.expr(a)) for a in args[:2])
        m, n, k = (self.cast(*self.expr(a), "int64") for a in args[2:5])
        (pa, dtype), (pb, dt2), (pc, dt3) = (self.buffer(args[i]) for i in (5, 7, 9))
        if not dtype == dt2 == dt3 or dtype not in FLOATS:
            raise Unsupported(f"gemm on {dtype}, {dt2}, {dt3}")
        offs = [self.cast(*self.expr(args[i]), "int64") for i in (6, 8, 10)]
        beta = self.cast(*self.expr(args[11]), dtype)
        r0, r1, c0, c1 = (self.cast(*self.expr(args[i]), "int64") for i in (12, 13, 14, 15))
        full_m, full_n = m, n  # the block: rows r0..r1 and columns c0..c1 of the product
        m, n = b.sub(r1, r0), b.sub(c1, c0)
        offs[0] = b.add(offs[0], b.select(ta, r0, b.mul(r0, k)))
        offs[1] = b.add(offs[1], b.select(tb, b.mul(c0, k), c0))
        offs[2] = b.add(offs[2], b.add(b.mul(r0, full_n), c0))
        et = LL[dtype]
        pa, pb, pc = (b.gep(p, [o], inbounds=True, source_etype=et)
                      for p, o in zip((pa, pb, pc), offs))
        zero = ir.Constant(I64, 0)
        empty = b.or_(b.icmp_signed("<=", m, zero), b.icmp_signed("<=", n, zero))
        call_blas, no_k, done = (self.new_block(x) for x in ("blas", "k_zero", "gemm_done"))
        check_k = self.new_block("check_k")
        b.cbranch(empty, done, check_k)
        b.position_at_end(check_k)
        lda = b.select(ta, full_m, k)
        ldb = b.select(tb, k, full_n)
        b.cbranch(b.icmp_signed("==", k, zero), no_k, call_blas)
        b.position_at_end(no_k)  # c = beta c (BLAS rejects a leading dimension of 0)
        read = b.fcmp_unordered("!=", beta, ir.Constant(et, 0.0))  # c unread where beta is 0

        def scale_row(i):
            row = self.builder.mul(i, full_n)

            def scale(j):
                bb = self.builder
                addr = bb.gep(pc, [bb.add(row, j)], inbounds=True, source_etype=et)
                scaled = bb.fmul(bb.load(addr, typ=et), beta)
                bb.store(bb.select(read, scaled, ir.Constant(et, 0.0)), addr)
            self.counted_loop(zero, n, scale)
        self.counted_loop(zero, m, scale_row)
        self.builder.branch(done)
        b.position_at_end(call_blas)
        if blas.OWN_GEMM:
            own, call_blas = self.new_block("own_gemm"), self.new_block("blas")
            wide = b.icmp_signed(">=", n, ir.Constant(I64, OWN_GEMM_MIN_COLS))
            b.cbranch(b.and_(wide, b.fcmp_ordered("==", beta, ir.Constant(et, 0.0))), own,
                      call_blas)
            b.position_at_end(own)
            b.call(native_gemm.declare(self.module, dtype),
                   [ta, tb, m, n, k, pa, lda, pb, ldb, pc, full_n, ir.Constant(I1, 0)])
            b.branch(done)
            b.position_at_end(call_blas)
        one = ir.Constant(et, 1.0)
        if prefix is not None:  # row-major CBLAS, 32-bit integers
            i32 = [b.trunc(v, I32) for v in (m, n, k, lda, ldb, full_n)]
            flag = [b.select(t, ir.Constant(I32, 112), ir.Constant(I32, 111)) for t in (ta, tb)]
            fn = self.declare(prefix + ("cblas_sgemm" if dtype == "float32" else "cblas_dgemm"),
                              ir.VoidType(), [I32] * 6 + [et, PTR, I32, PTR, I32, et, PTR, I32])
            b.call(fn, [ir.Constant(I32, 101), flag[0], flag[1], i32[0], i32[1], i32[2], one,
                        pa, i32[3], pb, i32[4], beta, pc, i32[5]])
        else:  # Numba's numba_xxgemm (SciPy's Fortran BLAS): C^T = op(B)^T op(A)^T
            alpha_slot, beta_slot = self.alloca(et), self.alloca(et)
            b.store(one, alpha_slot)
            b.store(beta, beta_slot)
            chars = [b.select(t, ir.Constant(I8, 84), ir.Constant(I8, 78)) for t in (tb, ta)]
            fn = self.declare("numba_xxgemm", I32, [I8, I8, I8, I64, I64, I64, PTR, PTR, I64,
                                                    PTR, I64, PTR, PTR, I64])
            kind = ir.Constant(I8, 115 if dtype == "float32" else 100)
            b.call(fn, [kind, chars[0], chars[1], n, m, k, alpha_slot, pb, ldb, pa, lda,
                        beta_slot, pc, full_n])
        b.branch(done)
        b.position_at_end(done)

    def single_threaded_openblas(self, fn, b: ir.IRBuilder, run):
        """`run()` with OpenBLAS single-threaded while the team runs the GEMM blocks: the
        first generated function to enter saves OpenBLAS's thread count and sets 1, the last
        to leave restores it. blas.OPENBLAS_GUARD holds [running, saved count, lock]; each
        entry and exit takes the spin lock, so an entry cannot save the 1 that a leaving
        call has not yet restored."""
        get, set_ = (self.declare(f"scipy_openblas_{x}_num_threads", t, a) for x, t, a in
                     (("get", I32, []), ("set", ir.VoidType(), [I32])))
        guard = self.module.globals.get(blas.OPENBLAS_GUARD_SYMBOL)
        if guard is None:
            guard = ir.GlobalVariable(self.module, ir.ArrayType(I64, 3),
                                      blas.OPENBLAS_GUARD_SYMBOL)
        running, saved, lock = (b.gep(guard, [ir.Constant(I32, 0), ir.Constant(I32, i)])
                                for i in (0, 1, 2))
        zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)

        def when(cond, label, body):
            then, after = fn.append_basic_block(label), fn.append_basic_block(label + ".done")
            b.cbranch(cond, then, after)
            b.position_at_end(then)
            body()
            b.branch(after)
            b.position_at_end(after)

        def locked(label, body):
            spin, inside = fn.append_basic_block(label), fn.append_basic_block(label + ".held")
            b.branch(spin)
            b.position_at_end(spin)
            taken = b.extract_value(b.cmpxchg(lock, zero, one, "acquire", "monotonic"), 1)
            b.cbranch(taken, inside, spin)
            b.position_at_end(inside)
            body()
            b.atomic_rmw("xchg", lock, zero, "release")

        def enter():
            count = b.load(running, typ=I64)
            b.store(b.add(count, one), running)
            when(b.icmp_signed("==", count, zero), "save",
                 lambda: (b.store(b.sext(b.call(get, []), I64), saved),
                          b.call(set_, [ir.Constant(I32, 1)])))

        def leave():
            count = b.sub(b.load(running, typ=I64), one)
            b.store(count, running)
            when(b.icmp_signed("==", count, zero), "restore",
                 lambda: b.call(set_, [b.trunc(b.load(saved, typ=I64), I32)]))

        locked("enter", enter)
        code = run()
        locked("leave", leave)
        return code
