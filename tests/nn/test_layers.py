"""Layers against direct NumPy computations: BatchNorm, Dropout, Dense, activations, freezing."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    ELU,
    Activation,
    BatchNormalization,
    Dense,
    Dropout,
    LeakyReLU,
    Maxout,
    PReLU,
    ReLU,
    Sequential,
    initializers,
    optimizers,
)
from symgraph.nn.constraints import MaxNorm
from symgraph.nn.layers import CallContext

RNG = np.random.default_rng(1)


def _eval(layer, x, training=False, step=None):
    """Run one layer's graph on `x` (builds it first); returns (output, ctx updates)."""
    if not layer.built:
        layer.build(x.shape[1:])
    ph = sg.placeholder(("batch",) + x.shape[1:], name="x")
    ctx = CallContext(training=training, step=step)
    out = layer.call(ph, ctx)
    updates = [e for _, e in ctx.updates]
    values = sg.function([ph], [out] + updates)(x)
    return values[0], values[1:]


def test_batchnorm_training_and_inference_match_numpy():
    x = RNG.normal(2.0, 3.0, size=(16, 5)).astype(np.float32)
    bn = BatchNormalization()
    bn.build((5,))
    gamma = RNG.normal(size=5).astype(np.float32)
    beta = RNG.normal(size=5).astype(np.float32)
    mm = RNG.normal(size=5).astype(np.float32)
    mv = RNG.uniform(0.5, 2, size=5).astype(np.float32)
    bn.set_weights([gamma, beta, mm, mv])
    out, (new_mm, new_mv) = _eval(bn, x, training=True)
    mu, var = x.mean(0), x.var(0)  # biased variance, as Keras
    np.testing.assert_allclose(out, (x - mu) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(new_mm, mm * 0.99 + mu * 0.01, rtol=1e-5)
    np.testing.assert_allclose(new_mv, mv * 0.99 + var * 0.01, rtol=1e-5)
    out, updates = _eval(bn, x, training=False)
    assert updates == []
    np.testing.assert_allclose(out, (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta, rtol=1e-4,
                               atol=1e-5)


def test_batchnorm_running_stats_after_n_steps():
    model = Sequential([BatchNormalization(momentum=0.9, input_shape=(3,), name="bn_steps")])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="numpy")
    mm, mv = np.zeros(3), np.ones(3)
    batches = [RNG.normal(i, 1 + i, size=(8 + i, 3)).astype(np.float32) for i in range(4)]
    for xb in batches:
        model.train_on_batch(xb, np.zeros_like(xb))
        mm = mm * 0.9 + xb.mean(0) * 0.1
        mv = mv * 0.9 + xb.var(0) * 0.1
    bn = model.layers[0]
    np.testing.assert_allclose(bn.moving_mean.value, mm, rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.value, mv, rtol=1e-4)
    assert [v.label() for v in model.non_trainable_weights] == [
        "bn_steps/moving_mean", "bn_steps/moving_variance"]
    # inference uses the moving statistics
    np.testing.assert_allclose(model.predict(batches[0], verbose=0),
                               (batches[0] - mm) / np.sqrt(mv + 1e-3), rtol=1e-4, atol=1e-4)


def test_dropout_identity_at_inference_and_scaled_in_training():
    x = RNG.uniform(1, 2, size=(64, 50)).astype(np.float32)
    drop = Dropout(0.3, seed=5)
    out, _ = _eval(drop, x, training=False)
    np.testing.assert_array_equal(out, x)
    step = sg.variable(np.int64(0), trainable=False)
    out, _ = _eval(drop, x, training=True, step=step)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.7, rtol=1e-6)
    assert 0.6 < kept.mean() < 0.8
    step.value = np.int64(1)
    out2, _ = _eval(drop, x, training=True, step=step)
    assert (out2 != 0).tolist() != kept.tolist()  # a new mask each step


def test_dropout_rate_validation():
    with pytest.raises(SymgraphError, match="Received: rate=1.5"):
        Dropout(1.5)
    with pytest.raises(SymgraphError, match="Received: rate='a'"):  # was a raw TypeError
        Dropout("a")


def test_dense_glorot_uniform_seeded_and_bounded():
    init = initializers.get("glorot_uniform")
    a = initializers.GlorotUniform(seed=3)((300, 200))
    b = initializers.GlorotUniform(seed=3)((300, 200))
    np.testing.assert_array_equal(a, b)
    limit = np.sqrt(6 / 500)
    assert np.abs(a).max() <= limit and np.abs(a).max() > 0.95 * limit
    assert init((2, 2)).shape == (2, 2)
    layer = Dense(4, use_bias=False, input_dim=3)
    layer.build((3,))
    assert [w.label() for w in layer.weights] == [f"{layer.name}/kernel"]


