"""The functional API (symgraph/nn/functional.py, symbolic.py, merging.py): Model(inputs,
outputs) against the equivalent Sequential and against hand NumPy forward passes and gradients;
shared layers, merge layers, weights files, summary, and every refused input."""

import re

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import (
    Add,
    Average,
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Input,
    InputLayer,
    Maximum,
    Maxout,
    Minimum,
    Model,
    Multiply,
    Sequential,
    Subtract,
    SymbolicTensor,
    optimizers,
    set_random_seed,
)

RNG = np.random.default_rng(11)


def _data(n=40, features=5, classes=3):
    x = RNG.normal(size=(n, features)).astype(np.float32)
    return x, RNG.integers(0, classes, size=n)


def _relu(a):
    return np.maximum(a, 0)


def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- against Sequential ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_chain_model_equals_sequential_in_predict_and_two_epochs_of_fit(backend):
    x, y = _data()
    seq = Sequential([Input((5,)), Dense(8, activation="relu"), Dense(3, activation="softmax")])
    inputs = Input((5,))
    outputs = Dense(3, activation="softmax")(Dense(8, activation="relu")(inputs))
    model = Model(inputs, outputs)
    model.set_weights(seq.get_weights())
    np.testing.assert_array_equal(model.predict(x, verbose=0), seq.predict(x, verbose=0))
    histories = []
    for m in (seq, model):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
        histories.append(m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=5).history)
    assert histories[0]["loss"] == pytest.approx(histories[1]["loss"], rel=1e-6)
    assert histories[0]["loss"][1] != histories[0]["loss"][0]  # the weights did move
    for a, b in zip(seq.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(seq.evaluate(x, y, verbose=0),
                                                            rel=1e-5)


def test_dropout_and_batchnorm_train_and_infer_as_in_sequential():
    """Same weights and seeds: training steps (dropout masks, batch statistics, moving-average
    updates) and inference (no dropout, moving statistics) agree with the Sequential."""
    x, y = _data(32)

    def stack():
        return [Dense(8), BatchNormalization(), Dropout(0.5, seed=3), Dense(3)]

    seq = Sequential([Input((5,))] + stack())
    layers = stack()
    h = inputs = Input((5,))
    for layer in layers:
        h = layer(h)
    model = Model(inputs, h)
    model.set_weights(seq.get_weights())
    for m in (seq, model):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    for _ in range(3):
        assert model.train_on_batch(x, y) == pytest.approx(seq.train_on_batch(x, y), rel=1e-6)
    moving_mean = layers[1].moving_mean.value
    assert np.abs(moving_mean).max() > 0  # the training steps moved the statistics
    np.testing.assert_allclose(moving_mean, seq.layers[1].moving_mean.value, rtol=1e-6)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(pred, seq.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pred, model.predict(x, verbose=0))  # no dropout at inference
    # inference by hand: moving statistics, dropout off
    k1, b1, gamma, beta, mean, var, k2, b2 = model.get_weights()
    h = (x @ k1 + b1 - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(pred, h @ k2 + b2, rtol=1e-4, atol=1e-5)


# --- against NumPy ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_residual_model_matches_a_numpy_forward_pass(backend):
    x, y = _data()
    inputs = Input(shape=(5,))
    h = Dense(6, activation="relu")(inputs)
    s = Dense(6, activation="tanh")(h)
    h2 = Add()([h, s])
    outputs = Dense(3, activation="softmax")(Concatenate()([h2, inputs]))
    model = Model(inputs=inputs, outputs=outputs, name="residual")
    assert model.name == "residual"
    k1, b1, k2, b2, k3, b3 = model.get_weights()
    a = _relu(x @ k1 + b1)
    expected = _softmax(np.concatenate([a + np.tanh(a @ k2 + b2), x], axis=1) @ k3 + b3)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", backend=backend)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    loss = -np.log(expected[np.arange(len(y)), y]).mean()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(loss, rel=1e-5)


def test_a_graph_with_merges_trains_alike_on_numba_and_numpy():
    x, y = _data()

    def model():
        inputs = Input((5,))
        h = Dense(6, activation="relu")(inputs)
        h = Multiply()([h, Dense(6, activation="sigmoid")(inputs)])
        return Model(inputs, Dense(3, activation="softmax")(Concatenate()([h, inputs])))

    models = [model(), model()]
    models[1].set_weights(models[0].get_weights())
    losses = []
    for m, backend in zip(models, ["numpy", "numba"]):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend)
        losses.append(m.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=1).history["loss"])
    assert models[1].backend == "numba"  # no fallback to numpy
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


