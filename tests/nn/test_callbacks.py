"""EarlyStopping (Keras's wait/patience/min_delta logic, restore_best_weights), ModelCheckpoint,
History, LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN."""

import csv
import math
import os

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Sequential, callbacks, optimizers


class FakeModel:
    """Weights are the epoch number, so restoring shows which epoch's weights came back."""

    def __init__(self):
        self.stop_training = False
        self.current = [np.zeros(1)]
        self.restored = None

    def get_weights(self):
        return [w.copy() for w in self.current]

    def set_weights(self, ws):
        self.restored = ws
        self.current = ws


def _drive(cb, values, key="val_loss"):
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_begin()
    epochs = 0
    for epoch, v in enumerate(values):
        model.current = [np.full(1, float(epoch))]
        cb.on_epoch_end(epoch, {key: v})
        epochs += 1
        if model.stop_training:
            break
    cb.on_train_end()
    return epochs, model


def test_early_stopping_patience_counts_epochs_without_improvement():
    cb = callbacks.EarlyStopping(patience=2)
    epochs, _ = _drive(cb, [1.0, 0.9, 0.95, 0.93, 0.5])
    assert epochs == 4 and cb.stopped_epoch == 3 and cb.best == 0.9


def test_early_stopping_min_delta_and_max_mode():
    cb = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=0.05, patience=1)
    assert cb.mode == "max"
    epochs, _ = _drive(cb, [0.5, 0.52, 0.53, 0.9], key="val_accuracy")
    assert epochs == 2  # 0.52 does not beat 0.5 by more than 0.05


def test_early_stopping_never_stops_at_epoch_zero():
    cb = callbacks.EarlyStopping(patience=0)
    epochs, _ = _drive(cb, [1.0, 2.0, 3.0])
    assert epochs == 2 and cb.stopped_epoch == 1


def test_restore_best_weights():
    cb = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    _, model = _drive(cb, [1.0, 0.4, 0.6, 0.7, 0.8])
    assert model.restored[0][0] == 1.0 and cb.best_epoch == 1


def test_early_stopping_and_restore_in_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [2.0], [-1.0]], np.float32)
    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend="numpy")
    # learning y moves away from the validation targets -y: val_loss rises, training stops
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    snapshots = []

    class Snap(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], self.model.get_weights()))

    hist = model.fit(x, y, epochs=40, verbose=0, validation_data=(x, -y),
                     callbacks=[Snap(), stop])
    assert len(hist.epoch) < 40
    best = min(range(len(snapshots)), key=lambda i: snapshots[i][0])
    for a, b in zip(snapshots[best][1], model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_writes_atomically(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2)).astype(np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    pattern = str(tmp_path / "ckpt-{epoch:02d}.npz")
    ck = callbacks.ModelCheckpoint(pattern, monitor="loss", save_best_only=False)
    model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[ck])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.npz", "ckpt-02.npz", "ckpt-03.npz"]
    best = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss",
                                     save_best_only=True)
    model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[best])
    assert len(best.saved) >= 1 and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    with pytest.raises(SymgraphError, match=".npz"):
        callbacks.ModelCheckpoint(str(tmp_path / "w.h5"))
    # a field the logs lack (no validation data): a SymgraphError naming it (was KeyError)
    missing = callbacks.ModelCheckpoint(str(tmp_path / "ck-{val_loss:.2f}.npz"))
    with pytest.raises(SymgraphError, match="names 'val_loss', which this epoch's logs lack"):
        model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[missing])


