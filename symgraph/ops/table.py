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
        operands = ", ".join(f"{i.label()} {i.type}" for i in inputs)
        raise SymgraphError(f"{op}({operands}): {exc} ({describe_trace(trace)})") from None
    return Node(op, inputs, attrs, ttype, name=name, trace=trace, tags=tags | _active_tags[-1])


def rebuild(node: Node, inputs) -> Node:
    """The same op and attrs over new inputs (used by rewrites); keeps name, trace and tags."""
    if all(a is b for a, b in zip(node.inputs, inputs)) and len(inputs) == len(node.inputs):
        return node
    return apply(node.op, inputs, name=node.name, trace=node.trace, tags=node.tags,
                 **node.attr)
