"""The DSL: leaves, operators with NumPy broadcasting, math, reductions and movement.

Python scalars adopt the dtype of the tensor they meet (weak typing, as in JAX); two tensors of
different dtypes promote to the wider float (or wider int). Composites (activations, softmax,
losses, dropout, batch norm) live in composites.py and are built only from these functions.
"""

from __future__ import annotations

import builtins  # sum/max/min/abs are shadowed by the DSL functions here
import numbers

import numpy as np

from symgraph.errors import SymgraphError, SymgraphTypeError
from symgraph.graph import (
    FLOAT_DTYPES,
    INT_DTYPES,
    ConstValue,
    Node,
    TensorType,
    Variable,
    canonical_dtype,
)
from symgraph.ops import apply
from symgraph.ops import build as B
from symgraph.ops.shapes import is_int, normalize_axes, normalize_axis, normalize_shape
from symgraph.ops.table import checking_args

# --- leaves --------------------------------------------------------------------------------


def placeholder(shape, dtype="float32", name: str | None = None) -> Node:
    """An input fed at call time; str dims are symbolic (bound per call, e.g. "batch")."""
    with checking_args("placeholder" if name is None else f"placeholder {name!r}"):
        ttype = TensorType(canonical_dtype(dtype), normalize_shape(shape))
    return Node("placeholder", (), {}, ttype, name=name)


def _leaf_array(value, dtype) -> np.ndarray:
    """`value` as an array, float64 from Python floats made float32 (floatx, as in Keras)."""
    try:
        array = np.asarray(value, dtype=None if dtype is None else canonical_dtype(dtype))
    except (ValueError, TypeError) as exc:  # a ragged list, say
        raise SymgraphError(f"the value is not a rectangular numeric array ({exc})") from None
    except OverflowError as exc:  # a Python int that the dtype cannot hold (as NumPy 2 refuses)
        raise SymgraphError(f"the value does not fit {canonical_dtype(dtype)} ({exc})") from None
    if dtype is None and array.dtype == np.float64 and not isinstance(value, np.ndarray):
        array = array.astype(np.float32)
    canonical_dtype(array.dtype)
    return array


def variable(value, name: str | None = None, trainable: bool = True, dtype=None) -> Variable:
    """Persistent state initialised from `value`; read or set it with `.value`."""
    with checking_args("variable" if name is None else f"variable {name!r}"):
        array = _leaf_array(value, dtype)
    return Variable(array, name=name, trainable=trainable)


def constant(value, dtype=None, name: str | None = None) -> Node:
    """A constant tensor (folded and merged by value)."""
    with checking_args("constant" if name is None else f"constant {name!r}"):
        array = _leaf_array(value, dtype)
    if dtype is None and array.dtype == np.int64 and not isinstance(value, np.ndarray) and \
            array.size and np.iinfo(np.int32).min <= array.min() <= array.max() <= \
            np.iinfo(np.int32).max:  # Python ints narrow to int32 only when every one fits
        array = array.astype(np.int32)
    ttype = TensorType(canonical_dtype(array.dtype), tuple(array.shape))
    return Node("constant", (), {"value": ConstValue(array)}, ttype, name=name)


def as_node(x, like: Node | None = None) -> Node:
    """Nodes pass through; scalars take `like`'s dtype; arrays keep theirs."""
    if isinstance(x, Node):
        return x
    if isinstance(x, (complex, np.complexfloating)):
        raise SymgraphTypeError(f"complex value {x!r}: symgraph tensors are real")
    if isinstance(x, (numbers.Number, np.number, np.bool_)) and like is not None:
        dtype = like.dtype
        if dtype == "bool":
            dtype = "bool" if isinstance(x, (bool, np.bool_)) else "float32"
        elif dtype not in FLOAT_DTYPES and isinstance(x, (float, np.floating)):
            # a float meets an int tensor: a float result (JAX's weak float; NumPy's float64),
            # 2.0 included: int32 * 2.0 kept int32 and wrapped at 2**31
            dtype = "float32"
        if np.dtype(dtype).kind in "iu" and not np.iinfo(dtype).min <= x <= np.iinfo(dtype).max:
            raise SymgraphError(f"the scalar {x!r} is out of range for {dtype} (as in NumPy 2); "
                                "cast the tensor to a wider dtype first")
        return B.const(x, dtype)
    if isinstance(x, (list, tuple, np.ndarray, numbers.Number, np.number)):
        return constant(x)
    raise SymgraphTypeError(f"cannot use a {type(x).__name__} as a symgraph tensor")


