"""SimpleRNN, LSTM, GRU, Bidirectional and TimeDistributed (symgraph/nn/recurrent.py,
rnn_wrappers.py): outputs against Keras 3's cell equations written here in NumPy (weights set
in Keras's layout), gradients against finite differences in float64, NumPy vs Numba, dropout
masks fixed over time, Keras's parameter counts, configs and whole-model saving, a short LSTM
trained on MNIST rows, and the refusals."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.data import mnist
from symgraph.errors import SymgraphError
from symgraph.nn import (
    GRU,
    LSTM,
    Bidirectional,
    Concatenate,
    Dense,
    Dropout,
    Identity,
    Input,
    Model,
    Sequential,
    SimpleRNN,
    TimeDistributed,
    constraints,
    initializers,
    load_model,
    optimizers,
    regularizers,
    set_random_seed,
)
from symgraph.nn.layers import CallContext
from symgraph.testing import verify_grad

RNG = np.random.default_rng(11)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def keras_rnn(kind, x, weights, units, go_backwards=False, reset_after=True, masks=(None, None)):
    """Keras 3's cells, one timestep at a time, gate by gate as its implementation 1 (float64):
    the outputs in processing order (batch, steps, units) and the final states. `masks` are
    the input and recurrent dropout masks: None, one (batch, size) mask, or one per gate."""
    kernel, recurrent = weights[0], weights[1]
    bias = weights[2] if len(weights) == 3 else None
    input_bias = bias[0] if bias is not None and kind == "gru" and reset_after else bias
    recurrent_bias = bias[1] if bias is not None and kind == "gru" and reset_after else None

    def block(w, g):
        return 0 if w is None else w[..., g * units:(g + 1) * units]

    def masked(v, mask, g):
        return v if mask is None else v * (mask[g] if mask.ndim == 3 else mask)

    def gate(xt, h, g):
        """x_g and h_g: gate g's input and recurrent projections."""
        x_g = masked(xt, masks[0], g) @ block(kernel, g) + block(input_bias, g)
        h_g = masked(h, masks[1], g) @ block(recurrent, g)
        return x_g, h_g + block(recurrent_bias, g)

    n, steps, _ = x.shape
    h, c = np.zeros((n, units)), np.zeros((n, units))
    outputs = []
    for t in (range(steps - 1, -1, -1) if go_backwards else range(steps)):
        xt = x[:, t]
        if kind == "simple":
            h = np.tanh(sum(gate(xt, h, 0)))
        elif kind == "lstm":  # Keras's gate order: i, f, c, o
            i, f, g, o = (sum(gate(xt, h, k)) for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # z, r, h
            z, r = _sigmoid(sum(gate(xt, h, 0))), _sigmoid(sum(gate(xt, h, 1)))
            x_h, h_h = gate(xt, h, 2)
            if reset_after:
                candidate = np.tanh(x_h + r * h_h)
            else:
                candidate = np.tanh(x_h + (r * masked(h, masks[1], 2)) @ block(recurrent, 2))
            h = z * h + (1 - z) * candidate
        outputs.append(h)
    return np.stack(outputs, axis=1), ([h, c] if kind == "lstm" else [h])


def _run(layer, x, training=False, step=0, backend="numpy"):
    """The layer's output(s) on `x` (built on first use), at training step `step`."""
    if not layer.built:
        layer.build(x.shape[1:])
    ph = sg.placeholder(("batch",) + x.shape[1:], str(x.dtype), name="x")
    counter = sg.variable(np.int64(step), name="step", trainable=False)
    out = layer.call(ph, CallContext(training=training, step=counter))
    return sg.function([ph], out, backend=backend)(x)


def _random_weights(layer):
    layer.set_weights([RNG.normal(scale=0.5, size=w.shape) for w in layer.weights])
    return layer.get_weights()


LAYERS = {"simple": SimpleRNN, "lstm": LSTM, "gru": GRU}
CASES = [("simple", {}), ("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}),
         ("lstm", {"use_bias": False}), ("gru", {"use_bias": False})]


@pytest.mark.parametrize("kind, kwargs", CASES, ids=[f"{k}-{v}" for k, v in CASES])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_outputs_and_states_match_keras_cell_equations(kind, kwargs, go_backwards):
    x = RNG.normal(size=(4, 6, 3)).astype(np.float32)
    layer = LAYERS[kind](5, return_sequences=True, return_state=True, go_backwards=go_backwards,
                         **kwargs)
    layer.build(x.shape[1:])
    weights = _random_weights(layer)
    sequence, states = keras_rnn(kind, x.astype(np.float64), weights, 5, go_backwards,
                                 kwargs.get("reset_after", True))
    got = _run(layer, x)
    assert len(got) == 1 + len(states)  # Keras: [output, *states]
    np.testing.assert_allclose(got[0], sequence, rtol=1e-5, atol=1e-5)
    for g, s in zip(got[1:], states):
        np.testing.assert_allclose(g, s, rtol=1e-5, atol=1e-5)
    # without return_sequences the output is the last step's (the first input's, backwards)
    last = LAYERS[kind](5, go_backwards=go_backwards, **kwargs)
    last.build(x.shape[1:])
    last.set_weights(weights)
    np.testing.assert_allclose(_run(last, x), sequence[:, -1], rtol=1e-5, atol=1e-5)


def test_weight_layouts_and_initial_values_are_keras():
    layer = LSTM(4)
    layer.build((7, 3))
    kernel, recurrent, bias = layer.get_weights()
    assert (kernel.shape, recurrent.shape, bias.shape) == ((3, 16), (4, 16), (16,))
    np.testing.assert_array_equal(bias, [0] * 4 + [1] * 4 + [0] * 8)  # unit_forget_bias
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)  # orthogonal
    gru = GRU(4)
    gru.build((7, 3))
    assert [w.shape for w in gru.get_weights()] == [(3, 12), (4, 12), (2, 12)]
    gru = GRU(4, reset_after=False)
    gru.build((7, 3))
    assert [w.shape for w in gru.get_weights()] == [(3, 12), (4, 12), (12,)]
    plain = LSTM(4, unit_forget_bias=False, bias_initializer="ones")
    plain.build((7, 3))
    np.testing.assert_array_equal(plain.get_weights()[2], np.ones(16))


def test_orthogonal_initializer_is_keras_qr_with_sign_correction():
    tall = initializers.Orthogonal(seed=3)((6, 4))
    a = np.random.default_rng(3).normal(size=(6, 4))
    q, r = np.linalg.qr(a)
    np.testing.assert_allclose(tall, q * np.sign(np.diag(r)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tall.T @ tall, np.eye(4), atol=1e-6)
    wide = initializers.get("orthogonal")((3, 8))
    np.testing.assert_allclose(wide @ wide.T, np.eye(3), atol=1e-6)
    conv = initializers.Orthogonal(gain=2.0, seed=1)((2, 3, 4))  # rows: 2 * 3
    flat = conv.reshape(6, 4)
    np.testing.assert_allclose(flat.T @ flat, 4 * np.eye(4), atol=1e-5)
    assert initializers.Orthogonal.from_config(initializers.Orthogonal(2.0, 1).get_config()) \
        .get_config() == {"gain": 2.0, "seed": 1}
    with pytest.raises(SymgraphError, match="at least two-dimensional"):
        initializers.Orthogonal()((5,))


# --- gradients -------------------------------------------------------------------------------

def _with_weights(layer, input_shape):
    """fn(x, *weights) for verify_grad: the layer's call with its weights as float64 inputs."""
    layer.build(input_shape)
    names = ["kernel", "recurrent_kernel", "bias"][:len(layer.weights)]

    def fn(x, *weights):
        for name, w in zip(names, weights):
            setattr(layer, name, w)
        out = layer.call(x, CallContext())
        return sg.concatenate([o.reshape((o.shape[0], -1)) for o in out], axis=1) \
            if isinstance(out, list) else out

    return fn


@pytest.mark.parametrize("kind, kwargs", [("simple", {}), ("lstm", {}), ("gru", {}),
                                          ("gru", {"reset_after": False})],
                         ids=["simple", "lstm", "gru", "gru-reset-before"])
def test_gradients_match_finite_differences(kind, kwargs):
    layer = LAYERS[kind](3, dtype="float64", return_sequences=True, return_state=True,
                         go_backwards=kind == "lstm", **kwargs)
    fn = _with_weights(layer, (3, 2))
    arrays = [RNG.normal(size=(2, 3, 2))] + [RNG.normal(scale=0.5, size=w.shape)
                                            for w in layer.weights]
    verify_grad(fn, arrays, rtol=1e-5, atol=1e-7)


def test_bidirectional_gradients_match_finite_differences():
    layer = Bidirectional(GRU(2, dtype="float64", return_sequences=True), merge_mode="mul",
                          dtype="float64")
    layer.build((3, 2))
    parts = [layer.forward_layer, layer.backward_layer]

    def fn(x, *weights):
        for part, (k, r, b) in zip(parts, [weights[:3], weights[3:]]):
            part.kernel, part.recurrent_kernel, part.bias = k, r, b
        return layer.call(x, CallContext())

    arrays = [RNG.normal(size=(2, 3, 2))] + [RNG.normal(scale=0.5, size=w.shape)
                                            for w in layer.weights]
    verify_grad(fn, arrays, rtol=1e-5, atol=1e-7)


# --- wrappers --------------------------------------------------------------------------------

@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_merges_forward_and_flipped_backward(merge_mode, return_sequences):
    x = RNG.normal(size=(3, 5, 2)).astype(np.float32)
    layer = Bidirectional(LSTM(4, return_sequences=return_sequences, return_state=True),
                          merge_mode=merge_mode)
    layer.build(x.shape[1:])
    weights = _random_weights(layer)
    fw_seq, fw_states = keras_rnn("lstm", x.astype(np.float64), weights[:3], 4)
    bw_seq, bw_states = keras_rnn("lstm", x.astype(np.float64), weights[3:], 4, True)
    if return_sequences:
        fw, bw = fw_seq, bw_seq[:, ::-1]  # the backward outputs back in input order
    else:
        fw, bw = fw_seq[:, -1], bw_seq[:, -1]
    merged = {"concat": lambda: [np.concatenate([fw, bw], axis=-1)], "sum": lambda: [fw + bw],
              "mul": lambda: [fw * bw], "ave": lambda: [(fw + bw) / 2],
              None: lambda: [fw, bw]}[merge_mode]()
    expected = merged + fw_states + bw_states  # Keras: outputs, forward states, backward states
    got = _run(layer, x)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    shapes = layer.compute_output_shape(x.shape[1:])
    assert [tuple(s) for s in shapes] == [g.shape[1:] for g in got]


def test_bidirectional_copies_the_layer_and_checks_the_backward_one():
    lstm = LSTM(3, seed=7, name="enc")
    layer = Bidirectional(lstm)
    assert (layer.forward_layer.name, layer.backward_layer.name) == ("forward_enc", "backward_enc")
    assert layer.forward_layer is not lstm and layer.backward_layer.go_backwards
    assert (layer.forward_layer.seed, layer.backward_layer.seed) == (7, 8)  # own masks
    backward = GRU(3, go_backwards=True, activation="relu")
    custom = Bidirectional(GRU(3), backward_layer=backward)
    assert custom.backward_layer is backward
    with pytest.raises(SymgraphError, match="different `go_backwards`"):
        Bidirectional(GRU(3), backward_layer=GRU(3))
    with pytest.raises(SymgraphError, match="return_sequences"):
        Bidirectional(GRU(3), backward_layer=GRU(3, go_backwards=True, return_sequences=True))


def test_time_distributed_applies_the_layer_to_each_timestep():
    x = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    dense = Dense(2, activation="tanh")
    layer = TimeDistributed(dense)
    layer.build(x.shape[1:])
    kernel, bias = _random_weights(layer)
    np.testing.assert_allclose(_run(layer, x), np.tanh(x @ kernel + bias), rtol=1e-5, atol=1e-6)
    assert layer.output_shape == (4, 2) and dense.input_shape == (5,)
    # a Dropout inside draws a new mask per timestep, as Keras's loop over timesteps does
    dropped = _run(TimeDistributed(Dropout(0.5, seed=3)), np.ones((50, 3, 8), np.float32),
                   training=True)
    assert not np.array_equal(dropped[:, 0], dropped[:, 1])
    with pytest.raises(SymgraphError, match="time axis"):
        TimeDistributed(Dense(2)).build((5,))


# --- dropout ---------------------------------------------------------------------------------

def _identity_rnn(**kwargs):
    """A linear SimpleRNN with identity kernels: h_t = x_t * m + (h_{t-1} * r) with the input
    mask m and the recurrent mask r."""
    layer = SimpleRNN(6, activation=None, return_sequences=True, seed=5, **kwargs)
    layer.build((5, 6))
    layer.set_weights([np.eye(6), np.eye(6), np.zeros(6)])
    return layer


def test_dropout_masks_are_the_same_at_every_timestep_and_off_in_inference():
    x = np.ones((400, 5, 6), np.float32)
    layer = _identity_rnn(dropout=0.3)
    assert np.array_equal(_run(layer, x), np.cumsum(x, axis=1))  # inference: no dropout
    out = _run(layer, x, training=True)
    mask = out[:, 0]
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.7)}
    assert abs((mask == 0).mean() - 0.3) < 0.03
    np.testing.assert_allclose(out, np.cumsum(np.repeat(mask[:, None], 5, axis=1), axis=1),
                               rtol=1e-6)  # the same mask at every step
    assert not np.array_equal(_run(layer, x, training=True, step=1), out)  # new each step
    assert np.array_equal(_run(layer, x, training=True), out)  # reproducible from the seed

    recurrent = _identity_rnn(recurrent_dropout=0.4)
    out = _run(recurrent, x, training=True)
    r = np.where(out[:, 1] > 1.5, 1 / 0.6, 0.0)  # h_2 = 1 + h_1 * r with h_1 = 1
    np.testing.assert_allclose(out[:, 1], 1.0 + r, rtol=1e-6)
    assert abs((r == 0).mean() - 0.4) < 0.03
    h = np.ones((400, 6))
    for t in range(1, 5):
        h = 1.0 + h * r
        np.testing.assert_allclose(out[:, t], h, rtol=1e-5)  # the same r at every step
    assert np.array_equal(_run(recurrent, x), np.cumsum(x, axis=1))


