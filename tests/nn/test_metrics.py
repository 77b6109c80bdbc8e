"""The metrics of symgraph/nn/metrics.py against Keras 3's formulas written out in NumPy over
the model's own predictions: per-sample metrics by Keras name, top-k accuracies, and the
confusion-matrix metrics (Precision, Recall, AUC, F1Score) as ratios of sums over a whole
epoch of uneven batches, with sample weights; in evaluate, fit and validation logs, Sequential
and multi-output functional models, NumPy and Numba backends, and saved / loaded models."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import (
    Dense,
    Input,
    Model,
    Sequential,
    load_model,
    metrics,
    optimizers,
    set_random_seed,
)

EPS = 1e-7
RNG = np.random.default_rng(21)
N = 31  # with batch_size=8: batches of 8, 8, 8 and 7


def _data(units=3, n=N, seed=21):
    """The same data whatever ran before (a shared generator made the epoch-sum check below
    depend on test order)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=(n, units)).astype(np.float32)
    w = rng.uniform(0.0, 2.0, size=n).astype(np.float32)
    return x, y, w


def _model(units=3, activation="sigmoid", backend="numpy", **compile_args):
    set_random_seed(6)  # the same weights whatever ran before
    model = Sequential([Input((4,)), Dense(units, activation=activation)])
    compile_args.setdefault("loss", "binary_crossentropy")
    model.compile(optimizer=optimizers.SGD(0.0), backend=backend, **compile_args)
    return model


# --- Keras 3's formulas in NumPy ------------------------------------------------------------

def _div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)


def _confusion(y, p, w, thresholds):
    """tp, fp, tn, fn per threshold: an entry is predicted positive where p > threshold."""
    w = np.ones(len(y)) if w is None else w
    weights = np.broadcast_to(w.reshape((-1,) + (1,) * (y.ndim - 1)), y.shape).ravel()
    labels, p = y.ravel() != 0, p.ravel()
    out = []
    for t in thresholds:
        pos = p > np.float32(t)
        out.append([np.sum(weights * (labels & pos)), np.sum(weights * (~labels & pos)),
                    np.sum(weights * (~labels & ~pos)), np.sum(weights * (labels & ~pos))])
    return np.array(out).T


