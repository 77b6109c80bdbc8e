"""Functional models with several outputs (symgraph/nn/functional.py, model_outputs.py and the
steps' per-output losses in steps.py), against Keras 3's formulas computed by hand in NumPy
(total loss = sum(weight_i * loss_i) + penalties, per-output losses unweighted, one SGD step),
against separate one-output models where the outputs share no layer, y and loss as lists and as
dicts, metric names as Keras 3 writes them, predict, weights files, and every refused input."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Input, Model, optimizers, regularizers, set_random_seed

RNG = np.random.default_rng(23)
N = 12
X = RNG.normal(size=(N, 4)).astype(np.float32)
Y_CLS = RNG.integers(0, 3, size=N)
Y_REG = RNG.normal(size=(N, 2)).astype(np.float32)
WEIGHTS = np.array([0.5, 2.0, 0.0, 1.25, 3.0, -0.5, 0.75, -1.0, 1.0, 1.5, 0.25, 2.5])
WEIGHTS_REG = np.array([1.0, 0.0, 2.0, 0.5, 0.25, 3.0, 1.5, 1.0, -0.5, 0.75, 2.0, 1.25])


def _shared_trunk(as_dict=False, l2=0.0, dtype="float32"):
    """A hidden ReLU layer feeding a softmax classifier "cls" and a linear regressor "reg"."""
    set_random_seed(3)
    x = Input((4,), name="x_in")
    reg = regularizers.l2(l2) if l2 else None
    h = Dense(5, activation="relu", name="hidden", kernel_regularizer=reg, dtype=dtype)(x)
    cls = Dense(3, activation="softmax", name="cls", dtype=dtype)(h)
    out_reg = Dense(2, name="reg", dtype=dtype)(h)
    return Model(x, {"cls": cls, "reg": out_reg} if as_dict else [cls, out_reg])


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _hand_step(weights, x, y_cls, y_reg, loss_weights, l2, lr, w=(None, None)):
    """Keras 3's losses and one SGD step of the shared-trunk model, in float64 NumPy, with the
    sample weights `w` of each output (None: unweighted); a loss weight of 0 stands for an
    output without a loss. Returns (total loss, cls loss, reg loss, the weights after it)."""
    w1, b1, wa, ba, wb, bb = [np.asarray(a, np.float64) for a in weights]
    n = len(x)
    sw_cls, sw_reg = [np.ones(n) if sw is None else sw for sw in w]
    z1 = x @ w1 + b1
    h = np.maximum(z1, 0)
    za, zb = h @ wa + ba, h @ wb + bb
    logp = _log_softmax(za)
    loss_cls = np.mean(sw_cls * -logp[np.arange(n), y_cls])   # sum(w * l) / batch size
    loss_reg = np.mean(sw_reg * np.mean((zb - y_reg) ** 2, axis=1))
    penalty = l2 * np.sum(w1 ** 2)                             # Keras's L2: no 1/2
    total = loss_weights[0] * loss_cls + loss_weights[1] * loss_reg + penalty
    onehot = np.eye(3)[y_cls]
    dza = loss_weights[0] * sw_cls[:, None] * (np.exp(logp) - onehot) / n
    dzb = loss_weights[1] * sw_reg[:, None] * 2 * (zb - y_reg) / (n * 2)
    dh = dza @ wa.T + dzb @ wb.T
    dz1 = dh * (z1 > 0)
    grads = [x.T @ dz1 + 2 * l2 * w1, dz1.sum(0), h.T @ dza, dza.sum(0), h.T @ dzb, dzb.sum(0)]
    new = [p - lr * g for p, g in zip((w1, b1, wa, ba, wb, bb), grads)]
    return total, loss_cls, loss_reg, new


# sample_weight as given, and each output's weights as Keras 3 applies them (one array weighs
# every output; a list or dict one output each; None there: unweighted)
SAMPLE_WEIGHTS = {
    "none": (None, (None, None)),
    "one array": (WEIGHTS, (WEIGHTS, WEIGHTS)),
    "list": ([WEIGHTS, WEIGHTS_REG], (WEIGHTS, WEIGHTS_REG)),
    "dict": ({"reg": WEIGHTS_REG, "cls": WEIGHTS}, (WEIGHTS, WEIGHTS_REG)),
    "list with None": ([None, WEIGHTS_REG], (None, WEIGHTS_REG)),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("weighted", list(SAMPLE_WEIGHTS))
def test_losses_and_one_sgd_step_are_keras_formulas_with_loss_weights(backend, weighted):
    model = _shared_trunk(l2=0.01, dtype="float64")
    model.compile(optimizer=optimizers.SGD(0.1), backend=backend,
                  loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[0.7, 2.5])
    before = model.get_weights()
    given, per_output = SAMPLE_WEIGHTS[weighted]
    total, loss_cls, loss_reg, after = _hand_step(before, X.astype(np.float64), Y_CLS,
                                                  Y_REG.astype(np.float64), (0.7, 2.5), 0.01,
                                                  0.1, per_output)
    logs = model.train_on_batch(X, [Y_CLS, Y_REG], sample_weight=given, return_dict=True)
    assert list(logs) == ["loss", "cls_loss", "reg_loss"]
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-6)
    np.testing.assert_allclose(logs["cls_loss"], loss_cls, rtol=1e-6)  # unweighted by 0.7
    np.testing.assert_allclose(logs["reg_loss"], loss_reg, rtol=1e-6)
    for got, want in zip(model.get_weights(), after, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


# --- outputs without a loss ---------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("weighted", ["none", "list", "dict"])
def test_an_output_without_a_loss_adds_nothing_and_keeps_its_metrics(backend, weighted):
    """loss=[..., None]: the total and the step are the formulas with that output's loss weight
    0 (its loss weight, 9.0, is ignored, as in Keras); with one loss left there is no
    "<output>_loss" (Keras 3 tracks them only for several losses), but its metrics, plain and
    weighted by its own weights, are logged."""
    model = _shared_trunk(l2=0.01, dtype="float64")
    model.compile(optimizer=optimizers.SGD(0.1), backend=backend,
                  loss=["sparse_categorical_crossentropy", None], loss_weights=[0.7, 9.0],
                  metrics=[[], ["mae"]], weighted_metrics={"reg": ["mse"]})
    before = model.get_weights()
    p_reg = model.predict(X, verbose=0)[1].astype(np.float64)
    given, (w_cls, w_reg) = SAMPLE_WEIGHTS[weighted]
    total, _, _, after = _hand_step(before, X.astype(np.float64), Y_CLS, Y_REG, (0.7, 0.0), 0.01,
                                    0.1, (w_cls, w_reg))
    logs = model.train_on_batch(X, [Y_CLS, Y_REG], sample_weight=given, return_dict=True)
    assert list(logs) == ["loss", "reg_mae", "reg_mse"]
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-6)
    np.testing.assert_allclose(logs["reg_mae"], np.abs(p_reg - Y_REG).mean(), rtol=1e-6)
    sw = np.ones(N) if w_reg is None else w_reg
    np.testing.assert_allclose(logs["reg_mse"], np.sum(sw * ((p_reg - Y_REG) ** 2).mean(1))
                               / sw.sum(), rtol=1e-6)
    for got, want in zip(model.get_weights(), after, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    for got, want in zip(model.get_weights()[4:], before[4:], strict=True):
        np.testing.assert_array_equal(got, want)  # "reg" learns nothing
    assert [a.shape for a in model.predict(X, verbose=0)] == [(N, 3), (N, 2)]


def _three_heads():
    """Outputs "a" (mse), "b" (no loss, accuracy from its shape) and "c" (mse) on one trunk."""
    set_random_seed(8)
    x = Input((4,), name="x_in")
    h = Dense(5, activation="tanh", name="hidden")(x)
    outs = [Dense(2, name="a")(h), Dense(3, activation="softmax", name="b")(h),
            Dense(1, name="c")(h)]
    return Model(x, outs)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_logs_name_the_losses_of_the_outputs_that_have_one(backend):
    model = _three_heads()
    model.compile(optimizer="sgd", loss=["mse", None, "mse"], metrics={"b": "accuracy"},
                  backend=backend)
    y_a, y_c = Y_REG, Y_REG[:, :1] * 2
    # "b" has a metric and no loss: its targets are labels read from their shape, as Keras's
    # "accuracy" picks sparse categorical accuracy for labels of shape (n,)
    logs = model.evaluate(X, [y_a, Y_CLS, y_c], batch_size=5, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "b_accuracy", "a_loss", "c_loss"]
    p_a, p_b, p_c = model.predict(X, verbose=0)
    mse_a, mse_c = ((p_a - y_a) ** 2).mean(), ((p_c - y_c) ** 2).mean()
    np.testing.assert_allclose([logs["a_loss"], logs["c_loss"], logs["loss"]],
                               [mse_a, mse_c, mse_a + mse_c], rtol=1e-5)
    np.testing.assert_allclose(logs["b_accuracy"], (p_b.argmax(1) == Y_CLS).mean())
    listed = model.evaluate(X, {"a": y_a, "b": Y_CLS, "c": y_c}, verbose=0)
    assert listed == pytest.approx([logs[k] for k in ("loss", "a_loss", "c_loss",
                                                      "b_accuracy")], rel=1e-6)
    history = model.fit(X, [y_a, Y_CLS, y_c], epochs=1, verbose=0,
                        validation_data=(X, [y_a, Y_CLS, y_c]))
    assert list(history.history) == ["loss", "b_accuracy", "a_loss", "c_loss", "val_loss",
                                     "val_b_accuracy", "val_a_loss", "val_c_loss"]
    (step,) = [f for key, f in model._functions.items() if key[0] == "train"]
    assert [p.name for p in step.function.inputs] == ["x", "y_a", "y_b", "y_c"]


def _fit_reg_only(y, loss, sample_weight=None, as_dict=True):
    model = _shared_trunk(as_dict=as_dict)
    model.compile(optimizer=optimizers.SGD(0.1), loss=loss, backend="numpy")
    history = model.fit(X, y, batch_size=5, epochs=2, shuffle=False, verbose=0,
                        sample_weight=sample_weight)
    return model, history.history


def test_the_targets_of_an_output_without_loss_or_metrics_may_be_left_out():
    """Keras 3 lets a dict y leave such an output out, and takes y for the outputs with a loss
    alone (a list of those, or the one array: CompileLoss's "partially defined" case); any of
    them, or y for every output, trains the same. The output's layer never changes."""
    model, want = _fit_reg_only({"cls": Y_CLS, "reg": Y_REG}, {"reg": "mse"})
    assert list(want) == ["loss"]
    untouched = _shared_trunk(as_dict=True).get_weights()
    np.testing.assert_array_equal(model.get_weights()[2], untouched[2])  # "cls" kernel
    assert not np.array_equal(model.get_weights()[0], untouched[0])      # the trunk learns
    for y, loss, as_dict in (({"reg": Y_REG}, {"reg": "mse"}, True),
                             ({"reg": Y_REG, "cls": None}, {"reg": "mse"}, True),
                             ([Y_REG], {"reg": "mse"}, True),
                             (Y_REG, {"reg": "mse", "cls": None}, True),
                             ([None, Y_REG], [None, "mse"], False),
                             ([Y_CLS, Y_REG], [None, "mse"], False)):
        other, logs = _fit_reg_only(y, loss, as_dict=as_dict)
        assert logs == want
        for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # evaluate and predict with the partial y
    got = model.evaluate(X, Y_REG, verbose=0)
    np.testing.assert_allclose(got, ((model.predict(X, verbose=0)["reg"] - Y_REG) ** 2).mean(),
                               rtol=1e-5)
    assert list(model.predict(X, verbose=0)) == ["cls", "reg"]


def test_loss_weights_for_an_output_without_a_loss_are_ignored():
    model = _shared_trunk()
    for weights in ([2.0, 5.0], [2.0, None], {"cls": 2.0}, {"cls": 2.0, "reg": 5.0}):
        model.compile(optimizer="sgd", loss=["mse", None], loss_weights=weights,
                      backend="numpy")
        y_cls = np.eye(3)[Y_CLS]
        loss = model.evaluate(X, [y_cls, Y_REG], verbose=0)
        p_cls = model.predict(X, verbose=0)[0]
        np.testing.assert_allclose(loss, 2.0 * ((p_cls - y_cls) ** 2).mean(), rtol=1e-5)
    with pytest.raises(SymgraphError, match="`loss_weights` is a dict keyed by output name, but "
                                            "it has no entry for 'cls'"):
        model.compile(optimizer="sgd", loss=["mse", None], loss_weights={"reg": 5.0},
                      backend="numpy")
    with pytest.raises(SymgraphError, match="loss weight of output 'reg' must be a finite"):
        model.compile(optimizer="sgd", loss=["mse", None], loss_weights=[1.0, "x"],
                      backend="numpy")


@pytest.mark.parametrize("y, message", [
    ([Y_REG, None, Y_REG[:, :1]], "the targets of output 'b' are missing \\(None\\); its "
                                  "metrics need 12 samples"),
    ({"a": Y_REG, "c": Y_REG[:, :1]}, "y is a dict keyed by output name, but it has no array "
                                      "for 'b'"),
    ([Y_REG, Y_REG[:, :1]], r"y must be a list of 3 arrays, one per output of model '\w+' in "
                            r"the order 'a', 'b', 'c', or a dict"),
    (Y_REG, r"got ndarray of shape \(12, 2\)"),
    ({"a": Y_REG, "b": Y_CLS, "c": Y_REG[:, :1], "d": Y_CLS}, "unknown keys 'd'"),
    ([Y_REG, Y_CLS + 3, Y_REG[:, :1]], r"output 'b': labels must lie in \[0, 3\)"),
    ([Y_REG, Y_CLS[:5], Y_REG[:, :1]], "x has 12 samples but the targets of output 'b' has 5"),
])
def test_targets_of_an_output_with_metrics_and_no_loss_are_checked(y, message):
    model = _three_heads()
    model.compile(optimizer="sgd", loss=["mse", None, "mse"], metrics=[None, ["acc"], None],
                  backend="numpy")
    before = model.get_weights()
    for call in (lambda: model.fit(X, y, verbose=0),
                 lambda: model.train_on_batch(X, y),
                 lambda: model.evaluate(X, y, verbose=0),
                 lambda: model.fit([(X, y)], verbose=0)):
        with pytest.raises(SymgraphError, match=message):
            call()
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_targets_of_an_unused_output_are_still_counted():
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=[None, "mse"], backend="numpy")
    with pytest.raises(SymgraphError, match="x has 12 samples but the targets of output 'cls', "
                                            "unused .*, have 5 samples"):
        model.train_on_batch(X, [Y_CLS[:5], Y_REG])
    with pytest.raises(SymgraphError, match=r"list of 2 arrays, one per output of model "
                                            r"'\w+' in the order 'cls', 'reg' \(or of 1, one "
                                            r"per output with a loss or metrics: 'reg'\)"):
        model.evaluate(X, [Y_REG, Y_REG, Y_REG], verbose=0)