@pytest.mark.parametrize("kind, kwargs", CASES[:4], ids=[k + str(v) for k, v in CASES[:4]])
@pytest.mark.parametrize("rates", [(0.3, 0.0), (0.3, 0.4), (0.0, 0.4)])
def test_training_outputs_match_keras_equations_with_the_drawn_masks(kind, kwargs, rates):
    """With recurrent_dropout Keras's cells draw one mask per gate (implementation 1), else
    one input mask: the layer's training output is the reference's with the masks it drew."""
    x = RNG.normal(size=(8, 4, 3)).astype(np.float32)
    layer = LAYERS[kind](5, dropout=rates[0], recurrent_dropout=rates[1], seed=2,
                         return_sequences=True, **kwargs)
    layer.build(x.shape[1:])
    weights = _random_weights(layer)
    ph = sg.placeholder(("batch",) + x.shape[1:], name="x")
    ctx = CallContext(training=True, step=sg.variable(np.int64(0), name="step"))
    drawn = [m for m in layer._dropout_masks(ph, ctx) if m is not None]
    values = iter(sg.function([ph], drawn)(x))
    masks = [None if rate == 0 else next(values).astype(np.float64) for rate in rates]
    per_gate = rates[1] > 0 and kind != "simple"
    assert all(m is None or m.ndim == (3 if per_gate else 2) for m in masks)
    if per_gate:
        assert not np.array_equal(masks[1][0], masks[1][1])  # each gate its own mask
    expected, _ = keras_rnn(kind, x.astype(np.float64), weights, 5,
                            reset_after=kwargs.get("reset_after", True), masks=masks)
    got = _run(layer, x, training=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, _run(layer, x))


