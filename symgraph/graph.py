"""Graph IR: TensorType (dtype + shape with symbolic dims), immutable Node, traversal, text dump.

A node is (op, inputs, attrs, type). `op` is the primitive's name and `attrs` a sorted tuple of
(key, value) pairs, so two nodes compute the same value exactly when op, attrs and inputs are
equal (placeholders and variables are leaves compared by identity). Nothing mutates a node after
construction; rewrites build new nodes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np

from symgraph.arrays import aligned_copy, int_range_error
from symgraph.errors import SymgraphError, SymgraphTypeError, describe_trace, user_frame

Dim = Union[int, str]
Shape = tuple  # tuple[Dim, ...]

DTYPES = ("bool", "int32", "int64", "float32", "float64")
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")


def canonical_dtype(dtype) -> str:
    """'float32' for np.float32, 'float32', np.dtype('float32'); error for unsupported ones."""
    try:
        if isinstance(dtype, (tuple, list, dict, int)):  # a shape given as dtype, a struct
            raise TypeError
        name = np.dtype(dtype).name
    except TypeError:  # "foo", 3, an object that is no dtype
        raise SymgraphTypeError(f"unknown dtype {dtype!r}; symgraph supports "
                                f"{', '.join(DTYPES)}") from None
    if name == "uint32":
        return name
    if name not in DTYPES:
        raise SymgraphError(f"unsupported dtype {name!r}; symgraph supports {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class TensorType:
    """dtype plus shape; a dim is an int or a named symbol bound at call time."""

    dtype: str
    shape: Shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def is_static(shape: Shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def resolve_shape(shape: Shape, dims: dict) -> tuple:
    """Concrete shape: symbolic dims looked up in `dims` (bound at call time)."""
    return tuple(d if isinstance(d, int) else dims[d] for d in shape)


def static_size(shape: Shape) -> int | None:
    return int(np.prod(shape, dtype=np.int64)) if is_static(shape) else None


class ConstValue:
    """A constant's array, hashed and compared by value so constants can be folded and merged."""

    __slots__ = ("array", "_key")

    def __init__(self, array: np.ndarray):
        array = np.asarray(array)
        # native byte order: code generators read the raw bytes
        self.array = np.array(array, dtype=array.dtype.newbyteorder("="), copy=True, order="C")
        self.array.setflags(write=False)
        self._key = (self.array.dtype.str, self.array.shape, self.array.tobytes())

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, ConstValue) and self._key == other._key

    def __repr__(self):
        if self.array.size <= 4:
            return repr(self.array.tolist())
        return f"array{list(self.array.shape)}"


_ids = itertools.count()


class Node:
    """One value in the graph: the result of `op` applied to `inputs` with `attrs`."""

    __slots__ = ("op", "inputs", "attrs", "type", "name", "trace", "id", "tags", "__weakref__")

    def __init__(self, op: str, inputs: Sequence["Node"], attrs: dict | tuple, ttype: TensorType,
                 name: str | None = None, trace: str | None = None, tags: frozenset = frozenset()):
        setter = object.__setattr__
        setter(self, "op", op)
        setter(self, "inputs", tuple(inputs))
        setter(self, "attrs", tuple(sorted(attrs.items())) if isinstance(attrs, dict) else attrs)
        setter(self, "type", ttype)
        setter(self, "name", name)
        setter(self, "trace", trace if trace is not None else user_frame())
        setter(self, "id", next(_ids))
        setter(self, "tags", tags)

    def __setattr__(self, key, value):
        raise AttributeError(f"symgraph nodes are immutable (tried to set {key!r})")

    @property
    def attr(self) -> dict:
        return dict(self.attrs)

    @property
    def shape(self) -> Shape:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    def label(self) -> str:
        return self.name or f"{self.op}_{self.id}"

    def describe(self) -> str:
        """'op node `name` float32[batch,10] (created at file:line: code)' for error messages."""
        return f"{self.op} node {self.label()!r} {self.type} ({describe_trace(self.trace)})"

    def __repr__(self) -> str:
        return f"<{self.op} {self.label()} {self.type}>"

    def __hash__(self):
        return self.id

    def __eq__(self, other):  # DSL overrides == as an op; identity here keeps dicts working
        return self is other

    def __bool__(self):
        raise SymgraphError(f"the truth value of symbolic {self.describe()} is unknown "
                            "until the graph runs; use sg.where for a symbolic choice")

    def __len__(self):
        if not self.shape or not isinstance(self.shape[0], int):
            raise SymgraphError(f"len() needs a static first dim; {self.describe()}")
        return self.shape[0]


LEAF_OPS = frozenset({"placeholder", "variable", "constant"})


