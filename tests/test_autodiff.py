"""grad and jvp of every primitive and composite against finite differences (float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgraph as sg
from symgraph.ops import OPS
from symgraph.testing import verify_grad

rng = np.random.default_rng(42)


def rand(*shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape)


def pos(*shape):
    return rng.uniform(0.5, 2.0, size=shape)


# op name -> (function of symbolic inputs, input arrays). Broadcasting cases included.
PRIMITIVE_CASES = {
    "neg": (lambda x: -x, [rand(3, 2)]),
    "exp": (sg.exp, [rand(3, 2)]),
    "log": (sg.log, [pos(3, 2)]),
    "sqrt": (sg.sqrt, [pos(4)]),
    "tanh": (sg.tanh, [rand(2, 3)]),
    "sigmoid": (sg.sigmoid, [rand(2, 3, low=-3, high=3)]),
    "abs": (sg.abs, [rand(5) + np.sign(rand(5)) * 0.1]),
    "log1p": (sg.log1p, [pos(3)]),
    "expm1": (sg.expm1, [rand(3)]),
    "reciprocal": (sg.reciprocal, [pos(2, 2)]),
    "sin": (sg.sin, [rand(3, 2) * 3.0]),
    "cos": (sg.cos, [rand(2, 3) * 3.0]),
    "add": (lambda a, b: a + b, [rand(3, 4), rand(4)]),
    "sub": (lambda a, b: a - b, [rand(3, 1), rand(1, 4)]),
    "mul": (lambda a, b: a * b, [rand(2, 3, 4), rand(3, 1)]),
    "div": (lambda a, b: a / b, [rand(3, 4), pos(4)]),
    "pow": (lambda a, b: a ** b, [pos(3, 2), rand(2)]),
    "maximum": (sg.maximum, [rand(3, 4), rand(4)]),
    "minimum": (sg.minimum, [rand(3, 4), rand(3, 1)]),
    "where": (lambda a, b: sg.where(a > 0, a * 2.0, b), [rand(3, 4), rand(4)]),
    "cast": (lambda a: sg.cast(sg.cast(a, "float32"), "float64") ** 2.0, [rand(3)],
             {"eps": 1e-2, "rtol": 1e-3, "atol": 1e-4}),  # float32 rounding needs a wide step
    "sum": (lambda a: sg.sum(a, axis=1), [rand(3, 4)]),
    "max": (lambda a: sg.max(a, axis=(0, 2), keepdims=True), [rand(3, 4, 2)]),
    "matmul": (lambda a, b: a @ b, [rand(2, 3, 4), rand(4, 5)]),
    "reshape": (lambda a: sg.reshape(a, (4, 3)) * rand(4, 3), [rand(3, 4)]),
    "transpose": (lambda a: sg.transpose(a, (2, 0, 1)), [rand(2, 3, 4)]),
    "broadcast_to": (lambda a: sg.broadcast_to(a, (3, 4)), [rand(1, 4)]),
    "slice": (lambda a: sg.concatenate([a[1:, ::2], a[:0:-1, ::-2]], axis=0), [rand(3, 5)]),
    "unslice": (lambda a: sg.grad(sg.sum(a[:, 1:3] ** 3.0) + sg.sum(a[::-1, 3:0:-2] ** 3.0), a),
                [rand(3, 5)]),
    "concatenate": (lambda a, b: sg.concatenate([a, b], axis=1), [rand(2, 3), rand(2, 2)]),
    "take": (lambda a: sg.take(a, sg.constant(np.array([2, 0, 2], np.int64))), [rand(3, 4)]),
    "scatter_add": (lambda a: sg.grad(sg.sum(sg.take(a, sg.constant(np.array([1, 1]))) ** 2.0),
                                      a), [rand(3, 2)]),
}

# Ops whose gradient is zero or that take no float input: checked separately below.
NOT_FLOAT_DIFFERENTIABLE = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or",
                            "sign", "one_hot", "random_uniform", "argmax", "dim_size",
                            "placeholder", "variable", "constant",
                            "stop_gradient"}  # deliberately not the true derivative: tested below


def test_every_differentiable_primitive_has_a_gradient_case():
    missing = set(OPS) - set(PRIMITIVE_CASES) - NOT_FLOAT_DIFFERENTIABLE
    assert not missing, f"primitives without a gradient test: {sorted(missing)}"


@pytest.mark.parametrize("op", sorted(PRIMITIVE_CASES))
def test_primitive_gradient_matches_finite_differences(op):
    fn, arrays, *options = PRIMITIVE_CASES[op]
    verify_grad(fn, arrays, **(options[0] if options else {}))


COMPOSITE_CASES = {
    "relu": (sg.relu, [rand(3, 4) + 0.05]),
    "leaky_relu": (lambda x: sg.leaky_relu(x, 0.3), [rand(3, 4)]),
    "prelu": (lambda x, a: sg.prelu(x, a), [rand(3, 4), rand(4)]),
    "elu": (sg.elu, [rand(3, 4)]),
    "selu": (sg.selu, [rand(3, 4)]),
    "relu6": (sg.relu6, [rand(3, 4) * 8]),
    "softplus": (sg.softplus, [rand(3, 4) * 5]),
    "maxout": (lambda x: sg.maxout(x, 2), [rand(3, 6)]),
    "softmax": (sg.softmax, [rand(3, 4)]),
    "log_softmax": (lambda x: sg.log_softmax(x, axis=0), [rand(3, 4)]),
    "logsumexp": (lambda x: sg.logsumexp(x, axis=1), [rand(3, 4)]),
    "softmax_ce": (lambda x: sg.softmax_cross_entropy(x, sg.constant(np.eye(4)[[0, 2, 3]])),
                   [rand(3, 4)]),
    "sparse_ce": (lambda x: sg.sparse_softmax_cross_entropy(x, sg.constant(
        np.array([1, 0, 3], np.int32))), [rand(3, 4)]),
    "sigmoid_ce": (lambda x: sg.sigmoid_cross_entropy(x, sg.constant(rng.uniform(0, 1, (3, 2)))),
                   [rand(3, 2) * 4]),
    "binary_ce": (lambda p: sg.binary_crossentropy(sg.constant(np.array([[1.0, 0.0]])), p),
                  [rng.uniform(0.2, 0.8, (1, 2))]),
    "categorical_ce": (lambda p: sg.categorical_crossentropy(sg.constant(np.eye(3)[[1]]), p),
                       [rng.uniform(0.2, 0.8, (1, 3))]),
    "mse": (lambda p: sg.mse(sg.constant(rand(2, 3)), p), [rand(2, 3)]),
    "mean_var": (lambda x: sg.var(x, axis=0) + sg.mean(x), [rand(4, 3)]),
    "batch_norm": (lambda x, g, b: sg.batch_norm(x, g, b), [rand(5, 3), pos(3), rand(3)]),
    "dropout": (lambda x: sg.dropout(x, 0.5, seed=3, step=sg.constant(np.int64(7))),
                [rand(4, 5)]),
    "min": (lambda x: sg.min(x, axis=1), [rand(3, 4)]),
    "getitem": (lambda x: x[1, None, ::2], [rand(3, 5)]),
    "matmul_vec": (lambda a, b: a @ b, [rand(4), rand(4, 3)]),
}


@pytest.mark.parametrize("name", sorted(COMPOSITE_CASES))
def test_composite_gradient_matches_finite_differences(name):
    fn, arrays = COMPOSITE_CASES[name]
    verify_grad(fn, arrays)


def test_hessian_vector_product_matches_finite_differences_of_the_gradient():
    x = sg.placeholder((4,), "float64", name="x")
    v = sg.placeholder((4,), "float64", name="v")
    W = sg.constant(rand(4, 4))
    f = sg.sum(sg.tanh(W @ x) ** 2.0) + sg.sum(sg.exp(x * 0.5))
    g = sg.grad(f, x)
    hvp = sg.grad(sg.sum(g * v), x)
    hvp_fn = sg.function([x, v], hvp)
    g_fn = sg.function([x], g)
    x0, v0, eps = rand(4), rand(4), 1e-6
    numeric = (g_fn(x0 + eps * v0) - g_fn(x0 - eps * v0)) / (2 * eps)
    np.testing.assert_allclose(hvp_fn(x0, v0), numeric, rtol=1e-5, atol=1e-8)


def test_grad_of_grad_of_mlp_loss_is_checked_by_verify_grad():
    def second(x):
        w = sg.constant(rand(3, 2))
        inner = sg.sum(sg.tanh(x @ w) ** 2.0)
        return sg.grad(inner, x)
    verify_grad(second, [rand(2, 3)])


def test_fan_out_contributions_are_summed():
    x = sg.placeholder((), "float64")
    f = x * x + sg.exp(x) * x
    g = sg.function([x], sg.grad(f, x))
    x0 = 0.7
    assert np.isclose(g(x0), 2 * x0 + np.exp(x0) * x0 + np.exp(x0))


def test_disconnected_input_gives_zeros_or_error_on_request():
    x = sg.placeholder((3,), "float64", name="x")
    y = sg.placeholder((2,), "float64", name="unused")
    cost = sg.sum(x * 2.0)
    gy = sg.grad(cost, y)
    np.testing.assert_array_equal(sg.function([y], gy)(np.ones(2)), np.zeros(2))
    with pytest.raises(sg.SymgraphError, match="unused"):
        sg.grad(cost, y, disconnected="raise")


def test_stop_gradient_blocks_the_gradient():
    x = sg.placeholder((3,), "float64")
    g = sg.grad(sg.sum(sg.stop_gradient(x) * x), x)
    x0 = rand(3)
    np.testing.assert_allclose(sg.function([x], g)(x0), x0)


def test_non_differentiable_op_in_the_path_is_named():
    x = sg.placeholder((3, 4), "float64", name="x")
    index = sg.argmax(x, axis=1)
    cost = sg.sum(sg.cast(index, "float64") * 1.0)
    with pytest.raises(sg.SymgraphError, match="argmax node .* not differentiable") as info:
        sg.grad(cost, x)
    assert "index = sg.argmax(x, axis=1)" in str(info.value)  # the user's own line
    weight = sg.stop_gradient(sg.cast(index, "float64"))  # as the message advises
    quiet = sg.sum(sg.reshape(weight, (3, 1)) * x)
    np.testing.assert_array_equal(sg.function([x], sg.grad(quiet, x))(np.eye(3, 4)),
                                  np.zeros((3, 4)) + [[0], [1], [2]])


def test_update_from_another_variable_never_shares_its_array():
    a = sg.variable(np.zeros(2, np.float32), name="a")
    b = sg.variable(np.ones(2, np.float32), name="b")
    sg.function([], [], updates={a: b * 1.0})()
    assert a._value is not b._value


def test_zero_gradient_ops_give_zero():
    x = sg.placeholder((3,), "float64")
    cost = sg.sum(sg.cast(x > 0, "float64") + sg.sign(x))
    np.testing.assert_array_equal(sg.function([x], sg.grad(cost, x))(rand(3)), np.zeros(3))


def test_grad_rejects_non_scalar_cost_with_its_line():
    x = sg.placeholder((3,), "float64", name="x")
    with pytest.raises(sg.SymgraphError, match="float scalar") as info:
        sg.grad(x * 2.0, x)
    assert "test_autodiff.py" in str(info.value)


def test_gradient_nodes_are_tagged():
    x = sg.placeholder((3,), "float64")
    g = sg.grad(sg.sum(sg.exp(x)), x)
    assert "grad" in g.tags


def test_jvp_of_matmul_chain_equals_directional_derivative():
    x = sg.placeholder((2, 3), "float64")
    W = sg.variable(rand(3, 4))
    V = sg.placeholder((3, 4), "float64")
    h = sg.tanh(x @ W)
    jv = sg.jvp(h, [W], [V])
    f = sg.function([x, V], jv)
    x0, v0, eps = rand(2, 3), rand(3, 4), 1e-6
    w0 = W.value
    num = (np.tanh(x0 @ (w0 + eps * v0)) - np.tanh(x0 @ (w0 - eps * v0))) / (2 * eps)
    np.testing.assert_allclose(f(x0, v0), num, rtol=1e-6, atol=1e-9)


# --- hypothesis: random expression graphs, gradient-checked --------------------------------

UNARY = [sg.tanh, sg.sigmoid, lambda t: t * t, lambda t: sg.exp(t * 0.3), sg.softplus,
         lambda t: -t, lambda t: sg.log1p(t * t)]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b,
          lambda a, b: a / (1.5 + b * b), lambda a, b: sg.maximum(a, b * 0.5)]
REDUCE = [lambda t: sg.sum(t, axis=0, keepdims=True), lambda t: sg.mean(t, axis=1,
                                                                        keepdims=True),
          lambda t: t]


@st.composite
def expression_programs(draw):
    n_steps = draw(st.integers(1, 6))
    return [(draw(st.sampled_from(["u", "b", "r"])), draw(st.integers(0, 6)),
             draw(st.integers(0, 10))) for _ in range(n_steps)]


def _build(program, a, b):
    pool = [a, b]
    for kind, fi, pick in program:
        x = pool[pick % len(pool)]
        if kind == "u":
            pool.append(UNARY[fi % len(UNARY)](x))
        elif kind == "b":
            pool.append(BINARY[fi % len(BINARY)](x, pool[(pick + 1) % len(pool)]))
        else:
            pool.append(REDUCE[fi % len(REDUCE)](x))
    return pool[-1] + sg.sum(pool[-2]) * 0.1


@settings(max_examples=25, deadline=None)
@given(expression_programs())
def test_random_expression_graphs_gradient_checked(program):
    arrays = [rand(3, 4), rand(3, 4)]
    verify_grad(lambda a, b: _build(program, a, b), arrays, rtol=1e-4, atol=1e-6)


def test_jvp_takes_numpy_tangents_and_refuses_what_it_cannot_use():
    """A NumPy tangent is a constant direction (it raised an error naming a matmul); non-node
    primals or outputs and a primal listed twice (its first tangent was dropped) raise."""
    x = sg.placeholder((2, 3), "float64")
    W = sg.variable(rand(3, 4))
    v0, x0 = rand(3, 4), rand(2, 3)
    h = sg.sum(sg.tanh(x @ W))
    want = sg.function([x], sg.jvp(h, [W], [sg.constant(v0)]))(x0)
    np.testing.assert_allclose(sg.function([x], sg.jvp(h, W, v0))(x0), want)
    with pytest.raises(sg.SymgraphError, match="primals\\[0\\] must be a symgraph node"):
        sg.jvp(h, [v0], [v0])
    with pytest.raises(sg.SymgraphError, match="outputs must be a symgraph node"):
        sg.jvp(3.0, [W], [v0])
    with pytest.raises(sg.SymgraphError, match="listed twice among the primals"):
        sg.jvp(h, [W, W], [v0, v0 * 0])
    with pytest.raises(sg.SymgraphError, match="argmax is piecewise constant"):
        sg.jvp(sg.sum(sg.cast(sg.argmax(x @ W, axis=1), "float64")), [W], [v0])