def _promote(a: Node, b: Node) -> tuple[Node, Node]:
    if a.dtype == b.dtype:
        return a, b
    if {a.dtype, b.dtype} == {"uint32", "int32"}:
        target = "int64"  # as NumPy: the one that holds both
    else:
        order = ["bool", "int32", "uint32", "int64", "float32", "float64"]
        target = builtins.max(a.dtype, b.dtype, key=order.index)
    return cast(a, target), cast(b, target)


def _binary(op: str, a, b) -> Node:
    with checking_args(op, (a, b)):
        if not isinstance(a, Node):
            a = as_node(a, like=b if isinstance(b, Node) else None)
        b = as_node(b, like=a)
    a, b = _promote(a, b)
    if op in ("div", "pow") and a.dtype not in FLOAT_DTYPES:
        a, b = cast(a, "float64"), cast(b, "float64")  # NumPy's true division of integers
    return apply(op, (a, b))


# --- elementwise ---------------------------------------------------------------------------


def add(a, b) -> Node:
    return _binary("add", a, b)


def subtract(a, b) -> Node:
    return _binary("sub", a, b)


def multiply(a, b) -> Node:
    return _binary("mul", a, b)


def divide(a, b) -> Node:
    return _binary("div", a, b)


def power(a, b) -> Node:
    return _binary("pow", a, b)


def maximum(a, b) -> Node:
    return _binary("maximum", a, b)


def minimum(a, b) -> Node:
    return _binary("minimum", a, b)


def less(a, b) -> Node:
    return _binary("lt", a, b)


def less_equal(a, b) -> Node:
    return _binary("le", a, b)


def greater(a, b) -> Node:
    return _binary("gt", a, b)


def greater_equal(a, b) -> Node:
    return _binary("ge", a, b)


def equal(a, b) -> Node:
    return _binary("eq", a, b)


def not_equal(a, b) -> Node:
    return _binary("ne", a, b)


def logical_and(a, b) -> Node:
    return _binary("logical_and", a, b)


def logical_or(a, b) -> Node:
    return _binary("logical_or", a, b)


def _unary(op):
    def fn(x) -> Node:
        x = as_node(x)
        if op not in ("neg", "abs", "sign") and x.dtype not in FLOAT_DTYPES:
            x = cast(x, "float64" if x.dtype != "bool" else "float32")
        return apply(op, (x,))
    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op}."
    return fn


negative = _unary("neg")
exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
abs = _unary("abs")  # noqa: A001  (NumPy's name)
sign = _unary("sign")
log1p = _unary("log1p")
expm1 = _unary("expm1")
reciprocal = _unary("reciprocal")
sin = _unary("sin")
cos = _unary("cos")


def square(x) -> Node:
    x = as_node(x)
    return multiply(x, x)


def where(cond, a, b) -> Node:
    """cond ? a : b elementwise, with broadcasting."""
    if not isinstance(a, Node) and not isinstance(b, Node):
        a = as_node(a)
    a = as_node(a, like=b if isinstance(b, Node) else None)
    b = as_node(b, like=a)
    a, b = _promote(a, b)
    cond = as_node(cond)
    if cond.dtype != "bool":
        raise SymgraphError(f"where: condition {cond.describe()} must be bool")
    return apply("where", (cond, a, b))


