"""`symgraph viz`: forward graph, gradient graph and optimized program of a model, side by side.

    symgraph viz                      # the built-in demo MLP
    symgraph viz my_model.py -o out/  # a file defining `outputs` (and `loss`/`wrt`) or `model`

writes, into the output folder, forward / gradient / optimized pictures (SVG by default, plus
the DOT text of each), report.txt (pass statistics, the lowered program, its schedule) and
index.html showing the pictures side by side. Without Graphviz's `dot`, the DOT files and the
report are still written and the command says how to install Graphviz.
"""

from __future__ import annotations

import argparse
import html
import os
import runpy
import traceback
from dataclasses import dataclass, field

import numpy as np

import symgraph as sg
from symgraph import envvars
from symgraph.errors import SymgraphError
from symgraph.files import write_text
from symgraph.graph import Node, Variable, topo_order
from symgraph.viz import INSTALL_HINT, count_by_kind, render, to_dot


@dataclass
class Views:
    """What one `symgraph viz` run draws: three graphs and the texts that explain them."""

    title: str
    inputs: list
    forward: list
    gradient: list
    optimized: list
    program: object = None
    report_text: str = ""
    notes: list = field(default_factory=list)


def demo_mlp(batch_dims: str = "batch") -> tuple[list[Node], Node, list[Variable]]:
    """A tiny Dense(16, relu) -> Dropout(0.5) -> Dense(4) classifier with softmax cross-entropy."""
    rng = np.random.default_rng(0)
    x = sg.placeholder((batch_dims, 8), name="x")
    y = sg.placeholder((batch_dims,), dtype="int32", name="y")
    W1 = sg.variable(rng.normal(0, 0.3, (8, 16)).astype(np.float32), name="W1")
    b1 = sg.variable(np.zeros(16, np.float32), name="b1")
    W2 = sg.variable(rng.normal(0, 0.3, (16, 4)).astype(np.float32), name="W2")
    b2 = sg.variable(np.zeros(4, np.float32), name="b2")
    h = sg.dropout(sg.relu(x @ W1 + b1), 0.5, seed=1)
    loss = sg.mean(sg.sparse_softmax_cross_entropy(h @ W2 + b2, y))
    return [loss], loss, [W1, b1, W2, b2]


def _model_graph(model) -> tuple[list[Node], Node | None, list[Variable], list[str]]:
    """Forward output, loss (when the model is compiled with one) and weights of an nn model."""
    notes = []
    if not getattr(model, "built", True) or getattr(model, "input_shape", None) is None:
        raise SymgraphError("viz: the model has no input shape yet; give its first layer "
                            "input_shape=/input_dim= or build it before drawing")
    x = sg.placeholder(("batch",) + tuple(model.input_shape), name="x")
    out = model(x, training=True)
    weights = list(getattr(model, "trainable_weights", []))
    loss_obj = getattr(model, "loss", None)
    loss = None
    if loss_obj is not None and hasattr(loss_obj, "per_sample"):
        sparse = "sparse" in str(getattr(loss_obj, "name", "")).lower()
        y = (sg.placeholder(("batch",), dtype="int32", name="y") if sparse
             else sg.placeholder(tuple(out.shape), name="y"))
        try:
            loss = sg.mean(loss_obj.per_sample(y, out))
        except Exception as exc:  # the picture of the forward pass is still worth drawing
            notes.append(f"loss {getattr(loss_obj, 'name', loss_obj)!r} could not be built: {exc}")
    if loss is None:
        loss = sg.mean(sg.square(out))
        notes.append("the model has no loss (not compiled): the gradient graph is of "
                     "mean(output**2), a stand-in")
    return [out, loss], loss, weights, notes


