"""The callback surface of fit / evaluate / predict against Keras 3's trainers: the order and
logs of every hook (the losses recomputed in NumPy from the weights each step saw),
validation_freq, initial_epoch, stop flags, LambdaCallback, ProgbarLogger, SwapEMAWeights
against a hand EMA, ModelCheckpoint(save_freq=int, initial_value_threshold), EarlyStopping's
start_from_epoch and baseline, and the refusals (SymgraphError, nothing changed)."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Sequential, callbacks, optimizers
from symgraph.nn.callback_list import HOOKS as ALL_HOOKS

RNG = np.random.default_rng(3)
X = RNG.normal(size=(6, 2)).astype(np.float32)
Y = RNG.normal(size=(6, 1)).astype(np.float32)
XV = RNG.normal(size=(3, 2)).astype(np.float32)
YV = RNG.normal(size=(3, 1)).astype(np.float32)
HOOKS = [h for h in ALL_HOOKS if h not in ("on_batch_begin", "on_batch_end")]


def _model(opt=None):
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer=opt or optimizers.SGD(0.1), loss="mse", backend="numpy")
    return model


def _mse(weights, x, y):
    w, b = (a.astype(np.float64) for a in weights)
    return float(np.mean((x.astype(np.float64) @ w + b - y) ** 2))


class Recorder(callbacks.Callback):
    """Every hook (but the on_batch_* aliases) with its argument, a copy of its logs and the
    weights the model had when it was called."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name in HOOKS:
            def hook(*args, **kwargs):
                logs = kwargs.get("logs", args[-1] if args else None)
                arg = args[0] if len(args) == 2 or "logs" in kwargs and args else None
                self.calls.append((name, arg, dict(logs), self.model.get_weights()))
            return hook
        return super().__getattribute__(name)

    def names(self):
        return [(name, arg) for name, arg, _, _ in self.calls]


def test_fit_calls_every_hook_in_keras_order_with_its_logs():
    model, rec = _model(), Recorder()
    hist = model.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                     validation_data=(XV, YV), callbacks=[rec])
    # batches of 4 rows: 2 training batches (4 and 2 rows), 1 validation batch (3 rows)
    expected = [("on_train_begin", None)]
    for epoch in range(2):
        expected.append(("on_epoch_begin", epoch))
        for b in range(2):
            expected += [("on_train_batch_begin", b), ("on_train_batch_end", b)]
        expected += [("on_test_begin", None), ("on_test_batch_begin", 0),
                     ("on_test_batch_end", 0), ("on_test_end", None), ("on_epoch_end", epoch)]
    expected.append(("on_train_end", None))
    assert rec.names() == expected
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 2} and rec.model is model
    calls = rec.calls
    for name, _, logs, _ in calls:
        if name.endswith("_begin"):
            assert logs == {}, name
    # each batch's logs: the running mean of the batch losses (sizes 4 and 2) at the weights
    # the step started from; validation: the loss at the end-of-epoch weights
    starts = [c for c in calls if c[0] == "on_train_batch_begin"]
    ends = [c for c in calls if c[0] == "on_train_batch_end"]
    for epoch in range(2):
        l0 = _mse(starts[2 * epoch][3], X[:4], Y[:4])
        l1 = _mse(starts[2 * epoch + 1][3], X[4:], Y[4:])
        assert ends[2 * epoch][2] == pytest.approx({"loss": l0}, rel=1e-5)
        assert ends[2 * epoch + 1][2] == pytest.approx({"loss": (4 * l0 + 2 * l1) / 6},
                                                       rel=1e-5)
    test_ends = [c for c in calls if c[0] in ("on_test_batch_end", "on_test_end")]
    epoch_ends = [c for c in calls if c[0] == "on_epoch_end"]
    for epoch, end in enumerate(epoch_ends):
        val = _mse(end[3], XV, YV)
        assert test_ends[2 * epoch][2] == pytest.approx({"loss": val}, rel=1e-5)
        assert test_ends[2 * epoch + 1][2] == pytest.approx({"loss": val}, rel=1e-5)
        assert end[2] == pytest.approx({"loss": ends[2 * epoch + 1][2]["loss"],
                                        "val_loss": val}, rel=1e-6)
    assert calls[-1][2] == epoch_ends[-1][2]  # on_train_end gets the last epoch's logs
    assert hist.history["val_loss"] == [c[2]["val_loss"] for c in epoch_ends]


