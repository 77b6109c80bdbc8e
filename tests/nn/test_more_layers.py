"""The layers of nn/normalization.py, nn/core_layers.py and nn/regularization_layers.py against
Keras 3's formulas written out in NumPy here: forward values, gradients by finite differences
(float64), training vs inference, NumPy vs Numba, noise statistics and reproducibility, use in
Sequential and functional models (shared layers), summary, weights files, configs and
model.save / load_model, and the refusals of bad arguments."""

import json
import math

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    ActivityRegularization,
    AlphaDropout,
    Concatenate,
    Dense,
    Flatten,
    GaussianDropout,
    GaussianNoise,
    Identity,
    Input,
    Lambda,
    LayerNormalization,
    Model,
    Permute,
    RepeatVector,
    Rescaling,
    Sequential,
    Softmax,
    SpatialDropout1D,
    UnitNormalization,
    load_model,
    optimizers,
    register_serializable,
    regularizers,
    set_random_seed,
)
from symgraph.nn.layers import CallContext
from symgraph.testing import verify_grad

RNG = np.random.default_rng(12)
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _run(layer, x, training=False, step=0, backend="numpy"):
    """One layer's output on `x` (built on first use), at training step `step`."""
    if not layer.built:
        layer.build(x.shape[1:])
    ph = sg.placeholder(("batch",) + x.shape[1:], name="x")
    counter = sg.variable(np.int64(step), name="step", trainable=False)
    ctx = CallContext(training=training, step=counter)
    return sg.function([ph], layer.call(ph, ctx), backend=backend)(x)


def _layer_norm(x, axes, gamma=None, beta=None, eps=1e-3):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    out = (x - mean) / np.sqrt(var + eps)
    if gamma is not None:
        out = out * gamma
    return out + beta if beta is not None else out


def _softmax(x, axes):
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


# --- forward values --------------------------------------------------------------------------

def test_layer_normalization_matches_keras_formula():
    x = RNG.normal(2.0, 3.0, (6, 4, 5)).astype(np.float32)
    ln = LayerNormalization()
    ln.build((4, 5))
    assert [w.shape for w in ln.weights] == [(5,), (5,)] and ln.epsilon == 1e-3
    gamma, beta = RNG.normal(size=5).astype(np.float32), RNG.normal(size=5).astype(np.float32)
    ln.set_weights([gamma, beta])
    np.testing.assert_allclose(_run(ln, x), _layer_norm(x, -1, gamma, beta), rtol=1e-4,
                               atol=1e-5)
    ln = LayerNormalization(axis=[1, 2], epsilon=0.1)
    ln.build((4, 5))
    gamma, beta = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    ln.set_weights([gamma, beta])
    np.testing.assert_allclose(_run(ln, x), _layer_norm(x, (1, 2), gamma, beta, 0.1),
                               rtol=1e-4, atol=1e-5)
    assert _run(ln, x, training=True).tolist() == _run(ln, x).tolist()  # no batch statistics


def test_layer_normalization_weight_options_and_rms_scaling():
    ln = LayerNormalization(axis=[1, 2, 3])  # Keras's docstring example
    ln.build((20, 30, 40))
    assert ln.gamma.shape == ln.beta.shape == (20, 30, 40)
    for kwargs, names in [({"center": False}, ["gamma"]), ({"scale": False}, ["beta"]),
                          ({"center": False, "scale": False}, []),
                          ({"rms_scaling": True, "scale": False}, ["gamma"])]:
        layer = LayerNormalization(**kwargs)
        layer.build((3,))
        assert [name for name, _ in layer._weights] == names
    x = RNG.normal(1.0, 2.0, (5, 6)).astype(np.float32)
    rms = LayerNormalization(rms_scaling=True)
    rms.build((6,))
    gamma = RNG.uniform(0.5, 2.0, 6).astype(np.float32)
    rms.set_weights([gamma])
    # Keras 3: x * rsqrt(var + eps) * gamma, the variance (centred), x itself not centred
    want = x / np.sqrt(x.var(-1, keepdims=True) + 1e-3) * gamma
    np.testing.assert_allclose(_run(rms, x), want, rtol=1e-5)


