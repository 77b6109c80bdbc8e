"""Whole-model saving (symgraph/nn/saving.py, serialization.py, model_config.py): configs of
every built-in layer and model in Keras 3's layout, JSON round trips, `.keras` files that load
into a model predicting bit for bit as the saved one and training on exactly as it would have
(numpy and numba), custom objects by registered name, no pickle, and every refusal."""

import io
import json
import zipfile

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    ELU,
    Activation,
    Add,
    Average,
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Flatten,
    Input,
    Layer,
    LeakyReLU,
    Maximum,
    Maxout,
    Minimum,
    Model,
    Multiply,
    PReLU,
    ReLU,
    Sequential,
    Subtract,
    callbacks,
    constraints,
    initializers,
    load_model,
    losses,
    model_from_json,
    optimizers,
    register_serializable,
    regularizers,
    set_random_seed,
)

RNG = np.random.default_rng(3)


def _sequential():
    """Every built-in one-input layer type once, with initializer, regularizer and constraint
    objects as well as names."""
    set_random_seed(4)
    return Sequential([
        Input((2, 3)), Flatten(),
        Dense(8, activation="relu", kernel_initializer=initializers.RandomNormal(0.0, 0.3, seed=2),
              kernel_regularizer=regularizers.L1L2(l1=1e-3, l2=1e-2),
              kernel_constraint=constraints.MaxNorm(3.0), bias_constraint="non_neg"),
        BatchNormalization(momentum=0.9, gamma_initializer=initializers.Constant(1.5)),
        Dropout(0.25), PReLU(alpha_initializer="he_normal", alpha_regularizer="l2"),
        LeakyReLU(0.1), ReLU(max_value=6.0), ELU(alpha=0.5), Activation("tanh"),
        Maxout(4), Dense(3, activation="softmax", use_bias=False)], name="every_layer")


