"""Suite `limits`: the machine's own roofs, measured at the start of a run.

- fp32 GEMM GFLOP/s through NumPy's BLAS (the one BLAS symgraph uses for every matmul), at a
  square size and at the training steps' 128-row shape; the roof is the best sample of either.
- STREAM-style bandwidth: copy (b = a, 2 words per element) and triad (a = b + s * c, 3 words per
  element), counted as STREAM counts them (no write-allocate traffic), at the kernels' array
  size (the memory roof) and at a DRAM-sized 256 MiB per array (for reference). Triad runs as one
  parallel Numba loop when Numba is importable (NumPy would need two passes and a temporary).
"""

from __future__ import annotations

import numpy as np

from symgraph.bench.roofline import Roofs
from symgraph.bench.timing import measure, pinned_blas


def _triad_kernel():
    """A one-pass parallel triad, or None without Numba."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def triad(a, b, c, s):  # pragma: no cover - compiled
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]

    return triad


def measure_gemm(n: int, m: int | None = None, repeats: int = 5) -> dict:
    """fp32 (m, n) @ (n, n) GFLOP/s; m defaults to n (square)."""
    m = n if m is None else m
    rng = np.random.default_rng(0)
    a = rng.random((m, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    timing = measure(lambda: np.matmul(a, b, out=out), repeats=repeats, warmup=2,
                     budget_s=0.1 * repeats)
    flops = 2.0 * m * n * n
    return {"shape": [m, n, n], **timing.as_dict(), "gflops": flops / timing.median / 1e9,
            "gflops_best": flops / timing.min / 1e9}


def measure_stream(n: int, repeats: int = 5, threads: int = 1) -> dict:
    """Copy and triad bandwidth over arrays of n fp32 elements (GB/s, STREAM byte counts)."""
    a = np.zeros(n, np.float32)
    b = np.ones(n, np.float32)
    c = np.full(n, 2.0, np.float32)
    copy = measure(lambda: np.copyto(a, b), repeats=repeats, warmup=2, budget_s=0.05 * repeats)
    triad = _triad_kernel()
    if triad is not None:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        how = f"numba prange, {numba.get_num_threads()} threads"
        run = lambda: triad(a, b, c, np.float32(3.0))  # noqa: E731
    else:
        how = "numpy, two passes (counted as one)"

        def run():
            np.multiply(c, np.float32(3.0), out=a)
            np.add(a, b, out=a)
    tri = measure(run, repeats=repeats, warmup=2, budget_s=0.05 * repeats)
    itemsize = 4
    return {"elements": n,
            "copy": {**copy.as_dict(), "gbps": 2 * n * itemsize / copy.median / 1e9,
                     "gbps_best": 2 * n * itemsize / copy.min / 1e9},
            "triad": {**tri.as_dict(), "gbps": 3 * n * itemsize / tri.median / 1e9,
                      "gbps_best": 3 * n * itemsize / tri.min / 1e9, "how": how}}


def run_limits(threads: int, quick: bool = False) -> dict:
    """Measure the roofs with BLAS pinned to `threads`; returns the JSON section."""
    repeats = 1 if quick else 5
    with pinned_blas(threads):
        gemms = [measure_gemm(128 if quick else 1024, repeats=repeats),
                 measure_gemm(128 if quick else 1024, m=32 if quick else 128, repeats=repeats)]
    # The memory roof is measured at the kernels suite's array size (4M fp32 = 16 MiB): with a
    # 260 MiB shared L3 on this kind of machine such arrays stream partly from cache, and a
    # DRAM-sized roof made them look 2x above it. The DRAM figure is kept for reference.
    stream = measure_stream(1 << 18 if quick else 1 << 22, repeats=repeats, threads=threads)
    dram = None if quick else measure_stream(1 << 26, repeats=3, threads=threads)
    # a roof is a peak: the best sample, as STREAM reports its best rate (medians are kept too)
    peak_gflops = max(g["gflops_best"] for g in gemms)
    peak_gbps = max(stream["copy"]["gbps_best"], stream["triad"]["gbps_best"])
    return {"gemm": gemms, "stream": stream, "stream_dram": dram,
            "roofs": {"gflops": peak_gflops, "gbps": peak_gbps}, "threads": threads}


def roofs_of(limits: dict) -> Roofs:
    """The Roofs of a `limits` JSON section."""
    return Roofs(limits["roofs"]["gflops"], limits["roofs"]["gbps"])