def test_dense_forward_matches_numpy():
    layer = Dense(4, activation="tanh", bias_initializer="ones")
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    out, _ = _eval(layer, x)
    k, b = layer.get_weights()
    np.testing.assert_allclose(out, np.tanh(x @ k + b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer,ref", [
    (ReLU(max_value=6.0), lambda x: np.clip(x, 0, 6)),
    (LeakyReLU(), lambda x: np.where(x > 0, x, 0.3 * x)),
    (ELU(alpha=0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0)))),
    (Activation("softmax"), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    (Maxout(3), lambda x: x.reshape(len(x), 3, 4).max(-1)),
])
def test_activation_layers_match_numpy(layer, ref):
    x = (RNG.normal(size=(4, 12)) * 5).astype(np.float32)
    out, _ = _eval(layer, x)
    np.testing.assert_allclose(out, ref(x), rtol=1e-5, atol=1e-6)


def test_prelu_learns_its_slope():
    x = -np.abs(RNG.normal(size=(32, 2))).astype(np.float32)
    model = Sequential([PReLU(input_shape=(2,))])
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse", backend="numpy")
    model.fit(x, 0.25 * x, epochs=30, batch_size=32, verbose=0)
    np.testing.assert_allclose(model.layers[0].alpha.value, 0.25, atol=0.02)


def test_maxout_rejects_uneven_groups():
    with pytest.raises(SymgraphError, match="num_units=3"):
        Sequential([Maxout(3, input_shape=(10,))])


def test_trainable_false_freezes_layer():
    x = RNG.normal(size=(16, 3)).astype(np.float32)
    y = RNG.normal(size=(16, 2)).astype(np.float32)
    model = Sequential([Dense(4, input_dim=3), Dense(2)])
    model.layers[0].trainable = False
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="numpy")
    frozen = model.layers[0].get_weights()
    last = model.layers[1].get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(last[0], model.layers[1].get_weights()[0])
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    model.layers[0].trainable = True  # unfreezing recompiles the step with the layer in it
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(frozen[0], model.layers[0].get_weights()[0])


def test_max_norm_constraint_applied_after_update():
    x = RNG.normal(size=(16, 3)).astype(np.float32) * 10
    y = RNG.normal(size=(16, 5)).astype(np.float32) * 10
    model = Sequential([Dense(5, input_dim=3, kernel_constraint=MaxNorm(0.5))])
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse", backend="numpy")
    model.train_on_batch(x, y)
    norms = np.sqrt((model.layers[0].kernel.value ** 2).sum(0))
    assert norms.max() <= 0.5 + 1e-5
    np.testing.assert_allclose(norms, 0.5, rtol=1e-4)  # the big step pushed every column out


def test_regularizer_penalty_added_to_loss():
    from symgraph.nn import regularizers

    x = RNG.normal(size=(8, 3)).astype(np.float32)
    y = np.zeros((8, 2), np.float32)
    model = Sequential([Dense(2, input_dim=3, use_bias=False,
                              kernel_regularizer=regularizers.l1_l2(l1=0.1, l2=0.2))])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    k = model.layers[0].kernel.value
    expected = ((x @ k) ** 2).mean() + 0.1 * np.abs(k).sum() + 0.2 * (k ** 2).sum()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_l1_l2_defaults_follow_keras_3():
    # keras.regularizers.l1_l2 is the L1L2 class: factors default to 0 (Keras 2's helper: 0.01)
    from symgraph.nn import regularizers

    only_l1 = regularizers.l1_l2(l1=1e-4)
    assert (only_l1.l1, only_l1.l2) == (1e-4, 0.0)
    named = regularizers.get("l1_l2")
    assert (named.l1, named.l2) == (0.01, 0.01)


def test_set_weights_checks_shapes_first():
    layer = Dense(3)
    layer.build((2,))
    before = layer.get_weights()
    with pytest.raises(SymgraphError, match="kernel"):
        layer.set_weights([np.ones((2, 3)), np.ones(4)][::-1])
    with pytest.raises(SymgraphError, match="bias"):
        layer.set_weights([np.ones((2, 3)), np.ones(4)])
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_flatten_images_into_dense():
    from symgraph.nn import Flatten, Input

    x = RNG.normal(size=(5, 4, 3)).astype(np.float32)
    model = Sequential([Input((4, 3)), Flatten(), Dense(2, use_bias=False)])
    model.compile(loss="mse", backend="numpy")
    assert model.layers[0].output_shape == (12,)  # Input is not a layer of the stack
    k = model.layers[1].kernel.value
    np.testing.assert_allclose(model.predict(x, verbose=0), x.reshape(5, 12) @ k, rtol=1e-5)
