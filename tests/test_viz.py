"""Tests for symgraph/viz.py: DOT text, rendering through `dot`, networkx export."""

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest

import symgraph as sg
from symgraph import viz
from symgraph.errors import SymgraphError

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz `dot` not installed "
                               "(apt-get install graphviz)")
SVG_NS = "{http://www.w3.org/2000/svg}"


def small_mlp():
    """A Dense+ReLU -> softmax cross-entropy graph and its gradient wrt (W, b)."""
    x = sg.placeholder(("batch", 3), name="x")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    W = sg.variable(np.ones((3, 4), np.float32), name="W")
    b = sg.variable(np.zeros(4, np.float32), name="b")
    h = sg.relu(x @ W + b)
    loss = sg.mean(sg.sparse_softmax_cross_entropy(h, y))
    gW, gb = sg.grad(loss, [W, b])
    return SimpleNamespace(x=x, y=y, W=W, b=b, h=h, loss=loss, gW=gW, gb=gb)


def dot_node_ids(source: str) -> list[int]:
    """Ids of the node statements (`nID [label=...]`) in DOT text."""
    return [int(m) for m in re.findall(r"^\s*n(\d+) \[label=", source, flags=re.M)]


def dot_edges(source: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"^\s*n(\d+) -> n(\d+)", source, flags=re.M)]


def test_dot_has_every_node_and_edge_once():
    g = small_mlp()
    order = sg.topo_order([g.loss, g.gW])
    source = sg.to_dot([g.loss, g.gW], title="mlp")
    assert sorted(dot_node_ids(source)) == sorted(n.id for n in order)
    want = sorted((i.id, n.id) for n in order for i in n.inputs)
    assert sorted(dot_edges(source)) == want
    assert source.startswith("digraph symgraph {") and source.rstrip().endswith("}")
    assert 'label="mlp"' in source


