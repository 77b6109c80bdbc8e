"""Conv1D/2D, pooling, global pooling, Reshape and Embedding layers: outputs against NumPy
references written here (sliding_window_view, Keras 3's padding formulas by hand), Keras's
output shapes and parameter counts, Sequential and functional models, saved weights, a small
CNN trained on real MNIST images, and the refusals."""

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from symgraph.data import mnist
from symgraph.errors import SymgraphError
from symgraph.nn import (
    AveragePooling1D,
    AveragePooling2D,
    Conv1D,
    Conv2D,
    Dense,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    Input,
    MaxPooling1D,
    MaxPooling2D,
    Model,
    Reshape,
    Sequential,
    optimizers,
    regularizers,
    set_random_seed,
)
from symgraph.nn.constraints import MaxNorm

RNG = np.random.default_rng(5)


def same_pad(size, kernel, stride, dilation=1):
    span = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def np_conv2d(x, k, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """Keras's Conv2D (no bias) through sliding windows: (n, oh, ow, c, kh, kw) x kernel."""
    (kh, kw), (sh, sw), (dh, dw) = k.shape[:2], strides, dilation
    pads = [(0, 0), (0, 0)]
    if padding == "same":
        pads = [same_pad(x.shape[1], kh, sh, dh), same_pad(x.shape[2], kw, sw, dw)]
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    win = win[:, ::sh, ::sw, :, ::dh, ::dw]
    return np.einsum("nijcab,abcf->nijf", win, k)


def predict(model, x):
    return model.predict(x.astype(np.float32), verbose=0)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=(3, 2), strides=2, padding="same"),
    dict(kernel_size=(2, 3), strides=(1, 2), padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=1),
])
def test_conv2d_layer_matches_numpy_with_bias_and_activation(kwargs):
    layer = Conv2D(4, activation="relu", bias_initializer="random_normal", **kwargs)
    model = Sequential([Input((7, 8, 3)), layer])
    x = RNG.standard_normal((5, 7, 8, 3)).astype(np.float32)
    kernel, bias = layer.get_weights()
    assert kernel.shape == layer.kernel_size + (3, 4) and bias.shape == (4,)
    pad = kwargs.get("padding", "valid")
    want = np.maximum(np_conv2d(x, kernel, layer.strides, pad, layer.dilation_rate) + bias, 0)
    assert layer.output_shape == want.shape[1:]
    np.testing.assert_allclose(predict(model, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_conv1d_layer_matches_numpy(padding):
    layer = Conv1D(3, 3, padding=padding, dilation_rate=2, use_bias=False)
    model = Sequential([Input((9, 2)), layer])
    x = RNG.standard_normal((4, 9, 2)).astype(np.float32)
    (kernel,) = layer.get_weights()
    assert kernel.shape == (3, 2, 3)
    left, right = {"valid": (0, 0), "same": same_pad(9, 3, 1, 2), "causal": (4, 0)}[padding]
    xp = np.pad(x, [(0, 0), (left, right), (0, 0)])
    want = sum(xp[:, 2 * a: 2 * a + xp.shape[1] - 4] @ kernel[a] for a in range(3))
    np.testing.assert_allclose(predict(model, x), want, rtol=1e-5, atol=1e-5)


def test_pooling_layers_match_numpy():
    x = RNG.standard_normal((3, 7, 6, 2)).astype(np.float32)
    win = sliding_window_view(x[:, :6], (2, 2), axis=(1, 2))[:, ::2, ::2]  # 'valid' drops row 6
    for layer, want in [(MaxPooling2D(), win.max(axis=(-2, -1))),
                        (AveragePooling2D(), win.mean(axis=(-2, -1))),
                        (GlobalAveragePooling2D(), x.mean(axis=(1, 2))),
                        (GlobalMaxPooling2D(), x.max(axis=(1, 2))),
                        (GlobalMaxPooling2D(keepdims=True), x.max(axis=(1, 2), keepdims=True))]:
        got = predict(Sequential([Input((7, 6, 2)), layer]), x)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=layer.name)
    # "same": ceil(7/2) rows, the last window holds one real row and divides by its 2 cells
    got = predict(Sequential([Input((7, 6, 2)), AveragePooling2D(padding="same")]), x)
    np.testing.assert_allclose(got[:, 3], x[:, 6].reshape(3, 3, 2, 2).mean(axis=2), rtol=1e-6)
    seq = RNG.standard_normal((3, 7, 2)).astype(np.float32)
    win1 = sliding_window_view(seq, 3, axis=1)[:, ::2]  # (3, 3, 2, 3): pool 3, strides 2
    for layer, want in [(MaxPooling1D(3, 2), win1.max(-1)),
                        (AveragePooling1D(3, 2), win1.mean(-1)),
                        (GlobalAveragePooling1D(), seq.mean(1)),
                        (GlobalMaxPooling1D(), seq.max(1))]:
        got = predict(Sequential([Input((7, 2)), layer]), seq)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=layer.name)


