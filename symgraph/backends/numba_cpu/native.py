"""The generated module's `entry`, translated straight to LLVM IR: Numba's front end skipped.

Cold compiling a training step through Numba took 4.6 s (M1) and 6.9 s (M2) here, about 1 ms
per LLVM instruction spread over Numba's typing, rewriting and lowering passes, and its IR
(array structs, reference counts, exception plumbing) is several times larger than the loops
need. The module codegen.py writes uses a small, fixed subset of Python: flat buffers indexed
by integer expressions, `for ... in range`, scalar arithmetic on typed NumPy scalars, `if`,
`raise`, calls of a few helpers (`gemm`, the random-bit functions, vecmath.py's float32 math).
This module types that subset itself, by NumPy's scalar rules as Numba does, and emits LLVM IR
for it with llvmlite, so LLVM is the only compiler left (llvmjit.py compiles and caches it).

The source stays the single description of every kernel: both paths run the same text, and the
test suite runs every backend test through both. Anything outside the subset raises
`Unsupported`, and the backend then compiles that program with Numba.

Helpers (the random-bit functions of the generated module, vecmath.py's njit functions) are
inlined at each call from their Python source; `fastmath` flags follow each function's own
decorator, so vecmath keeps its `contract`-only arithmetic inside a `reassoc` kernel.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from symgraph.backends.numba_cpu import blas, vecmath


class Unsupported(Exception):
    """A construct outside the subset this translator handles (the backend then uses Numba)."""


I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
LL = {"bool": I1, "int8": I8, "int32": I32, "int64": I64, "uint64": I64, "float32": F32,
      "float64": F64}
STORED = dict(LL, bool=I8)  # NumPy stores a bool in one byte
FLOATS = ("float32", "float64")
INTS = ("int8", "int32", "int64", "uint64")
SCALAR_TYPES = {np.float32: "float32", np.float64: "float64", np.int8: "int8",
                np.int32: "int32", np.int64: "int64", np.uint64: "uint64", np.bool_: "bool",
                bool: "bool"}
INTRINSICS = {"exp": "llvm.exp", "log": "llvm.log", "sqrt": "llvm.sqrt", "floor": "llvm.floor",
              "ceil": "llvm.ceil", "fabs": "llvm.fabs", "sin": "llvm.sin", "cos": "llvm.cos"}
LIBM = ("tanh", "expm1", "log1p", "tan", "atan", "asin", "acos", "sinh", "cosh", "log10",
        "log2", "exp2", "erf", "erfc")
FCMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
ERR_INDEX, ERR_MEMORY = 1, 2  # entry's return codes (0: done)
PARALLEL_WORK = 1 << 15  # iterations of a prange nest below which forking costs more
LIST_ITEMS = 24  # byte offset of a CPython list's item array (PyListObject.ob_item)
ARRAY_DATA = 16  # byte offset of an ndarray's data address (PyArrayObject_fields.data)


@dataclass(frozen=True)
class Buf:
    """A local holding a flat buffer's address; elements are `dtype`."""

    dtype: str


@dataclass(eq=False)
class Helper:
    """A Python function to inline: its definition, globals and fast-math flags."""

    fdef: ast.FunctionDef
    namespace: dict
    fastmath: tuple


def _fastmath(option) -> tuple:
    if option is True:
        return ("fast",)
    return tuple(sorted(option or ()))


def _decorator_fastmath(fdef: ast.FunctionDef, namespace: dict) -> tuple:
    for d in fdef.decorator_list:
        if isinstance(d, ast.Call):
            for kw in d.keywords:
                if kw.arg == "fastmath":
                    return _fastmath(eval(compile(ast.Expression(kw.value), "<fastmath>",
                                                  "eval"), namespace))
    return ()


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


def _dtype_of_constant(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, np.generic):
        return np.dtype(type(value)).name
    if isinstance(value, int):
        if not -2 ** 63 <= value < 2 ** 63:
            raise Unsupported(f"integer constant {value} outside int64")
        return "int64"
    if isinstance(value, float):
        return "float64"
    raise Unsupported(f"constant {value!r} of type {type(value).__name__}")


