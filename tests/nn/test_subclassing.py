"""Keras 3's subclassing API (symgraph/nn/calling.py, subclassed.py): custom layers written as
Keras writes them, checked against NumPy by hand, and subclassed models checked against the
same layers in a functional model."""

import numpy as np
import pytest

import symgraph as sg
from symgraph import nn
from symgraph.errors import SymgraphError
from symgraph.nn import BatchNormalization, Dense, Dropout, Input, Sequential
from symgraph.nn.serialization import _REGISTERED


class Linear(nn.Layer):
    """The Keras guide's Linear layer."""

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal",
                                 trainable=True)

    def call(self, inputs):
        return sg.matmul(inputs, self.w) + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class MLPBlock(nn.Layer):
    """The Keras guide's MLPBlock: sublayers assigned as attributes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.linear_1 = Linear(8)
        self.linear_2 = Linear(4)
        self.linear_3 = Linear(1)

    def call(self, inputs):
        x = sg.relu(self.linear_1(inputs))
        x = sg.relu(self.linear_2(x))
        return self.linear_3(x)


class Doubling(nn.Layer):
    """Doubles its inputs in training only (a Python branch on `training`)."""

    def call(self, inputs, training=None):
        return inputs * 2.0 if training else inputs


class ActivityPenalty(nn.Layer):
    """add_loss(rate * sum(x**2)), as the guide's ActivityRegularizationLayer."""

    def __init__(self, rate=1e-2, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * sg.sum(sg.square(inputs)))
        return inputs


def _data(n=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)[:d] + 0.3).astype(np.float32)


# --- custom layers ------------------------------------------------------------------------


