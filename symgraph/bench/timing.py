"""Measurement plumbing shared by every suite: timed repeats, thread pinning, the environment.

A measurement is warm-up calls, then `repeats` timings of `inner` calls each; we report the
median with min and max and keep every sample. The machine is shared and noisy, so only ratios
taken in one run mean much; the environment (CPU, versions, thread counts) goes with every
result.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class Timing:
    """Seconds per call: every sample, with median, min and max."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    def as_dict(self) -> dict:
        return {"samples_s": self.samples, "median_s": self.median, "min_s": self.min,
                "max_s": self.max}


def measure(fn: Callable[[], object], repeats: int = 5, inner: int = 1, warmup: int = 1,
            budget_s: float | None = None) -> Timing:
    """Time `fn`: `warmup` untimed calls, then `repeats` samples of seconds per call.

    With `budget_s`, `inner` grows (doubling from its given value) until one sample takes about
    budget_s / repeats, so very short kernels are not dominated by timer resolution.
    """
    for _ in range(warmup):
        fn()
    if budget_s is not None:
        target = budget_s / max(repeats, 1)
        while True:
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            if time.perf_counter() - start >= target / 4 or inner >= 1 << 16:
                break
            inner *= 2
    timing = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        timing.samples.append((time.perf_counter() - start) / inner)
    return timing


def pin_threads_env(threads: int) -> dict[str, str]:
    """The environment variables that pin every thread pool we know of to `threads`."""
    return {name: str(threads) for name in THREAD_ENV}


def apply_thread_env(threads: int) -> None:
    """Pin thread pools of libraries not yet imported (set before numpy/numba/torch import)."""
    os.environ.update(pin_threads_env(threads))


class pinned_blas:
    """Context manager: BLAS/OpenMP pools limited to `threads` (threadpoolctl) while inside."""

    def __init__(self, threads: int):
        self.threads = threads
        self._limits = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the dependency is declared; stay usable without it
            return self
        self._limits = threadpool_limits(limits=self.threads)
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()


def thread_pools() -> list[dict]:
    """Thread pools loaded in this process (library, API, threads), per threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "num_threads", "version", "filepath")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is VmHWM of /proc/self/status: getrusage's ru_maxrss would also count the
    parent's memory at fork time (the kernel carries the old high-water mark across exec),
    which made every benchmark worker look as large as the bench driver.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_model() -> str:
    """The CPU model name and the flags that matter for these kernels."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown")
    flags_line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[-1].split())
    wanted = [f for f in ("avx2", "fma", "avx512f", "amx_tile", "amx_bf16") if f in flags]
    return f"{name} ({' '.join(wanted)})" if wanted else name


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int) -> dict:
    """Everything a reader needs to judge the numbers: machine, versions, thread settings."""
    import numpy as np

    import symgraph

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "symgraph": symgraph.__version__}
    for pkg in ("numba", "scipy", "llvmlite", "torch", "jax", "jaxlib", "threadpoolctl"):
        v = _version(pkg)
        if v is not None:
            versions[pkg] = v
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "threads": threads, "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
            "thread_pools": thread_pools(), "versions": versions,
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def to_jsonable(value):
    """Dataclasses, numpy scalars and tuples made into plain JSON values."""
    import numpy as np

    if hasattr(value, "__dataclass_fields__"):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