def _functional():
    """Two inputs given as a dict out of sorted order, a layer shared at two depths, every merge
    layer, two outputs."""
    set_random_seed(5)
    a, b = Input((4,), name="a"), Input((4,), name="b")
    shared = Dense(4, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    merged = [Add(name="add")([ha, hb]), Subtract()([ha, hb]), Multiply()([ha, hb]),
              Average()([ha, hb, a]), Maximum()([ha, b]), Minimum()([a, hb])]
    h = Concatenate(axis=-1)(merged)
    h = shared(Dense(4, name="squeeze")(h))  # the shared layer's third call, deeper
    out_y = Dense(1, name="y")(h)
    out_c = Dense(3, activation="softmax", name="c")(BatchNormalization()(Dropout(0.2)(h)))
    return Model({"b": b, "a": a}, {"y": out_y, "c": out_c}, name="two_heads")


def _functional_data(n=48):
    x = {"a": RNG.normal(size=(n, 4)).astype(np.float32),
         "b": RNG.normal(size=(n, 4)).astype(np.float32)}
    y = {"y": RNG.normal(size=(n, 1)).astype(np.float32),
         "c": np.eye(3, dtype=np.float32)[RNG.integers(0, 3, n)]}
    return x, y


def _sequential_data(n=48):
    x = RNG.normal(size=(n, 2, 3)).astype(np.float32)
    return x, RNG.integers(0, 3, n)


def _same_weights(a, b):
    assert len(a.get_weights()) == len(b.get_weights())
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def _predictions(model, x):
    out = model.predict(x, verbose=0)
    return [out[k] for k in sorted(out)] if isinstance(out, dict) else [out]


# --- configs ---------------------------------------------------------------------------------

def test_every_layer_config_is_json_and_rebuilds_the_same_layer():
    model = _sequential()
    for layer in model.layers:
        config = layer.get_config()
        assert json.loads(json.dumps(config)) == config
        again = type(layer).from_config(config)
        assert type(again) is type(layer) and again.get_config() == config
    dense = model.layers[1].get_config()
    assert {"name", "trainable", "dtype", "units", "activation", "use_bias", "kernel_initializer",
            "bias_initializer", "kernel_regularizer", "bias_regularizer", "kernel_constraint",
            "bias_constraint"} <= set(dense)  # Keras 3's Dense keys
    assert dense["kernel_initializer"] == {
        "module": "symgraph.nn.initializers", "class_name": "RandomNormal",
        "config": {"mean": 0.0, "stddev": 0.3, "seed": 2}, "registered_name": None}
    assert dense["bias_constraint"]["class_name"] == "NonNeg"
    assert model.layers[3].get_config()["seed"] == model.layers[3].seed  # drawn, then kept


def test_optimizer_loss_and_weight_object_configs_rebuild_equal_objects():
    for obj in [optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
                optimizers.RMSprop(rho=0.8, centered=True), optimizers.Adagrad(epsilon=1e-6),
                optimizers.Adadelta(rho=0.9), optimizers.Adam(0.002, amsgrad=True),
                optimizers.AdamW(weight_decay=0.01, global_clipnorm=2.0),
                optimizers.Nadam(use_ema=True, ema_overwrite_frequency=5),
                optimizers.Adamax(gradient_accumulation_steps=4, loss_scale_factor=64.0),
                optimizers.Lion(beta_2=0.95), optimizers.Ftrl(l1_regularization_strength=0.1),
                optimizers.SGD(optimizers.schedules.CosineDecay(0.1, 100, warmup_target=0.2,
                                                                warmup_steps=10)),
                optimizers.schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.05, 0.01]),
                losses.CategoricalCrossentropy(from_logits=True), losses.MeanAbsoluteError(),
                initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=1),
                initializers.RandomUniform(-1, 1), regularizers.L2(0.5), constraints.MaxNorm(2, 1)]:
        config = obj.get_config()
        assert json.loads(json.dumps(config)) == config
        again = type(obj).from_config(config)
        assert type(again) is type(obj) and again.get_config() == config
    adam = optimizers.Adam(0.002).get_config()
    assert adam == {"name": "adam", "learning_rate": pytest.approx(0.002), "weight_decay": None,
                    "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                    "loss_scale_factor": None, "gradient_accumulation_steps": None,
                    "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}
    scheduled = optimizers.SGD(optimizers.schedules.ExponentialDecay(0.1, 5, 0.9)).get_config()
    assert scheduled["learning_rate"] == {  # Keras's schedules.serialize entry
        "module": "symgraph.nn.schedules", "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.9,
                   "staircase": False, "name": "ExponentialDecay"}, "registered_name": None}


def test_sequential_config_lists_an_input_layer_then_the_layers():
    model = _sequential()
    config = model.get_config()
    assert config["name"] == "every_layer"
    first = config["layers"][0]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [None, 2, 3]
    assert [e["class_name"] for e in config["layers"][1:]] == [
        type(layer).__name__ for layer in model.layers]
    again = Sequential.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config and again.built
    again.set_weights(model.get_weights())
    x, _ = _sequential_data()
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_an_unbuilt_sequential_config_rebuilds_an_unbuilt_model():
    model = Sequential([Dense(3), Dense(1)])
    again = Sequential.from_config(model.get_config())
    assert not again.built and [type(la) for la in again.layers] == [Dense, Dense]


def test_functional_config_has_keras_nodes_and_rebuilds_the_same_graph():
    model = _functional()
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    by_name = {e["name"]: e for e in config["layers"]}
    assert config["input_layers"] == {"b": ["b", 0, 0], "a": ["a", 0, 0]}  # the dict's order
    assert config["output_layers"] == {"y": ["y", 0, 0], "c": ["c", 0, 0]}
    shared = by_name["shared"]["inbound_nodes"]
    assert [n["args"][0]["config"]["keras_history"] for n in shared] == [
        ["a", 0, 0], ["b", 0, 0], ["squeeze", 0, 0]]
    add_args = by_name["add"]["inbound_nodes"][0]["args"][0]  # a merge layer: a list argument
    assert [t["config"]["keras_history"] for t in add_args] == [["shared", 0, 0],
                                                                 ["shared", 1, 0]]
    assert by_name["a"]["inbound_nodes"] == []
    again = Model.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    assert [la.name for la in again.layers] == [la.name for la in model.layers]
    assert again.input_keys_unsorted and again.outputs_as_dict
    again.set_weights(model.get_weights())
    x, _ = _functional_data()
    for u, v in zip(_predictions(again, x), _predictions(model, x)):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(SymgraphError, match="ambiguous"):  # as the original refuses it
        again.predict([x["a"], x["b"]], verbose=0)