MERGES = [
    (Add, 3, lambda a, b, c: a + b + c),
    (Subtract, 2, lambda a, b: a - b),
    (Multiply, 3, lambda a, b, c: a * b * c),
    (Average, 3, lambda a, b, c: (a + b + c) / 3),
    (Maximum, 3, lambda a, b, c: np.maximum(np.maximum(a, b), c)),
    (Minimum, 3, lambda a, b, c: np.minimum(np.minimum(a, b), c)),
]


@pytest.mark.parametrize("merge, n, reference", MERGES, ids=[m[0].__name__ for m in MERGES])
def test_merge_layers_match_numpy(merge, n, reference):
    x, _ = _data(features=4)
    inputs = Input((4,))
    branches = [Dense(3, use_bias=False) for _ in range(n)]
    model = Model(inputs, merge()([d(inputs) for d in branches]))
    parts = [x @ d.kernel.value for d in branches]
    assert model.output_shape == (3,)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference(*parts), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("axis", [-1, 2, 1, -2])
def test_concatenate_along_each_feature_axis_matches_numpy(axis):
    x = RNG.normal(size=(6, 2, 3)).astype(np.float32)
    inputs = Input((2, 3))
    a, b = Dense(4, use_bias=False), Dense(4, use_bias=False)
    model = Model(inputs, Concatenate(axis=axis)([a(inputs), b(inputs)]))
    expected = np.concatenate([x @ a.kernel.value, x @ b.kernel.value], axis=axis)
    assert model.output_shape == expected.shape[1:]
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_shared_layer_has_one_set_of_weights_and_its_gradient_sums_both_uses():
    """f = h1 + h2 with h1 = x W + b, h2 = h1 W + b; SGD(lr) moves W by lr times the hand
    gradient of the mean squared error, summed over both calls."""
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    y = RNG.normal(size=(8, 4)).astype(np.float32)
    shared = Dense(4)
    inputs = Input((4,))
    h1 = shared(inputs)
    model = Model(inputs, Add()([h1, shared(h1)]))
    assert [layer.name for layer in model.layers].count(shared.name) == 1
    assert len(model.weights) == 2 and model.count_params() == 20
    w, b = (v.astype(np.float64) for v in model.get_weights())
    a1 = x @ w + b
    f = a1 + (a1 @ w + b)
    g = 2 * (f - y) / f.size              # d loss / d f
    g1 = g + g @ w.T                      # d loss / d h1: directly and through the second call
    grad_w = x.T @ g1 + a1.T @ g
    grad_b = g1.sum(0) + g.sum(0)
    lr = 0.1
    model.compile(optimizer=optimizers.SGD(lr), loss="mse", backend="numpy")
    loss = model.train_on_batch(x, y)
    assert loss == pytest.approx(((f - y) ** 2).mean(), rel=1e-5)
    new_w, new_b = model.get_weights()
    np.testing.assert_allclose((w - new_w) / lr, grad_w, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose((b - new_b) / lr, grad_b, rtol=1e-3, atol=1e-5)


# --- order, names, weights files, summary ----------------------------------------------------

def test_layers_and_weights_follow_the_order_of_first_use():
    made_first, used_first = Dense(3, name="made_first"), Dense(3, name="used_first")
    inputs = Input((3,), name="x")
    model = Model(inputs, made_first(used_first(inputs)))
    assert [layer.name for layer in model.layers] == ["x", "used_first", "made_first"]
    assert isinstance(model.layers[0], InputLayer)
    assert model.weights == used_first.weights + made_first.weights


def test_weights_files_round_trip_and_a_sequential_file_loads_into_the_same_graph(tmp_path):
    x, y = _data()

    def residual():
        inputs = Input((5,))
        h = Dense(4, activation="relu")(inputs)
        return Model(inputs, Dense(3)(Add()([h, Dense(4)(h)])))

    model = residual()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save_weights(str(tmp_path / "w.npz"))
    other = residual()
    assert not np.allclose(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))

    seq = Sequential([Input((5,)), Dense(4, activation="relu"), Dense(3)])
    seq.save_weights(str(tmp_path / "seq.npz"))
    inputs = Input((5,))
    chain = Model(inputs, Dense(3)(Dense(4, activation="relu")(inputs)))
    chain.load_weights(str(tmp_path / "seq.npz"))
    np.testing.assert_array_equal(chain.predict(x, verbose=0), seq.predict(x, verbose=0))
    with pytest.raises(SymgraphError, match="holds 4 weights but model .* has 6"):
        residual().load_weights(str(tmp_path / "seq.npz"))