def _branches(backend, lr=0.05):
    """Two outputs that share no layer, and one-output models of each branch with the same
    layers' weights (loss weights 0.3 and 2.0 go to the single models' loss_weights)."""
    set_random_seed(5)
    x = Input((4,), name="x_in")
    cls = Dense(3, activation="softmax", name="cls")(Dense(6, activation="relu", name="ha")(x))
    reg = Dense(2, name="reg")(Dense(4, activation="tanh", name="hb")(x))
    both = Model(x, [cls, reg])
    both.compile(optimizer=optimizers.SGD(lr), loss=["sparse_categorical_crossentropy", "mse"],
                 loss_weights=[0.3, 2.0], metrics=[["accuracy"], ["mae"]], backend=backend)
    singles = []
    for (hidden, act, out, units, out_act), loss, weight, metric in (
            (("ha", "relu", "cls", 6, "softmax"), "sparse_categorical_crossentropy", 0.3,
             "accuracy"),
            (("hb", "tanh", "reg", 4, None), "mse", 2.0, "mae")):
        xi = Input((4,))
        single = Model(xi, Dense(2 if out == "reg" else 3, activation=out_act)(
            Dense(units, activation=act)(xi)))
        layers = {layer.name: layer for layer in both.layers}
        single.set_weights([v.value for name in (hidden, out) for v in layers[name].weights])
        single.compile(optimizer=optimizers.SGD(lr), loss=loss, loss_weights=weight,
                       metrics=[metric], backend=backend)
        singles.append(single)
    return both, singles


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_outputs_sharing_nothing_train_as_separate_one_output_models(backend):
    both, (m_cls, m_reg) = _branches(backend)
    history = both.fit(X, [Y_CLS, Y_REG], batch_size=5, epochs=2, shuffle=False, verbose=0,
                       validation_data=(X[:6], [Y_CLS[:6], Y_REG[:6]]))
    h_cls = m_cls.fit(X, Y_CLS, batch_size=5, epochs=2, shuffle=False, verbose=0,
                      validation_data=(X[:6], Y_CLS[:6])).history
    h_reg = m_reg.fit(X, Y_REG, batch_size=5, epochs=2, shuffle=False, verbose=0,
                      validation_data=(X[:6], Y_REG[:6])).history
    logs = history.history
    assert list(logs) == ["loss", "cls_accuracy", "reg_mae", "cls_loss", "reg_loss",
                          "val_loss", "val_cls_accuracy", "val_reg_mae", "val_cls_loss",
                          "val_reg_loss"]
    for prefix in ("", "val_"):
        # a single model's "loss" is its weighted loss; the per-output loss is unweighted
        np.testing.assert_allclose(np.array(logs[prefix + "cls_loss"]) * 0.3,
                                   h_cls[prefix + "loss"], rtol=1e-5)
        np.testing.assert_allclose(np.array(logs[prefix + "reg_loss"]) * 2.0,
                                   h_reg[prefix + "loss"], rtol=1e-5)
        np.testing.assert_allclose(logs[prefix + "loss"], np.add(h_cls[prefix + "loss"],
                                                                 h_reg[prefix + "loss"]),
                                   rtol=1e-5)
        np.testing.assert_allclose(logs[prefix + "cls_accuracy"], h_cls[prefix + "accuracy"])
        np.testing.assert_allclose(logs[prefix + "reg_mae"], h_reg[prefix + "mae"], rtol=1e-5)
    weights = {layer.name: layer.weights for layer in both.layers}
    got = [v.value for name in ("ha", "cls") for v in weights[name]]
    for a, b in zip(got, m_cls.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    got = [v.value for name in ("hb", "reg") for v in weights[name]]
    for a, b in zip(got, m_reg.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    p_cls, p_reg = both.predict(X, verbose=0)
    np.testing.assert_allclose(p_cls, m_cls.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p_reg, m_reg.predict(X, verbose=0), rtol=1e-5, atol=1e-6)


def test_y_and_loss_as_lists_or_dicts_give_the_same_results():
    results = []
    for loss, weights, y in (
            (["sparse_categorical_crossentropy", "mse"], [1.0, 0.5], [Y_CLS, Y_REG]),
            ({"reg": "mse", "cls": "sparse_categorical_crossentropy"}, {"reg": 0.5, "cls": 1.0},
             {"reg": Y_REG, "cls": Y_CLS})):
        for as_dict in (False, True):
            model = _shared_trunk(as_dict=as_dict)
            model.compile(optimizer=optimizers.SGD(0.1), loss=loss, loss_weights=weights,
                          metrics={"cls": "accuracy"}, backend="numpy")
            model.fit(X, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
            results.append((model.evaluate(X, y, verbose=0), model.get_weights()))
    first_logs, first_weights = results[0]
    assert len(first_logs) == 4
    for logs, weights in results[1:]:
        assert logs == first_logs
        for a, b in zip(weights, first_weights, strict=True):
            np.testing.assert_array_equal(a, b)


def test_metric_values_and_names_follow_keras_3():
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy", "accuracy"], ["mae"]],
                  weighted_metrics={"cls": ["accuracy"], "reg": "mse"}, backend="numpy")
    logs = model.evaluate(X, [Y_CLS, Y_REG], sample_weight=WEIGHTS, batch_size=5, verbose=0,
                          return_dict=True)
    assert list(logs) == ["loss", "cls_accuracy", "cls_accuracy_1", "reg_mae",
                          "cls_weighted_accuracy", "reg_mse", "cls_loss", "reg_loss"]
    p_cls, p_reg = model.predict(X, verbose=0)
    hit = (p_cls.argmax(1) == Y_CLS).astype(np.float64)
    np.testing.assert_allclose(logs["cls_accuracy"], hit.mean())
    assert logs["cls_accuracy_1"] == logs["cls_accuracy"]
    np.testing.assert_allclose(logs["reg_mae"], np.abs(p_reg - Y_REG).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["cls_weighted_accuracy"],
                               (WEIGHTS * hit).sum() / WEIGHTS.sum(), rtol=1e-5)
    np.testing.assert_allclose(logs["reg_mse"], (WEIGHTS * ((p_reg - Y_REG) ** 2).mean(1)).sum()
                               / WEIGHTS.sum(), rtol=1e-5)
    ce = -np.log(p_cls[np.arange(N), Y_CLS])
    np.testing.assert_allclose(logs["cls_loss"], (WEIGHTS * ce).mean(), rtol=1e-5)
    # evaluate's list: the loss, each output's loss, then the other names sorted (Keras 3)
    listed = model.evaluate(X, [Y_CLS, Y_REG], sample_weight=WEIGHTS, batch_size=5, verbose=0)
    order = ["loss", "cls_loss", "reg_loss", "cls_accuracy", "cls_accuracy_1",
             "cls_weighted_accuracy", "reg_mae", "reg_mse"]
    assert listed == [logs[k] for k in order]
    batch = model.test_on_batch(X, [Y_CLS, Y_REG], return_dict=True)
    assert set(batch) == set(logs)


def test_predict_returns_a_list_or_a_dict_and_weights_files_round_trip(tmp_path):
    listed = _shared_trunk()
    out = listed.predict(X, batch_size=5, verbose=0)
    assert isinstance(out, list) and [a.shape for a in out] == [(N, 3), (N, 2)]
    assert listed.output_names == ["cls", "reg"] and listed.output_shape == [(3,), (2,)]
    keyed = _shared_trunk(as_dict=True)
    by_name = keyed.predict_on_batch(X)
    assert list(by_name) == ["cls", "reg"] and keyed.output_shape == {"cls": (3,), "reg": (2,)}
    for a, b in zip(out, (by_name["cls"], by_name["reg"])):
        np.testing.assert_array_equal(a, b)  # same seed, same layers: same weights
    listed.compile(optimizer="adam", loss="mse", backend="numpy")  # one loss for both outputs
    listed.fit(X, [np.eye(3)[Y_CLS], Y_REG], epochs=2, verbose=0)
    path = str(tmp_path / "two.weights.npz")
    listed.save_weights(path)
    keyed.load_weights(path)
    for a, b in zip(listed.predict(X, verbose=0), keyed.predict(X, verbose=0).values()):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # keyed predicts on the auto backend


def test_one_loss_for_every_output_is_the_sum_of_both_losses():
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss="mse", loss_weights={"cls": 2.0, "reg": 1.0},
                  backend="numpy")
    y_cls = np.eye(3)[Y_CLS]
    logs = model.evaluate(X, {"cls": y_cls, "reg": Y_REG}, verbose=0, return_dict=True)
    p_cls, p_reg = model.predict(X, verbose=0)
    mse_cls, mse_reg = ((p_cls - y_cls) ** 2).mean(), ((p_reg - Y_REG) ** 2).mean()
    np.testing.assert_allclose([logs["cls_loss"], logs["reg_loss"]], [mse_cls, mse_reg],
                               rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 2 * mse_cls + mse_reg, rtol=1e-5)


def test_each_output_keeps_the_stable_cross_entropy_from_its_logits():
    """A saturated softmax and sigmoid: the loss comes from each output's logits (exact), not
    from clipped probabilities (which would give -log(1e-7) = 16.1)."""
    x = Input((1,), name="x_in")
    soft = Dense(2, activation="softmax", name="soft")(x)
    sig = Dense(1, activation="sigmoid", name="sig")(x)
    model = Model(x, [soft, sig])
    model.set_weights([np.array([[60.0, 0.0]]), np.zeros(2), np.array([[80.0]]), np.zeros(1)])
    model.compile(loss=["sparse_categorical_crossentropy", "binary_crossentropy"],
                  backend="numpy")
    logs = model.evaluate(np.ones((2, 1)), [np.array([1, 1]), np.array([0.0, 0.0])],
                          verbose=0, return_dict=True)
    np.testing.assert_allclose([logs["soft_loss"], logs["sig_loss"]], [60.0, 80.0], rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], 140.0, rtol=1e-5)


