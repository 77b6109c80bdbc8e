"""Two Keras 3 behaviours of the functional API (symgraph/nn/merging.py, layers.py): merge layers
on inputs whose shapes broadcast (forward and gradients against NumPy and finite differences,
summary, refusals), and a Dropout or BatchNormalization layer called more than once (a mask per
call; batch moments per call and moving statistics updated call after call), against NumPy."""

import numpy as np
import pytest

import symgraph as sg
from symgraph.errors import SymgraphError
from symgraph.nn import (
    Add,
    Average,
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Input,
    Maximum,
    Minimum,
    Model,
    Multiply,
    Sequential,
    Subtract,
    optimizers,
    set_random_seed,
)
from symgraph.nn.layers import CallContext
from symgraph.testing import verify_grad

RNG = np.random.default_rng(12)


def _keras_aligned(arrays):
    """Keras 3's Merge.call: a lower-rank input gets axes of size 1 right after the batch
    axis (expand_dims(x, 1) until the ranks agree); NumPy then broadcasts."""
    rank = max(a.ndim for a in arrays)
    return [a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:]) for a in arrays]


MERGES = [
    (Add, lambda a, b, c: a + b + c),
    (Subtract, lambda a, b: a - b),
    (Multiply, lambda a, b, c: a * b * c),
    (Average, lambda a, b, c: (a + b + c) / 3),
    (Maximum, lambda a, b, c: np.maximum(np.maximum(a, b), c)),
    (Minimum, lambda a, b, c: np.minimum(np.minimum(a, b), c)),
]
IDS = [m[0].__name__ for m in MERGES]
# (None, 3, 1), (None, 4) and (None, 1, 4) broadcast to (None, 3, 4); (None, 4) is read as
# (None, 1, 4), not as NumPy's (1, None, 4)
SHAPES = [(3, 1), (4,), (1, 4)]