def test_evaluate_and_predict_call_the_test_and_predict_hooks():
    model, rec = _model(), Recorder()
    weights = model.get_weights()
    result = model.evaluate(XV, YV, batch_size=2, verbose=0, callbacks=[rec])
    assert rec.names() == [("on_test_begin", None), ("on_test_batch_begin", 0),
                           ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                           ("on_test_batch_end", 1), ("on_test_end", None)]
    assert rec.params == {"verbose": 0, "epochs": 1, "steps": 2}
    first, full = _mse(weights, XV[:2], YV[:2]), _mse(weights, XV, YV)
    assert rec.calls[2][2] == pytest.approx({"loss": first}, rel=1e-5)
    assert rec.calls[4][2] == rec.calls[5][2] == pytest.approx({"loss": full}, rel=1e-5)
    assert result == pytest.approx(full, rel=1e-5)

    rec = Recorder()
    out = model.predict(XV, batch_size=2, verbose=0, callbacks=[rec])
    assert rec.names() == [("on_predict_begin", None), ("on_predict_batch_begin", 0),
                           ("on_predict_batch_end", 0), ("on_predict_batch_begin", 1),
                           ("on_predict_batch_end", 1), ("on_predict_end", None)]
    assert rec.params == {"verbose": 0, "epochs": 1, "steps": 2}
    w, b = weights
    for i, rows in ((2, slice(0, 2)), (4, slice(2, 3))):
        assert list(rec.calls[i][2]) == ["outputs"]
        np.testing.assert_allclose(rec.calls[i][2]["outputs"], XV[rows] @ w + b, rtol=1e-5)
    assert rec.calls[5][2] == {} and out.shape == (3, 1)
    # batches of a generator too
    rec = Recorder()
    model.evaluate(iter([(XV[:2], YV[:2]), (XV[2:], YV[2:])]), verbose=0, callbacks=[rec])
    assert [n for n, _ in rec.names()].count("on_test_batch_end") == 2
    rec = Recorder()
    model.predict(iter([XV[:2], XV[2:]]), verbose=0, callbacks=[rec])
    assert [n for n, _ in rec.names()].count("on_predict_batch_end") == 2