def _top_k_filter(p, k):
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(p.shape, bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return np.where(mask, p, -1e10)


def _precision_recall(y, p, w, threshold=None, top_k=None, class_id=None):
    if top_k is not None:
        p = _top_k_filter(p, top_k)
    if class_id is not None:
        y, p = y[:, class_id:class_id + 1], p[:, class_id:class_id + 1]
    t = (0.5 if top_k is None else -1e10) if threshold is None else threshold
    tp, fp, _, fn = _confusion(y, p, w, [t])[:, 0]
    return float(_div(tp, tp + fp)), float(_div(tp, tp + fn))


def _auc(y, p, w, num_thresholds=200, curve="ROC", method="interpolation", thresholds=None):
    inner = ([(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
             if thresholds is None else sorted(thresholds))
    ts = [-EPS] + inner + [1 + EPS]
    if thresholds is None:  # evenly spaced: Keras's buckets, predictions clipped to [0, 1]
        p = np.clip(p, 0, 1)
    tp, fp, tn, fn = _confusion(y, p, w, ts)
    if curve == "PR" and method == "interpolation":
        dtp = tp[:-1] - tp[1:]
        pp = tp + fp
        dp = pp[:-1] - pp[1:]
        slope = _div(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * pp[1:]
        ratio = np.where((pp[:-1] > 0) & (pp[1:] > 0), _div(pp[:-1], np.maximum(pp[1:], 0)), 1)
        return float(np.sum(_div(slope * (dtp + intercept * np.log(ratio)),
                                 np.maximum(tp[1:] + fn[1:], 0))))
    recall = _div(tp, tp + fn)
    x, yy = (_div(fp, fp + tn), recall) if curve == "ROC" else (recall, _div(tp, tp + fp))
    heights = {"interpolation": (yy[:-1] + yy[1:]) / 2, "minoring": np.minimum(yy[:-1], yy[1:]),
               "majoring": np.maximum(yy[:-1], yy[1:])}[method]
    return float(np.sum((x[:-1] - x[1:]) * heights))


def _f1(y, p, w, average, threshold=None):
    if threshold is None:
        pred = (p >= p.max(-1, keepdims=True)) & (np.abs(p) > 1e-9)
    else:
        pred = p > threshold
    pred, w = pred.astype(np.float64), (np.ones(len(y)) if w is None else w)[:, None]
    tp, fp = np.sum(w * pred * y, 0), np.sum(w * pred * (1 - y), 0)
    fn, support = np.sum(w * (1 - pred) * y, 0), np.sum(w * y, 0)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision, recall = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f1 = 2 * precision * recall / (precision + recall + EPS)
    if average == "weighted":
        return np.sum(f1 * support / (support.sum() + EPS))
    return np.mean(f1)


# --- confusion-matrix metrics over an epoch -------------------------------------------------

CONFUSION = [
    (metrics.Precision(), lambda y, p, w: _precision_recall(y, p, w)[0]),
    (metrics.Recall(thresholds=0.3, name="recall_03"),
     lambda y, p, w: _precision_recall(y, p, w, 0.3)[1]),
    (metrics.Precision(top_k=2, name="p_top2"),
     lambda y, p, w: _precision_recall(y, p, w, top_k=2)[0]),
    (metrics.Recall(class_id=1, name="r_class1"),
     lambda y, p, w: _precision_recall(y, p, w, class_id=1)[1]),
    (metrics.Precision(thresholds=[0.6], top_k=1, class_id=2, name="p_mix"),
     lambda y, p, w: _precision_recall(y, p, w, 0.6, 1, 2)[0]),
    (metrics.AUC(), lambda y, p, w: _auc(y, p, w)),
    (metrics.AUC(num_thresholds=13, curve="PR", name="pr"),
     lambda y, p, w: _auc(y, p, w, 13, "PR")),
    (metrics.AUC(num_thresholds=7, summation_method="minoring", name="auc_min"),
     lambda y, p, w: _auc(y, p, w, 7, method="minoring")),
    (metrics.AUC(curve="PR", summation_method="majoring", name="pr_maj"),
     lambda y, p, w: _auc(y, p, w, curve="PR", method="majoring")),
    (metrics.AUC(thresholds=[0.7, 0.2, 0.45], name="auc_given"),
     lambda y, p, w: _auc(y, p, w, thresholds=[0.7, 0.2, 0.45])),
    (metrics.F1Score(average="micro", name="f1_micro"), lambda y, p, w: _f1(y, p, w, "micro")),
    (metrics.F1Score(average="macro", threshold=0.4, name="f1_macro"),
     lambda y, p, w: _f1(y, p, w, "macro", 0.4)),
    (metrics.F1Score(average="weighted", name="f1_weighted"),
     lambda y, p, w: _f1(y, p, w, "weighted")),
]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_confusion_metrics_are_ratios_of_epoch_sums_weighted_by_sample_weights(backend):
    x, y, w = _data()
    objs = [m for m, _ in CONFUSION]
    model = _model(backend=backend, metrics=objs, weighted_metrics=objs)
    p = model.predict(x, verbose=0).astype(np.float64)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    for metric, reference in CONFUSION:
        plain, weighted = reference(y, p, None), reference(y, p, w.astype(np.float64))
        assert logs[metric.name] == pytest.approx(plain, abs=1e-6), metric.name
        assert logs[f"weighted_{metric.name}"] == pytest.approx(weighted, abs=1e-5), metric.name
    # a ratio of epoch sums, not the mean of the batches' ratios
    per_batch = [_precision_recall(y[i:i + 8], p[i:i + 8], None)[0] for i in range(0, N, 8)]
    assert abs(np.mean(per_batch) - logs["precision"]) > 1e-3, (np.mean(per_batch), logs)


def test_auc_approaches_the_rank_statistic_and_takes_logits():
    x, y, _ = _data(units=1, n=400)
    model = _model(units=1, activation=None, loss="mse",
                   metrics=[metrics.AUC(num_thresholds=2000, from_logits=True)])
    logits = model.predict(x, verbose=0)[:, 0].astype(np.float64)
    pos, neg = logits[y[:, 0] == 1], logits[y[:, 0] == 0]
    exact = np.mean(pos[:, None] > neg[None, :])  # Mann-Whitney: P(score+ > score-)
    auc = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)["auc"]
    assert auc == pytest.approx(exact, abs=2e-3)


def test_string_names_give_keras_defaults():
    x, y, _ = _data()
    model = _model(metrics=["precision", "recall", "auc", "Precision", "AUC"])
    p = model.predict(x, verbose=0).astype(np.float64)
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    precision, recall = _precision_recall(y, p, None)
    assert logs["precision"] == pytest.approx(precision) == logs["Precision"]
    assert logs["recall"] == pytest.approx(recall)
    assert logs["auc"] == pytest.approx(_auc(y, p, None), abs=1e-6) == logs["AUC"]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_logs_and_validation_use_the_epoch_sums(backend):
    x, y, w = _data()
    xv, yv, _ = _data(n=13)
    model = _model(backend=backend, metrics=[metrics.Recall(), metrics.AUC()],
                   weighted_metrics=[metrics.Precision(name="wprec")])
    history = model.fit(x, y, sample_weight=w, batch_size=8, epochs=2, verbose=0,
                        validation_data=(xv, yv), shuffle=False)
    p = model.predict(x, verbose=0).astype(np.float64)  # SGD(0): the weights never change
    pv = model.predict(xv, verbose=0).astype(np.float64)
    h = history.history
    assert h["recall"] == pytest.approx([_precision_recall(y, p, None)[1]] * 2)
    assert h["wprec"] == pytest.approx([_precision_recall(y, p, w.astype(np.float64))[0]] * 2,
                                       abs=1e-6)
    assert h["auc"] == pytest.approx([_auc(y, p, None)] * 2, abs=1e-6)
    assert h["val_recall"] == pytest.approx([_precision_recall(yv, pv, None)[1]] * 2)
    assert h["val_auc"] == pytest.approx([_auc(yv, pv, None)] * 2, abs=1e-6)
    assert h["val_wprec"] == pytest.approx([_precision_recall(yv, pv, None)[0]] * 2)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_multi_output_model_logs_each_outputs_metrics(backend):
    inp = Input((4,), name="x")
    a = Dense(3, activation="sigmoid", name="a")(inp)
    b = Dense(2, name="b")(inp)
    model = Model(inp, [a, b])
    model.compile(optimizer=optimizers.SGD(0.0), loss=["binary_crossentropy", "mse"],
                  metrics={"a": [metrics.Precision(), "auc"], "b": ["mae", "logcosh"]},
                  weighted_metrics={"a": [metrics.F1Score(average="macro")]}, backend=backend)
    x, ya, wa = _data()
    yb = RNG.normal(size=(N, 2)).astype(np.float32)
    wb = RNG.uniform(size=N).astype(np.float32)
    logs = model.evaluate(x, {"a": ya, "b": yb}, sample_weight={"a": wa, "b": wb},
                          batch_size=8, verbose=0, return_dict=True)
    pa, pb = (v.astype(np.float64) for v in model.predict(x, verbose=0))
    assert logs["a_precision"] == pytest.approx(_precision_recall(ya, pa, None)[0])
    assert logs["a_auc"] == pytest.approx(_auc(ya, pa, None), abs=1e-6)
    assert logs["a_f1_score"] == pytest.approx(_f1(ya, pa, wa.astype(np.float64), "macro"),
                                               abs=1e-6)
    e = pb - yb
    assert logs["b_mae"] == pytest.approx(np.mean(np.abs(e)), rel=1e-5)
    assert logs["b_logcosh"] == pytest.approx(np.mean(np.log(np.cosh(e))), rel=1e-5)


# --- per-sample metrics ---------------------------------------------------------------------

def _top_k(targets, p, k):
    at = p[np.arange(len(p)), targets]
    return np.mean(np.sum(p > at[:, None], -1) < k)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_per_sample_metrics_by_keras_name(backend):
    x, y01, w = _data()
    y = RNG.uniform(0.1, 0.9, size=(N, 3)).astype(np.float32)
    names = ["mse", "mae", "mape", "msle", "cosine_similarity", "kld", "kl_divergence", "poisson",
             "hinge", "squared_hinge", "categorical_hinge", "logcosh", "log_cosh",
             "binary_crossentropy"]
    model = _model(backend=backend, loss="mse", metrics=names, weighted_metrics=["msle"])
    p = model.predict(x, verbose=0).astype(np.float64)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    t = y.astype(np.float64)
    e = p - t
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
    m = np.maximum(1 - t * p, 0)  # labels in (0, 1): not converted to -1 / 1
    msle = np.mean((np.log1p(np.maximum(p, EPS)) - np.log1p(t)) ** 2, -1)
    pb = np.clip(p, EPS, 1 - EPS)
    expected = {
        "mse": np.mean(e * e, -1), "mae": np.mean(np.abs(e), -1),
        "mape": 100 * np.mean(np.abs(e / t), -1), "msle": msle,
        "cosine_similarity": np.sum(unit(t) * unit(p), -1),
        "kld": np.sum(tc * np.log(tc / pc), -1), "poisson": np.mean(p - t * np.log(p + EPS), -1),
        "hinge": np.mean(m, -1), "squared_hinge": np.mean(m * m, -1),
        "categorical_hinge": np.maximum(np.max((1 - t) * p, -1) - np.sum(t * p, -1) + 1, 0),
        "logcosh": np.mean(np.log(np.cosh(e)), -1),
        "binary_crossentropy": np.mean(-(t * np.log(pb) + (1 - t) * np.log(1 - pb)), -1)}
    expected["kl_divergence"], expected["log_cosh"] = expected["kld"], expected["logcosh"]
    for name in names:
        assert logs[name] == pytest.approx(np.mean(expected[name]), rel=2e-5), name
    assert logs["weighted_msle"] == pytest.approx(np.sum(w * msle) / np.sum(w), rel=2e-5)


def test_top_k_accuracies_count_ties_in_and_take_k():
    x = RNG.normal(size=(N, 4)).astype(np.float32)
    labels = RNG.integers(0, 6, size=N)
    onehot = np.eye(6, dtype=np.float32)[labels]
    model = Sequential([Input((4,)), Dense(6, activation="softmax")])
    model.compile(loss="categorical_crossentropy", backend="numpy",
                  metrics=["top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                           metrics.TopKCategoricalAccuracy(k=1, name="top1"), "accuracy"])
    p = model.predict(x, verbose=0)
    logs = model.evaluate(x, onehot, batch_size=8, verbose=0, return_dict=True)
    assert logs["top_k_categorical_accuracy"] == pytest.approx(_top_k(labels, p, 5))
    assert logs["top_k_categorical_accuracy"] < 1  # 5 of 6 classes
    assert logs["top2"] == pytest.approx(_top_k(labels, p, 2))
    assert logs["top1"] == pytest.approx(logs["accuracy"])
    sparse = Sequential([Input((4,)), Dense(6, activation="softmax")])
    sparse.compile(loss="sparse_categorical_crossentropy", backend="numpy",
                   metrics=["sparse_top_k_categorical_accuracy",
                            metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")])
    sparse.set_weights(model.get_weights())
    logs = sparse.evaluate(x, labels, batch_size=8, verbose=0, return_dict=True)
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(_top_k(labels, p, 5))
    assert logs["top3"] == pytest.approx(_top_k(labels, p, 3))
    # ties: every class scoring as the target's is in the top k (Keras's in_top_k)
    tied = Sequential([Input((4,)), Dense(6, kernel_initializer="zeros")])
    tied.compile(loss="categorical_crossentropy", backend="numpy",
                 metrics=[metrics.TopKCategoricalAccuracy(k=1)])
    assert tied.evaluate(x, onehot, verbose=0, return_dict=True)[
        "top_k_categorical_accuracy"] == 1.0


# --- saving and refused arguments -----------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_metric_objects_round_trip_through_save_and_load(tmp_path, backend):
    x, y, w = _data()
    objs = [metrics.Precision(thresholds=0.4, top_k=2, name="p"), metrics.Recall(class_id=0),
            metrics.AUC(num_thresholds=50, curve="PR", name="pr"),
            metrics.AUC(thresholds=[0.3, 0.6], from_logits=True, name="auc_l"),
            metrics.F1Score(average="weighted", threshold=0.5),
            metrics.TopKCategoricalAccuracy(k=2), "kld", "auc"]
    model = _model(backend=backend, metrics=objs, weighted_metrics=[metrics.AUC(name="wauc")])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    model.save(str(tmp_path / "m.keras"))
    again = load_model(str(tmp_path / "m.keras"))
    for saved, loaded in zip(model._compile_args["metrics"], again._compile_args["metrics"]):
        if not isinstance(saved, str):
            assert type(loaded) is type(saved) and loaded.get_config() == saved.get_config()
    before = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    after = again.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    assert after == before and set(before) >= {"p", "recall", "pr", "auc_l", "f1_score",
                                                "top_k_categorical_accuracy", "wauc"}


@pytest.mark.parametrize("make, message", [
    (lambda: metrics.Precision(thresholds=[0.3, 0.5]), "one number"),
    (lambda: metrics.Recall(thresholds=1.5), r"in \[0, 1\]"),
    (lambda: metrics.Precision(top_k=0), "top_k=0"),
    (lambda: metrics.Recall(class_id=-1), "class_id=-1"),
    (lambda: metrics.AUC(num_thresholds=1), "num_thresholds=1"),
    (lambda: metrics.AUC(curve="XY"), "curve"),
    (lambda: metrics.AUC(summation_method="trapezoid"), "summation_method"),
    (lambda: metrics.AUC(multi_label=True), "multi_label"),
    (lambda: metrics.F1Score(), "average"),
    (lambda: metrics.F1Score(average="macro", threshold=0.0), "threshold"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), "k=0"),
    (lambda: metrics.get("precison", None), "unknown metric 'precison'"),
])
def test_bad_metric_arguments_raise_naming_them(make, message):
    with pytest.raises(SymgraphError, match=message):
        make()


def test_confusion_metric_on_class_ids_is_refused_before_any_step():
    x = RNG.normal(size=(N, 4)).astype(np.float32)
    labels = RNG.integers(0, 3, size=N)
    model = Sequential([Input((4,)), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[metrics.Precision()], backend="numpy")
    weights = model.get_weights()
    with pytest.raises(SymgraphError, match=r"metric 'precision' \(Precision\) needs targets"):
        model.fit(x, labels, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    wide = _model(metrics=[metrics.Recall(class_id=5)])
    with pytest.raises(SymgraphError, match="class_id=5"):
        wide.evaluate(*_data()[:2], verbose=0)