# --- backends, models, counts ----------------------------------------------------------------

def test_numpy_and_numba_agree_on_a_training_step_with_dropout():
    x = RNG.normal(size=(16, 3, 2)).astype(np.float32)
    y = RNG.normal(size=(16, 1)).astype(np.float32)
    weights = []
    for backend in ("numpy", "numba"):
        model = Sequential([Input((3, 2)),
                            Bidirectional(GRU(3, return_sequences=True, dropout=0.2,
                                              recurrent_dropout=0.3, seed=1)),
                            LSTM(2, dropout=0.1, recurrent_dropout=0.2, go_backwards=True,
                                 seed=2),
                            Dense(1)])
        model.set_weights([np.linspace(-0.5, 0.5, w.size).reshape(w.shape)
                           for w in model.get_weights()])
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):  # the same masks (bits) and the same arithmetic
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_summary_counts_are_keras():
    lines = []
    model = Sequential([Input((28, 28)), LSTM(64), Dense(10)])
    model.summary(print_fn=lines.append)
    assert "23,808" in lines[0] and "Total params: 24,458" in lines[0]
    counts = {GRU(64): 18_048, GRU(64, reset_after=False): 17_856, SimpleRNN(64): 5_952,
              Bidirectional(LSTM(64)): 47_616, Bidirectional(GRU(8), merge_mode="sum"): 1_824}
    for layer, count in counts.items():
        layer.build((28, 28))
        assert layer.count_params() == count, layer
    td = Sequential([Input((28, 64)), TimeDistributed(Dense(10))])
    assert td.count_params() == 650 and td.layers[0].output_shape == (28, 10)


