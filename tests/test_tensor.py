"""The DSL: NumPy broadcasting and reduction semantics, indexing, dtypes, stable composites."""

import re

import numpy as np
import pytest

import symgraph as sg

rng = np.random.default_rng(0)


def run(fn, *arrays):
    xs = [sg.placeholder(a.shape, a.dtype.name, name=f"a{i}") for i, a in enumerate(arrays)]
    return sg.function(xs, fn(*xs))(*arrays)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_follow_numpy(axis, keepdims):
    a = rng.standard_normal((3, 4, 5))
    for ours, theirs in [(sg.sum, np.sum), (sg.max, np.max), (sg.mean, np.mean),
                         (sg.min, np.min), (sg.var, np.var)]:
        got = run(lambda x: ours(x, axis=axis, keepdims=keepdims), a)
        np.testing.assert_allclose(got, theirs(a, axis=axis, keepdims=keepdims), rtol=1e-12)


def test_broadcasting_and_operators_follow_numpy():
    a, b = rng.standard_normal((2, 1, 4)), rng.standard_normal((3, 1))
    got = run(lambda x, y: (x + y) * 2.0 - y / 3.0 + (-x) ** 2.0, a, b)
    np.testing.assert_allclose(got, (a + b) * 2 - b / 3 + (-a) ** 2)


def test_scalars_take_the_tensor_dtype():
    x = sg.placeholder((2,), "float32")
    assert (x * 2.5).dtype == "float32" and (2 - x).dtype == "float32"
    i = sg.placeholder((2,), "int32")
    assert (i + 1).dtype == "int32" and (i / 2).dtype == "float64"


def test_mixed_tensor_dtypes_promote():
    a = sg.placeholder((2,), "float32")
    b = sg.placeholder((2,), "float64")
    assert (a + b).dtype == "float64"


@pytest.mark.parametrize("key", [
    (1,), (slice(1, None),), (slice(None), 2), (Ellipsis, 1), (None, slice(0, 2)),
    (slice(None, None, 2), None, -1), (-2, slice(1, 3)), (slice(None, None, -1),),
    (slice(None), slice(None, None, -2)), (slice(3, 0, -1), slice(-1, -4, -2)),
    (slice(2, 2, -1),), (slice(None, -10, -1), 1), (slice(-6, None, -1),),
    (slice(None), slice(-7, 0, -2)),
])
def test_indexing_follows_numpy(key):
    a = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(run(lambda x: x[key], a), a[key])


def test_matmul_with_vectors_and_batches_follows_numpy():
    a, b, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    np.testing.assert_allclose(run(lambda x, y: x @ y, a, b), a @ b)
    np.testing.assert_allclose(run(lambda x, y: x @ y, a, v), a @ v)
    np.testing.assert_allclose(run(lambda x, y: x @ y, v, b), v @ b)


def test_symbolic_reshape_keeps_the_batch_symbol():
    x = sg.placeholder(("batch", 28, 28), name="images")
    flat = sg.reshape(x, (-1, 784))
    assert flat.shape == ("batch", 784)
    out = sg.function([x], sg.mean(flat, axis=0))(np.ones((3, 28, 28)))
    assert out.shape == (784,)


def test_argmax_one_hot_take_concatenate():
    a = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(run(lambda x: sg.argmax(x, axis=1), a), a.argmax(1))
    np.testing.assert_array_equal(run(lambda x: sg.argmax(x), a), a.argmax())
    labels = np.array([2, 0, 1], np.int32)
    np.testing.assert_array_equal(run(lambda y: sg.one_hot(y, 3), labels), np.eye(3)[labels])
    np.testing.assert_array_equal(run(lambda x: sg.take(x, sg.constant(np.array([3, 3]))), a),
                                  a[[3, 3]])
    np.testing.assert_array_equal(run(lambda x: sg.concatenate([x, x * 2.0], axis=0), a),
                                  np.concatenate([a, 2 * a]))


def test_softmax_family_is_stable_at_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    labels = np.array([0, 2], np.int64)
    sm = run(sg.softmax, logits)
    lsm = run(sg.log_softmax, logits)
    ce = run(lambda x: sg.sparse_softmax_cross_entropy(x, sg.constant(labels)), logits)
    assert np.all(np.isfinite(sm)) and np.all(np.isfinite(lsm)) and np.all(np.isfinite(ce))
    np.testing.assert_allclose(sm[0], [1, 0, 0])
    np.testing.assert_allclose(lsm[0], [0, -2e4, -1e4])
    np.testing.assert_allclose(ce, [0.0, np.log(3)])
    np.testing.assert_allclose(run(lambda x: sg.logsumexp(x, axis=1), logits),
                               [1e4, -1e4 + np.log(3)])
    g = run(lambda x: sg.grad(sg.sum(sg.sparse_softmax_cross_entropy(x, sg.constant(labels))),
                              x), logits)
    assert np.all(np.isfinite(g))


