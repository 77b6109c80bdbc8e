"""Scalar-expression and index rendering shared by the Numba CPU and CUDA code generators.

Both generators emit Python source that Numba compiles; they differ only in loop prologue,
thread indexing and a few intrinsics (STYLE.md: tinygrad's renderers). This module holds what
they share:

- `ScalarRenderer`: one op's scalar expression from the op table's template, with typed
  literals (a bare `0.5` would promote float32 math to float64 in Numba) and NaN-propagating
  maximum/minimum (Python's `max` drops a NaN in its second argument; NumPy propagates it);
- index helpers: the buffer offset an element of a node reads through a chain of views
  (reshape, transpose, broadcast_to, slice) and implicit broadcasting, with symbolic dims as
  runtime variables.
"""

from __future__ import annotations

import math
import re

import numpy as np

from symgraph.graph import Node
from symgraph.ops import OPS

_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.])")

# Templates whose table form does not match NumPy semantics in Numba, or that need dtypes.
OVERRIDES = {
    "maximum": "({0} if ({0} > {1} or {0} != {0}) else {1})",
    "minimum": "({0} if ({0} < {1} or {0} != {0}) else {1})",
    "sign": "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else (0.0 if {0} == 0 else {0})))",
    "stop_gradient": "{0}",
}


def dim_var(symbol: str, symbols: dict) -> str:
    """The runtime variable name of a symbolic dim (stable within one program)."""
    if symbol not in symbols:
        clean = re.sub(r"\W", "_", symbol)
        symbols[symbol] = f"d{len(symbols)}_{clean}"
    return symbols[symbol]


class ScalarRenderer:
    """Renders one elementwise node as a scalar expression over operand variable names.

    A generator specializes it by attributes, not by special cases in its own code:
    `float_templates` replace an op's template for float dtypes, `float32_calls` rename
    function calls inside float32 templates (the Numba CPU generator's vectorizable math).
    """

    module = "np"  # where dtype constructors live in generated code
    float_templates: dict = {}
    float32_calls: dict = {}

    def __init__(self, symbols: dict | None = None, consts: dict | None = None):
        self.symbols = symbols if symbols is not None else {}
        # With `consts`, typed literals become names defined once at module level (text ->
        # name): Numba then folds them as frozen globals instead of typing a call each time.
        self.consts = consts

    def dtype_ctor(self, dtype: str) -> str:
        return "bool" if dtype == "bool" else f"{self.module}.{dtype}"

    def literal(self, value, dtype: str) -> str:
        """A typed literal: `np.float32(0.5)`, `np.int64(3)`, `True` (or its hoisted name)."""
        if dtype == "bool":
            return "True" if bool(value) else "False"
        if dtype.startswith("float"):
            v = float(value)
            text = "np.nan" if math.isnan(v) else ("np.inf" if v == math.inf else
                                                   "-np.inf" if v == -math.inf else repr(v))
            return self._const(f"{self.module}.{dtype}({text})")
        return self._const(f"{self.module}.{dtype}({int(value)})")

    def _const(self, text: str) -> str:
        if self.consts is None:
            return text
        if text not in self.consts:
            self.consts[text] = f"_C{len(self.consts)}"
        return self.consts[text]

    def template(self, op: str, dtype: str) -> str | None:
        """The scalar template of `op` at `dtype`: the op table's, or this renderer's own."""
        if dtype.startswith("float") and op in self.float_templates:
            return self.float_templates[op]
        template = OVERRIDES.get(op) or OPS[op].template
        if template is not None and dtype == "float32":
            for call, replacement in self.float32_calls.items():
                template = template.replace(call, replacement)
        return template

    def typed_template(self, template: str, dtype: str) -> str:
        """Float literals of a template typed as `dtype` (ints stay: they compare exactly)."""
        if dtype not in ("float32", "float64"):
            return template
        return _FLOAT_LITERAL.sub(lambda m: self.literal(float(m.group(1)), dtype), template)

    def dim_expr(self, dim) -> str:
        return str(dim) if isinstance(dim, int) else dim_var(dim, self.symbols)

    def size_expr(self, shape) -> str:
        """The element count of `shape` as an expression ('1' for a scalar)."""
        known = int(np.prod([d for d in shape if isinstance(d, int)], dtype=np.int64))
        parts = [self.dim_expr(d) for d in shape if not isinstance(d, int)]
        if known != 1 or not parts:
            parts.insert(0, str(known))
        return " * ".join(parts)

    def expr(self, node: Node, args: list[str], extra: list[str] = ()) -> str:
        """The value of `node` from its operands' expressions, cast to the node's dtype."""
        op = node.op
        if op == "cast":
            src = node.inputs[0].dtype
            if node.dtype == "bool":
                return f"({args[0]} != 0)"
            if src == "bool":
                return f"{self.dtype_ctor(node.dtype)}(1 if {args[0]} else 0)"
            return f"{self.dtype_ctor(node.dtype)}({args[0]})"
        if op == "dim_size":
            return f"{self.dtype_ctor(node.dtype)}({self.size_expr(node.attr['dims'])})"
        if op == "one_hot":
            dtype = node.dtype
            one, zero = self.literal(1, dtype), self.literal(0, dtype)
            return f"({one} if {args[0]} == {extra[0]} else {zero})"
        template = self.template(op, node.dtype)
        if template is None:
            raise NotImplementedError(f"no scalar template for op {op!r}")
        if node.dtype == "int64" and op in ("add", "sub", "mul"):
            # NumPy wraps around; Numba's signed arithmetic is `nsw` (overflow is undefined), so
            # LLVM folded (a + b) > 0 into a > -b. Unsigned arithmetic wraps and costs nothing.
            args = [f"{self.dtype_ctor('uint64')}({a})" for a in args]
        text = self.typed_template(template, node.dtype).format(*args)
        if node.dtype == "bool":
            return text
        operands = node.inputs[1:] if op == "where" else node.inputs
        if node.dtype.startswith("float") and op != "pow" and \
                all(i.dtype == node.dtype for i in operands):
            # same-dtype float math stays in that dtype in Numba: no cast call to type
            return text
        return f"{self.dtype_ctor(node.dtype)}({text})"


