"""EarlyStopping (Keras's wait/patience/min_delta logic, restore_best_weights), ModelCheckpoint,
History, LearningRateScheduler."""

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