def test_unit_normalization_gives_unit_norms_and_keeps_zeros():
    x = RNG.normal(size=(4, 3, 5)).astype(np.float32)
    x[1] = 0.0
    out = _run(UnitNormalization(), x)
    want = x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), 1e-12))
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert np.all(out[1] == 0)
    out = _run(UnitNormalization(axis=(1, 2)), x)
    np.testing.assert_allclose(np.sqrt((out[[0, 2, 3]] ** 2).sum((1, 2))), 1.0, rtol=1e-6)


@pytest.mark.parametrize("axis, axes", [(-1, -1), (1, 1), ([1, 2], (1, 2)), ([-2], -2)])
def test_softmax_over_one_axis_or_several(axis, axes):
    x = RNG.normal(0.0, 4.0, (3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(Softmax(axis=axis), x), _softmax(x, axes), rtol=1e-5,
                               atol=1e-7)


def test_softmax_layer_lets_crossentropy_use_its_logits():
    ctx = CallContext()
    layer = Softmax()
    layer.build((3,))
    ph = sg.placeholder(("batch", 3), name="x")
    out = layer.call(ph, ctx)
    assert ctx.logits[out.id] == ("softmax", ph)


def test_identity_rescaling_repeat_vector_permute_and_lambda_values():
    x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    assert np.array_equal(_run(Identity(), x), x)
    np.testing.assert_allclose(_run(Rescaling(1 / 127.5, offset=-1), x), x / 127.5 - 1,
                               rtol=1e-6)
    np.testing.assert_allclose(_run(Rescaling([2.0, -1.0], offset=[[0.5, 0.0]] * 4), x),
                               x * [2.0, -1.0] + [0.5, 0.0], rtol=1e-6)
    v = x[:, :, 0]
    assert np.array_equal(_run(RepeatVector(3), v), np.repeat(v[:, None, :], 3, axis=1))
    assert np.array_equal(_run(Permute((2, 1)), x), x.transpose(0, 2, 1))
    cube = Lambda(lambda t, power: t ** power, arguments={"power": 3})
    np.testing.assert_allclose(_run(cube, x), x ** 3, rtol=1e-6)

    def scaled(t, training=False):
        return t * (2.0 if training else 1.0)

    both = Lambda(scaled)
    assert np.array_equal(_run(both, x), x)
    assert np.array_equal(_run(both, x, training=True), 2 * x)
    flat = Lambda(lambda t: sg.sum(t, axis=-1), output_shape=(4,))
    flat.build((4, 2))
    assert flat.output_shape == (4,)


# --- gradients -------------------------------------------------------------------------------

def _with_weights(layer, input_shape, names):
    """fn(x, *weights) for verify_grad: the layer's call with its weights as float64 inputs."""
    layer.build(input_shape)

    def fn(x, *weights):
        for name, w in zip(names, weights):
            setattr(layer, name, w)
        return layer.call(x, CallContext())

    return fn


@pytest.mark.parametrize("kwargs", [{}, {"axis": [1, 2]}, {"rms_scaling": True},
                                    {"center": False, "axis": -2}])
def test_layer_normalization_gradients_match_finite_differences(kwargs):
    layer = LayerNormalization(dtype="float64", **kwargs)
    fn = _with_weights(layer, (3, 4), ["gamma", "beta"])
    arrays = [RNG.normal(size=(2, 3, 4))] + [RNG.normal(size=w.shape) for w in layer.weights]
    verify_grad(fn, arrays, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer", [Softmax(), Softmax(axis=1), Softmax(axis=[1, 2]),
                                   UnitNormalization(), UnitNormalization(axis=[1, 2])],
                         ids=["softmax", "softmax1", "softmax12", "unit", "unit12"])
def test_softmax_and_unit_normalization_gradients_match_finite_differences(layer):
    fn = _with_weights(layer, (3, 4), [])
    verify_grad(fn, [RNG.normal(size=(2, 3, 4))], rtol=1e-5, atol=1e-7)


