"""Dropout and batch normalization against direct NumPy computations."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.ops.special import uniform_bits


def test_dropout_mask_is_reproducible_from_seed_and_step():
    x = sg.placeholder(("batch", 64), name="x")
    step = sg.placeholder((), "int64", name="step")
    f = sg.function([x, step], sg.dropout(x, 0.5, seed=11, step=step))
    ones = np.ones((32, 64), np.float32)
    a, b, c = f(ones, 3), f(ones, 3), f(ones, 4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.3
    expected_keep = (uniform_bits(11, 3, 32 * 64) * 2.0 ** -24 >= 0.5).reshape(32, 64)
    np.testing.assert_array_equal(a != 0, expected_keep)


def test_dropout_scales_kept_values_and_keep_rate_is_within_bounds():
    rate, n = 0.3, 200_000
    x = sg.placeholder((n,), name="x")
    out = sg.function([x], sg.dropout(x, rate, seed=5))(np.ones(n, np.float32))
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(kept.mean() - (1 - rate)) < 5 * sd


def test_dropout_default_step_gives_a_new_mask_every_call():
    x = sg.placeholder((1000,), name="x")
    f = sg.function([x], sg.dropout(x, 0.5, seed=9))
    ones = np.ones(1000, np.float32)
    assert (f(ones) != f(ones)).mean() > 0.3


def test_dropout_is_identity_at_inference_and_rejects_bad_rates():
    x = sg.placeholder((3,), name="x")
    assert sg.dropout(x, 0.5, training=False) is x
    with pytest.raises(sg.SymgraphError, match="rate=1.5"):
        sg.dropout(x, 1.5)


def test_batch_norm_training_and_inference_match_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 5)) * 3 + 1
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    x = sg.placeholder(("batch", 5), "float64", name="x")
    train = sg.function([x], sg.batch_norm(x, gamma, beta, epsilon=1e-3))
    mu, var = a.mean(0), a.var(0)
    np.testing.assert_allclose(train(a), (a - mu) / np.sqrt(var + 1e-3) * gamma + beta)
    infer = sg.function([x], sg.batch_norm(x, gamma, beta, rm, rv, training=False))
    np.testing.assert_allclose(infer(a), (a - rm) / np.sqrt(rv + 1e-3) * gamma + beta)
    moments = sg.function([x], list(sg.batch_moments(x, (0,))))(a)
    np.testing.assert_allclose(moments[0], mu)
    np.testing.assert_allclose(moments[1], var)  # biased variance, as Keras


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_activations_propagate_nan_as_keras_does(backend):
    """relu(NaN) was 0 (where(x > 0, x, 0) takes the 0 branch), which hid a NaN input from
    the loss while its gradient was NaN; Keras (TF), JAX and PyTorch give NaN."""
    x = sg.placeholder((3,), "float32", name="x")
    acts = [sg.relu(x), sg.relu6(x), sg.relu(x, negative_slope=0.1, threshold=0.5),
            sg.leaky_relu(x), sg.elu(x), sg.selu(x), sg.softplus(x), sg.sigmoid(x)]
    out = sg.function([x], acts, backend=backend)(np.array([np.nan, -1.0, 2.0], np.float32))
    for a in out:
        assert np.isnan(a[0]) and np.isfinite(a[1:]).all()
    np.testing.assert_array_equal(out[0][1:], [0.0, 2.0])
