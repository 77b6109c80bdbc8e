"""The reshaping layers of nn/reshaping.py (ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D)
against NumPy's np.pad, slicing and np.repeat (Keras 3's definitions): values, gradients by
finite differences (float64), NumPy vs Numba, Sequential and functional use, summary shapes,
configs and model.save / load_model, and the refusals of bad arguments and inputs."""

import json

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    Conv2D,
    Cropping1D,
    Cropping2D,
    Dense,
    Flatten,
    Input,
    Model,
    Sequential,
    UpSampling1D,
    UpSampling2D,
    ZeroPadding1D,
    ZeroPadding2D,
    load_model,
    set_random_seed,
)
from symgraph.nn.layers import CallContext
from symgraph.testing import verify_grad

RNG = np.random.default_rng(7)


def _run(layer, x, backend="numpy"):
    if not layer.built:
        layer.build(x.shape[1:])
    ph = sg.placeholder(("batch",) + x.shape[1:], name="x")
    return sg.function([ph], layer.call(ph, CallContext()), backend=backend)(x)


SEQ = RNG.normal(size=(3, 5, 4)).astype(np.float32)
IMG = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32)

CASES = [
    (ZeroPadding1D(), SEQ, np.pad(SEQ, ((0, 0), (1, 1), (0, 0)))),
    (ZeroPadding1D((2, 0)), SEQ, np.pad(SEQ, ((0, 0), (2, 0), (0, 0)))),
    (ZeroPadding2D(), IMG, np.pad(IMG, ((0, 0), (1, 1), (1, 1), (0, 0)))),
    (ZeroPadding2D(2), IMG, np.pad(IMG, ((0, 0), (2, 2), (2, 2), (0, 0)))),
    (ZeroPadding2D((1, 3)), IMG, np.pad(IMG, ((0, 0), (1, 1), (3, 3), (0, 0)))),
    (ZeroPadding2D(((0, 2), (1, 0))), IMG, np.pad(IMG, ((0, 0), (0, 2), (1, 0), (0, 0)))),
    (Cropping1D(), SEQ, SEQ[:, 1:4]),
    (Cropping1D((1, 2)), SEQ, SEQ[:, 1:3]),
    (Cropping1D((0, 1)), SEQ, SEQ[:, 0:4]),
    (Cropping2D(), IMG, IMG),
    (Cropping2D(1), IMG, IMG[:, 1:4, 1:5]),
    (Cropping2D(((2, 0), (1, 3))), IMG, IMG[:, 2:, 1:3]),
    (UpSampling1D(), SEQ, np.repeat(SEQ, 2, axis=1)),
    (UpSampling1D(3), SEQ, np.repeat(SEQ, 3, axis=1)),
    (UpSampling2D(), IMG, np.repeat(np.repeat(IMG, 2, axis=1), 2, axis=2)),
    (UpSampling2D((1, 3)), IMG, np.repeat(IMG, 3, axis=2)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("layer, x, want", CASES, ids=IDS)
def test_values_match_numpy_on_both_backends(layer, x, want):
    out = _run(layer, x)
    assert out.shape == want.shape and layer.output_shape == want.shape[1:]
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(_run(layer, x, backend="numba"), want)


def test_keras_docstring_examples():
    x = np.arange(4, dtype=np.float32).reshape((1, 1, 2, 2))
    assert _run(ZeroPadding2D(padding=1), x)[0, :, :, 0].tolist() == [
        [0, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    x = np.arange(12, dtype=np.float32).reshape((2, 2, 1, 3))
    assert _run(UpSampling2D(size=(1, 2)), x)[0].tolist() == [[[0, 1, 2], [0, 1, 2]],
                                                              [[3, 4, 5], [3, 4, 5]]]


@pytest.mark.parametrize("layer, x, want", CASES, ids=IDS)
def test_gradients_match_finite_differences(layer, x, want):
    fresh = type(layer).from_config(layer.get_config() | {"name": layer.name + "_g"})
    fresh.build(x.shape[1:])
    verify_grad(lambda t: fresh.call(t, CallContext()), [x.astype(np.float64)],
                rtol=1e-5, atol=1e-7)


def _model():
    set_random_seed(3)
    return Sequential([Input((6, 5, 2)), ZeroPadding2D(((1, 0), (0, 2)), name="pad"),
                       Conv2D(4, 3, activation="relu"), Cropping2D((1, 0), name="crop"),
                       UpSampling2D((2, 1), name="up"), Flatten(), Dense(1)])


def test_sequential_summary_shapes_and_training_on_both_backends():
    model = _model()
    rows = {layer.name: layer.output_shape for layer in model.layers}
    assert rows["pad"] == (7, 7, 2) and rows["crop"] == (3, 5, 4) and rows["up"] == (6, 5, 4)
    lines = []
    model.summary(print_fn=lines.append)
    assert "pad (ZeroPadding2D)" in "\n".join(lines) and "(None, 6, 5, 4)" in "\n".join(lines)
    x = RNG.normal(size=(16, 6, 5, 2)).astype(np.float32)
    y = RNG.normal(size=(16, 1)).astype(np.float32)
    results = []
    for backend in ("numpy", "numba"):
        model = _model()
        model.compile(optimizer="adam", loss="mse", backend=backend)
        results.append(model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


def test_functional_model_configs_and_save_load_round_trip(tmp_path):
    inputs = Input((5, 4))
    h = UpSampling1D(2)(ZeroPadding1D((1, 2))(inputs))
    out = Dense(1)(Flatten()(Cropping1D((3, 1))(h)))
    model = Model(inputs, out)
    for layer in model.layers:
        config = layer.get_config()
        assert json.loads(json.dumps(config)) == config
        assert type(layer).from_config(config).get_config() == config
    assert model.layers[1].get_config()["padding"] == [1, 2]  # Keras's keys
    assert {"size", "data_format", "interpolation"} <= set(UpSampling2D().get_config())
    assert Cropping2D(1).get_config()["cropping"] == [[1, 1], [1, 1]]
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    x = RNG.normal(size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("make, match", [
    (lambda: ZeroPadding1D(-1), "padding must be an int >= 0"),
    (lambda: ZeroPadding1D((1, 2, 3)), "padding must be an int >= 0"),
    (lambda: ZeroPadding2D((1, 2, 3)), "should have two elements"),
    (lambda: ZeroPadding2D(((1, 2), "a")), "each entry of padding"),
    (lambda: ZeroPadding2D(data_format="channels_first"), "channels_last"),
    (lambda: Cropping1D("1"), "cropping must be an int >= 0"),
    (lambda: Cropping2D(-1), "cropping must be an int >= 0"),
    (lambda: UpSampling1D(0), "size must be a positive int"),
    (lambda: UpSampling2D((2, 0)), "size must be a positive int"),
    (lambda: UpSampling2D(interpolation="bilinear"), "only interpolation='nearest'"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(SymgraphError, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (Cropping1D((2, 3)), (5, 7), "must be smaller than the input"),
    (Cropping2D(((1, 1), (3, 3))), (5, 6, 3), "must be smaller than the input"),
    (ZeroPadding2D(), (5, 3), "\\(batch, height, width, channels\\)"),
    (ZeroPadding1D(), (5, 3, 2), "\\(batch, steps, channels\\)"),
    (UpSampling2D(), (5,), "\\(batch, height, width, channels\\)"),
])
def test_bad_input_shapes_are_refused_and_leave_the_layer_unbuilt(layer, shape, match):
    with pytest.raises(SymgraphError, match=match):
        layer(Input(shape))
    assert not layer.built and layer.calls == 0
