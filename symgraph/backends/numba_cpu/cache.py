"""Generated modules as real files in a cache directory, so Numba's `cache=True` works.

A module is `<cache dir>/numba/sg_<hash>.py` where the hash is of its source; Numba puts its
compiled code next to it in `__pycache__/`. Exec'd source cannot be cached by Numba
(notes/numba-cuda.md section 5), hence the files.

Robustness: the source file is written atomically (temp file + rename, so concurrent processes
never see half a file); a file whose text does not match its hash (truncated, edited, corrupted)
is removed and rewritten; a Numba cache entry that fails to load is removed with its index and
the function is compiled again.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import sys

from symgraph.cachedir import cache_folder
from symgraph.files import write_text

SOURCE_VERSION = "1"  # bump when codegen changes meaning without changing text


def cache_dir() -> str:
    """The folder of generated modules (symgraph/cachedir.py: where, and what if unusable)."""
    return cache_folder("numba")


def source_hash(source: str) -> str:
    return hashlib.sha256((SOURCE_VERSION + source).encode()).hexdigest()[:24]


def purge_numba_cache(path: str) -> int:
    """Remove Numba's cached index and object files for the module at `path`."""
    folder = os.path.join(os.path.dirname(path), "__pycache__")
    stem = os.path.splitext(os.path.basename(path))[0]
    removed = 0
    for f in glob.glob(os.path.join(folder, f"{stem}.*")):
        try:
            os.unlink(f)
            removed += 1
        except OSError:
            pass
    return removed


def _numba_cache_ok(path: str) -> bool:
    """Every index file of the module unpickles and names existing, non-empty data files.

    (A data file damaged inside fails when Numba loads it; the backend then purges and
    recompiles, see CompiledProgram._compile_eagerly.)"""
    import pickle

    folder = os.path.join(os.path.dirname(path), "__pycache__")
    stem = os.path.splitext(os.path.basename(path))[0]
    for index in glob.glob(os.path.join(folder, f"{stem}.*.nbi")):
        try:
            with open(index, "rb") as f:
                version = pickle.load(f)
                data = f.read()
            if not isinstance(version, str):
                return False
            stamp, overloads = pickle.loads(data)
            for name in overloads.values():
                data_file = os.path.join(folder, name)
                if not os.path.exists(data_file) or os.path.getsize(data_file) == 0:
                    return False
        except Exception:
            return False
    return True


def load_module(source: str):
    """Write (if needed) and import the module for `source`; returns (module, reason)."""
    digest = source_hash(source)
    name = f"sg_{digest}"
    path = os.path.join(cache_dir(), name + ".py")
    reason = "source cache hit"
    try:
        with open(path) as f:
            current = f.read()
    except OSError:
        current = None
        reason = "new source (cache miss)"
    except ValueError:  # undecodable bytes (UnicodeDecodeError): a damaged file
        current = ""
    if current is not None and current != source:
        reason = "corrupt cached source rewritten"
        purge_numba_cache(path)
        current = None
    if current is None:
        try:
            write_text(path, source)
        except OSError as exc:  # a full disk, a folder gone: this process's temporary folder
            from symgraph.cachedir import _temporary_root

            folder = os.path.join(_temporary_root(os.path.dirname(cache_dir()), exc), "numba")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name + ".py")
            write_text(path, source)
    if name in sys.modules:
        return sys.modules[name], "module already imported"
    module = _import(name, path)
    if current is not None and not _numba_cache_ok(path):
        purge_numba_cache(path)
        reason = "corrupt Numba cache removed"
    return module, reason


def reload_module(module):
    """Drop `module`'s Numba cache and import it afresh (a cache entry failed to load)."""
    path = module.__file__
    purge_numba_cache(path)
    sys.modules.pop(module.__name__, None)
    return _import(module.__name__, path)


def _import(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