def test_activations_match_their_definitions():
    a = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(run(sg.relu, a), np.maximum(a, 0))
    np.testing.assert_allclose(run(sg.relu6, a), np.clip(a, 0, 6))
    np.testing.assert_allclose(run(lambda x: sg.leaky_relu(x, 0.3), a), np.where(a > 0, a, .3 * a))
    np.testing.assert_allclose(run(sg.elu, a), np.where(a > 0, a, np.expm1(a)))
    np.testing.assert_allclose(run(sg.selu, a), 1.0507009873554805 * np.where(
        a > 0, a, 1.6732632423543772 * np.expm1(a)))
    np.testing.assert_allclose(run(sg.softplus, a), np.log1p(np.exp(a)))
    np.testing.assert_allclose(run(sg.sigmoid, a), 1 / (1 + np.exp(-a)))
    np.testing.assert_allclose(run(lambda x: sg.maxout(x, 3), a[:30].reshape(2, 15)),
                               a[:30].reshape(2, 3, 5).max(-1))


def test_keras_losses_match_their_formulas():
    p = rng.uniform(0.05, 0.95, (4, 3))
    t = (rng.uniform(size=(4, 3)) > 0.5).astype(float)
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    np.testing.assert_allclose(run(lambda q: sg.binary_crossentropy(sg.constant(t), q), p),
                               -(t * np.log(pc) + (1 - t) * np.log(1 - pc)).mean(-1))
    onehot = np.eye(3)[[0, 2, 1, 1]]
    pn = p / p.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        run(lambda q: sg.categorical_crossentropy(sg.constant(onehot), q), p),
        -(onehot * np.log(np.clip(pn, eps, 1 - eps))).sum(-1))
    np.testing.assert_allclose(run(lambda q: sg.mse(sg.constant(t), q), p), ((p - t) ** 2).mean(-1))
    np.testing.assert_allclose(run(lambda q: sg.mae(sg.constant(t), q), p), abs(p - t).mean(-1))


def test_numpy_integer_axes_dims_and_indices_are_accepted():
    m = sg.placeholder((3, 5), name="m")
    assert sg.sum(m, axis=np.int64(1)).shape == (3,)
    assert sg.argmax(m, axis=np.int32(-1)).shape == (3,)
    assert sg.reshape(m, (np.int64(5), -1)).shape == (5, 3)
    assert m[np.int64(1):, np.int64(2)].shape == (2,)
    assert sg.placeholder(3).shape == (3,)  # an int shape, as NumPy takes one
    assert sg.broadcast_to(sg.placeholder((1,)), 3).shape == (3,)


BAD_BUILDS = {
    "sum(axis=1.0)": (lambda m, y, s: sg.sum(m, axis=1.0), "axis 1.0 must be an int"),
    "sum(axis=2)": (lambda m, y, s: sg.sum(m, axis=2), "axis 2 is out of range"),
    "softmax(axis=2)": (lambda m, y, s: sg.softmax(m, axis=2), "axis 2 is out of range"),
    "argmax((0, 1))": (lambda m, y, s: sg.argmax(m, axis=(0, 1)), "one axis"),
    "reshape(None)": (lambda m, y, s: sg.reshape(m, None), "got NoneType"),
    "reshape((-3, -5))": (lambda m, y, s: sg.reshape(m, (-3, -5)), "negative dim -3"),
    "broadcast_to(3)": (lambda m, y, s: sg.broadcast_to(m, 3), "do not broadcast"),
    "m[::0]": (lambda m, y, s: m[::0], "step cannot be zero"),
    "m[0.5:2]": (lambda m, y, s: m[0.5:2], "bounds must be ints"),
    "m[1.5]": (lambda m, y, s: m[1.5], "unsupported index 1.5"),
    "m[0, 0, 0]": (lambda m, y, s: m[0, 0, 0], "too many indices"),
    "y + 2**40": (lambda m, y, s: y + 2**40, "out of range for int32"),
    "m + 1j": (lambda m, y, s: m + 1j, "complex"),
    "cast(foo)": (lambda m, y, s: sg.cast(m, "foo"), "unknown dtype 'foo'"),
    "cast(float16)": (lambda m, y, s: sg.cast(m, "float16"), "unsupported dtype 'float16'"),
    "placeholder dtype": (lambda m, y, s: sg.placeholder((2,), "xx", name="p"), "placeholder 'p'"),
    # the name first, as TF writes it: the shape was read as a dtype, 'void50176'
    "placeholder shape as dtype": (lambda m, y, s: sg.placeholder("x", (None, 784)),
                                   "unknown dtype (None, 784)"),
    "variable(ragged)": (lambda m, y, s: sg.variable([[1, 2], [3]], name="v"), "rectangular"),
    "variable(uint8)": (lambda m, y, s: sg.variable(np.ones(2, np.uint8)), "'uint8'"),
    "one_hot(depth='a')": (lambda m, y, s: sg.one_hot(y, "a"), "depth 'a' must be an int"),
    "one_hot(depth=-1)": (lambda m, y, s: sg.one_hot(y, -1), "depth -1 must not be negative"),
    "sparse CE 1-D": (lambda m, y, s: sg.sparse_softmax_cross_entropy(y, y), "last axis"),
    "dropout(rate='a')": (lambda m, y, s: sg.dropout(m, "a", seed=1), "rate='a'"),
    "take(scalar)": (lambda m, y, s: sg.take(s, y), "x is a scalar"),
    "uniform((-1,))": (lambda m, y, s: sg.random.uniform((-1,), 1), "negative dim"),
}