def test_return_state_in_a_functional_model_and_a_multi_output_summary():
    inputs = Input((4, 3))
    out, h, c = LSTM(5, return_state=True, name="enc")(inputs)
    assert [t.name for t in (out, h, c)] == ["enc[0][0]", "enc[0][1]", "enc[0][2]"]
    model = Model(inputs, [Dense(2, name="a")(Concatenate()([out, c])), Identity(name="h")(h)])
    x = RNG.normal(size=(3, 4, 3)).astype(np.float32)
    got_a, got_h = model.predict(x, verbose=0)
    kernel, recurrent, bias = next(la for la in model.layers if la.name == "enc").get_weights()
    seq, (h_ref, c_ref) = keras_rnn("lstm", x.astype(np.float64), [kernel, recurrent, bias], 5)
    np.testing.assert_allclose(got_h, h_ref, rtol=1e-5, atol=1e-5)
    dense = next(layer for layer in model.layers if layer.name == "a")
    k, b = dense.get_weights()
    np.testing.assert_allclose(got_a, np.concatenate([seq[:, -1], c_ref], 1) @ k + b,
                               rtol=1e-5, atol=1e-5)
    lines = []
    model.summary(print_fn=lines.append)
    assert "[(None, 5), (None, 5), (None, 5)]" in lines[0]
    assert "enc[0][0], enc[0][2]" in lines[0]