def test_training_state_resumes_exactly(tmp_path):
    x, y = _data()
    set_random_seed(4)

    def model():
        inputs = Input((5,))
        h = Dense(4, activation="relu")(inputs)
        m = Model(inputs, Dense(3)(Concatenate()([h, inputs])))
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy")
        return m

    first = model()
    first.fit(x, y, epochs=1, verbose=0, shuffle=False)
    first.save_training_state(str(tmp_path / "state.npz"))
    first.fit(x, y, epochs=1, verbose=0, shuffle=False)
    resumed = model()
    resumed.load_training_state(str(tmp_path / "state.npz"))
    resumed.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(first.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_summary_shows_connections_only_for_a_graph_that_is_not_a_chain():
    inputs = Input((5,), name="features")
    chain = Model(inputs, Dense(2, name="out")(Dense(4, name="hidden")(inputs)))
    lines = []
    chain.summary(print_fn=lines.append)
    assert "Connected to" not in lines[0]
    assert "features (InputLayer)" in lines[0] and "hidden (Dense)" in lines[0]

    shared = Dense(5, name="shared")
    h = shared(inputs)
    model = Model(inputs, Concatenate(name="joined")([h, shared(h)]))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text
    row = next(r for r in text.splitlines() if "shared (Dense)" in r)
    assert "features[0][0], shared[0][0]" in row and "30" in row  # two calls, one set of weights
    row = next(r for r in text.splitlines() if "joined (Concatenate)" in r)
    assert "(None, 10)" in row and "shared[0][0], shared[1][0]" in row
    assert "Total params: 30" in text


# --- refused inputs --------------------------------------------------------------------------

def test_a_shared_layer_on_another_shape_is_refused_and_records_nothing():
    shared = Dense(3)
    shared(Input((4,)))
    kernel = shared.kernel.value.copy()
    with pytest.raises(SymgraphError, match=r"Dense 'dense.*' was built for inputs \(None, 4\) "
                                            r"but is called on \(None, 5\).*test_functional.py"):
        shared(Input((5,)))
    assert shared.calls == 1
    np.testing.assert_array_equal(shared.kernel.value, kernel)
    with pytest.raises(SymgraphError, match=r"declares inputs \(None, 2\) but is called on"):
        Dense(3, input_shape=(2,))(Input((4,)))


def test_merge_shape_mismatches_are_refused_and_leave_the_layer_unbuilt():
    inputs = Input((4,))
    a, b = Dense(3)(inputs), Dense(2)(inputs)
    add = Add()
    with pytest.raises(SymgraphError, match=r"Add 'add.*' needs inputs whose shapes broadcast .*"
                                            r"; input 0 is \(None, 3\) but input 1 is "
                                            r"\(None, 2\)"):
        add([a, b])
    assert not add.built and add.calls == 0
    assert add([a, a]).shape == (None, 3)  # the same layer still works on a good call
    with pytest.raises(SymgraphError, match="Subtract .* takes exactly 2 inputs, got 3"):
        Subtract()([a, a, a])
    with pytest.raises(SymgraphError, match="called on a list of symbolic tensors"):
        Multiply()(a)
    wide = Dense(6)(Input((2, 3)))
    with pytest.raises(SymgraphError, match=r"agree on every other axis; input 0 is "
                                            r"\(None, 2, 6\) but input 1 is \(None, 3\)"):
        Concatenate()([wide, a])
    with pytest.raises(SymgraphError, match="axis=0 is not a feature axis"):
        Concatenate(axis=0)([a, a])
    with pytest.raises(SymgraphError, match="axis=-3 is not a feature axis"):
        Concatenate(axis=-3)([a, a])


def test_layers_called_on_what_is_not_a_symbolic_tensor_are_refused():
    # on arrays a layer computes its output now, as Keras's eager call (test_subclassing.py)
    dense = Dense(3)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(dense(x), x @ dense.kernel.value, rtol=1e-6)
    with pytest.raises(SymgraphError, match=r"the inputs of Dense .* must be numeric"):
        Dense(3)(np.array([["a", "b"]]))
    with pytest.raises(SymgraphError, match="Add .* was called on list"):
        Add()([Input((3,)), [1, 2, 3]])
    with pytest.raises(SymgraphError, match="InputLayer .* is not called on tensors"):
        InputLayer(shape=(3,))(Input((3,)))


@pytest.mark.parametrize("shape, dtype, message", [
    (784, "float32", "shape must be a tuple of positive integers"),
    ((None, 3), "float32", "shape must be a tuple of positive integers"),
    ((0,), "float32", "shape must be a tuple of positive integers"),
    ((2.5,), "float32", "shape must be a tuple of positive integers"),
    ((3,), "int32", "only dtype='float32'"),
])
def test_bad_inputs_are_refused(shape, dtype, message):
    with pytest.raises(SymgraphError, match=message):
        Input(shape, dtype=dtype)


def test_model_refuses_outputs_not_computed_from_its_inputs():
    inputs, other = Input((3,), name="given"), Input((3,), name="stray")
    out = Add()([Dense(3)(inputs), Dense(3)(other)])
    with pytest.raises(SymgraphError, match=r"output add.*\[0\]\[0\] .* depends on stray\[0\]\[0\]"
                                            r", the Input made at .*test_functional.py"):
        Model(inputs, out)
    with pytest.raises(SymgraphError, match="depends on stray"):
        Model(inputs, Dense(2)(other))


def test_model_refuses_non_symbolic_arguments():
    """Several inputs are tests/nn/test_functional_inputs.py's, several outputs
    tests/nn/test_functional_outputs.py's."""
    a, b = Input((3,)), Input((3,))
    out = Add()([a, b])
    with pytest.raises(SymgraphError, match="outputs must be symbolic tensors"):
        Model(a, [Dense(1)(a), np.ones(3)])
    with pytest.raises(SymgraphError, match="inputs must be symbolic tensors"):
        Model(np.ones((2, 3)), out)
    hidden = Dense(3)(a)
    with pytest.raises(SymgraphError, match=r"inputs must be what Input\(\) returns"):
        Model(hidden, Dense(1)(hidden))
    single = Model([a], [Dense(2)(a)])  # one-element lists are the tensor itself
    assert single.predict(np.ones((2, 3), np.float32), verbose=0).shape == (2, 2)


def test_model_refuses_duplicate_names():
    inputs = Input((3,))
    with pytest.raises(SymgraphError, match="two layers are named 'twin'"):
        Model(inputs, Dense(3, name="twin")(Dense(3, name="twin")(inputs)))


def test_sequential_keeps_input_and_refuses_merges_and_symbolic_tensors():
    model = Sequential([Input((4,)), Dense(2)])
    assert model.input_shape == (4,) and model.built
    with pytest.raises(SymgraphError, match="merges a list of inputs"):
        model.add(Add())
    with pytest.raises(SymgraphError, match="a symbolic tensor: build a functional Model"):
        model.add(Dense(3)(Input((4,))))
    with pytest.raises(SymgraphError, match="using a model as a layer"):
        model(Input((4,)))


def test_fit_errors_name_the_input_layer_and_the_layer_that_makes_the_output():
    """The output comes from a shared layer first used earlier (not the last in `layers`)."""
    shared = Dense(3, activation="softmax", name="head")
    inputs = Input((3,), name="pixels")
    h = Dense(3, name="middle")(shared(inputs))
    model = Model(inputs, shared(h))
    assert model.layers[-1].name == "middle"
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", backend="numpy")
    with pytest.raises(SymgraphError, match=r"layer 'pixels' \(InputLayer\).*\(None, 3\)"):
        model.fit(np.ones((4, 5)), np.zeros(4), verbose=0)
    with pytest.raises(SymgraphError, match=r"match layer 'head' output shape \(None, 3\)"):
        model.fit(np.ones((4, 3)), np.array([0, 1, 2, 7]), verbose=0)


def test_symbolic_tensors_record_shape_dtype_and_their_call():
    inputs = Input((4,), name="pixels")
    dense = Dense(2, name="proj")
    first, second = dense(inputs), dense(Input((4,)))
    assert isinstance(first, SymbolicTensor)
    assert (first.shape, first.dtype, first.layer, first.inputs) == ((None, 2), "float32", dense,
                                                                     (inputs,))
    assert (first.name, second.name) == ("proj[0][0]", "proj[1][0]")
    assert "proj[0][0] shape=(None, 2)" in repr(first)


def test_diagnostics_and_the_nan_guard_name_the_layers_of_the_graph():
    x = RNG.normal(size=(32, 4)).astype(np.float32)
    inputs = Input((4,))
    h = Dense(5, activation="relu", name="first")(inputs)
    model = Model(inputs, Dense(1, name="last")(Add()([h, Dense(5, name="skip")(h)])))
    model.compile(loss="mse", optimizer=optimizers.SGD(0.01), backend="numpy")
    logs = model.fit(x, x[:, :1], epochs=1, verbose=0, diagnostics=True).history
    assert sorted(k for k in logs if "/" in k) == ["dead_relu/first", "grad_norm/first",
                                                  "grad_norm/last", "grad_norm/skip"]
    model.compile(loss="mse", optimizer=optimizers.SGD(1e30), backend="numpy")
    history = model.fit(x, x[:, :1], epochs=3, verbose=0)
    assert len(history.history["loss"]) < 3
    assert re.search(r"it belongs to layer '(first|skip|last)' \(forward\)", history.nan_report)


def test_a_chain_that_reuses_a_layer_shows_its_connections():
    """Keras 3's print_summary treats a model with a shared layer as not sequential-like."""
    inputs = Input((4,), name="inp")
    twice = Dense(4, name="twice")
    lines = []
    Model(inputs, twice(twice(inputs))).summary(print_fn=lines.append)
    assert "Connected to" in lines[0]
    row = next(r for r in lines[0].splitlines() if "twice (Dense)" in r)
    assert "inp[0][0], twice[0][0]" in row


@pytest.mark.parametrize("axis", ["a", 1.5, True, None])
def test_concatenate_refuses_an_axis_that_is_not_an_integer(axis):
    with pytest.raises(SymgraphError, match="axis must be an integer"):
        Concatenate(axis=axis)


def test_merge_layers_ignore_a_declared_input_shape_as_keras_does():
    a = Input((3,))
    assert Add(input_shape=(3,))([a, a]).shape == (None, 3)
    assert Concatenate(input_dim=3)([a, a]).shape == (None, 6)


def test_class_weight_errors_name_the_output_layer_of_the_graph():
    inputs = Input((3,))
    head = Dense(3, activation="softmax", name="head")
    model = Model(inputs, head(Dense(3, name="mid")(head(inputs))))  # head first and last
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    with pytest.raises(SymgraphError, match="'head'"):
        model.fit(np.ones((4, 3), np.float32), np.zeros(4), class_weight={7: 2.0}, verbose=0)


def test_sequential_add_of_a_layer_built_for_another_shape_leaves_the_model_as_it_was():
    model = Sequential([Input((4,)), Dense(3, name="first")])
    other = Dense(2, name="other")
    other(Input((5,)))  # built for 5 features; the model gives it 3
    with pytest.raises(SymgraphError, match="'other'"):
        model.add(other)
    assert [layer.name for layer in model.layers] == ["first"] and model.built
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    assert model.predict(np.ones((2, 4), np.float32), verbose=0).shape == (2, 3)

    empty = Sequential()
    with pytest.raises(SymgraphError):
        empty.add(Maxout(3, input_shape=(4,)))  # 4 features do not split into 3 units
    assert empty.layers == [] and empty.input_shape is None