def test_stop_flags_end_fit_evaluate_and_predict_early_as_keras():
    class Stop(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

        def on_test_batch_end(self, batch, logs=None):
            self.model.stop_evaluating = True

        def on_predict_batch_end(self, batch, logs=None):
            self.model.stop_predicting = True

    model, rec = _model(), Recorder()
    model.fit(X, Y, batch_size=2, epochs=3, shuffle=False, verbose=0,
              validation_data=(XV, YV), callbacks=[Stop(), rec])
    # the epoch still validates (the stop flag of validation ends it after one batch too) and
    # ends with on_epoch_end, as Keras
    assert rec.names() == [("on_train_begin", None), ("on_epoch_begin", 0),
                           ("on_train_batch_begin", 0), ("on_train_batch_end", 0),
                           ("on_test_begin", None), ("on_test_batch_begin", 0),
                           ("on_test_batch_end", 0), ("on_test_end", None),
                           ("on_epoch_end", 0), ("on_train_end", None)]
    assert model.evaluate(XV, YV, batch_size=1, verbose=0, callbacks=[Stop()]) == \
        pytest.approx(_mse(model.get_weights(), XV[:1], YV[:1]), rel=1e-5)
    assert model.predict(XV, batch_size=1, verbose=0, callbacks=[Stop()]).shape == (1, 1)


@pytest.mark.parametrize("freq, validated", [(2, [1, 3]), (3, [2]), ([1, 4], [0, 3]),
                                             (1, [0, 1, 2, 3, 4])])
def test_validation_freq_validates_every_nth_epoch(freq, validated):
    model, rec = _model(), Recorder()
    hist = model.fit(X, Y, batch_size=6, epochs=5, verbose=0, validation_data=(XV, YV),
                     validation_freq=freq, callbacks=[rec])
    epoch_logs = [c[2] for c in rec.calls if c[0] == "on_epoch_end"]
    assert [i for i, logs in enumerate(epoch_logs) if "val_loss" in logs] == validated
    assert [c[1] for c in rec.calls if c[0] == "on_epoch_end"] == list(range(5))
    tested = [i for i, c in enumerate(rec.calls) if c[0] == "on_test_begin"]
    assert len(tested) == len(validated)
    assert len(hist.history["loss"]) == 5 and len(hist.history["val_loss"]) == len(validated)
    for logs in epoch_logs:
        if "val_loss" in logs:
            assert set(logs) == {"loss", "val_loss"}
        else:
            assert set(logs) == {"loss"}


def test_validation_freq_counts_absolute_epochs_with_initial_epoch():
    model, rec = _model(), Recorder()
    hist = model.fit(X, Y, batch_size=6, epochs=5, initial_epoch=2, verbose=0,
                     validation_data=(XV, YV), validation_freq=2, callbacks=[rec])
    assert hist.epoch == [2, 3, 4] and rec.params["epochs"] == 5
    assert [c[1] for c in rec.calls if c[0] == "on_epoch_begin"] == [2, 3, 4]
    assert [("val_loss" in c[2]) for c in rec.calls if c[0] == "on_epoch_end"] == \
        [False, True, False]
    # nothing to run: on_train_begin / on_train_end (with no logs) only
    rec = Recorder()
    model.fit(X, Y, epochs=2, initial_epoch=2, verbose=0, callbacks=[rec])
    assert rec.names() == [("on_train_begin", None), ("on_train_end", None)]
    assert rec.calls[-1][2] == {}


def test_a_generator_validated_once_needs_no_validation_steps():
    def batches():
        yield XV, YV

    model = _model()
    hist = model.fit(X, Y, epochs=2, verbose=0, validation_data=batches(), validation_freq=2)
    assert len(hist.history["val_loss"]) == 1
    with pytest.raises(SymgraphError, match="validates 2 times"):
        model.fit(X, Y, epochs=4, verbose=0, validation_data=batches(), validation_freq=2)


@pytest.mark.parametrize("freq", [0, -1, True, 1.0, "2", [0, 2], [1.5], None])
def test_a_bad_validation_freq_is_refused_before_anything_changes(freq):
    model, rec = _model(), Recorder()
    weights = model.get_weights()
    with pytest.raises(SymgraphError, match="validation_freq must be an integer >= 1"):
        model.fit(X, Y, epochs=2, verbose=0, validation_data=(XV, YV), validation_freq=freq,
                  callbacks=[rec])
    assert rec.calls == [] and int(model.optimizer.iterations.value) == 0
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_callbacks_of_evaluate_and_predict_are_checked():
    model = _model()
    for call in (lambda: model.evaluate(XV, YV, verbose=0, callbacks=callbacks.History()),
                 lambda: model.predict(XV, verbose=0, callbacks=[print])):
        with pytest.raises(SymgraphError, match="callbacks must be"):
            call()


def test_a_history_given_is_the_one_fit_fills_and_returns():
    model, mine = _model(), callbacks.History()
    hist = model.fit(X, Y, epochs=2, verbose=0, callbacks=[mine])
    assert hist is mine and model.history is mine and len(mine.history["loss"]) == 2


def test_lambda_callback_takes_every_hook():
    seen = []
    hooks = {name: (lambda name: lambda *a, **k: seen.append(name))(name)
             for name in HOOKS}
    cb = callbacks.LambdaCallback(**hooks)
    model = _model()
    model.fit(X, Y, batch_size=6, epochs=1, verbose=0, validation_data=(XV, YV),
              callbacks=[cb])
    model.evaluate(XV, YV, verbose=0, callbacks=[cb])
    model.predict(XV, verbose=0, callbacks=[cb])
    assert seen == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin",
                    "on_train_batch_end", "on_test_begin", "on_test_batch_begin",
                    "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end",
                    "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                    "on_predict_begin", "on_predict_batch_begin", "on_predict_batch_end",
                    "on_predict_end"]
    # Keras's calls: epoch hooks (epoch, logs), batch hooks (batch, logs=...), begin (logs)
    got = []
    cb = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: got.append((epoch, logs)),
                                  on_train_batch_end=lambda batch, logs: got.append(batch),
                                  on_train_end=lambda logs: got.append(sorted(logs)))
    model.fit(X, Y, batch_size=3, epochs=1, verbose=0, callbacks=[cb])
    assert got[:2] == [0, 1] and got[2][0] == 0 and got[3] == ["loss"]