def test_a_layer_shared_in_a_nested_order_is_called_in_an_order_that_works():
    # A(B(A(B(x)))): the config lists A before B, but A's second call needs B's second
    set_random_seed(1)
    x = Input((3,))
    a, b = Dense(3, name="A"), Dense(3, name="B")
    model = Model(x, a(b(a(b(x)))))
    again = Model.from_config(model.get_config())
    again.set_weights(model.get_weights())
    data = RNG.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(data, verbose=0), model.predict(data, verbose=0))


def test_to_json_and_model_from_json_keep_the_compile_config():
    model = _functional()
    model.compile(optimizer=optimizers.SGD(0.03, momentum=0.5), loss={"y": "mse", "c":
                  "categorical_crossentropy"}, loss_weights={"y": 0.5, "c": 2.0},
                  metrics={"c": ["accuracy"]}, backend="numpy")
    text = model.to_json()
    entry = json.loads(text)
    assert entry["class_name"] == "Functional" and entry["config"] == model.get_config()
    assert entry["compile_config"]["optimizer"]["config"]["momentum"] == 0.5
    again = model_from_json(text)
    assert again.compiled and again.get_compile_config() == model.get_compile_config()
    assert type(again.optimizer) is optimizers.SGD and again.optimizer.learning_rate == \
        model.optimizer.learning_rate
    x, y = _functional_data()
    again.set_weights(model.get_weights())
    assert again.evaluate(x, y, verbose=0, return_dict=True) == \
        model.evaluate(x, y, verbose=0, return_dict=True)


# --- .keras files ----------------------------------------------------------------------------

def _fit_one_more_epoch_identically(model, loaded, x, y):
    a = model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=9)
    b = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=9)
    assert a.history == b.history
    _same_weights(model, loaded)
    assert loaded.optimizer.iterations.value == model.optimizer.iterations.value


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_loaded_sequential_predicts_bit_for_bit_and_trains_on_as_the_original(tmp_path,
                                                                                  backend):
    x, y = _sequential_data()
    model = _sequential()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=2)
    path = tmp_path / "model.keras"
    model.save(str(path))
    loaded = load_model(path)
    assert loaded.backend == backend and loaded.compiled
    assert loaded.get_config() == model.get_config()
    assert loaded.get_compile_config() == model.get_compile_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert loaded.step_counter.value == model.step_counter.value == 6  # dropout masks' step
    _fit_one_more_epoch_identically(model, loaded, x, y)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_loaded_functional_model_predicts_and_trains_on_as_the_original(tmp_path, backend):
    x, y = _functional_data()
    model = _functional()
    model.compile(optimizer="rmsprop", loss=["categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5], metrics=[["accuracy"], ["mae"]], backend=backend)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=2)
    model.save(tmp_path / "f.keras")
    loaded = load_model(tmp_path / "f.keras")
    for u, v in zip(_predictions(loaded, x), _predictions(model, x)):
        np.testing.assert_array_equal(u, v)
    _fit_one_more_epoch_identically(model, loaded, x, y)


@pytest.mark.parametrize("freeze_first", [True, False])
def test_a_model_frozen_or_unfrozen_after_training_loads_and_trains_on_as_the_original(
        tmp_path, freeze_first):
    """Fine-tuning: the layers frozen while the optimizer trained are not those frozen when the
    model is saved (a frozen layer's Adam slots exist from earlier training, or an unfrozen
    one's do not yet); the file loads, and both models train on identically, unfrozen."""
    x, y = _sequential_data()
    model = _sequential()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  backend="numpy")
    base = model.layers[1]  # the first Dense
    base.trainable = not freeze_first
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=2)
    base.trainable = freeze_first
    model.save(tmp_path / "tuned.keras")
    model.save_training_state(str(tmp_path / "tuned.npz"))
    loaded = load_model(tmp_path / "tuned.keras")
    assert loaded.layers[1].trainable == freeze_first
    _same_weights(loaded, model)
    loaded.save(tmp_path / "again.keras")  # saved on at once, it keeps the optimizer's state
    assert load_model(tmp_path / "again.keras").optimizer.iterations.value == 3
    again = _sequential()
    again.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  backend="numpy")
    again.layers[1].trainable = freeze_first
    again.load_training_state(str(tmp_path / "tuned.npz"))
    histories = []
    for other in (model, loaded, again):
        other.layers[1].trainable = True
        histories.append(other.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=9).history)
    assert histories[0] == histories[1] == histories[2]
    _same_weights(loaded, model)
    _same_weights(again, model)