def test_a_model_with_one_output_compiles_the_steps_it_always_had():
    set_random_seed(3)
    x = Input((4,), name="x_in")
    model = Model(x, Dense(3, activation="softmax", name="cls")(x))
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy"],
                  metrics=["accuracy"], backend="numpy")  # Keras: a one-element list is fine
    logs = model.train_on_batch(X, {"cls": Y_CLS}, return_dict=True)
    assert list(logs) == ["accuracy", "loss"]
    (step,) = model._functions.values()
    assert [p.name for p in step.function.inputs] == ["x", "y"]
    assert len(step.function.outputs) == 2  # the loss and the metric sum: no per-output loss
    assert model.output_heads == [] and model.predict(X, verbose=0).shape == (N, 3)
    model.compile(optimizer="sgd", loss={"cls": "sparse_categorical_crossentropy"},
                  backend="numpy")
    with pytest.raises(SymgraphError, match="key 'other' is not the model's output 'cls'"):
        model.compile(loss={"other": "mse"}, backend="numpy")


# --- refused --------------------------------------------------------------------------------

def test_models_refuse_outputs_that_cannot_be_named():
    x = Input((4,), name="x_in")
    a, b = Dense(2, name="a")(x), Dense(2, name="b")(x)
    with pytest.raises(SymgraphError, match="key 'first' holds a\\[0\\]\\[0\\], of layer 'a'"):
        Model(x, {"first": a, "b": b})
    shared = Dense(2, name="shared")
    two = Model(x, [shared(x), shared(x)])  # predicts (Keras too); names repeat: no training
    with pytest.raises(SymgraphError, match="all come from layer 'shared'"):
        two.compile(optimizer="sgd", loss=["mse", "mse"], backend="numpy")
    assert not getattr(two, "compiled", False)
    with pytest.raises(SymgraphError, match="outputs must be symbolic tensors"):
        Model(x, [a, "b"])
    with pytest.raises(SymgraphError, match="not used to compute any of the outputs"):
        Model([x, Input((3,), name="unused")], [a, b])


