"""Where compiled code is cached: `SYMGRAPH_CACHE_DIR`, else `$XDG_CACHE_HOME/symgraph`, else
`~/.cache/symgraph`, one subfolder per backend.

A cache folder that cannot be created or written (the variable names a file, a read-only
place) never stops a compile: symgraph warns once, naming the folder and why, and caches in a
temporary folder for this process (removed at exit), so nothing is reused across processes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import warnings

_fallback: str | None = None
_lock = threading.Lock()


def configured_root() -> str:
    root = os.environ.get("SYMGRAPH_CACHE_DIR")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "symgraph")


def cache_folder(kind: str) -> str:
    """`<cache root>/<kind>`, created and writable (see the module docstring)."""
    root = configured_root()
    path = os.path.join(root, kind)
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"no write permission on {path}")
        return path
    except OSError as exc:
        path = os.path.join(_temporary_root(root, exc), kind)
        os.makedirs(path, exist_ok=True)
        return path


def _temporary_root(root: str, exc: OSError) -> str:
    global _fallback
    with _lock:
        if _fallback is None:
            _fallback = tempfile.mkdtemp(prefix="symgraph-cache-")
            atexit.register(shutil.rmtree, _fallback, True)
            source = ("SYMGRAPH_CACHE_DIR" if os.environ.get("SYMGRAPH_CACHE_DIR")
                      else "the default cache folder")
            warnings.warn(f"symgraph cannot use {source} {root!r} ({type(exc).__name__}: "
                          f"{exc}); compiled code is cached in {_fallback} for this process "
                          "only", RuntimeWarning, stacklevel=3)
        return _fallback
