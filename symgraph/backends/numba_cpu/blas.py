"""GEMM for generated kernels: one BLAS for every matmul of a program, called from njit code.

Two BLAS are supported; the choice is made once per process, when this module is imported:

- **MKL** (`pip install "symgraph[mkl]"`, the `mkl` wheel's `libmkl_rt`), through its C
  interface `cblas_?gemm`. On this project's machines it runs the training steps' GEMM shapes
  1.3-1.6x faster than OpenBLAS (docs/numba-backend.md). Used when it is found, unless
  `SYMGRAPH_BLAS=scipy`.
- **SciPy's OpenBLAS**, the BLAS behind Numba's own `np.dot`: `numba_xxgemm`, the helper
  symbol Numba's `np.dot` calls. Used without MKL or with `SYMGRAPH_BLAS=scipy`.

Both are resolved by symbol name (never a ctypes pointer baked into the code), so `cache=True`
works: the MKL entry point is registered with LLVM under its own name (`add_symbol`) before
any generated code is compiled or loaded. The generated module imports the chosen wrapper as
`gemm` (see `GEMM_IMPORT`), so its source, and with it its cache entry, differs per BLAS: code
compiled against MKL is never loaded where MKL is absent.

Both wrappers (float32 or float64, one compile per dtype) take (trans_a, trans_b, m, n, k, a,
a_off, b, b_off, c, c_off, beta) on flat arrays: c[c_off:] (m x n, row-major) =
op(a) @ op(b) + beta * c, op(a) being (m, k). Offsets let a batched matmul be a loop of calls
on one flat buffer; transposes are BLAS flags, never copies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys

import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.np.linalg import _BLAS

from symgraph.errors import SymgraphError

# --- SciPy's OpenBLAS through Numba's helper (column-major: C^T = op(B)^T @ op(A)^T) ---
_xxgemm32 = _BLAS().numba_xxgemm(types.float32)
_xxgemm64 = _BLAS().numba_xxgemm(types.float64)
_N, _T = 78, 84  # 'N', 'T'

# --- MKL's CBLAS (row-major, LP64: 32-bit integers) ---
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_i = types.int32
_cblas_sgemm = types.ExternalFunction("cblas_sgemm", types.void(
    _i, _i, _i, _i, _i, _i, types.float32, types.voidptr, _i, types.voidptr, _i, types.float32,
    types.voidptr, _i))
_cblas_dgemm = types.ExternalFunction("cblas_dgemm", types.void(
    _i, _i, _i, _i, _i, _i, types.float64, types.voidptr, _i, types.voidptr, _i, types.float64,
    types.voidptr, _i))


def _xxgemm(c, *args):  # pragma: no cover - typed through the overload below
    raise NotImplementedError


@overload(_xxgemm)
def _xxgemm_typed(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, out, ldc):
    """Numba's `numba_xxgemm` for the dtype of `c`, picked when the caller is typed (as Numba's
    own `np.dot` does): its pointer arguments are typed per dtype."""
    fn, kind = (_xxgemm32, 115) if c.dtype == types.float32 else (_xxgemm64, 100)  # 's', 'd'

    def impl(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, out, ldc):
        fn(kind, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, out, ldc)

    return impl


def _cblas_gemm(c, *args):  # pragma: no cover - typed through the overload below
    raise NotImplementedError


@overload(_cblas_gemm)
def _cblas_gemm_typed(c, ta, tb, m, n, k, a, lda, b, ldb, beta, out):
    """MKL's row-major cblas_sgemm or cblas_dgemm (alpha = 1) for the dtype of `c`."""
    single = c.dtype == types.float32
    fn, one = (_cblas_sgemm, np.float32(1)) if single else (_cblas_dgemm, np.float64(1))

    def impl(c, ta, tb, m, n, k, a, lda, b, ldb, beta, out):
        fn(_ROW_MAJOR, ta, tb, m, n, k, one, a, lda, b, ldb, beta, out, n)

    return impl


