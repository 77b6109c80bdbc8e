"""Functional models with several inputs (symgraph/nn/functional.py, model_inputs.py and the
steps' placeholders in steps.py): a two-input model against the one-input model fed the
concatenated arrays with the same weights, and against a hand NumPy forward pass; x as a list
and as a dict; validation data and split, sample weights, files, summary; every refused input."""

import re

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import Add, Concatenate, Dense, Input, Model, optimizers, set_random_seed

RNG = np.random.default_rng(7)
N = 40


def _data(n=N):
    xa = RNG.normal(size=(n, 4)).astype(np.float32)
    xb = RNG.normal(size=(n, 3)).astype(np.float32)
    return xa, xb, RNG.integers(0, 3, size=n)


def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _two_inputs(**compile_args):
    """Dense layers on Concatenate([a, b]): the one-input model below on [xa | xb]."""
    a, b = Input((4,), name="a"), Input((3,), name="b")
    h = Dense(6, activation="relu")(Concatenate()([a, b]))
    model = Model([a, b], Dense(3, activation="softmax")(h))
    if compile_args:
        model.compile(**compile_args)
    return model


def _one_input(like, **compile_args):
    """The same layers on one Input of the 7 concatenated features, with `like`'s weights."""
    c = Input((7,))
    model = Model(c, Dense(3, activation="softmax")(Dense(6, activation="relu")(c)))
    model.set_weights(like.get_weights())
    model.compile(**compile_args)
    return model


