"""The losses of symgraph/nn/losses.py against Keras 3's formulas written out in NumPy
(keras/src/losses/losses.py): per-sample values, label smoothing, from_logits and the logits a
sigmoid / softmax output hands over (stable at large logits), gradients by finite differences
in float64, compile by name, configs and whole-model saving, and refused arguments."""

import json

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Input, Sequential, load_model, losses, optimizers
from symgraph.testing import verify_grad

EPS = 1e-7
RNG = np.random.default_rng(11)


def _values(loss, y_true, y_pred):
    """The loss's per-sample values on float64 arrays (NumPy backend)."""
    t = sg.placeholder(y_true.shape, "float64", name="t")
    p = sg.placeholder(y_pred.shape, "float64", name="p")
    return sg.function([t, p], loss.per_sample(t, p), backend="numpy")(y_true, y_pred)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bce(t, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def _normalize(x, axis):
    return x * np.minimum(1 / np.sqrt(np.sum(x * x, axis, keepdims=True)), 1 / EPS)


def _keras(name, t, p, **kw):
    """Keras 3's per-sample formula of loss `name`, in NumPy."""
    if name == "huber":
        d = kw.get("delta", 1.0)
        e = np.abs(p - t)
        return np.mean(np.where(e <= d, 0.5 * e * e, d * e - 0.5 * d * d), -1)
    if name == "log_cosh":
        e = p - t
        return np.mean(e + _softplus(-2 * e) - np.log(2.0), -1)
    if name == "kl_divergence":
        t, p = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return np.sum(t * np.log(t / p), -1)
    if name == "poisson":
        return np.mean(p - t * np.log(p + EPS), -1)
    if name in ("hinge", "squared_hinge"):
        t = 2 * t - 1 if np.all((t == 0) | (t == 1)) else t
        m = np.maximum(1 - t * p, 0)
        return np.mean(m if name == "hinge" else m * m, -1)
    if name == "categorical_hinge":
        return np.maximum(np.max((1 - t) * p, -1) - np.sum(t * p, -1) + 1, 0)
    if name == "cosine_similarity":
        axis = kw.get("axis", -1)
        return -np.sum(_normalize(t, axis) * _normalize(p, axis), axis)
    if name == "mean_absolute_percentage_error":
        return 100 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)), -1)
    if name == "mean_squared_logarithmic_error":
        return np.mean((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2, -1)
    raise AssertionError(name)


def _probs(shape):
    return RNG.uniform(0.05, 0.95, size=shape)


PLAIN = [
    (losses.Huber(), "huber", {}),
    (losses.Huber(delta=0.3), "huber", {"delta": 0.3}),
    (losses.LogCosh(), "log_cosh", {}),
    (losses.KLDivergence(), "kl_divergence", {}),
    (losses.Poisson(), "poisson", {}),
    (losses.Hinge(), "hinge", {}),
    (losses.SquaredHinge(), "squared_hinge", {}),
    (losses.CategoricalHinge(), "categorical_hinge", {}),
    (losses.CosineSimilarity(), "cosine_similarity", {}),
    (losses.MeanAbsolutePercentageError(), "mean_absolute_percentage_error", {}),
    (losses.MeanSquaredLogarithmicError(), "mean_squared_logarithmic_error", {}),
]


@pytest.mark.parametrize("loss, name, kw", PLAIN, ids=lambda v: getattr(v, "name", ""))
def test_plain_losses_match_keras_formulas(loss, name, kw):
    t = RNG.integers(0, 2, size=(6, 4)).astype(np.float64)
    if name in ("kl_divergence", "cosine_similarity"):
        t = _probs((6, 4))
    p = RNG.normal(size=(6, 4)) * 2 if name in ("huber", "log_cosh", "hinge") else _probs((6, 4))
    np.testing.assert_allclose(_values(loss, t, p), _keras(name, t, p, **kw), rtol=1e-12)
    assert loss.name == (name if name != "huber" else "huber_loss")


def test_hinge_keeps_labels_that_are_not_all_zero_one_and_maps_zero_one_to_signs():
    p = RNG.normal(size=(5, 3))
    signs = RNG.choice([-1.0, 1.0], size=(5, 3))
    zero_one = (signs + 1) / 2
    for loss, name in ((losses.Hinge(), "hinge"), (losses.SquaredHinge(), "squared_hinge")):
        same = _values(loss, signs, p)
        np.testing.assert_allclose(same, _keras(name, signs, p), rtol=1e-12)
        np.testing.assert_allclose(_values(loss, zero_one, p), same, rtol=1e-12)
        mixed = np.where(RNG.uniform(size=(5, 3)) < 0.5, zero_one, 0.5)  # not all 0/1
        np.testing.assert_allclose(_values(loss, mixed, p), _keras(name, mixed, p), rtol=1e-12)


def test_cosine_similarity_axis_and_zero_vectors():
    t, p = RNG.normal(size=(4, 3, 5)), RNG.normal(size=(4, 3, 5))
    for axis in (-1, 1):
        got = _values(losses.CosineSimilarity(axis=axis), t, p)
        np.testing.assert_allclose(got, _keras("cosine_similarity", t, p, axis=axis), rtol=1e-12)
    zero = np.zeros((2, 3))
    assert np.all(_values(losses.CosineSimilarity(), zero, RNG.normal(size=(2, 3))) == 0)


def test_log_cosh_is_finite_and_exact_at_huge_errors():
    t = np.zeros((1, 2))
    p = np.array([[1e4, -1e4]])
    np.testing.assert_allclose(_values(losses.LogCosh(), t, p), [1e4 - np.log(2)], rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.2, 1.0])