def test_a_compiled_untrained_model_and_an_uncompiled_one_round_trip(tmp_path):
    x, y = _sequential_data()
    model = _sequential()
    model.save(tmp_path / "plain.keras")
    plain = load_model(tmp_path / "plain.keras")
    assert not plain.compiled and plain.get_compile_config() is None
    _same_weights(plain, model)
    model.compile(optimizer=optimizers.Adam(0.003), loss="sparse_categorical_crossentropy",
                  backend="numpy")
    model.optimizer.learning_rate = 0.02  # the rate now is saved, as Keras does
    model.save(tmp_path / "compiled.keras")
    loaded = load_model(tmp_path / "compiled.keras")
    assert loaded.optimizer.learning_rate == np.float32(0.02)
    _fit_one_more_epoch_identically(model, loaded, x, y)


def test_compile_false_loads_the_weights_of_a_trained_model_uncompiled(tmp_path):
    x, y = _sequential_data()
    model = _sequential()
    model.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    model.fit(x, y, epochs=1, verbose=0, seed=1)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", compile=False)
    assert not loaded.compiled
    _same_weights(loaded, model)
    # uncompiled, it predicts on the backend "auto" picks (numba here), not the saved numpy
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    on_numpy = load_model(tmp_path / "m.keras", compile=False, backend="numpy")
    assert not on_numpy.compiled
    np.testing.assert_array_equal(on_numpy.predict(x, verbose=0), model.predict(x, verbose=0))
    assert on_numpy.backend == "numpy"


def test_the_file_is_a_zip_of_json_and_an_npz_without_pickle(tmp_path):
    x, y = _sequential_data()
    model = _sequential()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy")
    model.fit(x, y, epochs=1, verbose=0, seed=1)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json",
                                              "model.weights.npz"]
        metadata = json.loads(archive.read("metadata.json"))
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.npz")
    assert metadata["symgraph_version"] == sg.__version__ and metadata["format_version"] == 1
    assert config["config"] == model.get_config()
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    with np.load(io.BytesIO(weights), allow_pickle=False) as data:  # raises on any pickle
        arrays = {k: data[k] for k in data.files}
    assert all(a.dtype != object for a in arrays.values())
    assert any(k.endswith("_state/optimizer/0/momentum") for k in arrays)  # Adam's slots
    assert len([k for k in arrays if "_state/" not in k]) == len(model.weights)


def test_model_checkpoint_to_a_keras_path_saves_the_whole_model(tmp_path):
    x, y = _sequential_data()
    model = _sequential()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="numpy")
    # every epoch, so the file holds the last one (which epoch is best depends on the data a
    # module-level generator drew, so on the tests run before)
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "last.keras"))
    model.fit(x, y, epochs=2, verbose=0, seed=1, callbacks=[checkpoint])
    loaded = load_model(tmp_path / "last.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    _fit_one_more_epoch_identically(model, loaded, x, y)
    with pytest.raises(SymgraphError, match="save_weights_only=True writes a .npz"):
        callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_weights_only=True)


# --- custom objects --------------------------------------------------------------------------