def test_lambda_callback_refuses_what_is_no_hook():
    with pytest.raises(SymgraphError, match="on_epoch_ends is not a callback hook"):
        callbacks.LambdaCallback(on_epoch_ends=lambda epoch, logs: None)
    with pytest.raises(SymgraphError, match="on_train_end must be a function"):
        callbacks.LambdaCallback(on_train_end="print")


def test_progbar_logger_is_the_bar_and_is_not_doubled(capsys):
    model = _model()
    model.fit(X, Y, batch_size=3, epochs=2, verbose=2, validation_data=(XV, YV),
              callbacks=[callbacks.ProgbarLogger()])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    assert out[1].startswith("2/2 - ") and out[1].endswith(tuple("0123456789"))
    assert " - loss: " in out[1] and " - val_loss: " in out[1]
    model.evaluate(XV, YV, batch_size=2, verbose=2)
    line = capsys.readouterr().out
    assert line.startswith("2/2 - ") and " - loss: " in line
    model.predict(XV, batch_size=1, verbose=2)
    assert capsys.readouterr().out.startswith("3/3 - ")
    model.fit(X, Y, epochs=1, verbose=0)
    model.evaluate(XV, YV, verbose=0)
    model.predict(XV, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_line_ends_with_what_other_callbacks_logged(capsys):
    model = _model()
    model.fit(X, Y, epochs=1, verbose=2, callbacks=[callbacks.ReduceLROnPlateau("loss")])
    assert " - learning_rate: 0.1000" in capsys.readouterr().out


# --- SwapEMAWeights ---------------------------------------------------------------------

LR, MOMENTUM = 0.1, 0.8


def _ema_model():
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer=optimizers.SGD(LR, use_ema=True, ema_momentum=MOMENTUM),
                  loss="mse", backend="numpy")
    return model


def _hand_sgd_ema(weights, batches):
    """Keras's SGD then EMA (average = weight at the first step, then m * avg + (1 - m) * w),
    in float64: (weights, averages) after each step."""
    w, b = (a.astype(np.float64) for a in weights)
    avg, out = None, []
    for x, y in batches:
        r = x.astype(np.float64) @ w + b - y
        gw, gb = 2.0 / r.size * x.T.astype(np.float64) @ r, 2.0 / r.size * r.sum(0)
        w, b = w - LR * gw, b - LR * gb
        avg = [w, b] if avg is None else [MOMENTUM * a + (1 - MOMENTUM) * v
                                          for a, v in zip(avg, (w, b))]
        out.append(([w, b], avg))
    return out