@pytest.mark.parametrize("args, message", [
    (dict(loss=["mse"]), r"has 2 outputs \('cls', 'reg'\): `loss` must be a list with one entry "
                         r"per output.*got a list of 1"),
    (dict(loss=["mse", "mse", "mse"]), "got a list of 3"),
    (dict(loss={"cls": "mse", "regg": "mse"}), r"unknown keys 'regg' and no entry for 'reg'"),
    (dict(loss=[None, None]), r"no output of model '\w+' \('cls', 'reg'\) has a loss.*No loss "
                              "to compute"),
    (dict(loss=None), "no output of model .* has a loss"),
    (dict(loss={"cls": "mse"}), r"no entry for 'reg'; model '\w+' has the outputs 'cls', 'reg' "
                                r"\(given as a list: a loss dict names every output, as in Keras "
                                r"3; give None for an output without a loss\)"),
    (dict(loss={"cls": None, "reg": None}), "has a loss"),
    (dict(loss=["mse", "nope"]), "the loss of output 'reg': unknown loss 'nope'"),
    (dict(loss="mse", loss_weights=0.5), "`loss_weights` must be a list with one number per "
                                         "output"),
    (dict(loss="mse", loss_weights=[1.0]), "got a list of 1"),
    (dict(loss="mse", loss_weights={"cls": 1.0}), "no entry for 'reg'"),
    (dict(loss="mse", loss_weights=[1.0, float("nan")]), "loss weight of output 'reg' must be "
                                                         "a finite number"),
    (dict(loss="mse", metrics=["accuracy"]), r"`metrics` as a list needs one entry per output"
                                             r".*got 1 entries"),
    (dict(loss="mse", metrics={"cls": "accuracy", "nope": "mae"}), "unknown keys 'nope'"),
    (dict(loss="mse", weighted_metrics=["mae", ["nope"]]), "`weighted_metrics` of output "
                                                           "'reg': unknown metric 'nope'"),
    (dict(loss="mse", metrics="accuracy"), "`metrics` must be a list or a dict"),
])
def test_compile_refuses_bad_per_output_arguments_and_changes_nothing(args, message):
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    state = (model.optimizer, model.output_heads, model._functions)
    with pytest.raises(SymgraphError, match=message):
        model.compile(optimizer="adam", backend="numpy", **args)
    assert (model.optimizer, model.output_heads, model._functions) == state