def test_reshape_and_embedding_match_numpy():
    x = RNG.standard_normal((4, 12)).astype(np.float32)
    np.testing.assert_array_equal(predict(Sequential([Input((12,)), Reshape((3, -1))]), x),
                                  x.reshape(4, 3, 4))
    emb = Embedding(10, 3)
    model = Sequential([Input((5,)), emb])
    ids = RNG.integers(0, 10, (4, 5))
    (table,) = emb.get_weights()
    assert np.abs(table).max() <= 0.05  # Keras's "uniform": RandomUniform(-0.05, 0.05)
    np.testing.assert_array_equal(predict(model, ids), table[ids])


def test_output_shapes_and_param_counts_are_keras():
    model = Sequential([
        Input((28, 28, 1)),
        Conv2D(32, 3, activation="relu"),                       # 3*3*1*32 + 32
        Conv2D(16, (5, 3), strides=2, padding="same"),          # 5*3*32*16 + 16
        MaxPooling2D(),
        AveragePooling2D(pool_size=3, strides=1, padding="same"),
        Conv2D(8, 2, dilation_rate=2, use_bias=False),          # 2*2*16*8
        GlobalAveragePooling2D(),
        Dense(10),                                              # 8*10 + 10
    ])
    assert [layer.output_shape for layer in model.layers] == [
        (26, 26, 32), (13, 13, 16), (6, 6, 16), (6, 6, 16), (4, 4, 8), (8,), (10,)]
    assert [layer.count_params() for layer in model.layers] == [320, 7696, 0, 0, 512, 0, 90]
    text = []
    model.summary(print_fn=text.append)
    assert "(None, 13, 13, 16)" in "\n".join(text) and "Total params: 8,618" in "\n".join(text)
    seq = Sequential([Input((100,)), Embedding(1000, 16), Conv1D(8, 5, strides=2),
                      MaxPooling1D(), GlobalMaxPooling1D(), Reshape((2, 4))])
    assert [layer.output_shape for layer in seq.layers] == [
        (100, 16), (48, 8), (24, 8), (8,), (2, 4)]
    assert [layer.count_params() for layer in seq.layers] == [16000, 648, 0, 0, 0]


def test_functional_model_and_saved_weights(tmp_path):
    def build():
        inputs = Input((8, 8, 1))
        a = Conv2D(4, 3, padding="same", activation="relu")(inputs)
        b = MaxPooling2D()(Conv2D(4, 3, padding="same")(a))
        return Model(inputs, Dense(2)(Flatten()(b)))

    set_random_seed(1)
    model = build()
    x = RNG.standard_normal((6, 8, 8, 1)).astype(np.float32)
    before = predict(model, x)
    model.save_weights(str(tmp_path / "cnn.weights.npz"))
    other = build()
    assert not np.allclose(predict(other, x), before)
    other.load_weights(str(tmp_path / "cnn.weights.npz"))
    np.testing.assert_array_equal(predict(other, x), before)


def test_kernel_regularizer_and_constraint():
    layer = Conv2D(2, 3, kernel_regularizer=regularizers.l2(0.5),
                   kernel_constraint=MaxNorm(0.1, axis=(0, 1, 2)), use_bias=False)
    model = Sequential([Input((5, 5, 1)), layer, Flatten()])
    model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="numpy")
    x = RNG.standard_normal((4, 5, 5, 1)).astype(np.float32)
    y = np.zeros((4, 18), np.float32)
    (kernel,) = layer.get_weights()
    out = np_conv2d(x, kernel).reshape(4, 18)
    want = np.mean(out ** 2) + 0.5 * np.sum(kernel ** 2)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), want, rtol=1e-5)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    norms = np.sqrt((layer.get_weights()[0] ** 2).sum(axis=(0, 1, 2)))
    assert np.all(norms <= 0.1 + 1e-6)


def test_small_cnn_learns_on_mnist():
    set_random_seed(0)
    (x_train, y_train), _ = mnist.load_data()
    x = x_train[:1024, :, :, None].astype(np.float32) / 255
    y = y_train[:1024]
    model = Sequential([Input((28, 28, 1)), Conv2D(8, 3, activation="relu"), MaxPooling2D(),
                        Flatten(), Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numba")
    start = model.evaluate(x, y, batch_size=256, verbose=0)[0]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0)
    loss, acc = model.evaluate(x, y, batch_size=256, verbose=0)
    assert start > 2.0 and loss < 0.5 * start and acc > 0.75, (start, loss, acc)


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(4, 0), "kernel_size must be a positive int"),
    (lambda: Conv2D(4, 3, padding="causal"), 'padding must be "valid" or "same"'),
    (lambda: Conv2D(4, 3, padding="full"), "got 'full'"),
    (lambda: Conv2D(4, 3, strides=2, dilation_rate=2), "strides > 1"),
    (lambda: Conv2D(4, 3, data_format="channels_first"), "channels_last"),
    (lambda: Conv2D(4, 3, groups=2), "groups=2"),
    (lambda: Conv2D(4, 3, activation="nope"), "nope"),
    (lambda: Conv1D(4, (3, 3)), "kernel_size"),
    (lambda: MaxPooling2D(padding="causal"), "padding must be"),
    (lambda: MaxPooling2D((2, 2, 2)), "pool_size"),
    (lambda: Reshape((2, -1, -1)), "at most one -1"),
    (lambda: Reshape(6), "target_shape"),
    (lambda: Embedding(0, 4), "input_dim"),
    (lambda: Embedding(10, 4, mask_zero=True), "mask_zero"),
])
def test_bad_layer_arguments_raise(make, message):
    with pytest.raises(SymgraphError, match=message):
        make()


