"""Every ```python block in README.md and docs/*.md runs, so the documentation cannot drift.

A file's blocks run in order in one namespace (later blocks use earlier names), in a temporary
working directory. A block opts out only with `# doc-test: skip (reason)` as its first line.
A page must execute at least one block, except pure data pages (benchmarks, results) that have
no python block at all. Each block is compiled with the markdown file as its filename and its
real line numbers, so a failure (and symgraph's own "created at" traces) points at the doc line.
"""

from __future__ import annotations

import re
import shutil
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_PAGES = {"benchmarks.md", "results.md"}  # tables of numbers: no python block required
SKIP_MARKER = re.compile(r"^\s*#\s*doc-test:\s*skip\s*\((.+)\)\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SLOW_BLOCK_SECONDS = 10.0


def doc_files() -> list[Path]:
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    return [f for f in files if f.exists()]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first code line number, code) of each ```python fenced block, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start, i = i + 1, i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        if lang.lower() in ("python", "py", "python3"):
            body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[start:i]]
            blocks.append((start + 1, "\n".join(body)))
        i += 1
    return blocks


def skip_reason(code: str) -> str | None:
    """The reason of a `# doc-test: skip (reason)` first line, or None."""
    first = code.lstrip("\n").split("\n", 1)[0]
    m = SKIP_MARKER.match(first)
    return m.group(1).strip() if m else None


def test_block_parser_finds_blocks_lines_and_skip_markers():
    text = ("# Title\n\n```python\nx = 1\n```\n\ntext\n\n```bash\nls\n```\n"
            "~~~python\n# doc-test: skip (trains for ten minutes)\ny = 2\n~~~\n")
    blocks = python_blocks(text)
    assert [line for line, _ in blocks] == [4, 13]
    assert blocks[0][1] == "x = 1"
    assert skip_reason(blocks[0][1]) is None
    assert skip_reason(blocks[1][1]) == "trains for ten minutes"
    assert skip_reason("# doc-test: skip\ny = 1") is None  # a reason is required


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_code_blocks_run(path: Path, tmp_path, monkeypatch):
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    if not blocks:
        if path.name in DATA_PAGES:
            return
        pytest.fail(f"{path.relative_to(ROOT)} has no ```python block; every page but the "
                    f"data pages ({', '.join(sorted(DATA_PAGES))}) must show running code")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # figures render to files, never to a window
    namespace: dict = {"__name__": "__doc_test__"}
    executed, timings = 0, []
    for line, code in blocks:
        if skip_reason(code) is not None:
            continue
        if re.match(r"^\s*#\s*doc-test", code.lstrip("\n").split("\n", 1)[0]):
            pytest.fail(f"{path.name}:{line}: malformed marker; write "
                        "`# doc-test: skip (reason)` on the block's first line")
        # pad so the compiled code's line numbers are the markdown file's
        source = "\n" * (line - 1) + code
        start = time.perf_counter()
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except Exception as exc:
            if "`dot` was not found" in str(exc) and shutil.which("dot") is None:
                pytest.skip(f"{path.name}:{line} renders with Graphviz, which is not installed")
            raise AssertionError(f"{path.relative_to(ROOT)}: the python block at line {line} "
                                 f"failed: {type(exc).__name__}: {exc}") from exc
        timings.append((time.perf_counter() - start, line))
        executed += 1
    if executed == 0:
        pytest.fail(f"{path.relative_to(ROOT)}: every python block is skipped; at least one "
                    "must run")
    slow = [(round(t, 1), line) for t, line in timings if t > SLOW_BLOCK_SECONDS]
    if slow:
        warnings.warn(f"{path.name}: slow doc blocks (seconds, line): {slow}; use smaller "
                      "examples (all docs together must run in under 60 s)", stacklevel=1)
    for name in ("plt", "matplotlib"):
        if name in namespace:  # close figures a page opened so they do not pile up
            import matplotlib.pyplot as plt

            plt.close("all")
            break


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_block_parser_ignores_fences_inside_other_blocks():
    text = "````markdown\n```python\nboom()\n```\n````\n"
    assert python_blocks(text) == []


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(path: Path):
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1", "", path.read_text(encoding="utf-8"),
                   flags=re.M | re.S)  # links inside code are code, not links
    prose = re.sub(r"`[^`\n]*`", "", prose)
    missing = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # URLs and in-page anchors
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"
