"""The Numba backend's vectorizable float32 exp/log/tanh and NaN-propagating max/min."""

import math
import re

import numpy as np
import pytest
from numba import njit

import symgraph as sg
from symgraph.backends.numba_cpu.vecmath import exp32, fmaximum, fminimum, log32, tanh32

FASTMATH = {"nsz", "contract", "reassoc"}  # what generated kernels use


def _loop(fn):
    @njit(fastmath=FASTMATH, error_model="numpy")
    def run(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    def call(x):
        out = np.empty_like(x)
        run(x, out)
        return out

    call.kernel = run
    return call


def _ulps(got, x, f64):
    want = f64(x.astype(np.float64))
    ok = np.isfinite(want) & (np.abs(want) >= np.finfo(np.float32).tiny) & \
        (np.abs(want) <= np.finfo(np.float32).max)
    spacing = np.spacing(np.abs(want[ok]).astype(np.float32)).astype(np.float64)
    return np.max(np.abs(got[ok].astype(np.float64) - want[ok]) / spacing)


def _all_bit_patterns(n=1 << 21, seed=0):
    bits = np.random.default_rng(seed).integers(-(1 << 31), 1 << 31, n, dtype=np.int64)
    return bits.astype(np.int32).view(np.float32)


SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38,
                     88.72, 88.73, -103.9, -104.0, 0.625, -0.625, 20.0, -20.0], np.float32)


@pytest.mark.parametrize("fn,f64,bound", [(exp32, np.exp, 1.0), (log32, np.log, 1.0),
                                          (tanh32, np.tanh, 2.0)],
                         ids=["exp", "log", "tanh"])
def test_within_ulps_of_float64_over_random_bit_patterns_and_specials_as_numpy(fn, f64, bound):
    x = _all_bit_patterns()
    x = x[np.isfinite(x)]
    if fn is exp32:
        x = np.concatenate([x[np.abs(x) < 110], np.linspace(-104, 89, 1 << 20, dtype=np.float32)])
    elif fn is tanh32:
        x = np.concatenate([x[np.abs(x) < 20], np.linspace(-2, 2, 1 << 20, dtype=np.float32)])
    else:
        x = np.abs(x)
    call = _loop(fn)
    with np.errstate(all="ignore"):
        assert _ulps(call(x), x, f64) <= bound
        got, want = call(SPECIALS), f64(SPECIALS)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want) & (np.abs(want) > 1e-30)
    np.testing.assert_allclose(got[finite], want[finite], rtol=3e-7)
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
    tiny = np.isfinite(want) & (np.abs(want) <= 1e-30)
    np.testing.assert_allclose(got[tiny], want[tiny], atol=2e-45)


def _packed_float_ops(kernel) -> int:
    """Arithmetic on 8 or 16 float32 lanes (ymm/zmm, moves not counted) in `kernel`'s code."""
    asm = next(iter(kernel.inspect_asm().values()))
    return len(re.findall(r"^\s*v(?!mov)\w+ps\s+[^\n]*[yz]mm", asm, re.M))


@pytest.mark.parametrize("fn", [exp32, log32, tanh32], ids=["exp", "log", "tanh"])
def test_the_loops_vectorize_where_libm_stays_scalar(fn):
    """Read from the machine code, not timed: the loop over our function computes 8-16 lanes
    per instruction (19-33 packed ops here, AVX-512); the same loop over libm's expf has none
    (each element is a call). Measured as speed: 8x libm on an idle machine."""
    def libm_exp(v):
        return math.exp(v)

    ours, libm = _loop(fn), _loop(njit(libm_exp))
    x = np.linspace(0.1, 10, 64, dtype=np.float32)
    ours(x), libm(x)
    assert _packed_float_ops(libm.kernel) == 0
    assert _packed_float_ops(ours.kernel) >= 8


def test_fmaximum_fminimum_propagate_nan_from_either_side():
    @njit
    def both(a, b):
        return fmaximum(a, b), fminimum(a, b)

    nan = np.float32(np.nan)
    for a, b in [(nan, np.float32(1)), (np.float32(1), nan)]:
        assert all(math.isnan(v) for v in both(a, b))
    assert both(np.float32(2), np.float32(-3)) == (2, -3)
    assert both(np.float64(-np.inf), np.float64(5)) == (5, -np.inf)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_with_max_reduce_maximum_and_transcendentals_equal_the_reference(dtype):
    x = sg.placeholder((5, 7), dtype, name="x")
    outs = [sg.max(x, axis=1), sg.max(x), sg.maximum(x, 0.5), sg.minimum(x, -0.5),
            sg.exp(x), sg.log(sg.abs(x)), sg.tanh(x), sg.sigmoid(x), sg.softmax(x)]
    a = np.random.default_rng(2).standard_normal((5, 7)).astype(dtype) * 3
    a[1, 3] = np.nan
    a[2, 2] = 0.0
    with np.errstate(all="ignore"):
        ref = sg.function([x], outs, backend="numpy")(a)
        got = sg.function([x], outs, backend="numba")(a)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=2e-6 if dtype == "float32" else 1e-12)


def test_generated_kernels_call_the_vector_math_for_float32_and_libm_for_float64():
    sources = {}
    for dtype in ("float32", "float64"):
        x = sg.placeholder((4, 3), dtype, name="x")
        fn = sg.function([x], [sg.exp(x), sg.log(x), sg.tanh(x), sg.max(x, axis=0),
                               sg.maximum(x, 1.0)], backend="numba")
        sources[dtype] = fn._run.source
    for name in ("exp32(", "log32(", "tanh32("):
        assert name in sources["float32"] and name not in sources["float64"].split("import")[-1]
    assert "math.exp(" in sources["float64"] and "math.exp(" not in sources["float32"]
    assert all("fmaximum(" in s for s in sources.values())
