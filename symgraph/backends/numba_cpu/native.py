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

Layout: this module translates statements, loops, buffers and expressions; native_ir.py holds
NumPy's scalar rules in IR (promotion, casts, arithmetic, comparisons), native_calls.py the
calls (helpers, math, GEMM), native_parallel.py the `prange` loops forked on OpenMP threads.
"""

from __future__ import annotations

import ast
import math

import numpy as np
from llvmlite import ir

from symgraph.backends.numba_cpu import blas
from symgraph.backends.numba_cpu.native_calls import Calls, Helper, _fastmath
from symgraph.backends.numba_cpu.native_ir import (  # noqa: F401  (the backend's names)
    ARRAY_DATA,
    ERR_INDEX,
    ERR_MEMORY,
    F32,
    F64,
    FLOATS,
    I1,
    I8,
    I32,
    I64,
    INTS,
    LIST_ITEMS,
    LL,
    PTR,
    SCALAR_TYPES,
    STORED,
    Buf,
    ScalarIR,
    Unsupported,
    _dtype_of_constant,
    constant,
    promote,
)
from symgraph.backends.numba_cpu.native_parallel import (  # noqa: F401
    PARALLEL_WORK,
    ParallelLoops,
    calls_gemm,
)
from symgraph.backends.numba_cpu.shared_kernels import SHARED


def _accumulates(target, value) -> bool:
    """`acc = acc + x` or `acc[i] = acc[i] + x`: a reduction's accumulating add."""
    return (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)
            and ast.dump(value.left) == ast.dump(ast.Name(target.id, ast.Load())
                                                 if isinstance(target, ast.Name) else
                                                 ast.Subscript(target.value, target.slice,
                                                               ast.Load())))


def _decorator_fastmath(fdef: ast.FunctionDef, namespace: dict) -> tuple:
    for d in fdef.decorator_list:
        if isinstance(d, ast.Call):
            for kw in d.keywords:
                if kw.arg == "fastmath":
                    return _fastmath(eval(compile(ast.Expression(kw.value), "<fastmath>",
                                                  "eval"), namespace))
    return ()


class Translator(ScalarIR, ParallelLoops, Calls):
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
        self.shared: dict = {}  # shared kernel name -> (IR function, signature, may fail)
        self.may_fail = False  # whether the function may return a nonzero code

    # --- declarations ---


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
        impl = self.function(fdef, name + ".body", kinds, sizes)

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
        if self.parallel and blas.SPLIT and (calls_gemm(fdef) or any(
                calls_gemm(h.fdef) for h in self.shared_calls(fdef))):
            b.ret(self.single_threaded_openblas(wrapper, b, lambda: b.call(impl, args)))
        else:
            b.ret(b.call(impl, args))

    def function(self, fdef: ast.FunctionDef, name: str, kinds: list, sizes: dict):
        """`define internal i32 name(<parameters>)` running `fdef`'s body: buffers as
        `noalias` pointers (`sizes`: their element counts as Python expressions), dims as
        i64; returns the return code (0, ERR_INDEX, ERR_MEMORY)."""
        fn = ir.Function(self.module, ir.FunctionType(
            I32, [PTR if isinstance(k, Buf) else LL[k] for k in kinds]), name)
        fn.linkage = "internal"
        for arg, k in zip(fn.args, kinds):
            if isinstance(k, Buf):
                arg.add_attribute("noalias")
        self.param_sizes = sizes
        self.body(fdef, fn, [a.arg for a in fdef.args.args], kinds)
        return fn

    def body(self, fdef, fn, names, kinds) -> None:
        self.fn = fn
        self.entry_block = fn.append_basic_block("slots")  # allocas only, then `start`
        start = fn.append_basic_block("start")
        self.builder = ir.IRBuilder(start)
        self.exit = fn.append_basic_block("exit")
        self.code = self.alloca(I32)  # the return code
        self.builder.store(ir.Constant(I32, 0), self.code)
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
        b.ret(b.load(self.code, typ=I32))

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

    def accumulation(self, value: ast.BinOp) -> tuple:
        """`acc + x` of a reduction's `acc = acc + x`: that add alone may be reordered
        (`reassoc`), so the loop vectorizes while every other operation keeps IEEE semantics."""
        left, right = self.expr(value.left), self.expr(value.right)
        saved = self.fastmath
        self.fastmath = tuple(sorted(set(saved) | {"reassoc"}))
        try:
            return self.binop(value.op, left, right)
        finally:
            self.fastmath = saved

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
                v, t = self.accumulation(s.value) if _accumulates(target, s.value) \
                    else self.expr(s.value)
                self.bind(target.id, t, v)
                return
            if isinstance(target, ast.Subscript):
                self.store(target, self.accumulation(s.value) if _accumulates(target, s.value)
                           else self.expr(s.value))
                return
        elif isinstance(s, ast.AugAssign):
            value = ast.BinOp(left=s.target, op=s.op, right=s.value)  # ctx is not read
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
                self.call(s.value)
                return
        elif isinstance(s, ast.Raise):
            exc = s.exc.func.id if isinstance(s.exc, ast.Call) and \
                isinstance(s.exc.func, ast.Name) else None
            if exc != "IndexError" or self.returns is not None or self.in_outlined:
                raise Unsupported(f"raise {exc} here")
            b.store(ir.Constant(I32, ERR_INDEX), self.code)
            self.may_fail = True
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
        self.may_fail = True
        b.branch(self.exit)
        b.position_at_end(ok)
        held = self.scope.get(name)
        if held is not None and any(h is held[0] for h in self.heap):  # reallocated
            b.call(self.declare("free", ir.VoidType(), [PTR]), [b.load(held[0], typ=PTR)])
        slot = self.alloca(PTR)
        # null until allocated, so the exit block may free every heap slot
        ir.IRBuilder(self.entry_block).store(ir.Constant(PTR, None), slot)
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


    # --- calls ---


def module_namespace(tree: ast.Module) -> dict:
    """The generated module's globals without compiling anything: its imports and constants
    executed, its functions as Helpers."""
    namespace: dict = {"__builtins__": __builtins__, "math": math, "np": np}
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign)):
            exec(compile(ast.Module([stmt], []), "<generated>", "exec"), namespace)
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            namespace[stmt.name] = Helper(stmt, namespace, _decorator_fastmath(stmt, namespace),
                                          shared=stmt.name.startswith(SHARED))
    return namespace


def translate(source: str, name: str, functions: dict, by_object: bool = False,
              parallel: bool = False) -> ir.Module:
    """An LLVM module with, per generated function `f` in `functions` (`entry`, or each
    kernel `k<id>` of the driver's module), a function `<name>_<f>(ptr bufs, ptr dims) -> i32`
    running it. `functions[f]` is (params, sizes): each parameter's kind (Buf(dtype) or
    "int64") and each buffer parameter's element count as a Python expression of the dims."""
    tree = ast.parse(source)
    namespace = module_namespace(tree)
    module = ir.Module(name=name)
    for fname, (params, sizes) in functions.items():
        fn = namespace.get(fname)
        if not isinstance(fn, Helper):
            raise Unsupported(f"no function {fname}")
        Translator(module, namespace, fn.fastmath, parallel).entry(
            fn.fdef, f"{name}_{fname}", params, sizes, by_object)
    return module