def test_learning_rate_scheduler_and_history_params():
    x = np.ones((8, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    opt = optimizers.SGD(0.1)
    model.compile(optimizer=opt, loss="mse", backend="numpy")
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    hist = model.fit(x, x[:, :1], epochs=3, batch_size=4, verbose=0, callbacks=[sched])
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert hist.params == {"verbose": 0, "epochs": 3, "steps": 2}
    assert hist.epoch == [0, 1, 2]


def test_learning_rate_scheduler_takes_keras_one_argument_schedules():
    x = np.ones((8, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="numpy")
    sched = callbacks.LearningRateScheduler(lambda epoch: 0.01 / (epoch + 1))
    hist = model.fit(x, x[:, :1], epochs=2, batch_size=4, verbose=0, callbacks=[sched])
    assert hist.history["learning_rate"] == pytest.approx([0.01, 0.005])
    weights = model.get_weights()
    bad = callbacks.LearningRateScheduler(lambda epoch: "0.1")
    with pytest.raises(SymgraphError, match="must return a float"):
        model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[bad])
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_model_checkpoint_best_only_warns_when_its_monitor_is_missing(tmp_path):
    x = np.ones((8, 2), np.float32)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    ck = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True)
    with pytest.warns(RuntimeWarning, match="val_loss available .*loss"):
        model.fit(x, x[:, :1], epochs=1, verbose=0, callbacks=[ck])
    assert not os.listdir(tmp_path)


# --- ReduceLROnPlateau -----------------------------------------------------------------------


class FakeOptimizer:
    """Keeps the rate as float32 and hands it out as a Python float, as nn.optimizers does."""

    def __init__(self, lr):
        self._lr = np.float32(lr)

    @property
    def learning_rate(self):
        return float(self._lr)

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = np.float32(value)


def _drive_lr(cb, values, key="val_loss", model=None, lr=1.0):
    """The learning rate each epoch logged (the one it trained with) and the final rate."""
    if model is None:
        model = FakeModel()
        model.optimizer = FakeOptimizer(lr)
    cb.set_model(model)
    cb.on_train_begin()
    logged = []
    for epoch, v in enumerate(values):
        logs = {key: v}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    cb.on_train_end()
    return logged, model.optimizer.learning_rate


def _f32(values):
    return pytest.approx([float(np.float32(v)) for v in values], rel=1e-6)


def _lr(value):
    return pytest.approx(float(np.float32(value)), rel=1e-6)


def test_reduce_lr_on_plateau_waits_patience_epochs_without_improvement():
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=2)
    # best 1.0, 0.9; 0.95 and 0.93 do not improve: halve after 0.93; 0.92 waits 1, 0.5 is a
    # new best, then two 0.6s halve again
    logged, final = _drive_lr(cb, [1.0, 0.9, 0.95, 0.93, 0.92, 0.5, 0.6, 0.6, 0.6])
    assert logged == _f32([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25])
    assert final == _lr(0.25) and cb.wait == 1 and cb.best == 0.5


def test_reduce_lr_on_plateau_min_delta_counts_only_real_improvements():
    cb = callbacks.ReduceLROnPlateau(factor=0.1, patience=1, min_delta=0.1)
    # 0.95 is not below 1.0 - 0.1: reduce; 0.85 is below 0.9: best; 0.80 is not below 0.75
    logged, final = _drive_lr(cb, [1.0, 0.95, 0.85, 0.80])
    assert logged == _f32([1, 1, 0.1, 0.1]) and final == _lr(0.01)
    assert callbacks.ReduceLROnPlateau().min_delta == 1e-4  # Keras's default


def test_reduce_lr_on_plateau_cooldown_counts_down_before_waiting_again():
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    # Keras: the counter drops at the start of each epoch's check, so with cooldown=2 a flat
    # loss is reduced at epochs 1, 3, 5 (epochs 2, 4, 6 are cooling down)
    logged, final = _drive_lr(cb, [1.0] * 7)
    assert logged == _f32([1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]) and final == _lr(0.125)


def test_reduce_lr_on_plateau_stops_at_min_lr_and_max_mode():
    cb = callbacks.ReduceLROnPlateau(factor=0.1, patience=0, min_lr=0.05)
    # patience 0 reduces on every epoch without improvement: 1 -> 0.1 -> max(0.01, 0.05);
    # the float32 rate then equals min_lr and is left alone
    logged, final = _drive_lr(cb, [1.0, 2.0, 3.0, 4.0])
    assert logged == _f32([1, 1, 0.1, 0.05]) and final == _lr(0.05)
    acc = callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=2)
    assert acc.mode == "max"
    logged, final = _drive_lr(acc, [0.5, 0.6, 0.6, 0.6], key="val_accuracy")
    assert logged == _f32([1, 1, 1, 1]) and final == 0.5


