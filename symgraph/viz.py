"""Pictures of graphs: Graphviz DOT text, rendered files (SVG/PNG/PDF) and networkx graphs.

The DOT text is written here, by hand, so exporting needs no third-party package at all; only
rendering needs Graphviz's `dot` program (through the `graphviz` package when it is installed).
Every picture shows one node per graph node: op, name, attrs, dtype and shape in the label,
leaves styled by kind (placeholder, variable, constant), autodiff's nodes (tag "grad") in a
warm colour, and the user's line that created each node as the tooltip. Given a lowered
Program, nodes of one fused kernel are drawn inside one cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterable, Sequence

from symgraph.errors import SymgraphError, describe_trace
from symgraph.files import atomic_write, write_text
from symgraph.graph import Node, topo_order

INSTALL_HINT = ("install Graphviz's `dot` program: `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS) or `conda install graphviz`")

# (shape, style, fillcolor, color) per kind of node; grad overrides the fill and border colours.
_STYLES = {
    "placeholder": ("ellipse", "filled", "#cfe2ff", "#1f4e9e"),
    "variable": ("cylinder", "filled", "#ffe08a", "#8a6d00"),
    "constant": ("note", "filled", "#eeeeee", "#777777"),
    "op": ("box", "rounded,filled", "#ffffff", "#444444"),
}
_GRAD_FILL, _GRAD_COLOR = "#fde0dc", "#c0392b"
_KERNEL_COLORS = ("#2e86c1", "#28b463", "#af7ac5", "#dc7633", "#17a589", "#b7950b")
_MAX_ATTR_CHARS = 28
# Input slots are labelled on edges only where the order matters (a - b, not a + b).
_COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and",
                          "logical_or"})


def _quote(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped; newlines as \\n)."""
    # text dot cannot take is shown escaped: a NUL ends dot's string (a syntax error), a lone
    # surrogate cannot be encoded as UTF-8 (UnicodeEncodeError in render)
    text = str(text).replace("\r", "").encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c >= " " or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n") + '"'


def _is_function(obj) -> bool:
    return hasattr(obj, "graph") and hasattr(obj, "inputs") and not isinstance(obj, Node)


def function_program(fn):
    """The lowered Program a compiled sg.Function runs, when its backend keeps one (Numba)."""
    return getattr(getattr(fn, "_run", None), "program", None) if _is_function(fn) else None


def _as_outputs(outputs) -> tuple[list[Node], list[str]]:
    """Output nodes and their display names from a node, list/tuple, dict or sg.Function."""
    if _is_function(outputs):
        outputs = outputs.graph  # a compiled sg.Function: draw its optimized graph
    if isinstance(outputs, Node):
        return [outputs], ["out"]
    if isinstance(outputs, dict):
        names = [str(k) for k in outputs]
        nodes = list(outputs.values())
    elif isinstance(outputs, (list, tuple)):
        nodes = list(outputs)
        names = [f"out {i}" for i in range(len(nodes))] if len(nodes) > 1 else ["out"]
    else:
        raise SymgraphError("viz: outputs must be a node, a list/tuple/dict of nodes or an "
                            f"sg.Function, got {type(outputs).__name__}")
    for i, node in enumerate(nodes):
        if not isinstance(node, Node):
            raise SymgraphError(f"viz: output {names[i]!r} is {type(node).__name__}, "
                                "not a symgraph node")
    return nodes, names


def _attr_text(node: Node) -> str:
    """Short `key=value` text of the attrs worth showing (constants show their value)."""
    if node.op == "constant":
        value = node.attr.get("value")
        return repr(value) if value is not None else ""
    parts = []
    for key, value in node.attrs:
        text = f"{key}={value!r}"
        parts.append(text if len(text) <= _MAX_ATTR_CHARS else text[:_MAX_ATTR_CHARS - 3] + "...")
    return " ".join(parts)


def node_label(node: Node) -> str:
    """The multi-line label: `op [name]`, attrs, then `dtype[shape]`."""
    head = node.op if node.op not in ("placeholder", "variable") or not node.name else node.name
    if node.name and head != node.name:
        head = f"{head}  {node.name}"
    lines = [head]
    attrs = _attr_text(node)
    if attrs:
        lines.append(attrs)
    lines.append(str(node.type))
    return "\n".join(lines)


