"""GEMM for generated kernels: one BLAS for every matmul of a program, called from njit code.

Three ways to a BLAS; the choice is made once per process, when this module is imported
(`SYMGRAPH_BLAS=auto|mkl|openblas|scipy`):
- **MKL** (the `mkl` wheel's `libmkl_rt`), through its C interface `cblas_?gemm`, on Intel
  CPUs: there it runs the training steps' GEMM shapes 1.3-1.6x faster than OpenBLAS
  (docs/numba-backend.md).
- **OpenBLAS through its C interface** (`scipy_cblas_?gemm` of SciPy's bundled OpenBLAS), on
  other x86-64 CPUs: on AMD Zen 4, MKL takes its generic code path and is 1.2x slower than
  OpenBLAS. There the native path splits each large GEMM into blocks (of rows, or of columns
  when the product is much wider than tall), one per thread of the OpenMP team, each a
  single-threaded OpenBLAS call followed by its block's epilogue (`SPLIT`, `gemm_parts`),
  so no second thread pool spins beside the team (docs/numba-backend.md).
- **SciPy's OpenBLAS through Numba's helper** `numba_xxgemm` (the BLAS behind Numba's own
  `np.dot`): the fallback when neither C interface loads, or with `SYMGRAPH_BLAS=scipy`.
Every entry point is resolved by symbol name (never a ctypes pointer baked into the code), so
`cache=True` works: the symbols are registered with LLVM (`add_symbol`) before any generated
code is compiled or loaded. The generated module imports the chosen wrapper as `gemm` (see
`GEMM_IMPORT`), so its source, and with it its cache entry, differs per BLAS.

Every wrapper (float32 or float64, one compile per dtype) takes (trans_a, trans_b, m, n, k, a,
a_off, b, b_off, c, c_off, beta, r0, r1, c0, c1) on flat arrays: rows r0..r1, columns c0..c1
of c[c_off:] (m x n, row-major) = the same block of op(a) @ op(b) + beta * c, op(a) being
(m, k). Offsets let a batched matmul be a loop of calls on one flat buffer; the block lets
threads share one product; transposes are BLAS flags, never copies.
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


# --- CBLAS (row-major, 32-bit integers): MKL's cblas_?gemm, OpenBLAS's scipy_cblas_?gemm ---
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_i = types.int32


def _cblas(prefix: str):
    """A typed-per-dtype caller of `<prefix>cblas_sgemm` / `<prefix>cblas_dgemm`."""
    externs = {t: types.ExternalFunction(f"{prefix}cblas_{'s' if t == types.float32 else 'd'}gemm",
                                         types.void(_i, _i, _i, _i, _i, _i, t, types.voidptr,
                                                    _i, types.voidptr, _i, t, types.voidptr, _i))
               for t in (types.float32, types.float64)}

    def call(c, *args):  # pragma: no cover - typed through the overload below
        raise NotImplementedError

    @overload(call)
    def typed(c, ta, tb, m, n, k, a, lda, b, ldb, beta, out, ldc):
        """Row-major ?gemm (alpha = 1) for the dtype of `c`."""
        fn, one = externs[c.dtype], (np.float32(1) if c.dtype == types.float32 else np.float64(1))

        def impl(c, ta, tb, m, n, k, a, lda, b, ldb, beta, out, ldc):
            fn(_ROW_MAJOR, ta, tb, m, n, k, one, a, lda, b, ldb, beta, out, ldc)
        return impl
    return call


_mkl_cblas = _cblas("")
_openblas_cblas = _cblas("scipy_")


@njit(cache=True, nogil=True)
def _nothing_for_blas(rows, cols, n, k, c, c_off, beta):
    """True when the block needs no BLAS call: it is empty, or k = 0, where c = beta * c is
    done here (BLAS would reject the leading dimension 0; c, often a fresh uninitialized
    array, is not read when beta is 0). The block starts at c[c_off], row stride n."""
    if rows <= 0 or cols <= 0:
        return True
    if k == 0:
        for i in range(rows):
            for j in range(cols):
                c[c_off + i * n + j] = c[c_off + i * n + j] * beta if beta != 0 else 0
        return True
    return False


@njit(cache=True, nogil=True)
def _block_offsets(trans_a, trans_b, n, k, a_off, b_off, c_off, r0, c0):
    """Where the block at row r0, column c0 starts in a, b and c (row-major; a transposed
    operand's rows are its columns)."""
    return (a_off + (r0 if trans_a else r0 * k), b_off + (c0 * k if trans_b else c0),
            c_off + r0 * n + c0)


@njit(cache=True, nogil=True)
def split_columns(m, n, k):
    """Whether a product shared by threads is split into blocks of columns (else of rows):
    when it is at least 4x wider than tall with k >= 64, so each thread packs only its part
    of the wide operand. Row blocks measured faster for the weight gradients (784 x 1024,
    k = 128: 1.4 vs 5.6 ms) and for k = 10 (docs/numba-backend.md)."""
    return n >= 4 * m if k >= 64 else False


@njit(cache=True, nogil=True)
def gemm_parts(m, n, k, by_columns):
    """How many blocks a product is computed in: 1 in Numba-compiled code (one threaded BLAS
    call); the native path (native_calls.py) splits large products across its team."""
    return np.int64(1)


@njit(cache=True, nogil=True)
def scipy_gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta, r0, r1, c0, c1):
    """Rows r0..r1, columns c0..c1 of c[c_off:] (m x n) = the same block of op(a) @ op(b) +
    beta * c; op(a) is (m, k), op(b) is (k, n)."""
    a_off, b_off, c_off = _block_offsets(trans_a, trans_b, n, k, a_off, b_off, c_off, r0, c0)
    if _nothing_for_blas(r1 - r0, c1 - c0, n, k, c, c_off, beta):
        return
    scal = np.empty(2, c.dtype)  # alpha = 1 and beta, passed by pointer
    scal[0] = 1
    scal[1] = beta
    _xxgemm(c, _T if trans_b else _N, _T if trans_a else _N, c1 - c0, r1 - r0, k,
            scal[0:].ctypes, b[b_off:].ctypes, k if trans_b else n, a[a_off:].ctypes,
            m if trans_a else k, scal[1:].ctypes, c[c_off:].ctypes, n)