# --- noise layers ----------------------------------------------------------------------------

NOISE = [GaussianNoise(0.5, seed=1), GaussianDropout(0.3, seed=2), AlphaDropout(0.2, seed=3),
         AlphaDropout(0.2, noise_shape=(None, 1, 40), seed=4), SpatialDropout1D(0.3, seed=5)]
NOISE_IDS = ["gaussian_noise", "gaussian_dropout", "alpha", "alpha_shared", "spatial"]


@pytest.mark.parametrize("layer", NOISE, ids=NOISE_IDS)
def test_noise_is_off_in_inference_reproducible_and_new_each_step(layer):
    x = RNG.normal(size=(64, 8, 40)).astype(np.float32)
    assert np.array_equal(_run(layer, x), x)
    first = _run(layer, x, training=True, step=3)
    assert not np.array_equal(first, x)
    assert np.array_equal(_run(layer, x, training=True, step=3), first)  # same seed and step
    assert not np.array_equal(_run(layer, x, training=True, step=4), first)  # a new step
    again = type(layer).from_config({**layer.get_config(), "name": layer.name + "_again"})
    assert np.array_equal(_run(again, x, training=True, step=3), first)  # the seed is kept
    other = type(layer).from_config({**layer.get_config(), "seed": layer.seed + 1,
                                     "name": layer.name + "_other"})
    assert not np.array_equal(_run(other, x, training=True, step=3), first)


@pytest.mark.parametrize("layer", NOISE, ids=NOISE_IDS)
def test_noise_is_bit_identical_on_numpy_and_numba(layer):
    x = RNG.normal(size=(50, 8, 40)).astype(np.float32)
    ref = _run(layer, x, training=True, step=7)
    assert np.array_equal(_run(layer, x, training=True, step=7, backend="numba"), ref)


def test_normal_draws_have_the_normal_moments_and_quantiles():
    z = sg.function([], sg.random.normal((400, 1000), seed=5, step=np.int64(0)))()
    assert z.dtype == np.float32 and abs(z.mean()) < 0.005 and abs(z.std() - 1) < 0.005
    assert abs((z > 1.959964).mean() - 0.025) < 0.001  # the 97.5% quantile
    assert abs((np.abs(z) < 0.6744898).mean() - 0.5) < 0.003  # the quartiles
    assert np.abs(z).max() < 5.5  # the 2**-25 offset bounds the tails
    wide = sg.function([], sg.random.normal((1000,), seed=5, step=np.int64(0), mean=3.0,
                                            stddev=2.0))()
    np.testing.assert_allclose(wide, 3.0 + 2.0 * z[0], rtol=1e-6, atol=1e-6)  # same draws


def test_gaussian_noise_and_dropout_statistics():
    x = RNG.uniform(1.0, 2.0, (200, 500)).astype(np.float32)
    noise = _run(GaussianNoise(0.3, seed=8), x, training=True) - x
    assert abs(noise.mean()) < 0.003 and abs(noise.std() - 0.3) < 0.003
    rate = 0.4
    ratio = _run(GaussianDropout(rate, seed=9), x, training=True) / x
    assert abs(ratio.mean() - 1) < 0.005
    assert abs(ratio.std() - math.sqrt(rate / (1 - rate))) < 0.005


def test_alpha_dropout_drops_to_selus_saturation_and_keeps_mean_and_variance():
    rate = 0.3
    x = RNG.normal(size=(400, 500)).astype(np.float32)
    out = _run(AlphaDropout(rate, seed=10), x, training=True)
    alpha_p = -SELU_ALPHA * SELU_SCALE
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    dropped = np.isclose(out, a * alpha_p + b, rtol=1e-6, atol=1e-6)
    assert abs(dropped.mean() - rate) < 0.005
    np.testing.assert_allclose(out[~dropped], a * x[~dropped] + b, rtol=1e-5, atol=1e-6)
    assert abs(out.mean()) < 0.01 and abs(out.var() - 1) < 0.01
    shared = _run(AlphaDropout(rate, noise_shape=(None, 1, 6), seed=11),
                  RNG.normal(size=(100, 5, 6)).astype(np.float32), training=True)
    drop = np.isclose(shared, a * alpha_p + b, rtol=1e-6, atol=1e-6)
    assert (drop == drop[:, :1, :]).all()  # one mask value per sample and feature