def _args(backend="numpy", **more):
    return dict(optimizer=optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"], backend=backend, **more)


def _assert_same_weights(m1, m2, exact=False):
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- against the one-input model on the concatenated arrays -----------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_two_inputs_equal_one_input_on_concatenated_arrays(backend):
    """predict, three shuffled epochs of fit with a validation split, evaluate."""
    xa, xb, y = _data()
    xc = np.concatenate([xa, xb], axis=1)
    two = _two_inputs(**_args(backend))
    one = _one_input(two, **_args(backend))
    np.testing.assert_allclose(two.predict([xa, xb], verbose=0), one.predict(xc, verbose=0),
                               rtol=1e-6, atol=1e-7)
    h2 = two.fit([xa, xb], y, epochs=3, batch_size=8, validation_split=0.25, verbose=0, seed=3)
    h1 = one.fit(xc, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0, seed=3)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert h2.history[key] == pytest.approx(h1.history[key], rel=1e-5), key
    assert h2.history["loss"][2] < h2.history["loss"][0]  # the weights did move
    _assert_same_weights(two, one)
    assert two.evaluate([xa, xb], y, verbose=0) == pytest.approx(one.evaluate(xc, y, verbose=0),
                                                                  rel=1e-5)
    assert two.train_on_batch([xa, xb], y) == pytest.approx(one.train_on_batch(xc, y), rel=1e-5)
    assert two.test_on_batch([xa, xb], y) == pytest.approx(one.test_on_batch(xc, y), rel=1e-5)
    np.testing.assert_allclose(two.predict_on_batch([xa, xb]), one.predict_on_batch(xc),
                               rtol=1e-5, atol=1e-6)


def test_validation_data_and_sample_weights_as_with_one_input():
    xa, xb, y = _data()
    va, vb, vy = _data(12)
    w, vw = RNG.uniform(0, 2, size=N), RNG.uniform(0, 2, size=12)
    two = _two_inputs(**_args(weighted_metrics=["accuracy"]))
    one = _one_input(two, **_args(weighted_metrics=["accuracy"]))  # an optimizer each
    h2 = two.fit({"a": xa, "b": xb}, y, epochs=2, batch_size=16, sample_weight=w, verbose=0,
                 seed=1, validation_data=([va, vb], vy, vw))
    h1 = one.fit(np.c_[xa, xb], y, epochs=2, batch_size=16, sample_weight=w, verbose=0, seed=1,
                 validation_data=(np.c_[va, vb], vy, vw))
    assert set(h2.history) == {"loss", "accuracy", "weighted_accuracy", "val_loss",
                               "val_accuracy", "val_weighted_accuracy"}
    for key, values in h1.history.items():
        assert h2.history[key] == pytest.approx(values, rel=1e-5), key
    _assert_same_weights(two, one)
    got = two.evaluate([va, vb], vy, sample_weight=vw, verbose=0, return_dict=True)
    want = one.evaluate(np.c_[va, vb], vy, sample_weight=vw, verbose=0, return_dict=True)
    assert got == pytest.approx(want, rel=1e-5)
    assert got["loss"] != pytest.approx(two.evaluate([va, vb], vy, verbose=0), rel=1e-3)


def test_class_weight_as_with_one_input():
    xa, xb, y = _data()
    two = _two_inputs(**_args())
    one = _one_input(two, **_args())
    cw = {0: 3.0, 2: 0.5}
    h2 = two.fit([xa, xb], y, epochs=2, class_weight=cw, verbose=0, seed=2, shuffle=False)
    h1 = one.fit(np.c_[xa, xb], y, epochs=2, class_weight=cw, verbose=0, seed=2, shuffle=False)
    assert h2.history["loss"] == pytest.approx(h1.history["loss"], rel=1e-5)


# --- against NumPy ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_graph_with_a_layer_per_input_matches_a_numpy_forward_pass(backend):
    """Dense on `a` only, joined with `b`, and b added to a projection of a."""
    xa, xb, y = _data()
    a, b = Input((4,), name="a"), Input((3,), name="b")
    h = Concatenate()([Dense(5, activation="tanh")(a), Add()([b, Dense(3)(a)])])
    model = Model({"a": a, "b": b}, Dense(3, activation="softmax")(h))
    k1, b1, k2, b2, k3, b3 = model.get_weights()
    expected = _softmax(np.c_[np.tanh(xa @ k1 + b1), xb + xa @ k2 + b2] @ k3 + b3)
    model.compile(**_args(backend))
    np.testing.assert_allclose(model.predict({"a": xa, "b": xb}, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict([xa, xb], batch_size=7, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)
    loss = -np.log(expected[np.arange(N), y]).mean()
    assert model.evaluate([xa, xb], y, batch_size=16, verbose=0)[0] == pytest.approx(loss,
                                                                                     rel=1e-5)


# --- list and dict x -------------------------------------------------------------------------

def test_list_and_dict_x_give_identical_results():
    xa, xb, y = _data()
    first = _two_inputs(**_args())
    second = _two_inputs(**_args())
    second.set_weights(first.get_weights())
    h1 = first.fit([xa, xb], y, epochs=2, batch_size=8, verbose=0, seed=4,
                   validation_data=([xa[:8], xb[:8]], y[:8]))
    h2 = second.fit({"b": xb, "a": xa}, y, epochs=2, batch_size=8, verbose=0, seed=4,
                    validation_data=({"a": xa[:8], "b": xb[:8]}, y[:8]))
    assert h1.history == h2.history
    _assert_same_weights(first, second, exact=True)
    np.testing.assert_array_equal(first.predict((xa, xb), verbose=0),
                                  second.predict({"a": xa, "b": xb}, verbose=0))


def test_dict_inputs_are_ordered_by_key_and_a_list_x_needs_sorted_keys():
    xa, xb, _ = _data()
    a, b = Input((4,), name="a"), Input((3,), name="b")
    out = Dense(2)(Concatenate()([b, a]))
    model = Model({"b": b, "a": a}, out)  # Keras flattens a dict in sorted key order
    assert model.inputs == [a, b] and [layer.name for layer in model.layers[:2]] == ["a", "b"]
    assert model.input_shape == [(4,), (3,)]
    expected = model.predict({"a": xa, "b": xb}, verbose=0)
    with pytest.raises(SymgraphError, match=r"keys are not in sorted order, so a list x is "
                                            r"ambiguous.*pass x as a dict"):
        model.predict([xa, xb], verbose=0)
    ordered = Model({"a": a, "b": b}, out)
    np.testing.assert_array_equal(ordered.predict([xa, xb], verbose=0), expected)


def test_a_one_input_model_also_takes_x_as_a_dict_by_input_name():
    xa, _, y = _data()
    a = Input((4,), name="a")
    model = Model({"a": a}, Dense(3, activation="softmax")(a))
    model.compile(**_args())
    np.testing.assert_array_equal(model.predict({"a": xa}, verbose=0), model.predict(xa, verbose=0))
    assert model.evaluate({"a": xa}, y, verbose=0)[0] == model.evaluate(xa, y, verbose=0)[0]
    with pytest.raises(SymgraphError, match="unknown keys 'b' and no array for 'a'; model .* has "
                                            "the inputs 'a'"):
        model.predict({"b": xa}, verbose=0)


def test_each_input_is_its_own_placeholder_and_one_input_keeps_x():
    xa, xb, y = _data()
    two = _two_inputs(**_args())
    two.fit([xa, xb], y, epochs=1, verbose=0)
    two.fit([xa, xb], y, epochs=1, verbose=0, sample_weight=np.ones(N))
    two.predict([xa, xb], verbose=0)
    names = sorted(tuple(p.name for p in getattr(f, "function", f).inputs)
                   for f in two._functions.values())
    assert names == [("a", "b"), ("a", "b", "y"), ("a", "b", "y", "sample_weight")]
    one = _one_input(two, **_args())
    one.fit(np.c_[xa, xb], y, epochs=1, verbose=0)
    one.predict(np.c_[xa, xb], verbose=0)
    names = sorted(tuple(p.name for p in getattr(f, "function", f).inputs)
                   for f in one._functions.values())
    assert names == [("x",), ("x", "y")]


def test_the_model_called_on_nodes_takes_one_node_per_input():
    two = _two_inputs()
    xa, xb = sg.placeholder(("batch", 4), name="xa"), sg.placeholder(("batch", 3), name="xb")
    fn = sg.function([xa, xb], two([xa, xb]), backend="numpy")
    a, b, _ = _data(5)
    np.testing.assert_allclose(fn(a, b), two.predict([a, b], verbose=0), rtol=1e-6)
    with pytest.raises(SymgraphError, match=r"has 2 inputs \(a, b\): call it on a list of 2"):
        two(xa)


# --- files and summary -----------------------------------------------------------------------

def test_weights_files_and_training_state_round_trip(tmp_path):
    xa, xb, y = _data()
    set_random_seed(5)
    first = _two_inputs(**_args())
    first.fit([xa, xb], y, epochs=1, verbose=0, shuffle=False)
    first.save_weights(str(tmp_path / "w.npz"))
    first.save_training_state(str(tmp_path / "state.npz"))
    other = _two_inputs(**_args())
    assert not np.allclose(other.predict([xa, xb], verbose=0), first.predict([xa, xb], verbose=0))
    other.load_weights(str(tmp_path / "w.npz"))
    np.testing.assert_array_equal(other.predict([xa, xb], verbose=0),
                                  first.predict([xa, xb], verbose=0))
    first.fit([xa, xb], y, epochs=1, verbose=0, shuffle=False)
    resumed = _two_inputs(**_args())
    resumed.load_training_state(str(tmp_path / "state.npz"))
    resumed.fit({"a": xa, "b": xb}, y, epochs=1, verbose=0, shuffle=False)
    _assert_same_weights(first, resumed, exact=True)


def test_summary_lists_every_input_layer_and_the_connections():
    lines = []
    _two_inputs().summary(print_fn=lines.append)
    rows = lines[0].splitlines()
    assert "Connected to" in rows[2]
    a_row = next(r for r in rows if "a (InputLayer)" in r)
    b_row = next(r for r in rows if "b (InputLayer)" in r)
    assert "(None, 4)" in a_row and "(None, 3)" in b_row
    row = next(r for r in rows if "(Concatenate)" in r)
    assert "(None, 7)" in row and "a[0][0], b[0][0]" in row
    assert rows.index(a_row) < rows.index(b_row) < rows.index(row)


# --- refused inputs --------------------------------------------------------------------------

def test_x_of_the_wrong_structure_is_refused_naming_the_inputs():
    xa, xb, y = _data()
    model = _two_inputs(**_args())
    cases = [
        ([xa], r"has 2 inputs \('a', 'b'\): x must be a list of 2 arrays in that order, got a "
               r"list of 1"),
        ([xa, xb, xb], "got a list of 3"),
        (xa, r"or a dict \{Input name: array\}; got ndarray of shape \(40, 4\)"),
        ({"a": xa, "b": xb, "c": xb}, r"it has unknown keys 'c'; model .* has the inputs 'a', "
                                      r"'b'"),
        ({"a": xa}, "it has no array for 'b'"),
        ({"a": xa, "bb": xb}, "unknown keys 'bb' and no array for 'b'"),
        ([xa, xa], r"model input 'b' \(InputLayer\) expects shape \(None, 3\), got \(40, 4\) "
                   r"\(placeholder 'b'\)"),
        ([xa, xb[:, :, None]], r"'b' .* expects shape \(None, 3\), got \(40, 3, 1\)"),
        ([xa, xb[:39]], "the arrays of x must have the same number of samples, one per model "
                        "input: 'a' has 40, 'b' has 39"),
        ([xa, np.full((N, 3), "s")], "model input 'b' must be numeric"),
        ([xa, [[1.0, 2.0], [3.0]]], "model input 'b' must be a rectangular numeric array"),
    ]
    before = model.get_weights()
    for x, message in cases:
        for call in (lambda: model.fit(x, y, verbose=0), lambda: model.predict(x, verbose=0),
                     lambda: model.evaluate(x, y, verbose=0),
                     lambda: model.train_on_batch(x, y), lambda: model.test_on_batch(x, y),
                     lambda: model.predict_on_batch(x)):
            with pytest.raises(SymgraphError, match=message):
                call()
    with pytest.raises(SymgraphError, match="x has 40 samples but y has 39"):
        model.fit([xa, xb], y[:39], verbose=0)
    with pytest.raises(SymgraphError, match="'a' has 8, 'b' has 40"):
        model.fit([xa, xb], y, verbose=0, validation_data=([xa[:8], xb], y[:8]))
    with pytest.raises(SymgraphError, match="sample_weight must have shape \\(40,\\)"):
        model.fit([xa, xb], y, verbose=0, sample_weight=np.ones(39))
    with pytest.raises(SymgraphError, match="augment transforms one array x; model .* has 2 "
                                            "inputs"):
        model.fit([xa, xb], y, verbose=0, augment=lambda x, rng: x)
    for kept, was in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, was)
    assert not model._functions  # nothing was compiled, let alone run


def test_the_nan_guard_names_the_input_holding_a_nan_and_hunts_a_nan_loss():
    xa, xb, y = _data()
    xb[17, 2] = np.nan
    model = _two_inputs(**_args())
    before = model.get_weights()
    history = model.fit([xa, xb], y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert history.nan_report.startswith("training sample 17 holds NaN of input 'b' (at (2,)")
    assert len(history.history.get("loss", [])) == 0
    first_batches = model.get_weights()
    assert any(not np.array_equal(p, q) for p, q in zip(before, first_batches))  # two good steps
    xb[17, 2] = 0.0
    model.compile(loss="mse", optimizer=optimizers.SGD(1e30), backend="numpy")
    history = model.fit([xa, xb], np.eye(3)[y], epochs=3, verbose=0)  # the loss overflows
    assert re.search(r"the loss became NaN/inf: inf first produced by .* it belongs to layer "
                     r"'dense_\d+' \(forward\)", history.nan_report)


def test_model_refuses_bad_input_lists():
    a, b = Input((4,), name="a"), Input((3,), name="b")
    out = Dense(2)(Concatenate()([Dense(3)(a), b]))
    with pytest.raises(SymgraphError, match="key 'x' holds b.* of layer 'b'.*Input\\(..., "
                                            "name='x'\\)"):
        Model({"a": a, "x": b}, out)
    with pytest.raises(SymgraphError, match="input 'a' is given 2 times"):
        Model([a, b, a], out)
    with pytest.raises(SymgraphError, match="inputs must be symbolic tensors"):
        Model([a, np.ones((2, 3))], out)
    with pytest.raises(SymgraphError, match="inputs must be symbolic tensors"):
        Model({"a": a, "b": "b"}, out)
    with pytest.raises(SymgraphError, match=r"inputs must be what Input\(\) returns"):
        Model([a, Dense(3)(a)], out)
    with pytest.raises(SymgraphError, match="no inputs given"):
        Model([], out)
    unused = Input((2,), name="unused")
    with pytest.raises(SymgraphError, match=r"input 'unused' \(made at .*test_functional_inputs"
                                            r".py.*\) is not used to compute the output"):
        Model([a, b, unused], out)
    with pytest.raises(SymgraphError, match=r"not computed from the model's inputs a\[0\]\[0\] "
                                            r"alone: it depends on b\[0\]\[0\]"):
        Model([a], out)
    twin = Input((3,), name="a")
    with pytest.raises(SymgraphError, match="two layers are named 'a'"):
        Model([a, twin], Concatenate()([a, twin]))