@njit(cache=True, nogil=True)
def mkl_gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta, r0, r1, c0, c1):
    """scipy_gemm through MKL's cblas_sgemm / cblas_dgemm."""
    a_off, b_off, c_off = _block_offsets(trans_a, trans_b, n, k, a_off, b_off, c_off, r0, c0)
    if _nothing_for_blas(r1 - r0, c1 - c0, n, k, c, c_off, beta):
        return
    _mkl_cblas(c, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, r1 - r0,
               c1 - c0, k, a[a_off:].ctypes.data, m if trans_a else k, b[b_off:].ctypes.data,
               k if trans_b else n, beta, c[c_off:].ctypes.data, n)


@njit(cache=True, nogil=True)
def openblas_gemm(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta, r0, r1, c0,
                  c1):
    """scipy_gemm through OpenBLAS's scipy_cblas_sgemm / scipy_cblas_dgemm."""
    a_off, b_off, c_off = _block_offsets(trans_a, trans_b, n, k, a_off, b_off, c_off, r0, c0)
    if _nothing_for_blas(r1 - r0, c1 - c0, n, k, c, c_off, beta):
        return
    _openblas_cblas(c, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
                    r1 - r0, c1 - c0, k, a[a_off:].ctypes.data, m if trans_a else k,
                    b[b_off:].ctypes.data, k if trans_b else n, beta, c[c_off:].ctypes.data, n)


def _find_mkl() -> str | None:
    """libmkl_rt of the `mkl` wheel (in the environment's lib/) or of the system."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


def _find_openblas() -> str | None:
    """SciPy's bundled OpenBLAS (`scipy.libs/libscipy_openblas*.so`), whose C symbols carry
    the `scipy_` prefix; the library SciPy itself loads, so both share one thread pool."""
    import importlib.util

    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.origin:
        return None
    libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "scipy.libs")
    found = sorted(glob.glob(os.path.join(libs, "libscipy_openblas-*.so*")))
    return found[0] if found else None


def _register(lib, names) -> None:
    import llvmlite.binding as llvm

    for name in names:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)


def _load(path: str | None, names) -> bool:
    if not path:
        return False
    try:
        _register(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), names)
    except (OSError, AttributeError):
        return False
    return True


OPENMP_ENTRY_POINTS = ("__kmpc_fork_call", "omp_get_thread_num", "omp_get_num_threads",
                       "omp_get_max_threads")
OPENBLAS_THREADS = ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads")


def _load_openmp() -> bool:
    """Intel's OpenMP runtime (`libiomp5`, the `intel-openmp` wheel beside MKL), loaded
    globally and registered with LLVM: the native path's parallel loops fork its team, which
    is MKL's own thread team, so the two never compete for the cores."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libiomp5.so*")))
        if found and _load(found[0], OPENMP_ENTRY_POINTS):
            return True
    return _load("libiomp5.so", OPENMP_ENTRY_POINTS)


