"""Parallel `prange` loops for native.py: outlined, then forked on MKL's OpenMP team."""

from __future__ import annotations

import ast

from llvmlite import ir

from symgraph.backends.numba_cpu.native_ir import F32, F64, I8, I32, I64, LL, PTR, Buf, Unsupported

PARALLEL_WORK = 1 << 15  # iterations of a prange nest below which forking costs more


class ParallelLoops:
    """The translator's parallel loops (needs its scope, builder and statement methods)."""

    def parallel_loop(self, s: ast.For) -> None:
        """A `prange` loop (independent iterations, codegen.py) outlined into a function of
        its own over an index range, then either called over the whole range or, when the
        nest has at least PARALLEL_WORK iterations (or it runs the blocks of a GEMM, more
        than one) and OpenMP has more than one thread,
        forked with `__kmpc_fork_call` so each thread of the team runs an equal slice.

        The team is MKL's own (blas.py loads Intel's OpenMP runtime for MKL), so a parallel
        loop and a GEMM never run two thread pools against each other on the same cores."""
        b = self.builder
        start, stop = self.bounds(s.iter)
        free = sorted({n.id for n in ast.walk(s) if isinstance(n, ast.Name) and
                       n.id in self.scope and n.id != s.target.id})
        kinds = [self.scope[n][1] for n in free]
        values = [b.load(self.scope[n][0], typ=PTR if isinstance(k, Buf) else LL[k])
                  for n, k in zip(free, kinds)]
        types = [PTR if isinstance(k, Buf) else LL[k] for k in kinds]
        body = self.outline(s, free, kinds, types)
        work = b.sub(stop, start)
        if calls_gemm(s):  # blocks of a product (codegen.split_matmul): each one is heavy
            enough = b.icmp_signed(">", work, ir.Constant(I64, 1))
        else:
            for trip in self.inner_trips(s, start):
                work = b.mul(work, trip)
            enough = b.icmp_signed(">=", work, ir.Constant(I64, PARALLEL_WORK))
        threads = b.call(self.declare("omp_get_max_threads", I32, []), [])
        fork = b.and_(enough, b.icmp_signed(">", threads, ir.Constant(I32, 1)))
        forked, serial, done = (self.new_block(x) for x in ("fork", "serial", "joined"))
        b.cbranch(fork, forked, serial)
        b.position_at_end(serial)
        b.call(body, [start, stop] + values)
        b.branch(done)
        b.position_at_end(forked)
        # the context: start, stop and the free values, each as the bits of one i64
        slots = ir.ArrayType(I64, 2 + len(types))
        ctx = self.alloca(slots)
        for i, v in enumerate([start, stop] + values):
            b.store(_to_i64(b, v), b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, i)]))
        fork_call = self.declare("__kmpc_fork_call", ir.VoidType(), [PTR, I32, PTR],
                                 var_arg=True)
        b.call(fork_call, [self.omp_location(), ir.Constant(I32, 1),
                           self.microtask(body, [I64, I64] + types), ctx])
        b.branch(done)
        b.position_at_end(done)

    def inner_trips(self, s: ast.For, start) -> list:
        """Trip counts of the loops nested in `s` whose bounds are known before it, or
        depend only on its target (taken at `start`: the chunks of codegen's reductions)."""
        trips = []
        later = _assigned(s) - {s.target.id}  # names the nest assigns
        held = self.scope.pop(s.target.id, None)
        self.bind(s.target.id, "int64", start)
        node = s
        while True:
            inner = [x for x in node.body if isinstance(x, ast.For)]
            args = inner[0].iter.args if inner and isinstance(inner[0].iter, ast.Call) else []
            names = {n.id for a in args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if not args or names & later:
                break
            node = inner[0]
            lo, hi = self.bounds(node.iter)
            trips.append(self.builder.sub(hi, lo))
        del self.scope[s.target.id]
        if held is not None:
            self.scope[s.target.id] = held
        return trips

    def outline(self, s: ast.For, free, kinds, types) -> ir.Function:
        """`void loop(i64 lo, i64 hi, <free values>)`: the loop over [lo, hi), buffers noalias."""
        self.outlined += 1
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [I64, I64] + types),
                         f"{self.fn.name}.loop{self.outlined}")
        fn.linkage = "internal"
        for arg, k in zip(fn.args[2:], kinds):
            if isinstance(k, Buf):
                arg.add_attribute("noalias")
        saved = (self.fn, self.entry_block, self.builder, self.scope, self.exit, self.code,
                 self.heap, self.lengths)
        self.in_outlined = True
        try:
            self.fn, self.scope, self.heap, self.lengths = fn, {}, [], {}
            self.entry_block = fn.append_basic_block("slots")
            start = fn.append_basic_block("start")
            self.builder = ir.IRBuilder(start)
            self.exit, self.code = fn.append_basic_block("exit"), None
            for name, k, arg in zip(free, kinds, fn.args[2:]):
                self.bind(name, k, arg)
            target = s.target.id

            def body(i):
                self.bind(target, "int64", i)
                self.statements(s.body)
            self.counted_loop(fn.args[0], fn.args[1], body)
            if self.heap:
                raise Unsupported("allocation inside a parallel loop")
            self.builder.branch(self.exit)
            ir.IRBuilder(self.exit).ret_void()
            ir.IRBuilder(self.entry_block).branch(start)
        finally:
            (self.fn, self.entry_block, self.builder, self.scope, self.exit, self.code,
             self.heap, self.lengths) = saved
            self.in_outlined = False
        return fn

    def microtask(self, body: ir.Function, slots: list) -> ir.Function:
        """The OpenMP microtask: this thread's equal slice of [start, stop), then `body`."""
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR]),
                         f"{body.name}.task")
        fn.linkage = "internal"
        b = ir.IRBuilder(fn.append_basic_block())
        ctx = fn.args[2]
        fields = [_from_i64(b, b.load(b.gep(ctx, [ir.Constant(I64, i)], source_etype=I64),
                                      typ=I64), t) for i, t in enumerate(slots)]
        start, stop = fields[:2]
        tid = b.sext(b.call(self.declare("omp_get_thread_num", I32, []), []), I64)
        nth = b.sext(b.call(self.declare("omp_get_num_threads", I32, []), []), I64)
        n = b.sub(stop, start)
        chunk = b.sdiv(b.add(n, b.sub(nth, ir.Constant(I64, 1))), nth)
        lo = b.add(start, b.mul(tid, chunk))
        hi = b.add(lo, chunk)
        hi = b.select(b.icmp_signed("<", hi, stop), hi, stop)
        lo = b.select(b.icmp_signed("<", lo, stop), lo, stop)
        b.call(body, [lo, hi] + fields[2:])
        b.ret_void()
        return fn

    def omp_location(self):
        """The `ident_t` source location every `__kmpc_*` call takes (flags: KMP_IDENT_KMPC)."""
        loc = self.module.globals.get(".omp_loc")
        if loc is None:
            text = b";unknown;unknown;0;0;;\0"
            name = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(text)), ".omp_where")
            name.initializer = ir.Constant(ir.ArrayType(I8, len(text)), bytearray(text))
            name.global_constant, name.linkage = True, "private"
            t = ir.LiteralStructType([I32, I32, I32, I32, PTR])
            loc = ir.GlobalVariable(self.module, t, ".omp_loc")
            loc.initializer = ir.Constant(t, [ir.Constant(I32, 0), ir.Constant(I32, 2),
                                              ir.Constant(I32, 0), ir.Constant(I32, 0), name])
            loc.global_constant, loc.linkage = True, "private"
        return loc


def _to_i64(b: ir.IRBuilder, v):
    """The bits of a scalar or address as one i64 (a parallel loop's context slot)."""
    t = v.type
    if isinstance(t, ir.PointerType):
        return b.ptrtoint(v, I64)
    if t == F64:
        return b.bitcast(v, I64)
    if t == F32:
        return b.zext(b.bitcast(v, I32), I64)
    return v if t == I64 else b.zext(v, I64)


def _from_i64(b: ir.IRBuilder, v, t):
    if isinstance(t, ir.PointerType):
        return b.inttoptr(v, t)
    if t == F64:
        return b.bitcast(v, F64)
    if t == F32:
        return b.bitcast(b.trunc(v, I32), F32)
    return v if t == I64 else b.trunc(v, t)


def calls_gemm(node) -> bool:
    """Whether a statement calls the generated module's `gemm` (blas.py's wrapper)."""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "gemm"
               for n in ast.walk(node))


def _assigned(node) -> set:
    """Names a statement assigns (loop targets included)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            out.add(sub.id)
    return out
