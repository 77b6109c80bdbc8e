"""Primitive ops: the table (`OPS`), the node constructor (`apply`) and the rules behind them."""

from symgraph.ops import elementwise, movement, reduce, special  # noqa: F401  (registers ops)
from symgraph.ops.table import CONCERNS, OPS, OpDef, apply, rebuild

__all__ = ["CONCERNS", "OPS", "OpDef", "apply", "rebuild"]
