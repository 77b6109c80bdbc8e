"""symgraph: a symbolic computational-graph compiler for training neural networks.

    import symgraph as sg
    x = sg.placeholder(("batch", 784), name="x")
    W = sg.variable(np.zeros((784, 10), np.float32), name="W")
    loss = sg.mean(sg.sparse_softmax_cross_entropy(x @ W, y))
    step = sg.function([x, y], loss, updates={W: W - 0.1 * sg.grad(loss, W)})
"""

from symgraph import random  # noqa: F401
from symgraph.composites import (
    batch_moments,
    batch_norm,
    binary_crossentropy,
    categorical_crossentropy,
    dropout,
    elu,
    hard_sigmoid,
    leaky_relu,
    log_softmax,
    logsumexp,
    mae,
    maxout,
    mean_absolute_error,
    mean_squared_error,
    mse,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    softplus,
    sparse_categorical_crossentropy,
    sparse_softmax_cross_entropy,
)
from symgraph.convolution import avg_pool2d, conv2d, max_pool2d
from symgraph.errors import SymgraphError, SymgraphTypeError
from symgraph.graph import Node, TensorType, Variable, dump, topo_order
from symgraph.passes.pipeline import optimize
from symgraph.passes.stabilize import grad, jvp
from symgraph.runtime import Function, function
from symgraph.tensor import (
    abs,
    add,
    argmax,
    as_node,
    broadcast_to,
    cast,
    clip,
    concatenate,
    constant,
    cos,
    divide,
    dot,
    equal,
    exp,
    expand_dims,
    expm1,
    greater,
    greater_equal,
    less,
    less_equal,
    log,
    log1p,
    logical_and,
    logical_or,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    not_equal,
    one_hot,
    placeholder,
    power,
    reciprocal,
    reshape,
    sigmoid,
    sign,
    sin,
    size_of,
    sqrt,
    square,
    stop_gradient,
    subtract,
    sum,
    take,
    tanh,
    transpose,
    var,
    variable,
    where,
)

__version__ = "0.1.0"

_LAZY = {"to_dot": "symgraph.viz", "render": "symgraph.viz", "to_networkx": "symgraph.viz",
         "nn": "symgraph.nn", "data": "symgraph.data"}


def __getattr__(name):  # viz, nn and data load on first use (they pull in heavier imports)
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'symgraph' has no attribute {name!r}")


__all__ = [name for name in dir() if not name.startswith("_")] + list(_LAZY)
