"""Suite `train`: M1 and M2 training throughput, compile times and peak RSS, system by system.

Every (system, model) pair runs in fresh processes (train_worker.py), interleaved in rounds,
with its own new cache directories: the first round is cold (nothing cached), later rounds
start warm from what it left; every round adds throughput samples. Thread pools are pinned to
the same count for every system through the environment and, when that is fewer than the
cores, by CPU affinity too. System "gemm-only" runs just the step's GEMMs (the measured bound).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

from symgraph.bench.timing import pin_threads_env
from symgraph.bench.train_worker import RESULT_MARK, SYSTEMS
from symgraph.bench.workloads import BATCH, M1_SIZES, M2_SIZES, matmul_flops

QUICK_SIZES = {"M1": (32, 48, 48, 48, 10), "M2": (32, 24, 24, 10)}
FULL_SIZES = {"M1": M1_SIZES, "M2": M2_SIZES}


def available_systems(requested=None) -> list[str]:
    """Systems that can run here: peers and the Numba backend only when importable."""
    return [s for s, why in system_status(requested).items() if why is None]


def system_status(requested=None) -> dict[str, str | None]:
    """{system: None when it runs here, else why not, in words} for every system."""
    status = {}
    for system in SYSTEMS:
        status[system] = None
        if system in ("symgraph-numba-openblas", "symgraph-numba-mkl", "gemm-only-mkl") and \
                not _have_mkl():
            status[system] = "no MKL here: symgraph-numba is the OpenBLAS row already"
            continue
        if system == "symgraph-numba-mkl" and _intel():
            status[system] = "an Intel CPU: symgraph-numba is the MKL row"
            continue
        if system == "symgraph-numba-blas" and not _own_gemm():
            status[system] = "symgraph-numba's GEMM blocks are the BLAS's already here"
            continue
        if requested is not None and system not in requested:
            status[system] = "not chosen with --systems"
            continue
        module = {"symgraph-numba": "symgraph.backends.numba_cpu", "torch-eager": "torch",
                  "jax-jit": "jax"}.get(system)
        try:
            ok = module is None or importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            ok = False
        if not ok:
            status[system] = f"{module} is not importable in this run"
    return status


def _intel() -> bool:
    """Whether the Numba backend picks MKL on this CPU by itself (blas.py's rule)."""
    try:
        from symgraph.backends.numba_cpu.blas import cpu_vendor
    except ImportError:
        return False
    return cpu_vendor() == "GenuineIntel"


def _own_gemm() -> bool:
    """Whether the Numba backend computes split GEMM blocks with its own kernel here."""
    try:
        from symgraph.backends.numba_cpu.blas import OWN_GEMM
    except ImportError:
        return False
    return OWN_GEMM


def _have_mkl() -> bool:
    try:
        from symgraph.backends.numba_cpu.blas import _find_mkl
    except ImportError:
        return False
    return _find_mkl() is not None


def _cpu_set(threads: int) -> list[int] | None:
    """The CPUs a worker is confined to when it may use fewer threads than there are cores."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: thread counts alone pin the pools
        return None
    return cpus[:threads] if threads < len(cpus) else None


def _worker(args: list[str], env: dict, timeout: float, cpus: list[int] | None = None) -> dict:
    cmd = [sys.executable, "-m", "symgraph.bench.train_worker", *args]
    # affinity set before exec: every thread of every pool the worker starts inherits it
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=pre)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout)[-400:]
    return {"error": f"worker exited {proc.returncode} without a result: {tail}"}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(runs: list[dict], model: str, sizes, batch: int, roof_gflops: float | None) -> dict:
    """One row from a system's runs: runs[0] started cold, the others warm."""
    cold, warm = runs[0], [r for r in runs[1:] if "error" not in r]
    row = {"suite": "train", "model": model, "system": cold.get("system"), "sizes": list(sizes),
           "batch": batch, "runs": runs}
    if "error" in cold:
        row["error"] = cold["error"]
        return row
    good = [cold] + warm
    samples = [x for r in good for x in r.get("samples_per_s", [])]
    row.update({"first_step_cold_s": cold.get("first_step_s"),
                "first_step_warm_s": _median(r.get("first_step_s") for r in warm),
                "compile_cold_s": cold.get("compile_s"),
                "compile_warm_s": _median(r.get("compile_s") for r in warm),
                "peak_rss_mb": max(r.get("peak_rss_mb") or 0 for r in good),
                "import_s": cold.get("import_s"), "version": cold.get("version"),
                "optimizer": cold.get("optimizer")})
    if samples:
        median = statistics.median(samples)
        row.update({"samples_per_s": samples, "median": median, "min": min(samples),
                    "max": max(samples)})
        flops = matmul_flops(sizes, batch)
        row["matmul_gflops_per_step"] = flops / 1e9
        row["achieved_gflops"] = flops * median / batch / 1e9
        if roof_gflops:
            # the step's GEMMs at the machine's GEMM peak: no step can beat this rate
            row["matmul_bound_samples_per_s"] = batch * roof_gflops * 1e9 / flops
            row["fraction_of_roof"] = row["achieved_gflops"] / roof_gflops
    return row


def run_train(threads: int, quick: bool = False, roof_gflops: float | None = None,
              systems=None, models=("M1", "M2"), rounds: int | None = None,
              log=print) -> list[dict]:
    """Every available system on each model, interleaved in rounds; one row per pair.

    Round 1 starts each system from empty caches (cold); later rounds reuse them (warm) and add
    throughput samples, so a burst of load on the shared machine hits every system alike.
    """
    sizes_of = QUICK_SIZES if quick else FULL_SIZES
    batch = 16 if quick else BATCH
    rounds = rounds or (2 if quick else 5)  # 5: per-round ratios need several rounds
    counts = ["--steps", "2", "--repeats", "1", "--warmup", "1"] if quick else \
        ["--steps", "20", "--repeats", "3", "--warmup", "5"]
    timeout = 300.0 if quick else 900.0
    cpus = _cpu_set(threads)
    chosen = available_systems(systems)
    runs: dict[tuple[str, str], list[dict]] = {(m, s): [] for m in models for s in chosen}
    with tempfile.TemporaryDirectory(prefix="symgraph-bench-") as root:
        for k in range(rounds):
            for model in models:
                for system in chosen:
                    done = runs[model, system]
                    if done and "error" in done[0]:
                        continue  # a system that failed cold is not retried
                    cache = os.path.join(root, f"{system}-{model}")
                    env = dict(os.environ, **pin_threads_env(threads), SYMGRAPH_CACHE_DIR=cache,
                               NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
                    args = ["--system", system, "--model", model, "--sizes",
                            json.dumps(sizes_of[model]), "--batch", str(batch), "--threads",
                            str(threads), "--jax-cache", os.path.join(cache, "jax"), *counts]
                    log(f"  train round {k + 1}/{rounds} {model} {system}"
                        f" ({'cold' if k == 0 else 'warm'})")
                    done.append(_worker(args, env, timeout, cpus))
    return [_summary(runs[m, s], m, sizes_of[m], batch, roof_gflops)
            for m in models for s in chosen]