# --- merge layers: broadcasting ---------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("merge, reference", MERGES, ids=IDS)
def test_merge_layers_broadcast_as_keras_does(merge, reference, backend):
    shapes = SHAPES[:2] if merge is Subtract else SHAPES
    inputs = [Input(s) for s in shapes]
    out = merge()(inputs)
    model = Model(inputs, out)
    assert out.shape == (None, 3, 4) and model.output_shape == (3, 4)
    xs = [RNG.normal(size=(5,) + s).astype(np.float32) for s in shapes]
    model.compile(loss="mse", optimizer="sgd", backend=backend)
    np.testing.assert_allclose(model.predict(xs, verbose=0), reference(*_keras_aligned(xs)),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("merge, reference", MERGES, ids=IDS)
def test_merge_gradients_sum_over_the_broadcast_axes(merge, reference):
    """Reverse and forward mode of each layer's graph against central differences in float64,
    for inputs broadcast along a feature axis, a new leading feature axis and both."""
    shapes = SHAPES[:2] if merge is Subtract else SHAPES
    layer = merge()
    layer([Input(s) for s in shapes])
    arrays = [RNG.normal(size=(2,) + s) for s in shapes]
    verify_grad(lambda *xs: layer.call(list(xs), CallContext()), arrays)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_weight_behind_a_broadcast_input_trains_with_the_summed_gradient(backend):
    """f = a * g with g = b @ w + c of shape (None, 1), broadcast over a's (3, 4); one SGD step
    moves w and c by lr times the hand gradient, summed over the broadcast axes."""
    a_in, b_in = Input((3, 4)), Input((2,))
    gate = Dense(1)
    model = Model([a_in, b_in], Multiply()([a_in, gate(b_in)]))
    assert model.output_shape == (3, 4)
    a = RNG.normal(size=(6, 3, 4)).astype(np.float32)
    b = RNG.normal(size=(6, 2)).astype(np.float32)
    y = RNG.normal(size=(6, 3, 4)).astype(np.float32)
    w, c = (v.astype(np.float64) for v in model.get_weights())
    g = b @ w + c                                       # (6, 1)
    f = a * g[:, :, None]
    df = 2 * (f - y) / f.size
    dg = (df * a).sum(axis=(1, 2))[:, None]            # summed over the broadcast (3, 4)
    lr = 0.5
    model.compile(optimizer=optimizers.SGD(lr), loss="mse", backend=backend)
    assert model.train_on_batch([a, b], y) == pytest.approx(((f - y) ** 2).mean(), rel=1e-5)
    new_w, new_c = model.get_weights()
    np.testing.assert_allclose((w - new_w) / lr, b.T @ dg, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose((c - new_c) / lr, dg.sum(0), rtol=1e-3, atol=1e-6)


def test_summary_shows_the_broadcast_output_shape():
    a, b = Input((3, 1), name="column"), Input((4,), name="row")
    model = Model([a, b], Add(name="outer_sum")([a, b]))
    lines = []
    model.summary(print_fn=lines.append)
    row = next(r for r in lines[0].splitlines() if "outer_sum (Add)" in r)
    assert "(None, 3, 4)" in row and "column[0][0], row[0][0]" in row


def test_shapes_that_do_not_broadcast_are_refused_and_leave_the_layer_unbuilt():
    add = Add()
    with pytest.raises(SymgraphError, match=r"Add 'add.*' needs inputs whose shapes broadcast "
                                            r".*; input 0 is \(None, 3, 2\) but input 1 is "
                                            r"\(None, 4\)"):
        add([Input((3, 2)), Input((4,))])
    assert not add.built and add.calls == 0
    # Keras reads the inputs left to right: the first two broadcast to (None, 3), not to (4,)
    with pytest.raises(SymgraphError, match=r"Maximum .*; inputs 0-1 broadcast to \(None, 3\) "
                                            r"but input 2 is \(None, 4\)"):
        Maximum()([Input((3,)), Input((1,)), Input((4,))])
    with pytest.raises(SymgraphError, match=r"Subtract .* takes exactly 2 inputs, got 3"):
        Subtract()([Input((1,)), Input((3,)), Input((3,))])
    # a shared merge layer still needs the shapes it was built for
    add([Input((3, 1)), Input((4,))])
    with pytest.raises(SymgraphError, match=r"was built for inputs \(None, 3, 1\), \(None, 4\) "
                                            r"but is called on \(None, 3, 4\), \(None, 4\)"):
        add([Input((3, 4)), Input((4,))])


def test_concatenate_does_not_broadcast():
    """Keras 3's Concatenate needs the other axes equal (ops.concatenate does not broadcast)."""
    with pytest.raises(SymgraphError, match=r"agree on every other axis; input 0 is "
                                            r"\(None, 1, 4\) but input 1 is \(None, 3, 4\)"):
        Concatenate()([Input((1, 4)), Input((3, 4))])


# --- a Dropout called more than once --------------------------------------------------------

def _training_forward(model, *arrays):
    """The model's output in training mode at its current step (one symbolic forward)."""
    phs = [sg.placeholder(("batch",) + a.shape[1:], name=f"x{i}") for i, a in enumerate(arrays)]
    out = model(phs if len(phs) > 1 else phs[0], training=True)
    return sg.function(phs, out)(*arrays)


def _twice(dropout, features=50):
    x = Input((features,))
    return Model(x, Concatenate()([dropout(x), dropout(x)]))


def test_a_shared_dropout_draws_its_own_mask_on_each_call():
    rate, x = 0.4, RNG.uniform(1, 2, size=(64, 50)).astype(np.float32)
    model = _twice(Dropout(rate, seed=7))
    out = _training_forward(model, x)
    first, second = out[:, :50], out[:, 50:]
    for half in (first, second):  # each an inverted-dropout mask: 0 or x / (1 - rate)
        kept = half != 0
        np.testing.assert_allclose(half[kept], (x / (1 - rate))[kept], rtol=1e-6)
        assert 0.53 < kept.mean() < 0.67
    keep1, keep2 = first != 0, second != 0
    assert (keep1 != keep2).any()
    assert 0.29 < (keep1 & keep2).mean() < 0.43  # independent draws: about (1 - rate)**2
    # the first call's mask is that of the layer used once, and the seeds reproduce both
    once = Sequential([Input((50,)), Dropout(rate, seed=7)])
    np.testing.assert_array_equal(_training_forward(once, x), first)
    np.testing.assert_array_equal(_training_forward(_twice(Dropout(rate, seed=7)), x), out)
    model.step_counter.value = np.int64(1)  # the next step: new masks for both calls
    later = _training_forward(model, x)
    assert ((later[:, :50] != 0) != keep1).any() and ((later[:, 50:] != 0) != keep2).any()
    np.testing.assert_array_equal(model.predict(x, verbose=0), np.concatenate([x, x], axis=1))


def test_an_unseeded_shared_dropout_is_reproduced_by_set_random_seed():
    x = RNG.uniform(1, 2, size=(8, 50)).astype(np.float32)
    outs = []
    for _ in range(2):
        set_random_seed(3)
        outs.append(_training_forward(_twice(Dropout(0.5)), x))
    np.testing.assert_array_equal(*outs)
    assert (outs[0][:, :50] != 0).tolist() != (outs[0][:, 50:] != 0).tolist()


def test_a_shared_dropout_trains_with_each_calls_mask():
    """out = concat(drop(x), drop(x)) @ W: one SGD step moves W by lr times the hand gradient
    with the two masks of step 0."""
    x = RNG.uniform(1, 2, size=(16, 6)).astype(np.float32)
    y = RNG.normal(size=(16, 2)).astype(np.float32)
    drop, head = Dropout(0.5, seed=11), Dense(2, use_bias=False)
    inputs = Input((6,))
    model = Model(inputs, head(Concatenate()([drop(inputs), drop(inputs)])))
    probe = Model(inputs, Concatenate()([drop(inputs), drop(inputs)]))
    h = _training_forward(probe, x).astype(np.float64)  # the masks of step 0, scaled
    assert (h[:, :6] != h[:, 6:]).any()
    (w,) = (v.astype(np.float64) for v in model.get_weights())
    f = h @ w
    lr = 0.1
    model.compile(optimizer=optimizers.SGD(lr), loss="mse", backend="numpy")
    assert model.train_on_batch(x, y) == pytest.approx(((f - y) ** 2).mean(), rel=1e-5)
    np.testing.assert_allclose((w - model.get_weights()[0]) / lr, h.T @ (2 * (f - y) / f.size),
                               rtol=1e-4, atol=1e-6)


def test_a_dropout_used_once_compiles_to_the_same_graph_as_before():
    """Call 0 of a layer hashes with the layer's own seed: a one-call model's step holds the
    seed itself (the graph and masks of before shared Dropouts)."""
    model = Sequential([Input((4,)), Dropout(0.5, seed=123), Dense(1)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    model.train_on_batch(np.ones((2, 4), np.float32), np.ones((2, 1), np.float32))
    (step,) = [f for key, f in model._functions.items() if key[0] == "train"]
    seeds = [line for line in step.function.dump().splitlines() if "random_uniform" in line]
    assert len(seeds) == 1 and "seed=123" in seeds[0]


# --- a BatchNormalization called more than once ---------------------------------------------

def _bn(x, mean, var, gamma, beta, eps=1e-3):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_shared_batchnorm_normalizes_each_call_and_updates_the_moving_stats_in_turn(backend):
    """Keras 3: each call uses its own batch's moments; the moving statistics are assigned by
    each call, the second reading what the first left, so after one step
    moving = ((moving*m + mean_a*(1-m))*m + mean_b*(1-m)). gamma and beta get the gradient of
    both calls."""
    m, lr = 0.9, 0.1
    a_in, b_in = Input((3,)), Input((3,))
    bn = BatchNormalization(momentum=m)
    model = Model([a_in, b_in], Concatenate()([bn(a_in), bn(b_in)]))
    assert model.layers.count(bn) == 1 and len(model.weights) == 4
    gamma, beta = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])
    mm0, mv0 = np.array([0.2, -0.1, 0.4]), np.array([1.2, 0.8, 2.0])
    model.set_weights([gamma, beta, mm0, mv0])
    xa = RNG.normal(1.0, 2.0, size=(16, 3)).astype(np.float32)
    xb = RNG.normal(-3.0, 0.5, size=(16, 3)).astype(np.float32)
    y = RNG.normal(size=(16, 6)).astype(np.float32)
    a, b = xa.astype(np.float64), xb.astype(np.float64)
    mean_a, var_a, mean_b, var_b = a.mean(0), a.var(0), b.mean(0), b.var(0)
    out = np.concatenate([_bn(a, mean_a, var_a, gamma, beta), _bn(b, mean_b, var_b, gamma, beta)],
                         axis=1)
    np.testing.assert_allclose(_training_forward(model, xa, xb), out, rtol=1e-5, atol=1e-5)
    model.compile(optimizer=optimizers.SGD(lr), loss="mse", backend=backend)
    assert model.train_on_batch([xa, xb], y) == pytest.approx(((out - y) ** 2).mean(), rel=1e-5)
    new_gamma, new_beta, new_mm, new_mv = model.get_weights()
    np.testing.assert_allclose(new_mm, (mm0 * m + mean_a * (1 - m)) * m + mean_b * (1 - m),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_mv, (mv0 * m + var_a * (1 - m)) * m + var_b * (1 - m),
                               rtol=1e-5, atol=1e-6)
    d = 2 * (out - y) / out.size
    xhat = np.concatenate([(a - mean_a) / np.sqrt(var_a + 1e-3),
                           (b - mean_b) / np.sqrt(var_b + 1e-3)], axis=1)
    grad_gamma = (d * xhat).sum(0).reshape(2, 3).sum(0)
    grad_beta = d.sum(0).reshape(2, 3).sum(0)
    np.testing.assert_allclose((gamma - new_gamma) / lr, grad_gamma, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose((beta - new_beta) / lr, grad_beta, rtol=1e-3, atol=1e-5)
    # inference: both calls use the moving statistics the step left
    expected = np.concatenate([_bn(a, new_mm, new_mv, new_gamma, new_beta),
                               _bn(b, new_mm, new_mv, new_gamma, new_beta)], axis=1)
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0), expected, rtol=1e-4,
                               atol=1e-5)


def test_a_frozen_shared_batchnorm_runs_both_calls_in_inference_mode():
    a_in, b_in = Input((3,)), Input((3,))
    bn = BatchNormalization(trainable=False)
    model = Model([a_in, b_in], Dense(1)(Add()([bn(a_in), bn(b_in)])))
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    x = [RNG.normal(size=(8, 3)).astype(np.float32) for _ in range(2)]
    before = bn.get_weights()
    model.train_on_batch(x, np.ones((8, 1), np.float32))
    for old, new in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(old, new)
