"""The DSL: NumPy broadcasting and reduction semantics, indexing, dtypes, stable composites."""

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
