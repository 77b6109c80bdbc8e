"""The preprocessing layers of nn/preprocessing.py and nn/augmentation.py against Keras 3's definitions written out in
NumPy here: Normalization (adapt on arrays and batches, given statistics, invert), Discretization
(np.digitize, Keras's adapt examples), CategoryEncoding, RandomFlip and RandomTranslation
(a per-pixel reference from the same uniform draws); training vs inference, reproducibility,
NumPy vs Numba bits, Sequential and functional use, summary, configs, model.save / load_model
(an adapted Normalization keeps its statistics) and the refusals of bad arguments."""

import json

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    CategoryEncoding,
    Concatenate,
    Conv2D,
    Dense,
    Discretization,
    Embedding,
    Flatten,
    Input,
    Model,
    Normalization,
    PyDataset,
    RandomFlip,
    RandomTranslation,
    Sequential,
    load_model,
    set_random_seed,
)
from symgraph.nn.layers import CallContext

RNG = np.random.default_rng(11)


def _run(layer, x, training=False, step=0, backend="numpy"):
    if not layer.built:
        layer.build(x.shape[1:])
    ph = sg.placeholder(("batch",) + x.shape[1:], name="x")
    counter = sg.variable(np.int64(step), name="step", trainable=False)
    ctx = CallContext(training=training, step=counter)
    return sg.function([ph], layer.call(ph, ctx), backend=backend)(x)


# --- Normalization ---------------------------------------------------------------------------

KERAS_ADAPT = np.array([[0., 7., 4.], [2., 9., 6.], [0., 7., 4.], [2., 9., 6.]], np.float32)


def test_normalization_keras_docstring_examples():
    layer = Normalization(axis=None)
    layer.adapt(np.array([1., 2., 3., 4., 5.], np.float32).reshape(5, 1))
    np.testing.assert_allclose(_run(layer, np.array([[1.], [2.], [3.]], np.float32))[:, 0],
                               [-1.4142135, -0.70710677, 0.0], rtol=1e-6)
    layer = Normalization(axis=-1)
    layer.adapt(KERAS_ADAPT)
    assert _run(layer, KERAS_ADAPT[:1]).tolist() == [[-1.0, -1.0, -1.0]]
    layer = Normalization(mean=3.0, variance=2.0)
    np.testing.assert_allclose(_run(layer, np.array([[1.], [2.], [3.]], np.float32))[:, 0],
                               [-1.4142135, -0.70710677, 0.0], rtol=1e-6)
    layer = Normalization(axis=-1, invert=True)
    layer.adapt(KERAS_ADAPT)
    assert _run(layer, np.array([[1., 2., 3.]], np.float32)).tolist() == [[2.0, 10.0, 8.0]]


