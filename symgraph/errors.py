"""SymgraphError and the helper that finds the user's own source line for a node."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class SymgraphError(ValueError):
    """Every user mistake: names the node or placeholder, the shapes/dtypes and the user's line."""


class SymgraphTypeError(SymgraphError, TypeError):
    """A user mistake about types (dtype, argument kind)."""


def user_frame() -> str:
    """The first stack frame outside the symgraph package, as 'file:line (code)'."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        inside = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
        if not inside and not filename.startswith("<frozen"):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def source_line(trace: str) -> str:
    """The text of the line a trace 'file:line' points at, or '' when unreadable."""
    filename, _, lineno = trace.rpartition(":")
    try:
        import linecache

        return linecache.getline(filename, int(lineno)).strip()
    except (ValueError, OSError):
        return ""


def describe_trace(trace: str) -> str:
    """'created at file:line: code' for error messages."""
    code = source_line(trace)
    return f"created at {trace}" + (f": {code}" if code else "")