def test_spatial_dropout_drops_whole_channels():
    rate = 0.25
    x = RNG.uniform(1.0, 2.0, (300, 7, 20)).astype(np.float32)
    out = _run(SpatialDropout1D(rate, seed=12), x, training=True)
    kept = out != 0
    assert (kept == kept[:, :1, :]).all()
    assert abs(kept[:, 0, :].mean() - (1 - rate)) < 0.02
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)


def test_a_shared_noise_layer_draws_its_own_noise_per_call():
    noise = GaussianNoise(0.5, seed=13)
    inputs = Input((6,))
    model = Model(inputs, Concatenate()([noise(inputs), noise(inputs)]))
    ph = sg.placeholder(("batch", 6), name="x")
    ctx = CallContext(training=True, step=sg.variable(np.int64(0), name="s", trainable=False))
    out = model.run_layers(ph, lambda layer, h: layer.call(h, ctx))
    x = np.zeros((4, 6), np.float32)
    first, second = np.split(sg.function([ph], out)(x), 2, axis=1)
    assert not np.array_equal(first, second)
    assert np.array_equal(first, _run(GaussianNoise(0.5, seed=13), x, training=True))


def test_fit_draws_new_noise_each_step_and_reproduces_it_from_the_seeds():
    x = RNG.normal(size=(16, 5)).astype(np.float32)
    y = RNG.normal(size=(16, 1)).astype(np.float32)

    def losses():
        set_random_seed(3)
        model = Sequential([Input((5,)), GaussianNoise(0.5), GaussianDropout(0.2), Dense(1)])
        model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="numpy")
        return [float(model.train_on_batch(x, y)) for _ in range(3)]

    first = losses()
    assert len(set(first)) == 3  # no learning (lr 0): only the noise changes the loss
    assert losses() == first


# --- activity regularization -----------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_activity_regularization_adds_to_the_loss_in_training_and_evaluation(backend):
    x = RNG.normal(size=(10, 4)).astype(np.float32)
    y = RNG.normal(size=(10, 3)).astype(np.float32)
    model = Sequential([Input((4,)), Dense(3, name="d"), ActivityRegularization(l1=0.1, l2=0.3)])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend=backend)
    kernel, bias = model.layers[0].get_weights()
    h = x @ kernel + bias
    penalty = (0.1 * np.abs(h).sum() + 0.3 * (h * h).sum()) / len(x)  # divided by the batch
    want = ((h - y) ** 2).mean() + penalty
    assert model.evaluate(x, y, batch_size=10, verbose=0) == pytest.approx(want, rel=1e-5)
    assert float(model.train_on_batch(x, y)) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), h, rtol=1e-5, atol=1e-6)


def test_activity_regularization_gradient_pulls_activations_to_zero():
    x = RNG.normal(size=(32, 3)).astype(np.float32)
    model = Sequential([Input((3,)), Dense(3, use_bias=False), ActivityRegularization(l2=1.0)])
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend="numpy")
    start = np.abs(model.predict(x, verbose=0)).mean()
    model.fit(x, np.zeros((32, 3), np.float32) + model.predict(x, verbose=0), epochs=20,
              verbose=0)
    assert np.abs(model.predict(x, verbose=0)).mean() < 0.5 * start


# --- models: numpy vs numba, shared layers, summary, weights, saving -------------------------