@pytest.mark.parametrize("axis, keep", [(-1, (2,)), (None, ()), ((1, 2), (1, 2)), (1, (1,))])
def test_normalization_formula_and_adapt_over_the_reduced_axes(axis, keep):
    data = RNG.normal(3.0, 2.0, size=(50, 4, 3)).astype(np.float32)
    layer = Normalization(axis=axis)
    layer.adapt(data)
    reduce_axes = tuple(a for a in range(3) if a not in keep)
    mean = data.astype(np.float64).mean(reduce_axes, keepdims=True)
    var = data.astype(np.float64).var(reduce_axes, keepdims=True)
    np.testing.assert_allclose(layer.mean.value, mean.reshape(layer.mean.shape), rtol=1e-6)
    np.testing.assert_allclose(layer.variance.value, var.reshape(layer.mean.shape), rtol=1e-6)
    x = RNG.normal(size=(6, 4, 3)).astype(np.float32)
    want = (x - mean) / np.maximum(np.sqrt(var), 1e-7)
    np.testing.assert_allclose(_run(layer, x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(layer, x, backend="numba"), want, rtol=1e-5, atol=1e-6)


class _Batches(PyDataset):
    def __init__(self, x):
        super().__init__()
        self.x = x

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.x[i * 10:(i + 1) * 10], np.zeros(10)


def test_normalization_adapts_on_batches_as_on_the_whole_array():
    data = RNG.normal(-1.0, 3.0, size=(40, 5)).astype(np.float32)
    want = Normalization()
    want.adapt(data)
    sources = [[data[i:i + 7] for i in range(0, 40, 7)],           # a list of batches
               (data[i:i + 16] for i in range(0, 40, 16)),         # a generator
               [(data[:25], None), (data[25:], None)],             # (x, y) tuples
               _Batches(data)]                                     # a PyDataset
    for source in sources:
        layer = Normalization()
        layer.adapt(source)
        np.testing.assert_allclose(layer.mean.value, want.mean.value, rtol=1e-5)
        np.testing.assert_allclose(layer.variance.value, want.variance.value, rtol=1e-5)


def test_normalization_given_statistics_broadcast_onto_the_kept_axes():
    x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    layer = Normalization(axis=(1, 2), mean=[1.0, -1.0], variance=[4.0, 0.25])
    want = (x - np.array([1.0, -1.0])) / np.sqrt([4.0, 0.25])
    np.testing.assert_allclose(_run(layer, x), want, rtol=1e-6)
    assert layer.weights == [] and layer.count_params() == 0  # constants, as in Keras
    inverse = Normalization(axis=(1, 2), mean=[1.0, -1.0], variance=[4.0, 0.25], invert=True)
    np.testing.assert_allclose(_run(inverse, want.astype(np.float32)), x, rtol=1e-5, atol=1e-6)


def test_normalization_statistics_are_non_trainable_weights_keras_counts():
    model = Sequential([Input((5,)), Normalization(name="norm"), Dense(2)])
    norm = model.layers[0]
    assert [name for name, _ in norm._weights] == ["mean", "variance", "count"]
    assert norm.count.value.dtype == np.int64 and norm.trainable_weights == []
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "norm (Normalization)" in text and "Non-trainable params: 11" in text


def test_adapting_a_compiled_model_changes_its_predictions():
    data = RNG.normal(5.0, 2.0, size=(30, 3)).astype(np.float32)
    model = Sequential([Input((3,)), Normalization()])
    model.compile(loss="mse", backend="numpy")
    assert np.array_equal(model.predict(data, verbose=0), data)  # mean 0, variance 1
    model.layers[0].adapt(data)
    out = model.predict(data, verbose=0)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-4)


def test_refused_adapt_changes_nothing():
    layer = Normalization()
    layer.adapt(KERAS_ADAPT)
    before = [w.copy() for w in layer.get_weights()]
    with pytest.raises(SymgraphError, match="built for inputs \\(None, 3\\)"):
        layer.adapt(np.ones((4, 2), np.float32))
    with pytest.raises(SymgraphError, match="samples of shape \\(3,\\)"):
        layer.adapt([KERAS_ADAPT, np.ones((4, 2))])
    with pytest.raises(SymgraphError, match="no batches"):
        Normalization().adapt([])
    with pytest.raises(SymgraphError, match="NumPy array or an iterable"):
        layer.adapt(3.0)
    with pytest.raises(SymgraphError, match="was given mean and variance"):
        Normalization(mean=0.0, variance=1.0).adapt(KERAS_ADAPT)
    for a, b in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    unbuilt = Normalization(axis=0)
    with pytest.raises(SymgraphError, match="batch axis"):
        unbuilt.adapt(KERAS_ADAPT)
    assert not unbuilt.built and unbuilt.weights == []


# --- Discretization and CategoryEncoding -----------------------------------------------------

def test_discretization_is_np_digitize():
    x = np.array([[-1.5, 1.0, 3.4, .5], [0.0, 3.0, 1.3, np.nan]], np.float32)
    layer = Discretization(bin_boundaries=[0., 1., 2.])
    out = _run(layer, x)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, np.digitize(x, [0., 1., 2.]))  # NaN: the last bin
    np.testing.assert_array_equal(_run(layer, x, backend="numba"), out)
    wide = RNG.normal(size=(20, 6)).astype(np.float32)
    bins = [-1.0, -0.1, 0.1, 0.1000001, 2.0]
    np.testing.assert_array_equal(_run(Discretization(bins), wide), np.digitize(wide, bins))