def test_linear_layer_builds_on_first_call_and_matches_numpy():
    layer = Linear(4)
    assert not layer.built and layer.weights == []
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    y = layer(x)  # Keras's eager call: build((None, 3)), then the call on the arrays
    assert layer.built and layer.input_shape == (3,) and layer.output_shape == (4,)
    assert [tuple(v.shape) for v in layer.trainable_weights] == [(3, 4), (4,)]
    np.testing.assert_allclose(y, x @ layer.w.value + layer.b.value, rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 16


def test_add_weight_keras_signature_and_symgraph_positional_form():
    class Weights(nn.Layer):
        def build(self, input_shape):
            self.scalar = self.add_weight()  # Keras: no shape is a scalar, glorot_uniform
            self.kernel = self.add_weight((input_shape[-1], 2), "ones", name="kernel")
            self.count = self.add_weight(shape=(), dtype="int64", trainable=False,
                                         name="count")
            self.old = self.add_weight("old", (2,), "zeros", False)  # symgraph's own form

        def call(self, inputs):
            return inputs @ self.kernel + self.scalar

    layer = Weights()
    layer.build((None, 3))
    assert [n for n, _ in layer._weights] == ["variable", "kernel", "count", "old"]
    assert layer.scalar.shape == () and layer.count.dtype == "int64"
    assert layer.count.value == 0  # Keras: non-float weights start at zeros
    assert [v.name for v in layer.non_trainable_weights] == ["weights/count", "weights/old"]
    np.testing.assert_array_equal(layer.kernel.value, np.ones((3, 2)))


def test_mlp_block_owns_its_sublayers_weights_and_matches_numpy():
    block = MLPBlock()
    x = np.random.default_rng(2).normal(size=(6, 5)).astype(np.float32)
    y = block(x)
    assert [n for n, _ in block._weights] == [
        f"{layer.name}/{w}" for layer in (block.linear_1, block.linear_2, block.linear_3)
        for w in ("variable", "variable_1")]
    assert len(block.trainable_weights) == 6 and block.count_params() == (5 * 8 + 8) + (
        8 * 4 + 4) + (4 + 1)
    h = x
    for layer in (block.linear_1, block.linear_2):
        h = np.maximum(h @ layer.w.value + layer.b.value, 0)
    np.testing.assert_allclose(y, h @ block.linear_3.w.value + block.linear_3.b.value,
                               rtol=1e-5, atol=1e-6)
    block.trainable = False  # Keras: a layer's flag sets its sublayers'
    assert block.trainable_weights == [] and not block.linear_2.trainable
    assert len(block.non_trainable_weights) == 6


def test_add_loss_and_losses_after_a_call_on_arrays():
    class Outer(nn.Layer):
        def __init__(self):
            super().__init__()
            self.penalty = ActivityPenalty(0.5)
            self.dense = Dense(2, kernel_regularizer=nn.regularizers.L2(0.1))

        def call(self, inputs):
            return self.dense(self.penalty(inputs))

    layer = Outer()
    assert layer.losses == []  # never called
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    layer(x)
    kernel = layer.dense.kernel.value
    np.testing.assert_allclose(layer.losses, [0.5 * (x ** 2).sum(), 0.1 * (kernel ** 2).sum()],
                               rtol=1e-6)
    layer(x[:1])  # each call replaces the add_loss terms of the previous one
    np.testing.assert_allclose(layer.losses[0], 0.5 * (x[:1] ** 2).sum(), rtol=1e-6)


def test_add_loss_joins_the_training_and_evaluation_loss():
    class Penalized(nn.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(1, kernel_initializer="ones")
            self.penalty = ActivityPenalty(0.01)

        def call(self, inputs):
            return self.penalty(self.dense(inputs))

    x, y = _data()
    model = Penalized()
    model.compile(nn.optimizers.SGD(0.0), "mse", backend="numpy")
    out = x.sum(1, keepdims=True)
    expected = ((out - y) ** 2).mean() + 0.01 * (out ** 2).sum()
    assert model.evaluate(x, y, batch_size=len(x), verbose=0) == pytest.approx(expected, 1e-5)
    assert model.train_on_batch(x, y) == pytest.approx(expected, 1e-5)


def test_training_argument_is_a_python_bool_per_step():
    class Doubled(nn.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(1, use_bias=False, kernel_initializer="ones")
            self.doubling = Doubling()

        def call(self, inputs, training=None):
            return self.doubling(self.dense(inputs), training=training)

    x, y = _data()
    model = Doubled()
    model.compile(nn.optimizers.SGD(0.0), "mse", backend="numpy")
    out = x.sum(1, keepdims=True)
    assert model.train_on_batch(x, y) == pytest.approx(((2 * out - y) ** 2).mean(), 1e-5)
    assert model.evaluate(x, y, batch_size=64, verbose=0) == pytest.approx(
        ((out - y) ** 2).mean(), 1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), out, rtol=1e-6)


def test_keras_style_layers_in_sequential_and_functional_models_save_and_load(tmp_path):
    nn.register_serializable("test_subclassing")(Linear)
    try:
        x, y = _data()
        inputs = Input((3,))
        functional = nn.Model(inputs, Linear(1)(Linear(4)(inputs)))
        sequential = Sequential([Input((3,)), Linear(4), Linear(1)])
        for model in (functional, sequential):
            model.compile("adam", "mse", backend="numpy")
            model.fit(x, y, epochs=2, batch_size=8, verbose=0)
            path = str(tmp_path / f"{model.name}.keras")
            model.save(path)
            loaded = nn.load_model(path)
            np.testing.assert_allclose(loaded.predict(x, verbose=0),
                                       model.predict(x, verbose=0), rtol=1e-6)
            assert type(loaded.layers[-1]) is Linear
    finally:
        _REGISTERED.pop("test_subclassing>Linear", None)


# --- subclassed models --------------------------------------------------------------------


class Regressor(nn.Model):
    """Dense -> Dropout -> BatchNormalization -> Dense, as Keras's guide writes a model."""

    def __init__(self, units=8, seed=3, **kwargs):
        super().__init__(**kwargs)
        self.units, self.seed = units, seed
        self.hidden = Dense(units, activation="relu", kernel_initializer=_init(seed))
        self.dropout = Dropout(0.25, seed=seed)
        self.norm = BatchNormalization(momentum=0.9)
        self.out = Dense(1, kernel_initializer=_init(seed + 1))

    def call(self, inputs, training=None):
        h = self.dropout(self.hidden(inputs), training=training)
        return self.out(self.norm(h, training=training))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "seed": self.seed}


def _init(seed):
    return nn.initializers.GlorotUniform(seed=seed)


def _functional_twin(units=8, seed=3):
    """The same layers, initializers and seeds in a functional model."""
    inputs = Input((3,))
    h = Dense(units, activation="relu", kernel_initializer=_init(seed))(inputs)
    h = BatchNormalization(momentum=0.9)(Dropout(0.25, seed=seed)(h))
    return nn.Model(inputs, Dense(1, kernel_initializer=_init(seed + 1))(h))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_subclassed_model_trains_as_its_functional_twin(backend):
    x, y = _data(40)
    model, twin = Regressor(), _functional_twin()
    for m in (model, twin):
        m.compile(nn.optimizers.Adam(0.01), "mse", backend=backend)
        m.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    assert model.built and model.input_shape == (3,) and model.output_shape == (1,)
    assert model.backend == twin.backend == backend
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.norm.moving_mean.value, 0)  # the moving stats were updated
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_subclassed_model_layers_summary_and_weights_files(tmp_path):
    model = Regressor()
    with pytest.raises(SymgraphError, match="is not built yet.*model.build"):
        model.summary()
    assert model.layers == [model.hidden, model.dropout, model.norm, model.out]
    model.build((None, 3))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert f'Model: "{model.name}"' in text and "(None, 8)" in text
    assert "Total params: 73" in text  # 3*8+8 + 4*8 BN + 8+1
    assert "Trainable params: 57" in text and "Non-trainable params: 16" in text
    path = str(tmp_path / "w.npz")
    model.save_weights(path)
    other = Regressor(seed=11)
    with pytest.raises(SymgraphError, match="not built yet"):
        other.load_weights(path)
    other.build((3,))
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_built_by_calling_it_on_an_input():
    model, inputs = Regressor(), Input((3,))
    out = model(inputs)
    assert model.built and out.shape == (None, 1)
    with pytest.raises(SymgraphError, match="model used as a layer of a functional model"):
        nn.Model(inputs, out)