def node_kind(node: Node) -> str:
    """'placeholder', 'variable', 'constant' or 'op' (which style a node gets)."""
    return node.op if node.op in ("placeholder", "variable", "constant") else "op"


def is_grad(node: Node) -> bool:
    """True for nodes autodiff built (the "grad" tag)."""
    return "grad" in (node.tags or ())


def program_clusters(program) -> list[tuple[str, list[Node]]]:
    """(label, nodes) per kernel of a lowered Program; [] when there is no program.

    Works on anything with `kernels`, each having `nodes` (and optionally `id`/`name`, `kind`),
    so a Program from symgraph.lower or a stand-in with the same shape both draw. The label
    names the kernel, its kind and, when the program can be scheduled, its schedule level.
    """
    if program is None:
        return []
    kernels = getattr(program, "kernels", None)
    if kernels is None:
        raise SymgraphError(f"viz: program must be a lowered Program with .kernels, got "
                            f"{type(program).__name__}")
    level_of = _kernel_levels(program)
    clusters = []
    for index, kernel in enumerate(kernels):
        nodes = list(getattr(kernel, "nodes", ()) or ())
        kid = getattr(kernel, "id", index)
        name = getattr(kernel, "name", None) or f"k{kid}"
        kind = getattr(kernel, "kind", None)
        label = f"{name} {kind}" if kind else str(name)
        if kid in level_of:
            label += f" | level {level_of[kid]}"
        clusters.append((label, nodes))
    return clusters


def _kernel_levels(program) -> dict:
    """kernel id -> schedule level: `program.levels`, `kernel.level`, or `program.schedule()`."""
    kernels = list(getattr(program, "kernels", ()) or ())
    levels = getattr(program, "levels", None)
    if levels is None and hasattr(program, "schedule") and callable(program.schedule):
        try:
            levels = program.schedule().levels
        except Exception:  # a picture must not fail because the scheduler did
            levels = None
    level_of = {}
    if levels:
        for level, group in enumerate(levels):
            for k in group:
                level_of[k if isinstance(k, int) else getattr(k, "id", id(k))] = level
    for index, k in enumerate(kernels):
        if isinstance(getattr(k, "level", None), int):
            level_of[getattr(k, "id", index)] = k.level
    return level_of


def program_levels(program) -> list[list[Node]]:
    """Per schedule level, the last node of each of its kernels (one row each); [] if unknown."""
    if program is None:
        return []
    level_of = _kernel_levels(program)
    by_level: dict[int, list[Node]] = {}
    for index, k in enumerate(getattr(program, "kernels", ()) or ()):
        level = level_of.get(getattr(k, "id", index))
        nodes = list(getattr(k, "nodes", ()) or ())
        if level is not None and nodes:
            by_level.setdefault(level, []).append(nodes[-1])
    return [by_level[lv] for lv in sorted(by_level)]


