"""Data augmentation for training batches: random image shifts (applied by `fit(augment=...)`,
which calls it on training batches only, never on validation, evaluation or prediction data).
"""

from __future__ import annotations

import numpy as np

from symgraph.errors import SymgraphError


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator,
                 image_shape: tuple | None = None) -> np.ndarray:
    """Each image moved by its own random (dy, dx) in [-max_shift, max_shift], zero-filled.

    `images` is (n, h, w[, c]), or (n, h*w) flattened with `image_shape=(h, w)`.
    """
    flat_shape = images.shape
    if image_shape is not None:
        if int(np.prod(image_shape)) != int(np.prod(flat_shape[1:])):
            raise SymgraphError(f"random_shift: batch of shape {flat_shape} does not hold images "
                                f"of shape {tuple(image_shape)}")
        images = images.reshape((len(images),) + tuple(image_shape))
    if images.ndim < 3:
        raise SymgraphError(f"random_shift needs (n, h, w[, c]) images, got shape {flat_shape}; "
                            "pass image_shape=(h, w) for flattened images")
    n, h, w = images.shape[:3]
    out = np.zeros_like(images)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    # group by shift so each distinct (dy, dx) is one vectorized copy, not one per image
    keys = (shifts[:, 0] + max_shift) * (2 * max_shift + 1) + shifts[:, 1] + max_shift
    for key in np.unique(keys):
        idx = np.nonzero(keys == key)[0]
        dy, dx = shifts[idx[0]]
        src_y = slice(max(0, -dy), h - max(0, dy))
        dst_y = slice(max(0, dy), h - max(0, -dy))
        src_x = slice(max(0, -dx), w - max(0, dx))
        dst_x = slice(max(0, dx), w - max(0, -dx))
        out[idx, dst_y, dst_x] = images[idx, src_y, src_x]
    return out.reshape(flat_shape)


class RandomShift:
    """A `fit(augment=...)` callable: random shifts of up to `max_shift` pixels."""

    def __init__(self, max_shift: int = 2, image_shape: tuple | None = None):
        if max_shift < 0:
            raise SymgraphError(f"RandomShift: max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)
        self.image_shape = image_shape

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.max_shift == 0:
            return batch
        return random_shift(batch, self.max_shift, rng, self.image_shape)
