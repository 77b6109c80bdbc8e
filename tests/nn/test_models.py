"""Sequential end to end: the seed snippet, fit/evaluate/predict semantics, weights files,
input errors, summary, diagnostics and the NaN guard."""

import os
import weakref

import numpy as np
import pytest

import symgraph as sg
from symgraph import nn
from symgraph.errors import SymgraphError
from symgraph.nn import (
    BatchNormalization,
    Dense,
    Dropout,
    Input,
    Sequential,
    optimizers,
    set_random_seed,
)

RNG = np.random.default_rng(2)


def _two_class(n=200):
    x = RNG.normal(size=(n, 2)).astype(np.float32)
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.float32)


def test_seed_snippet_verbatim_learns_two_blobs():
    set_random_seed(3)
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-1.5, 1, (100, 2)), rng.normal(1.5, 1, (100, 2))])
    y = np.repeat([0, 1], 100)
    # the seed material's snippet, unchanged but for the backend (tests run on NumPy)
    model = Sequential()
    model.add(Dense(4, input_dim=2, activation='relu'))
    model.add(Dense(1, activation='sigmoid'))
    model.compile(loss='binary_crossentropy', optimizer='adam', metrics=['accuracy'],
                  backend="numpy")
    model.fit(X, y, epochs=50, verbose=0)
    assert model.evaluate(X, y, verbose=0)[1] > 0.9


