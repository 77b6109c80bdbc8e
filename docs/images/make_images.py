"""Regenerate the pictures in docs/images from the code on the doc pages themselves.

    .venv/bin/python docs/images/make_images.py

The tutorial's python blocks run first (compiled with the page as filename, so every node's
tooltip points at a line of docs/tutorial.md); the graphs they build are then rendered. The
`symgraph viz` demo output goes to docs/images/viz_demo/. Needs Graphviz's `dot`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def run_page(relpath: str, until: str) -> dict:
    """Run the page's python blocks in order, up to (and including) the block containing `until`."""
    text = open(os.path.join(ROOT, relpath), encoding="utf-8").read()
    namespace: dict = {"__name__": "__doc__"}
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start(1)) + 1
        exec(compile("\n" * (line - 1) + match.group(1), relpath, "exec"), namespace)
        if until in match.group(1):
            return namespace
    raise SystemExit(f"{relpath}: no block contains {until!r}")


def main() -> None:
    os.chdir(ROOT)  # relative filenames in the traces
    sys.path.insert(0, ROOT)
    import symgraph as sg
    from symgraph.viz_cli import build_views, write_views

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # the page's own render calls write here
        try:
            ns = run_page("docs/tutorial.md", "program = lower(")
        finally:
            os.chdir(cwd)
    loss, gW, gb = ns["loss"], ns["gW"], ns["gb"]
    out = os.path.join(HERE, "tutorial_{}.{}")
    sg.render(loss, out.format("forward", "svg"), title="forward: mean softmax cross-entropy "
              "of relu(x @ W + b)")
    sg.render([loss, gW, gb], out.format("gradient", "svg"),
              title="forward + gradient (red: built by sg.grad)")
    for fmt in ("svg", "png"):
        sg.render(ns["optimized"], out.format("program", fmt), program=ns["program"],
                  title="after the O2 passes and lowering: dashed boxes are fused kernels")
    demo = os.path.join(HERE, "viz_demo")
    shutil.rmtree(demo, ignore_errors=True)
    write_views(build_views("demo"), demo)
    for name in ("forward.dot", "gradient.dot", "optimized.dot"):
        os.remove(os.path.join(demo, name))  # the SVGs are what the docs show
    print("wrote", sorted(os.listdir(HERE)), sorted(os.listdir(demo)))


if __name__ == "__main__":
    main()
