"""NumPy's scalar rules in LLVM IR, for native.py: types, constants, promotion, casts,
arithmetic and comparisons as Numba types and lowers them (`error_model='numpy'`)."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
from llvmlite import ir


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
LIST_ITEMS = 24  # byte offset of a CPython list's item array (PyListObject.ob_item)
ARRAY_DATA = 16  # byte offset of an ndarray's data address (PyArrayObject_fields.data)


@dataclass(frozen=True)
class Buf:
    """A local holding a flat buffer's address; elements are `dtype`."""

    dtype: str


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


class ScalarIR:
    """Scalar operations on (IR value, dtype) pairs; the translator's `builder`, `module`
    and `fastmath` are used."""

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

    def declare(self, name: str, ret, args, var_arg=False) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args, var_arg=var_arg), name)
        return fn

    def intrinsic(self, name: str, dtype: str) -> ir.Function:
        t = LL[dtype]
        nargs = 2 if name in ("llvm.maximum", "llvm.minimum", "llvm.pow") else 1
        return self.module.declare_intrinsic(name, [t], ir.FunctionType(t, [t] * nargs))