@pytest.mark.parametrize("layer, shape, message", [
    (Conv2D(4, 3, name="c_rank"), (28, 28), r"c_rank' needs inputs of shape \(batch, height, "
                                            r"width, channels\), got \(None, 28, 28\)"),
    (Conv2D(4, 5, name="c_big"), (4, 6, 1), r"c_big'.*window \(5, 5\).*larger than the input "
                                            r"\(None, 4, 6, 1\) with padding 'valid'"),
    (Conv1D(4, 3, dilation_rate=3, name="c1"), (6, 2), "c1'.*larger than the input"),
    (MaxPooling2D(3, name="p_big"), (2, 8, 1), "p_big'.*larger than the input"),
    (GlobalAveragePooling2D(name="g"), (5, 3), "g' needs inputs of shape"),
    (Reshape((5, -1), name="r"), (12,), "r'.*total size of the new array must be unchanged"),
])
def test_bad_input_shapes_raise_and_build_nothing(layer, shape, message):
    with pytest.raises(SymgraphError, match=message):
        Sequential([Input(shape), layer])
    assert not layer.built and layer.weights == []


def test_embedding_trains_only_the_rows_it_reads():
    emb = Embedding(6, 2, embeddings_regularizer=None)
    model = Sequential([Input((3,)), emb, Flatten(), Dense(1)])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="numpy")
    before = emb.get_weights()[0]
    ids = np.array([[0, 1, 1], [3, 0, 1]], np.float32)  # rows 2, 4 and 5 are never read
    model.fit(ids, np.ones((2, 1), np.float32), epochs=1, batch_size=2, verbose=0)
    moved = np.any(emb.get_weights()[0] != before, axis=1)
    np.testing.assert_array_equal(moved, [True, True, False, True, False, False])


def test_conv_kernel_starts_glorot_uniform_over_the_receptive_field():
    layer = Conv2D(32, (3, 5))
    Sequential([Input((9, 9, 4)), layer])
    kernel, bias = layer.get_weights()
    limit = np.sqrt(6 / (3 * 5 * 4 + 3 * 5 * 32))  # Keras: fans times the kernel's area
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    np.testing.assert_array_equal(bias, np.zeros(32))


def test_conv_models_round_trip_through_model_save(tmp_path):
    """Every layer of this module has a JSON config that rebuilds it, and a saved model of
    them loads predicting bit for bit and trains on exactly as the original."""
    from symgraph.nn import load_model

    set_random_seed(4)
    image = Sequential([Input((8, 8, 2)),
                        Conv2D(3, (3, 2), strides=2, padding="same", activation="relu",
                               kernel_regularizer=regularizers.l2(0.01),
                               kernel_constraint=MaxNorm(2.0)),
                        MaxPooling2D(), AveragePooling2D((1, 2), padding="same"),
                        Conv2D(4, 1, dilation_rate=1), GlobalMaxPooling2D(keepdims=True),
                        Reshape((-1,)), Dense(3, activation="softmax")])
    tokens = Input((6,))  # float ids, cast by Embedding (Input is float32 only)
    h = Embedding(10, 4, embeddings_regularizer=regularizers.l1(0.01))(tokens)
    h = Conv1D(5, 3, padding="causal", dilation_rate=2)(h)
    h = AveragePooling1D(2, strides=1)(MaxPooling1D(1)(h))
    h = GlobalAveragePooling1D()(h)
    sequence = Model(tokens, Dense(3, activation="softmax")(h))
    xs = [RNG.normal(size=(16, 8, 8, 2)).astype(np.float32),
          RNG.integers(0, 10, (16, 6)).astype(np.float32)]
    y = RNG.integers(0, 3, 16)
    for model, x in zip((image, sequence), xs):
        for layer in model.layers:
            config = layer.get_config()
            assert type(layer).from_config(config).get_config() == config
        model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      backend="numpy")
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=1)
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        again = load_model(path)
        np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
        for m in (model, again):
            m.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=2)
        for u, v in zip(again.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(u, v)
