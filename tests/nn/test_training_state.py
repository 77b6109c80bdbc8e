"""Training state files and BackupAndRestore: an interrupted fit resumed from its backup ends
with exactly the weights of an uninterrupted one (dropout, batch norm, Adam, shuffling)."""

import os

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import (
    BatchNormalization,
    Dense,
    Dropout,
    Sequential,
    callbacks,
    optimizers,
    set_random_seed,
)
from symgraph.nn.weights_io import load_arrays


def _model(backend="numpy", optimizer="adam"):
    set_random_seed(5)  # the same dropout seeds and initial weights in every build
    model = Sequential([Dense(16, input_dim=6, activation="relu"), BatchNormalization(),
                        Dropout(0.3), Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer,
                  metrics=["accuracy"], backend=backend)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


class _Interrupt(Exception):
    pass


class _StopAfter(callbacks.Callback):
    """Raises at the end of epoch `epoch` (0-based), as a killed process would stop."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, backend):
    x, y = _data()
    whole = _model(backend)
    whole.fit(x, y, batch_size=16, epochs=4, verbose=0, seed=3)
    backup = callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = _model(backend)
    with pytest.raises(_Interrupt):  # the backup after epoch 2 (index 1) stays
        first.fit(x, y, batch_size=16, epochs=4, verbose=0, seed=3,
                  callbacks=[backup, _StopAfter(1)])
    assert os.path.exists(backup.path)
    again = _model(backend)  # a fresh process would build the model anew
    history = again.fit(x, y, batch_size=16, epochs=4, verbose=0, seed=3, callbacks=[backup])
    assert history.epoch == [2, 3]
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.optimizer.iterations.value == whole.optimizer.iterations.value == 24
    assert not os.path.exists(backup.path)  # deleted once fit ended normally


def _nadam_with_everything():
    return optimizers.Nadam(optimizers.schedules.CosineDecay(0.01, 20, warmup_target=0.02,
                                                             warmup_steps=5),
                            use_ema=True, ema_overwrite_frequency=4,
                            gradient_accumulation_steps=3)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_resumed_fit_keeps_the_new_optimizer_state(tmp_path, backend):
    """Nadam's u_product, EMA averages, gradient accumulators and a scheduled rate survive a
    BackupAndRestore resume; fit ends with the averages in both runs."""
    x, y = _data()
    whole = _model(backend, _nadam_with_everything())
    whole.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=3)
    backup = callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = _model(backend, _nadam_with_everything())
    with pytest.raises(_Interrupt):
        first.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=3,
                  callbacks=[backup, _StopAfter(0)])
    keys = [k for k, _ in load_arrays(backup.path)]
    assert "_state/optimizer/u_product" in keys
    assert "_state/optimizer/learning_rate" not in keys  # a schedule has no rate variable
    assert any(k.endswith("/average") for k in keys)
    assert any(k.endswith("/gradient_accumulator") for k in keys)
    again = _model(backend, _nadam_with_everything())
    again.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=3, callbacks=[backup])
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.optimizer.iterations.value == whole.optimizer.iterations.value == 18


def test_a_state_file_round_trips_and_weights_only_loaders_read_it(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=1)
    path = str(tmp_path / "state.npz")
    model.save_training_state(path)
    other = _model()  # not trained: its optimizer has no slots yet
    other.load_training_state(path)
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert other.step_counter.value == model.step_counter.value == 6
    assert other.optimizer.iterations.value == 6
    slots = [s.value for s in model.optimizer.variables[2:]]
    assert len(other.optimizer.variables[2:]) == len(slots) > 0
    for a, b in zip(other.optimizer.variables[2:], slots):
        np.testing.assert_array_equal(a.value, b)
    plain = _model()
    plain.load_weights(path)  # weights only: the state keys are skipped
    for a, b in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert plain.optimizer.iterations.value == 0
    # the next step of each is the same step (dropout mask, Adam's moments and step)
    np.testing.assert_array_equal(other.train_on_batch(x[:16], y[:16]),
                                  model.train_on_batch(x[:16], y[:16]))
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_state_files_raise_and_change_nothing(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=1)
    weights_only, state = str(tmp_path / "w.npz"), str(tmp_path / "s.npz")
    model.save_weights(weights_only)
    model.save_training_state(state)
    sgd = _model(optimizer="sgd")
    before = [w.copy() for w in sgd.get_weights()]
    with pytest.raises(SymgraphError, match="weights only"):
        sgd.load_training_state(weights_only)
    with pytest.raises(SymgraphError, match="Adam optimizer but .* SGD"):
        sgd.load_training_state(state)
    wider = Sequential([Dense(17, input_dim=6), BatchNormalization(), Dense(3)])
    wider.compile(loss="mse", optimizer="adam")
    with pytest.raises(SymgraphError, match="shape"):
        wider.load_training_state(state)
    assert wider.optimizer.iterations.value == 0
    for a, b in zip(sgd.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert sgd.optimizer.iterations.value == 0


def test_model_checkpoint_writes_the_training_state_unless_weights_only(tmp_path):
    x, y = _data()
    model = _model()
    path = str(tmp_path / "ck-{epoch}.npz")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=1,
              callbacks=[callbacks.ModelCheckpoint(path, save_weights_only=False)])
    keys = list(np.load(str(tmp_path / "ck-1.npz")).files)
    assert any("_state/optimizer/iterations" in k for k in keys)
    with pytest.raises(SymgraphError, match="save_freq"):
        callbacks.BackupAndRestore(str(tmp_path), save_freq=10)


def test_a_failing_load_creates_no_optimizer_slot_and_extra_slots_are_refused(tmp_path):
    """The slots a fresh model's step will need were created before the checks ran (a failed
    load left Adagrad with zero accumulators, not 0.1), and any `optimizer/<i>/<kind>` key
    became a slot (a centered RMSprop's state loaded into a plain one)."""
    x, y = _data()
    wide = Sequential([Dense(5, input_dim=6), Dense(3)])
    wide.compile(loss="mse", optimizer=optimizers.Adagrad(0.1))
    wide.fit(x, np.eye(3)[y], epochs=1, verbose=0, seed=0)
    path = str(tmp_path / "wide.npz")
    wide.save_training_state(path)
    narrow = Sequential([Dense(4, input_dim=6), Dense(3)])
    narrow.compile(loss="mse", optimizer=optimizers.Adagrad(0.1))
    with pytest.raises(SymgraphError, match="shape"):
        narrow.load_training_state(path)
    assert len(narrow.optimizer.variables) == 2  # learning rate and iterations only
    centered = Sequential([Dense(4, input_dim=6), Dense(3)])
    centered.compile(loss="mse", optimizer=optimizers.RMSprop(centered=True, momentum=0.5))
    centered.fit(x, np.eye(3)[y], epochs=1, verbose=0, seed=0)
    centered.save_training_state(path)
    narrow.compile(loss="mse", optimizer=optimizers.RMSprop())
    with pytest.raises(SymgraphError, match="average_gradient"):
        narrow.load_training_state(path)
    assert len(narrow.optimizer.variables) == 2


def test_layer_names_cannot_collide_with_the_state_keys(tmp_path):
    model = Sequential([Dense(3, input_dim=2, name="_state")])
    model.compile(loss="mse", optimizer="sgd")
    path = str(tmp_path / "s.npz")
    model.save_training_state(path)
    model.load_training_state(path)
    model.save_weights(path)
    model.load_weights(path)
    with pytest.raises(SymgraphError, match="without '/'"):
        Dense(3, name="a/b")


def _refused_backup(tmp_path, key: str, value):
    """A backup after one epoch with its array `key` replaced by `value`: a fresh model's fit
    from it raises and changes nothing. Returns the backup and the fresh model."""
    x, y = _data()
    model = _model()
    backup = callbacks.BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, seed=1, callbacks=[backup])
    with np.load(backup.path) as f:
        arrays = {k: (np.array(value) if k.endswith(key) else f[k]) for k in f.files}
    np.savez(backup.path, **arrays)
    fresh = _model()
    before = [w.copy() for w in fresh.get_weights()]
    with pytest.raises(SymgraphError, match="damaged fit state"):
        fresh.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=1, callbacks=[backup])
    for a, b in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    return backup, fresh


def test_damaged_backups_raise_before_anything_changes(tmp_path):
    backup, fresh = _refused_backup(tmp_path, "fit/rng", "{oops")  # state no longer JSON
    raw = bytearray(open(backup.path, "rb").read())
    central = raw.index(b"PK\x01\x02")  # the first member's compression method: unknown
    raw[central + 10:central + 12] = (99).to_bytes(2, "little")
    open(backup.path, "wb").write(bytes(raw))
    with pytest.raises(SymgraphError, match="cannot read weights file"):
        fresh.load_weights(backup.path)
    with pytest.raises(SymgraphError, match="backup_dir"):
        callbacks.BackupAndRestore("")
    uncompiled = Sequential([Dense(3, input_dim=6)])
    with pytest.raises(SymgraphError, match="not compiled"):
        uncompiled.load_training_state(backup.path)


def test_a_backup_whose_next_epoch_is_negative_is_damaged(tmp_path):
    _refused_backup(tmp_path, "fit/epoch", -5)