def test_discretization_adapt_keras_example_and_config_keeps_boundaries():
    x = np.array([[-1.5, 1.0, 3.4, .5], [0.0, 3.0, 1.3, 0.0]], np.float32)
    layer = Discretization(num_bins=4, epsilon=0.01)
    layer.adapt(x)
    assert _run(layer, x).tolist() == [[0, 2, 3, 2], [1, 3, 3, 1]]  # Keras's docstring
    config = layer.get_config()
    assert config["num_bins"] == 4 and config["bin_boundaries"] == layer.bin_boundaries
    again = Discretization.from_config(json.loads(json.dumps(config)))
    assert again.bin_boundaries == layer.bin_boundaries
    batches = Discretization(num_bins=4, epsilon=0.01)
    batches.adapt([x[:1], x[1:]])  # merged summaries, as Keras merges a dataset's batches
    assert len(batches.bin_boundaries) == 3


def test_discretization_uniform_data_gets_quantile_boundaries():
    data = np.linspace(0.0, 1.0, 10001, dtype=np.float32)[:, None]
    layer = Discretization(num_bins=4)
    layer.adapt(data)
    np.testing.assert_allclose(layer.bin_boundaries, [0.25, 0.5, 0.75], atol=0.011)


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_discretization_output_modes_encode_the_bin_ids(mode):
    x = np.array([[-1.5, 1.0, 1.5], [0.5, 3.0, 0.2]], np.float32)
    layer = Discretization(bin_boundaries=[0., 1., 2.], output_mode=mode)
    ids = np.digitize(x, [0., 1., 2.])
    hot = np.eye(4, dtype=np.float32)[ids]
    want = {"one_hot": hot, "multi_hot": hot.max(1), "count": hot.sum(1)}[mode]
    np.testing.assert_array_equal(_run(layer, x), want)


def test_category_encoding_keras_docstring_examples_and_shapes():
    one = CategoryEncoding(num_tokens=4, output_mode="one_hot")
    want = np.eye(4)[[3, 2, 0, 1]].tolist()
    assert _run(one, np.array([3, 2, 0, 1], np.float32)).tolist() == want
    ids = np.array([[0, 1], [0, 0], [1, 2], [3, 1]], np.float32)
    multi = CategoryEncoding(num_tokens=4, output_mode="multi_hot")
    assert _run(multi, ids).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]
    count = CategoryEncoding(num_tokens=4, output_mode="count")
    assert _run(count, ids).tolist() == [[1, 1, 0, 0], [2, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]
    assert CategoryEncoding(4, "one_hot").compute_output_shape((1,)) == (4,)
    assert CategoryEncoding(4, "one_hot").compute_output_shape((3,)) == (3, 4)
    assert CategoryEncoding(4).compute_output_shape((3, 5)) == (3, 4)
    assert CategoryEncoding(4, "binary").output_mode == "multi_hot"
    assert _run(one, np.array([[5.0], [-1.0]], np.float32)).tolist() == [[0] * 4] * 2


# --- image augmentation ----------------------------------------------------------------------

IMAGES = RNG.normal(size=(16, 5, 4, 2)).astype(np.float32)


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_half_the_images_in_training_only(mode):
    layer = RandomFlip(mode, seed=3)
    assert np.array_equal(_run(layer, IMAGES), IMAGES)
    out = _run(layer, IMAGES, training=True, step=1)
    flipped = IMAGES
    if mode != "vertical":
        flipped = flipped[:, :, ::-1]
    if mode != "horizontal":
        flipped = flipped[:, ::-1]
    draws = sg.function([], sg.random.uniform((16, 1, 1, 1), 3, np.int64(1)))()
    want = np.where(draws <= 0.5, flipped, IMAGES)  # Keras's draw: uniform <= 0.5
    np.testing.assert_array_equal(out, want)
    assert 0 < (draws <= 0.5).sum() < 16
    np.testing.assert_array_equal(_run(layer, IMAGES, training=True, step=1, backend="numba"),
                                  out)
    assert not np.array_equal(_run(layer, IMAGES, training=True, step=2), out)
    again = RandomFlip.from_config(layer.get_config() | {"name": "again"})
    np.testing.assert_array_equal(_run(again, IMAGES, training=True, step=1), out)


def _lattice_index(k, size, fill_mode):
    """The input pixel position k of the extended axis reads (None: the fill value)."""
    if fill_mode == "reflect":
        k = k % (2 * size)
        return 2 * size - 1 - k if k >= size else k
    if fill_mode == "wrap":
        return k % size
    if fill_mode == "nearest":
        return min(max(k, 0), size - 1)
    return k if 0 <= k < size else None


def _translate(image, dy, dx, fill_mode, interpolation, fill_value):
    """Output (i, j) = the input at (i - dy, j - dx): bilinear over the 4 lattice neighbours or
    the nearest one (halves up), each read through fill_mode (float64)."""
    h, w, _ = image.shape
    out = np.zeros(image.shape)
    for i in range(h):
        for j in range(w):
            sy, sx = i - dy, j - dx
            if interpolation == "nearest":
                taps = [(int(np.floor(sy + 0.5)), int(np.floor(sx + 0.5)), 1.0)]
            else:
                y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - y0, sx - x0
                taps = [(y0, x0, (1 - fy) * (1 - fx)), (y0 + 1, x0, fy * (1 - fx)),
                        (y0, x0 + 1, (1 - fy) * fx), (y0 + 1, x0 + 1, fy * fx)]
            for ky, kx, weight in taps:
                a, b = _lattice_index(ky, h, fill_mode), _lattice_index(kx, w, fill_mode)
                value = fill_value if a is None or b is None else image[a, b]
                out[i, j] += weight * value
    return out


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "nearest", "constant"])
def test_random_translation_matches_a_per_pixel_reference(fill_mode, interpolation):
    layer = RandomTranslation((-0.4, 0.6), 0.5, fill_mode=fill_mode, interpolation=interpolation,
                              seed=5, fill_value=1.5)
    assert np.array_equal(_run(layer, IMAGES), IMAGES)
    out = _run(layer, IMAGES, training=True, step=2)
    draws = sg.function([], sg.random.uniform((16, 2), 5, np.int64(2)))().astype(np.float64)
    for n in range(16):
        dy = (-0.4 + draws[n, 0] * 1.0) * 5
        dx = (-0.5 + draws[n, 1] * 1.0) * 4
        want = _translate(IMAGES[n].astype(np.float64), dy, dx, fill_mode, interpolation, 1.5)
        np.testing.assert_allclose(out[n], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_run(layer, IMAGES, training=True, step=2, backend="numba"),
                                  out)