def test_save_and_load_a_registered_subclassed_model(tmp_path):
    nn.register_serializable("test_subclassing")(Regressor)
    try:
        x, y = _data()
        model = Regressor(units=6)
        model.compile("adam", "mse", backend="numpy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        path = str(tmp_path / "m.keras")
        model.save(path)
        loaded = nn.load_model(path)
        assert type(loaded) is Regressor and loaded.units == 6 and loaded.compiled
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   rtol=1e-6)
        for m in (loaded, model):  # the optimizer state came too: training goes on alike
            m.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
        for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    finally:
        _REGISTERED.pop("test_subclassing>Regressor", None)


def test_saving_a_subclassed_model_without_get_config_is_refused(tmp_path):
    class NoConfig(nn.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    model = NoConfig()
    model.build((None, 2))
    path = tmp_path / "m.keras"
    with pytest.raises(SymgraphError, match="define get_config"):
        model.save(str(path))
    assert not path.exists()


def test_several_inputs_as_a_list_or_a_dict():
    class TwoInputs(nn.Model):
        def __init__(self):
            super().__init__()
            self.a = Dense(2, kernel_initializer="ones")
            self.b = Dense(2, kernel_initializer="ones")

        def call(self, inputs):
            first, second = (inputs["left"], inputs["right"]) if isinstance(inputs, dict) \
                else inputs
            return self.a(first) - self.b(second)

    rng = np.random.default_rng(4)
    left, right = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    expected = np.repeat(left.sum(1, keepdims=True) - right.sum(1, keepdims=True), 2, axis=1)
    listed = TwoInputs()
    np.testing.assert_allclose(listed.predict([left, right], verbose=0), expected, rtol=1e-5)
    assert listed.input_shape == [(3,), (2,)]
    keyed = TwoInputs()
    np.testing.assert_allclose(keyed.predict({"right": right, "left": left}, verbose=0),
                               expected, rtol=1e-5)
    keyed.compile("sgd", "mse", backend="numpy")
    keyed.fit({"left": left, "right": right}, expected, epochs=1, verbose=0)


# --- refusals -----------------------------------------------------------------------------


def test_call_returning_no_tensor_is_refused_and_builds_nothing():
    class Broken(nn.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(2)

        def call(self, inputs):
            self.dense(inputs)
            return 3

    model = Broken()
    model.compile("adam", "mse", backend="numpy")
    with pytest.raises(SymgraphError, match=r"call\(\) returned int 3; it must return a tensor"):
        model.fit(np.ones((4, 2)), np.ones((4, 2)), verbose=0)
    assert not model.built and not model.dense.built and model.dense.weights == []


def test_custom_layer_whose_call_fails_is_left_unbuilt():
    class BadLayer(nn.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2))

        def call(self, inputs):
            return "not a tensor"

    layer = BadLayer()
    with pytest.raises(SymgraphError, match="BadLayer .* returned str"):
        layer.build((None, 3))
    assert not layer.built and layer.weights == []
    layer.call = lambda inputs: inputs @ layer.kernel  # fixed: it builds again from scratch
    layer.build((None, 3))
    assert [n for n, _ in layer._weights] == ["variable"]


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (None, 3)}, "fully defined shape"),
    ({"shape": 3}, "fully defined shape"),
    ({"shape": (2,), "name": "a/b"}, "without '/'"),
])
def test_bad_add_weight_arguments_are_refused(kwargs, message):
    class Layer(nn.Layer):
        def build(self, input_shape):
            self.add_weight(**kwargs)

        def call(self, inputs):
            return inputs

    layer = Layer()
    with pytest.raises(SymgraphError, match=message):
        layer.build((None, 2))
    assert not layer.built and layer.weights == []