def load_source(source: str) -> tuple[str, list[Node], Node | None, list, list[str]]:
    """(title, outputs, loss, wrt, notes) for 'demo' or a Python file.

    A file defines `outputs` (a node, list or dict of nodes), optionally `loss` (a float scalar
    to differentiate; default: the first scalar float output) and `wrt` (default: every
    trainable variable the loss depends on); or it defines `model`, a built symgraph.nn model.
    """
    if source == "demo":
        outputs, loss, wrt = demo_mlp()
        return "demo MLP (Dense 16 relu, Dropout 0.5, Dense 4, softmax cross-entropy)", \
            outputs, loss, wrt, []
    if not os.path.isfile(source):
        raise SymgraphError(f"viz: {source!r} is neither 'demo' nor a Python file")
    try:
        scope = runpy.run_path(source, run_name="__symgraph_viz__")
    except SymgraphError:
        raise
    except Exception as exc:  # the user's file: one line naming it, as for any bad input
        if envvars.flag("SYMGRAPH_DEBUG"):
            raise
        where = ""
        if isinstance(exc, SyntaxError):
            where = f" (line {exc.lineno})"
        else:
            frames = [f for f in traceback.extract_tb(exc.__traceback__)
                      if os.path.abspath(f.filename) == os.path.abspath(source)]
            where = f" (line {frames[-1].lineno})" if frames else ""
        raise SymgraphError(f"viz: running {source} failed{where}: "
                            f"{type(exc).__name__}: {exc}") from None
    title = os.path.basename(source)
    if "outputs" not in scope and "model" in scope:
        if not hasattr(scope["model"], "layers"):
            raise SymgraphError(f"viz: `model` in {source} must be a symgraph.nn model; got "
                                f"{type(scope['model']).__name__}")
        outputs, loss, wrt, notes = _model_graph(scope["model"])
        return title, outputs, loss, wrt, notes
    if "outputs" not in scope:
        raise SymgraphError(f"viz: {source} must define `outputs` (nodes to draw) or `model`")
    outs = scope["outputs"]
    outputs = (list(outs.values()) if isinstance(outs, dict)
               else [outs] if isinstance(outs, Node)
               else list(outs) if isinstance(outs, (list, tuple)) else None)
    if not outputs or not all(isinstance(o, Node) for o in outputs):
        raise SymgraphError(f"viz: `outputs` in {source} must be a node, or a list, tuple or "
                            f"dict of nodes (not empty); got {type(outs).__name__} "
                            f"{outs!r:.40}")
    loss = scope.get("loss")
    if loss is None:
        loss = next((o for o in outputs if o.ndim == 0 and o.dtype.startswith("float")), None)
    wrt = scope.get("wrt")
    if wrt is not None and (not isinstance(wrt, (list, tuple))
                            or not all(isinstance(w, Node) for w in wrt)):
        raise SymgraphError(f"viz: `wrt` in {source} must be a list or tuple of nodes; got "
                            f"{type(wrt).__name__}")
    if wrt is None and loss is not None:
        wrt = [n for n in topo_order([loss]) if isinstance(n, Variable) and n.trainable]
    notes = [] if loss is not None else ["no scalar float output to differentiate: the "
                                         "gradient graph equals the forward graph"]
    return title, outputs, loss, list(wrt or []), notes


def build_views(source: str = "demo", level: int = 2) -> Views:
    """Forward, gradient and optimized graphs (plus lowered program and report) of `source`."""
    title, outputs, loss, wrt, notes = load_source(source)
    grads = []
    if loss is not None and wrt:
        grads = sg.grad(loss, list(wrt))
    gradient = list(outputs) + list(grads)
    optimized, report = sg.optimize(gradient, level=level)
    inputs = [n for n in topo_order(gradient) if n.op == "placeholder"]
    program, texts = None, [str(report)]
    try:
        from symgraph.lower import lower

        program = lower(inputs, optimized)
        texts.append("lowered program (buffers, then kernels)\n" + program.dump())
        texts.append(str(program.schedule()))
    except ImportError:
        notes.append("symgraph.lower is not available: no kernel clusters")
    except Exception as exc:  # show the graphs even when lowering this graph fails
        notes.append(f"lowering failed: {type(exc).__name__}: {exc}")
    for name, graph in (("forward", outputs), ("gradient", gradient), ("optimized", optimized)):
        counts = count_by_kind(graph)
        texts.append(f"{name}: {counts['nodes']} nodes ({counts['grad']} from autodiff)")
    return Views(title, inputs, list(outputs), gradient, list(optimized), program,
                 "\n\n".join(texts), notes)