def test_random_translation_by_whole_pixels_shifts_the_image():
    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    layer = RandomTranslation((1 / 3, 1 / 3), (-0.5, -0.5), fill_mode="constant", seed=1)
    out = _run(layer, image, training=True)[0, :, :, 0]
    # one row down, two columns left; the uncovered cells take fill_value 0
    np.testing.assert_allclose(out, [[0, 0, 0, 0], [2, 3, 0, 0], [6, 7, 0, 0]], atol=1e-6)


# --- models ----------------------------------------------------------------------------------

def _layer(model, name):
    return next(layer for layer in model.layers if layer.name == name)


def _augmenting_model(adapt_on=None):
    set_random_seed(4)
    inputs = Input((6, 5, 2))
    norm = Normalization(name="norm")
    if adapt_on is not None:
        norm.adapt(adapt_on)
    h = RandomFlip("horizontal", name="flip")(norm(inputs))
    h = RandomTranslation(0.2, 0.2, name="shift")(h)
    h = Conv2D(3, 3, activation="relu")(h)
    out = Dense(1)(Flatten()(h))
    return Model(inputs, out)


def test_augmenting_model_trains_identically_on_numpy_and_numba():
    x = RNG.normal(2.0, 3.0, size=(24, 6, 5, 2)).astype(np.float32)
    y = RNG.normal(size=(24, 1)).astype(np.float32)
    results = []
    for backend in ("numpy", "numba"):
        model = _augmenting_model(adapt_on=x)
        model.compile(optimizer="adam", loss="mse", backend=backend)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1)
        results.append((history.history["loss"], model.predict(x, verbose=0)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-3, atol=1e-5)


def test_configs_and_save_load_keep_the_adapted_statistics(tmp_path):
    x = RNG.normal(2.0, 3.0, size=(24, 6, 5, 2)).astype(np.float32)
    y = RNG.normal(size=(24, 1)).astype(np.float32)
    model = _augmenting_model(adapt_on=x)
    for layer in model.layers:
        config = layer.get_config()
        assert json.loads(json.dumps(config)) == config
        assert type(layer).from_config(config).get_config() == config
    keys = {"height_factor", "width_factor", "fill_mode", "interpolation", "seed",
            "fill_value", "data_format"}
    assert keys <= set(_layer(model, "shift").get_config())
    assert {"axis", "mean", "variance", "invert"} <= set(_layer(model, "norm").get_config())
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    norm = _layer(loaded, "norm")
    np.testing.assert_array_equal(norm.mean.value, _layer(model, "norm").mean.value)
    assert norm.mean.value.std() > 0  # the adapted statistics, not zeros and ones
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    a = model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=2)
    b = loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=2)
    assert a.history == b.history  # the same augmentations: seeds and step counter saved