@register_serializable(package="test_saving")
class Scale(Layer):
    """A custom layer with an argument and its own get_config."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

    def call(self, x, ctx):
        return x * self.factor


@register_serializable(package="test_saving")
def clipped_relu(x):
    return sg.minimum(sg.relu(x), 2.0)


@register_serializable(package="test_saving")
def scaled_mse(y_true, y_pred):
    return sg.mean_squared_error(y_true, y_pred) * 2.0


def cube(x):  # not registered
    return x * x * x


def _custom_model():
    set_random_seed(2)
    return Sequential([Input((3,)), Dense(4, activation=clipped_relu), Scale(0.5),
                       Dense(2, activation=cube)])


def test_registered_objects_load_by_name_and_unknown_ones_need_custom_objects(tmp_path):
    model = _custom_model()
    model.compile(optimizer="sgd", loss=scaled_mse, backend="numpy")
    x = RNG.normal(size=(10, 3)).astype(np.float32)
    y = RNG.normal(size=(10, 2)).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    config = model.get_config()["layers"]
    assert config[2]["registered_name"] == "test_saving>Scale"
    assert config[1]["config"]["activation"]["registered_name"] == "test_saving>clipped_relu"
    assert config[3]["config"]["activation"] == {
        "module": __name__, "class_name": "function", "config": "cube", "registered_name": None}
    model.save(tmp_path / "c.keras")
    with pytest.raises(SymgraphError, match=r"'cube'.*custom_objects=\{'cube': cube\}"):
        load_model(tmp_path / "c.keras")
    loaded = load_model(tmp_path / "c.keras", custom_objects={"cube": cube})
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].factor == 0.5
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    with pytest.raises(SymgraphError, match="custom_objects"):
        model_from_json(model.to_json())
    assert model_from_json(model.to_json(), custom_objects={"cube": cube}).layers[2].name == \
        model.layers[2].name


def test_symgraph_functions_as_losses_load_and_others_are_refused_when_saved(tmp_path):
    x = RNG.normal(size=(8, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    for loss in (sg.binary_crossentropy, sg.mean_squared_error):
        model = Sequential([Input((3,)), Dense(1, activation="sigmoid")])
        model.compile(loss=loss, metrics=[sg.mean_absolute_error], backend="numpy")
        model.save(tmp_path / "l.keras")
        loaded = load_model(tmp_path / "l.keras")
        assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    path = tmp_path / "square.keras"
    with pytest.raises(SymgraphError, match=r"symgraph\.tensor\.square.*register_serializable"):
        Sequential([Input((3,)), Dense(2, activation=sg.square)]).save(path)
    assert not path.exists()


def test_an_unregistered_custom_layer_loads_from_custom_objects_only(tmp_path):
    class Twice(Layer):
        def call(self, x, ctx):
            return x * 2.0

    model = Sequential([Input((2,)), Twice(), Dense(1)])
    model.save(tmp_path / "t.keras")
    with pytest.raises(SymgraphError, match="'Twice'.*custom_objects"):
        load_model(tmp_path / "t.keras")
    loaded = load_model(tmp_path / "t.keras", custom_objects={"Twice": Twice})
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_objects_that_cannot_be_rebuilt_are_refused_before_anything_is_written(tmp_path):
    class NoConfig(Layer):  # takes an argument its get_config does not return
        def __init__(self, factor, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x, ctx):
            return x * self.factor

    path = tmp_path / "m.keras"
    Sequential([Input((2,)), Dense(1)]).save(path)
    before = path.read_bytes()
    for bad in (NoConfig(2.0), Activation(lambda x: x)):
        with pytest.raises(SymgraphError, match="get_config|lambda"):
            Sequential([Input((2,)), bad, Dense(1)]).save(path)
        assert path.read_bytes() == before  # the old file stays whole
    with pytest.raises(SymgraphError, match="no get_config"):
        register_serializable()(type("Bare", (), {}))


def test_a_custom_class_with_arguments_but_an_inherited_get_config_is_refused(tmp_path):
    """Its inherited get_config drops the arguments, so it would load with their defaults and
    compute something else: refused when saved, as an __init__ that cannot take the config."""
    class Times(Layer):  # an optional argument, get_config not overridden
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x, ctx):
            return x * self.factor

    class Weighted(losses.Loss):  # the same for a loss
        def __init__(self, delta=1.0):
            super().__init__()
            self.delta = delta

    class Plain(losses.Loss):  # Loss's get_config returns from_logits, which it does not take
        def __init__(self):
            super().__init__()

    path = tmp_path / "m.keras"
    with pytest.raises(SymgraphError, match=r"Times.*factor.*inherits from Layer"):
        Sequential([Input((2,)), Times(5.0), Dense(1)]).save(path)
    for loss, match in ((Weighted(3.0), r"Weighted.*delta.*inherits from Loss"),
                        (Plain(), r"Plain.*returns from_logits.*__init__ does not take")):
        model = Sequential([Input((2,)), Dense(1)])
        model.compile(loss=loss, backend="numpy")
        with pytest.raises(SymgraphError, match=match):
            model.save(path)
    assert not path.exists()


# --- refusals --------------------------------------------------------------------------------

def _saved(tmp_path):
    model = Sequential([Input((3,)), Dense(2)])
    path = tmp_path / "m.keras"
    model.save(path)
    return path


def _rewritten(path, replace: dict):
    """A copy of the zip at `path` with some members' bytes replaced (None drops one)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members.update(replace)
    out = path.with_name(f"rewritten-{len(list(path.parent.iterdir()))}.keras")
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            if data is not None:
                archive.writestr(name, data)
    return out