def test_reduce_lr_on_plateau_resets_counters_each_fit_and_refuses_factor_one(capsys):
    cb = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, verbose=1)
    model = FakeModel()
    model.optimizer = FakeOptimizer(1.0)
    _drive_lr(cb, [1.0, 2.0], model=model)
    assert cb.wait == 1
    # a new fit starts afresh: 3.0 is a first best, not a second epoch without improvement
    logged, final = _drive_lr(cb, [3.0, 3.0], model=model)
    assert final == 1.0 and cb.wait == 1
    _drive_lr(cb, [3.0, 3.0, 3.0], model=model)
    assert capsys.readouterr().out == ("\nEpoch 3: ReduceLROnPlateau reducing learning rate to "
                                       "0.5.\n")
    with pytest.raises(SymgraphError, match="does not support a factor >= 1.0. Received "
                                            "factor=1.0"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_warns_when_its_monitor_is_missing():
    cb = callbacks.ReduceLROnPlateau(patience=0)
    model = FakeModel()
    model.optimizer = FakeOptimizer(0.1)
    cb.set_model(model)
    cb.on_train_begin()
    logs = {"loss": 1.0}
    with pytest.warns(RuntimeWarning, match="conditioned on metric `val_loss` which is not "
                                            "available. Available metrics are: "
                                            "loss,learning_rate."):
        cb.on_epoch_end(0, logs)
    assert logs["learning_rate"] == _lr(0.1) and model.optimizer.learning_rate == _lr(0.1)


def _linear_data():
    x = np.array([[1.0], [2.0], [-1.0], [0.5]], np.float32)
    return x, 3.0 * x[:, 0]


def test_reduce_lr_on_plateau_in_fit_changes_the_rate_the_steps_use():
    x, y = _linear_data()
    model = Sequential([Dense(1, input_dim=1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="numpy")
    # min_delta so large that only the first epoch improves: halve after every later epoch
    reduce = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1e9)
    hist = model.fit(x, y, epochs=4, batch_size=4, shuffle=False, verbose=0, callbacks=[reduce])
    assert hist.history["learning_rate"] == _f32([0.1, 0.1, 0.05, 0.025])
    assert model.optimizer.learning_rate == _lr(0.0125)
    w = 0.0  # SGD on mean((w x - y)^2), one batch per epoch, with the logged rates
    for lr in [0.1, 0.1, 0.05, 0.025]:
        w -= lr * float(np.mean(2 * x[:, 0] * (w * x[:, 0] - y)))
    np.testing.assert_allclose(model.get_weights()[0], [[w]], rtol=1e-5)
    assert [k[0] for k in model._functions] == ["train"]  # one step, never recompiled


# --- CSVLogger --------------------------------------------------------------------------------


def test_csv_logger_writes_keras_rows(tmp_path):
    path = tmp_path / "log.csv"
    cb = callbacks.CSVLogger(path)
    cb.set_model(FakeModel())
    cb.on_train_begin()
    cb.on_epoch_end(0, {"val_loss": 2.0, "loss": 1.0})
    cb.on_epoch_end(1, {"loss": 0.5, "extra": 7.0})  # missing: NA; new keys: not columns
    cb.on_train_end()
    assert path.read_bytes() == b"epoch,loss,val_loss\r\n0,1.0,2.0\r\n1,0.5,NA\r\n"
    semi = callbacks.CSVLogger(str(tmp_path / "semi.csv"), separator=";")
    semi.set_model(FakeModel())
    semi.on_train_begin()
    semi.on_epoch_end(0, {"loss": 0.25, "w": np.array([1, 2])})
    semi.on_train_end()
    assert (tmp_path / "semi.csv").read_text() == "epoch;loss;w\n0;0.25;[1, 2]\n"


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_in_fit_matches_history_and_appends(tmp_path):
    x, y = _linear_data()
    model = Sequential([Dense(1, input_dim=1)])
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse", metrics=["mae"], backend="numpy")
    path = str(tmp_path / "train.csv")
    logger = callbacks.CSVLogger(path)
    reduce = callbacks.ReduceLROnPlateau(monitor="val_loss", patience=1)  # adds learning_rate
    hist = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                     callbacks=[reduce, logger])
    rows = _read_csv(path)
    assert rows[0] == ["epoch", "learning_rate", "loss", "mae", "val_loss", "val_mae"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for i, key in enumerate(rows[0][1:], start=1):
        assert [float(r[i]) for r in rows[1:]] == hist.history[key]  # repr: exact round trip
    # append=True continues the file under the same header; append=False starts it again
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[reduce, callbacks.CSVLogger(path, append=True)])
    rows = _read_csv(path)
    assert [r[0] for r in rows] == ["epoch", "0", "1", "2", "0", "1"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    rows = _read_csv(path)
    assert rows[0] == ["epoch", "loss", "mae"] and [r[0] for r in rows[1:]] == ["0"]
    empty = tmp_path / "empty.csv"
    empty.write_text("")  # an existing empty file still gets its header
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(empty, append=True)])
    assert _read_csv(empty)[0] == ["epoch", "loss", "mae"] and len(_read_csv(empty)) == 2


