"""The primitive op table: one OpDef per primitive with its concerns side by side.

Concerns: `infer` (shape/dtype rule), `impl` (NumPy reference), `vjp` (reverse-mode rule written
with graph ops), `jvp` (forward-mode rule), `template` (scalar expression shared by the code
generators, elementwise ops only). A missing concern carries its reason in `why_not`.

`vjp(node, g)` returns one entry per input: a Node, or None for "no contribution" (integer
inputs, stop_gradient). `vjp is None` means the op is not differentiable: autodiff raises when
such an op lies on a path that needs a gradient. `jvp(node, tangents)` gets one tangent per input
(None = zero) and returns the output tangent (None = zero).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from symgraph.errors import SymgraphError, describe_trace, user_frame
from symgraph.graph import Node, TensorType

ELEMENTWISE, REDUCE, MATMUL, MOVEMENT, INDEX, RANDOM, LEAF = (
    "elementwise", "reduce", "matmul", "movement", "index", "random", "leaf")


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    infer: Callable[..., TensorType] | None
    impl: Callable | None
    vjp: Callable | None
    jvp: Callable | None
    template: str | None = None
    why_not: dict = field(default_factory=dict)


OPS: dict[str, OpDef] = {}

# Tags added to every node built while a `tagging` block is active (autodiff marks its nodes).
_active_tags: list[frozenset] = [frozenset()]


def active_tags() -> frozenset:
    return _active_tags[-1]


@contextmanager
def tagging(*tags: str):
    """Every node `apply` builds inside this block carries `tags` (e.g. "grad")."""
    _active_tags.append(_active_tags[-1] | frozenset(tags))
    try:
        yield
    finally:
        _active_tags.pop()

CONCERNS = ("infer", "impl", "vjp", "jvp", "template")


def register(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise RuntimeError(f"op {opdef.name!r} registered twice")
    OPS[opdef.name] = opdef
    return opdef


def apply(op: str, inputs, name: str | None = None, trace: str | None = None,
          tags: frozenset = frozenset(), **attrs) -> Node:
    """Build the node `op(inputs, **attrs)`, checking shapes and dtypes with the op's rule."""
    opdef = OPS[op]
    inputs = tuple(inputs)
    for i, inp in enumerate(inputs):
        if not isinstance(inp, Node):
            raise SymgraphError(f"{op}: input {i} is {type(inp).__name__}, not a symgraph node")
    if trace is None:
        trace = user_frame()
    try:
        ttype = opdef.infer(*[i.type for i in inputs], **attrs)
    except SymgraphError as exc:
        raise op_error(op, inputs, exc, trace) from None
    return Node(op, inputs, attrs, ttype, name=name, trace=trace, tags=tags | _active_tags[-1])


def op_error(op: str, inputs, exc: SymgraphError, trace: str) -> SymgraphError:
    """`exc` restated as 'op(operand types): message (created at file:line: code)'."""
    head = f"{op}({', '.join(f'{i.label()} {i.type}' for i in inputs)})" if inputs else op
    return type(exc)(f"{head}: {exc} ({describe_trace(trace)})")


class checking_args:  # noqa: N801  (reads as a function in `with checking_args(...)`)
    """`with checking_args("sum", (x,)):` a SymgraphError raised by the argument checks inside
    names the op, its operands and the user's line, as the shape rules' errors in `apply` do."""

    def __init__(self, op: str, inputs=()):
        self.op = op
        self.inputs = tuple(i for i in inputs if isinstance(i, Node))

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, SymgraphError):
            raise op_error(self.op, self.inputs, exc, user_frame()) from None
        return False


def rebuild(node: Node, inputs) -> Node:
    """The same op and attrs over new inputs (used by rewrites); keeps name, trace and tags."""
    if all(a is b for a, b in zip(node.inputs, inputs)) and len(inputs) == len(node.inputs):
        return node
    return apply(node.op, inputs, name=node.name, trace=node.trace, tags=node.tags,
                 **node.attr)
