"""Random shifts: exact translations with zero fill, per image, flattened images too."""

import numpy as np
import pytest

from symgraph.data import RandomShift, random_shift
from symgraph.errors import SymgraphError


def test_each_image_is_an_exact_zero_filled_shift():
    rng = np.random.default_rng(0)
    images = np.zeros((50, 7, 7), np.float32)
    images[:, 3, 3] = np.arange(1, 51)  # one lit pixel per image, labelled by its index
    out = random_shift(images, 2, rng)
    shifts = set()
    for i in range(50):
        ys, xs = np.nonzero(out[i])
        assert len(ys) == 1 and out[i, ys[0], xs[0]] == i + 1
        dy, dx = ys[0] - 3, xs[0] - 3
        assert abs(dy) <= 2 and abs(dx) <= 2
        shifts.add((dy, dx))
    assert len(shifts) > 10  # images get different shifts


def test_pixels_shifted_out_are_dropped_and_flattened_input_works():
    rng = np.random.default_rng(1)
    flat = np.ones((20, 16), np.float32)
    out = RandomShift(1, image_shape=(4, 4))(flat, rng)
    assert out.shape == (20, 16)
    assert ((out.sum(1) == 16) | (out.sum(1) == 12) | (out.sum(1) == 9)).all()
    assert (out.sum(1) < 16).any()
    with pytest.raises(SymgraphError, match="image_shape"):
        random_shift(flat, 1, rng)


def test_fit_augments_training_batches_only():
    from symgraph.nn import Dense, Sequential

    seen = []

    def spy(batch, rng):
        seen.append(batch.shape)
        return batch

    x = np.ones((10, 4), np.float32)
    model = Sequential([Dense(1, input_dim=4)])
    model.compile(optimizer="sgd", loss="mse", backend="numpy")
    model.fit(x, x[:, :1], batch_size=5, epochs=2, verbose=0, augment=spy,
              validation_data=(x, x[:, :1]))
    model.evaluate(x, x[:, :1], verbose=0)
    assert seen == [(5, 4)] * 4