def test_wider_seed_model_learns_xor_quadrants():
    X, y = _two_class()
    model = Sequential()
    model.add(Dense(16, input_dim=2, activation='relu'))
    model.add(Dense(1, activation='sigmoid'))
    model.compile(loss='binary_crossentropy', optimizer=optimizers.Adam(0.02),
                  metrics=['accuracy'], backend="numpy")
    history = model.fit(X, y, epochs=50, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    loss, acc = model.evaluate(X, y, verbose=0)
    assert acc > 0.9
    pred = model.predict(X, verbose=0)
    assert pred.shape == (200, 1) and ((pred > 0.5)[:, 0] == y).mean() == pytest.approx(acc)


def test_fit_keras_semantics_validation_split_and_history():
    x = RNG.normal(size=(50, 4)).astype(np.float32)
    y = RNG.integers(0, 3, size=50)
    model = Sequential([Input((4,)), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy")
    seen = []
    real = model._check_x

    def spy(a):
        seen.append(len(a))
        return real(a)

    model._check_x = spy
    hist = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    assert sorted(hist.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert hist.params["steps"] == 3  # 40 training samples in batches of 16
    # validation is the *last* 20%: evaluating it alone reproduces val_loss of the last epoch
    val = model.evaluate(x[40:], y[40:], verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(hist.history["val_loss"][-1], rel=1e-5)
    assert len(model._functions) == 2  # one train step, one eval step for every batch size


def test_train_on_batch_and_categorical_targets():
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, size=8)]
    model = Sequential([Dense(3, input_dim=4, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"],
                  backend="numpy")
    loss, acc = model.train_on_batch(x, y)
    p = model.predict(x, verbose=0)
    assert 0 <= acc <= 1 and loss > 0
    # the reported loss is Keras's clipped-probability cross-entropy of the pre-step weights
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_test_on_batch_is_the_inference_loss_of_one_batch_and_changes_nothing(backend):
    from symgraph.nn import regularizers

    set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.normal(size=(6, 1)).astype(np.float32)
    model = Sequential([Dense(3, input_dim=4), BatchNormalization(), Dropout(0.5),
                        Dense(1, kernel_regularizer=regularizers.l2(0.01))])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], backend=backend)
    model.fit(x, y, epochs=2, batch_size=3, verbose=0)  # moving statistics away from 0 and 1
    state = [v.value.copy() for v in model.weights + model.optimizer.variables
             + [model.step_counter]]
    d1, bn, _, d2 = model.layers
    h = x @ d1.kernel.value + d1.bias.value  # inference: moving statistics, no dropout
    h = bn.gamma.value * (h - bn.moving_mean.value) / np.sqrt(bn.moving_variance.value + 1e-3) \
        + bn.beta.value
    err = h @ d2.kernel.value + d2.bias.value - y
    loss = np.mean(err ** 2) + 0.01 * np.sum(d2.kernel.value ** 2)  # Keras adds the penalty
    got = model.test_on_batch(x, y)
    assert got == pytest.approx([loss, np.mean(np.abs(err))], rel=1e-5)
    assert model.test_on_batch(x, y, return_dict=True) == pytest.approx(
        {"loss": loss, "mae": np.mean(np.abs(err))}, rel=1e-5)
    assert got == pytest.approx(model.evaluate(x, y, batch_size=6, verbose=0), rel=1e-6)
    for before, v in zip(state, model.weights + model.optimizer.variables + [model.step_counter]):
        np.testing.assert_array_equal(before, v.value)
    with pytest.raises(SymgraphError, match="test_on_batch: no samples"):
        model.test_on_batch(x[:0], y[:0])
    fresh = Sequential([Dense(1, input_dim=4)])
    with pytest.raises(SymgraphError, match="compile"):
        fresh.test_on_batch(x, y)


def test_save_load_round_trip(tmp_path):
    model = Sequential([Dense(5, input_dim=3, activation="relu"), BatchNormalization(),
                        Dense(2)])
    path = str(tmp_path / "w.npz")
    model.save_weights(path)
    saved = model.get_weights()
    model.set_weights([w + 1 for w in saved])
    model.load_weights(path)
    for a, b in zip(saved, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with np.load(path, allow_pickle=False) as data:
        assert data.files[0] == f"000/{model.layers[0].name}/kernel"


def test_load_wrong_shapes_changes_nothing(tmp_path):
    small = Sequential([Dense(5, input_dim=3), Dense(2)])
    other = Sequential([Dense(5, input_dim=3), Dense(4)])
    path = str(tmp_path / "w.npz")
    other.save_weights(path)
    before = small.get_weights()
    with pytest.raises(SymgraphError, match=r"shape \(5, 4\).*nothing was loaded"):
        small.load_weights(path)
    for a, b in zip(before, small.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SymgraphError, match="holds 4 weights but model .* has 3"):
        Sequential([Dense(5, input_dim=3, use_bias=False), Dense(2)]).load_weights(
            str(tmp_path / "w.npz"))
    with pytest.raises(SymgraphError, match="must end in .npz"):
        small.save_weights(str(tmp_path / "w.h5"))


def test_damaged_weight_files_raise_and_change_nothing(tmp_path):
    """Truncated, empty and bit-flipped archives, a .npy posing as .npz and a weight of a
    dtype the model cannot hold: a SymgraphError naming the file, no weight changed (the
    dtype check used to fail after the first weights were assigned)."""
    model = Sequential([Dense(5, input_dim=3), Dense(2)])
    path = tmp_path / "w.npz"
    model.save_weights(str(path))
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[data.index(b"\x93NUMPY") + 130] ^= 0xFF  # the first array's data: a bad CRC
    arrays = dict(np.load(path))
    last = sorted(arrays)[-1]
    arrays[last] = arrays[last].astype(np.complex64)
    damaged = {"truncated.npz": data[:len(data) // 2], "empty.npz": b"",
               "crc.npz": bytes(flipped)}
    for name, blob in damaged.items():
        (tmp_path / name).write_bytes(blob)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    np.savez(tmp_path / "complex.npz", **arrays)
    model.set_weights([w + 1 for w in model.get_weights()])
    before = model.get_weights()
    for name in [*damaged, "single.npz", "complex.npz"]:
        with pytest.raises(SymgraphError, match=rf"{name}.*nothing was loaded"):
            model.load_weights(str(tmp_path / name))
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_bad_inputs_name_layer_and_shapes_and_change_nothing():
    model = Sequential([Dense(3, input_dim=4, activation="softmax", name="clf")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match=r"'clf'.*\(None, 4\).*\(5, 6\)"):
        model.fit(np.zeros((5, 6)), np.zeros(5), verbose=0)
    with pytest.raises(SymgraphError, match=r"\[0, 3\).*'clf'.*from 0 to 7"):
        model.fit(np.zeros((5, 4)), np.array([0, 1, 2, 7, 1]), verbose=0)
    with pytest.raises(SymgraphError, match="5 samples but y has 4"):
        model.train_on_batch(np.zeros((5, 4)), np.zeros(4))
    with pytest.raises(SymgraphError, match="'clf'"):
        model.predict(np.zeros((2, 5)))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.value) == 0 and int(model.step_counter.value) == 0


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "32"])
def test_a_batch_size_that_is_no_positive_integer_is_refused(bad):
    """fit(batch_size=0) trained with 32 (`batch_size or 32`); now every entry point raises."""
    model = Sequential([Dense(2, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x, y = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    before = model.get_weights()
    for call in (lambda: model.fit(x, y, batch_size=bad, verbose=0),
                 lambda: model.evaluate(x, y, batch_size=bad, verbose=0),
                 lambda: model.predict(x, batch_size=bad, verbose=0)):
        with pytest.raises(SymgraphError, match="batch_size must be a positive integer"):
            call()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.predict(x, batch_size=np.int64(3), verbose=0).shape == (4, 2)


def test_fit_and_evaluate_without_samples_raise(capsys):
    """fit on no rows (or a validation_split that leaves none) printed a NaN report naming a
    div node; evaluate returned [nan, 0.0]."""
    model = Sequential([Dense(2, input_dim=3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy")
    x, y = np.ones((32, 3), np.float32), np.zeros(32, np.int32)
    with pytest.raises(SymgraphError, match="fit: no training samples"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(SymgraphError, match="after validation_split=0.99"):
        model.fit(x, y, validation_split=0.99, verbose=0)
    with pytest.raises(SymgraphError, match="evaluate: no samples"):
        model.evaluate(x[:0], y[:0], verbose=0)
    assert capsys.readouterr().err == ""
    assert model.predict(x[:0], verbose=0).shape == (0, 2)


def test_nan_report_names_the_layer_of_a_node_a_pass_rebuilt(capsys):
    """The overflowing matmul of a softmax layer is rebuilt by the optimizer (the softmax and
    cross-entropy fuse to logits): its id lies outside the recorded ranges, and the report
    named no layer. The rewrite keeps the part tag, which names it."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 20)).astype(np.float32), rng.integers(0, 10, 64)
    model = Sequential([Dense(32, input_dim=20, activation="relu", name="hid"),
                        Dense(10, activation="softmax", name="out")])
    model.compile(optimizer=optimizers.SGD(1e12), loss="sparse_categorical_crossentropy",
                  backend="numpy")
    hist = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert "first produced by matmul node" in hist.nan_report
    assert hist.nan_report.endswith("it belongs to layer 'out' (forward)")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_nan_sample_hidden_by_relu_is_never_trained_on(backend):
    """relu(NaN) is 0, so the loss stays finite while the kernel's gradient is NaN: the guard
    on the loss let the step poison the weights. fit now refuses such a batch unrun."""
    def make():
        nn.set_random_seed(0)
        m = Sequential([Dense(4, input_dim=3, activation="relu"), Dense(2)])
        m.compile(optimizer=optimizers.SGD(0.01, momentum=0.9), loss="mse", backend=backend)
        return m

    def state(m):
        return [v.value for v in m.weights + m.optimizer.variables + [m.step_counter]]
    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    y = np.ones((12, 2), np.float32)
    two = make()
    two.fit(x[:8], y[:8], epochs=1, batch_size=4, shuffle=False, verbose=0)
    x[9, 1] = np.nan
    model = make()
    hist = model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert hist.nan_report == "training sample 9 holds NaN (at (1,)); the step was not run"
    for a, b in zip(state(two), state(model)):
        np.testing.assert_array_equal(a, b)


def test_nan_guard_stops_and_names_first_nan_node(capsys):
    x = np.ones((4, 2), np.float32)
    model = Sequential([Dense(2, input_dim=2), Dense(1)])
    # a huge learning rate overflows float32 within a few steps
    model.compile(optimizer=optimizers.SGD(1e30), loss="mse", backend="numpy")
    hist = model.fit(x, np.full((4, 1), 1e20, np.float32), epochs=5, batch_size=4, verbose=0)
    assert hist.nan_report is not None and "first produced by" in hist.nan_report
    # the poisoned step was undone: the weights are the last finite ones
    assert np.isfinite(np.concatenate([w.ravel() for w in model.get_weights()])).all()
    assert len(hist.epoch) < 5
    assert "Training stopped" in capsys.readouterr().err


def test_nan_guard_names_the_layer():
    model = Sequential([Dense(1, input_dim=2, name="logger", activation=lambda v: sg.log(v),
                              kernel_initializer="ones", bias_initializer="zeros")])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    before = model.get_weights()
    hist = model.fit(-np.ones((4, 2), np.float32), np.zeros((4, 1)), epochs=2, verbose=0)
    assert "NaN first produced by log node" in hist.nan_report
    assert "layer 'logger' (forward)" in hist.nan_report
    assert hist.epoch == [] and int(model.optimizer.iterations.value) == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_on_numba_writes_in_place_and_its_guard_still_undoes_nothing():
    """fit's NaN guard lives in the step (an update keeps its old value when the loss is not
    finite), so fit holds no copy of the state and the Numba backend writes it in place."""
    model = Sequential([Dense(3, input_dim=2, name="d", kernel_initializer="ones")])
    model.compile(optimizer="adam", loss="mse", backend="numba")
    kernel = model.layers[0].trainable_weights[0]
    first = weakref.ref(kernel._host)
    x, y = np.ones((8, 2), np.float32), np.zeros((8, 3), np.float32)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert kernel._host is first()  # the same array, written in place four times
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit(np.full((8, 2), np.nan, np.float32), y, batch_size=4, verbose=0)
    assert hist.nan_report is not None
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the poisoned step changed nothing


def test_diagnostics_record_gradient_norms_and_dead_relus():
    x = RNG.normal(size=(64, 4)).astype(np.float32)
    y = RNG.normal(size=(64, 1)).astype(np.float32)
    model = Sequential([Dense(6, input_dim=4, activation="relu", name="hid",
                              bias_initializer="zeros"), Dense(1, name="out")])
    k, b = model.layers[0].get_weights()
    model.layers[0].set_weights([k, np.array([-100, -100, 0, 0, 0, 0], np.float32)])
    model.compile(optimizer=optimizers.SGD(0.001), loss="mse", backend="numpy")
    hist = model.fit(x, y, epochs=2, verbose=0, diagnostics=True)
    assert hist.history["dead_relu/hid"][0] == pytest.approx(2 / 6)
    assert len(hist.history["grad_norm/out"]) == 2 and hist.history["grad_norm/out"][0] > 0
    # the output layer's gradient norm equals the norm computed by hand on one full batch
    model2 = Sequential([Dense(1, input_dim=4, name="solo", kernel_initializer="zeros")])
    model2.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="numpy")
    h2 = model2.fit(x, y, batch_size=64, epochs=1, verbose=0, diagnostics=True, shuffle=False)
    gk = -2 * x.T @ y / 64
    gb = -2 * y.sum() / 64
    assert h2.history["grad_norm/solo"][0] == pytest.approx(np.sqrt((gk ** 2).sum() + gb ** 2),
                                                            rel=1e-4)


def test_dropout_training_is_reproducible_and_differs_per_step():
    x = np.ones((4, 10), np.float32)
    model = Sequential([Dropout(0.5, input_shape=(10,), seed=3), Dense(1, use_bias=False,
                                                                      kernel_initializer="ones")])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="numpy")
    a = model.train_on_batch(x, np.zeros((4, 1)))
    b = model.train_on_batch(x, np.zeros((4, 1)))
    assert a != b and int(model.step_counter.value) == 2
    model.step_counter.value = np.int64(0)
    assert model.train_on_batch(x, np.zeros((4, 1))) == a
    np.testing.assert_allclose(model.predict(x, verbose=0), 10.0)  # inference: identity


def test_summary_format(capsys):
    model = Sequential([Dense(64, input_dim=784, activation="relu", name="dense_s"),
                        BatchNormalization(name="bn_s"), Dense(10, name="out_s")])
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "' in text and "Layer (type)" in text and "Param #" in text
    assert "dense_s (Dense)" in text and "(None, 64)" in text and "50,240" in text
    total = 50240 + 256 + 650
    assert f"Total params: {total:,} ({total * 4 / 1024:.2f} KB)" in text
    assert "Non-trainable params: 128 (512.00 B)" in text


def test_verbose_output_formats(capsys):
    x = RNG.normal(size=(64, 3)).astype(np.float32)
    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    model.fit(x, x[:, :1], epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[1].startswith("2/2 - ") and "/step - loss: " in out[1]
    model.fit(x, x[:, :1], epochs=1, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("2/2 ━━━━━━━━━━━━━━━━━━━━ ") and " - loss: " in out[1]


def test_compile_required_and_unknown_names():
    model = Sequential([Dense(1, input_dim=2)])
    with pytest.raises(SymgraphError, match="compile"):
        model.fit(np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(SymgraphError, match="unknown loss"):
        model.compile(loss="hinge2")
    with pytest.raises(SymgraphError, match="unknown activation"):
        Dense(3, activation="relu7")


def test_auto_backend_falls_back_to_numpy_when_a_step_cannot_compile():
    x = np.ones((4, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    model._auto_backend, model.backend = True, "no-such-backend"  # as if auto had picked it
    with pytest.warns(RuntimeWarning, match="using the numpy backend"):
        model.fit(x, x[:, :1], verbose=0)
    assert model.backend == "numpy"
    explicit = Sequential([Dense(1, input_dim=2)])
    explicit.compile(optimizer="sgd", loss="mse", backend="numpy")
    explicit.backend = "no-such-backend"  # an explicit choice never falls back silently
    with pytest.raises(SymgraphError, match="unknown backend"):
        explicit.fit(x, x[:, :1], verbose=0)


def test_training_step_gradient_matches_finite_differences_float64():
    """SGD(lr=1) moves each weight by exactly its gradient: compare with central differences
    of the evaluated loss (float64 weights; the model has no dropout/BN, so training and
    evaluation compute the same loss)."""
    from symgraph.nn import PReLU, regularizers

    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    y = rng.integers(0, 4, size=6)
    model = Sequential([Dense(5, input_dim=3, activation="tanh", dtype="float64",
                              kernel_regularizer=regularizers.l2(0.01)),
                        PReLU(dtype="float64", alpha_initializer="ones"),
                        Dense(4, activation="softmax", dtype="float64")])
    model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy",
                  backend="numpy")
    weights = model.get_weights()
    numeric = []
    for i, w in enumerate(weights):
        g = np.zeros_like(w)
        for j in range(w.size):
            for sign in (1, -1):
                trial = [a.copy() for a in weights]
                trial[i].flat[j] += sign * 1e-6
                model.set_weights(trial)
                g.flat[j] += sign * model.evaluate(x, y, batch_size=6, verbose=0) / 2e-6
        numeric.append(g)
    model.set_weights(weights)
    model.train_on_batch(x, y)
    for w0, w1, g in zip(weights, model.get_weights(), numeric):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_accuracy_follows_keras_shape_rules_for_other_losses(backend):
    # Keras picks binary accuracy for one output unit whatever the loss (an argmax over one
    # column always matched: accuracy was 1.0 on any labels)
    x = RNG.normal(size=(10, 3)).astype(np.float32)
    y = (RNG.random((10, 1)) > 0.5).astype(np.float32)
    model = Sequential([Dense(1, input_dim=3, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="mse", metrics=["accuracy"], backend=backend)
    p = model.predict(x, verbose=0)
    for labels in (y, 1 - y):
        want = ((p > 0.5) == labels).mean()
        assert model.evaluate(x, labels, verbose=0)[1] == pytest.approx(want)
    wide = Sequential([Dense(3, input_dim=3)])
    wide.compile(optimizer="sgd", loss="mse", metrics=["accuracy"], backend=backend)
    onehot = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, 10)]
    want = (wide.predict(x, verbose=0).argmax(1) == onehot.argmax(1)).mean()
    assert wide.evaluate(x, onehot, verbose=0)[1] == pytest.approx(want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_custom_metrics_are_averaged_per_sample_as_keras_does(backend):
    x = RNG.normal(size=(10, 3)).astype(np.float32)
    y = RNG.normal(size=(10, 3)).astype(np.float32)

    def batch_mae(yt, yp):  # averages the batch itself, as most Keras custom metrics do
        return sg.mean(sg.abs(yt - yp))

    def elementwise_mae(yt, yp):  # (batch, 3): averaged over the trailing axis first
        return sg.abs(yt - yp)

    model = Sequential([Dense(3, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse", metrics=[batch_mae, elementwise_mae],
                  backend=backend)
    want = np.abs(model.predict(x, verbose=0) - y).mean()
    got = model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    assert got["batch_mae"] == pytest.approx(want, rel=1e-5)
    assert got["elementwise_mae"] == pytest.approx(want, rel=1e-5)


def test_missing_targets_and_malformed_arguments_raise_symgraph_errors():
    x = np.ones((4, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    with pytest.raises(SymgraphError, match="metrics=\\['mae'\\]"):
        model.compile(optimizer="sgd", loss="mse", metrics="mae", backend="numpy")
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    weights = model.get_weights()
    with pytest.raises(SymgraphError, match="targets y are missing"):
        model.fit(x, verbose=0)
    with pytest.raises(SymgraphError, match="targets y are missing"):
        model.evaluate(x, verbose=0)
    with pytest.raises(SymgraphError, match="validation_data must be a tuple"):
        model.fit(x, x[:, :1], validation_data=(x,), verbose=0)
    with pytest.raises(SymgraphError, match=r"validation_data's sample weights .* shape \(4,\)"):
        model.fit(x, x[:, :1], validation_data=(x, x[:, :1], np.ones(3)), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_malformed_data_arguments_and_weight_paths_raise_symgraph_errors(tmp_path):
    x, labels = np.zeros((20, 4), np.float32), np.arange(20) % 10
    model = Sequential([Dense(10, input_dim=4, activation="softmax", name="clf")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    weights = model.get_weights()
    for args, kwargs, expected in [
            ((x, labels.astype(str)), {}, "targets y must be numeric, got dtype <U"),
            (([[1, 2], [3]], labels), {}, "model inputs x must be a rectangular"),
            ((x, labels), {"epochs": "2"}, "epochs must be a non-negative integer, got '2'"),
            ((x, labels), {"callbacks": 3}, "callbacks must be a list"),
            ((x, labels), {"callbacks": [print]}, "Callback instances, got builtin")]:
        with pytest.raises(SymgraphError, match=expected):
            model.fit(*args, verbose=0, **kwargs)
    with pytest.raises(SymgraphError, match="filepath must be a str or path, got NoneType"):
        model.load_weights(None)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(SymgraphError, match="dir.npz: it is a directory"):
        model.save_weights(str(tmp_path / "dir.npz"))
    assert sorted(os.listdir(tmp_path)) == ["dir.npz"]  # no temporary left behind
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    # a key another writer numbered oddly sorts first instead of failing int()
    kernel, bias = np.ones((4, 10), np.float32), np.full(10, 2.0, np.float32)
    np.savez(tmp_path / "odd.npz", **{"0a/clf/kernel": kernel, "001/clf/bias": bias})
    model.load_weights(str(tmp_path / "odd.npz"))
    np.testing.assert_array_equal(model.get_weights()[0], kernel)
    np.testing.assert_array_equal(model.get_weights()[1], bias)


def test_an_unbuilt_model_fed_one_dimensional_x_names_the_layer_and_stays_unbuilt():
    model = Sequential([Dense(1, name="out")])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    with pytest.raises(SymgraphError, match="Dense 'out' needs inputs with a feature axis"):
        model.fit(np.zeros(8, np.float32), np.zeros(8, np.float32), verbose=0)
    assert not model.built and model.input_shape is None
    model.fit(np.zeros((8, 1), np.float32), np.zeros(8, np.float32), verbose=0)
    assert model.input_shape == (1,)


@pytest.mark.parametrize("optimizer, n_opt", [("adam", 2 * 7850 + 2), ("sgd", 2)])
def test_summary_counts_the_built_optimizer_in_the_total_as_keras(optimizer, n_opt):
    """Keras 3 after one fit of Dense(784 -> 10): Adam 'Total params: 23,552 (92.00 KB)' with
    'Optimizer params: 15,702' (m, v, iterations, learning rate); plain SGD 'Optimizer params: 2'."""
    model = Sequential([Dense(10, input_dim=784)])
    model.compile(optimizer=optimizer, loss="mse", backend="numpy")
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 7,850 (30.66 KB)" in lines[0] and "Optimizer params" not in lines[0]
    model.fit(np.ones((4, 784), np.float32), np.ones((4, 10), np.float32), verbose=0)
    model.summary(print_fn=lines.append)
    total = 7850 + n_opt
    assert f"Total params: {total:,} ({total * 4 / 1024:.2f} KB)" in lines[1]
    assert f"Optimizer params: {n_opt:,} (" in lines[1]


@pytest.mark.parametrize("bad", [dict(loss_weights="half"), dict(weighted_metrics=["nope"]),
                                 dict(metrics=["nope"]), dict(backend="nope")])
def test_a_refused_compile_leaves_the_compiled_model_as_it_was(bad):
    x = np.ones((4, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    model.fit(x, x[:, :1], verbose=0)
    optimizer, loss, functions = model.optimizer, model.loss, model._functions
    with pytest.raises(SymgraphError):
        model.compile(optimizer="sgd", loss="mae", **bad)
    assert model.optimizer is optimizer and model.loss is loss and model._functions is functions
    assert model.backend == "numpy"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_metric_of_one_value_per_batch_is_the_mean_of_the_batch_values_as_keras(backend):
    """Keras 3's Mean counts a scalar once (num_samples = 1): with a partial last batch the
    epoch value is the plain mean of the batch values, not weighted by the batch sizes."""
    x = RNG.normal(size=(10, 3)).astype(np.float32)
    y = RNG.normal(size=(10, 1)).astype(np.float32)

    def batch_max_error(yt, yp):
        return sg.max(sg.abs(yt - yp))

    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", metrics=[batch_max_error],
                  backend=backend)
    error = np.abs(model.predict(x, verbose=0).astype(np.float64) - y)
    batches = [error[i:i + 4].max() for i in range(0, 10, 4)]  # batches of 4, 4 and 2
    got = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)["batch_max_error"]
    assert got == pytest.approx(np.mean(batches), rel=1e-5)
    history = model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    assert history.history["batch_max_error"][0] == pytest.approx(np.mean(batches), rel=1e-5)


def test_build_takes_keras_shapes_with_the_batch_dim_as_none():
    model = Sequential([Dense(3)])
    model.build((None, 7))  # as Keras users write it
    assert model.input_shape == (7,) and model.layers[0].kernel.shape == (7, 3)
    for bad in [(None, None), "ab", (0,), 5]:
        fresh = Sequential([Dense(3)])
        with pytest.raises(SymgraphError, match="build needs the input shape"):
            fresh.build(bad)
        assert not fresh.built


def test_bad_validation_arrays_are_named_as_the_validation_data():
    x = np.ones((4, 3), np.float32)
    model = Sequential([Dense(2, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    weights = model.get_weights()
    for vx, vy in [(np.ones((4, 5), np.float32), np.ones((4, 2))),
                   (x, np.ones((4, 7), np.float32))]:
        with pytest.raises(SymgraphError, match="^fit: validation_data: "):
            model.fit(x, np.ones((4, 2), np.float32), validation_data=(vx, vy), verbose=0)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
