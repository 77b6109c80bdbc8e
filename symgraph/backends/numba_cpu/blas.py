"""GEMM for generated kernels: the BLAS behind Numba's `np.dot` (SciPy's), called directly.

One BLAS for every matmul of a program (notes/cpu-performance.md: alternating NumPy's and
SciPy's OpenBLAS thread pools collapses GEMM speed). Calling Numba's own `numba_xxgemm` helper
(the symbol its `np.dot` uses, resolved by name, so `cache=True` works) compiles once per dtype
instead of once per operand layout, never copies a transposed operand (BLAS's transpose flag
does it), and takes offsets, so a batched matmul is a loop of calls on one flat buffer.

Row-major C = op(A) @ op(B) is computed as column-major C^T = op(B)^T @ op(A)^T.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.np.linalg import _BLAS

_xxgemm32 = _BLAS().numba_xxgemm(types.float32)
_xxgemm64 = _BLAS().numba_xxgemm(types.float64)
_N, _T = 78, 84  # 'N', 'T'


@njit(cache=True, nogil=True)
def gemm_float32(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta):
    """c[c_off:] (m x n) = op(a) @ op(b) + beta * c in float32; op(a) is (m,k)."""
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m * n):
            c[c_off + i] = c[c_off + i] * beta
        return
    scal = np.empty(2, np.float32)
    scal[0] = 1
    scal[1] = beta
    _xxgemm32(115, _T if trans_b else _N, _T if trans_a else _N, n, m, k, scal[0:].ctypes,
              b[b_off:].ctypes, k if trans_b else n, a[a_off:].ctypes, m if trans_a else k,
              scal[1:].ctypes, c[c_off:].ctypes, n)


@njit(cache=True, nogil=True)
def gemm_float64(trans_a, trans_b, m, n, k, a, a_off, b, b_off, c, c_off, beta):
    """The float64 twin of gemm_float32."""
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m * n):
            c[c_off + i] = c[c_off + i] * beta
        return
    scal = np.empty(2, np.float64)
    scal[0] = 1
    scal[1] = beta
    _xxgemm64(100, _T if trans_b else _N, _T if trans_a else _N, n, m, k, scal[0:].ctypes,
              b[b_off:].ctypes, k if trans_b else n, a[a_off:].ctypes, m if trans_a else k,
              scal[1:].ctypes, c[c_off:].ctypes, n)