# --- configs and saving ----------------------------------------------------------------------

def test_lstm_config_has_keras_keys_and_rebuilds():
    layer = LSTM(8, recurrent_dropout=0.25, seed=3, kernel_regularizer=regularizers.L2(0.01))
    config = layer.get_config()
    assert set(config) == {
        "name", "trainable", "dtype", "return_sequences", "return_state", "go_backwards",
        "stateful", "unroll", "zero_output_for_mask", "units", "activation",
        "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer",
        "bias_initializer", "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer",
        "bias_regularizer", "activity_regularizer", "kernel_constraint", "recurrent_constraint",
        "bias_constraint", "dropout", "recurrent_dropout", "seed"}
    assert "recurrent_activation" not in SimpleRNN(2).get_config()
    assert GRU(2).get_config()["reset_after"] is True
    again = LSTM.from_config(config)
    assert again.get_config() == config


def test_models_round_trip_through_save_and_load(tmp_path):
    set_random_seed(2)
    inputs = Input((6, 3))
    seq = Bidirectional(LSTM(4, return_sequences=True, recurrent_dropout=0.1),
                        merge_mode="ave")(inputs)
    seq = TimeDistributed(Dense(3))(seq)
    out, state = GRU(3, return_state=True, reset_after=False, go_backwards=True)(seq)
    last = SimpleRNN(2, kernel_constraint=constraints.MaxNorm(2.0))(seq)
    model = Model(inputs, Dense(1)(Concatenate()([out, state, last])))
    model.compile(optimizer="adam", loss="mse", backend="numpy")
    x = RNG.normal(size=(8, 6, 3)).astype(np.float32)
    model.fit(x, RNG.normal(size=(8, 1)).astype(np.float32), epochs=1, verbose=0)
    path = str(tmp_path / "rnn.keras")
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]
    config = loaded.get_config()
    gru = next(e for e in config["layers"] if e["class_name"] == "GRU")
    assert any(e["config"]["keras_history"][2] == 1 for e in _tensors(config))  # the state
    assert gru["config"]["go_backwards"] and not gru["config"]["reset_after"]

    seq_model = Sequential([Input((5, 2)), GRU(3, return_sequences=True), LSTM(2)])
    seq_path = str(tmp_path / "seq.keras")
    seq_model.save(seq_path)
    x = RNG.normal(size=(4, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(load_model(seq_path).predict(x, verbose=0),
                                  seq_model.predict(x, verbose=0))


def _tensors(config):
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            arg = node["args"][0]
            yield from (arg if isinstance(arg, list) else [arg])


# --- training --------------------------------------------------------------------------------

def test_lstm_on_mnist_rows_learns():
    set_random_seed(0)
    (x_train, y_train), _ = mnist.load_data()
    x = x_train[:2048].astype(np.float32) / 255  # each image: 28 rows of 28 pixels
    y = y_train[:2048]
    model = Sequential([Input((28, 28)), LSTM(32), Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="numpy")
    start = model.evaluate(x, y, batch_size=512, verbose=0)[0]
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, seed=0)
    loss, acc = model.evaluate(x, y, batch_size=512, verbose=0)
    assert start > 2.0 and loss < 0.5 * start and acc > 0.65, (start, loss, acc)  # 2.3 -> 0.67


def test_frozen_bidirectional_and_regularized_recurrent_kernel():
    layer = Bidirectional(SimpleRNN(3), trainable=False)
    model = Sequential([Input((4, 2)), layer, Dense(1)])
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 6
    assert not layer.forward_layer.trainable and not layer.backward_layer.trainable
    layer.trainable = True
    assert len(model.trainable_weights) == 8

    rnn = SimpleRNN(3, recurrent_regularizer=regularizers.L2(0.5))
    model = Sequential([Input((4, 2)), rnn])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x, y = np.zeros((2, 4, 2), np.float32), np.zeros((2, 3), np.float32)
    penalty = 0.5 * np.sum(rnn.get_weights()[1] ** 2)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), penalty, rtol=1e-5)


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: LSTM(0), "`units`"),
    (lambda: GRU(2.5), "`units`"),
    (lambda: LSTM(4, dropout=1.0), r"`dropout` must be a float in \[0, 1\)"),
    (lambda: SimpleRNN(4, recurrent_dropout=-0.1), "recurrent_dropout"),
    (lambda: LSTM(4, stateful=True), "stateful=True is not supported"),
    (lambda: LSTM(4, activation="nope"), "nope"),
    (lambda: GRU(4, recurrent_activation="nope"), "nope"),
    (lambda: LSTM(4, use_cudnn="yes"), "use_cudnn"),
    (lambda: LSTM(4, activity_regularizer="l2"), "activity_regularizer"),
    (lambda: LSTM(4, implementation=1), "unknown arguments implementation"),
    (lambda: Bidirectional(Dense(3)), "must be a recurrent layer"),
    (lambda: Bidirectional("lstm"), "must be a layer instance"),
    (lambda: Bidirectional(LSTM(3), merge_mode="max"), "Invalid merge mode"),
    (lambda: TimeDistributed(Concatenate()), "takes one input"),
])
def test_bad_arguments_raise(make, message):
    with pytest.raises(SymgraphError, match=message):
        make()