def test_other_misuses_are_refused():
    class WeightInCall(nn.Layer):
        def call(self, inputs):
            return inputs * self.add_weight(shape=())

    with pytest.raises(SymgraphError, match="already built: create its weights"):
        WeightInCall()(np.ones((2, 2)))  # the build's trace is fine; the call itself is not
    with pytest.raises(SymgraphError, match=r"add_loss\(\) can only be called inside call"):
        ActivityPenalty().add_loss(sg.constant(np.float32(1)))

    class Early(nn.Layer):
        def __init__(self):
            self.dense = Dense(2)
            super().__init__()

    with pytest.raises(SymgraphError, match=r"call super\(\).__init__\(\) in __init__"):
        Early()
    with pytest.raises(SymgraphError, match="defines its layers in __init__"):
        type("FunctionalInit", (nn.Model,), {})(Input((2,)), Input((2,)))

    class Nested(nn.Model):
        def __init__(self):
            super().__init__()
            self.inner = Regressor()

    with pytest.raises(SymgraphError, match="a model inside a layer or model is not supported"):
        Nested()


def test_functional_models_are_keras_functional_and_old_files_still_load(tmp_path):
    inputs = Input((2,))
    model = nn.Model(inputs, Dense(1)(inputs))
    assert type(model) is nn.Functional and isinstance(model, nn.Model)
    rebuilt = nn.Model.from_config(model.get_config())  # older files name the class "Model"
    assert type(rebuilt) is nn.Functional
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in model.layers]


def test_layers_appended_to_a_list_or_dict_attribute_are_tracked_and_trained():
    class Appended(nn.Model):  # the tutorials' `self.blocks = []; self.blocks.append(...)`
        def __init__(self):
            super().__init__()
            self.blocks = []
            for _ in range(2):
                self.blocks.append(Dense(4, activation="relu"))
            self.heads = {}
            self.heads["out"] = Dense(1)

        def call(self, inputs):
            for block in self.blocks:
                inputs = block(inputs)
            return self.heads["out"](inputs)

    class Stack(nn.Layer):  # `layers` is an ordinary attribute name in a Layer, as in Keras
        def __init__(self):
            super().__init__()
            self.layers = [Dense(3), Dense(2)]

        def call(self, inputs):
            for layer in self.layers:
                inputs = layer(inputs)
            return inputs

    x, y = _data()
    model = Appended()
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    model.build((None, 3))
    assert model.layers == [*model.blocks, model.heads["out"]] and len(model.weights) == 6
    kernel = model.blocks[0].kernel.value.copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(kernel, model.blocks[0].kernel.value)
    stack = Stack()
    stack(x)
    assert len(stack.weights) == 4

    class Reserved(nn.Model):
        def __init__(self):
            super().__init__()
            self.layers = [Dense(1)]

    with pytest.raises(SymgraphError, match="`layers` is reserved"):
        Reserved()


