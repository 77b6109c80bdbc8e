"""Keras's sample_weight and class_weight (symgraph/nn/sample_weights.py and their use in
training.py / steps.py), against Keras 3's formulas computed by hand in NumPy: the loss is
sum(w * loss) / batch size plus the unweighted penalties, `weighted_metrics` average
sum(w * v) / sum(w), the plain `metrics` ignore the weights; with several outputs, each
output's loss and weighted metrics use that output's weights (one array: every output's)."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Input, Model, Sequential, optimizers, regularizers, set_random_seed

BACKENDS = ["numpy", "numba"]
RNG = np.random.default_rng(11)
# sums to 6.0 over 8 samples, so dividing by sum(w) instead of the batch size shows; one is
# negative (Keras allows it) and one 0; all exact in float32
WEIGHTS = np.array([0.5, 2.0, 0.0, 1.25, 3.0, -0.5, 0.75, -1.0])


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _classifier(backend, lr=0.1, **compile_args):
    set_random_seed(4)
    model = Sequential([Dense(3, input_dim=4, activation="softmax", dtype="float64",
                              kernel_regularizer=regularizers.l2(0.01))])
    model.compile(optimizer=optimizers.SGD(lr), loss="sparse_categorical_crossentropy",
                  backend=backend, **compile_args)
    return model


def _state(model):
    return [v.value.copy() for v in model.weights + model.optimizer.variables
            + [model.step_counter]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_loss_and_one_sgd_step_are_keras_formulas(backend):
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, size=8)
    model = _classifier(backend)
    kernel, bias = model.get_weights()
    z = x.astype(np.float64) @ kernel + bias
    ce = -_log_softmax(z)[np.arange(8), labels]
    loss = np.sum(WEIGHTS * ce) / 8 + 0.01 * np.sum(kernel ** 2)  # penalty unweighted
    dz = WEIGHTS[:, None] * (np.exp(_log_softmax(z)) - np.eye(3)[labels]) / 8
    got = model.train_on_batch(x, labels, sample_weight=WEIGHTS)
    assert got == pytest.approx(loss, rel=1e-6)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.1 * (x.T @ dz + 0.02 * kernel), rtol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.1 * dz.sum(axis=0), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_weights_the_loss_and_only_the_weighted_metrics(backend):
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, size=8)
    model = _classifier(backend, metrics=["accuracy"], weighted_metrics=["accuracy", "acc"])
    kernel, bias = model.get_weights()
    z = x.astype(np.float64) @ kernel + bias
    ce = -_log_softmax(z)[np.arange(8), labels]
    hit = (z.argmax(axis=1) == labels).astype(np.float64)
    penalty = 0.01 * np.sum(kernel ** 2)
    # batches of 3, 3, 2: each batch's weighted loss is averaged by its size, so the whole is
    # sum(w * ce) / 8 however the batches fall
    want = {"loss": np.sum(WEIGHTS * ce) / 8 + penalty, "accuracy": hit.mean(),
            "weighted_accuracy": np.sum(WEIGHTS * hit) / WEIGHTS.sum(),
            "acc": np.sum(WEIGHTS * hit) / WEIGHTS.sum()}
    got = model.evaluate(x, labels, batch_size=3, sample_weight=WEIGHTS, verbose=0,
                         return_dict=True)
    assert got == pytest.approx(want, rel=1e-6)
    before = _state(model)
    assert model.test_on_batch(x, labels, sample_weight=WEIGHTS, return_dict=True) \
        == pytest.approx(want, rel=1e-6)
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)
    # without weights a weighted metric is the plain one, and the loss the plain mean
    plain = {"loss": ce.mean() + penalty, "accuracy": hit.mean(),
             "weighted_accuracy": hit.mean(), "acc": hit.mean()}
    assert model.evaluate(x, labels, batch_size=3, verbose=0, return_dict=True) \
        == pytest.approx(plain, rel=1e-6)
    # weights summing to 0 leave a weighted metric at 0, as Keras's divide_no_nan
    zero = model.evaluate(x, labels, sample_weight=np.r_[1.0, -1.0, np.zeros(6)], verbose=0,
                          return_dict=True)
    assert zero["weighted_accuracy"] == 0.0 and zero["accuracy"] == pytest.approx(hit.mean())


def test_history_reports_the_weighted_loss_and_weighted_metrics():
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, size=8)
    model = _classifier("numpy", lr=0.0, weighted_metrics=["accuracy"])  # lr 0: nothing moves
    kernel, bias = model.get_weights()
    z = x.astype(np.float64) @ kernel + bias
    ce = -_log_softmax(z)[np.arange(8), labels]
    hit = z.argmax(axis=1) == labels
    hist = model.fit(x, labels, sample_weight=WEIGHTS, batch_size=3, epochs=2, verbose=0)
    assert hist.history["loss"] == pytest.approx([np.sum(WEIGHTS * ce) / 8
                                                  + 0.01 * np.sum(kernel ** 2)] * 2, rel=1e-6)
    assert hist.history["accuracy"] == pytest.approx([np.sum(WEIGHTS * hit) / 6] * 2, rel=1e-6)


def _fit(backend, x, y, loss="sparse_categorical_crossentropy", units=3, activation="softmax",
         **fit_args):
    set_random_seed(7)
    model = Sequential([Dense(5, input_dim=4, activation="tanh"),
                        Dense(units, activation=activation)])
    model.compile(optimizer=optimizers.SGD(0.2, momentum=0.5), loss=loss,
                  weighted_metrics=["accuracy"], backend=backend)
    hist = model.fit(x, y, epochs=2, batch_size=5, seed=1, verbose=0, **fit_args)
    return model.get_weights(), hist.history


@pytest.mark.parametrize("loss, labels, units, activation", [
    ("sparse_categorical_crossentropy", np.arange(12) % 3, 3, "softmax"),
    ("categorical_crossentropy", np.eye(3)[np.arange(12) % 3], 3, "softmax"),  # argmax
    ("binary_crossentropy", (np.arange(12) % 2).astype(np.float32), 1, "sigmoid"),  # rounded
])
def test_class_weight_is_the_sample_weight_of_each_samples_class(loss, labels, units,
                                                                  activation):
    x = RNG.normal(size=(12, 4)).astype(np.float32)
    class_weight = {0: 0.25, 1: 3.0}  # class 2 is missing: it weighs 1, as in Keras
    classes = np.arange(12) % (3 if units == 3 else 2)
    by_hand = np.array([class_weight.get(c, 1.0) for c in classes])
    args = dict(loss=loss, units=units, activation=activation)
    w1, h1 = _fit("numpy", x, labels, class_weight=class_weight, **args)
    w2, h2 = _fit("numpy", x, labels, sample_weight=by_hand, **args)
    w0, h0 = _fit("numpy", x, labels, **args)
    for a, b, c in zip(w1, w2, w0):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)  # the weights did change the training
    assert h1 == h2 and h1["loss"] != h0["loss"]


def test_train_on_batch_class_weight_equals_sample_weight():
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0, 2])
    a, b = _classifier("numpy"), _classifier("numpy")
    got = a.train_on_batch(x, labels, class_weight={0: 2.0, 2: 0.5})
    want = b.train_on_batch(x, labels, sample_weight=[2.0, 0.5, 1.0, 1.0, 2.0, 0.5])
    assert got == want
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_ones_weights_train_as_no_weights_and_no_weights_compile_no_weight_input(backend):
    x = RNG.normal(size=(12, 4)).astype(np.float32)
    labels = np.arange(12) % 3
    w1, h1 = _fit(backend, x, labels, sample_weight=np.ones((12, 1)), validation_split=0.25)
    w0, h0 = _fit(backend, x, labels, validation_split=0.25)
    for a, b in zip(w1, w0):  # w * 1 is exact: the same sums in the same order, the same bits
        np.testing.assert_array_equal(a, b)
    assert h1 == h0
    model = _classifier(backend, metrics=["accuracy"])
    model.fit(x, labels, validation_data=(x, labels), verbose=0)
    model.evaluate(x, labels, verbose=0)
    model.train_on_batch(x, labels)
    steps = list(model._functions.values())
    assert steps and all(len(getattr(s, "function", s).inputs) == 2 for s in steps)


def test_numba_trains_with_weights_as_numpy_does():
    x = RNG.normal(size=(12, 4)).astype(np.float32)
    labels = np.arange(12) % 3
    weights = np.abs(RNG.normal(size=12)) + 0.1
    wa, ha = _fit("numpy", x, labels, sample_weight=weights)
    wb, hb = _fit("numba", x, labels, sample_weight=weights)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ha:
        assert ha[key] == pytest.approx(hb[key], rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_weights_from_a_three_tuple_or_the_split(backend):
    x = RNG.normal(size=(12, 4)).astype(np.float32)
    labels = np.arange(12) % 3
    vw = np.linspace(0.5, 2.0, 12) ** 2
    model = _classifier(backend, weighted_metrics=["accuracy"])
    hist = model.fit(x[:8], labels[:8], validation_data=(x, labels, vw), epochs=2, verbose=0)
    want = model.evaluate(x, labels, sample_weight=vw, verbose=0, return_dict=True)
    assert hist.history["val_loss"][-1] == pytest.approx(want["loss"], rel=1e-6)
    assert hist.history["val_accuracy"][-1] == pytest.approx(want["accuracy"], rel=1e-6)
    assert want["loss"] != pytest.approx(model.evaluate(x, labels, verbose=0)[0], rel=1e-3)
    # validation_split holds out the last samples with their weights (Keras splits first)
    hist = model.fit(x, labels, sample_weight=vw, validation_split=0.25, verbose=0)
    assert hist.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[9:], labels[9:], sample_weight=vw[9:], verbose=0)[0], rel=1e-6)
    # ... but class_weight weighs the training data only
    hist = model.fit(x, labels, class_weight={0: 5.0}, validation_split=0.25, verbose=0)
    assert hist.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[9:], labels[9:], verbose=0)[0], rel=1e-6)


def test_a_weighted_step_gone_nan_is_named_and_undone():
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    labels = np.arange(8) % 3
    model = Sequential([Dense(3, input_dim=4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    before = _state(model)
    # finite float32 weights whose product with the loss overflows
    hist = model.fit(x, labels, sample_weight=np.full(8, 3e38), verbose=0)
    assert "inf first produced by mul node" in hist.nan_report
    assert hist.nan_report.endswith("it belongs to the loss (sparse_categorical_crossentropy "
                                    "and penalties)")
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)


BAD_SAMPLE_WEIGHTS = {
    "short": (np.ones(7), r"fit: sample_weight must have shape \(8,\).* got shape \(7,\)"),
    "2-D": (np.ones((8, 2)), r"shape \(8,\), one weight per sample of x; got shape \(8, 2\)"),
    "scalar": (2.0, r"got shape \(\)"),
    "NaN": (np.r_[np.ones(5), np.nan, 1, 1], "finite float32 numbers: sample 5 has weight nan"),
    "inf": (np.r_[np.inf, np.ones(7)], "sample 0 has weight inf"),
    "float32 overflow": (np.r_[1, 1e39, np.ones(6)], "sample 1 has weight 1e[+]39"),
    "strings": (np.array(["1"] * 8), "sample_weight must be numeric, got dtype <U1"),
    "ragged": ([[1], [1, 2]] + [[1]] * 6, "sample_weight must be a numeric array"),
}
BAD_CLASS_WEIGHTS = {
    "a list": ([1.0, 2.0], "class_weight must be a dict .* got list"),
    "a str key": ({"0": 1.0}, r"keys must be integer class indices, got '0' \(str\)"),
    "a float key": ({1.0: 1.0}, r"got 1.0 \(float\)"),
    "a bool key": ({True: 1.0}, r"got True \(bool\)"),
    "a key out of range": ({3: 2.0}, r"key 3 is no class of layer 'd' output shape "
                                     r"\(None, 3\): the classes are 0 to 2"),
    "a negative key": ({-1: 2.0}, "key -1 is no class"),
    "a NaN weight": ({0: float("nan")}, r"class_weight\[0\] must be a finite number, got nan"),
    "a str weight": ({0: "2"}, r"class_weight\[0\] must be a finite number, got '2'"),
}


@pytest.mark.parametrize("bad, match", list(BAD_SAMPLE_WEIGHTS.values()),
                         ids=list(BAD_SAMPLE_WEIGHTS))
def test_bad_sample_weights_raise_naming_the_argument_and_change_nothing(bad, match):
    x, labels = np.ones((8, 4), np.float32), np.arange(8) % 3
    model = _classifier("numpy")
    before = _state(model)
    with pytest.raises(SymgraphError, match=match):
        model.fit(x, labels, sample_weight=bad, verbose=0)
    with pytest.raises(SymgraphError, match=match.replace("fit", "train_on_batch")):
        model.train_on_batch(x, labels, sample_weight=bad)
    with pytest.raises(SymgraphError, match=match.replace("fit", "evaluate")):
        model.evaluate(x, labels, sample_weight=bad, verbose=0)
    with pytest.raises(SymgraphError, match=match.replace("fit", "test_on_batch")):
        model.test_on_batch(x, labels, sample_weight=bad)
    with pytest.raises(SymgraphError, match="validation_data's sample weights"):
        model.fit(x, labels, validation_data=(x, labels, bad), verbose=0)
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, match", list(BAD_CLASS_WEIGHTS.values()),
                         ids=list(BAD_CLASS_WEIGHTS))
def test_bad_class_weights_raise_naming_the_key_and_change_nothing(bad, match):
    x, labels = np.ones((8, 4), np.float32), np.arange(8) % 3
    set_random_seed(4)
    model = Sequential([Dense(3, input_dim=4, activation="softmax", name="d")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    before = _state(model)
    with pytest.raises(SymgraphError, match="fit: .*" + match):
        model.fit(x, labels, class_weight=bad, verbose=0)
    with pytest.raises(SymgraphError, match="train_on_batch: .*" + match):
        model.train_on_batch(x, labels, class_weight=bad)
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)


def test_class_weight_needs_a_classification_loss_and_not_both_weights():
    x = np.ones((8, 4), np.float32)
    model = Sequential([Dense(2, input_dim=4, name="d")])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match="fit: class_weight needs a classification loss .* "
                                            "the model's loss is mean_squared_error"):
        model.fit(x, np.zeros((8, 2)), class_weight={0: 2.0}, verbose=0)
    with pytest.raises(SymgraphError, match="fit: sample_weight and class_weight cannot be "
                                            "given together"):
        model.fit(x, np.zeros((8, 2)), sample_weight=np.ones(8), class_weight={0: 2.0},
                  verbose=0)
    with pytest.raises(SymgraphError, match="train_on_batch: sample_weight and class_weight"):
        model.train_on_batch(x, np.zeros((8, 2)), sample_weight=np.ones(8), class_weight={})
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SymgraphError, match=r"`weighted_metrics` must be a list or tuple, e\.g\. "
                                            r"weighted_metrics=\['mae'\]"):
        model.compile(optimizer="sgd", loss="mse", weighted_metrics="mae", backend="numpy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("given", [0.25, [0.25], {"out": 0.25}, np.float32(0.25)])
def test_loss_weights_scale_the_output_loss_and_not_the_penalties(backend, given):
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, size=8)
    model = _classifier(backend, loss_weights=given)
    kernel, bias = model.get_weights()
    z = x.astype(np.float64) @ kernel + bias
    ce = -_log_softmax(z)[np.arange(8), labels]
    loss = 0.25 * ce.mean() + 0.01 * np.sum(kernel ** 2)
    dz = 0.25 * (np.exp(_log_softmax(z)) - np.eye(3)[labels]) / 8
    assert model.test_on_batch(x, labels) == pytest.approx(loss, rel=1e-6)
    assert model.train_on_batch(x, labels) == pytest.approx(loss, rel=1e-6)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - 0.1 * (x.T @ dz + 0.02 * kernel), rtol=1e-6)
    np.testing.assert_allclose(new_bias, bias - 0.1 * dz.sum(axis=0), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("given", ["0.5", [0.5, 1.0], {"a": 1.0, "b": 2.0}, float("nan"), True])
def test_bad_loss_weights_are_refused(given):
    with pytest.raises(SymgraphError, match="loss_weights"):
        _classifier("numpy", loss_weights=given)


# --- several outputs: weights per output ---------------------------------------------------

N2 = 12
X2 = RNG.normal(size=(N2, 4)).astype(np.float32)
Y_CLS = RNG.integers(0, 3, size=N2)
Y_REG = RNG.normal(size=(N2, 2)).astype(np.float32)
W_CLS = np.array([0.5, 2.0, 0.0, 1.25, 3.0, -0.5, 0.75, -1.0, 1.0, 1.5, 0.25, 2.5])
W_REG = np.array([1.0, 0.0, 2.0, 0.5, 0.25, 3.0, 1.5, 1.0, -0.5, 0.75, 2.0, 1.25])


def _two_outputs(backend, lr=0.1):
    """A tanh trunk feeding "cls" (softmax, sparse cross-entropy, weight 0.5) and "reg" (mse,
    weight 2); weighted metrics: cls accuracy and reg mae."""
    set_random_seed(9)
    x = Input((4,), name="x_in")
    h = Dense(5, activation="tanh", name="hidden")(x)
    model = Model(x, [Dense(3, activation="softmax", name="cls")(h), Dense(2, name="reg")(h)])
    model.compile(optimizer=optimizers.SGD(lr, momentum=0.5), backend=backend,
                  loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[0.5, 2.0],
                  metrics=[["accuracy"], []], weighted_metrics=[["accuracy"], ["mae"]])
    return model


def _keras_logs(model, w_cls, w_reg):
    """Keras 3's evaluate logs from the model's predictions, in float64 NumPy."""
    p_cls, p_reg = [p.astype(np.float64) for p in model.predict(X2, verbose=0)]
    ce = -np.log(p_cls[np.arange(N2), Y_CLS])
    hit = (p_cls.argmax(1) == Y_CLS).astype(np.float64)
    sq, ab = ((p_reg - Y_REG) ** 2).mean(1), np.abs(p_reg - Y_REG).mean(1)
    cls_loss, reg_loss = np.sum(w_cls * ce) / N2, np.sum(w_reg * sq) / N2
    return {"loss": 0.5 * cls_loss + 2.0 * reg_loss, "cls_accuracy": hit.mean(),
            "cls_weighted_accuracy": np.sum(w_cls * hit) / w_cls.sum(),
            "reg_mae": np.sum(w_reg * ab) / w_reg.sum(),
            "cls_loss": cls_loss, "reg_loss": reg_loss}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("given, w_cls, w_reg", [
    ([W_CLS, W_REG], W_CLS, W_REG),
    ({"reg": W_REG, "cls": W_CLS}, W_CLS, W_REG),
    ((None, W_REG[:, None]), np.ones(N2), W_REG),   # None: unweighted; (n, 1) is (n,)
    (W_CLS, W_CLS, W_CLS),                          # one array weighs every output (Keras)
], ids=["list", "dict", "None and (n, 1)", "one array"])
def test_each_output_is_weighted_by_its_own_weights(backend, given, w_cls, w_reg):
    model = _two_outputs(backend)
    want = _keras_logs(model, w_cls, w_reg)
    # batches of 5, 5, 2: each batch's loss is averaged by its size, the whole stays the formula
    got = model.evaluate(X2, [Y_CLS, Y_REG], sample_weight=given, batch_size=5, verbose=0,
                         return_dict=True)
    assert list(got) == list(want)
    assert got == pytest.approx(want, rel=1e-5)
    before = _state(model)
    assert model.test_on_batch(X2, {"reg": Y_REG, "cls": Y_CLS}, sample_weight=given,
                               return_dict=True) == pytest.approx(want, rel=1e-5)
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)
    assert model.train_on_batch(X2, [Y_CLS, Y_REG], sample_weight=given,
                                return_dict=True) == pytest.approx(want, rel=1e-5)
    (step,) = [f for key, f in model._functions.items() if key[0] == "train"]
    assert [p.name for p in step.function.inputs] == [
        "x", "y_cls", "y_reg", "sample_weight_cls", "sample_weight_reg"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_output_weights_in_batches_and_validation_data_train_as_arrays(backend):
    weights = {"cls": W_CLS, "reg": W_REG}
    model = _two_outputs(backend)
    val = (X2[:7], [Y_CLS[:7], Y_REG[:7]], [W_REG[:7], W_CLS[:7]])
    history = model.fit(X2, [Y_CLS, Y_REG], sample_weight=weights, batch_size=4, epochs=2,
                        shuffle=False, verbose=0, validation_data=val).history
    batches = [(X2[i:i + 4], {"cls": Y_CLS[i:i + 4], "reg": Y_REG[i:i + 4]},
                [W_CLS[i:i + 4], W_REG[i:i + 4]]) for i in range(0, N2, 4)]
    other = _two_outputs(backend)
    val_batches = [(X2[i:j], [Y_CLS[i:j], Y_REG[i:j]], {"cls": W_REG[i:j], "reg": W_CLS[i:j]})
                   for i, j in ((0, 4), (4, 7))]  # fit validates arrays in batches of 4 too
    from_batches = other.fit(batches, epochs=2, verbose=0, validation_data=val_batches).history
    assert from_batches == history
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    want = model.evaluate(*val[:2], sample_weight=val[2], verbose=0, return_dict=True)
    assert {k[4:]: v[-1] for k, v in history.items() if k.startswith("val_")} \
        == pytest.approx(want, rel=1e-6)
    unweighted = model.evaluate(*val[:2], verbose=0, return_dict=True)
    assert want["cls_loss"] != pytest.approx(unweighted["cls_loss"], rel=1e-3)
    # a validation split keeps each output's weights of the samples it holds out
    history = model.fit(X2, [Y_CLS, Y_REG], sample_weight=weights, validation_split=0.25,
                        verbose=0).history
    held_out = model.evaluate(X2[9:], [Y_CLS[9:], Y_REG[9:]], verbose=0, return_dict=True,
                              sample_weight={"cls": W_CLS[9:], "reg": W_REG[9:]})
    assert history["val_loss"][-1] == pytest.approx(held_out["loss"], rel=1e-6)


# each message follows the argument's name: "fit: sample_weight", "evaluate: sample_weight",
# "fit: validation_data's sample weights (its third item)", a batch's "its sample_weight"...
BAD_OUTPUT_WEIGHTS = {
    "a list of 3": ([W_CLS, W_REG, W_REG], r" must be a list of 2 weight arrays, one per output "
                                           r"of model '\w+' in the order 'cls', 'reg', or a dict "
                                           r"\{output name: weight array\}; got a list of 3"),
    "a list of 1": ([W_CLS], "got a list of 1"),
    "an unknown name": ({"cls": W_CLS, "regg": W_REG}, r" is a dict keyed by output name, but it "
                        r"has unknown keys 'regg' and no weight array for 'reg'; model '\w+' has "
                        r"the outputs 'cls', 'reg'"),
    "a missing name": ({"cls": W_CLS}, "no weight array for 'reg'"),
    "a short array": ([W_CLS, W_REG[:7]], r" of output 'reg' must have shape \(12,\), one "
                                          r"weight per sample of x; got shape \(7,\)"),
    "a NaN": ({"cls": np.r_[np.nan, W_CLS[1:]], "reg": W_REG}, " of output 'cls' must be finite "
              "float32 numbers: sample 0 has weight nan"),
    "one array per sample and output": (np.ones((N2, 2)), r" must have shape \(12,\), one "
                                        r"weight per sample of x; got shape \(12, 2\)"),
}


@pytest.mark.parametrize("bad, match", list(BAD_OUTPUT_WEIGHTS.values()),
                         ids=list(BAD_OUTPUT_WEIGHTS))
def test_bad_per_output_weights_are_refused_naming_the_output_and_change_nothing(bad, match):
    model = _two_outputs("numpy")
    y = [Y_CLS, Y_REG]
    before = _state(model)
    for call, what in (
            (lambda: model.fit(X2, y, sample_weight=bad, verbose=0), "fit: sample_weight"),
            (lambda: model.train_on_batch(X2, y, sample_weight=bad),
             "train_on_batch: sample_weight"),
            (lambda: model.evaluate(X2, y, sample_weight=bad, verbose=0),
             "evaluate: sample_weight"),
            (lambda: model.test_on_batch(X2, y, sample_weight=bad), "test_on_batch: sample_weight"),
            (lambda: model.fit(X2, y, validation_data=(X2, y, bad), verbose=0),
             r"fit: validation_data's sample weights \(its third item\)"),
            (lambda: model.fit([(X2, y, bad)], verbose=0),
             r"fit \(epoch 1\): batch 0 \(counting from 0\) is invalid, so its step was not "
             r"run: its sample_weight \(the third item\)")):
        with pytest.raises(SymgraphError, match=what + ".*" + match):
            call()
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)
