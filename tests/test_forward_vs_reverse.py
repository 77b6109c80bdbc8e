"""The forward-vs-reverse example runs, agrees, and shows forward mode growing with n."""

import importlib.util
from pathlib import Path


def load_example():
    path = Path(__file__).parent.parent / "examples" / "forward_vs_reverse.py"
    spec = importlib.util.spec_from_file_location("forward_vs_reverse", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reverse_graph_stays_small_while_forward_needs_n_jvps():
    rows = load_example().main(sizes=(2, 16))
    small, big = rows
    assert big["forward_nodes"] > 4 * small["forward_nodes"]  # n jvp graphs
    assert big["reverse_nodes"] < 2 * small["reverse_nodes"]  # one gradient graph