def test_binary_crossentropy_label_smoothing_probabilities_and_logits(smoothing):
    t = RNG.integers(0, 2, size=(5, 3)).astype(np.float64)
    logits = RNG.normal(size=(5, 3)) * 3
    smoothed = t * (1 - smoothing) + 0.5 * smoothing
    probs = _sigmoid(logits)
    loss = losses.BinaryCrossentropy(label_smoothing=smoothing)
    np.testing.assert_allclose(_values(loss, t, probs), np.mean(_bce(smoothed, probs), -1),
                               rtol=1e-12)
    from_logits = losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    exact = np.mean(_softplus(logits) - logits * smoothed, -1)
    np.testing.assert_allclose(_values(from_logits, t, logits), exact, rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_categorical_crossentropy_label_smoothing(smoothing):
    t = np.eye(4)[RNG.integers(0, 4, size=6)]
    logits = RNG.normal(size=(6, 4)) * 2
    smoothed = t * (1 - smoothing) + smoothing / 4
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    exact = -np.sum(smoothed * log_p, -1)
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    np.testing.assert_allclose(_values(loss, t, logits), exact, rtol=1e-12)
    p = np.exp(log_p)
    clipped = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    np.testing.assert_allclose(
        _values(losses.CategoricalCrossentropy(label_smoothing=smoothing), t, p),
        -np.sum(smoothed * np.log(clipped), -1), rtol=1e-12)


def _focal(t, p, gamma, alpha=None, smoothing=0.0, bce=None):
    t = t * (1 - smoothing) + 0.5 * smoothing
    bce = _bce(t, p) if bce is None else bce(t)
    p_t = t * p + (1 - t) * (1 - p)
    out = (1 - p_t) ** gamma * bce
    if alpha is not None:
        out = (t * alpha + (1 - t) * (1 - alpha)) * out
    return np.mean(out, -1)


def test_binary_focal_crossentropy_matches_keras_docstring_and_formula():
    # Keras's docstring: y_true [[0, 1], [0, 0]], y_pred [[0.6, 0.4], [0.4, 0.6]], gamma=2
    got = _values(losses.BinaryFocalCrossentropy(gamma=2.0), np.array([[0.0, 1], [0, 0]]),
                  np.array([[0.6, 0.4], [0.4, 0.6]]))
    np.testing.assert_allclose(got, [0.330, 0.206], atol=1e-3)
    t = RNG.integers(0, 2, size=(5, 3)).astype(np.float64)
    p = _probs((5, 3))
    for kw, ref in [({}, {}), ({"gamma": 3.0}, {"gamma": 3.0}),
                    ({"apply_class_balancing": True, "alpha": 0.3}, {"alpha": 0.3}),
                    ({"label_smoothing": 0.2}, {"smoothing": 0.2})]:
        loss = losses.BinaryFocalCrossentropy(**kw)
        expected = _focal(t, p, ref.get("gamma", 2.0), ref.get("alpha"), ref.get("smoothing", 0))
        np.testing.assert_allclose(_values(loss, t, p), expected, rtol=1e-10)


def test_binary_focal_from_logits_takes_the_cross_entropy_from_the_logits():
    t = np.array([[0.0, 1.0, 1.0, 0.0]])
    logits = np.array([[-18.6, 0.51, 60.0, -80.0]])
    exact = _focal(t, _sigmoid(logits), 2.0,
                   bce=lambda tt: _softplus(logits) - logits * tt)
    loss = losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True)
    np.testing.assert_allclose(_values(loss, t, logits), exact, rtol=1e-10)
    # Keras's docstring example (from_logits, gamma=2): 0.691 for the batch of four
    doc = _values(loss, np.array([[0.0, 1, 0, 0]]), np.array([[-18.6, 0.51, 2.94, -12.8]]))
    assert doc[0] == pytest.approx(0.691, abs=1e-3)