def test_bad_shapes_raise_and_change_nothing():
    model = Sequential([Input((28,))])
    with pytest.raises(SymgraphError, match=r"\(None, timesteps, features\).*\(None, 28\)"):
        model.add(LSTM(4))
    assert model.layers == []
    with pytest.raises(SymgraphError, match="expected ndim=3"):
        GRU(2)(Input((3, 4, 5)))
    model = Sequential([Input((5, 3))])
    with pytest.raises(SymgraphError, match="single output tensor"):
        model.add(LSTM(4, return_state=True))
    with pytest.raises(SymgraphError, match="single output tensor"):
        model.add(Bidirectional(GRU(2), merge_mode=None))
    assert model.layers == []
    inputs = Input((5, 3))
    out, h, c = LSTM(2, return_state=True)(inputs)
    with pytest.raises(SymgraphError, match="each must come from its own layer"):
        Model(inputs, [h, c]).compile(optimizer="sgd", loss=["mse", "mse"], backend="numpy")


def test_an_encoder_of_an_lstms_states_predicts_and_round_trips(tmp_path):
    """Keras's seq2seq encoder: Model(inputs, [state_h, state_c]) of one LSTM call."""
    inputs = Input((4, 3))
    _, h, c = LSTM(5, return_state=True)(inputs)
    encoder = Model(inputs, [h, c])
    x = RNG.normal(size=(3, 4, 3)).astype(np.float32)
    got_h, got_c = encoder.predict(x, verbose=0)
    weights = encoder.layers[1].get_weights()
    _, (h_ref, c_ref) = keras_rnn("lstm", x.astype(np.float64), weights, 5)
    np.testing.assert_allclose(got_h, h_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_c, c_ref, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    for a, b in zip(load_model(path).predict(x, verbose=0), (got_h, got_c)):
        np.testing.assert_array_equal(a, b)