def test_swap_ema_weights_validates_with_the_averages_and_trains_on():
    model, rec = _ema_model(), Recorder()
    start = model.get_weights()
    hist = model.fit(X, Y, batch_size=3, epochs=3, shuffle=False, verbose=0,
                     validation_data=(XV, YV), callbacks=[callbacks.SwapEMAWeights(), rec])
    steps = _hand_sgd_ema(start, [(X[:3], Y[:3]), (X[3:], Y[3:])] * 3)
    for epoch in range(3):
        trained, average = steps[2 * epoch + 1]
        assert hist.history["val_loss"][epoch] == pytest.approx(_mse(average, XV, YV),
                                                                rel=1e-5)
        # the hooks during validation saw the averages; on_epoch_end the trained weights
        tests = [c for c in rec.calls if c[0] == "on_test_begin"]
        ends = [c for c in rec.calls if c[0] == "on_epoch_end"]
        for got, want in zip(tests[epoch][3], average):
            np.testing.assert_allclose(got, want, rtol=1e-5)
        for got, want in zip(ends[epoch][3], trained):
            np.testing.assert_allclose(got, want, rtol=1e-5)
    for got, want in zip(model.get_weights(), steps[-1][1]):  # fit ends with the averages
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_swap_on_epoch_gives_later_callbacks_and_checkpoints_the_averages(tmp_path):
    model, before, after = _ema_model(), Recorder(), Recorder()
    start = model.get_weights()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ema-{epoch}.npz"))
    stop = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1))
    model.fit(X, Y, batch_size=3, epochs=4, shuffle=False, verbose=0,
              callbacks=[before, callbacks.SwapEMAWeights(swap_on_epoch=True), ck, after, stop])
    steps = _hand_sgd_ema(start, [(X[:3], Y[:3]), (X[3:], Y[3:])] * 2)
    # stopped after epoch 2 (of 4): fit still ends with the averages
    assert [c[1] for c in after.calls if c[0] == "on_epoch_end"] == [0, 1]
    for epoch in range(2):
        trained, average = steps[2 * epoch + 1]
        seen_before = [c[3] for c in before.calls if c[0] == "on_epoch_end"][epoch]
        seen_after = [c[3] for c in after.calls if c[0] == "on_epoch_end"][epoch]
        saved = Sequential([Dense(1, input_dim=2)])
        saved.load_weights(str(tmp_path / f"ema-{epoch + 1}.npz"))
        for got, want in zip(seen_before, trained):
            np.testing.assert_allclose(got, want, rtol=1e-5)
        for got in (seen_after, saved.get_weights()):
            for g, want in zip(got, average):
                np.testing.assert_allclose(g, want, rtol=1e-5)
        # the next epoch trained from the trained weights, not from the averages
        if epoch == 0:
            next_start = [c[3] for c in after.calls if c[0] == "on_train_batch_begin"][2]
            for got, want in zip(next_start, trained):
                np.testing.assert_allclose(got, want, rtol=1e-5)
    for got, want in zip(model.get_weights(), steps[3][1]):
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_swap_ema_weights_in_evaluate_and_predict_puts_the_weights_back():
    model = _ema_model()
    start = model.get_weights()
    model.train_on_batch(X[:3], Y[:3])
    model.train_on_batch(X[3:], Y[3:])  # no fit: the weights are not the averages
    trained, average = _hand_sgd_ema(start, [(X[:3], Y[:3]), (X[3:], Y[3:])])[-1]
    before = model.get_weights()
    swap = callbacks.SwapEMAWeights()
    loss = model.evaluate(XV, YV, verbose=0, callbacks=[swap])
    assert loss == pytest.approx(_mse(average, XV, YV), rel=1e-5)
    out = model.predict(XV, verbose=0, callbacks=[swap])
    np.testing.assert_allclose(out, XV @ average[0] + average[1], rtol=1e-5)
    for got, want, hand in zip(model.get_weights(), before, trained):
        np.testing.assert_array_equal(got, want)  # Keras's predict left the averages in
        np.testing.assert_allclose(got, hand, rtol=1e-5)
    # no step yet: no averages, nothing swapped
    fresh = _ema_model()
    assert fresh.evaluate(XV, YV, verbose=0, callbacks=[callbacks.SwapEMAWeights()]) == \
        pytest.approx(_mse(fresh.get_weights(), XV, YV), rel=1e-5)


def test_swap_ema_weights_refuses_an_optimizer_without_ema():
    model, rec = _model(), Recorder()
    weights = model.get_weights()
    for call in (lambda cbs: model.fit(X, Y, epochs=1, verbose=0, callbacks=cbs),
                 lambda cbs: model.evaluate(XV, YV, verbose=0, callbacks=cbs),
                 lambda cbs: model.predict(XV, verbose=0, callbacks=cbs)):
        with pytest.raises(SymgraphError, match="SwapEMAWeights must be used when `use_ema"):
            call([rec, callbacks.SwapEMAWeights()])
    assert rec.calls == [] and int(model.optimizer.iterations.value) == 0
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


# --- ModelCheckpoint, EarlyStopping -----------------------------------------------------

def test_model_checkpoint_save_freq_counts_batches_across_epochs(tmp_path):
    model, rec = _model(), Recorder()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch}-{batch}.npz"), save_freq=4)
    model.fit(X, Y, batch_size=2, epochs=3, shuffle=False, verbose=0, callbacks=[ck, rec])
    # 3 batches an epoch: the 4th batch is epoch 2's first, the 8th epoch 3's second
    assert ck.saved == [str(tmp_path / "ck-2-1.npz"), str(tmp_path / "ck-3-2.npz")]
    ends = [c for c in rec.calls if c[0] == "on_train_batch_end"]
    for path, at in zip(ck.saved, (3, 7)):
        saved = Sequential([Dense(1, input_dim=2)])
        saved.load_weights(path)
        for got, want in zip(saved.get_weights(), ends[at][3]):
            np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck-2-1.npz", "ck-3-2.npz"]