def constant(value, dtype: str) -> ir.Constant:
    if dtype in FLOATS:
        return ir.Constant(LL[dtype], float(value))
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    v = int(value)
    return ir.Constant(LL[dtype], v & 0xFFFFFFFFFFFFFFFF if dtype == "uint64" else v)


def promote(a: str, b: str) -> str:
    """The dtype of a binary operation on scalars of dtypes a and b (NumPy's rules)."""
    if a == b:
        return a
    if a in FLOATS or b in FLOATS:
        if "float64" in (a, b):
            return "float64"
        other = b if a == "float32" else a
        return "float32" if other == "bool" else "float64"  # int with float32: float64
    if "uint64" in (a, b):
        if "bool" in (a, b):
            return "uint64"
        raise Unsupported(f"mixing uint64 with {a if b == 'uint64' else b}")
    order = ("bool", "int8", "int32", "int64")
    return order[max(order.index(a), order.index(b))]


class Translator:
    """Translates one entry function (and inlines what it calls) into an LLVM module."""

    def __init__(self, module: ir.Module, namespace: dict, fastmath: tuple,
                 parallel: bool = False):
        self.module = module
        self.namespace = namespace
        self.fastmath = fastmath
        self.parallel = parallel  # prange loops may fork OpenMP threads (see parallel_loop)
        self.outlined = 0  # parallel loops outlined so far
        self.in_outlined = False
        self.scope: dict = {}  # Python name -> (alloca, dtype or Buf)
        self.heap: list = []  # allocas holding malloc'd addresses, freed on exit
        self.lengths: dict = {}  # buffer name -> alloca holding its element count
        self.param_sizes: dict = {}  # parameter buffer name -> size expression (Python text)
        self.returns = None  # (block, [slot, dtype]) while inlining a helper
        self.builder: ir.IRBuilder | None = None

    # --- declarations ---
    def declare(self, name: str, ret, args, var_arg=False) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args, var_arg=var_arg), name)
        return fn

    def intrinsic(self, name: str, dtype: str) -> ir.Function:
        t = LL[dtype]
        nargs = 2 if name in ("llvm.maximum", "llvm.minimum", "llvm.pow") else 1
        return self.module.declare_intrinsic(name, [t], ir.FunctionType(t, [t] * nargs))

    # --- the entry function ---
    def entry(self, fdef: ast.FunctionDef, name: str, params: dict, sizes: dict,
              by_object: bool) -> None:
        """`define i32 name(ptr bufs, ptr dims)`: takes each buffer's address and each dim from
        the two arguments and calls the body, whose buffer parameters are `noalias` (every
        written buffer is fresh: temporaries here, results from the driver).

        `bufs` is the Python list of the arrays when `by_object` (each address read from the
        list's item array and the ndarray struct, at offsets llvmjit.py checks in this
        process: no Python work per array), else a C array of addresses."""
        names = [a.arg for a in fdef.args.args]
        kinds = [params[n] for n in names]
        impl = ir.Function(self.module, ir.FunctionType(
            I32, [PTR if isinstance(k, Buf) else LL[k] for k in kinds]), name + ".body")
        impl.linkage = "internal"
        for arg, k in zip(impl.args, kinds):
            if isinstance(k, Buf):
                arg.add_attribute("noalias")
        self.param_sizes = sizes
        self.body(fdef, impl, names, kinds)

        wrapper = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR]), name)
        b = ir.IRBuilder(wrapper.append_basic_block("entry"))
        bufs, dims = wrapper.args

        def field(ptr, index):
            return b.load(b.gep(ptr, [ir.Constant(I64, index)], source_etype=PTR), typ=PTR)
        if by_object:
            bufs = field(bufs, LIST_ITEMS // 8)
        args, nb, nd = [], 0, 0
        for k in kinds:
            if isinstance(k, Buf):
                item = field(bufs, nb)
                args.append(field(item, ARRAY_DATA // 8) if by_object else item)
                nb += 1
            else:
                slot = b.gep(dims, [ir.Constant(I64, nd)], source_etype=I64)
                args.append(b.load(slot, typ=I64))
                nd += 1
        b.ret(b.call(impl, args))

    def body(self, fdef, fn, names, kinds) -> None:
        self.fn = fn
        self.entry_block = fn.append_basic_block("slots")  # allocas only, then `start`
        start = fn.append_basic_block("start")
        self.builder = ir.IRBuilder(start)
        self.exit = fn.append_basic_block("exit")
        self.code = None
        code = self.alloca(I32)
        self.code = code
        self.builder.store(ir.Constant(I32, 0), code)
        for n, k, arg in zip(names, kinds, fn.args):
            self.bind(n, k, arg)
        self.statements(fdef.body)
        if not self.builder.block.is_terminated:
            self.builder.branch(self.exit)
        ir.IRBuilder(self.entry_block).branch(start)
        b = ir.IRBuilder(self.exit)
        free = self.declare("free", ir.VoidType(), [PTR])
        for slot in self.heap:
            b.call(free, [b.load(slot, typ=PTR)])
        b.ret(b.load(code, typ=I32))

    # --- locals ---
    def alloca(self, t) -> ir.AllocaInstr:
        """A stack slot in the function's first block (mem2reg turns it into registers)."""
        return ir.IRBuilder(self.entry_block).alloca(t)

    def bind(self, name: str, kind, value) -> None:
        """Assign `value` of `kind` (a dtype or Buf) to the Python local `name`."""
        held = self.scope.get(name)
        if held is None or held[1] != kind:
            held = (self.alloca(PTR if isinstance(kind, Buf) else LL[kind]), kind)
            self.scope[name] = held
        self.builder.store(value, held[0])

    def new_block(self, label: str) -> ir.Block:
        return self.fn.append_basic_block(label)

    def dead_end(self) -> None:
        """Code after a return or raise: emitted into a block nothing reaches."""
        self.builder.position_at_end(self.new_block("dead"))

    # --- statements ---
    def statements(self, stmts) -> None:
        for s in stmts:
            self.statement(s)

    def statement(self, s) -> None:
        b = self.builder
        if isinstance(s, ast.Assign) and len(s.targets) == 1:
            target = s.targets[0]
            if isinstance(target, ast.Name):
                if self.allocation(target.id, s.value):
                    return
                v, t = self.expr(s.value)
                self.bind(target.id, t, v)
                return
            if isinstance(target, ast.Subscript):
                self.store(target, self.expr(s.value))
                return
        elif isinstance(s, ast.AugAssign):
            value = ast.BinOp(left=_as_load(s.target), op=s.op, right=s.value)
            if isinstance(s.target, ast.Name):
                v, t = self.expr(value)
                held = self.scope.get(s.target.id)
                if held is None:
                    raise Unsupported(f"{s.target.id} updated before assignment")
                b.store(self.cast(v, t, held[1]), held[0])
                return
            if isinstance(s.target, ast.Subscript):
                self.store(s.target, self.expr(value))
                return
        elif isinstance(s, ast.For):
            self.loop(s)
            return
        elif isinstance(s, ast.If):
            self.if_statement(s)
            return
        elif isinstance(s, ast.Expr):
            if isinstance(s.value, ast.Constant):
                return  # a docstring
            if isinstance(s.value, ast.Call):
                self.call(s.value, statement=True)
                return
        elif isinstance(s, ast.Raise):
            exc = s.exc.func.id if isinstance(s.exc, ast.Call) and \
                isinstance(s.exc.func, ast.Name) else None
            if exc != "IndexError" or self.returns is not None or self.in_outlined:
                raise Unsupported(f"raise {exc} here")
            b.store(ir.Constant(I32, ERR_INDEX), self.code)
            b.branch(self.exit)
            self.dead_end()
            return
        elif isinstance(s, ast.Return):
            if self.returns is None:  # the entry's `return 0`
                b.branch(self.exit)
            else:
                block, ret = self.returns
                v, t = self.expr(s.value)
                if ret[0] is None:
                    ret[0], ret[1] = self.alloca(LL[t]), t
                elif ret[1] != t:
                    raise Unsupported(f"a helper returns {ret[1]} and {t}")
                b.store(v, ret[0])
                b.branch(block)
            self.dead_end()
            return
        elif isinstance(s, ast.Pass):
            return
        raise Unsupported(f"statement {ast.unparse(s)[:80]!r}")

    def allocation(self, name: str, value) -> bool:
        """`x = np.empty(n, dtype)` or `np.full(n, fill, dtype)`: malloc, freed on exit."""
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and
                isinstance(value.func.value, ast.Name) and value.func.value.id == "np" and
                value.func.attr in ("empty", "full")):
            return False
        b = self.builder
        full = value.func.attr == "full"
        n, nt = self.expr(value.args[0])
        n = self.cast(n, nt, "int64")
        dtype = np.dtype(self.constant_value(value.args[2 if full else 1])).name
        # 64-byte aligned (a cache line, one AVX-512 vector), never size 0 (which may be null)
        size = b.mul(n, ir.Constant(I64, np.dtype(dtype).itemsize))
        size = b.and_(b.add(size, ir.Constant(I64, 64)), ir.Constant(I64, -64))
        ptr = b.call(self.declare("aligned_alloc", PTR, [I64, I64]), [ir.Constant(I64, 64), size])
        ok, fail = self.new_block("allocated"), self.new_block("no_memory")
        b.cbranch(b.icmp_unsigned("!=", ptr, ir.Constant(PTR, None)), ok, fail)
        b.position_at_end(fail)
        b.store(ir.Constant(I32, ERR_MEMORY), self.code)
        b.branch(self.exit)
        b.position_at_end(ok)
        held = self.scope.get(name)
        if held is not None and any(h is held[0] for h in self.heap):  # reallocated
            b.call(self.declare("free", ir.VoidType(), [PTR]), [b.load(held[0], typ=PTR)])
        slot = self.alloca(PTR)
        self.null_init(slot)
        self.heap.append(slot)
        self.scope[name] = (slot, Buf(dtype))
        b.store(ptr, slot)
        length = self.alloca(I64)
        b.store(n, length)
        self.lengths[name] = length
        if full:
            fill, ft = self.expr(value.args[1])
            self.fill(ptr, n, self.cast(fill, ft, dtype), dtype)
        return True

    def null_init(self, slot) -> None:
        """Heap slots are null until allocated, so the exit block may free every one."""
        ir.IRBuilder(self.entry_block).store(ir.Constant(PTR, None), slot)

    def fill(self, ptr, n, value, dtype) -> None:
        def body(i):
            self.builder.store(self.stored(value, dtype),
                               self.builder.gep(ptr, [i], inbounds=True,
                                                source_etype=STORED[dtype]))
        self.counted_loop(ir.Constant(I64, 0), n, body)

    def counted_loop(self, start, stop, body) -> None:
        b = self.builder
        slot = self.alloca(I64)
        b.store(start, slot)
        head, loop, done = self.new_block("head"), self.new_block("loop"), self.new_block("done")
        b.branch(head)
        b.position_at_end(head)
        i = b.load(slot, typ=I64)
        b.cbranch(b.icmp_signed("<", i, stop), loop, done)
        b.position_at_end(loop)
        body(i)
        self.builder.store(self.builder.add(i, ir.Constant(I64, 1)), slot)
        self.builder.branch(head)
        self.builder.position_at_end(done)

    def loop(self, s: ast.For) -> None:
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and
                it.func.id in ("range", "prange") and 1 <= len(it.args) <= 2 and
                not s.orelse and
                isinstance(s.target, ast.Name)):
            raise Unsupported(f"loop {ast.unparse(s.iter)[:60]!r}")
        if it.func.id == "prange" and self.parallel and not self.in_outlined and \
                self.returns is None:
            self.parallel_loop(s)
            return
        start, stop = self.bounds(it)
        name = s.target.id

        def body(i):
            self.bind(name, "int64", i)
            self.statements(s.body)
        self.counted_loop(start, stop, body)

    def bounds(self, it: ast.Call) -> tuple:
        b = [self.cast(*self.expr(a), "int64") for a in it.args]
        return (ir.Constant(I64, 0), b[0]) if len(b) == 1 else tuple(b)

    def parallel_loop(self, s: ast.For) -> None:
        """A `prange` loop (independent iterations, codegen.py) outlined into a function of
        its own over an index range, then either called over the whole range or, when the
        nest has at least PARALLEL_WORK iterations and OpenMP has more than one thread,
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
        for trip in self.inner_trips(s):
            work = b.mul(work, trip)
        threads = b.call(self.declare("omp_get_max_threads", I32, []), [])
        fork = b.and_(b.icmp_signed(">=", work, ir.Constant(I64, PARALLEL_WORK)),
                      b.icmp_signed(">", threads, ir.Constant(I32, 1)))
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

    def inner_trips(self, s: ast.For) -> list:
        """Trip counts of the loops nested in `s` whose bounds are known before it."""
        trips = []
        node = s
        while True:
            inner = [x for x in node.body if isinstance(x, ast.For)]
            if not inner:
                return trips
            node = inner[0]
            args = node.iter.args if isinstance(node.iter, ast.Call) else []
            names = {n.id for a in args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if args and not names & _assigned(s):  # bounds known before the nest
                lo, hi = self.bounds(node.iter)
                trips.append(self.builder.sub(hi, lo))

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

    def if_statement(self, s: ast.If) -> None:
        b = self.builder
        cond = self.truth(*self.expr(s.test))
        then, other, done = self.new_block("then"), self.new_block("else"), self.new_block("fi")
        b.cbranch(cond, then, other)
        for block, stmts in ((then, s.body), (other, s.orelse)):
            self.builder.position_at_end(block)
            self.statements(stmts)
            if not self.builder.block.is_terminated:
                self.builder.branch(done)
        self.builder.position_at_end(done)

    # --- buffers ---
    def buffer(self, node) -> tuple:
        if not isinstance(node, ast.Name) or node.id not in self.scope or \
                not isinstance(self.scope[node.id][1], Buf):
            raise Unsupported(f"subscript of {ast.unparse(node)[:40]!r}")
        slot, kind = self.scope[node.id]
        return self.builder.load(slot, typ=PTR), kind.dtype

    def element(self, sub: ast.Subscript):
        ptr, dtype = self.buffer(sub.value)
        i, it = self.expr(sub.slice)
        if it not in INTS:
            raise Unsupported(f"index of dtype {it}")
        i = self.cast(i, it, "int64")
        return self.builder.gep(ptr, [i], inbounds=True, source_etype=STORED[dtype]), dtype

    def stored(self, value, dtype):
        return self.builder.zext(value, I8) if dtype == "bool" else value

    def store(self, target: ast.Subscript, value) -> None:
        v, t = value
        if isinstance(target.slice, ast.Slice):  # b[:] = v
            sl = target.slice
            if sl.lower or sl.upper or sl.step:
                raise Unsupported("partial slice assignment")
            ptr, dtype = self.buffer(target.value)
            self.fill(ptr, self.length(target.value.id), self.cast(v, t, dtype), dtype)
            return
        addr, dtype = self.element(target)
        self.builder.store(self.stored(self.cast(v, t, dtype), dtype), addr)

    def length(self, name: str):
        if name in self.lengths:
            return self.builder.load(self.lengths[name], typ=I64)
        if name in self.param_sizes:
            v, t = self.expr(ast.parse(self.param_sizes[name], mode="eval").body)
            return self.cast(v, t, "int64")
        raise Unsupported(f"length of {name}")

    # --- expressions ---
    def is_constant(self, node) -> bool:
        """No local names, and every call is of a NumPy scalar type or np.iinfo / np.finfo
        (evaluating it in Python gives what compiled code would)."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self.scope:
                return False
            if isinstance(sub, ast.Call):
                try:
                    f = self.resolve(sub.func)
                except Unsupported:
                    return False
                if f not in SCALAR_TYPES and f not in (np.iinfo, np.finfo):
                    return False
        return True

    def constant_value(self, node):
        """The value of a constant expression (see is_constant), evaluated in the namespace."""
        try:
            return eval(compile(ast.Expression(node), "<constant>", "eval"), self.namespace)
        except Exception as exc:
            raise Unsupported(f"cannot evaluate {ast.unparse(node)[:60]!r}: {exc}") from None

    def resolve(self, func):
        """The object a call's function expression names (never a local)."""
        for sub in ast.walk(func):
            if isinstance(sub, ast.Name) and sub.id in self.scope:
                raise Unsupported(f"call through local {sub.id}")
        try:
            return eval(compile(ast.Expression(func), "<func>", "eval"), self.namespace)
        except Exception:
            raise Unsupported(f"unknown function {ast.unparse(func)[:40]!r}") from None

    def expr(self, node) -> tuple:
        b = self.builder
        if isinstance(node, ast.Name) and node.id in self.scope:
            slot, kind = self.scope[node.id]
            if isinstance(kind, Buf):
                raise Unsupported(f"buffer {node.id} used as a value")
            return b.load(slot, typ=LL[kind]), kind
        if isinstance(node, (ast.Name, ast.Constant, ast.Attribute)) or (
                isinstance(node, (ast.Call, ast.Subscript, ast.UnaryOp, ast.BinOp)) and
                self.is_constant(node)):
            value = self.constant_value(node)
            if isinstance(value, Helper) or callable(value):
                raise Unsupported(f"{ast.unparse(node)[:40]!r} used as a value")
            dtype = _dtype_of_constant(value)
            return constant(value, dtype), dtype
        if isinstance(node, ast.Subscript):
            addr, dtype = self.element(node)
            v = b.load(addr, typ=STORED[dtype])
            if dtype == "bool":
                return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)), dtype
            return v, dtype
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp):
            v, t = self.expr(node.operand)
            if isinstance(node.op, ast.USub):
                if t in FLOATS:
                    return self.flagged(b.fneg(v)), t
                t = "int64" if t == "bool" else t
                return b.neg(self.cast(v, "bool", t) if v.type == I1 else v), t
            if isinstance(node.op, ast.Not):
                return b.not_(self.truth(v, t)), "bool"
            if isinstance(node.op, ast.UAdd):
                return v, t
            if isinstance(node.op, ast.Invert) and t in INTS + ("bool",):
                return b.not_(v), t
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return self.compare(node.ops[0], self.expr(node.left),
                                self.expr(node.comparators[0]))
        if isinstance(node, ast.BoolOp):
            vals = [self.truth(*self.expr(v)) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = b.and_(out, v) if isinstance(node.op, ast.And) else b.or_(out, v)
            return out, "bool"
        if isinstance(node, ast.IfExp):
            cond = self.truth(*self.expr(node.test))
            (x, xt), (y, yt) = self.expr(node.body), self.expr(node.orelse)
            t = promote(xt, yt)
            return b.select(cond, self.cast(x, xt, t), self.cast(y, yt, t)), t
        if isinstance(node, ast.Call):
            return self.call(node)
        raise Unsupported(f"expression {ast.unparse(node)[:80]!r}")

    def flagged(self, instr):
        """Apply the current function's fast-math flags to a float instruction."""
        for f in self.fastmath:
            if f not in instr.flags:
                instr.flags.append(f)
        return instr

    def truth(self, v, t):
        if t == "bool":
            return v
        if t in FLOATS:
            return self.builder.fcmp_unordered("!=", v, ir.Constant(LL[t], 0.0))
        return self.builder.icmp_signed("!=", v, ir.Constant(LL[t], 0))

    def cast(self, v, src: str, dst: str):
        """NumPy's conversion of a scalar from dtype src to dst (as `np.<dst>(v)`)."""
        b = self.builder
        if src == dst or (src in ("int64", "uint64") and dst in ("int64", "uint64")):
            return v
        if dst == "bool":
            return self.truth(v, src)
        if src == "bool":
            return b.uitofp(v, LL[dst]) if dst in FLOATS else b.zext(v, LL[dst])
        if src in FLOATS and dst in FLOATS:
            return b.fpext(v, F64) if dst == "float64" else b.fptrunc(v, F32)
        if src in FLOATS:
            return b.fptoui(v, I64) if dst == "uint64" else b.fptosi(v, LL[dst])
        if dst in FLOATS:
            return b.uitofp(v, LL[dst]) if src == "uint64" else b.sitofp(v, LL[dst])
        if LL[src].width > LL[dst].width:
            return b.trunc(v, LL[dst])
        return b.sext(v, LL[dst])

    def binop(self, op, left, right) -> tuple:
        b = self.builder
        (x, xt), (y, yt) = left, right
        t = promote(xt, yt)
        if isinstance(op, ast.Div) and t not in FLOATS:
            t = "float64"
        if t == "bool" and not isinstance(op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
            t = "int64"
        x, y = self.cast(x, xt, t), self.cast(y, yt, t)
        if t in FLOATS:
            simple = {ast.Add: b.fadd, ast.Sub: b.fsub, ast.Mult: b.fmul, ast.Div: b.fdiv}
            if type(op) in simple:
                return self.flagged(simple[type(op)](x, y)), t
            if isinstance(op, ast.Pow):
                return b.call(self.intrinsic("llvm.pow", t), [x, y]), t
            if isinstance(op, ast.FloorDiv):
                q = self.flagged(b.fdiv(x, y))
                return b.call(self.intrinsic("llvm.floor", t), [q]), t
            raise Unsupported(f"float operator {type(op).__name__}")
        unsigned = t == "uint64"
        ops = {ast.Add: b.add, ast.Sub: b.sub, ast.Mult: b.mul, ast.BitAnd: b.and_,
               ast.BitOr: b.or_, ast.BitXor: b.xor, ast.LShift: b.shl}
        if type(op) in ops:
            return ops[type(op)](x, y), t
        if isinstance(op, ast.RShift):
            return (b.lshr(x, y) if unsigned else b.ashr(x, y)), t
        if isinstance(op, (ast.FloorDiv, ast.Mod)):
            return self.int_division(op, x, y, t), t
        raise Unsupported(f"integer operator {type(op).__name__}")

    def int_division(self, op, x, y, t):
        """Python's floor division and modulo (NumPy's error model: x // 0 == x % 0 == 0)."""
        b = self.builder
        zero = ir.Constant(LL[t], 0)
        nonzero = b.icmp_signed("!=", y, zero)
        safe = b.select(nonzero, y, ir.Constant(LL[t], 1))
        if t == "uint64":
            out = b.udiv(x, safe) if isinstance(op, ast.FloorDiv) else b.urem(x, safe)
            return b.select(nonzero, out, zero)
        q, r = b.sdiv(x, safe), b.srem(x, safe)
        # round toward negative infinity: adjust where the remainder's sign differs from y's
        adjust = b.and_(b.icmp_signed("!=", r, zero),
                        b.icmp_signed("<", b.xor(r, safe), zero))
        if isinstance(op, ast.FloorDiv):
            out = b.sub(q, b.zext(adjust, LL[t]))
        else:
            out = b.select(adjust, b.add(r, safe), r)
        return b.select(nonzero, out, zero)

    def compare(self, op, left, right) -> tuple:
        (x, xt), (y, yt) = left, right
        t = promote(xt, yt)
        x, y = self.cast(x, xt, t), self.cast(y, yt, t)
        sym = FCMP.get(type(op))
        if sym is None:
            raise Unsupported(f"comparison {type(op).__name__}")
        b = self.builder
        if t in FLOATS:  # ordered, except !=: a NaN is unequal to everything
            cmp = b.fcmp_unordered if sym == "!=" else b.fcmp_ordered
            return cmp(sym, x, y), "bool"
        if t == "uint64" or t == "bool":
            return b.icmp_unsigned(sym, x, y), "bool"
        return b.icmp_signed(sym, x, y), "bool"

    # --- calls ---
    def call(self, node: ast.Call, statement: bool = False) -> tuple:
        if node.keywords:
            raise Unsupported("keyword arguments")
        f = self.resolve(node.func)
        if f in (blas.mkl_gemm, blas.scipy_gemm):
            self.gemm(node.args, f is blas.mkl_gemm)
            return None, None
        helper = _helper_of(f) if not isinstance(f, type) else None
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

    def gemm(self, args, mkl: bool) -> None:
        """blas.py's gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta) on
        flat buffers: c[c_off:] (m x n) = op(a) @ op(b) + beta * c."""
        if len(args) != 12:
            raise Unsupported("gemm arity")
        b = self.builder
        ta, tb = (self.truth(*self.expr(a)) for a in args[:2])
        m, n, k = (self.cast(*self.expr(a), "int64") for a in args[2:5])
        (pa, dtype), (pb, dt2), (pc, dt3) = (self.buffer(args[i]) for i in (5, 7, 9))
        if not dtype == dt2 == dt3 or dtype not in FLOATS:
            raise Unsupported(f"gemm on {dtype}, {dt2}, {dt3}")
        offs = [self.cast(*self.expr(args[i]), "int64") for i in (6, 8, 10)]
        beta = self.cast(*self.expr(args[11]), dtype)
        et = LL[dtype]
        pa, pb, pc = (b.gep(p, [o], inbounds=True, source_etype=et)
                      for p, o in zip((pa, pb, pc), offs))
        zero = ir.Constant(I64, 0)
        empty = b.or_(b.icmp_signed("==", m, zero), b.icmp_signed("==", n, zero))
        call_blas, no_k, done = (self.new_block(x) for x in ("blas", "k_zero", "gemm_done"))
        check_k = self.new_block("check_k")
        b.cbranch(empty, done, check_k)
        b.position_at_end(check_k)
        b.cbranch(b.icmp_signed("==", k, zero), no_k, call_blas)
        b.position_at_end(no_k)  # c *= beta (BLAS rejects a leading dimension of 0)

        def scale(i):
            addr = self.builder.gep(pc, [i], inbounds=True, source_etype=et)
            self.builder.store(self.builder.fmul(self.builder.load(addr, typ=et), beta), addr)
        self.counted_loop(zero, b.mul(m, n), scale)
        self.builder.branch(done)
        b.position_at_end(call_blas)
        lda = b.select(ta, m, k)
        ldb = b.select(tb, k, n)
        one = ir.Constant(et, 1.0)
        if mkl:  # row-major CBLAS, 32-bit integers
            i32 = [b.trunc(v, I32) for v in (m, n, k, lda, ldb, n)]
            flag = [b.select(t, ir.Constant(I32, 112), ir.Constant(I32, 111)) for t in (ta, tb)]
            fn = self.declare("cblas_sgemm" if dtype == "float32" else "cblas_dgemm",
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
                        beta_slot, pc, n])
        b.branch(done)
        b.position_at_end(done)


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


def _assigned(node) -> set:
    """Names a statement assigns (loop targets included)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            out.add(sub.id)
    return out


def _as_load(target):
    node = ast.parse(ast.unparse(target), mode="eval").body
    return node


def module_namespace(tree: ast.Module) -> dict:
    """The generated module's globals without compiling anything: its imports and constants
    executed, its functions as Helpers."""
    namespace: dict = {"__builtins__": __builtins__, "math": math, "np": np}
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign)):
            exec(compile(ast.Module([stmt], []), "<generated>", "exec"), namespace)
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            namespace[stmt.name] = Helper(stmt, namespace, _decorator_fastmath(stmt, namespace))
    return namespace


def translate(source: str, name: str, params: dict, sizes: dict,
              by_object: bool = False, parallel: bool = False) -> ir.Module:
    """An LLVM module whose function `name(ptr bufs, ptr dims) -> i32` runs the generated
    module's `entry`. `params` gives each entry parameter's kind (Buf(dtype) or "int64"),
    `sizes` each buffer parameter's element count as a Python expression of the dims."""
    tree = ast.parse(source)
    namespace = module_namespace(tree)
    entry = namespace.get("entry")
    if not isinstance(entry, Helper):
        raise Unsupported("no entry function")
    module = ir.Module(name=name)
    Translator(module, namespace, entry.fastmath, parallel).entry(entry.fdef, name, params,
                                                                  sizes, by_object)
    return module
