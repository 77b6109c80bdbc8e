"""native.py's scalar semantics against Numba compiling the same source (the independent
reference for NumPy's scalar rules), on edge values: negative and zero divisors, NaN, inf,
mixed-dtype promotion, uint64 bit arithmetic, bools stored as bytes; plus the fallback to
Numba for what the translator does not handle."""

from __future__ import annotations

import numpy as np
import pytest

import symgraph as sg
from symgraph.backends.numba_cpu import llvmjit, native

SOURCE = '''
import math
import numpy as np
from numba import njit

_C0 = np.float32(0.5)


@njit(cache=False, nogil=True)
def _mix(h):
    h = h ^ (h >> np.uint64(16))
    return (h * np.uint64(2246822507)) & np.uint64(4294967295)


@njit(cache=False, nogil=True, fastmath={'nsz', 'arcp', 'contract', 'reassoc'},
      error_model='numpy')
def entry(ia, ib, fa, fb, i32, o_div, o_mod, o_min, o_max, o_cmp, o_mixed, o_hash, o_misc, d0):
    for i in range(d0):
        x = ia[i]
        y = ib[i]
        o_div[i] = x // y
        o_mod[i] = x % y
        a = fa[i]
        b = fb[i]
        o_min[i] = min(a, b)
        o_max[i] = max(a, b) + abs(a) * _C0
        o_cmp[i] = (a < b) or (a != a and not (b <= a))
        o_mixed[i] = i32[i] + a
        o_hash[i] = _mix(np.uint64(x) ^ np.uint64(i))
        o_misc[i] = np.float32(a ** np.float32(2.0)) if a == a else np.float32(-1.0)
        if x < 0:
            o_misc[i] = o_misc[i] + np.float32(x)
    return 0
'''

SPECIAL = np.array([0.0, -0.0, 1.5, -2.5, np.nan, np.inf, -np.inf, 3.0, 1e-30, -7.0],
                   np.float32)


def arrays(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ia = rng.integers(-20, 20, n).astype(np.int64)
    ib = rng.integers(-6, 6, n).astype(np.int64)  # zero divisors included
    fa = np.resize(SPECIAL, n)
    fb = rng.permutation(np.resize(SPECIAL, n))
    i32 = rng.integers(-1000, 1000, n).astype(np.int32)
    outs = [np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.float32),
            np.zeros(n, np.float32), np.zeros(n, np.bool_), np.zeros(n, np.float64),
            np.zeros(n, np.uint64), np.zeros(n, np.float32)]
    return [ia, ib, fa, fb, i32] + outs


def run_numba(args):
    namespace: dict = {}
    exec(compile(SOURCE, "<native-test>", "exec"), namespace)
    namespace["entry"](*args, len(args[0]))
    return args[5:]


def run_native(args, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", str(tmp_path))
    names = ["ia", "ib", "fa", "fb", "i32", "o_div", "o_mod", "o_min", "o_max", "o_cmp",
             "o_mixed", "o_hash", "o_misc"]
    params = {n: native.Buf(a.dtype.name) for n, a in zip(names, args)}
    params["d0"] = "int64"
    sizes = {n: "d0" for n in names}
    functions = {"entry": (params, sizes)}
    addresses, _ = llvmjit.load(SOURCE, lambda name: native.translate(
        SOURCE, name, functions, llvmjit.BY_OBJECT), ["entry"], options="test")
    entry = llvmjit.NativeEntry(addresses["entry"], len(names), 1)
    assert entry(*args, len(args[0])) == 0
    return args[5:]


def test_scalar_semantics_match_numba_on_edge_values(tmp_path, monkeypatch):
    expected = run_numba(arrays())
    got = run_native(arrays(), tmp_path, monkeypatch)
    for name, e, g in zip(["div", "mod", "min", "max", "cmp", "mixed", "hash", "misc"],
                          expected, got):
        assert e.dtype == g.dtype, name
        np.testing.assert_array_equal(g, e, err_msg=name)  # NaNs compare equal here


def test_untranslatable_source_falls_back_to_numba_or_fails_when_strict(monkeypatch):
    def refuse(*args, **kwargs):
        raise native.Unsupported("a construct this test refuses")

    monkeypatch.setattr(native, "translate", refuse)
    monkeypatch.setenv("SYMGRAPH_CACHE_DIR", "")  # default cache dir
    x = sg.placeholder(("n",), "float32", name="x")
    y = sg.exp(x) * 3.0 + 0.25  # a graph no other test compiles: never already loaded
    monkeypatch.setenv("SYMGRAPH_NATIVE", "auto")
    f = sg.function([x], y, backend="numba")
    assert not f._run.native
    xv = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_allclose(f(xv), np.exp(xv) * 3 + 0.25, rtol=1e-6)
    monkeypatch.setenv("SYMGRAPH_NATIVE", "native")
    with pytest.raises(sg.SymgraphError, match="refuses"):
        sg.function([x], y * 2.0, backend="numba")
    monkeypatch.setenv("SYMGRAPH_NATIVE", "sometimes")
    with pytest.raises(sg.SymgraphError, match="SYMGRAPH_NATIVE"):
        sg.function([x], y * 5.0, backend="numba")