def test_a_model_assigned_inside_a_custom_layer_is_refused():
    class Block(nn.Layer):  # the Keras Transformer example's feed-forward Sequential
        def __init__(self):
            super().__init__()
            self.ffn = Sequential([Dense(4), Dense(2)])

        def call(self, inputs):
            return self.ffn(inputs)

    class Heads(nn.Layer):
        def __init__(self):
            super().__init__()
            self.parts = [Dense(2), Sequential([Dense(1)])]

        def call(self, inputs):
            return inputs

    for cls in (Block, Heads):
        with pytest.raises(SymgraphError, match="a model inside a layer or model"):
            cls()


# --- Keras's bookkeeping of weights, penalties and shapes ---------------------------------


def _l2_dense(units=1):
    return Dense(units, use_bias=False, kernel_initializer="ones",
                 kernel_regularizer=nn.regularizers.L2(1.0))


def test_a_frozen_layer_adds_no_penalty_as_keras_sums_over_trainable_weights():
    class Block(nn.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d = _l2_dense()

        def call(self, inputs):
            return self.d(inputs)

    x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
    block = Block()
    block(x)
    assert [float(p) for p in block.losses] == [3.0]  # L2(1.0) of a (3, 1) kernel of ones
    block.trainable = False
    assert block.losses == [] and block.d.losses == []
    model = Sequential([Input((3,)), _l2_dense()])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    assert model.evaluate(x, y, verbose=0) == pytest.approx(9.0 + 3.0)  # mse of 3s, then + L2
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    assert model.evaluate(x, y, verbose=0) == pytest.approx(9.0)


class _TiedHead(nn.Layer):
    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, inputs):
        return self.dense(inputs)


