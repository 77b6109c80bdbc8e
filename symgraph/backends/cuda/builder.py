"""The CUDA renderer's expression layer: a node's value at a multi-index, as Python source.

Stage: backend code generation (after lower.py). Every kernel kind in kernels.py iterates over
some index space and asks `KernelBuilder.value(node, idx)` for the value of a graph node at a
multi-index `idx` (a tuple of index expressions, one per dim of the node's shape; the literal
"0" marks a broadcast or size-1 dim). The builder emits one statement per fused node (with the
op as a comment), loads materialized buffers through their flat index, and follows view nodes
(reshape, transpose, broadcast_to, slice) as index maps, so a view never costs a copy.

Scalar math comes from the op table's `template` strings (the same ones the CPU generator uses);
only literal typing and casts are CUDA-specific: float32 kernels keep float32 literals so the
GPU never silently computes in float64.
"""

from __future__ import annotations

import re

import numpy as np

from symgraph.graph import Node
from symgraph.ops import OPS
from symgraph.ops.special import FMIX_A, FMIX_B, GOLDEN, MASK32, STEP_SALT

VIEW_OPS = frozenset({"reshape", "transpose", "broadcast_to", "slice"})
_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d+(?:e[-+]?\d+)?)")


# NaN-propagating forms for float operands (arguments are names or literals, so repeating
# them costs nothing): Numba's max/min lower to __nv_fmaxf/fminf on a GPU, which return the
# non-NaN operand, and the op table's sign template maps NaN to 0.
NAN_TEMPLATES = {
    "maximum": "({0} if ({0} > {1} or {0} != {0}) else {1})",
    "minimum": "({0} if ({0} < {1} or {0} != {0}) else {1})",
    "sign": "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else ({0} if {0} != {0} else 0.0)))",
}


def literal(value, dtype: str) -> str:
    """Source for a typed scalar constant (float32 stays float32 on the GPU)."""
    if dtype == "bool":
        return "True" if bool(value) else "False"
    if dtype.startswith("float"):
        v = float(value)
        text = "np.inf" if v == np.inf else "-np.inf" if v == -np.inf else (
            "np.nan" if v != v else repr(v))
        return f"np.{dtype}({text})"
    return f"np.{dtype}({int(value)})"


def identity_of(op: str, dtype: str) -> str:
    """The neutral element of a reduction, as typed source."""
    if op == "sum":
        return literal(0, dtype)
    if dtype == "bool":  # argmax of a mask: False is below every other value
        return "False"
    if dtype.startswith("float"):
        return literal(-np.inf, dtype)
    return literal(np.iinfo(dtype).min, dtype)


def is_size_one(shape) -> bool:
    return all(d == 1 for d in shape)