@pytest.mark.parametrize("y, message", [
    (Y_CLS, r"y must be a list of 2 arrays, one per output of model '\w+' in the order 'cls', "
            r"'reg', or a dict \{output name: array\}; got ndarray of shape \(12,\)"),
    ([Y_CLS], "got a list of 1"),
    ([Y_CLS, Y_REG, Y_REG], "got a list of 3"),
    ({"cls": Y_CLS, "regg": Y_REG}, "unknown keys 'regg' and no array for 'reg'"),
    ([Y_CLS, Y_REG[:, :1]], r"targets of output 'reg' of shape \(12, 1\) do not match layer "
                            r"'reg' output shape \(None, 2\) \(placeholder 'y_reg'\)"),
    ([Y_CLS[:5], Y_REG], "x has 12 samples but the targets of output 'cls' has 5"),
    ([Y_CLS + 3, Y_REG], r"output 'cls': sparse_categorical_crossentropy: labels must lie in "
                         r"\[0, 3\)"),
    ([None, Y_REG], "the targets of output 'cls' are missing"),
    (None, "y must be a list of 2 arrays.*got NoneType None"),
])
def test_bad_targets_are_refused_naming_the_output_and_change_nothing(y, message):
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  backend="numpy")
    before = model.get_weights()
    for call in (lambda: model.fit(X, y, verbose=0),
                 lambda: model.train_on_batch(X, y),
                 lambda: model.evaluate(X, y, verbose=0),
                 lambda: model.fit(X, [Y_CLS, Y_REG], verbose=0, validation_data=(X, y))):
        with pytest.raises(SymgraphError, match=message):
            call()
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_class_weight_is_refused_with_several_outputs():
    """Keras 3 refuses it ("`class_weight` is only supported for Models with a single output");
    per-output sample weights are in tests/nn/test_sample_weights.py."""
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  backend="numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match="class_weight is only supported for models with one "
                                            "output"):
        model.fit(X, [Y_CLS, Y_REG], class_weight={0: 2.0}, verbose=0)
    with pytest.raises(SymgraphError, match="class_weight is only supported"):
        model.train_on_batch(X, [Y_CLS, Y_REG], class_weight={0: 2.0})
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_list_y_is_refused_when_dict_outputs_were_not_in_sorted_order():
    x = Input((4,), name="x_in")
    model = Model(x, {"zeta": Dense(1, name="zeta")(x), "alpha": Dense(2, name="alpha")(x)})
    assert model.output_names == ["alpha", "zeta"]  # sorted, as Keras flattens a dict
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    with pytest.raises(SymgraphError, match="a list y is ambiguous"):
        model.evaluate(X, [Y_REG, Y_REG[:, 0]], verbose=0)
    logs = model.evaluate(X, {"zeta": Y_REG[:, 0], "alpha": Y_REG}, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "alpha_loss", "zeta_loss"]