def test_labels_show_op_shape_dtype_and_leaves_are_styled_apart():
    g = small_mlp()
    source = sg.to_dot(g.loss)
    lines = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s*n(\d+) \[.*$", source, re.M)}
    assert 'label="x\\nfloat32[batch,3]"' in lines[g.x.id]
    assert "shape=ellipse" in lines[g.x.id]
    assert "shape=cylinder" in lines[g.W.id]
    const = next(n for n in sg.topo_order([g.loss]) if n.op == "constant")
    assert "shape=note" in lines[const.id]
    matmul = next(n for n in sg.topo_order([g.loss]) if n.op == "matmul")
    assert "shape=box" in lines[matmul.id] and "matmul\\nfloat32[batch,4]" in lines[matmul.id]
    # the tooltip names this file and the creating line
    assert "test_viz.py" in lines[matmul.id] and "relu(x @ W + b)" in lines[matmul.id]
    # outputs are marked
    assert "peripheries=2" in lines[g.loss.id]


def test_grad_nodes_are_coloured_and_forward_nodes_are_not():
    g = small_mlp()
    source = sg.to_dot([g.loss, g.gW])
    lines = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s*n(\d+) \[.*$", source, re.M)}
    order = sg.topo_order([g.loss, g.gW])
    grads = [n for n in order if "grad" in n.tags]
    assert grads and g.gW in grads
    for node in order:
        coloured = viz._GRAD_FILL in lines[node.id]
        assert coloured == ("grad" in node.tags), node
    # the forward-only graph has no grad node at all
    assert viz._GRAD_FILL not in sg.to_dot(g.loss)


def test_program_kernels_become_clusters():
    g = small_mlp()
    order = sg.topo_order([g.loss])
    add = next(n for n in order if n.op == "add")
    relu_nodes = [n for n in order if n.op in ("gt", "where")]
    fused = [add] + relu_nodes
    program = SimpleNamespace(kernels=[
        SimpleNamespace(name="fused_add_relu", kind="elementwise", nodes=fused),
        SimpleNamespace(name="single", nodes=[g.loss]),
    ])
    source = sg.to_dot(g.loss, program=program)
    assert source.count("subgraph cluster_") == 2  # every kernel is a box, one-node ones too
    assert dot_node_ids(source.split("subgraph cluster_k1 {")[1].split("}")[0]) == [g.loss.id]
    body = source.split("subgraph cluster_k0 {")[1].split("}")[0]
    assert "fused_add_relu elementwise" in body
    assert sorted(dot_node_ids(body)) == sorted(n.id for n in fused)
    assert sorted(dot_node_ids(source)) == sorted(n.id for n in order)  # nobody drawn twice
    nxg = sg.to_networkx(g.loss, program=program)
    assert {n for n, k in nxg.nodes(data="kernel") if k == 0} == {n.id for n in fused}


def test_schedule_levels_become_rows_instead_of_boxes():
    g = small_mlp()
    program = SimpleNamespace(kernels=[SimpleNamespace(nodes=[g.x], level=0),
                                       SimpleNamespace(nodes=[g.W, g.h], level=0),
                                       SimpleNamespace(nodes=[g.b], level=1)])
    source = sg.to_dot(g.loss, program=program, program_view="levels")
    assert f"{{ rank=same; n{g.x.id}; n{g.h.id}; }}" in source  # each kernel's last node
    assert "subgraph cluster_" not in source
    boxed = sg.to_dot(g.loss, program=program)
    assert "rank=same" not in boxed and "level 0" in boxed
    with pytest.raises(SymgraphError, match="program_view"):
        sg.to_dot(g.loss, program=program, program_view="lanes")


@needs_dot
def test_real_program_levels_render_without_dot_warnings():
    lower = pytest.importorskip("symgraph.lower")
    g = small_mlp()
    opt, _ = sg.optimize([g.loss, g.gW, g.gb])
    program = lower.lower([g.x, g.y], opt)
    levels = viz.program_levels(program)
    assert sum(len(level) for level in levels) == len(program.kernels)
    for view in ("kernels", "levels"):
        source = sg.to_dot(opt, program=program, program_view=view)
        done = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True)
        assert done.returncode == 0 and not done.stderr, done.stderr


def test_quotes_and_backslashes_in_names_are_escaped():
    x = sg.placeholder((2,), name='we"ird\\name')
    source = sg.to_dot(sg.exp(x))
    assert 'we\\"ird\\\\name' in source


@needs_dot
def test_control_characters_and_surrogates_in_names_render(tmp_path):
    # a NUL made DOT that dot rejected; a lone surrogate (os.fsdecode) a UnicodeEncodeError
    x = sg.placeholder((2,), name="nul\x00bell\x07")
    y = sg.placeholder((2,), name="file\udcff")
    svg = sg.render(sg.exp(x) + y, str(tmp_path / "odd.svg"))
    assert os.path.getsize(svg) > 0


@needs_dot
def test_svg_renders_well_formed_with_one_svg_node_per_graph_node(tmp_path):
    g = small_mlp()
    outs = [g.loss, g.gW, g.gb]
    path = sg.render(outs, str(tmp_path / "g.svg"), title="grad")
    root = ET.parse(path).getroot()
    assert root.tag == SVG_NS + "svg"
    svg_nodes = [e for e in root.iter(SVG_NS + "g") if e.get("class") == "node"]
    svg_edges = [e for e in root.iter(SVG_NS + "g") if e.get("class") == "edge"]
    order = sg.topo_order(outs)
    assert len(svg_nodes) == len(order)
    assert len(svg_edges) == sum(len(n.inputs) for n in order)
    titles = {e.find(SVG_NS + "title").text for e in svg_nodes}
    assert titles == {f"n{n.id}" for n in order}


@needs_dot
def test_dot_program_accepts_the_text_and_png_pdf_render(tmp_path):
    g = small_mlp()
    source = sg.to_dot([g.loss, g.gW])
    done = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True)
    assert done.returncode == 0 and b"Warning" not in done.stderr, done.stderr
    png = sg.render(g.loss, str(tmp_path / "sub" / "g.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    pdf = sg.render(g.loss, str(tmp_path / "g.pdf"))
    assert open(pdf, "rb").read(5) == b"%PDF-"


def test_missing_dot_raises_with_install_hint(monkeypatch, tmp_path):
    import graphviz

    def no_dot(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", no_dot)
    x = sg.placeholder((2,), name="x")
    with pytest.raises(SymgraphError, match="apt-get install graphviz"):
        sg.render(sg.exp(x), str(tmp_path / "g.svg"))


def test_bad_format_and_bad_outputs_raise():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(SymgraphError, match="unsupported format"):
        sg.render(x, "graph.gif")
    with pytest.raises(SymgraphError, match="not a symgraph node"):
        sg.to_dot([x, 3])


def test_networkx_round_trips_nodes_edges_and_attributes():
    import networkx as nx

    g = small_mlp()
    outs = {"loss": g.loss, "gW": g.gW, "gb": g.gb}
    order = sg.topo_order(list(outs.values()))
    nxg = sg.to_networkx(outs)
    assert isinstance(nxg, nx.DiGraph)
    assert nxg.number_of_nodes() == len(order)
    want = {(i.id, n.id) for n in order for i in n.inputs}
    assert set(nxg.edges) == want
    assert nx.is_directed_acyclic_graph(nxg)
    for node in order:
        data = nxg.nodes[node.id]
        assert (data["op"], data["shape"], data["dtype"]) == (node.op, tuple(node.shape),
                                                              node.dtype)
        assert data["name"] == node.name and data["trace"] == node.trace
        assert ("grad" in data["tags"]) == ("grad" in node.tags)
        for position, inp in enumerate(node.inputs):
            assert position in nxg.edges[inp.id, node.id]["positions"]
    assert nxg.nodes[g.loss.id]["outputs"] == ["loss"]
    # topological order of the export agrees with the graph's
    rank = {n: i for i, n in enumerate(nx.topological_sort(nxg))}
    assert all(rank[i.id] < rank[n.id] for n in order for i in n.inputs)


def test_networkx_keeps_both_slots_of_a_repeated_input():
    x = sg.placeholder((2,), name="x")
    sq = x * x
    nxg = sg.to_networkx(sq)
    assert nxg.edges[x.id, sq.id]["positions"] == [0, 1]


def test_function_objects_draw_their_optimized_graph():
    g = small_mlp()
    fn = sg.function([g.x, g.y], g.loss)
    assert sorted(dot_node_ids(sg.to_dot(fn))) == sorted(n.id for n in sg.topo_order(fn.graph))


def test_lowered_program_fused_kernels_are_clusters():
    lower = pytest.importorskip("symgraph.lower")
    g = small_mlp()
    opt, _ = sg.optimize([g.loss, g.gW, g.gb])
    program = lower.lower([g.x, g.y], opt)
    source = sg.to_dot(opt, program=program)
    fused = [k for k in program.kernels if len(k.nodes) > 1]
    assert fused, "this graph is expected to fuse (relu into the matmul, softmax into reductions)"
    assert source.count("subgraph cluster_") == len(program.kernels)
    for k in program.kernels:
        body = source.split(f"subgraph cluster_k{program.kernels.index(k)} {{")[1].split("}")[0]
        assert f"k{k.id} {k.kind}" in body
        assert set(dot_node_ids(body)) <= {n.id for n in k.nodes}
    # gradient nodes keep their colour after the passes
    assert viz._GRAD_FILL in source


def test_viz_command_writes_three_views_report_and_index(tmp_path):
    from symgraph import viz_cli
    from symgraph.cli import main

    out = tmp_path / "viz"
    assert main(["viz", "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"forward.dot", "gradient.dot", "optimized.dot", "report.txt", "index.html"} <= names
    views = viz_cli.build_views("demo")
    n_forward = len(sg.topo_order(views.forward))
    n_gradient = len(sg.topo_order(views.gradient))
    assert n_gradient > n_forward
    # the command built its own copy of the demo graph: same size, other node ids
    assert len(dot_node_ids((out / "gradient.dot").read_text())) == n_gradient
    report = (out / "report.txt").read_text()
    assert "compile report" in report and "gradient:" in report
    page = (out / "index.html").read_text()
    if HAVE_DOT:
        assert names >= {"forward.svg", "gradient.svg", "optimized.svg"}
        for name in ("forward", "gradient", "optimized"):
            assert f'data="{name}.svg"' in page
            ET.parse(out / f"{name}.svg")
        svg = ET.parse(out / "gradient.svg").getroot()
        assert sum(e.get("class") == "node" for e in svg.iter(SVG_NS + "g")) == n_gradient


def test_viz_command_reads_a_python_file(tmp_path):
    from symgraph import viz_cli

    src = tmp_path / "graph.py"
    src.write_text("import numpy as np\nimport symgraph as sg\n"
                   "x = sg.placeholder((5,), name='x')\n"
                   "w = sg.variable(np.ones(5, np.float32), name='w')\n"
                   "outputs = {'y': sg.sum(sg.tanh(x * w))}\n")
    views = viz_cli.build_views(str(src), level=1)
    assert [n.name for n in sg.topo_order(views.forward) if n.op == "variable"] == ["w"]
    assert any("grad" in n.tags for n in sg.topo_order(views.gradient))
    written = viz_cli.write_views(views, str(tmp_path / "out"), fmt="svg")
    assert os.path.exists(written["index"])
    with pytest.raises(SymgraphError, match="must define"):
        (tmp_path / "empty.py").write_text("a = 1\n")
        viz_cli.build_views(str(tmp_path / "empty.py"))
    (tmp_path / "five.py").write_text("outputs = 5\n")  # was a raw TypeError
    with pytest.raises(SymgraphError, match="must be a node, or a list"):
        viz_cli.build_views(str(tmp_path / "five.py"))


def test_numba_function_draws_its_kernels():
    pytest.importorskip("numba")
    x = sg.placeholder(("batch", 3), name="x")
    y = sg.sum(sg.tanh(x) * 2.0 + 1.0, axis=1)
    fn = sg.function([x], y, backend="numba")
    program = viz.function_program(fn)
    if program is None:
        pytest.skip("this backend keeps no lowered program")
    assert "subgraph cluster_" in sg.to_dot(fn)
    assert "subgraph cluster_" not in sg.to_dot(sg.function([x], y, backend="numpy"))


def test_viz_command_reports_a_missing_file_in_one_line(tmp_path, capsys):
    from symgraph.cli import main

    assert main(["viz", str(tmp_path / "nope.py"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.py" in err and "Traceback" not in err


def test_without_the_graphviz_package_dot_is_called_directly(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` now fails
    x = sg.placeholder((2,), name="x")
    if HAVE_DOT:
        path = sg.render(sg.exp(x), str(tmp_path / "g.svg"))
        assert ET.parse(path).getroot().tag == SVG_NS + "svg"
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.raises(SymgraphError, match="brew install graphviz"):
        sg.render(sg.exp(x), str(tmp_path / "h.svg"))


def test_viz_command_draws_an_nn_model(tmp_path):
    pytest.importorskip("symgraph.nn")
    from symgraph import viz_cli

    src = tmp_path / "model.py"
    src.write_text("from symgraph.nn import Sequential, Dense, Dropout\n"
                   "model = Sequential([Dense(5, input_dim=3, activation='relu'), Dropout(0.5),\n"
                   "                    Dense(2, activation='softmax')])\n"
                   "model.compile(loss='sparse_categorical_crossentropy', optimizer='sgd')\n")
    views = viz_cli.build_views(str(src))
    assert not views.notes, views.notes  # a real loss, so no stand-in note
    weights = [n for n in sg.topo_order(views.forward) if n.op == "variable" and n.trainable]
    assert len(weights) == 4  # two kernels, two biases
    grads = [n for n in sg.topo_order(views.gradient) if "grad" in n.tags]
    assert grads and views.program is not None


def test_large_graphs_get_the_bounded_layout():
    # dot needed over 100 s for a 30-layer MLP's gradient graph without it (0.5 s with it)
    x = sg.placeholder((2,), name="x")
    small, h = sg.exp(x), x
    for _ in range(120):
        h = sg.tanh(h) * 1.5
    assert "nslimit" not in sg.to_dot(small)
    assert "nslimit=1, nslimit1=1, splines=line" in sg.to_dot(h)


@pytest.mark.parametrize("source, says", [
    ("x = (\n", "failed (line 1): SyntaxError"),
    ("import symgraph as sg\nraise RuntimeError('boom')\n", "failed (line 2): RuntimeError: boom"),
    ("import symgraph as sg\nx = sg.placeholder((2,), name='x')\noutputs = [sg.exp(x)]\n"
     "wrt = 7\n", "`wrt`"),
    ("outputs = {}\n", "not empty"),
    ("model = 5\n", "symgraph.nn model"),
])
def test_viz_of_a_user_file_with_a_mistake_is_one_line(tmp_path, capsys, source, says):
    from symgraph.cli import main

    path = tmp_path / "user.py"
    path.write_text(source)
    assert main(["viz", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_pdf_index_embeds_the_pdfs(tmp_path):
    if not HAVE_DOT:
        pytest.skip("graphviz's dot is not installed")
    from symgraph.cli import main

    assert main(["viz", "-o", str(tmp_path / "o"), "--format", "pdf"]) == 0
    index = (tmp_path / "o" / "index.html").read_text()
    assert 'type="application/pdf"' in index and "<img" not in index