class KernelBuilder:
    """Collects the arguments and statements of one generated kernel function.

    `buffers` maps node id -> buffer id for every materialized node; `members` are the node ids
    this kernel computes (everything else it reads is loaded); `invariants` are computed once
    before the loop. Arguments are buffers (flat 1-D device arrays) and int64 sizes.
    """

    def __init__(self, name: str, buffers: dict, members, invariants=(), bounds=None):
        self.name = name
        self.buffers = buffers
        self.members = {n.id for n in members}
        self.invariants = {n.id for n in invariants}
        self.bounds = bounds or {}  # take/scatter_add node id -> its slot in the bounds flags
        # ("buf", buffer id, dtype) | ("int", dims tuple) | ("bounds",): the flag buffer
        self.args: list[tuple] = []
        self._arg_name: dict = {}
        self.pre: list[str] = []  # statements before the loop (loop-invariant)
        self.lines: list[str] = []
        self.indent = 2
        self._scopes: list[dict] = [{}]
        self._pre_cache: dict = {}
        self._count = 0
        self.special: dict[int, str] = {}  # node id -> code (a matmul accumulator, a reduction)
        self.flat_alias: dict = {}  # (idx, shape) -> name of the flat index already at hand

    @classmethod
    def for_kernel(cls, kernel, program, name: str, members, bounds=None) -> KernelBuilder:
        """The builder of one launch of a lowered kernel."""
        return cls(name, program.buffer_of, members, kernel.invariants, bounds)

    def write_invariants(self, kernel, first_thread: str) -> None:
        """Invariant results (a step counter's update) are written once, by the first thread."""
        for node in kernel.writes:
            if node.id in self.invariants:
                v = self.value(node, ("0",) * node.ndim, pre=True)
                buf = self.buf(self.buffers[node.id], node.dtype)
                self.emit(f"if {first_thread}:", pre=True)
                self.emit(f"    {buf}[0] = {v}", pre=True)

    # --- arguments and statements -----------------------------------------------------------

    def buf(self, buffer_id: int, dtype: str) -> str:
        key = ("buf", buffer_id)
        if key not in self._arg_name:
            self._arg_name[key] = f"b{buffer_id}"
            self.args.append(("buf", buffer_id, dtype))
        return self._arg_name[key]

    def flags(self) -> str:
        """The bounds flag buffer (int64, a pair per checked node: hit, the bad index)."""
        key = ("bounds",)
        if key not in self._arg_name:
            self._arg_name[key] = "bounds"
            self.args.append(key)
        return self._arg_name[key]

    def size(self, dims) -> str:
        """The product of `dims` as source: a literal when static, else an int64 argument."""
        dims = tuple(d for d in dims if d != 1)
        static = 1
        for d in dims:
            if isinstance(d, int):
                static *= d
        symbols = tuple(sorted(d for d in dims if isinstance(d, str)))
        if not symbols:
            return str(static)
        key = ("int", symbols)
        if key not in self._arg_name:
            self._arg_name[key] = "n_" + "_".join(symbols)
            self.args.append(("int", symbols))
        name = self._arg_name[key]
        return name if static == 1 else f"({name} * {static})"

    def fresh(self, stem: str = "v") -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def emit(self, line: str, pre: bool = False) -> None:
        if pre:
            self.pre.append("    " + line)
        else:
            self.lines.append("    " * self.indent + line)

    def push(self, extra_indent: int = 0) -> None:
        """Open a nested block (an `if` or loop): values computed inside stay inside."""
        self.indent += extra_indent
        self._scopes.append({})

    def pop(self, extra_indent: int = 0) -> None:
        self.indent -= extra_indent
        self._scopes.pop()

    def _cached(self, key):
        if key in self._pre_cache:
            return self._pre_cache[key]
        for scope in reversed(self._scopes):
            if key in scope:
                return scope[key]
        return None

    # --- index arithmetic -------------------------------------------------------------------

    def linear(self, idx, shape) -> str:
        """Flat row-major offset of `idx` in a contiguous array of `shape`."""
        alias = self.flat_alias.get((tuple(idx), tuple(shape)))
        if alias is not None:
            return alias
        terms = []
        for k, (i, d) in enumerate(zip(idx, shape)):
            if i == "0" or d == 1:
                continue
            stride = self.size(shape[k + 1:])
            terms.append(i if stride == "1" else f"{i} * {stride}")
        return " + ".join(terms) if terms else "0"

    def decompose(self, flat: str, shape, stem: str, pre: bool = False) -> tuple:
        """Emit the multi-index of flat offset `flat` in `shape`; returns the index names."""
        names = []
        n = len(shape)
        for k, d in enumerate(shape):
            if d == 1:
                names.append("0")
                continue
            name = f"{stem}{k}"
            stride = self.size(shape[k + 1:])
            expr = flat if stride == "1" else f"({flat} // {stride})"
            if k > 0 and any(e != 1 for e in shape[:k]):
                expr = f"{expr} % {self.size((d,))}"
            self.emit(f"{name} = {expr}", pre)
            names.append(name)
        idx = tuple(names)
        if n and any(i != "0" for i in idx):  # all "0": the offset is 0, not the loop's index
            self.flat_alias[(idx, tuple(shape))] = flat
        return idx

    @staticmethod
    def broadcast_index(idx, out_shape, in_shape) -> tuple:
        """The index into an input that broadcasts to `out_shape` (NumPy alignment)."""
        lead = len(out_shape) - len(in_shape)
        return tuple("0" if d == 1 else idx[lead + k] for k, d in enumerate(in_shape))

    def view_index(self, node: Node, idx, pre: bool) -> tuple:
        """The index into a view's input that the view's element `idx` reads."""
        src = node.inputs[0]
        attrs = node.attr
        if node.op == "transpose":
            out = ["0"] * src.ndim
            for k, p in enumerate(attrs["perm"]):
                out[p] = idx[k]
            return tuple(out)
        if node.op == "broadcast_to":
            return self.broadcast_index(idx, node.shape, src.shape)
        if node.op == "slice":
            out = []
            for i, d, (start, stop, step) in zip(idx, src.shape, attrs["index"]):
                if isinstance(d, int):
                    start, _, step = slice(start, stop, step).indices(d)
                if i == "0":
                    out.append(str(start))
                elif (start, step) == (0, 1):
                    out.append(i)
                else:
                    out.append(f"({i} * {step} + {start})")
            return tuple(out)
        # reshape: equal non-1 dims map straight through; anything else via the flat offset
        src_dims = [d for d in src.shape if d != 1]
        out_dims = [(k, d) for k, d in enumerate(node.shape) if d != 1]
        if src_dims == [d for _, d in out_dims]:
            picked = iter(idx[k] for k, _ in out_dims)
            return tuple("0" if d == 1 else next(picked) for d in src.shape)
        flat = self.fresh("f")
        self.emit(f"{flat} = {self.linear(idx, node.shape)}", pre)
        return self.decompose(flat, src.shape, self.fresh("r") + "_", pre)

    # --- values -----------------------------------------------------------------------------

    def value(self, node: Node, idx, pre: bool = False) -> str:
        """Source naming `node`'s value at `idx`, emitting the statements that compute it."""
        idx = tuple(idx)
        if node.id in self.special:
            return self.special[node.id]
        if node.op == "constant" and is_size_one(node.shape):
            return literal(node.attr["value"].array.reshape(-1)[0], node.dtype)
        if node.id in self.invariants:
            idx, pre = ("0",) * node.ndim, True
        elif (node.id not in self.members and node.op not in VIEW_OPS
              and node.op != "stop_gradient" and all(i == "0" for i in idx)):
            pre = True  # a loop-invariant load: once per thread, before the loop
        key = (node.id, idx)
        hit = self._cached(key)
        if hit is not None:
            return hit
        if (node.id in self.buffers and node.id not in self.members
                and node.id not in self.invariants):
            buf = self.buf(self.buffers[node.id], node.dtype)
            code = f"{buf}[{self.linear(idx, node.shape)}]"
        elif node.op in VIEW_OPS:
            return self.value(node.inputs[0], self.view_index(node, idx, pre), pre)
        elif node.op == "stop_gradient":
            return self.value(node.inputs[0], idx, pre)
        else:
            code = self.compute(node, idx, pre)
        name = self.fresh()
        self.emit(f"{name} = {code}  # {node.op} {node.label()}", pre)
        (self._pre_cache if pre else self._scopes[-1])[key] = name
        return name

    def compute(self, node: Node, idx, pre: bool) -> str:
        """Source for a fused member node from its inputs' values."""
        op = node.op
        if op == "random_uniform":
            return self.random(node, idx, pre)
        if op == "dim_size":
            return f"np.{node.dtype}({self.size(node.attr['dims'])})"
        if op == "one_hot":
            (labels,) = node.inputs
            lab = self.value(labels, idx[:-1], pre)
            return self._typed(OPS[op].template, node.dtype).format(lab, idx[-1])
        if op == "take":
            x, labels = node.inputs
            k = labels.ndim
            label = self.value(labels, idx[:k], pre)
            row = self.row_in_range(label, x.shape[0], pre)
            out = self.fresh("g")
            self.emit(f"{out} = {literal(0, node.dtype)}", pre)
            self.emit(f"if {row} >= 0 and {row} < {self.size(x.shape[:1])}:", pre)
            self.push(1)
            self.emit(f"{out} = {self.value(x, (row,) + tuple(idx[k:]), pre)}", pre)
            self.pop(1)
            self.record_out_of_range(node, label, pre)
            return out
        if op == "cast":
            inner = self.value(node.inputs[0], idx, pre)
            if node.dtype == "bool":
                return f"({inner} != 0)"
            return f"np.{node.dtype}({inner})"
        if op == "concatenate":
            return self.concatenate(node, idx, pre)
        if op == "unslice":
            return self.unslice(node, idx, pre)
        template = OPS[op].template
        if template is None or OPS[op].kind != "elementwise":
            raise NotImplementedError(f"the CUDA renderer cannot fuse {node.describe()}")
        args = [self.value(i, self.broadcast_index(idx, node.shape, i.shape), pre)
                for i in node.inputs]
        if node.dtype.startswith("float") and op in NAN_TEMPLATES:
            template = NAN_TEMPLATES[op]  # NumPy's NaN semantics, not fmax/fmin's
        return self._typed(template, node.dtype).format(*args)

    @staticmethod
    def _typed(expr: str, dtype: str) -> str:
        """Wrap a template in the output dtype; float32 templates get float32 literals."""
        if dtype == "bool":
            return expr
        if dtype == "float32":
            expr = _FLOAT_LITERAL.sub(r"np.float32(\1)", expr)
        return f"np.{dtype}({expr})"

    def random(self, node: Node, idx, pre: bool) -> str:
        """ops/special.py's counter-based hash, inlined: bit-identical to uniform_bits."""
        (step,) = node.inputs
        key = self._cached(("key", node.attr["seed"], step.id))
        if key is None:
            s = self.value(step, ("0",) * step.ndim, True)
            key = self.fresh("key")
            # int64 first: an int32 step plus the salt overflows int32 in the simulator (NumPy 2)
            self.emit(f"{key} = np.uint64((np.int64({s}) + {STEP_SALT}) & {MASK32})", True)
            self._fmix(key, True)
            seed_mix = (node.attr["seed"] * GOLDEN) & MASK32
            self.emit(f"{key} = (np.uint64({seed_mix}) ^ {key}) & np.uint64({MASK32})", True)
            self._fmix(key, True)
            self._pre_cache[("key", node.attr["seed"], step.id)] = key
        h = self.fresh("h")
        self.emit(f"{h} = np.uint64({self.linear(idx, node.shape)}) ^ {key}", pre)
        self._fmix(h, pre)
        self.emit(f"{h} = ({h} + {key}) & np.uint64({MASK32})", pre)
        self._fmix(h, pre)
        dtype = node.dtype
        return f"np.{dtype}({h} >> np.uint64(8)) * np.{dtype}({2.0 ** -24!r})"

    def _fmix(self, h: str, pre: bool) -> None:
        """MurmurHash3's 32-bit finalizer on a uint64 holding 32 bits (ops/special.py fmix32)."""
        mask = f"np.uint64({MASK32})"
        self.emit(f"{h} = {h} ^ ({h} >> np.uint64(16))", pre)
        self.emit(f"{h} = ({h} * np.uint64({FMIX_A})) & {mask}", pre)
        self.emit(f"{h} = {h} ^ ({h} >> np.uint64(13))", pre)
        self.emit(f"{h} = ({h} * np.uint64({FMIX_B})) & {mask}", pre)
        self.emit(f"{h} = {h} ^ ({h} >> np.uint64(16))", pre)

    def row_in_range(self, label: str, rows, pre: bool = False) -> str:
        """The row a label picks along an axis of `rows`, a negative one wrapped as in NumPy.

        A GPU does not bounds-check: the caller loads or stores only under
        `0 <= row < rows` and, for a label the host did not check, records it otherwise.
        """
        row = self.fresh("row")
        self.emit(f"{row} = np.int64({label})", pre)
        self.emit(f"if {row} < 0:", pre)
        self.emit(f"    {row} += {self.size((rows,))}", pre)
        return row

    def record_out_of_range(self, node: Node, label: str, pre: bool = False) -> None:
        """The `else:` of a bounds test: a checked node marks its slot and keeps the label
        (racing threads all write a bad one; device.py raises after the launch)."""
        slot = self.bounds.get(node.id)
        if slot is None:  # labels from an input: the host checked them before launch
            return
        flags = self.flags()
        self.emit("else:", pre)
        self.emit(f"    {flags}[{2 * slot}] = 1  # {node.op} {node.label()}: out of range", pre)
        self.emit(f"    {flags}[{2 * slot + 1}] = np.int64({label})", pre)

    def concatenate(self, node: Node, idx, pre: bool) -> str:
        """Pick the piece that holds `idx` along the axis (branches, so no load runs off)."""
        axis = node.attr["axis"]
        out = self.fresh("c")
        offset = 0
        for n, piece in enumerate(node.inputs):
            size = piece.shape[axis]
            keyword = "if" if n == 0 else "elif" if n < len(node.inputs) - 1 else "else"
            cond = f" {idx[axis]} < {offset + size}" if keyword != "else" else ""
            self.emit(f"{keyword}{cond}:", pre)
            self.push(1)
            local = list(idx)
            local[axis] = f"({idx[axis]} - {offset})" if offset else idx[axis]
            self.emit(f"{out} = {self.value(piece, local, pre)}", pre)
            self.pop(1)
            offset += size
        return out

    def unslice(self, node: Node, idx, pre: bool) -> str:
        """Zeros with the slice's elements written in: an inside-the-slice test per dim."""
        (g,) = node.inputs
        out = self.fresh("u")
        conds, src = [], []
        for i, d, (start, stop, step) in zip(idx, node.shape, node.attr["index"]):
            if isinstance(d, int):
                start, stop, step = slice(start, stop, step).indices(d)
                n = len(range(start, stop, step))
                rel = f"({i} - {start})" if start else i
                if (start, step, n) != (0, 1, d):
                    conds.append(f"{rel} % {step} == 0 and 0 <= {rel} // {step} < {n}")
                src.append(f"{rel} // {step}" if step != 1 else rel)
            else:
                src.append(i)
        self.emit(f"{out} = {literal(0, node.dtype)}", pre)
        self.emit(f"if {' and '.join(conds) or 'True'}:", pre)
        self.push(1)
        self.emit(f"{out} = {self.value(g, tuple(src), pre)}", pre)
        self.pop(1)
        return out

    def store(self, node: Node, idx, code: str) -> None:
        """Write `code` as `node`'s element `idx` into its buffer."""
        buf = self.buf(self.buffers[node.id], node.dtype)
        self.emit(f"{buf}[{self.linear(idx, node.shape)}] = {code}")

    def signature(self) -> str:
        names = []
        for arg in self.args:
            names.append(self._arg_name[arg[:2]])
        return ", ".join(names)
