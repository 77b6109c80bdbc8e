"""symgraph's own GEMM kernel (native_gemm.py) against OpenBLAS on the blocks one thread
computes in M1's and M2's training steps: one thread each, operands in cache, medians.

    python scripts/gemm_blocks.py            # float32, 40 calls per block, 3 rounds

OpenBLAS is SciPy's bundled library through its C interface (`scipy_cblas_sgemm`, row-major,
no copies), limited to one thread, as the backend calls it when `SYMGRAPH_GEMM=blas`.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import numpy as np

from symgraph.backends.numba_cpu import blas, llvmjit

# (name, transpose A, transpose B, m, n, k): a thread's block of each product (2 threads)
BLOCKS = [
    ("M1 forward", 0, 0, 128, 512, 1024),
    ("M1 input gradient", 0, 1, 128, 512, 1024),
    ("M1 weight gradient", 1, 0, 512, 1024, 128),
    ("M2 forward", 0, 0, 128, 256, 784),
    ("M2 input gradient", 0, 1, 128, 256, 512),
    ("M2 weight gradient", 1, 0, 392, 512, 128),
]


def _median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    path = blas._find_openblas()
    if path is None:
        raise SystemExit("SciPy's bundled OpenBLAS (scipy.libs) is not installed here")
    lib = ctypes.CDLL(path)
    lib.scipy_openblas_set_num_threads(1)
    sgemm = lib.scipy_cblas_sgemm
    sgemm.restype = None
    sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                           ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                           ctypes.c_void_p, ctypes.c_int]
    own = llvmjit.standalone_gemm("float32")
    rng = np.random.default_rng(0)
    print(f"{'block (m x n x k)':40s} {'own GFLOP/s':>12s} {'OpenBLAS':>10s} {'ratio':>7s}")
    for _ in range(args.rounds):
        for name, ta, tb, m, n, k in BLOCKS:
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            c = np.zeros((m, n), np.float32)
            lda, ldb = a.shape[1], b.shape[1]
            t_own = _median_seconds(lambda: own(ta, tb, m, n, k, a.ctypes.data, lda,
                                                b.ctypes.data, ldb, c.ctypes.data, n, 0),
                                    args.repeats)
            ours = c.copy()
            t_blas = _median_seconds(lambda: sgemm(101, 112 if ta else 111, 112 if tb else 111,
                                                   m, n, k, 1.0, a.ctypes.data, lda,
                                                   b.ctypes.data, ldb, 0.0, c.ctypes.data, n),
                                     args.repeats)
            np.testing.assert_allclose(ours, c, rtol=1e-3, atol=1e-3)
            flops = 2.0 * m * n * k
            label = f"{name} {m} x {n} x {k} ({'T' if ta else 'N'}{'T' if tb else 'N'})"
            print(f"{label:40s} {flops / t_own / 1e9:12.1f} {flops / t_blas / 1e9:10.1f} "
                  f"{t_blas / t_own:7.2f}")


if __name__ == "__main__":
    main()