GRADIENT_CASES = [
    losses.Huber(delta=0.7), losses.LogCosh(), losses.KLDivergence(), losses.Poisson(),
    losses.Hinge(), losses.SquaredHinge(), losses.CategoricalHinge(), losses.CosineSimilarity(),
    losses.MeanAbsolutePercentageError(), losses.MeanSquaredLogarithmicError(),
    losses.BinaryCrossentropy(label_smoothing=0.1),
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.3),
    losses.CategoricalCrossentropy(label_smoothing=0.2),
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
    losses.BinaryFocalCrossentropy(gamma=2.0, apply_class_balancing=True),
    losses.BinaryFocalCrossentropy(gamma=1.5, from_logits=True, label_smoothing=0.1),
]


@pytest.mark.parametrize("loss", GRADIENT_CASES, ids=lambda v: type(v).__name__)
def test_gradients_match_finite_differences_in_float64(loss):
    rng = np.random.default_rng(5)
    t = np.eye(4)[rng.integers(0, 4, size=3)]
    if isinstance(loss, losses.KLDivergence | losses.CosineSimilarity):
        t = rng.uniform(0.1, 0.9, size=(3, 4))
    if isinstance(loss, losses.MeanAbsolutePercentageError):
        t = rng.uniform(0.5, 2.0, size=(3, 4))
    logits = getattr(loss, "from_logits", False) or isinstance(
        loss, losses.Huber | losses.LogCosh | losses.CosineSimilarity | losses.Hinge
        | losses.SquaredHinge | losses.CategoricalHinge)
    p = rng.normal(size=(3, 4)) * 1.5 if logits else rng.uniform(0.1, 0.9, size=(3, 4))
    if isinstance(loss, losses.Huber):  # away from the kink at |e| = delta
        p = np.where(np.abs(np.abs(p - t) - 0.7) < 0.05, p + 0.2, p)
    if isinstance(loss, losses.Hinge | losses.SquaredHinge | losses.CategoricalHinge):
        p = rng.uniform(-0.3, 0.3, size=(3, 4))  # margins away from 0, no tied maxima
    verify_grad(lambda x: loss.per_sample(sg.constant(t), x), [p], rtol=1e-5, atol=1e-7)


