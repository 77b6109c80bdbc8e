"""Shared helpers of the rewrite tests: special values and an exact optimized-vs-O0 check."""

import numpy as np

import symgraph as sg

SPECIAL = np.array([[0.0, -0.0, 1.5, -2.0], [np.inf, -np.inf, np.nan, 3.0],
                    [1e300, -1e-300, 7.0, 0.25]])


def placeholder_x(shape=(3, 4), dtype="float64"):
    return sg.placeholder(shape, dtype, name="x")


def check_same(inputs, expr, arrays, level=2):
    """Optimized and unoptimized agree exactly, NaN and inf included."""
    want = sg.function(inputs, expr, optimize=0)(*arrays)
    got = sg.function(inputs, expr, optimize=level)(*arrays)
    np.testing.assert_array_equal(want, got)