def cpu_vendor() -> str:
    """The CPU's vendor string (`GenuineIntel`, `AuthenticAMD`, ...), or '' if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _choose() -> str:
    global OPENMP
    wanted = os.environ.get("SYMGRAPH_BLAS", "auto").lower()
    if wanted not in ("auto", "mkl", "openblas", "scipy"):
        raise SymgraphError(f"SYMGRAPH_BLAS={wanted!r}: expected 'auto', 'mkl', 'openblas' "
                            "or 'scipy'")
    if wanted == "scipy":
        return "scipy"
    if wanted == "mkl" or (wanted == "auto" and cpu_vendor() == "GenuineIntel"):
        if _load(_find_mkl(), ("cblas_sgemm", "cblas_dgemm")):
            OPENMP = _load_openmp()
            return "mkl"
        if wanted == "mkl":
            raise SymgraphError("SYMGRAPH_BLAS=mkl but MKL's libmkl_rt was not found or did "
                                "not load; install it with `pip install \"symgraph[mkl]\"`")
    if _load(_find_openblas(), ("scipy_cblas_sgemm", "scipy_cblas_dgemm") + OPENBLAS_THREADS):
        import llvmlite.binding as llvm

        llvm.add_symbol(OPENBLAS_GUARD_SYMBOL, ctypes.addressof(OPENBLAS_GUARD))
        OPENMP = _load_openmp()
        return "openblas"
    if wanted == "openblas":
        raise SymgraphError("SYMGRAPH_BLAS=openblas but SciPy's bundled OpenBLAS "
                            "(scipy.libs/libscipy_openblas-*.so) was not found or did not load")
    return "scipy"


# [generated functions running now, OpenBLAS's thread count before the first of them, spin
# lock]: the native path's functions that split GEMMs make OpenBLAS single-threaded while any
# of them runs (the first to enter saves the count, the last to leave restores it, each under
# the lock), so concurrent calls from several threads never leave it at 1.
OPENBLAS_GUARD = (ctypes.c_int64 * 3)(0, 0, 0)
OPENBLAS_GUARD_SYMBOL = "symgraph_openblas_guard"
OPENMP = False  # Intel's OpenMP runtime is loaded: the native path's thread team
BLAS = _choose()  # "mkl", "openblas" or "scipy": the BLAS of every generated GEMM here
# The native path splits large GEMMs across its team (single-threaded BLAS calls) when the
# BLAS is OpenBLAS, whose own threads would otherwise spin against the team's.
SPLIT = BLAS == "openblas" and OPENMP


def _own_gemm() -> bool:
    wanted = os.environ.get("SYMGRAPH_GEMM", "auto").lower()
    if wanted not in ("auto", "own", "blas"):
        raise SymgraphError(f"SYMGRAPH_GEMM={wanted!r}: expected 'auto', 'own' or 'blas'")
    if wanted != "auto":
        return wanted == "own"
    import llvmlite.binding as llvm

    return SPLIT and "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


# The native path computes its products with symgraph's own kernel (native_gemm.py) where
# GEMMs are split and the CPU has AVX-512 (measured faster than single-threaded OpenBLAS on
# such a CPU, an AMD Zen 4; its AVX2 tile is tested but not measured, so AVX2-only CPUs keep
# OpenBLAS), the BLAS elsewhere; SYMGRAPH_GEMM=own|blas forces either (Numba's njit path
# always calls the BLAS).
OWN_GEMM = _own_gemm()
GEMM_IMPORT = (f"from symgraph.backends.numba_cpu.blas import {BLAS}_gemm as gemm, "
               "gemm_parts, split_columns")