def test_the_nan_guard_names_the_output_whose_loss_overflowed():
    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=["mse", "mse"], backend="numpy")
    before = model.get_weights()
    history = model.fit(X, [np.full((N, 3), 1e30), Y_REG], epochs=2, verbose=0)
    assert "it belongs to the loss of output 'cls' (mean_squared_error)" in history.nan_report
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # the guarded step changed nothing


@pytest.mark.parametrize("monitor, mode", [
    ("val_cls_acc", "max"), ("val_cls_accuracy", "max"), ("cls_weighted_acc", "max"),
    ("val_cls_acc_1", "max"), ("val_cls_auc", "max"), ("val_reg_loss", "min"),
    ("val_loss", "min"), ("reg_mae", "min")])
def test_callbacks_maximize_an_outputs_accuracy(monitor, mode):
    from symgraph.nn.callback_list import monitor_mode

    assert monitor_mode(monitor, "auto") == mode


def test_evaluate_lists_the_output_losses_before_a_metric_named_like_a_loss():
    def focal_loss(y_true, y_pred):  # a metric whose log name ends in "_loss"
        return (y_true - y_pred) ** 2

    model = _shared_trunk()
    model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[[], [focal_loss, "mae"]], backend="numpy")
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    y = [RNG.integers(0, 3, size=6), RNG.normal(size=(6, 2)).astype(np.float32)]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    listed = model.evaluate(x, y, verbose=0)
    order = ["loss", "cls_loss", "reg_loss", "reg_focal_loss", "reg_mae"]  # Keras 3's order
    assert sorted(logs) == sorted(order)
    assert listed == [logs[k] for k in order]


def test_summary_counts_float64_weights_at_8_bytes():
    model = _shared_trunk(dtype="float64")
    lines = []
    model.summary(print_fn=lines.append)
    n = 4 * 5 + 5 + 5 * 3 + 3 + 5 * 2 + 2
    assert f"Trainable params: {n:,} ({n * 8:.2f} B)" in lines[0]