def test_discretization_and_category_encoding_feed_embedding_and_dense(tmp_path):
    inputs = Input((3,))
    ids = Discretization(bin_boundaries=[-1.0, 0.0, 1.0], name="bins")(inputs)
    emb = Flatten()(Embedding(4, 2)(ids))
    hot = CategoryEncoding(4, "count", name="counts")(
        Discretization(bin_boundaries=[-1.0, 0.0, 1.0])(inputs))
    out = Dense(1)(Concatenate()([emb, hot]))
    model = Model(inputs, out)
    assert _layer(model, "counts").output_shape == (4,)
    x = RNG.normal(size=(32, 3)).astype(np.float32)
    y = RNG.normal(size=(32, 1)).astype(np.float32)
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: Normalization(axis="last"), "axis must be an int"),
    (lambda: Normalization(mean=1.0), "both `mean` and `variance` must be set"),
    (lambda: Normalization(mean=[1.0, 2.0], variance=[1.0]), "must have the same shape"),
    (lambda: Normalization(mean=[[1.0]], variance=[[1.0]]), "rank of `mean`"),
    (lambda: Normalization(mean=0.0, variance=-1.0), "variance >= 0"),
    (lambda: Discretization(), "either `num_bins` or `bin_boundaries`"),
    (lambda: Discretization([0.0], num_bins=2), "Both `num_bins` and `bin_boundaries`"),
    (lambda: Discretization(num_bins=-1), "`num_bins` must be an int"),
    (lambda: Discretization([1.0, 0.0]), "increasing order"),
    (lambda: Discretization([0.0], output_mode="tf_idf"), "`output_mode`"),
    (lambda: Discretization([0.0], output_mode="one_hot", sparse=True), "sparse"),
    (lambda: Discretization(num_bins=3, epsilon=0.0), "epsilon"),
    (lambda: CategoryEncoding(), "num_tokens must be set"),
    (lambda: CategoryEncoding(0), "`num_tokens` must be >= 1"),
    (lambda: CategoryEncoding(3, output_mode="int"), "`output_mode`"),
    (lambda: RandomFlip("diagonal"), "mode must be one of"),
    (lambda: RandomFlip(data_format="channels_first"), "channels_last"),
    (lambda: RandomTranslation(1.5, 0.1), "Received: height_factor=1.5"),
    (lambda: RandomTranslation(0.1, (0.1, 0.2, 0.3)), "width_factor"),
    (lambda: RandomTranslation(0.1, 0.1, fill_mode="mirror"), "`fill_mode`"),
    (lambda: RandomTranslation(0.1, 0.1, interpolation="bicubic"), "`interpolation`"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(SymgraphError, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (Normalization(axis=3), (3, 4), "must be in the range"),
    (Normalization(mean=[1.0, 2.0], variance=[1.0, 1.0]), (3,), "do not broadcast"),
    (CategoryEncoding(4, "count"), (3, 2), "rank 2 or less"),
    (Discretization(num_bins=3, output_mode="one_hot"), (3,), "call adapt\\(\\)"),
    (RandomFlip(), (5, 4), "\\(batch, height, width, channels\\)"),
    (RandomTranslation(0.1, 0.1), (5,), "\\(batch, height, width, channels\\)"),
])
def test_bad_input_shapes_are_refused_and_leave_the_layer_unbuilt(layer, shape, match):
    with pytest.raises(SymgraphError, match=match):
        layer(Input(shape))
    assert not layer.built and layer.weights == [] and layer.calls == 0


def test_an_unadapted_discretization_is_refused_when_the_graph_is_built():
    model = Sequential([Input((3,)), Discretization(num_bins=3)])
    model.compile(loss="mse", backend="numpy")
    with pytest.raises(SymgraphError, match="call `adapt\\(dataset\\)`"):
        model.predict(np.zeros((2, 3), np.float32), verbose=0)