@njit(cache=True, nogil=True)
def _nothing_for_blas(m, n, k, c, c_off, beta):
    """True when the product needs no BLAS call: an empty result, or k = 0, where c *= beta
    is done here (BLAS would reject the leading dimension 0)."""
    if m == 0 or n == 0:
        return True
    if k == 0:
        for i in range(m * n):
            c[c_off + i] = c[c_off + i] * beta
        return True
    return False


@njit(cache=True, nogil=True)
def scipy_gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta):
    """c[c_off:] (m x n) = op(a) @ op(b) + beta * c, float32 or float64; op(a) is (m, k)."""
    if _nothing_for_blas(m, n, k, c, c_off, beta):
        return
    scal = np.empty(2, c.dtype)  # alpha = 1 and beta, passed by pointer
    scal[0] = 1
    scal[1] = beta
    _xxgemm(c, _T if trans_b else _N, _T if trans_a else _N, n, m, k, scal[0:].ctypes,
            b[b_off:].ctypes, k if trans_b else n, a[a_off:].ctypes, m if trans_a else k,
            scal[1:].ctypes, c[c_off:].ctypes, n)


@njit(cache=True, nogil=True)
def mkl_gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta):
    """scipy_gemm through MKL's cblas_sgemm / cblas_dgemm."""
    if _nothing_for_blas(m, n, k, c, c_off, beta):
        return
    _cblas_gemm(c, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k,
                a[a_off:].ctypes.data, m if trans_a else k, b[b_off:].ctypes.data,
                k if trans_b else n, beta, c[c_off:].ctypes.data)


def _find_mkl() -> str | None:
    """libmkl_rt of the `mkl` wheel (in the environment's lib/) or of the system."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


def _register(lib, names) -> None:
    import llvmlite.binding as llvm

    for name in names:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)


def _load_mkl(path: str) -> bool:
    try:
        _register(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), ("cblas_sgemm", "cblas_dgemm"))
    except (OSError, AttributeError):
        return False
    return True


OPENMP_ENTRY_POINTS = ("__kmpc_fork_call", "omp_get_thread_num", "omp_get_num_threads",
                       "omp_get_max_threads")


def _load_openmp(mkl_path: str) -> bool:
    """Intel's OpenMP runtime, the one MKL runs its threads on (`libiomp5` beside it), loaded
    globally before MKL needs it and registered with LLVM: the native path's parallel loops
    then fork MKL's own thread team, so the two never compete for the cores."""
    folder = os.path.dirname(mkl_path)
    found = sorted(glob.glob(os.path.join(folder, "libiomp5.so*")))
    try:
        lib = ctypes.CDLL(found[0] if found else "libiomp5.so", mode=ctypes.RTLD_GLOBAL)
        _register(lib, OPENMP_ENTRY_POINTS)
    except (OSError, AttributeError):
        return False
    return True


def _choose() -> str:
    wanted = os.environ.get("SYMGRAPH_BLAS", "auto").lower()
    if wanted not in ("auto", "mkl", "scipy"):
        raise SymgraphError(f"SYMGRAPH_BLAS={wanted!r}: expected 'auto', 'mkl' or 'scipy'")
    if wanted == "scipy":
        return "scipy"
    path = _find_mkl()
    if path and _load_mkl(path):
        global OPENMP
        OPENMP = _load_openmp(path)
        return "mkl"
    if wanted == "mkl":
        raise SymgraphError("SYMGRAPH_BLAS=mkl but MKL's libmkl_rt was not found or did not "
                            "load; install it with `pip install \"symgraph[mkl]\"`")
    return "scipy"


OPENMP = False  # Intel's OpenMP runtime (MKL's threads) is loaded: see _load_openmp
BLAS = _choose()  # "mkl" or "scipy": the BLAS every generated GEMM of this process calls
GEMM_IMPORT = f"from symgraph.backends.numba_cpu.blas import {BLAS}_gemm as gemm"