class Variable(Node):
    """Persistent state (weights, optimizer slots, counters): a leaf whose value lives here."""

    # `_host` is the NumPy value; `_pending` a device-resident value a backend returned as the
    # update (anything with .to_host()), materialized on first host read: on a GPU the weights
    # stay on the device across steps and only move when someone looks at them.
    __slots__ = ("_host", "_pending", "trainable", "default_update")

    def __init__(self, value: np.ndarray, name: str | None = None, trainable: bool = True,
                 trace: str | None = None):
        ttype = TensorType(canonical_dtype(value.dtype), tuple(int(d) for d in value.shape))
        super().__init__("variable", (), {}, ttype, name=name, trace=trace)
        object.__setattr__(self, "_host", aligned_copy(value, ttype.dtype))  # native order
        object.__setattr__(self, "_pending", None)
        object.__setattr__(self, "trainable", trainable)
        object.__setattr__(self, "default_update", None)

    def __setattr__(self, key, value):
        if key != "value":
            super().__setattr__(key, value)  # raises: nodes are immutable
        object.__setattr__(self, key, value)  # the checked `value` property setter

    @property
    def value(self) -> np.ndarray:
        """The current value (a copy is handed out, so callers cannot corrupt state)."""
        return self._value.copy()

    @value.setter
    def value(self, new) -> None:
        new = np.asarray(new)
        if new.shape != tuple(self.shape):
            raise SymgraphError(f"cannot set {self.describe()} to an array of shape "
                                f"{new.shape}; expected {tuple(self.shape)}")
        if not np.can_cast(new.dtype, self.dtype, casting="same_kind"):
            raise SymgraphError(f"cannot set {self.describe()} to dtype {new.dtype}")
        why = int_range_error(new, self.dtype)
        if why is not None:  # as a placeholder refuses them: astype would wrap around
            raise SymgraphError(f"cannot set {self.describe()} to {new.dtype} {why}")
        self._assign(aligned_copy(new, self.dtype))

    def assign(self, value) -> None:
        """Keras's `variable.assign(value)` with a value (an array or number): set now."""
        self.value = self._assigned("assign", value, lambda v: v)

    def assign_add(self, delta) -> None:
        """Keras's `variable.assign_add(delta)` with a value: value + delta, set now."""
        self.value = self._assigned("assign_add", delta, lambda v: self._value + v)

    def assign_sub(self, delta) -> None:
        """Keras's `variable.assign_sub(delta)` with a value: value - delta, set now."""
        self.value = self._assigned("assign_sub", delta, lambda v: self._value - v)

    def _assigned(self, what: str, value, combine):
        if isinstance(value, Node):
            raise SymgraphError(f"{what} on {self.describe()} got a graph node: a layer's call() "
                                "builds a symbolic graph, where assigning a variable (a state "
                                "update of the step, as Keras 3's) is not supported; assign "
                                "arrays outside call(), or return the value as an output")
        return combine(np.asarray(value))

    def set_trainable(self, trainable: bool) -> None:
        object.__setattr__(self, "trainable", bool(trainable))

    def set_default_update(self, expr: "Node | None") -> None:
        """An update applied by every function using this variable unless updates name it."""
        object.__setattr__(self, "default_update", expr)

    @property
    def _value(self) -> np.ndarray:
        """Runtime-internal: the host array (a pending device value is copied back once)."""
        if self._host is None:
            object.__setattr__(self, "_host", self._pending.to_host())
        return self._host

    def _assign(self, array: np.ndarray) -> None:
        """Runtime-internal: swap in a freshly computed array (already validated)."""
        object.__setattr__(self, "_host", array)
        object.__setattr__(self, "_pending", None)

    def _assign_pending(self, device_value) -> None:
        """Runtime-internal: swap in a device-resident value (has .to_host())."""
        object.__setattr__(self, "_host", None)
        object.__setattr__(self, "_pending", device_value)


def topo_order(outputs: Iterable[Node]) -> list[Node]:
    """Every node the outputs depend on, inputs before users (iterative DFS, no recursion)."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in outputs:
        if root.id in seen:
            continue
        stack = [(root, iter(root.inputs))]
        seen.add(root.id)
        while stack:
            node, it = stack[-1]
            for child in it:
                if child.id not in seen:
                    seen.add(child.id)
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def consumers(order: Sequence[Node]) -> dict[int, list[Node]]:
    """node id -> the nodes (in `order`) that use it as an input."""
    users: dict[int, list[Node]] = {n.id: [] for n in order}
    for node in order:
        for inp in node.inputs:
            users[inp.id].append(node)
    return users


def _format_attr(value) -> str:
    return repr(value)


def dump(outputs: Node | Sequence[Node]) -> str:
    """A compact text listing, one node per line: `%id = op[attrs](inputs) : type  # name`."""
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    lines = []
    for node in topo_order(outs):
        args = ", ".join(f"%{i.id}" for i in node.inputs)
        attrs = ", ".join(f"{k}={_format_attr(v)}" for k, v in node.attrs if k != "value")
        if node.op == "constant":
            attrs = _format_attr(node.attr["value"])
        head = f"%{node.id} = {node.op}" + (f"[{attrs}]" if attrs else "") + f"({args})"
        note = f"  # {node.name}" if node.name else ""
        lines.append(f"{head} : {node.type}{note}")
    lines.append("return " + ", ".join(f"%{o.id}" for o in outs))
    return "\n".join(lines)