def to_dot(outputs, program=None, title: str | None = None, clusters=None, ranks=None,
           program_view: str = "kernels", rankdir: str = "TB", show_attrs: bool = True) -> str:
    """Graphviz DOT text for the graph of `outputs` (node, list, dict or sg.Function).

    `program`: a lowered Program. With program_view="kernels" each kernel is a dashed box
    labelled with its schedule level; with "levels" there are no boxes and the kernels of one
    schedule level end on one row (dot cannot do both: rows across boxes break the boxes).
    `clusters`: explicit [(label, nodes)] or [nodes] groups (overrides the program's).
    `ranks`: explicit lists of nodes drawn on the same row.
    """
    if program_view not in ("kernels", "levels"):
        raise SymgraphError(f"to_dot: program_view must be 'kernels' or 'levels', "
                            f"got {program_view!r}")
    if program is None:
        program = function_program(outputs)  # a Numba-compiled function shows its kernels
    nodes, names = _as_outputs(outputs)
    order = topo_order(nodes)
    by_levels = program_view == "levels"
    groups = (_normalize_groups(clusters) if clusters is not None
              else [] if by_levels else program_clusters(program))
    rank_groups = (list(ranks) if ranks is not None
                   else program_levels(program) if by_levels else [])
    cluster_of = _assign_clusters(groups, order)
    out_names: dict[int, list[str]] = {}
    for node, name in zip(nodes, names):
        out_names.setdefault(node.id, []).append(name)

    lines = ["digraph symgraph {", f"  rankdir={rankdir};",
             '  graph [fontname="Helvetica", fontsize=12, nodesep=0.25, ranksep=0.35];',
             *([LARGE_GRAPH_LAYOUT] if len(order) > LARGE_GRAPH else []),
             '  node [fontname="Helvetica", fontsize=10, margin="0.08,0.04"];',
             '  edge [color="#666666", arrowsize=0.6];']
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t; fontsize=14;")
    statements = {n.id: _node_statement(n, out_names.get(n.id), show_attrs) for n in order}
    for index, (label, members) in enumerate(groups):
        inside = [m for m in members if cluster_of.get(m.id) == index]
        if not inside:
            continue
        colour = _KERNEL_COLORS[index % len(_KERNEL_COLORS)]
        lines.append(f"  subgraph cluster_k{index} {{")
        lines.append(f'    label={_quote(label)}; style="rounded,dashed"; color="{colour}"; '
                     f'fontcolor="{colour}";')
        lines.extend("  " + statements.pop(m.id) for m in inside)
        lines.append("  }")
    lines.extend(statements[n.id] for n in order if n.id in statements)
    for node in order:
        many = len(node.inputs) > 1 and node.op not in _COMMUTATIVE
        for position, inp in enumerate(node.inputs):
            attrs = f' [headlabel="{position}", labelfontsize=7]' if many else ""
            lines.append(f"  n{inp.id} -> n{node.id}{attrs};")
    in_graph = {n.id for n in order}
    for group in rank_groups:
        # rank=same on nodes of different clusters makes dot drop the clusters: skip those
        ids = [n.id for n in group if n.id in in_graph and n.id not in cluster_of]
        if len(ids) > 1:
            lines.append("  { rank=same; " + " ".join(f"n{i};" for i in ids) + " }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _normalize_groups(clusters) -> list[tuple[str, list[Node]]]:
    groups = []
    for index, group in enumerate(clusters):
        if isinstance(group, tuple) and len(group) == 2 and isinstance(group[0], str):
            groups.append((group[0], list(group[1])))
        else:
            groups.append((f"kernel {index}", list(group)))
    return groups


def _assign_clusters(groups, order) -> dict[int, int]:
    """node id -> cluster index; a node listed by two kernels stays in the first (DOT needs one).

    One-node kernels get a box too: every box is a kernel launch, and everything outside the
    boxes (leaves, views, loop invariants) is computed by no kernel of its own.
    """
    in_graph = {n.id for n in order}
    cluster_of: dict[int, int] = {}
    for index, (_, members) in enumerate(groups):
        for m in members:
            if isinstance(m, Node) and m.id in in_graph:
                cluster_of.setdefault(m.id, index)
    return cluster_of


def _node_statement(node: Node, outputs: list[str] | None, show_attrs: bool) -> str:
    shape, style, fill, colour = _STYLES[node_kind(node)]
    if is_grad(node):
        fill, colour = _GRAD_FILL, _GRAD_COLOR
    label = node_label(node) if show_attrs else f"{node.op}\n{node.type}"
    attrs = [f"label={_quote(label)}", f"shape={shape}", f'style="{style}"',
             f'fillcolor="{fill}"', f'color="{colour}"',
             f"tooltip={_quote(_tooltip(node.trace))}"]
    if is_grad(node):
        attrs.append('fontcolor="#7b241c"')
    if outputs:
        attrs += ["peripheries=2", "penwidth=1.6", f"xlabel={_quote(', '.join(outputs))}"]
    return f"  n{node.id} [{', '.join(attrs)}];"


def _tooltip(trace: str | None) -> str:
    """'created at file:line: code', the file relative to the working directory when inside it
    (pictures get committed and shared: an absolute home path helps nobody)."""
    text = describe_trace(trace or "<unknown>")
    filename = (trace or "").rpartition(":")[0]
    if os.path.isabs(filename):
        rel = os.path.relpath(filename)
        if not rel.startswith(".."):
            text = text.replace(filename, rel, 1)
    return text


def render(outputs, path: str, format: str | None = None, program=None,  # noqa: A002
           title: str | None = None, **dot_options) -> str:
    """Render the graph of `outputs` to `path` (.svg, .png or .pdf); returns the path.

    Needs Graphviz's `dot` program; raises SymgraphError saying how to install it otherwise.
    `dot_options` go to `to_dot` (clusters, ranks, rankdir, show_attrs).
    """
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise SymgraphError(f"render: unsupported format {fmt!r} for {path!r}; "
                            "use .svg, .png, .pdf or .dot")
    source = to_dot(outputs, program=program, title=title, **dot_options)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if fmt == "dot":
        write_text(path, source)
        return path
    picture = run_dot(source, fmt)
    atomic_write(path, lambda fh: fh.write(picture))
    return path


# dot's network-simplex ranking and spline routing grow steeply with the long edges a gradient
# graph has (forward values read by the backward pass): a 30-layer MLP's gradient graph (508
# nodes) took over 100 s to lay out, 0.5 s with these limits (15 layers, 268 nodes: 1.24 s ->
# 0.10 s). Straight edges and a bounded search are the price, paid only by large graphs.
LARGE_GRAPH = 200
LARGE_GRAPH_LAYOUT = "  graph [nslimit=1, nslimit1=1, splines=line];"


def run_dot(source: str, fmt: str = "svg") -> bytes:
    """DOT text -> rendered bytes through the `graphviz` package (or `dot` directly)."""
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise SymgraphError(f"render: Graphviz's `dot` was not found; {INSTALL_HINT}") from None
        except graphviz.CalledProcessError as exc:
            err = exc.stderr
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise SymgraphError(f"render: dot failed: {str(err).strip()}") from None
    exe = shutil.which("dot")
    if exe is None:
        raise SymgraphError(f"render: Graphviz's `dot` was not found; {INSTALL_HINT}")
    done = subprocess.run([exe, f"-T{fmt}"], input=source.encode(), capture_output=True)
    if done.returncode != 0:
        raise SymgraphError(f"render: dot failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def to_networkx(outputs, program=None):
    """A networkx.DiGraph: one node per graph node (keyed by node id), edges input -> user.

    Node attributes: op, shape, dtype, name, tags, trace, label, kind, attrs, outputs (names
    of the outputs it is) and kernel (index, with a program). Edge attribute `position` is the
    input slot; `positions` lists every slot when a node uses the same input twice (x * x).
    """
    import networkx as nx

    nodes, names = _as_outputs(outputs)
    order = topo_order(nodes)
    cluster_of = _assign_clusters(program_clusters(program), order)
    out_names: dict[int, list[str]] = {}
    for node, name in zip(nodes, names):
        out_names.setdefault(node.id, []).append(name)
    graph = nx.DiGraph(outputs=[n.id for n in nodes])
    for node in order:
        graph.add_node(node.id, op=node.op, shape=tuple(node.shape), dtype=node.dtype,
                       name=node.name, tags=tuple(sorted(node.tags or ())), trace=node.trace,
                       label=node_label(node), kind=node_kind(node), attrs=_attr_text(node),
                       outputs=out_names.get(node.id, []), kernel=cluster_of.get(node.id))
    for node in order:
        for position, inp in enumerate(node.inputs):
            if graph.has_edge(inp.id, node.id):
                graph.edges[inp.id, node.id]["positions"].append(position)
            else:
                graph.add_edge(inp.id, node.id, position=position, positions=[position])
    return graph


def count_by_kind(outputs: Iterable[Node] | Node) -> dict[str, int]:
    """How many nodes of each kind (and how many grad nodes) a graph has; for reports."""
    nodes, _ = _as_outputs(outputs if isinstance(outputs, Node) else list(outputs))
    counts: dict[str, int] = {"nodes": 0, "grad": 0}
    for node in topo_order(nodes):
        counts["nodes"] += 1
        counts[node_kind(node)] = counts.get(node_kind(node), 0) + 1
        counts["grad"] += is_grad(node)
    return counts


__all__: Sequence[str] = ("to_dot", "render", "to_networkx", "run_dot", "node_label",
                          "program_clusters", "program_levels", "count_by_kind", "INSTALL_HINT")
