"""fit / evaluate / predict on a PyDataset (symgraph/nn/py_dataset.py, read by
nn/data_adapter.py as Keras 3's PyDatasetAdapter): the same batches as arrays give bit-identical
weights and History; on_epoch_begin / on_epoch_end around each epoch; shuffle=True shuffles the
batch order per pass with fit's seeded generator; steps_per_epoch carries a pass across epochs;
bad items, an empty dataset and refused arguments raise naming what is wrong."""

import threading

import numpy as np
import pytest

from symgraph.errors import SymgraphError
from symgraph.nn import Dense, Input, Model, PyDataset, Sequential, set_random_seed
from symgraph.nn.callbacks import Callback

BACKENDS = ["numpy", "numba"]
RNG = np.random.default_rng(7)
X = RNG.normal(size=(40, 4)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=40)
W = RNG.uniform(0.0, 2.0, size=40)


class Batches(PyDataset):
    """Batches of `size` of (x, y[, w]), recording what fit asks of it."""

    def __init__(self, x, y, size=16, w=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.size = x, y, w, size
        self.read, self.threads, self.begun, self.ended = [], set(), 0, 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        self.read.append(i)
        self.threads.add(threading.get_ident())
        part = slice(i * self.size, (i + 1) * self.size)
        return (self.x[part], self.y[part]) + (() if self.w is None else (self.w[part],))

    def on_epoch_begin(self):
        self.begun += 1

    def on_epoch_end(self):
        self.ended += 1


def _model(backend="numpy", **compile_args):
    set_random_seed(3)
    model = Sequential([Dense(5, input_dim=4, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend,
                  metrics=["accuracy"], **compile_args)
    return model


def _same(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def _batch(i, size=16):
    return X[i * size:(i + 1) * size], LABELS[i * size:(i + 1) * size]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pydataset_trains_bit_identically_to_arrays(backend):
    arrays, batched = _model(backend), _model(backend)
    train, val = Batches(X, LABELS), Batches(X[:32], LABELS[:32])
    ha = arrays.fit(X, LABELS, batch_size=16, epochs=3, shuffle=False, verbose=0,
                    validation_data=(X[:32], LABELS[:32]))
    hb = batched.fit(train, epochs=3, shuffle=False, verbose=0, validation_data=val)
    _same(arrays, batched)
    assert hb.history == ha.history and hb.params["steps"] == 3
    assert train.read == [0, 1, 2] * 3 and (train.begun, train.ended) == (3, 3)
    assert val.read == [0, 1] * 3 and (val.begun, val.ended) == (3, 3)  # never shuffled


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_weights_in_items_and_evaluate_predict_equal_arrays(backend):
    arrays = _model(backend, weighted_metrics=["accuracy"])
    batched = _model(backend, weighted_metrics=["accuracy"])
    ha = arrays.fit(X, LABELS, batch_size=16, shuffle=False, verbose=0, sample_weight=W)
    hb = batched.fit(Batches(X, LABELS, w=W), shuffle=False, verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history
    data = Batches(X, LABELS, w=W)
    assert batched.evaluate(data, verbose=0) == arrays.evaluate(X, LABELS, batch_size=16,
                                                                sample_weight=W, verbose=0)
    np.testing.assert_array_equal(batched.predict(data, verbose=0),
                                  arrays.predict(X, batch_size=16, verbose=0))
    assert data.read == [0, 1, 2, 0, 1, 2] and data.ended == 2  # evaluate, predict: in order


def test_any_object_with_len_and_getitem_is_read_as_a_pydataset():
    class Plain:  # no base class, no epoch hooks (duck typing, as Keras's Sequence)
        def __len__(self):
            return 3

        def __iter__(self):  # read by index all the same, as Keras 2's Sequence
            raise AssertionError("iterated")

        def __getitem__(self, i):
            return _batch(i)

    arrays, batched = _model(), _model()
    ha = arrays.fit(X, LABELS, batch_size=16, epochs=2, shuffle=False, verbose=0)
    hb = batched.fit(Plain(), epochs=2, shuffle=False, verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history and hb.params["steps"] == 3


def test_shuffle_draws_the_batch_order_of_each_pass_from_the_seeded_generator():
    model, reference = _model(), _model()
    data = Batches(X, LABELS, size=8)
    model.fit(data, epochs=3, seed=4, verbose=0)  # shuffle=True, fit's default, as in Keras
    rng = np.random.default_rng(4)
    orders = [list(rng.permutation(5)) for _ in range(3)]
    assert data.read == [i for order in orders for i in order]
    assert sorted(data.read[:5]) == [0, 1, 2, 3, 4] and data.read[:5] != [0, 1, 2, 3, 4]
    for order in orders:
        reference.fit([_batch(i, 8) for i in order], verbose=0)
    _same(model, reference)


def test_an_epoch_a_callback_stops_does_not_end_the_dataset_epoch():
    class StopAfterOne(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    data = Batches(X, LABELS)
    history = _model().fit(data, epochs=3, shuffle=False, verbose=0, callbacks=[StopAfterOne()])
    assert data.read == [0] and (data.begun, data.ended) == (1, 0)
    assert len(history.history["loss"]) == 1


def test_steps_per_epoch_carries_one_pass_across_epochs():
    model, reference = _model(), _model()
    data = Batches(X, LABELS)  # 3 batches a pass, 2 per epoch: 0,1 | 2 (short) | 0,1
    with pytest.warns(UserWarning, match="fit: steps_per_epoch=2: the data ran out after 1 "
                      "batches"):
        history = model.fit(data, steps_per_epoch=2, epochs=3, shuffle=False, verbose=0)
    assert data.read == [0, 1, 2, 0, 1] and data.ended == 3 and history.params["steps"] == 2
    expected = {}
    for epoch in ([0, 1], [2], [0, 1]):
        for key, values in reference.fit([_batch(i) for i in epoch], verbose=0).history.items():
            expected.setdefault(key, []).extend(values)
    _same(model, reference)
    assert history.history == expected


def test_validation_steps_and_evaluate_steps_read_from_the_first_batch_each_time():
    model = _model()
    val = Batches(X, LABELS)
    model.fit(Batches(X, LABELS), epochs=2, shuffle=False, verbose=0, validation_data=val,
              validation_steps=2)
    assert val.read == [0, 1, 0, 1]
    assert model.evaluate(Batches(X, LABELS), steps=2, verbose=0) \
        == model.evaluate(X[:32], LABELS[:32], batch_size=16, verbose=0)
    with pytest.warns(UserWarning, match="evaluate: steps=5: the data ran out after 3 batches"):
        assert model.evaluate(Batches(X, LABELS), steps=5, verbose=0) \
            == model.evaluate(X, LABELS, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model.predict(Batches(X, LABELS), steps=1, verbose=0),
                                  model.predict(X[:16], verbose=0))


def test_workers_read_ahead_in_threads_in_order():
    model, reference = _model(), _model()
    data = Batches(X, LABELS, size=4, workers=3, max_queue_size=2)
    history = model.fit(data, epochs=2, shuffle=False, verbose=0)
    expected = reference.fit(X, LABELS, batch_size=4, epochs=2, shuffle=False, verbose=0)
    _same(model, reference)
    assert history.history == expected.history
    assert threading.get_ident() not in data.threads and data.ended == 2
    np.testing.assert_array_equal(model.predict(data, verbose=0),
                                  model.predict(X, batch_size=4, verbose=0))


def test_multi_input_multi_output_items():
    def build():
        set_random_seed(8)
        a, b = Input((4,), name="a"), Input((2,), name="b")
        h = Dense(5, activation="relu")(a)
        model = Model([a, b], [Dense(2, name="reg")(h), Dense(3, activation="softmax",
                                                                name="cls")(b)])
        model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"],
                      backend="numpy")
        return model

    xb, reg = X[:, :2] * 2, X[:, 1:3] - 1

    class Items(PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            part = slice(i * 16, (i + 1) * 16)
            return {"a": X[part], "b": xb[part]}, [reg[part], LABELS[part]]

    arrays, batched = build(), build()
    ha = arrays.fit([X, xb], [reg, LABELS], batch_size=16, epochs=2, shuffle=False, verbose=0)
    hb = batched.fit(Items(), epochs=2, shuffle=False, verbose=0)
    _same(arrays, batched)
    assert hb.history == ha.history


def test_progress_bar_knows_the_number_of_batches(capsys):
    _model().fit(Batches(X, LABELS), verbose=2)
    assert "3/3 - " in capsys.readouterr().out


class Broken(Batches):
    """Item 1 fails as `how` says."""

    def __init__(self, how, **kwargs):
        super().__init__(X, LABELS, **kwargs)
        self.how = how

    def __getitem__(self, i):
        item = super().__getitem__(i)
        if i != 1:
            return item
        if self.how == "raise":
            raise IndexError("no batch here")
        return {"four": item + (W[:16], W[:16]), "bare": item[0], "shape": (X[:16, :3], item[1]),
                "none": None}[self.how]


@pytest.mark.parametrize("how, match", [
    ("raise", "item 1 of the Broken \\(batch 1 of the epoch, counting from 0\\) could not be "
              "read \\(IndexError: no batch here\\), so its step was not run"),
    ("four", "item 1 of the Broken .* is invalid, so its step was not run: an item must be "
             "\\(x, y\\) or \\(x, y, sample_weight\\), got a tuple of 4"),
    ("bare", "item 1 of the Broken .* is invalid.*must be \\(x, y\\)"),
    ("shape", "item 1 of the Broken .* is invalid.*expected shape \\(None, 4\\)"),
    ("none", "item 1 of the Broken .* is invalid"),
])
def test_a_bad_item_names_its_index_and_its_step_is_not_run(how, match):
    model, reference = _model(), _model()
    reference.train_on_batch(*_batch(0))
    data = Broken(how)
    with pytest.raises(SymgraphError, match=match):
        model.fit(data, epochs=2, shuffle=False, verbose=0)
    _same(model, reference)  # item 0's step stands, as in Keras; nothing after it ran
    assert data.ended == 0  # the epoch did not end


def test_a_bad_item_in_evaluate_predict_and_validation_is_named():
    model, reference = _model(), _model()
    with pytest.raises(SymgraphError, match="evaluate: item 1 of the Broken"):
        model.evaluate(Broken("raise"), verbose=0)
    with pytest.raises(SymgraphError, match="predict: item 1 of the Broken .*could not be read"):
        model.predict(Broken("raise"), verbose=0)
    _same(model, reference)
    with pytest.raises(SymgraphError, match="fit: validation_data: item 1 of the Broken .* is "
                       "invalid.*got a tuple of 4"):
        model.fit(X[:16], LABELS[:16], verbose=0, validation_data=Broken("four"))


@pytest.mark.parametrize("length, match", [
    (0, "Empty has 0 batches \\(its __len__\\); it needs at least one"),
    (None, "Empty.num_batches is None \\(an endless PyDataset\\), which is not supported"),
])
def test_an_empty_or_endless_dataset_is_refused_before_anything_runs(length, match):
    class Empty(PyDataset):
        @property
        def num_batches(self):
            return length

        def __len__(self):
            return 0

        def __getitem__(self, i):
            raise AssertionError("never read")

    model = _model()
    before = model.get_weights()
    for call in (lambda: model.fit(Empty(), verbose=0),
                 lambda: model.fit(X, LABELS, validation_data=Empty(), verbose=0),
                 lambda: model.evaluate(Empty(), verbose=0),
                 lambda: model.predict(Empty(), verbose=0)):
        with pytest.raises(SymgraphError, match=match):
            call()
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_refused_arguments_and_loading_settings():
    model = _model()
    before = model.get_weights()
    for given, match in (({"y": LABELS}, "PyDataset, so y must not be given"),
                         ({"batch_size": 8}, "batch_size must not be given"),
                         ({"class_weight": {0: 2.0}}, "class_weight must not be given"),
                         ({"steps_per_epoch": 0}, "steps_per_epoch must be a positive")):
        with pytest.raises(SymgraphError, match=match):
            model.fit(Batches(X, LABELS), verbose=0, **given)
    with pytest.raises(SymgraphError, match="use_multiprocessing=True is not supported"):
        Batches(X, LABELS, use_multiprocessing=True)
    with pytest.raises(SymgraphError, match="workers must be a positive integer, got 0"):
        Batches(X, LABELS, workers=0)

    class Processes:  # a duck-typed dataset asking for processes is refused by fit
        use_multiprocessing = True

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return _batch(i)

    with pytest.raises(SymgraphError, match="Processes: use_multiprocessing=True"):
        model.fit(Processes(), verbose=0)
    for u, v in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