def _every_layer_model():
    set_random_seed(5)
    inputs = Input((4, 6))
    h = LayerNormalization(gamma_regularizer=regularizers.L2(1e-3), beta_constraint="non_neg",
                           name="ln")(inputs)
    h = GaussianNoise(0.1)(h)
    h = SpatialDropout1D(0.1)(h)
    h = Permute((2, 1), name="permute")(h)
    h = LayerNormalization(axis=[1, 2], rms_scaling=True, name="ln_rms")(h)
    h = Softmax(axis=1)(h)
    h = UnitNormalization()(h)
    h = Rescaling(2.0, offset=-0.5)(h)
    h = Lambda(double)(h)
    h = Identity()(h)
    h = AlphaDropout(0.1)(h)
    h = GaussianDropout(0.1)(h)
    h = ActivityRegularization(l1=1e-3)(h)
    h = Dense(5)(Flatten()(h))
    h = RepeatVector(2, name="repeat")(h)
    shared = LayerNormalization(name="shared_ln")
    out = Dense(1)(Flatten()(shared(shared(h))))  # a shared layer, called twice
    return Model(inputs, out)


@register_serializable(package="test_more_layers")
def double(t):
    return t * 2.0


def _data(n=40):
    return (RNG.normal(size=(n, 4, 6)).astype(np.float32),
            RNG.normal(size=(n, 1)).astype(np.float32))


def test_summary_shapes_and_param_counts_are_keras():
    model = _every_layer_model()
    rows = {layer.name: (layer.output_shape, layer.count_params()) for layer in model.layers}
    assert rows["ln"] == ((4, 6), 12)  # gamma and beta over the last axis
    assert rows["ln_rms"] == ((6, 4), 24)  # gamma over (6, 4), no beta
    assert rows["permute"][0] == (6, 4) and rows["repeat"] == ((2, 5), 0)
    assert rows["shared_ln"] == ((2, 5), 10)  # counted once though called twice
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "ln_rms (LayerNormalization)" in text and "(None, 6, 4)" in text
    total = 12 + 24 + (120 + 5) + 10 + (10 + 1)
    assert f"Total params: {total:,}" in text


def test_every_layer_trains_identically_on_numpy_and_numba():
    x, y = _data()
    results = []
    for backend in ("numpy", "numba"):
        model = _every_layer_model()
        model.compile(optimizer="adam", loss="mse", backend=backend)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1)
        results.append((history.history["loss"], model.get_weights(),
                        model.predict(x, verbose=0)))
    (loss_a, w_a, p_a), (loss_b, w_b, p_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4)
    for a, b in zip(w_a, w_b):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(p_a, p_b, rtol=1e-3, atol=1e-5)


def test_sequential_model_of_the_new_layers_learns():
    set_random_seed(2)
    x = RNG.normal(size=(128, 6)).astype(np.float32)
    y = (x[:, :3].sum(1, keepdims=True) > 0).astype(np.float32)
    model = Sequential([Input((6,)), Rescaling(0.5), GaussianNoise(0.05),
                        Dense(16, activation="relu"), LayerNormalization(),
                        GaussianDropout(0.1), Dense(2), Softmax()])
    model.compile(optimizer=optimizers.Adam(0.02), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy")
    model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.9


def test_weights_files_and_configs_round_trip(tmp_path):
    model = _every_layer_model()
    for layer in model.layers:
        config = layer.get_config()
        assert json.loads(json.dumps(config)) == config
        again = type(layer).from_config(config)
        assert type(again) is type(layer) and again.get_config() == config
    ln = next(layer for layer in model.layers if layer.name == "ln")
    assert {"axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer",
            "gamma_initializer", "beta_regularizer", "gamma_regularizer", "beta_constraint",
            "gamma_constraint"} <= set(ln.get_config())  # Keras 3's keys
    model.set_weights([RNG.normal(size=w.shape) for w in model.get_weights()])
    model.save_weights(str(tmp_path / "m.weights.npz"))
    other = _every_layer_model()
    other.load_weights(str(tmp_path / "m.weights.npz"))
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_model_save_and_load_model_round_trip(tmp_path, backend):
    x, y = _data()
    model = _every_layer_model()
    model.compile(optimizer="adam", loss="mse", backend=backend)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    a = model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=2)
    b = loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=2)
    assert a.history == b.history  # the same noise: seeds and step counter were saved
    for u, v in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(u, v)


def cube(t):  # not registered
    return t * t * t