def _model(loss, activation, units=3, backend="numpy"):
    model = Sequential([Input((4,)), Dense(units, activation=activation)])
    model.compile(optimizer=optimizers.SGD(0.1), loss=loss, backend=backend)
    return model


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_compiled_by_name_evaluate_gives_the_mean_of_keras_values(backend):
    x = RNG.normal(size=(23, 4)).astype(np.float32)
    y01 = RNG.integers(0, 2, size=(23, 3)).astype(np.float32)
    yprob = RNG.uniform(0.1, 0.9, size=(23, 3)).astype(np.float32)
    cases = [("huber", None, y01, "huber"), ("logcosh", None, y01, "log_cosh"),
             ("kld", "softmax", yprob, "kl_divergence"),
             ("poisson", "softplus", y01, "poisson"), ("hinge", None, y01, "hinge"),
             ("squared_hinge", "tanh", y01, "squared_hinge"),
             ("categorical_hinge", None, y01, "categorical_hinge"),
             ("cosine_similarity", None, yprob, "cosine_similarity"),
             ("mape", None, yprob, "mean_absolute_percentage_error"),
             ("msle", "sigmoid", yprob, "mean_squared_logarithmic_error")]
    for name, activation, y, keras_name in cases:
        model = _model(name, activation, backend=backend)
        pred = model.predict(x, verbose=0).astype(np.float64)
        expected = np.mean(_keras(keras_name, y.astype(np.float64), pred))
        got = model.evaluate(x, y, batch_size=7, verbose=0)
        assert got == pytest.approx(expected, rel=2e-5, abs=1e-6), name


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_smoothed_cross_entropy_on_a_saturated_sigmoid_uses_the_logits(backend):
    model = Sequential([Input((1,)), Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss=losses.BinaryCrossentropy(label_smoothing=0.2),
                  backend=backend)
    model.set_weights([np.array([[1.0]], np.float32), np.zeros(1, np.float32)])
    x = np.array([[40.0], [-40.0]], np.float32)
    y = np.array([[0.0], [0.0]], np.float32)
    t = 0.1  # 0 smoothed by 0.2 towards 0.5
    exact = np.mean(_softplus(x[:, 0].astype(np.float64)) - x[:, 0] * t)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(exact, rel=1e-6)  # clipped: 1.6
    focal = Sequential([Input((1,)), Dense(1, activation="sigmoid")])
    focal.compile(optimizer="sgd", loss=losses.BinaryFocalCrossentropy(gamma=0.0),
                  backend=backend)
    focal.set_weights(model.get_weights())
    ones = np.ones((2, 1), np.float32)
    exact = np.mean(_softplus(x[:, 0].astype(np.float64)) - x[:, 0])
    assert focal.evaluate(x, ones, verbose=0) == pytest.approx(exact, rel=1e-6)
    history = focal.fit(x, ones, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in focal.get_weights())


def test_names_classes_and_configs_round_trip():
    for name, cls in [("huber", losses.Huber), ("log_cosh", losses.LogCosh),
                      ("kld", losses.KLDivergence), ("kl_divergence", losses.KLDivergence),
                      ("poisson", losses.Poisson), ("hinge", losses.Hinge),
                      ("squared_hinge", losses.SquaredHinge),
                      ("categorical_hinge", losses.CategoricalHinge),
                      ("cosine_similarity", losses.CosineSimilarity),
                      ("mape", losses.MeanAbsolutePercentageError),
                      ("msle", losses.MeanSquaredLogarithmicError),
                      ("binary_focal_crossentropy", losses.BinaryFocalCrossentropy)]:
        assert type(losses.get(name)) is cls
        assert type(losses.get(cls)) is cls
    for obj in [losses.Huber(0.5), losses.CosineSimilarity(axis=1),
                losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
                losses.CategoricalCrossentropy(label_smoothing=0.3),
                losses.BinaryFocalCrossentropy(True, 0.4, 3.0, True, 0.05), losses.Hinge()]:
        config = obj.get_config()
        assert json.loads(json.dumps(config)) == config
        again = type(obj).from_config(config)
        assert type(again) is type(obj) and again.get_config() == config
    assert losses.BinaryFocalCrossentropy().get_config() == {
        "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0, "from_logits": False,
        "label_smoothing": 0.0}


@pytest.mark.parametrize("make, message", [
    (lambda: losses.BinaryCrossentropy(label_smoothing=1.5), "label_smoothing=1.5"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=-0.1), "label_smoothing"),
    (lambda: losses.BinaryFocalCrossentropy(gamma=-1), "gamma=-1"),
    (lambda: losses.BinaryFocalCrossentropy(alpha="x"), "alpha='x'"),
    (lambda: losses.Huber(delta=float("nan")), "delta"),
    (lambda: losses.CosineSimilarity(axis=1.5), "axis"),
    (lambda: losses.get("huberr"), "unknown loss 'huberr'"),
])
def test_bad_arguments_raise_naming_them(make, message):
    with pytest.raises(SymgraphError, match=message):
        make()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_models_with_the_new_losses_save_and_load(tmp_path, backend):
    x = RNG.normal(size=(16, 4)).astype(np.float32)
    y = RNG.integers(0, 2, size=(16, 3)).astype(np.float32)
    for loss in [losses.Huber(delta=0.5), losses.BinaryFocalCrossentropy(gamma=3.0,
                 label_smoothing=0.1), losses.CosineSimilarity(axis=-1), "logcosh"]:
        activation = "sigmoid" if isinstance(loss, losses.BinaryFocalCrossentropy) else None
        model = _model(loss, activation, backend=backend)
        model.fit(x, y, epochs=1, verbose=0, seed=1)
        model.save(str(tmp_path / "m.keras"))
        again = load_model(str(tmp_path / "m.keras"))
        assert type(again.loss) is type(model.loss)
        assert again.loss.get_config() == model.loss.get_config()
        assert again.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