def test_model_checkpoint_save_freq_best_only_reads_the_batch_logs(tmp_path):
    model = _model()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "sub" / "best.npz"), monitor="loss",
                                   save_freq=1, save_best_only=True)
    model.fit(X, Y, batch_size=2, epochs=2, shuffle=False, verbose=0, callbacks=[ck])
    assert 1 <= len(ck.saved) <= 6 and (tmp_path / "sub" / "best.npz").exists()
    with pytest.warns(RuntimeWarning, match="val_loss available"):
        miss = callbacks.ModelCheckpoint(str(tmp_path / "v.npz"), save_freq=2,
                                         save_best_only=True)
        model.fit(X, Y, batch_size=2, epochs=1, verbose=0, validation_data=(XV, YV),
                  callbacks=[miss])
    assert miss.saved == []


def test_model_checkpoint_initial_value_threshold_is_the_first_best(tmp_path):
    model = _model()
    loss = model.evaluate(X, Y, verbose=0)
    low = callbacks.ModelCheckpoint(str(tmp_path / "low.npz"), monitor="loss",
                                    save_best_only=True, initial_value_threshold=loss / 1e3)
    high = callbacks.ModelCheckpoint(str(tmp_path / "high.npz"), monitor="loss",
                                     save_best_only=True, initial_value_threshold=loss * 10)
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[low, high])
    assert low.saved == [] and low.best == loss / 1e3
    assert len(high.saved) >= 1 and high.best < loss * 10


@pytest.mark.parametrize("freq", [0, -2, True, 2.5, "batch", None])
def test_model_checkpoint_refuses_a_bad_save_freq(tmp_path, freq):
    with pytest.raises(SymgraphError, match="unrecognized save_freq"):
        callbacks.ModelCheckpoint(str(tmp_path / "c.npz"), save_freq=freq)


def test_model_checkpoint_batch_field_needs_save_freq(tmp_path):
    model = _model()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "c-{batch}.npz"))
    with pytest.raises(SymgraphError, match="names 'batch', which this epoch's logs lack"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[ck])


def _drive(cb, values):
    """Keras's EarlyStopping driven by hand: the epochs it ran."""
    class Model:
        stop_training = False

        def get_weights(self):
            return []

    cb.set_model(Model())
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"val_loss": v})
        if cb.model.stop_training:
            return epoch + 1
    return len(values)


def test_early_stopping_start_from_epoch_ignores_the_warm_up():
    # Keras: epochs before start_from_epoch are not monitored; the first after is the best
    assert _drive(callbacks.EarlyStopping(patience=0), [5.0, 6.0, 7.0, 8.0]) == 2
    cb = callbacks.EarlyStopping(patience=0, start_from_epoch=2)
    assert _drive(cb, [5.0, 6.0, 7.0, 8.0]) == 4 and cb.best == 7.0 and cb.stopped_epoch == 3


def test_early_stopping_baseline_keeps_the_wait_until_beaten():
    # without a baseline: wait resets at 1.0, stop at the 2nd epoch without improvement
    assert _drive(callbacks.EarlyStopping(patience=2), [1.0, 1.1, 1.2, 1.3]) == 3
    # improving on the best but not on the baseline does not reset the wait (Keras 3)
    cb = callbacks.EarlyStopping(patience=2, baseline=0.5)
    assert _drive(cb, [1.0, 1.1, 1.2, 1.3]) == 2 and cb.best == 1.0
    cb = callbacks.EarlyStopping(patience=2, baseline=0.5)
    assert _drive(cb, [1.0, 0.4, 0.45, 0.46, 0.47]) == 4  # 0.4 beat it: wait restarted


def test_early_stopping_warns_when_its_monitor_is_missing():
    cb = callbacks.EarlyStopping()
    with pytest.warns(RuntimeWarning, match="conditioned on metric `val_loss` which is not "
                                            "available. Available metrics are: loss"):
        cb.on_epoch_end(0, {"loss": 1.0})