def test_lambda_saving_refuses_python_lambdas_and_needs_named_functions(tmp_path):
    path = tmp_path / "m.keras"
    Sequential([Input((2,)), Dense(1)]).save(path)
    before = path.read_bytes()
    with pytest.raises(SymgraphError, match="Python lambda.*register_serializable"):
        Sequential([Input((2,)), Lambda(lambda t: t + 1.0), Dense(1)]).save(path)
    with pytest.raises(SymgraphError, match="output_shape is a Python lambda"):
        Sequential([Input((2,)), Lambda(double, output_shape=lambda s: s), Dense(1)]).save(path)
    assert path.read_bytes() == before  # refused before anything was written
    model = Sequential([Input((2,)), Lambda(cube), Dense(1)])
    model.save(path)
    with pytest.raises(SymgraphError, match="custom_objects"):
        load_model(path)
    loaded = load_model(path, custom_objects={"cube": cube})
    x = RNG.normal(size=(3, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: LayerNormalization(axis="last"), "axis must be an int"),
    (lambda: LayerNormalization(axis=[]), "axis must be an int"),
    (lambda: LayerNormalization(epsilon=-1.0), "epsilon"),
    (lambda: UnitNormalization(axis=1.5), "axis must be an int"),
    (lambda: Softmax(axis=None), "axis must be an int"),
    (lambda: Lambda(3.0), "function must be callable"),
    (lambda: Lambda(double, mask=True), "mask"),
    (lambda: Lambda(double, arguments=[1]), "arguments must be a dict"),
    (lambda: Rescaling("big"), "scale must be a finite number"),
    (lambda: Rescaling(1.0, offset=np.inf), "offset must be a finite number"),
    (lambda: RepeatVector(0), "n must be a positive integer"),
    (lambda: RepeatVector(2.5), "n must be a positive integer"),
    (lambda: Permute((1, 3)), "permutation of 1..rank"),
    (lambda: Permute((0, 1)), "permutation of 1..rank"),
    (lambda: GaussianNoise(1.5), "`stddev`.*Received: stddev=1.5"),
    (lambda: GaussianDropout(1.0), "`rate`.*excluded"),
    (lambda: GaussianDropout("0.5"), "`rate`"),
    (lambda: AlphaDropout(-0.1), "`rate`"),
    (lambda: AlphaDropout(0.1, noise_shape=(None, 0)), "noise_shape"),
    (lambda: SpatialDropout1D(2.0), "`rate`"),
    (lambda: ActivityRegularization(l1=-0.1), "l1 must be a number >= 0"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(SymgraphError, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (LayerNormalization(axis=0), (3,), "batch axis"),
    (LayerNormalization(axis=3), (3, 4), "out of range.*\\(None, 3, 4\\)"),
    (LayerNormalization(axis=[1, -2]), (3, 4), "twice"),
    (UnitNormalization(axis=-3), (3, 4), "batch axis"),
    (Softmax(axis=0), (3,), "batch axis"),
    (Rescaling([1.0, 2.0, 3.0]), (4, 2), "does not broadcast"),
    (RepeatVector(2), (3, 4), "\\(None, features\\)"),
    (Permute((2, 1)), (3,), "2 feature axes"),
    (SpatialDropout1D(0.1), (5,), "\\(None, steps, channels\\)"),
    (AlphaDropout(0.1, noise_shape=(None, 3)), (4,), "noise_shape"),
    (AlphaDropout(0.1, noise_shape=(8, 4)), (4,), "batch axis"),
    (Lambda(lambda t: np.ones(3)), (3,), "must return a symgraph tensor"),
    (Lambda(lambda t: sg.sum(t)), (3,), "first axis is the batch axis"),
    (Lambda(lambda t: t @ np.ones((5, 2), np.float32)), (3,), "function failed"),
    (Lambda(double, output_shape=(4,)), (3,), "declares outputs \\(None, 4\\)"),
])
def test_bad_input_shapes_are_refused_and_leave_the_layer_unbuilt(layer, shape, match):
    with pytest.raises(SymgraphError, match=match):
        layer(Input(shape))
    assert not layer.built and layer.weights == [] and layer.calls == 0
