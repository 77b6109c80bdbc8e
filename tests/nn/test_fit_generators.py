"""fit / evaluate / predict on generators and iterables of batches (symgraph/nn/data_adapter.py),
checked against the same data given as arrays: the same batches must give bit-identical weights
and History, and Keras 3's EpochIterator rules (steps_per_epoch reads on from one generator,
running out of data warns and ends training, a list starts afresh each epoch; arrays with
steps_per_epoch are read in passes carried across epochs)."""

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Concatenate, Dense, Input, Model, Sequential, set_random_seed
from symgraph.nn.callbacks import EarlyStopping
from symgraph.nn.progbar import Progbar

BACKENDS = ["numpy", "numba"]
RNG = np.random.default_rng(5)
X = RNG.normal(size=(40, 4)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=40)
W = RNG.uniform(0.0, 2.0, size=40)


def _model(backend, **compile_args):
    set_random_seed(3)
    model = Sequential([Dense(5, input_dim=4, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend,
                  metrics=["accuracy"], **compile_args)
    return model


def _batches(x, y, size=16, w=None):
    """The batches fit(..., shuffle=False, batch_size=size) takes, as (x, y[, w]) items."""
    for i in range(0, len(x), size):
        part = slice(i, i + size)
        yield (x[part], y[part]) if w is None else (x[part], y[part], w[part])


def _same(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_list_of_batches_trains_bit_identically_to_arrays_every_epoch(backend):
    arrays, batched = _model(backend), _model(backend)
    ha = arrays.fit(X, LABELS, batch_size=16, epochs=3, shuffle=False, verbose=0,
                    validation_data=(X[:8], LABELS[:8]))
    hb = batched.fit(list(_batches(X, LABELS)), epochs=3, verbose=0,
                     validation_data=list(_batches(X[:8], LABELS[:8])))
    _same(arrays, batched)
    assert hb.history == ha.history and len(hb.history["loss"]) == 3
    assert hb.params["steps"] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_generator_with_sample_weights_equals_arrays(backend):
    arrays, batched = _model(backend, weighted_metrics=["accuracy"]), \
        _model(backend, weighted_metrics=["accuracy"])
    ha = arrays.fit(X, LABELS, batch_size=16, shuffle=False, verbose=0, sample_weight=W)
    hb = batched.fit(_batches(X, LABELS, w=W), verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history
    assert hb.params["steps"] is None  # a generator's length is unknown


def test_steps_per_epoch_reads_on_from_one_generator():
    def endless():
        while True:
            yield from _batches(X, LABELS)

    arrays, batched = _model("numpy"), _model("numpy")
    # 2 steps per epoch over 3 epochs: batches 0,1 | 2,0 | 1,2 of the 3-batch cycle, the
    # 6 steps of two array epochs
    for _ in range(2):
        arrays.fit(X, LABELS, batch_size=16, shuffle=False, verbose=0)
    history = batched.fit(endless(), steps_per_epoch=2, epochs=3, verbose=0)
    _same(arrays, batched)  # 6 steps over the same batches in the same order
    assert len(history.history["loss"]) == 3 and history.params["steps"] == 2


def test_a_generator_without_steps_runs_out_after_its_first_epoch():
    model = _model("numpy")
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(_batches(X, LABELS), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1  # epoch 2 found nothing: training ended
    reference = _model("numpy")
    reference.fit(X, LABELS, batch_size=16, shuffle=False, verbose=0)
    _same(model, reference)


def test_steps_per_epoch_beyond_the_data_warns_and_ends_after_that_epoch():
    model = _model("numpy")
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(_batches(X, LABELS), steps_per_epoch=2, epochs=5, verbose=0)
    assert len(history.history["loss"]) == 2  # 2 batches, then the third and last: stop
    reference = _model("numpy")
    reference.fit(X, LABELS, batch_size=16, shuffle=False, verbose=0)
    _same(model, reference)


def test_a_reiterable_object_starts_afresh_each_epoch():
    class Batches:
        def __iter__(self):
            return _batches(X, LABELS)

    arrays, batched = _model("numpy"), _model("numpy")
    ha = arrays.fit(X, LABELS, batch_size=16, epochs=2, shuffle=False, verbose=0)
    hb = batched.fit(Batches(), epochs=2, verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history


def test_validation_generator_with_validation_steps_and_early_stopping():
    def endless_val():
        while True:
            yield X[:8], LABELS[:8]

    arrays, batched = _model("numpy"), _model("numpy")
    stop_a, stop_b = EarlyStopping(patience=0), EarlyStopping(patience=0)
    ha = arrays.fit(X, LABELS, batch_size=16, epochs=4, shuffle=False, verbose=0,
                    validation_data=(X[:8], LABELS[:8]), callbacks=[stop_a])
    hb = batched.fit(list(_batches(X, LABELS)), epochs=4, validation_data=endless_val(),
                     validation_steps=1, verbose=0, callbacks=[stop_b])
    assert hb.history == ha.history and "val_loss" in hb.history
    assert stop_a.stopped_epoch == stop_b.stopped_epoch
    _same(arrays, batched)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_and_predict_on_generators_equal_arrays(backend):
    model = _model(backend)
    expected = model.evaluate(X, LABELS, batch_size=16, verbose=0)
    assert model.evaluate(_batches(X, LABELS), verbose=0) == expected
    assert model.evaluate(_batches(X, LABELS), steps=1, verbose=0) \
        == model.evaluate(X[:16], LABELS[:16], verbose=0)
    predicted = model.predict(X, batch_size=16, verbose=0)
    bare = (X[i:i + 16] for i in range(0, 40, 16))
    np.testing.assert_array_equal(model.predict(bare, verbose=0), predicted)
    np.testing.assert_array_equal(model.predict(_batches(X, LABELS), verbose=0), predicted)
    np.testing.assert_array_equal(model.predict([(X[:16],), (X[16:],)], verbose=0), predicted)
    np.testing.assert_array_equal(model.predict(_batches(X, LABELS), steps=2, verbose=0),
                                  predicted[:32])


def test_multi_input_multi_output_items_equal_arrays():
    def build():
        set_random_seed(8)
        a, b = Input((4,), name="a"), Input((3,), name="b")
        h = Concatenate()([Dense(5, activation="relu")(a), b])
        model = Model([a, b], [Dense(2, name="reg")(h), Dense(3, activation="softmax",
                                                                name="cls")(h)])
        model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"],
                      backend="numpy")
        return model

    xb = RNG.normal(size=(40, 3)).astype(np.float32)
    reg = RNG.normal(size=(40, 2)).astype(np.float32)
    items = [({"a": X[i:i + 16], "b": xb[i:i + 16]}, [reg[i:i + 16], LABELS[i:i + 16]])
             for i in range(0, 40, 16)]
    arrays, batched = build(), build()
    ha = arrays.fit([X, xb], [reg, LABELS], batch_size=16, epochs=2, shuffle=False, verbose=0)
    hb = batched.fit(items, epochs=2, verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history
    assert batched.evaluate(iter(items), verbose=0) \
        == arrays.evaluate([X, xb], [reg, LABELS], batch_size=16, verbose=0)
    for got, want in zip(batched.predict(((x,) for x, _ in items), verbose=0),
                         arrays.predict([X, xb], batch_size=16, verbose=0), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("given, match", [
    ({"batch_size": 16}, "batch_size must not be given"),
    ({"y": LABELS}, "y must not be given"),
    ({"validation_split": 0.2}, "validation_split must not be given"),
    ({"sample_weight": W}, "sample_weight must not be given"),
    ({"class_weight": {0: 1.0}}, "class_weight must not be given"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be a positive integer"),
    ({"epochs": 2, "validation_data": iter([(X, LABELS)])}, "needs|give validation_steps"),
])
def test_fit_refuses_arguments_batches_do_not_take_and_changes_nothing(given, match):
    model = _model("numpy")
    before = model.get_weights()
    with pytest.raises(SymgraphError, match=match):
        model.fit(_batches(X, LABELS), verbose=0, **given)
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_steps_arguments_but_steps_per_epoch_are_refused_with_arrays():
    model = _model("numpy")
    with pytest.raises(SymgraphError, match="validation_steps=1"):
        model.fit(X, LABELS, validation_data=(X, LABELS), validation_steps=1, verbose=0)
    with pytest.raises(SymgraphError, match="steps=1"):
        model.evaluate(X, LABELS, steps=1, verbose=0)
    with pytest.raises(SymgraphError, match="steps=1"):
        model.predict(X, steps=1, verbose=0)
    with pytest.raises(SymgraphError, match="y must not be given"):
        model.evaluate(_batches(X, LABELS), LABELS, verbose=0)
    with pytest.raises(SymgraphError, match="yielded no batches"):
        model.evaluate(iter([]), verbose=0)
    with pytest.raises(SymgraphError, match="yielded no batches"):
        model.predict(iter([]), verbose=0)


@pytest.mark.parametrize("bad, match", [
    ((X[:16, :3], LABELS[:16]), "batch 1 .*expected shape \\(None, 4\\)"),
    ((X[:16], LABELS[:15]), "batch 1 "),
    ((X[:16], LABELS[:16] + 5), "batch 1 "),
    ((X[:16],), "batch 1 .*must be \\(x, y\\)"),
    ((X[:16], LABELS[:16], W[:3]), "batch 1 .*sample_weight"),
])
def test_a_bad_batch_mid_epoch_names_its_index_and_its_step_is_not_run(bad, match):
    model, reference = _model("numpy"), _model("numpy")
    reference.train_on_batch(X[:16], LABELS[:16])
    with pytest.raises(SymgraphError, match=match):
        model.fit(iter([(X[:16], LABELS[:16]), bad, (X[16:], LABELS[16:])]), verbose=0)
    _same(model, reference)  # batch 0's step stands, as in Keras; nothing after it ran


def test_progress_bar_counts_unknown_steps(capsys):
    model = _model("numpy")
    model.fit(_batches(X, LABELS), verbose=2)
    out = capsys.readouterr().out
    assert "      3/Unknown - " in out
    model.fit(list(_batches(X, LABELS)), verbose=2)
    assert "3/3 - " in capsys.readouterr().out
    bar = Progbar(None, verbose=1, dynamic=False)
    bar.update(5, {})
    assert bar._line(5, {}, done=True).startswith("      5/Unknown ")


def _fit_in_epochs(model, epochs_of_batches):
    """A History-like dict from one fit per epoch, each on that epoch's list of batches."""
    history = {}
    for batches in epochs_of_batches:
        for key, values in model.fit(batches, verbose=0).history.items():
            history.setdefault(key, []).extend(values)
    return history


def _split(x, y, order, size):
    """The (x, y) batches of `order` (sample rows) in chunks of `size`."""
    return [(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(order), size)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_per_epoch_with_arrays_carries_one_pass_across_epochs(backend):
    # Keras 3's EpochIterator: 5 batches a pass, 2 per epoch: 0,1 | 2,3 | 4 (the pass ends:
    # a short epoch, with a warning) | 0,1 of a new pass; training goes on
    model, reference = _model(backend), _model(backend)
    with pytest.warns(UserWarning, match="steps_per_epoch=2: the data ran out after 1 batches "
                      "\\(a pass over it is 5\\)") as caught:
        history = model.fit(X, LABELS, batch_size=8, steps_per_epoch=2, epochs=4,
                            shuffle=False, verbose=0)
    assert len([w for w in caught if "ran out" in str(w.message)]) == 1
    b = _split(X, LABELS, np.arange(40), 8)
    expected = _fit_in_epochs(reference, [b[0:2], b[2:4], b[4:5], b[0:2]])
    _same(model, reference)
    assert history.history == expected and history.params["steps"] == 2


def test_steps_per_epoch_with_shuffled_arrays_draws_one_permutation_per_pass():
    model, reference = _model("numpy"), _model("numpy")
    with pytest.warns(UserWarning, match="ran out after 2 batches"):
        history = model.fit(X, LABELS, batch_size=8, steps_per_epoch=3, epochs=4, seed=11,
                            verbose=0)
    rng = np.random.default_rng(11)  # fit's generator: one permutation per pass, nothing else
    first, second = _split(X, LABELS, rng.permutation(40), 8), \
        _split(X, LABELS, rng.permutation(40), 8)
    expected = _fit_in_epochs(reference, [first[0:3], first[3:5], second[0:3], second[3:5]])
    _same(model, reference)
    assert history.history == expected


def test_steps_per_epoch_beyond_the_arrays_batches_runs_each_epoch_short_and_goes_on():
    model, reference = _model("numpy"), _model("numpy")
    with pytest.warns(UserWarning, match="ran out after 3 batches") as caught:
        history = model.fit(X, LABELS, batch_size=16, steps_per_epoch=5, epochs=2,
                            shuffle=False, verbose=0)
    assert len([w for w in caught if "ran out" in str(w.message)]) == 2  # one per epoch
    expected = reference.fit(X, LABELS, batch_size=16, epochs=2, shuffle=False, verbose=0)
    _same(model, reference)
    assert history.history == expected.history and history.params["steps"] == 5


def test_steps_per_epoch_without_batch_size_makes_that_many_batches_of_the_arrays():
    # Keras's ArrayDataAdapter: batch_size ceil(30 / 4) = 8 over the 30 samples left after
    # validation_split (batches of 8, 8, 8, 6); the validation data keeps the default 32
    model, reference = _model("numpy"), _model("numpy")
    history = model.fit(X, LABELS, steps_per_epoch=4, epochs=2, shuffle=False, verbose=0,
                        validation_split=0.25)
    expected = reference.fit(X, LABELS, batch_size=8, epochs=2, shuffle=False, verbose=0,
                             validation_split=0.25)
    _same(model, reference)
    assert history.history == expected.history and history.params["steps"] == 4


def test_a_bad_steps_per_epoch_with_arrays_is_refused_and_changes_nothing():
    model = _model("numpy")
    before = model.get_weights()
    for bad in (0, -1, 2.0, True):
        with pytest.raises(SymgraphError, match="steps_per_epoch must be a positive integer"):
            model.fit(X, LABELS, steps_per_epoch=bad, verbose=0)
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