def cast(x, dtype) -> Node:
    """x converted to `dtype` (gradient flows between float dtypes)."""
    x = as_node(x)
    with checking_args("cast", (x,)):
        dtype = canonical_dtype(dtype)
    return B.cast(x, dtype)


def clip(x, low, high) -> Node:
    return minimum(maximum(x, low), high)


def stop_gradient(x) -> Node:
    """Identity whose gradient is zero: `grad` treats it as a constant."""
    return apply("stop_gradient", (as_node(x),))


# --- reductions ----------------------------------------------------------------------------


def _reduce(op: str, x, axis, keepdims: bool) -> Node:
    x = as_node(x)
    if x.dtype == "bool":
        x = cast(x, "int64")
    with checking_args(op, (x,)):
        axes = normalize_axes(axis, x.ndim)
    if not axes:
        return x
    return apply(op, (x,), axes=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Sum over `axis` (None = all), as numpy.sum: int32 (and uint32) sums are int64."""
    x = as_node(x)
    if x.dtype in ("int32", "uint32"):
        x = cast(x, "int64")  # NumPy accumulates in int64: an int32 sum wrapped at 2**31
    return _reduce("sum", x, axis, keepdims)


def max(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    """Maximum over `axis`; ties share the gradient."""
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims: bool = False) -> Node:  # noqa: A001
    x = as_node(x)
    if x.dtype == "bool":
        x = cast(x, "int64")  # as max and sum count a mask
    if x.dtype in INT_DTYPES or x.dtype == "uint32":
        # -x wraps at the most negative integer (-INT_MIN == INT_MIN), so max(-x) would pick
        # the wrong element; ~x = -x - 1 is exact under wrap-around and reverses the order
        def invert(v):
            return subtract(negative(v), 1)
        return invert(max(invert(x), axis, keepdims))
    return negative(max(negative(x), axis, keepdims))


def size_of(x: Node, axis=None, dtype: str = "float32") -> Node:
    """The number of elements over `axis`, known at build time or bound at call time."""
    with checking_args("size_of", (x,)):
        dims = tuple(x.shape[a] for a in normalize_axes(axis, x.ndim))
    if all(isinstance(d, int) for d in dims):
        return B.const(int(np.prod(dims, dtype=np.int64)), dtype)
    return apply("dim_size", (), dims=dims, dtype=dtype)


def mean(x, axis=None, keepdims: bool = False) -> Node:
    """Arithmetic mean over `axis` (integer inputs give float64, as in NumPy)."""
    x = as_node(x)
    if x.dtype not in FLOAT_DTYPES:
        x = cast(x, "float64")
    return divide(sum(x, axis, keepdims), size_of(x, axis, x.dtype))


def var(x, axis=None, keepdims: bool = False) -> Node:
    """Biased variance (ddof=0) over `axis`."""
    x = as_node(x)
    mu = mean(x, axis, keepdims=True)
    return mean(square(x - mu), axis, keepdims)


def argmax(x, axis=None, keepdims: bool = False) -> Node:
    """Index of the maximum (int64); no gradient."""
    x = as_node(x)
    if axis is None:
        return apply("argmax", (reshape(x, (-1,)),), axis=0, keepdims=False)
    with checking_args("argmax", (x,)):
        if isinstance(axis, (tuple, list)):
            raise SymgraphTypeError(f"argmax takes one axis (an int or None), got {axis!r}")
        ax = normalize_axis(axis, x.ndim)
    return apply("argmax", (x,), axis=ax, keepdims=bool(keepdims))


# --- movement ------------------------------------------------------------------------------


def reshape(x, shape) -> Node:
    """x with a new shape; one -1 is inferred. A symbolic dim stays a dim of its own: (-1, 784)
    of ("batch", 28, 28) is ("batch", 784), but merging it with others ((-1,)) is an error."""
    x = as_node(x)
    with checking_args("reshape", (x,)):
        shape = normalize_shape(shape, "reshape target", allow_inferred=True)
    return apply("reshape", (x,), shape=shape) if tuple(shape) != tuple(x.shape) else x


def _axis(x: Node, axis, ndim: int, what: str) -> int:
    """`axis` in [-ndim, ndim) as a non-negative int (NumPy's AxisError otherwise)."""
    with checking_args(what, (x,)):
        return normalize_axis(axis, ndim)


def transpose(x, axes=None) -> Node:
    x = as_node(x)
    if axes is None:
        perm = tuple(reversed(range(x.ndim)))
    else:
        perm = tuple(_axis(x, a, x.ndim, "transpose") for a in axes)
        if sorted(perm) != list(range(x.ndim)):
            raise SymgraphError(f"transpose: axes {tuple(axes)} are not a permutation of the "
                                f"{x.ndim} axes of {x.describe()}")
    return B.transpose(x, perm) if x.ndim > 1 else x


def broadcast_to(x, shape) -> Node:
    x = as_node(x)
    with checking_args("broadcast_to", (x,)):
        shape = normalize_shape(shape, "broadcast_to target")
    return B.broadcast_to(x, shape)


def expand_dims(x, axis: int) -> Node:
    x = as_node(x)
    axis = _axis(x, axis, x.ndim + 1, "expand_dims")
    return reshape(x, tuple(x.shape[:axis]) + (1,) + tuple(x.shape[axis:]))


def concatenate(xs, axis: int = 0) -> Node:
    """Join tensors along an existing axis."""
    xs = [as_node(x) for x in xs]
    if not xs:
        raise SymgraphError("concatenate needs at least one tensor")
    first = xs[0]
    if first.ndim == 0:
        raise SymgraphError(f"concatenate: zero-dimensional {first.describe()} cannot be joined")
    axis = _axis(first, axis, first.ndim, "concatenate")
    return xs[0] if len(xs) == 1 else apply("concatenate", xs, axis=axis)


def matmul(a, b) -> Node:
    """NumPy matmul: 1-D operands are promoted and the added axis removed; batch dims broadcast."""
    a, b = as_node(a), as_node(b)
    a, b = _promote(a, b)
    a2 = reshape(a, (1,) + tuple(a.shape)) if a.ndim == 1 else a
    b2 = reshape(b, tuple(b.shape) + (1,)) if b.ndim == 1 else b
    out = apply("matmul", (a2, b2))
    if a.ndim == 1:
        out = reshape(out, tuple(out.shape[:-2]) + (out.shape[-1],))
    if b.ndim == 1:
        out = reshape(out, tuple(out.shape[:-1]))
    return out


def dot(a, b) -> Node:
    return matmul(a, b)


def one_hot(indices, depth: int, dtype: str = "float32") -> Node:
    """Integer labels -> one-hot rows (no gradient: the input is integer)."""
    indices = as_node(indices)
    with checking_args("one_hot", (indices,)):
        if not is_int(depth):
            raise SymgraphTypeError(f"depth {depth!r} must be an int (the number of classes, "
                                    "known when the graph is built)")
        if depth < 0:
            raise SymgraphError(f"depth {depth} must not be negative")
        dtype = canonical_dtype(dtype)
    return apply("one_hot", (indices,), depth=int(depth), dtype=dtype)


def take(x, indices) -> Node:
    """Rows of x picked by integer indices (gather along axis 0); gradient scatters back."""
    return apply("take", (as_node(x), as_node(indices)))


def _getitem(x: Node, key) -> Node:
    if isinstance(key, Node):
        return take(x, key)
    with checking_args("index", (x,)):
        index, final = _index_plan(x.shape, key)
    full = tuple((0, d if isinstance(d, int) else None, 1) for d in x.shape)
    sliced = x if tuple(index) == full else apply("slice", (x,), index=tuple(index))
    return reshape(sliced, tuple(1 if k is None else sliced.shape[k] for k in final))


def _index_plan(shape, key) -> tuple[list, list]:
    """x[key] for ints, slices, None and one Ellipsis, checked as NumPy checks them: the
    (start, stop, step) per axis of x, and the result's axes (an axis of x, or None: a new one)."""
    key = key if isinstance(key, tuple) else (key,)
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise SymgraphError("an index can hold only one Ellipsis")
    used = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > len(shape):
        raise SymgraphError(f"too many indices ({used}) for a tensor of rank {len(shape)}")
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - used) + key[i + 1:]
    else:
        key = key + (slice(None),) * (len(shape) - used)
    index, final, axis = [], [], 0
    for k in key:
        if k is None:
            final.append(None)
            continue
        dim = shape[axis]
        if is_int(k):
            if not isinstance(dim, int):
                raise SymgraphError(f"integer index on symbolic dim {dim!r}")
            if not -dim <= k < dim:
                raise SymgraphError(f"index {k} is out of range for dim {dim} of axis {axis}")
            k = int(k) % dim
            index.append((k, k + 1, 1))
        elif isinstance(k, slice):
            index.append(_slice_bounds(k, dim))
            final.append(axis)
        else:
            raise SymgraphTypeError(f"unsupported index {k!r}: indices are ints, slices, None, "
                                    "Ellipsis or an integer tensor")
        axis += 1
    return index, final


def _slice_bounds(k: slice, dim) -> tuple:
    """(start, stop, step) of slice `k` on a dim, with NumPy's rules for negative bounds."""
    if any(b is not None and not is_int(b) for b in (k.start, k.stop, k.step)):
        raise SymgraphTypeError(f"slice {k.start}:{k.stop}:{k.step}: bounds must be ints or "
                                "None")
    if k.step == 0:
        raise SymgraphError("slice step cannot be zero")
    if isinstance(dim, str):
        return (k.start or 0, k.stop, k.step or 1)
    start, stop, step = k.indices(dim)
    if step > 0:
        return (start, builtins.max(stop, start), step)
    if not range(start, stop, step):
        return (0, 0, 1)  # empty (indices() may give a start of -1)
    # x[::-1]: a stop below 0 means "past the first element", not -1
    return (start, stop if stop >= 0 else None, step)


# --- operators on nodes --------------------------------------------------------------------

def _install_operators() -> None:
    ops = {
        "__add__": lambda a, b: add(a, b), "__radd__": lambda a, b: add(b, a),
        "__sub__": lambda a, b: subtract(a, b), "__rsub__": lambda a, b: subtract(b, a),
        "__mul__": lambda a, b: multiply(a, b), "__rmul__": lambda a, b: multiply(b, a),
        "__truediv__": lambda a, b: divide(a, b), "__rtruediv__": lambda a, b: divide(b, a),
        "__pow__": lambda a, b: power(a, b), "__rpow__": lambda a, b: power(b, a),
        "__matmul__": lambda a, b: matmul(a, b), "__rmatmul__": lambda a, b: matmul(b, a),
        "__lt__": less, "__le__": less_equal, "__gt__": greater, "__ge__": greater_equal,
        "__neg__": negative, "__pos__": lambda a: a, "__abs__": abs,
        "__getitem__": _getitem,
        "__and__": logical_and, "__or__": logical_or,
    }
    for name, fn in ops.items():
        setattr(Node, name, fn)
    Node.T = property(lambda self: transpose(self))
    Node.reshape = lambda self, *shape: reshape(
        self, shape[0] if len(shape) == 1 and not isinstance(shape[0], (int, str)) else shape)
    Node.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
    Node.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
    Node.max = lambda self, axis=None, keepdims=False: max(self, axis, keepdims)
    Node.astype = lambda self, dtype: cast(self, dtype)
    Node.__array_ufunc__ = None  # ndarray <op> node defers to the node's reflected operator


_install_operators()