def write_views(views: Views, out_dir: str, fmt: str = "svg") -> dict:
    """Write the pictures, DOT files, report.txt and index.html; returns {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    panels = (("forward", views.forward, None, "forward graph"),
              ("gradient", views.gradient, None, "forward + gradient graph (autodiff in red)"),
              ("optimized", views.optimized, views.program,
               "after the passes; dashed boxes are fused kernels"))
    written, missing_dot = {}, None
    for name, graph, program, caption in panels:
        dot_path = os.path.join(out_dir, f"{name}.dot")
        write_text(dot_path, to_dot(graph, program=program, title=caption))
        written[f"{name}.dot"] = dot_path
        if missing_dot is None:
            try:
                written[name] = render(graph, os.path.join(out_dir, f"{name}.{fmt}"),
                                       program=program, title=caption)
            except SymgraphError as exc:
                if "not found" not in str(exc):
                    raise
                missing_dot = str(exc)
    if missing_dot:
        views.notes.append(f"no pictures: {missing_dot}")
    report_path = os.path.join(out_dir, "report.txt")
    write_text(report_path, views.report_text + "\n")
    written["report"] = report_path
    written["index"] = _write_index(views, out_dir, fmt, panels, bool(missing_dot))
    return written


def _write_index(views: Views, out_dir: str, fmt: str, panels, no_pictures: bool) -> str:
    cells = []
    for name, _, _, caption in panels:
        if no_pictures:
            body = f'<p><a href="{name}.dot">{name}.dot</a></p>'
        elif fmt == "svg":  # <object> keeps the SVG tooltips (the user's line per node)
            body = f'<object data="{name}.svg" type="image/svg+xml"></object>'
        elif fmt == "pdf":  # an <img> cannot show a PDF: embed it, with a link as fallback
            body = (f'<object data="{name}.pdf" type="application/pdf" height="800">'
                    f'<a href="{name}.pdf">{name}.pdf</a></object>')
        else:
            body = f'<img src="{name}.{fmt}" alt="{name}">'
        cells.append(f'<section><h2>{html.escape(caption)}</h2>{body}</section>')
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in views.notes)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>symgraph viz: {html.escape(views.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
main {{ display: flex; gap: 1em; align-items: flex-start; overflow-x: auto; }}
section {{ flex: 1 1 0; min-width: 28em; border: 1px solid #ddd; padding: .5em; }}
section object, section img {{ width: 100%; }}
h2 {{ font-size: 1em; }} pre {{ background: #f6f6f6; padding: .5em; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(views.title)}</h1>
<ul>{notes}</ul>
<main>{''.join(cells)}</main>
<h2>Compile report</h2>
<pre>{html.escape(views.report_text)}</pre>
</body></html>
"""
    path = os.path.join(out_dir, "index.html")
    write_text(path, page)
    return path


def run_viz(args: argparse.Namespace) -> int:
    """The `symgraph viz` command (a user mistake prints one line and exits with status 2)."""
    import sys

    try:
        views = build_views(args.source, level=args.level)
        written = write_views(views, args.out, fmt=args.format)
    except SymgraphError as exc:
        print(f"symgraph viz: error: {exc}", file=sys.stderr)
        return 2
    for note in views.notes:
        print(f"note: {note}")
    if "forward" not in written:
        print(f"note: only DOT files were written; {INSTALL_HINT}")
    print(f"wrote {len(written)} files to {args.out}; open {written['index']}")
    return 0


def add_viz_parser(subparsers) -> argparse.ArgumentParser:
    """Register `symgraph viz` on the `symgraph` command's subparsers."""
    parser = subparsers.add_parser(
        "viz", help="render a model's forward, gradient and optimized graphs",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default="demo",
                        help="'demo' (default) or a Python file defining `outputs` "
                             "(optionally `loss`, `wrt`) or a built nn `model`")
    parser.add_argument("-o", "--out", default="symgraph-viz", help="output folder")
    parser.add_argument("--level", type=int, default=2, choices=(0, 1, 2, 3),
                        help="optimization level O0..O3 for the optimized view")
    parser.add_argument("--format", default="svg", choices=("svg", "png", "pdf"),
                        help="picture format")
    parser.set_defaults(run=run_viz)
    return parser
