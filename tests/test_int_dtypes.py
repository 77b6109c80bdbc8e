"""Integers as NumPy 2 computes them: no silent wrap-around where NumPy widens or refuses, and
wrap-around exactly where NumPy wraps (found by a dtype hunt across both CPU backends)."""

import numpy as np
import pytest

import symgraph as sg

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_ints_beyond_int32_stay_int64(backend):
    # constants of Python ints narrowed to int32 always: 2**40 became 0, 3e9 -1294967296
    x = sg.placeholder((2,), "int64", name="x")
    outs = [sg.constant(2**40), sg.constant(3_000_000_000), x + [2**40, 1],
            sg.cast([2**40], "int64"), sg.constant(7)]
    got = sg.function([x], outs, backend=backend)(np.array([1, 2], np.int64))
    assert [g.dtype for g in got] == [np.int64] * 4 + [np.int32]  # 7 still narrows
    assert got[0] == 2**40 and got[1] == 3_000_000_000
    np.testing.assert_array_equal(got[2], [2**40 + 1, 3])
    np.testing.assert_array_equal(got[3], [2**40])


@pytest.mark.parametrize("build", [lambda: sg.constant(2**40, dtype="int32", name="c"),
                                   lambda: sg.variable([2**40], dtype="int32", name="c")])
def test_a_python_int_too_large_for_the_asked_dtype_is_a_symgraph_error(build):
    with pytest.raises(sg.SymgraphError, match="does not fit int32"):  # was a bare OverflowError
        build()


def test_setting_a_variable_to_ints_it_cannot_hold_is_refused_as_an_input_is():
    v = sg.variable(np.zeros(2, np.int32), name="counts")
    with pytest.raises(sg.SymgraphError, match="cannot hold"):  # was stored as [0, 7]
        v.value = np.array([2**40, 7])
    np.testing.assert_array_equal(v.value, [0, 0])
    v.value = np.array([5, 7], np.int64)  # values that fit are fine
    np.testing.assert_array_equal(v.value, [5, 7])


@pytest.mark.parametrize("native", ["auto", "numba"])
@pytest.mark.parametrize("level", [0, 2])
def test_int64_overflow_wraps_as_numpy_in_every_numba_code_path(monkeypatch, native, level):
    # Numba's signed arithmetic is `nsw`: LLVM folded (a + b) > 0 into a > -b
    monkeypatch.setenv("SYMGRAPH_NATIVE", native)
    a_ = np.array([2**63 - 1, -2**63, -7, 7], np.int64)
    b_ = np.array([1, -1, 2, -2], np.int64)
    a = sg.placeholder((4,), "int64", name="a")
    b = sg.placeholder((4,), "int64", name="b")
    with np.errstate(over="ignore"):
        want = [a_ + b_ > 0, a_ - (-b_) > 0, a_ * 2 > 0]
    got = sg.function([a, b], [a + b > 0, a - (-b) > 0, a * 2 > 0], backend="numba",
                      optimize=level)(a_, b_)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int32_sums_accumulate_in_int64_as_numpy(backend):
    x = sg.placeholder((4,), "int32", name="x")
    a = np.full(4, 2**30, np.int32)
    got = sg.function([x], [sg.sum(x), sg.sum(x, axis=0, keepdims=True)], backend=backend)(a)
    for g, w in zip(got, [a.sum(), a.sum(axis=0, keepdims=True)]):  # 0 in int32 before
        assert g.dtype == w.dtype == np.int64
        np.testing.assert_array_equal(g, w)


def test_uint32_mixes_as_numpy_promotes_or_is_refused_by_numba_clearly():
    u = sg.placeholder((3,), "uint32", name="u")
    i = sg.placeholder((3,), "int32", name="i")
    uv, iv = np.array([1, 2, 3], np.uint32), np.array([-1, 0, 1], np.int32)
    got = sg.function([u, i], [u + i, u * 2.5], backend="numpy")(uv, iv)  # a bare ValueError
    assert got[0].dtype == (uv + iv).dtype == np.int64
    np.testing.assert_array_equal(got[0], uv + iv)
    np.testing.assert_allclose(got[1], uv * 2.5)
    with pytest.raises(sg.SymgraphError, match="dtype uint32"):  # KeyError 'uint32' before
        sg.function([u], sg.cast(u, "float32"), backend="numba")