# the line of each case's lambda: where the user wrote the call
BAD_LINES = {case: fn.__code__.co_firstlineno for case, (fn, _) in BAD_BUILDS.items()}


@pytest.mark.parametrize("case", BAD_BUILDS)
def test_bad_arguments_raise_symgraph_errors_naming_the_node_and_the_line(case):
    m = sg.placeholder((3, 5), name="m")
    y = sg.placeholder(("batch",), dtype="int32", name="y")
    s = sg.placeholder((), name="s")
    build, expected = BAD_BUILDS[case]
    with pytest.raises(sg.SymgraphError, match=re.escape(expected)) as info:
        build(m, y, s)
    msg = str(info.value)
    assert "created at " in msg and f"test_tensor.py:{BAD_LINES[case]}: " in msg, msg
    if case not in ("placeholder dtype", "placeholder shape as dtype", "variable(ragged)", "variable(uint8)",
                    "uniform((-1,))"):
        assert "float32[3,5]" in msg or "int32[batch]" in msg, msg


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_integer_min_holds_the_most_negative_value(dtype, backend):
    # min was -max(-x), and -INT_MIN wraps to INT_MIN: min([0, -1, 5, INT_MIN]) was -1
    low = np.iinfo(dtype).min
    a = np.array([[0, -1, 5, low], [7, np.iinfo(dtype).max, 2, 3]], dtype)
    x = sg.placeholder((2, 4), dtype, name="x")
    got = sg.function([x], [sg.min(x), sg.min(x, axis=1), sg.min(x, axis=0)], backend=backend)(a)
    for g, want in zip(got, [a.min(), a.min(axis=1), a.min(axis=0)]):
        np.testing.assert_array_equal(g, want)


def test_min_of_unsigned_and_bool_and_numpy_float_scalars_with_ints():
    u = sg.placeholder((3,), "uint32", name="u")
    m = sg.placeholder((3,), "bool", name="m")
    i = sg.placeholder((3,), "int32", name="i")
    f = sg.function([u, m, i], [sg.min(u), sg.min(m), i * np.float32(0.5)], backend="numpy")
    lo, mask, scaled = f(np.array([0, 5, 3], np.uint32), np.array([True, False, True]),
                         np.array([1, 2, 3], np.int32))
    assert lo == 0 and mask == 0  # uint32 min skipped zeros (-x wraps); a mask was refused
    np.testing.assert_allclose(scaled, [0.5, 1.0, 1.5])  # truncated to int32 [0 0 0]


def test_shapes_given_as_numpy_int_arrays_or_ranges():
    p = sg.placeholder(np.array([2, 3]), name="p")  # worked before the shape checks; NumPy does
    assert p.shape == (2, 3)
    assert sg.reshape(p, range(6, 7)).shape == (6,)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_whole_float_scalar_makes_an_int_tensor_float(backend):
    """int32 * 2.0 stayed int32 and wrapped at 2**31; NumPy gives float64 and JAX float32."""
    i = sg.placeholder((3,), "int32", name="i")
    a = np.array([2**30, -2**30, 3], np.int32)
    got = sg.function([i], [i * 2.0, i + 3e9, i * np.float32(2)], backend=backend)(a)
    for g, want in zip(got, [a * 2.0, a + 3e9, a * 2.0]):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, want, rtol=1e-7)
