"""Graph IR: types, immutability, topological order, text dump."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.graph import TensorType, topo_order


def test_tensor_type_prints_dtype_and_symbolic_shape():
    assert str(TensorType("float32", ("batch", 10))) == "float32[batch,10]"


def test_nodes_are_immutable():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(AttributeError):
        x.op = "exp"


def test_ops_compare_by_value():
    x = sg.placeholder((2, 3), name="x")
    a, b = sg.sum(x, axis=1), sg.sum(x, axis=1)
    assert a is not b
    assert (a.op, a.attrs, a.inputs) == (b.op, b.attrs, b.inputs)
    assert sg.constant(2.0).attrs == sg.constant(2.0).attrs


def test_topo_order_handles_deep_graphs_without_recursion():
    x = sg.placeholder((3,), name="x")
    y = x
    for _ in range(20_000):
        y = y + 1.0
    order = topo_order([y])
    assert len(order) == 40_001
    assert order[0] is x or order[0].op in ("placeholder", "constant")


def test_dump_has_one_line_per_node_with_op_type_and_inputs():
    x = sg.placeholder(("batch", 4), name="x")
    W = sg.variable(np.zeros((4, 2), np.float32), name="W")
    text = sg.dump(sg.relu(x @ W))
    assert "matmul(%" in text and "float32[batch,2]" in text and "# W" in text
    assert text.splitlines()[-1].startswith("return %")


def test_variable_value_is_a_copy_and_checked():
    W = sg.variable(np.ones((2, 2), np.float32), name="W")
    v = W.value
    v[0, 0] = 5
    assert W.value[0, 0] == 1
    with pytest.raises(sg.SymgraphError, match="shape"):
        W.value = np.ones(3)


def test_bool_of_a_node_is_an_error():
    x = sg.placeholder((2,), name="x")
    with pytest.raises(sg.SymgraphError, match="truth value"):
        if x > 0:
            pass