# --- index maps --------------------------------------------------------------------------------


def broadcast_index(out_shape, idx: list[str], in_shape) -> list[str]:
    """Index into `in_shape` of the element at `idx` of `out_shape` under NumPy broadcasting."""
    lead = len(out_shape) - len(in_shape)
    out = []
    for k, d in enumerate(in_shape):
        out.append("0" if d == 1 and out_shape[lead + k] != 1 else idx[lead + k])
    return out


def _squeeze_map(out_shape, in_shape):
    """For a reshape that only adds or drops size-1 dims: in axis -> out axis (None = dim 1)."""
    out_axes = [k for k, d in enumerate(out_shape) if d != 1]
    in_axes = [k for k, d in enumerate(in_shape) if d != 1]
    if [out_shape[k] for k in out_axes] != [in_shape[k] for k in in_axes]:
        return None
    mapping: list = [None] * len(in_shape)
    for i, o in zip(in_axes, out_axes):
        mapping[i] = o
    return mapping


def _reshape_groups(out_shape, in_shape):
    """Runs of axes of equal size on both sides of a reshape, [(out axes, in axes)], so that
    each input coordinate comes from its own run only (no division by a batch-sized stride);
    None where the shapes do not split so (a symbolic dim must face itself)."""
    groups: list = []
    i = j = 0
    while i < len(out_shape) and j < len(in_shape):
        if isinstance(out_shape[i], str) or isinstance(in_shape[j], str):
            if out_shape[i] != in_shape[j]:
                return None
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
            continue
        out_axes, in_axes = [i], [j]
        po, pi = out_shape[i], in_shape[j]
        i, j = i + 1, j + 1
        while po != pi:
            side, k, shape = ((out_axes, i, out_shape) if po < pi else (in_axes, j, in_shape))
            if k >= len(shape) or isinstance(shape[k], str) or shape[k] == 0:
                return None
            side.append(k)
            if po < pi:
                po, i = po * shape[k], i + 1
            else:
                pi, j = pi * shape[k], j + 1
        groups.append((out_axes, in_axes))
    if any(d != 1 for d in out_shape[i:]) or any(d != 1 for d in in_shape[j:]) or not groups:
        return None
    groups[-1][1].extend(range(j, len(in_shape)))  # trailing size-1 input axes: index 0
    return groups


class IndexRenderer:
    """Maps an element index through views; emits offsets with symbolic dims as variables."""

    def __init__(self, scalar: ScalarRenderer):
        self.scalar = scalar

    def strides(self, shape) -> list[str]:
        """C-order strides of `shape` as expressions."""
        out, acc = [], []
        for d in reversed(shape):
            out.append(" * ".join(acc) if acc else "1")
            acc = [self.scalar.dim_expr(d)] + acc if d != 1 else acc
        return list(reversed(out))

    def offset(self, shape, idx: list[str]) -> str:
        """Flat C-order offset of `idx` in an array of `shape`."""
        terms = []
        for i, s in zip(idx, self.strides(shape)):
            if i == "0":
                continue
            terms.append(i if s == "1" else f"{i} * ({s})" if " " in s else f"{i} * {s}")
        return " + ".join(terms) if terms else "0"

    def through_view(self, view: Node, idx: list[str]) -> list[str]:
        """Index into `view`'s input of the element at `idx` of `view`."""
        src = view.inputs[0]
        a = view.attr
        if view.op == "broadcast_to":
            return broadcast_index(view.shape, idx, src.shape)
        if view.op == "transpose":
            out = [""] * len(idx)
            for j, p in enumerate(a["perm"]):
                out[p] = idx[j]
            return out
        if view.op == "slice":
            out = []
            for i, (start, _stop, step) in zip(idx, a["index"]):
                term = i if step == 1 else f"{i} * {step}"
                out.append(term if start == 0 else f"({start} + {term})")
            return out
        if view.op == "reshape":
            mapping = _squeeze_map(view.shape, src.shape)
            if mapping is not None:
                return ["0" if m is None else idx[m] for m in mapping]
            groups = _reshape_groups(tuple(view.shape), tuple(src.shape))
            if groups is not None:
                return self._grouped_index(view, src, idx, groups)
            flat = self.offset(view.shape, idx)
            out = []
            for d, s in zip(src.shape, self.strides(src.shape)):
                if d == 1:
                    out.append("0")
                else:
                    out.append(f"((({flat}) // ({s})) % {self.scalar.dim_expr(d)})")
            return out
        raise NotImplementedError(view.op)

    def _grouped_index(self, view: Node, src: Node, idx: list[str], groups) -> list[str]:
        """A reshape's input index, run by run (see _reshape_groups)."""
        out = ["0"] * src.ndim
        for out_axes, in_axes in groups:
            flat = self.offset([view.shape[k] for k in out_axes], [idx[k] for k in out_axes])
            dims = [src.shape[k] for k in in_axes]
            for n, (k, s) in enumerate(zip(in_axes, self.strides(dims))):
                if dims[n] == 1:
                    continue
                term = (f"({flat})" if " " in flat else flat) if s == "1" else \
                    f"(({flat}) // ({s}))"  # parenthesized: callers multiply it by a stride
                out[k] = term if n == 0 else f"({term} % {self.scalar.dim_expr(dims[n])})"
        return out

