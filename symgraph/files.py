"""Files symgraph writes (weights, checkpoints, reports, plots, graph drawings) are written
atomically: to a temporary file beside the target, then renamed over it. A crash or an error
mid-write leaves any previous file intact and never a half-written one."""

from __future__ import annotations

import os
import tempfile

from symgraph.errors import SymgraphError


def atomic_write(path: str, write) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    A crash or error mid-write leaves any previous file intact (os.replace is atomic).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the result private
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, IsADirectoryError):  # os.replace cannot put a file over a folder
            raise SymgraphError(f"cannot write {path}: it is a directory") from None
        raise


def write_text(path: str, text: str) -> None:
    """`text` (UTF-8) into `path`, atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