def test_csv_logger_rows_survive_a_run_that_dies(tmp_path):
    x, y = _linear_data()
    model = Sequential([Dense(1, input_dim=1)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")

    class Crash(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    path = tmp_path / "log.csv"
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, verbose=0, callbacks=[callbacks.CSVLogger(path), Crash()])
    # on_train_end never ran, the file is still open: the flushed rows are already there
    assert [r[0] for r in _read_csv(path)] == ["epoch", "0", "1", "2"]
    with pytest.raises(SymgraphError, match="CSVLogger: cannot write .*missing"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.CSVLogger(tmp_path / "missing" / "log.csv")])


# --- TerminateOnNaN and the per-batch hooks ----------------------------------------------------


def test_terminate_on_nan_checks_each_batch_loss(capsys):
    cb = callbacks.TerminateOnNaN()
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_batch_end(0, {"loss": 1.0})
    cb.on_train_batch_end(1, {})
    assert not model.stop_training and capsys.readouterr().out == ""
    cb.on_train_batch_end(2, {"loss": math.inf})
    assert model.stop_training
    assert capsys.readouterr().out == "Batch 2: Invalid loss, terminating training\n"
    strict = callbacks.TerminateOnNaN(raise_error=True)
    strict.set_model(FakeModel())
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 3"):
        strict.on_batch_end(3, {"loss": math.nan})


def test_fit_calls_per_batch_hooks_only_where_overridden():
    class Begin(callbacks.Callback):
        def on_batch_begin(self, batch, logs=None): ...

    plain = callbacks.Callback()
    patched = callbacks.Callback()
    patched.on_train_batch_end = lambda batch, logs=None: None
    assert not callbacks.uses_batch_hooks(plain)
    assert not callbacks.uses_batch_hooks(callbacks.EarlyStopping())
    assert not callbacks.uses_batch_hooks(callbacks.History())
    assert callbacks.uses_batch_hooks(Begin()) and callbacks.uses_batch_hooks(patched)
    assert callbacks.uses_batch_hooks(callbacks.TerminateOnNaN())


class BatchLog(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen, self.epoch = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((self.epoch, batch, logs["loss"]))


def _diverging_fit(nan_guard):
    """SGD(50) on mean((w x)^2), x = 1: w <- -99 w, so the float32 loss w^2 overflows."""
    model = Sequential([Dense(1, input_dim=1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=optimizers.SGD(50.0), loss="mse", backend="numpy")
    log, stop = BatchLog(), callbacks.TerminateOnNaN()
    hist = model.fit(np.ones((8, 1), np.float32), np.zeros(8, np.float32), epochs=10,
                     batch_size=4, shuffle=False, verbose=0, nan_guard=nan_guard,
                     callbacks=[log, stop])
    return model, hist, log


def _first_overflow():
    """(step, weight before it, weight after it) of the first step with a non-finite loss."""
    w = np.float32(1.0)
    with np.errstate(over="ignore"):
        for step in range(100):
            if not np.isfinite(w * w):
                return step, w, np.float32(w - np.float32(50.0) * (np.float32(2.0) * w))
            w = np.float32(w - np.float32(50.0) * (np.float32(2.0) * w))


def test_terminate_on_nan_stops_fit_after_the_first_bad_batch(capsys):
    step, w_before, w_after = _first_overflow()
    epoch, batch = divmod(step, 2)  # 2 batches an epoch
    model, hist, log = _diverging_fit(nan_guard=False)
    assert (epoch, batch) == (5, 0)
    # Keras: the bad step is applied, the batch's hooks run, then the epoch ends (and is logged)
    assert log.seen[-1][:2] == (epoch, batch) and not math.isfinite(log.seen[-1][2])
    assert len(log.seen) == step + 1 and all(math.isfinite(s[2]) for s in log.seen[:-1])
    assert hist.epoch == list(range(epoch + 1)) and math.isinf(hist.history["loss"][-1])
    np.testing.assert_allclose(model.get_weights()[0], [[w_after]], rtol=1e-5)
    assert f"Batch {batch}: Invalid loss, terminating training" in capsys.readouterr().out


def test_nan_guard_acts_before_terminate_on_nan():
    step, w_before, _ = _first_overflow()
    model, hist, log = _diverging_fit(nan_guard=True)
    # the guard refuses the bad step itself: the weights are those before it, the callbacks
    # never see the inf, and the report names where it came from
    np.testing.assert_allclose(model.get_weights()[0], [[w_before]], rtol=1e-5)
    assert len(log.seen) == step and hist.epoch == list(range(step // 2))
    assert "the loss became NaN/inf" in hist.nan_report and model.stop_training


@pytest.mark.parametrize("monitor, first", [("loss", "inf"), ("accuracy", "-inf")])
def test_model_checkpoint_reports_improvements_as_keras(tmp_path, capsys, monitor, first):
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    model = Sequential([Dense(1, input_dim=2, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"],
                  backend="numpy")
    best = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor=monitor,
                                     save_best_only=True, verbose=1)
    model.fit(x, (x[:, :1] > 0).astype(np.float32), epochs=1, verbose=0, callbacks=[best])
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"Epoch 1: {monitor} improved from {first} to ")
    assert len(line.split(" to ")[1].split(",")[0].split(".")[1]) == 5  # '.5f' as Keras