def test_damaged_and_foreign_files_raise_clear_errors(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.keras"
    text.write_text("hello")
    weights = tmp_path / "w.npz"
    Sequential([Input((3,)), Dense(2)]).save_weights(str(weights))
    cases = [
        (truncated, "cannot read model file .*BadZipFile"),
        (text, "cannot read model file"),
        (weights, "not a symgraph model file: it holds no config.json"),
        (tmp_path / "missing.keras", "does not exist"),
        (_rewritten(path, {"config.json": b"{not json"}), "cannot read model file"),
        (_rewritten(path, {"model.weights.npz": b"junk"}), "cannot read model.weights.npz"),
        (_rewritten(path, {"model.weights.npz": None}), "holds no model.weights.npz"),
        (_rewritten(path, {"config.json": b'{"class_name": "Sequential", "config": {}, '
                                          b'"module": "symgraph.nn.models"}'}),
         "damaged model config"),
        (_rewritten(path, {"config.json": b'{"class_name": "Adam", "config": {}, '
                                          b'"module": "symgraph.nn.optimizers"}'}),
         "describes a Adam object, not a model"),
    ]
    for bad, message in cases:
        with pytest.raises(SymgraphError, match=message):
            load_model(bad)


def test_a_file_of_another_format_version_is_refused(tmp_path):
    path = _saved(tmp_path)
    newer = _rewritten(path, {"metadata.json": json.dumps(
        {"symgraph_version": "9.0.0", "format_version": 2}).encode()})
    with pytest.raises(SymgraphError, match=r"written by symgraph 9\.0\.0 in saving format 2; "
                                            r"this symgraph \(.*\) reads format 1"):
        load_model(newer)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    path = _saved(tmp_path)
    buffer = io.BytesIO()
    np.savez(buffer, **{"000/dense/kernel": np.zeros((4, 2), np.float32),
                        "001/dense/bias": np.zeros(2, np.float32)})
    with pytest.raises(SymgraphError, match=r"has shape \(4, 2\).*nothing was loaded"):
        load_model(_rewritten(path, {"model.weights.npz": buffer.getvalue()}))


def test_save_refuses_a_wrong_suffix_and_an_unbuilt_model(tmp_path):
    model = Sequential([Input((3,)), Dense(2)])
    with pytest.raises(SymgraphError, match=r"end in \.keras"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(SymgraphError, match="not built"):
        Sequential([Dense(2)]).save(tmp_path / "m.keras")
    assert not list(tmp_path.iterdir())
    with pytest.raises(SymgraphError, match="not a model's JSON"):
        model_from_json("[1, 2")
    with pytest.raises(SymgraphError, match="custom_objects must be a dict"):
        load_model(_saved(tmp_path), custom_objects=["cube"])