class _Tied(nn.Model):
    """A layer held by two attributes (weight tying): directly and by the head."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = Dense(3, use_bias=False, kernel_initializer="ones",
                           kernel_regularizer=nn.regularizers.L2(1.0))
        self.head = _TiedHead(self.dense)

    def call(self, inputs):
        return self.head(self.dense(inputs))


def test_a_layer_shared_by_two_attributes_counts_and_trains_each_weight_once(tmp_path):
    model = _Tied()
    model.build((None, 3))
    assert len(model.weights) == len(model.trainable_weights) == 1
    assert model.count_params() == 9 and len(model.get_weights()) == 1
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    y = np.zeros((4, 3), np.float32)
    k = np.ones((3, 3))
    out = x @ k @ k
    model.compile(optimizer=nn.optimizers.SGD(0.01), loss="mse", backend="numpy")
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        ((out - y) ** 2).mean() + 9.0, rel=1e-5)  # the L2 penalty once
    # the tied kernel's gradient: through both uses, plus the penalty's 2k, once
    g = 2 * (out - y) / out.size
    grad = (x @ k).T @ g + x.T @ (g @ k.T) + 2 * k
    model.train_on_batch(x, y)
    np.testing.assert_allclose(model.get_weights()[0], k - 0.01 * grad, rtol=1e-5)
    model.save_weights(str(tmp_path / "tied.npz"))
    twin = _Tied()
    twin.build((None, 3))
    twin.load_weights(str(tmp_path / "tied.npz"))
    np.testing.assert_array_equal(twin.get_weights()[0], model.get_weights()[0])
    twin.set_weights([k])
    np.testing.assert_array_equal(twin.dense.kernel.value, k)


def test_calling_a_model_on_arrays_returns_its_outputs_as_keras():
    class Small(nn.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d = Dense(2)
            self.drop = Dropout(0.5)

        def call(self, inputs, training=None):
            return self.drop(self.d(inputs), training=training)

    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    model = Small()
    out = model(x)  # built from x, inference mode: no dropout
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(out, x @ kernel + bias, rtol=1e-5, atol=1e-6)
    dropped = model(x, training=True)
    kept = dropped != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(dropped[kept], 2 * (x @ kernel + bias)[kept], rtol=1e-5)
    # a functional model with a dict of inputs and two outputs gives a list, as predict
    a, b = Input((4,), name="a"), Input((1,), name="b")
    da, db = Dense(1, name="da"), Dense(1, name="db")
    fmodel = nn.Model({"a": a, "b": b}, [da(a), db(b)])
    xb = np.arange(5, dtype=np.float32)[:, None]
    out_a, out_b = fmodel({"a": x, "b": xb})
    np.testing.assert_allclose(out_a, x @ da.kernel.value + da.bias.value, rtol=1e-5)
    np.testing.assert_allclose(out_b, xb @ db.kernel.value + db.bias.value, rtol=1e-5)
    # a Sequential: inference uses the moving statistics; training=True updates them
    seq = Sequential([Input((4,)), BatchNormalization(momentum=0.9)])
    np.testing.assert_allclose(seq(x), x / np.sqrt(1 + 1e-3), rtol=1e-5)
    seq(x, training=True)
    np.testing.assert_allclose(seq.layers[0].moving_mean.value, 0.1 * x.mean(0), rtol=1e-5)


def test_built_in_layers_take_keras_shapes_with_the_batch_dim_in_build():
    class Outer(nn.Layer):
        def __init__(self, sub, **kwargs):
            super().__init__(**kwargs)
            self.sub = sub

        def build(self, input_shape):
            assert input_shape[0] is None  # Keras's shape, passed on as Keras code does
            self.sub.build(input_shape)

        def call(self, inputs):
            return self.sub(inputs)

    x = np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32)
    outer = Outer(Dense(2))
    np.testing.assert_allclose(outer(x), x @ outer.sub.kernel.value, rtol=1e-5, atol=1e-6)
    assert outer.sub.input_shape == (3,) and outer.sub.kernel.shape == (3, 2)
    conv = Outer(nn.Conv1D(2, 3))
    assert conv(np.ones((2, 8, 1), np.float32)).shape == (2, 6, 2)
    for layer, shape, built in [(Dense(2), (None, 3), (3,)), (nn.Activation("relu"), (None, 4), (4,)),
                                (nn.LSTM(2), (None, 5, 3), (5, 3)), (Dense(2), (3,), (3,)),
                                (nn.Add(), [(None, 3), (None, 3)], ((3,), (3,))),
                                (nn.Concatenate(), [(None, 2), (None, 3)], ((2,), (3,)))]:
        layer.build(shape)
        assert layer.input_shape == built, layer


def test_a_model_whose_own_build_skips_super_build_is_built_and_trains():
    seen = []

    class OwnBuild(nn.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d = Dense(1, kernel_initializer="ones")

        def build(self, input_shape):  # Keras code often builds its layers here, no super()
            seen.append(input_shape)
            self.d.build(input_shape)

        def call(self, inputs):
            return self.d(inputs)

    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    model = OwnBuild()
    model.compile(optimizer=nn.optimizers.SGD(0.1), loss="mse", backend="numpy")
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert seen == [(None, 3)] and model.built and model.input_shape == (3,)
    assert history.history["loss"][0] == pytest.approx(9.0)  # the outputs were all 3
    # one SGD step on mse: the kernel's gradient is 2 * 3 * 1 per weight, the bias's 2 * 3
    np.testing.assert_allclose(model.d.kernel.value, 1 - 0.1 * 6.0 * np.ones((3, 1)), rtol=1e-5)
    model.build((None, 3))  # built already: the shape is checked, the build not rerun
    assert seen == [(None, 3)]
    with pytest.raises(SymgraphError, match="was built for inputs"):
        model.build((None, 4))
    broken = OwnBuild()
    broken.call = None  # its trace fails: the build changes nothing
    with pytest.raises(TypeError):
        broken.build((None, 3))
    assert not broken.built and not broken.d.built and broken.d.weights == []


def test_model_losses_add_weight_and_variable_assign():
    model = _Tied()
    model.build((None, 3))
    assert [float(p) for p in model.losses] == [9.0]  # the tied kernel's L2, once
    with pytest.raises(SymgraphError, match="add_weight on a model is not supported"):
        model.add_weight(shape=())
    layer = Linear(2)
    layer.build((None, 3))
    w = layer.w.value
    layer.w.assign_add(1.0)
    np.testing.assert_allclose(layer.w.value, w + 1.0)
    layer.w.assign_sub(np.ones((3, 2)))
    layer.w.assign(np.zeros((3, 2)))
    np.testing.assert_array_equal(layer.w.value, np.zeros((3, 2)))

    class ComputeSum(nn.Layer):  # the Keras guide's, which assigns inside call
        def build(self, input_shape):
            self.total = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                         trainable=False)

        def call(self, inputs):
            self.total.assign_add(sg.sum(inputs, axis=0))
            return self.total

    with pytest.raises(SymgraphError, match="assign_add on .* got a graph node"):
        ComputeSum()(np.ones((2, 2), np.float32))
